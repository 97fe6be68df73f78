"""The Core ML target: ``OUTDIR/model.mlpackage`` (an ML Program), audited structurally.

* lint and audit: :mod:`graphsurgery.targets.coreml.rules` (``ml-program``,
  ``no-custom-layers``, ``plain-modulation``; the audit lists the MIL op histogram);
* passes: none; the graph keeps the ``stylegan`` preset's NHWC layout (coremltools
  converts NHWC convolutions and removes the transposes it adds itself; its NCHW depthwise
  convolutions fail: "# of input channels 16 not divisible by groups 11");
* export: ``coremltools.convert(graph_def, source="tensorflow", convert_to="mlprogram")``,
  fp32 compute precision (``quantize="fp16"``: fp16; ``"int8"``: 8-bit linear weights);
  ``CoreMLTarget(compress=("linear8", "palettize6", "palettize4"))`` also writes
  ``model.<variant>.mlpackage`` with ``coremltools.optimize.coreml`` (sizes in the audit;
  k-means palettization when scikit-learn is installed, else uniform);
* runner: :class:`graphsurgery.targets.coreml.runner.CoreMLRunner` on macOS
  (``coremltools.models.MLModel(path).predict``). Core ML cannot run predictions on Linux:
  there ``run --verify`` checks the rewritten GraphDef only and the audit says so
  (``"prediction": "skipped: ..."``), and ``graphsurgery verify model.mlpackage --reference
  model.pb`` audits the package and exits 4 with one line saying predictions need macOS.

Options: ``quantize`` and ``compress`` (``--target-option compress=linear8,palettize4``, or
``CoreMLTarget(compress=(...))``): each variant is written beside the model, listed in
``Result.artefacts`` (``coreml.linear8``) and ``summary.json``'s ``export.variants`` with
its size.

Needs the ``coreml`` extra (``pip install 'graphsurgery[coreml]'``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UsageError, VerificationError
from ...ir import opdefs
from ..base import Artefact, Audit, Finding, Target
from .rules import RULES

if TYPE_CHECKING:
    from ...ir.graph import Graph
    from ...runners import Runner

EXTRA = "pip install 'graphsurgery[coreml]'"
#: --quantize values: compute precision, and the weight compression of the main artefact.
QUANTIZE = {"fp32": ("FLOAT32", None), "fp16": ("FLOAT16", None), "int8": ("FLOAT32", "linear8")}
#: Weight compression variants (coremltools.optimize.coreml).
COMPRESSIONS = ("linear8", "palettize6", "palettize4")
PREDICTION_NOTE = ("skipped: Core ML cannot run predictions on Linux; run "
                   "coremltools.models.MLModel(path).predict(...) on macOS")


def require() -> Any:
    """``coremltools``, or a one-line UsageError naming the ``coreml`` extra."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            import coremltools
    except ImportError:
        raise UsageError(f"the coreml target needs coremltools: {EXTRA}") from None
    return coremltools


