"""Measuring a step in a fresh subprocess: wall time and peak RSS."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def run_child(module: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m module args`` and return its JSON report plus wall time and peak RSS.

    The child prints one JSON object on its last stdout line, including its own peak RSS
    (see :func:`peak_rss_mb`), so the parent's memory never counts.
    """
    cmd = [sys.executable, "-m", module, *args]
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                            cwd=Path(__file__).resolve().parent.parent)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    # The child reports its own peak RSS (VmHWM) in its JSON line.
    if proc.returncode != 0:
        return {"ok": False, "error": err.decode(errors="replace").strip().splitlines()[-1:],
                "wall_s": wall}
    report = json.loads(out.decode().strip().splitlines()[-1])
    report["process_wall_s"] = wall
    report["ok"] = True
    return report


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB.

    Read from ``VmHWM`` in /proc: unlike ``getrusage().ru_maxrss``, which Linux carries
    across ``execve``, it belongs to this process image alone, so a child started by a
    parent that once used a lot of memory reports its own peak.
    """
    return _status_mb("VmHWM:")


def current_rss_mb() -> float:
    return _status_mb("VmRSS:")


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# --------------------------------------------------------------------------- helpers for
# the comparison benchmarks (issue 6); the functions above keep their behaviour.
def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS, so the next phase's peak is its own.

    Writes ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0). Returns False where that is
    not possible, in which case :func:`peak_rss_mb` keeps the peak since the process began.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def record_error(report: dict[str, Any], exc: BaseException) -> None:
    """Put a failed step's exception in ``report``: ``error`` (its type and first line),
    ``error_detail`` (the next lines) and the end of the traceback. Call it in ``except``."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    report["error"] = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]
    report["error_detail"] = lines[1:6]
    report["traceback"] = traceback.format_exc().splitlines()[-4:]


def emit(report: dict[str, Any]) -> None:
    """Print a child's report: one JSON line, the last line of its stdout."""
    sys.stdout.flush()
    print(json.dumps(report, default=str), flush=True)


class Phases:
    """Wall time and peak RSS of consecutive phases of one child process::

        ph = Phases()
        with ph("load"):
            graph = load(path)
        ph.report  # {"load": {"s": 0.2, "peak_rss_mb": 310.0, "rss_before_mb": 52.0}}

    Each phase resets the peak (:func:`reset_peak_rss`) when it starts, so its
    ``peak_rss_mb`` is the highest RSS reached during that phase (memory still held from
    earlier phases counts, as it would for a user). ``overall_peak_rss_mb`` is the maximum.
    """

    def __init__(self) -> None:
        self.report: dict[str, dict[str, float]] = {}
        self.resets = True

    def __call__(self, name: str) -> Any:
        @contextlib.contextmanager
        def phase() -> Any:
            before = current_rss_mb()
            self.resets = reset_peak_rss() and self.resets
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self.report[name] = {"s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
                                     "rss_before_mb": before}

        return phase()

    @property
    def overall_peak_rss_mb(self) -> float:
        return max((p["peak_rss_mb"] for p in self.report.values()), default=float("nan"))


