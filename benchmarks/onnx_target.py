"""The ONNX target against the tf2onnx export of the original graph, paired in onnxruntime.

``python -m benchmarks.onnx_target sg2-256 --threads 2 --runs 5 --out /tmp/onnx-bench``
(``sg2-256-config-f``: StyleGAN2 config-f widths at 256 px, built here, not a zoo preset;
``--profile``: also each op type's share of both models' kernel time, from onnxruntime's
profiler, and the five slowest nodes)

Builds (once, cached) the zoo graph, converts it with ``gs.convert(..., "stylegan-to-onnx",
target="onnx")`` (constant-weight NCHW convolutions) and exports the original with
``tf2onnx.convert.from_graph_def`` (grouped convolutions over run-time weights, random
noise), then times both in one process, alternating (:mod:`benchmarks.paired`). Prints one
JSON line: conversion times, op histograms, sizes and the paired medians; ``ratio_median``
is original / ours (above 1: ours is faster).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", nargs="?", default="sg2-256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--out", default="/tmp/graphsurgery-onnx-bench")
    ap.add_argument("--profile", action="store_true",
                    help="add onnxruntime's per-op-type kernel time of both models")
    args = ap.parse_args(argv)

    import onnx

    import graphsurgery as gs
    from benchmarks.peers import _tf2onnx
    from graphsurgery import zoo
    from graphsurgery.export.tflite import import_tensorflow

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep: dict[str, Any] = {"model": args.name, "threads": args.threads, "runs": args.runs}
    t0 = time.perf_counter()
    path = _config_f_256(out) if args.name == "sg2-256-config-f" else zoo.cached(args.name)
    rep["build_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    result = gs.convert(str(path), "stylegan-to-onnx", target="onnx", outdir=out / "ours")
    ours = out / "ours" / "model.onnx"
    rep["ours"] = {"convert_s": round(time.perf_counter() - t0, 1), "status": result.status,
                   "bytes": ours.stat().st_size, "clean": result.audit.clean,
                   "ops": dict(Counter(n.op_type for n in onnx.load(str(ours)).graph.node))}

    graph = gs.load(str(path))
    inputs = {t.node: [1, *(graph.static_shape(t) or (0, 512))[1:]] for t in graph.inputs}
    theirs = out / "original.onnx"
    rep["tf2onnx_original"] = _tf2onnx(import_tensorflow(), __import__("tf2onnx"), str(path),
                                       theirs, inputs, graph.outputs[0].node, args.opset)

    from benchmarks import paired

    rep["paired"] = _capture(paired.main, [f"onnx:{theirs}", f"onnx:{ours}", "--threads",
                                           str(args.threads), "--runs", str(args.runs)])
    if args.profile:
        rep["profile"] = {"ours": profile(ours, args.threads, out),
                          "tf2onnx_original": profile(theirs, args.threads, out)}
    print(json.dumps(rep, default=str))


def profile(model: Path, threads: int, out: Path, runs: int = 2) -> dict[str, Any]:
    """onnxruntime's profiler over ``runs`` runs (after one warm-up): milliseconds per run
    and each op type's share of the kernel time, and the five slowest nodes."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
             .astype(np.float32) for i in sess.get_inputs()}
    sess.run(None, feeds)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(out / f"profile-{model.stem}")
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        sess.run(None, feeds)
    events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: Counter[str] = Counter()
    by_node: Counter[str] = Counter()
    for e in events:  # every run, the first of this session (it allocates buffers) included
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
            by_node[f"{e['args']['op_name']} {e['name'][:-len('_kernel_time')]}"] += e["dur"]
    total = sum(by_op.values()) or 1
    return {"kernel_ms_per_run": round(total / 1e3 / (runs + 1), 1),
            "share": {k: round(v / total, 3) for k, v in by_op.most_common() if v / total > 0.005},
            "slowest": {k: round(v / total, 3) for k, v in by_node.most_common(5)}}


def _config_f_256(out: Path) -> Path:
    """StyleGAN2 config-f (fmap_base 16384, max 512) at 256 px, written once under ``out``."""
    from dataclasses import replace

    from graphsurgery import zoo
    from graphsurgery.zoo.stylegan2 import CONFIG_F, build_gs

    path = out / "sg2-256-config-f.pb"
    if not path.exists():
        zoo.write(build_gs(replace(CONFIG_F, resolution=256)), path)
    return path


def _capture(fn: Any, argv: list[str]) -> Any:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn(argv)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else buf.getvalue()


if __name__ == "__main__":
    main()
