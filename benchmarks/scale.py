"""Issue 13 target: the ``generic`` pipeline on a generated 100k-node graph, and CSE of
5,000 duplicates feeding one AddN.

Run as a child process (``python -m benchmarks.scale [--nodes N] [--duplicates D]``) so
that its wall time and peak RSS are its own. Prints one JSON line:

* ``graph``: load, the generic pipeline and save of an ``N``-node GraphDef made of small
  blocks: constant chains to fold, Identity nodes, duplicates that only become equal after
  folding and Identity removal, shared constants (one per block, all equal) and plain
  chains on the input. The pipeline runs four times on fresh loads: as ``graphsurgery
  run`` runs it (twice: the better is reported), without verification after each pass, and
  with every pass (not only plugin passes) watched for NodeDefs edited in place, which
  prices the verification and the edit guard.
* ``cse``: ``core::cse`` alone over ``D`` equal ``Mul`` nodes feeding one ``AddN``
  (52 s for 5,000 before issue 13, the input list being rewritten once per duplicate).

``--profile FILE`` writes a cProfile dump of the first pipeline run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._measure import peak_rss_mb

#: Nodes per generated block (see :func:`build_graph`).
BLOCK_NODES = 13
#: Block results are summed by AddN nodes of this many inputs, then by one final AddN.
FAN_IN = 50


def build_graph(nodes: int) -> Any:
    """A graph of about ``nodes`` nodes that every pass of ``generic`` has work in.

    Each block ``k`` (13 nodes)::

        m  = Mul(Const(k), Const(2))          folds to one Const
        d1 = Mul(Identity(x), m)               equal to d2 once the Identity is gone
        d2 = Mul(x, m)
        a  = AddV2(Relu(d1), Relu(d2))         the Relus merge once d1 and d2 have
        o  = Mul(Identity(Tanh(a)), Const(0.5))  the 0.5 Consts of all blocks merge
    """
    import graphsurgery as gs

    f32 = gs.DType.float32
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "bench::build")
    x = rw.placeholder("x", f32, [1, 8])
    blocks = max(1, (nodes - 1) // (BLOCK_NODES + 1.0 / FAN_IN))
    results = []
    for k in range(int(blocks)):
        p = f"b{k}/"
        c1 = rw.const(np.float32(k), name=p + "k")
        c2 = rw.const(np.float32(2.0), name=p + "two")
        m = rw.add_node("Mul", [c1, c2], {"T": f32}, name=p + "m")
        i1 = rw.add_node("Identity", [x], {"T": f32}, name=p + "id")
        d1 = rw.add_node("Mul", [i1, m], {"T": f32}, name=p + "d1")
        d2 = rw.add_node("Mul", [x, m], {"T": f32}, name=p + "d2")
        r1 = rw.add_node("Relu", [d1], {"T": f32}, name=p + "r1")
        r2 = rw.add_node("Relu", [d2], {"T": f32}, name=p + "r2")
        a = rw.add_node("AddV2", [r1, r2], {"T": f32}, name=p + "a")
        t = rw.add_node("Tanh", [a], {"T": f32}, name=p + "t")
        i2 = rw.add_node("Identity", [t], {"T": f32}, name=p + "id2")
        half = rw.const(np.float32(0.5), name=p + "half")
        results.append(rw.add_node("Mul", [i2, half], {"T": f32}, name=p + "o"))
    sums = [rw.add_node("AddN", results[i:i + FAN_IN], {"T": f32, "N": len(results[i:i + FAN_IN])},
                        name=f"sum{i // FAN_IN}") for i in range(0, len(results), FAN_IN)]
    y = rw.add_node("AddN", sums, {"T": f32, "N": len(sums)}, name="y") if len(sums) > 1 \
        else sums[0]
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    g.provenance.clear()
    return g


def build_duplicates(n: int) -> Any:
    """``n`` equal ``Mul(x, c)`` nodes summed by one AddN."""
    import graphsurgery as gs

    f32 = gs.DType.float32
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "bench::build")
    x = rw.placeholder("x", f32, [1, 8])
    c = rw.const(np.float32(2.0), name="c")
    dups = [rw.add_node("Mul", [x, c], {"T": f32}, name=f"m{i}") for i in range(n)]
    y = rw.add_node("AddN", dups, {"T": f32, "N": n}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    return g


def bench_graph(nodes: int, profile: str | None = None) -> dict[str, Any]:
    import graphsurgery as gs

    t0 = time.perf_counter()
    built = build_graph(nodes)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.pb"
        gs.save(built, src)
        del built
        runs = []
        # As `graphsurgery run` does it, then without verification after each pass, then
        # with every pass watched for NodeDefs edited in place (plugin passes only, by
        # default), then as the first again: the spread shows the machine's noise.
        for verify_each, guard in ((True, "plugins"), (False, "off"), (True, "all"),
                                   (True, "plugins")):
            t0 = time.perf_counter()
            graph = gs.load(src)
            t1 = time.perf_counter()
            run = gs.Pipeline.preset("generic").run
            kwargs = {"verify_each": verify_each, "guard_edits": guard}
            if profile and not runs:
                import cProfile

                prof = cProfile.Profile()
                result = prof.runcall(run, graph, **kwargs)
                prof.dump_stats(profile)
            else:
                result = run(graph, **kwargs)
            t2 = time.perf_counter()
            gs.save(graph, Path(tmp) / "out.pb")
            t3 = time.perf_counter()
            runs.append({"verify_each": verify_each, "guard_edits": guard, "load_s": t1 - t0,
                         "passes_s": t2 - t1, "save_s": t3 - t2, "total_s": t3 - t0,
                         "passes": len(result.records),
                         "slowest": sorted(((r.pass_id, round(r.seconds, 3))
                                            for r in result.records),
                                           key=lambda p: -p[1])[:3]})
        best = min((runs[0], runs[3]), key=lambda r: r["total_s"])
        return {
            "nodes_before": sum(result.records[0].ops_before.values()),
            "nodes_after": len(graph),
            "file_mb": src.stat().st_size / 2**20,
            "build_s": build_s,
            **{k: best[k] for k in ("load_s", "passes_s", "save_s", "total_s", "passes",
                                     "slowest")},
            "passes_unverified_s": runs[1]["passes_s"],
            "passes_guard_all_s": runs[2]["passes_s"],
            "runs": runs,
        }


def bench_cse(n: int) -> dict[str, Any]:
    import graphsurgery as gs

    graph = build_duplicates(n)
    t0 = time.perf_counter()
    result = gs.Pipeline.parse("core::cse").run(graph)
    seconds = time.perf_counter() - t0
    return {"duplicates": n, "seconds": seconds, "pass_s": result.records[0].seconds,
            "nodes_after": len(graph)}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--duplicates", type=int, default=5_000)
    ap.add_argument("--profile", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    report = {"cse": bench_cse(args.duplicates), "graph": bench_graph(args.nodes, args.profile)}
    report["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
