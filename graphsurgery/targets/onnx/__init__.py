"""The ONNX target: ``OUTDIR/model.onnx``, ONNX-clean, verified in onnxruntime.

* lint and audit: :mod:`graphsurgery.targets.onnx.rules` (one function per rule, the same ids:
  ``ai-onnx-domain``, ``static-shapes``, ``no-random``, ``no-inner-transpose``,
  ``constant-weights``, ``runs-in-onnxruntime``);
* passes: none appended; :meth:`ONNXTarget.extend` *removes* ``core::to_nhwc``. ONNX
  runtimes are NCHW, so the target keeps the original layout: the StyleGAN graphs' NCHW
  convolutions become ONNX ``Conv`` with no ``Transpose`` at all, where an NHWC graph would
  need one pair per convolution for tf2onnx's optimizer to push out;
* export: :func:`graphsurgery.targets.onnx.export.to_onnx` (tf2onnx's converter on the
  rewritten graph, then onnx-graphsurgeon ``fold_constants``/``cleanup``/``toposort``, and
  any ``Transpose`` left (NHWC Keras graphs) sunk until pairs cancel:
  :mod:`graphsurgery.targets.onnx.transposes`);
* runner: :class:`graphsurgery.runners.ONNXRunner` (onnxruntime, CPU).

Options (``ONNXTarget(opset=13, layout="nhwc")``, ``gs.convert(..., target="onnx",
target_options={"opset": 13})``, ``graphsurgery run --target onnx --target-option
opset=13``): ``opset`` (9 to 21, default 17) and ``layout`` (``nchw``/``nhwc``: how the 4-D
inputs and outputs are delivered, the network inside stays NCHW; default: as the rewritten
graph has them; :mod:`graphsurgery.targets.onnx.layout`).
Needs the ``onnx`` extra (``pip install 'graphsurgery[onnx]'``); without it, using the target
is a one-line error naming the extra.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..base import Artefact, Audit, Finding, Target
from .rules import RULES

if TYPE_CHECKING:
    from ...ir.graph import Graph
    from ...pipeline import Pipeline
    from ...runners import Runner

#: Passes the target takes out of a pipeline it extends (ONNX keeps the original layout).
REMOVED = ("core::to_nhwc",)
MODULES = ("onnx", "onnx_graphsurgeon", "tf2onnx", "onnxruntime")


class ONNXTarget(Target):
    """ONNX models in the original (NCHW) layout, audited ONNX-clean, run in onnxruntime."""

    name = "onnx"
    label = "ONNX"
    description = "ONNX model (tf2onnx, cleaned by onnx-graphsurgeon), NCHW, onnxruntime"
    filename = "model.onnx"
    rules = RULES
    options = ("quantize", "opset", "layout")

    def __init__(self, opset: int | str | None = None, layout: str | None = None) -> None:
        from .export import DEFAULT_OPSET

        self.opset = DEFAULT_OPSET if opset is None else _opset(opset)
        self.layout = None if layout is None else _layout(layout)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The base checks, then: the extra is installed; ``quantize`` is fp32 or unset;
        ``opset`` an integer from 9 to 21 and ``layout`` nchw or nhwc (strings from the
        command line are converted)."""
        from .export import require

        out = super().check_options(options)
        if out.get("quantize") not in (None, "fp32"):
            raise UsageError(f"target onnx: --quantize {out['quantize']} is not supported "
                             "(fp32 only)")
        if "opset" in out:
            out["opset"] = _opset(out["opset"])
        if "layout" in out:
            out["layout"] = _layout(out["layout"])
        require(*MODULES)
        return out

    def lint(self, graph: Graph) -> list[Finding]:
        from .rules import lint

        return lint(graph)

    def extend(self, pipeline: Pipeline) -> Pipeline:
        """``pipeline`` without ``core::to_nhwc`` (the ONNX target keeps NCHW)."""
        from ...pipeline import Pipeline, Step

        items = [it for it in pipeline.items
                 if not (isinstance(it, Step) and it.pass_id in REMOVED)]
        return Pipeline(items, name=pipeline.name)

    def export(self, graph: Graph, outdir: str | os.PathLike, **options: Any) -> Artefact:
        from .export import save, to_onnx

        t0 = time.perf_counter()
        opset = _opset(options.get("opset") or self.opset)
        layout = options.get("layout") or self.layout
        model = to_onnx(graph, opset=opset, layout=None if layout is None else _layout(layout))
        path = Path(outdir) / self.filename
        size = save(model, path)
        details: dict[str, Any] = {"opset": opset}
        if layout is not None:
            details["layout"] = layout
        return Artefact(self.name, path, size, time.perf_counter() - t0, details)

    def audit(self, artefact: Artefact) -> Audit:
        import onnx

        from .rules import audit_model

        model = onnx.load(str(artefact.path))
        ops = collections.Counter(n.op_type for n in model.graph.node)
        facts = {
            "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          None),
            "nodes": len(model.graph.node),
            "initializers": len(model.graph.initializer),
            "ops": dict(sorted(ops.items())),
        }
        return Audit(self.name, str(artefact.path), artefact.size, audit_model(model), facts)

    def runner(self, artefact: Artefact) -> Runner:
        """onnxruntime; inputs and outputs that ``layout`` permuted are fed and read in the
        graph's layout (the permutations are in the model's metadata)."""
        import json

        import onnx

        from ...runners import ONNXRunner
        from .layout import METADATA_KEY, LayoutRunner

        inner = ONNXRunner(artefact.path)
        props = {p.key: p.value for p in onnx.load(str(artefact.path),
                                                     load_external_data=False).metadata_props}
        if METADATA_KEY in props:
            return LayoutRunner(inner, json.loads(props[METADATA_KEY]))
        return inner


def _opset(value: int | str) -> int:
    """``opset`` as an int from 9 to 21 (UsageError naming the option otherwise)."""
    try:
        opset = int(str(value).strip())
    except ValueError:
        raise UsageError(f"target onnx: option opset={value!r} is not an integer "
                         "(9 to 21)") from None
    if not 9 <= opset <= 21:
        raise UsageError(f"target onnx: option opset={opset} is out of range (9 to 21)")
    return opset


def _layout(value: str) -> str:
    """``layout`` as ``nchw`` or ``nhwc`` (UsageError naming the option otherwise)."""
    from .layout import LAYOUTS

    text = str(value).strip().lower()
    if text not in LAYOUTS:
        raise UsageError(f"target onnx: option layout={value!r} is not one of "
                         f"{', '.join(LAYOUTS)}")
    return text


__all__ = ["RULES", "ONNXTarget"]
