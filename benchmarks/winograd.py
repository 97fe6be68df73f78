"""One 3x3 convolution layer in LiteRT: ``CONV_2D`` against ``core::winograd_conv3x3``.

``python -m benchmarks.winograd --layers 64x512 32x512 128x256 256x128 16x512 8x512
[--threads 2] [--runs 10]``

Per layer ``HxC`` (input ``[1, H, H, C]``, ``C -> C`` channels, SAME, plus a bias and a leaky
ReLU as in a generator block) the TF graph is converted as it is and after the pass (with
its thresholds off), both ``.tflite`` files are loaded, checked against each other on the
same input, and timed in alternation in one process (a short sleep before each run, as
:mod:`benchmarks.paired` does). Prints one JSON line per layer: medians in ms, the median
of the per-round ratios direct / Winograd (above 1: Winograd is faster), the max abs
difference, and the load average.
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


def layer_graphs(h: int, c: int, seed: int = 0) -> tuple[Any, Any]:
    """The layer's graph and its copy after ``core::winograd_conv3x3``."""
    from graphsurgery.testing import run_pass, tf_graph

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((3, 3, c, c)) / np.sqrt(9 * c)).astype(np.float32)
    b = (0.1 * rng.standard_normal(c)).astype(np.float32)

    def build(tf: Any, x: Any) -> Any:
        return tf.nn.leaky_relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b), 0.2)

    g, _ = tf_graph(build, x=(1, h, h, c))
    wino = g.copy()
    record = run_pass(wino, "core::winograd_conv3x3", min_channels=1,
                      min_size_x_channels=1, max_pixels_per_channel=1 << 30)
    assert record.changed
    return g, wino


def bench(h: int, c: int, threads: int, runs: int, cooldown: float) -> dict[str, Any]:
    from graphsurgery.export.tflite import capture_output, convert_tflite
    from graphsurgery.runners import TFLiteRunner

    rep: dict[str, Any] = {"layer": f"{h}x{c}", "load_average_start": os.getloadavg()}
    graphs = layer_graphs(h, c)
    runners = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, g in zip(("direct", "winograd"), graphs):
            path = Path(tmp) / f"{name}.tflite"
            convert_tflite(g, path)
            with capture_output():
                runners.append(TFLiteRunner(path, num_threads=threads))
        x = np.random.default_rng(1).standard_normal((1, h, h, c)).astype(np.float32)
        outs = [r.run({r.inputs[0].name: x})[0] for r in runners]
        rep["max_abs_diff"] = float(np.abs(outs[0] - outs[1]).max())
        times: list[list[float]] = [[], []]
        for _ in range(runs):
            for i, r in enumerate(runners):
                time.sleep(cooldown)
                t0 = time.perf_counter()
                r.run({r.inputs[0].name: x})
                times[i].append(time.perf_counter() - t0)
    rep["direct_ms"] = round(1e3 * median(times[0]), 2)
    rep["winograd_ms"] = round(1e3 * median(times[1]), 2)
    rep["speedup"] = round(median([a / b for a, b in zip(*times)]), 3)
    rep["load_average_end"] = os.getloadavg()
    return rep


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", nargs="+",
                    default=["64x512", "32x512", "128x256", "256x128", "16x512", "8x512"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cooldown", type=float, default=0.05)
    args = ap.parse_args(argv)
    for spec in args.layers:
        h, c = (int(v) for v in spec.split("x"))
        print(json.dumps(bench(h, c, args.threads, args.runs, args.cooldown)), flush=True)


if __name__ == "__main__":
    main()
