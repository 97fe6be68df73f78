"""Op-level profile of a rewritten graph in LiteRT, one op at a time.

``python -m benchmarks.op_profile MODEL.pb [--threads 2] [--runs 20] [--top 15]``

LiteRT's Python interpreter has no profiler, and with XNNPACK the whole graph is one
delegate node anyway. So each op of the graph (after ``stylegan-to-tflite``: its ``model.pb``)
is timed on its own: a one-op graph (its constant inputs kept, the others fed as inputs of
their inferred shapes) is converted like the model (:func:`graphsurgery.export.convert_tflite`)
and run in LiteRT on the same thread count. Ops with equal type, attributes and input shapes
are timed once and counted as many times as they occur. Isolated timings miss what the
delegate fuses across ops and the cache effects between them, but they show where the time
goes: the sum of one op type's timings against the whole model's median.

Prints one JSON line: per op type its count, summed median and share, the ``top`` most
expensive single ops, and the whole model's median for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

SKIP = {"Const", "Placeholder", "Identity", "NoOp"}


def _one_op_graph(graph: Any, name: str) -> tuple[Any, dict[str, np.ndarray]] | None:
    """The graph of node ``name`` alone: constant inputs copied, the others placeholders."""
    from graphsurgery.ir.graph import Graph
    from graphsurgery.ir.proto import GraphDef

    node = graph.node(name)
    gd = GraphDef()
    inputs, feeds = [], {}
    for i, ref in enumerate(node.data_inputs):
        if graph.is_const(ref):
            src = graph.node_def(ref.node)
            copy = gd.node.add()
            copy.CopyFrom(src)
            copy.name = f"c{i}"
            inputs.append(f"c{i}")
            continue
        shape, dtype = graph.shape(ref), graph.dtype(ref)
        if shape is None or any(d < 0 for d in shape) or dtype is None:
            return None
        ph = gd.node.add()
        ph.name, ph.op = f"in{i}", "Placeholder"
        ph.attr["dtype"].type = int(dtype)
        for d in shape:
            ph.attr["shape"].shape.dim.add(size=d)
        inputs.append(f"in{i}")
        feeds[f"in{i}"] = np.random.default_rng(i).standard_normal(shape).astype(
            dtype.numpy)
    if not feeds:
        return None
    op = gd.node.add()
    op.CopyFrom(graph.node_def(name))
    op.name = "op"
    del op.input[:]
    op.input.extend(inputs)
    return Graph.from_graph_def(gd, outputs=["op"]), feeds


def _signature(graph: Any, name: str) -> str:
    node = graph.node(name)
    shapes = [graph.shape(r) for r in node.data_inputs]
    attrs = {k: str(node.attr(k)) for k in node.attr_names if not k.startswith("_")}
    return json.dumps([node.op, [list(s) if s else None for s in shapes], attrs], default=str)


def _time(path: Path, threads: int, runs: int) -> float:
    from graphsurgery.runners import TFLiteRunner

    with TFLiteRunner(path, num_threads=threads) as lite:
        feeds = {s.name: np.random.default_rng(0).standard_normal(s.shape).astype(np.float32)
                 for s in lite.inputs}
        lite.run(feeds)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            lite.run(feeds)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def profile(model: str, threads: int = 2, runs: int = 20, top: int = 15) -> dict[str, Any]:
    import graphsurgery as gs
    from graphsurgery.export import convert_tflite

    graph = gs.load(model)
    graph.infer()
    work = Path(tempfile.mkdtemp(prefix="op-profile-"))
    whole = convert_tflite(graph, work / "whole.tflite").path
    groups: dict[str, list[str]] = defaultdict(list)
    for node in graph.nodes():
        if node.op not in SKIP:
            groups[_signature(graph, node.name)].append(node.name)
    per_op: dict[str, dict[str, float]] = defaultdict(lambda: {"count": 0, "s": 0.0})
    singles, skipped = [], []
    for i, names in enumerate(groups.values()):
        built = _one_op_graph(graph, names[0])
        if built is None:
            skipped.extend(names)
            continue
        sub, _ = built
        try:
            path = convert_tflite(sub, work / f"op{i}.tflite").path
            t = _time(path, threads, runs)
        except Exception:  # an op that does not convert alone: listed, not timed
            skipped.extend(names)
            continue
        op = graph.node(names[0]).op
        per_op[op]["count"] += len(names)
        per_op[op]["s"] += t * len(names)
        shapes = [graph.shape(r) for r in graph.node(names[0]).data_inputs]
        singles.append({"op": op, "node": names[0], "times": len(names), "s": t,
                        "shapes": [list(s) if s else None for s in shapes]})
    whole_s = _time(whole, threads, runs)
    total = sum(v["s"] for v in per_op.values())
    table = sorted(({"op": k, "count": v["count"], "ms": 1e3 * v["s"],
                     "share": v["s"] / total if total else None} for k, v in per_op.items()),
                   key=lambda r: -r["ms"])
    singles.sort(key=lambda r: -r["s"] * r["times"])
    return {"model": model, "threads": threads, "whole_model_ms": 1e3 * whole_s,
            "sum_of_ops_ms": 1e3 * total, "by_op": table, "top": singles[:top],
            "skipped": skipped[:20], "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    print(json.dumps(profile(args.model, args.threads, args.runs, args.top), default=str))


if __name__ == "__main__":
    main()
