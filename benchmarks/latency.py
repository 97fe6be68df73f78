"""Inference latency of a ``.tflite`` (LiteRT) or ``.onnx`` (onnxruntime) model.

Run as a child process::

    python -m benchmarks.latency tflite model.tflite --threads 2 --runs 10 --warmup 2

Inputs are seeded standard-normal arrays of each input's static shape (an unknown dimension
becomes 1; zero-sized inputs such as ``labels_in [1, 0]`` stay empty), the same arrays for
every run. Prints one JSON line: load time, every run's time, median/min/mean, the peak
RSS of the process (model loaded and run), the output's shape and whether two runs on the
same inputs gave the same output (``max_run_to_run_diff``: random-noise models do not). A
model that does not load or run is a result too (``ok: false``, ``error``).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from benchmarks._measure import emit, median, peak_rss_mb, record_error


def _feeds(runner: Any, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in runner.inputs:
        shape = [1 if d is None else int(d) for d in (spec.shape or (1,))]
        dtype = spec.dtype if spec.dtype is not None else np.dtype(np.float32)
        if np.dtype(dtype).kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype)
    return feeds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["tflite", "onnx"])
    ap.add_argument("path")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--save-output", default=None, metavar="NPY",
                    help="write the first run's last output here (to compare runtimes)")
    args = ap.parse_args(argv)
    rep: dict[str, Any] = {"kind": args.kind, "path": args.path, "threads": args.threads,
                           "runs": args.runs, "warmup": args.warmup, "ok": False,
                           "load_average_start": os.getloadavg()}
    try:
        t0 = time.perf_counter()
        if args.kind == "tflite":
            from graphsurgery.export.tflite import capture_output
            from graphsurgery.runners import TFLiteRunner

            with capture_output():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
                runner = TFLiteRunner(args.path, num_threads=args.threads)
        else:
            from graphsurgery.runners import ONNXRunner

            runner = ONNXRunner(args.path, num_threads=args.threads)
        rep["load_s"] = time.perf_counter() - t0
        rep["inputs"] = {s.name: list(s.shape or ()) for s in runner.inputs}
        feeds = _feeds(runner)
        t0 = time.perf_counter()
        first = runner.run(feeds)
        rep["first_run_s"] = time.perf_counter() - t0
        second = runner.run(feeds)
        if args.save_output and first:
            np.save(args.save_output, first[-1])
        rep["output_shape"] = list(first[-1].shape) if first else None
        rep["output_finite"] = bool(all(np.isfinite(o).all() for o in first))
        rep["max_run_to_run_diff"] = float(max(
            (float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0)
            for a, b in zip(first, second)
        )) if first else 0.0
        for _ in range(max(args.warmup - 2, 0)):
            runner.run(feeds)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            runner.run(feeds)
            times.append(time.perf_counter() - t0)
        rep.update({"times_s": times, "median_s": median(times), "min_s": min(times),
                    "mean_s": sum(times) / len(times), "ok": True})
    except Exception as exc:  # not loading or not running is the result
        record_error(rep, exc)
    rep["load_average_end"] = os.getloadavg()
    rep["peak_rss_mb"] = peak_rss_mb()
    emit(rep)


if __name__ == "__main__":
    main()
