"""Two models timed in alternation in one process: a ratio that survives a busy machine.

``python -m benchmarks.paired tflite:A.tflite onnx:B.onnx --threads 2 --runs 10``

Separate processes measured minutes apart see different background load (the machine is
shared); here both models are loaded once, fed the same arrays (matched by input name, so
``latents_in`` and ``latents_in:0`` get the same latents), warmed up, then run A, B, A, B...
with a short sleep before each run (without it, onnxruntime's worker threads, which
spin-wait after a run, steal the CPU from the LiteRT run that follows).
The report has each model's median and the median of the per-round ratios A/B, which is
the figure to quote for "how much faster". Prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from benchmarks._measure import emit, median, peak_rss_mb, record_error


def _runner(spec: str, threads: int) -> Any:
    kind, _, path = spec.partition(":")
    if kind == "tflite":
        from graphsurgery.export.tflite import capture_output
        from graphsurgery.runners import TFLiteRunner

        with capture_output():
            return TFLiteRunner(path, num_threads=threads)
    if kind == "onnx":
        from graphsurgery.runners import ONNXRunner

        return ONNXRunner(path, num_threads=threads)
    raise ValueError(f"unknown model kind {kind!r} (tflite:PATH or onnx:PATH)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--cooldown", type=float, default=0.25,
                    help="seconds of sleep before each run, so that the other runtime's "
                    "worker threads (onnxruntime's spin-wait) are idle when it starts")
    args = ap.parse_args(argv)
    rep: dict[str, Any] = {"a": args.a, "b": args.b, "threads": args.threads,
                           "runs": args.runs, "warmup": args.warmup, "ok": False,
                           "cooldown_s": args.cooldown,
                           "load_average_start": os.getloadavg()}
    try:
        from benchmarks.latency import _feeds
        from graphsurgery.runners import canonical_name

        a, b = _runner(args.a, args.threads), _runner(args.b, args.threads)
        feeds = {canonical_name(k): v for k, v in _feeds(a).items()}
        fa = {s.name: feeds[canonical_name(s.name)] for s in a.inputs}
        fb = {s.name: feeds[canonical_name(s.name)] for s in b.inputs}
        for _ in range(max(args.warmup, 1)):
            a.run(fa)
            b.run(fb)
        ta, tb = [], []
        for _ in range(args.runs):
            time.sleep(args.cooldown)
            t0 = time.perf_counter()
            a.run(fa)
            ta.append(time.perf_counter() - t0)
            time.sleep(args.cooldown)
            t0 = time.perf_counter()
            b.run(fb)
            tb.append(time.perf_counter() - t0)
        rep.update(ok=True, a_times_s=ta, b_times_s=tb, a_median_s=median(ta),
                   b_median_s=median(tb), ratio_median=median([x / y for x, y in zip(ta, tb)]),
                   ratio_of_mins=min(ta) / min(tb))
    except Exception as exc:  # recorded
        record_error(rep, exc)
    rep["load_average_end"] = os.getloadavg()
    rep["peak_rss_mb"] = peak_rss_mb()
    emit(rep)


if __name__ == "__main__":
    main()
