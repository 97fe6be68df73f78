"""GraphDef -> ``model.onnx``: tf2onnx's graph converter, then onnx-graphsurgeon's clean-up.

::

    rewritten GraphDef (NCHW, constant filters)
      -> tf2onnx.tfonnx.process_tf_graph + tf2onnx's ONNX optimizers (errors not swallowed)
      -> onnx_graphsurgeon: fold_constants (in onnxruntime), cleanup, toposort; Transposes
         sunk through element-wise ops until pairs cancel (transposes.remove_transposes)
      -> onnx.checker -> OUTDIR/model.onnx

tf2onnx's ``convert.from_graph_def`` first runs TensorFlow's grappler over the graph, which
executes kernels to fold constants; graphsurgery's pipeline has folded them already (with
TensorFlow's exact kernels, never running an op that acts on the host), so this calls the
converter proper on the imported graph and nothing of the model runs in TensorFlow. Graphs
holding an op that acts on the host are refused before conversion.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UsageError, VerificationError
from ...ir import opdefs

if TYPE_CHECKING:
    from ...ir.graph import Graph

log = logging.getLogger("graphsurgery")

#: The opset written when none is asked for (onnxruntime 1.17+ runs it; tf2onnx 1.16+ writes it).
DEFAULT_OPSET = 17
EXTRA = "pip install 'graphsurgery[onnx]'"


def require(*modules: str) -> None:
    """Import ``modules`` or raise a one-line UsageError naming the ``onnx`` extra."""
    import importlib

    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError:
            raise UsageError(f"the onnx target needs {mod.split('.')[0]}: {EXTRA}") from None


def to_onnx(graph: Graph, opset: int = DEFAULT_OPSET, layout: str | None = None) -> Any:
    """The ``onnx.ModelProto`` of ``graph`` (tf2onnx, then cleaned by :func:`clean`), its
    4-D inputs and outputs in ``layout`` (``"nchw"``/``"nhwc"``; None: as they are)."""
    require("onnx", "tf2onnx", "onnx_graphsurgeon")
    hosts = opdefs.side_effects(graph)
    if hosts:
        e = hosts[0]
        raise VerificationError(f"node {e.node!r}: {e.reason}; graphsurgery does not convert "
                                "a graph that acts on the host")
    import tensorflow as tf
    from tf2onnx import optimizer
    from tf2onnx.tfonnx import process_tf_graph

    inputs = [_tensor_name(t) for t in graph.inputs]
    outputs = [_tensor_name(t) for t in graph.outputs]
    quiet = logging.getLogger("tf2onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tf.Graph().as_default() as tf_graph, contextlib.redirect_stdout(io.StringIO()):
            tf.import_graph_def(graph.to_tf_graph_def(), name="")
            g = process_tf_graph(tf_graph, opset=opset, input_names=inputs,
                                 output_names=outputs)
            g = optimizer.optimize_graph(g, catch_errors=False)
            model = g.make_model("graphsurgery")
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VerificationError(f"tf2onnx failed: {first}") from exc
    finally:
        quiet.setLevel(level)
    return clean(model, layout)


def clean(model: Any, layout: str | None = None) -> Any:
    """onnx-graphsurgeon's clean-up: fold constants (evaluated in onnxruntime), remove dead
    nodes and tensors, sort topologically; opset imports of unused domains dropped (tf2onnx
    always imports ``ai.onnx.ml``); the inputs and outputs put in ``layout``
    (:func:`graphsurgery.targets.onnx.layout.set_layout`); then ``onnx.checker``."""
    import onnx
    import onnx_graphsurgeon as ogs

    from .transposes import remove_transposes

    g = ogs.import_onnx(onnx.shape_inference.infer_shapes(model))
    g.fold_constants(error_ok=False).cleanup().toposort()
    if any(n.op == "Transpose" for n in g.nodes):
        remove_transposes(g)
        g.fold_constants(error_ok=False).cleanup().toposort()
    made = None
    if layout is not None:
        from .layout import set_layout

        made = set_layout(g, layout)
    out = ogs.export_onnx(g)
    out.ir_version = model.ir_version
    # tf2onnx imports ai.onnx.ml whether or not a node uses it: keep the domains in use.
    used = {n.domain for n in out.graph.node} | {""}
    del out.opset_import[:]
    out.opset_import.extend(o for o in model.opset_import if o.domain in used)
    out.producer_name, out.producer_version = "graphsurgery", _version()
    if made and (made["inputs"] or made["outputs"]):  # so that verify can undo them
        import json

        from .layout import METADATA_KEY

        onnx.helper.set_model_props(out, {METADATA_KEY: json.dumps(made)})
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:
        raise VerificationError(f"the cleaned ONNX model is invalid: "
                                f"{str(exc).splitlines()[0]}") from exc
    return out


def save(model: Any, path: Path) -> int:
    """Write ``model`` to ``path``; its size in bytes."""
    data = model.SerializeToString()
    path.write_bytes(data)
    return len(data)


def _tensor_name(ref: Any) -> str:
    text = str(ref)
    return text if ":" in text else f"{text}:0"


def _version() -> str:
    from ... import __version__

    return __version__


__all__ = ["DEFAULT_OPSET", "clean", "require", "save", "to_onnx"]
