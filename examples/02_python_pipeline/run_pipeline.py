"""Build, edit and run a pipeline from Python, then convert with ``gs.convert``.

    python examples/02_python_pipeline/run_pipeline.py [OUTDIR]

The graph is graphsurgery's small built-in demo graph (a training-only ``Assign``, a frozen
``tf.cond``, identities, a duplicated branch, scaling chains, an unused branch): put your own
frozen model in its place with ``gs.load("model.pb", outputs=["y"])``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import graphsurgery as gs
from graphsurgery.demo import build_demo_graph


def main(outdir: str = "python-pipeline-out") -> int:
    # 1. The pieces: a preset as an editable pipeline, run over a graph in memory.
    graph = build_demo_graph()
    pipeline = gs.Pipeline.preset("generic")  # a fresh copy: editing it changes no preset
    pipeline.insert(0, "core::dce").set_options("core::fold_constants", max_bytes=32 << 20)
    result = pipeline.run(graph)  # verifies the graph after every pass
    print(f"{len(result.records)} passes, nodes {result.records[0].nodes_before} -> {len(graph)}")
    for record in result.records:
        if record.changed:
            print(f"  {record.pass_id:26s} {'; '.join(record.deltas()[:2])}")

    # 2. The whole conversion, as `graphsurgery run` does it: rewrite, export, audit, verify.
    converted = gs.convert(build_demo_graph(), pipeline, target="tflite", outdir=outdir,
                           verify=True)
    tflite = converted.artefacts["tflite"]
    verdict = "clean" if converted.audit.clean else "NOT clean"
    print(f"{tflite} ({Path(tflite).stat().st_size / 1e3:.0f} kB): {verdict}")
    for output, cmp in (converted.fidelity or {}).items():
        print(f"  {output}: max abs error {cmp['max_abs']:.3g}")
    return converted.status


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
