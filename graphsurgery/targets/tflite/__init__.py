"""The TFLite target: builtins-only ``.tflite`` files that are TFLite-clean (see targets.md).

* lint: :mod:`graphsurgery.targets.tflite.lint` (one function per rule, ids in ``RULES``);
* passes: ``tflite::polyphase_transpose_conv`` (after the layout pass) and
  ``tflite::guard_broadcast_folding`` (last, before a trailing ``core::dce``);
* export: :func:`graphsurgery.export.convert_tflite` into ``OUTDIR/model.tflite``;
* audit: :func:`graphsurgery.export.audit_tflite` (the same rule ids);
* runner: :class:`graphsurgery.runners.TFLiteRunner` (LiteRT, default delegates), given the
  audit's LiteRT run so verification on the same feeds does not run the model twice.

Registered through the ``graphsurgery.targets`` entry-point group like any other target.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base import Artefact, Finding, Target
from .lint import RULES

if TYPE_CHECKING:
    from ...export.audit import Audit as TFLiteAudit
    from ...ir.graph import Graph
    from ...pipeline import Pipeline
    from ...runners import Runner

#: Placement of the target's passes: (pass text, the pass id it follows or None for the end).
PASSES: tuple[tuple[str, str | None], ...] = (
    # Up-sampling transposed convolutions as phase convolutions, which LiteRT's XNNPACK
    # runs about twice as fast (needs NHWC, so right after the layout pass).
    ("tflite::polyphase_transpose_conv", "core::to_nhwc"),
    # Keep the converter from folding noise + bias into one [1,H,W,C] constant per layer
    # (it would double the model): last, after every cleanup that could undo it.
    ("tflite::guard_broadcast_folding", None),
)


#: ``--quantize mobile`` and ``mobile-int4`` build for size: the exact rewrites that trade
#: stored weights for speed stay off (the phase convs store 16 taps for 9, Winograd 16 for 9
#: and the union-kernel up-conv 9 for 4), so v1 at 256 px is 28 MB, not 41 MB, in ``mobile``.
SIZE_FIRST: dict[str, dict[str, Any]] = {
    "core::upsample_conv_phases": {"max_factor": 1},
    "core::winograd_conv3x3": {"min_channels": 1 << 30},
    "tflite::polyphase_transpose_conv": {"form": "phases"},
}


class TFLiteTarget(Target):
    """Builtins-only TFLite flatbuffers, audited against every TFLite-clean rule."""

    name = "tflite"
    label = "TFLite"
    description = "TFLite flatbuffer, builtin ops only, audited TFLite-clean (LiteRT)"
    filename = "model.tflite"
    rules = RULES
    options = ("quantize",)

    def lint(self, graph: Graph) -> list[Finding]:
        from .lint import lint

        return lint(graph)

    def passes(self) -> str:
        return ",".join(text for text, _ in PASSES)

    def pass_options(self, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """:data:`SIZE_FIRST` for the mobile quantization modes."""
        return dict(SIZE_FIRST) if options.get("quantize") in ("mobile", "mobile-int4") else {}

    def extend(self, pipeline: Pipeline) -> Pipeline:
        """Each pass after the step it follows (``core::to_nhwc``) when the pipeline has
        it, else at the end; an ending ``core::dce`` stays last."""
        from ...pipeline import Pipeline, Step

        items = list(pipeline.items)
        for text, after in PASSES:
            new = Pipeline.parse(text).items
            at = next((i + 1 for i, it in enumerate(items)
                       if after and isinstance(it, Step) and it.pass_id == after), None)
            if at is None:
                tail = items[-1] if items else None
                at = len(items) - (isinstance(tail, Step) and tail.pass_id == "core::dce")
            items[at:at] = new
        return Pipeline(items, name=pipeline.name)

    def export(self, graph: Graph, outdir: str | os.PathLike, **options: Any) -> Artefact:
        from ...export.tflite import convert_tflite

        t0 = time.perf_counter()
        conv = convert_tflite(graph, Path(outdir) / self.filename,
                              quantize=options.get("quantize") or "fp32")
        details: dict[str, Any] = {"quantize": conv.quantize}
        if conv.weights:  # --quantize mobile: which weights are int8 and which fp16
            details["weights"] = conv.weights
        return Artefact(self.name, conv.path, conv.size, time.perf_counter() - t0, details)

    def audit(self, artefact: Artefact) -> TFLiteAudit:
        """The audit; its LiteRT run is kept (the last one only) for :meth:`runner`."""
        from ...export.audit import audit_tflite

        audit = audit_tflite(artefact.path)
        self._last_run = (str(artefact.path), audit.litert_run)
        return audit

    def runner(self, artefact: Artefact) -> Runner:
        """LiteRT on the artefact. When the audit just ran this same file (same path, inode,
        size and modification time), the runner is given that run: verification on the
        same feeds uses its outputs instead of running the model a second time."""
        from ...export.audit import file_identity
        from ...runners import TFLiteRunner

        path, run = getattr(self, "_last_run", (None, None))
        self._last_run = (None, None)
        if run is not None and path == str(artefact.path) and run.file is not None:
            try:
                same = run.file == file_identity(artefact.path)
            except OSError:
                same = False
            if same:
                return TFLiteRunner(artefact.path, recorded=run)
        return TFLiteRunner(artefact.path)


__all__ = ["PASSES", "RULES", "TFLiteTarget"]
