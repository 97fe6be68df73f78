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

Options: ``opset`` (``ONNXTarget(opset=13)`` as ``gs.convert(..., target=...)``; default 17).
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
    options = ("quantize", "opset")

    def __init__(self, opset: int | None = None) -> None:
        from .export import DEFAULT_OPSET

        self.opset = DEFAULT_OPSET if opset is None else int(opset)
        if not 9 <= self.opset <= 21:
            raise UsageError(f"target onnx: opset {opset} is out of range (9 to 21)")

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The base checks, then: the extra is installed; ``quantize`` is fp32 or unset."""
        from .export import require

        out = super().check_options(options)
        if out.get("quantize") not in (None, "fp32"):
            raise UsageError(f"target onnx: --quantize {out['quantize']} is not supported "
                             "(fp32 only)")
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
        opset = int(options.get("opset") or self.opset)
        model = to_onnx(graph, opset=opset)
        path = Path(outdir) / self.filename
        size = save(model, path)
        return Artefact(self.name, path, size, time.perf_counter() - t0, {"opset": opset})

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
        from ...runners import ONNXRunner

        return ONNXRunner(artefact.path)


__all__ = ["RULES", "ONNXTarget"]