def run_child_safe(
    module: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """Like :func:`run_child`, but never raises and stops a child that runs past ``timeout``.

    The child runs in its own session so that a timeout ends it and everything it started
    (its process group) and nothing else. Failures come back as ``{"ok": False, "error":
    "<last stderr line>", "stderr_tail": [...], "wall_s": ...}`` (``"timed_out": True`` too
    when the limit hit). A child that printed a JSON report and then failed keeps its report.
    """
    cmd = [python or sys.executable, "-m", module, *args]
    return run_command_safe(cmd, env=env, timeout=timeout, parse_json=True)


#: Children above this resident size are stopped (the machine has 24 GiB and is shared with
#: other work: better a recorded "out of memory" than the kernel's OOM killer choosing).
MAX_RSS_MB = float(os.environ.get("BENCH_MAX_RSS_MB", 16 * 1024))


def run_command_safe(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    parse_json: bool = False,
    cwd: str | os.PathLike | None = None,
    max_rss_mb: float | None = None,
) -> dict[str, Any]:
    """Run ``cmd`` with a time and memory limit; return ``ok``, ``rc``, wall time, output.

    The command runs in its own session; past ``timeout`` seconds, or when its resident
    size passes ``max_rss_mb`` (default :data:`MAX_RSS_MB`), its process group is killed and
    the result says so (``timed_out`` / ``out_of_memory``). With ``parse_json`` the last
    stdout line that parses as a JSON object is merged in; otherwise the output is returned
    (``stdout``, ``stderr``).
    """
    import tempfile

    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    limit_mb = MAX_RSS_MB if max_rss_mb is None else max_rss_mb
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        try:
            proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, env=full_env,
                                    start_new_session=True,
                                    cwd=cwd or Path(__file__).resolve().parent.parent)
        except OSError as exc:
            return {"ok": False, "error": f"cannot start {cmd[0]}: {exc}", "wall_s": 0.0}
        timed_out = killed_rss = None
        peak = 0.0
        while proc.poll() is None:
            rss = _pid_rss_mb(proc.pid)
            peak = max(peak, rss)
            if timeout is not None and time.perf_counter() - t0 > timeout:
                timed_out = True
            elif rss > limit_mb:
                killed_rss = rss
            if timed_out or killed_rss:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        fout.seek(0)
        ferr.seek(0)
        out_text = fout.read().decode(errors="replace")
        err_text = ferr.read().decode(errors="replace")
    report: dict[str, Any] = {}
    if parse_json:
        for line in reversed(out_text.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    report = json.loads(line)
                    break
                except json.JSONDecodeError:
                    continue
    report.setdefault("ok", proc.returncode == 0)
    report["rc"] = proc.returncode
    report["process_wall_s"] = wall
    report["sampled_peak_rss_mb"] = peak
    if timed_out:
        report.update(ok=False, timed_out=True, error=f"timed out after {timeout:.0f} s")
    elif killed_rss:
        report.update(ok=False, out_of_memory=True,
                      error=f"stopped at {killed_rss / 1024:.1f} GiB resident (limit "
                      f"{limit_mb / 1024:.3g} GiB on a {_mem_total_gib():.0f} GiB machine)")
    elif proc.returncode != 0 and "error" not in report:
        report["ok"] = False
        if proc.returncode < 0:
            report["error"] = (f"killed by signal {-proc.returncode}"
                               + (" (out of memory?)" if proc.returncode == -9 else ""))
        else:
            report["error"] = last_error_line(err_text) or last_error_line(out_text) or (
                f"exit status {proc.returncode}")
    if not report.get("ok"):
        report["stderr_tail"] = strip_ansi(err_text).strip().splitlines()[-15:]
    if not parse_json:
        report["stdout"] = out_text
        report["stderr"] = err_text
    return report


def _pid_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _mem_total_gib() -> float:
    try:
        with open("/proc/meminfo") as fh:
            return int(fh.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def last_error_line(text: str) -> str:
    """The most telling line of a failed program's output: its last ``...Error: ...`` line
    (a Python exception), else its last non-empty line."""
    lines = [ln.strip() for ln in strip_ansi(text).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Killed)\b.*:", ln):
            return ln[:400]
    return lines[-1][:400] if lines else ""


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    if not n:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def calibrate() -> float:
    """Seconds for a fixed pure-Python workload (tuple keys, dict updates, a sort: the kind
    of work the passes do), the best of three runs.

    The shared machines switch between a fast and a slow state that moves Python-bound
    timings by up to half; printed next to each pipeline time, this tells the states apart.
    """
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        table: dict[tuple[str, int], int] = {}
        for i in range(200_000):
            key = (f"n{i % 5000}", i & 7)
            table[key] = table.get(key, 0) + i
        sorted(table.items())
        best = min(best, time.perf_counter() - t0)
    return best

