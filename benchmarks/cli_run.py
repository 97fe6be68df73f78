"""The ``graphsurgery`` command end to end, as a user runs it, with its wall time and peak RSS.

``python -m benchmarks.cli_run run MODEL -p PIPELINE -o OUT [--report ...]`` calls
``graphsurgery.cli.main`` with those arguments in this process (so ``VmHWM`` is the
command's own) and prints one JSON line: exit status, wall time, peak RSS, the last lines
the command logged, and from ``OUT/summary.json`` the timings the command recorded itself
(pipeline seconds, export seconds and any ``report`` timing). With ``--report`` it also times
the report itself by wrapping its entry points (``report_render_s``: the recorder's hooks
during the pipeline plus ``write_report``).

``steps`` is the command's wall time split by step, measured by wrapping the driver's steps in
this process: ``load``, ``import_tf`` (TensorFlow's import, wherever the main thread
does it), ``passes``, ``convert`` and ``audit`` (the export), ``verify``
(what the main thread spends verifying: waiting for the reference runs, the artefact's run,
the comparison) and ``report``; with ``--verify`` also ``background`` (the reference runs
the driver made in threads meanwhile, from ``Result.timings``, where it has them).
``steps_line`` is the same on one line. ``cpu_s`` is the CPU time of the whole command (all
threads: on a machine with two cores, about twice the best wall time it can reach) and
``main_thread_cpu_s`` the main thread's: both move far less than wall times when other
work shares the cores.

``python -m benchmarks.cli_run --has-option run --report`` prints whether ``graphsurgery run``
accepts ``--report`` (used to time issue 5's report only once it exists).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._measure import emit, peak_rss_mb


def has_option(command: str, option: str) -> bool:
    """Whether ``graphsurgery COMMAND --help`` lists ``option``."""
    from graphsurgery import cli

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        cli.main([command, "--help"])
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", buf.getvalue()) is not None


def _report_timings(summary: dict[str, Any]) -> dict[str, Any]:
    """Every ``*report*`` entry of summary.json that holds a number of seconds."""
    found: dict[str, Any] = {}

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                p = f"{path}.{k}" if path else str(k)
                if "report" in p.lower() and isinstance(v, int | float) and not isinstance(
                        v, bool) and ("s" == k or "second" in k or k.endswith("_s")):
                    found[p] = v
                walk(v, p)

    walk(summary, "")
    return found


def _wrap_timed(timings: dict[str, float], owner: Any, attr: str, key: str) -> None:
    """Replace ``owner.attr`` by a wrapper that adds its run time to ``timings[key]``
    (nothing when ``owner`` has no ``attr``)."""
    fn = getattr(owner, attr, None)
    if fn is None:
        return

    @functools.wraps(fn)
    def timed(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0

    setattr(owner, attr, timed)


def _time_report(timings: dict[str, float]) -> None:
    """Time what ``--report`` adds, by wrapping it: the recorder's per-pass hooks (during the
    pipeline) and ``write_report`` (after it). Does nothing if the report code is absent."""
    try:
        from graphsurgery.render import report
    except ImportError:
        return
    wrap = functools.partial(_wrap_timed, timings)
    wrap(report, "write_report", "write_report_s")
    for hook in ("before_pass", "after_pass", "on_failure"):
        wrap(report.ReportRecorder, hook, "recorder_s")


def _time_steps(timings: dict[str, float], background: dict[str, float]) -> None:
    """Time each step of ``graphsurgery run`` by wrapping the functions that do it (the
    driver looks them up at call time); ``background`` gets ``Result.timings``' runs."""
    from graphsurgery import driver
    from graphsurgery.export import audit, tflite

    wrap = functools.partial(_wrap_timed, timings)
    wrap(driver, "load_model", "load")
    wrap(tflite, "import_tensorflow", "import_tf")
    wrap(driver, "_run_pipeline", "passes")
    wrap(tflite, "convert_tflite", "convert")
    wrap(audit, "audit_tflite", "audit")
    wrap(driver, "_verify", "verify")
    try:
        from graphsurgery.render import report
    except ImportError:
        pass
    else:
        wrap(report, "write_report", "report")
    convert = driver.convert

    @functools.wraps(convert)
    def keep_timings(*a: Any, **kw: Any) -> Any:
        result = convert(*a, **kw)
        background.update({k: v for k, v in getattr(result, "timings", {}).items()
                           if k.endswith("_run") and v is not None})
        return result

    driver.convert = keep_timings


def _process_cpu() -> float:
    """CPU seconds (user + system) of this process, all threads, so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> None:
    if argv[:1] == ["--has-option"]:
        emit({"ok": True, "has_option": has_option(argv[1], argv[2])})
        return
    from graphsurgery import cli

    measured: dict[str, float] = {}
    if "--report" in argv:
        _time_report(measured)
    steps: dict[str, float] = {}
    background: dict[str, float] = {}
    _time_steps(steps, background)

    t0, main_cpu0, cpu0 = time.perf_counter(), time.thread_time(), _process_cpu()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code if isinstance(exc.code, int) else 2
    wall = time.perf_counter() - t0
    main_cpu, cpu = time.thread_time() - main_cpu0, _process_cpu() - cpu0
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    # 0: done; 3 (EXIT_PROBLEMS): done, but a pass, the conversion or the audit found
    # problems (recorded in summary.json); 1 internal error, 2 usage/input error.
    rep: dict[str, Any] = {"ok": rc in (0, 3), "rc": rc, "argv": argv, "wall_s": wall,
                           "cpu_s": round(cpu, 3), "main_thread_cpu_s": round(main_cpu, 3),
                           "peak_rss_mb": peak_rss_mb(), "log_tail": lines[-5:]}
    if rc != 0:
        rep["error"] = lines[-1] if lines else f"exit status {rc}"
    rep["steps"] = {k: round(v, 3) for k, v in steps.items()}
    if background:
        rep["steps"]["background"] = {k: round(v, 3) for k, v in background.items()}
    rep["steps_line"] = ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()) + "".join(
        f"; in the background: {k.removesuffix('_run')} run {v:.1f} s"
        for k, v in background.items())
    rep["load_avg"] = list(os.getloadavg())
    if "-o" in argv:
        out = Path(argv[argv.index("-o") + 1])
        summary_path = out / "summary.json"
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            rep["pipeline_s"] = summary.get("seconds")
            rep["export"] = summary.get("export")
            rep["report_timings"] = _report_timings(summary)
    if "--report" in argv:
        rep["report_measured"] = measured
        if measured:
            rep["report_render_s"] = sum(measured.values())
            rep["files"] = sorted(p.name for p in out.iterdir())
    emit(rep)


if __name__ == "__main__":
    main(sys.argv[1:])