class CoreMLTarget(Target):
    """Core ML ML Programs without custom layers, the modulation as multiply/conv/multiply."""

    name = "coreml"
    label = "Core ML"
    description = "Core ML ML Program (.mlpackage, coremltools), no custom layers"
    filename = "model.mlpackage"
    suffixes = (".mlmodel",)  # `check` audits the older single-file format too
    rules = RULES
    options = ("quantize", "compress")

    def __init__(self, compress: tuple[str, ...] | list[str] | str = ()) -> None:
        self.compress = _compressions(compress)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The base checks, then: coremltools is installed; ``quantize`` is one we map;
        ``compress`` names known variants (``"linear8,palettize4"`` or a list)."""
        out = super().check_options(options)
        q = out.get("quantize")
        if q is not None and q not in QUANTIZE:
            raise UsageError(f"target coreml: --quantize {q} is not supported "
                             f"(choose from {', '.join(QUANTIZE)})")
        if "compress" in out:
            out["compress"] = _compressions(out["compress"])
        require()
        return out

    def lint(self, graph: Graph) -> list[Finding]:
        from .rules import lint

        return lint(graph)

    def export(self, graph: Graph, outdir: str | os.PathLike, **options: Any) -> Artefact:
        ct = require()
        hosts = opdefs.side_effects(graph)
        if hosts:
            raise VerificationError(f"node {hosts[0].node!r}: {hosts[0].reason}; graphsurgery "
                                    "does not convert a graph that acts on the host")
        quantize = options.get("quantize") or "fp32"
        precision, compression = QUANTIZE[quantize]
        t0 = time.perf_counter()
        model = _convert(ct, graph, getattr(ct.precision, precision))
        path = Path(outdir) / self.filename
        main = _compress(model, compression) if compression else model
        main.save(str(path))
        sizes = {quantize: _size(path)}
        compress = options["compress"] if "compress" in options else self.compress
        variants: dict[str, tuple[Path, int]] = {}
        for variant in compress:
            extra = Path(outdir) / f"model.{variant}.mlpackage"
            _compress(model, variant).save(str(extra))
            sizes[variant] = _size(extra)
            variants[variant] = (extra, sizes[variant])
        details: dict[str, Any] = {"quantize": quantize, "sizes": sizes}
        if any(v.startswith("palettize") for v in compress):
            details["palettize_mode"] = palettize_mode()
        return Artefact(self.name, path, sizes[quantize], time.perf_counter() - t0, details,
                        variants)

    def audit(self, artefact: Artefact) -> Audit:
        ct = require()
        from .rules import audit_spec, mil_ops
        from .runner import prediction_unavailable

        spec = ct.utils.load_spec(str(artefact.path))
        facts: dict[str, Any] = {
            "model_type": spec.WhichOneof("Type"),
            "ops": mil_ops(spec),
        }
        if prediction_unavailable():
            facts["prediction"] = PREDICTION_NOTE
        for key in ("sizes", "palettize_mode"):
            if key in artefact.details:
                facts[key] = artefact.details[key]
        return Audit(self.name, str(artefact.path), artefact.size, audit_spec(spec), facts)

    def runner(self, artefact: Artefact) -> Runner | None:
        """Core ML on macOS; None elsewhere (:meth:`runner_unavailable` says why)."""
        from .runner import CoreMLRunner, prediction_unavailable

        return None if prediction_unavailable() else CoreMLRunner(artefact.path)

    def runner_unavailable(self) -> str | None:
        """One line saying why :meth:`runner` is None here, or None."""
        from .runner import prediction_unavailable

        return prediction_unavailable()


def _convert(ct: Any, graph: Graph, precision: Any) -> Any:
    outputs = [t.node if t.port == 0 else str(t) for t in graph.outputs]
    quiet = [logging.getLogger(n) for n in ("coremltools", "tensorflow")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return ct.convert(graph.to_tf_graph_def(), source="tensorflow",
                              convert_to="mlprogram", outputs=outputs,
                              compute_precision=precision)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VerificationError(f"coremltools failed: {first}") from exc
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def _compress(model: Any, variant: str) -> Any:
    """``model`` with compressed weights: 8-bit linear, or 6/4-bit k-means palettization."""
    import coremltools.optimize.coreml as cto

    if variant == "linear8":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", weight_threshold=0)
        return cto.linear_quantize_weights(model, cto.OptimizationConfig(global_config=op))
    bits = int(variant.removeprefix("palettize"))
    op = cto.OpPalettizerConfig(mode=palettize_mode(), nbits=bits, weight_threshold=0)
    return cto.palettize_weights(model, cto.OptimizationConfig(global_config=op))


def palettize_mode() -> str:
    """``"kmeans"`` (coremltools needs scikit-learn for it), else ``"uniform"``."""
    import importlib.util

    return "kmeans" if importlib.util.find_spec("sklearn") is not None else "uniform"


def _compressions(value: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """Compression variants from a list or ``"linear8,palettize4"`` (UsageError naming the
    option for an unknown one)."""
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    names = [v for v in names if v]
    bad = [c for c in names if c not in COMPRESSIONS]
    if bad:
        raise UsageError(f"target coreml: option compress: unknown compression {bad[0]!r} "
                         f"(choose from {', '.join(COMPRESSIONS)})")
    return tuple(dict.fromkeys(names))


def _size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (an .mlpackage)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


__all__ = ["COMPRESSIONS", "RULES", "CoreMLTarget"]
