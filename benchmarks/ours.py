"""graphsurgery on one model, phase by phase: load, passes, save, TFLite conversion.

Run as a child process (``python -m benchmarks.ours MODEL OUTDIR PIPELINE``) so its wall
times and peak RSS are its own. It does what ``graphsurgery run MODEL -p PIPELINE -o OUTDIR``
does, phase by phase with the driver's own pieces (:func:`graphsurgery.driver.load_model`,
the preset with its defaults, ``model.pb``, the TFLite target's ``export`` into
``model.tflite`` with builtins only), timing each phase and
resetting the peak RSS between phases (:class:`benchmarks._measure.Phases`). A failed phase
is recorded (``error``) and ends the run; the JSON line is printed in every case. Like the
command, it builds the preset (importing its plugins: the ``import`` phase) before loading
the model, and :meth:`~graphsurgery.Pipeline.warm_up` starts loading the shape library
then, so that it loads during ``load``.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks._measure import Phases, calibrate, current_rss_mb, emit


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:400]


def main(model: str, outdir: str, pipeline: str, passes_only: bool = False) -> None:
    """Every phase; with ``passes_only`` stop after saving the rewritten graph (the repeats
    that time the pipeline again in a fresh process)."""
    t_start = time.perf_counter()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    ph = Phases()
    rep: dict[str, Any] = {"model_path": model, "pipeline": pipeline, "phases": ph.report}
    try:
        with ph("import"):
            import graphsurgery as gs
            from graphsurgery.driver import load_model
            from graphsurgery.export import audit_tflite
            from graphsurgery.export.tflite import import_tensorflow

            target = gs.get_target("tflite")

            # as `graphsurgery run` does: the preset (its plugins imported) before the
            # model, so that the shape library loads while the model is read
            pipe = gs.Pipeline.preset(pipeline)
            pipe.warm_up()
        rep["base_rss_mb"] = current_rss_mb()
        with ph("load"):
            graph = load_model(model)
        rep["nodes_before"] = len(graph)
        rep["inputs"] = [str(t) for t in graph.inputs]
        rep["outputs"] = [str(t) for t in graph.outputs]
        with ph("passes"):
            result = pipe.run(graph)
        rep["pipeline_ok"] = bool(result.ok)
        rep["nodes_after"] = len(graph)
        rep["ops_after"] = dict(sorted(graph.op_counts().items()))
        rep["passes_changed"] = sum(bool(r.changed) for r in result.records)
        with ph("save"):
            gs.save(graph, out / "model.pb")
        rep["pb_bytes"] = (out / "model.pb").stat().st_size
        rep["calibration_s"] = calibrate()
        if passes_only:
            rep["ok"] = True
            emit(rep)
            return
        # The converter needs the tensorflow package; the passes do not (shape inference
        # loads TensorFlow's C library directly), so its import is timed on its own.
        rep["tensorflow_imported_before_export"] = "tensorflow" in sys.modules
        with ph("tensorflow_import"):
            import_tensorflow()
        rep["tflite_ok"] = False
        with ph("tflite"):
            try:
                conv = target.export(graph, out)
            except Exception as exc:  # VerificationError from the converter, or anything
                rep["tflite_error"] = str(exc).splitlines()[0][:600] if str(exc) else repr(exc)
                conv = None
        if conv is not None:
            rep["tflite_ok"] = True
            rep["tflite_bytes"] = conv.size
            rep["converter_s"] = conv.seconds
            rep["tflite_path"] = str(conv.path)
            with ph("audit"):
                audit = audit_tflite(conv.path, run=False, analyzer=False)
            rep["audit"] = {
                "clean": audit.clean and not audit.violations,
                "violations": len(audit.violations),
                "first_violations": audit.violations[:5],
                "num_ops": audit.num_ops,
                "flex_count": audit.flex_count,
                "custom_count": audit.custom_count,
                "transpose_count": audit.transpose_count,
                "random_count": audit.random_count,
                "max_rank": audit.max_rank,
                "subgraphs": audit.subgraphs,
                "nonconst_weights": len(audit.nonconst_weights),
                "ops": audit.ops,
            }
        rep["ok"] = True
    except Exception as exc:  # a failed phase is a result, not a crash
        rep["ok"] = False
        rep["error"] = _first_line(exc)
        rep["traceback"] = traceback.format_exc().splitlines()[-6:]
    rep["peak_rss_mb"] = ph.overall_peak_rss_mb
    rep["peak_resets_worked"] = ph.resets
    rep["with_imports_s"] = time.perf_counter() - t_start
    emit(rep)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], passes_only="--passes-only" in sys.argv[4:])
