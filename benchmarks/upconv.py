"""One fused up-sampling layer in LiteRT: the forms of ``tflite::polyphase_transpose_conv``.

``python -m benchmarks.upconv --layers 8x512x512 16x512x512 32x512x256 64x256x128
128x128x64 [--forms phases winograd fused] [--threads 2] [--runs 10] [--cpu]``

Per layer ``HxCixCo`` (input ``[1, H, H, Ci]``) the graph is ProGAN's up-sampling block:
a stride-2 4x4 ``conv2d_transpose`` (SAME) to ``[1, 2H, 2H, Co]``, a bias, leaky ReLU 0.2
and pixel norm. It goes through the pass in each form (thresholds off) and
``core::bias_into_phases``; the ``.tflite`` files are checked against the first form on
the same input and timed in alternation in one process (a short sleep before each run,
as :mod:`benchmarks.paired` does). ``--cpu`` (one thread only) times the calling thread's
CPU time instead of the wall clock: on a shared machine it counts only this model's work.
Prints one JSON line per layer: per form the median in ms and the median of the per-round
ratios first form / this form (above 1: faster than the first), the max abs difference
to the first form, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._measure import median

FORMS = ["phases", "winograd", "fused"]


def layer_graph(h: int, ci: int, co: int, form: str, seed: int = 0) -> Any:
    """The layer's graph after ``tflite::polyphase_transpose_conv`` in ``form``."""
    from graphsurgery.testing import run_pass, tf_graph

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((4, 4, co, ci)) / np.sqrt(4 * ci)).astype(np.float32)
    b = (0.1 * rng.standard_normal(co)).astype(np.float32)

    def build(tf: Any, x: Any) -> Any:
        y = tf.nn.conv2d_transpose(x, w, [1, 2 * h, 2 * h, co], 2, "SAME") + b
        y = tf.nn.leaky_relu(y, 0.2)
        return y * tf.math.rsqrt(tf.reduce_mean(tf.square(y), axis=3, keepdims=True) + 1e-8)

    g, _ = tf_graph(build, x=(1, h, h, ci))
    assert run_pass(g, "tflite::polyphase_transpose_conv", form=form, min_channels=1,
                    min_size=1).changed
    run_pass(g, "core::bias_into_phases")
    return g


def bench(h: int, ci: int, co: int, forms: list[str], threads: int, runs: int,
          cooldown: float, cpu: bool = False) -> dict[str, Any]:
    from graphsurgery.export.tflite import capture_output, convert_tflite
    from graphsurgery.runners import TFLiteRunner

    if cpu and threads != 1:
        raise ValueError("--cpu times one thread: use --threads 1")
    clock = time.thread_time if cpu else time.perf_counter
    rep: dict[str, Any] = {"layer": f"{h}x{ci}x{co}", "threads": threads,
                           "clock": "thread CPU time" if cpu else "wall",
                           "load_average_start": os.getloadavg()}
    x = np.random.default_rng(1).standard_normal((1, h, h, ci)).astype(np.float32)
    runners = []
    with tempfile.TemporaryDirectory() as tmp:
        for form in forms:
            path = Path(tmp) / f"{form}.tflite"
            convert_tflite(layer_graph(h, ci, co, form), path)
            with capture_output():
                runners.append(TFLiteRunner(path, num_threads=threads))
        outs = [r.run({r.inputs[0].name: x})[0] for r in runners]
        times: list[list[float]] = [[] for _ in forms]
        for _ in range(runs):
            for i, r in enumerate(runners):
                time.sleep(cooldown)
                t0 = clock()
                r.run({r.inputs[0].name: x})
                times[i].append(clock() - t0)
    for form, out, t in zip(forms, outs, times):
        rep[form] = {"ms": round(1e3 * median(t), 2),
                     "speedup": round(median([a / b for a, b in zip(times[0], t)]), 3),
                     "max_abs_diff": float(np.abs(out - outs[0]).max())}
    rep["load_average_end"] = os.getloadavg()
    return rep


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", nargs="+", default=["8x512x512", "16x512x512", "32x512x256",
                                                   "64x256x128", "128x128x64"])
    ap.add_argument("--forms", nargs="+", default=FORMS, choices=FORMS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cooldown", type=float, default=0.05)
    ap.add_argument("--cpu", action="store_true", help="thread CPU time (needs --threads 1)")
    args = ap.parse_args(argv)
    for spec in args.layers:
        h, ci, co = (int(v) for v in spec.split("x"))
        print(json.dumps(bench(h, ci, co, args.forms, args.threads, args.runs, args.cooldown,
                               args.cpu)), flush=True)


if __name__ == "__main__":
    main()
