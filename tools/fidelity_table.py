"""Print the README's fidelity tables: the stylegan-to-tflite preset on zoo graphs.

``.venv/bin/python tools/fidelity_table.py [--quick]``

For each model: run the preset (noise ``const``), convert with builtin ops only, run the
``.tflite`` in LiteRT and compare it with the reference runner on the original graph, fed
the same latents (``random_feeds(seed=1)``) and the same seeded noise (seed 0), as
``tests/passes/stylegan/test_pipeline.py`` does. Then the quantization modes on the 256 px
models, and ``sg2-1024`` pruned to 256 px against the reference's own 256 px running image.
``--quick`` does the tiny models only. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import graphsurgery as gs
from graphsurgery import zoo
from graphsurgery.export import audit_tflite, convert_tflite
from graphsurgery.metrics import Comparison, compare
from graphsurgery.reference import with_seeded_noise
from graphsurgery.runners import ReferenceRunner, TFLiteRunner
from graphsurgery.testing import random_feeds

TINY = [("sg1-tiny", "`sg1-tiny` (recursive, random noise)"),
        ("sg1-tiny-fused", "`sg1-tiny-fused` (128 px)"),
        ("sg2-tiny", "`sg2-tiny` (reference ops)"),
        ("sg2-tiny-cuda", "`sg2-tiny-cuda` (custom ops)"),
        ("tf2-tiny-savedmodel", "`tf2-tiny-savedmodel`")]
FULL = [("sg1-256", "`sg1-256`"), ("sg2-256-cuda", "`sg2-256-cuda`"),
        ("tf2-256-savedmodel", "`tf2-256-savedmodel`")]
MODES = ["fp32", "fp16", "dynamic", "int8"]


def _convert(graph: gs.Graph, path: Path, quantize: str, feeds: dict) -> np.ndarray:
    convert_tflite(graph, path, quantize=quantize)
    audit = audit_tflite(path)
    if not audit.clean:
        raise SystemExit(f"{path}: not clean: {audit.violations[:3]}")
    with TFLiteRunner(path) as lite:
        return lite.run(with_seeded_noise(graph, feeds))[0]


def _row(label: str, nodes: str, size: int | None, c: Comparison) -> str:
    kb = "" if size is None else (f"{size / 2**20:.1f} MB" if size > 2**20 else
                                  f"{size / 1024:.0f} kB")
    return (f"| {label} | {nodes} | {kb} | {c.max_abs:.1e} ({c.rel_max_abs:.1e}) | "
            f"{c.psnr:.1f} dB |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="fidelity-"))
    rows, qrows = [], []
    for name, label in TINY + ([] if args.quick else FULL):
        original = zoo.load(name)
        feeds = random_feeds(original, seed=1)
        with ReferenceRunner(original, noise="seeded", seed=0) as ref:
            reference = ref.run(feeds)[0]
        graph = original.copy()
        gs.Pipeline.preset("stylegan-to-tflite").run(graph)
        nodes = f"{len(original):,} -> {len(graph):,}"
        modes = MODES if name in ("sg1-256", "sg2-256-cuda") else ["fp32"]
        for mode in modes:
            path = tmp / f"{name}-{mode}.tflite"
            c = compare(reference, _convert(graph, path, mode, feeds))
            if mode == "fp32":
                rows.append(_row(label, nodes, path.stat().st_size, c))
            if len(modes) > 1:
                qrows.append(f"| {name} | {mode} | {path.stat().st_size / 2**20:.2f} MB | "
                             f"{c.max_abs:.2g} | {c.psnr:.1f} dB | {c.ssim:.4f} |")
        print(rows[-1], file=sys.stderr)
    if not args.quick:
        original = zoo.load("sg2-1024")
        feeds = random_feeds(original, seed=1)
        y256 = dict(zoo.build("sg2-1024").meta["skip_images"])[256]
        with ReferenceRunner(original, noise="seeded", seed=0) as ref:
            reference = ref.fetch(feeds, [y256])[0]
        graph = original.copy()
        pipeline = gs.Pipeline.preset("stylegan-to-tflite")
        pipeline.set_options("stylegan::prune_resolution", resolution=256)
        pipeline.run(graph)
        path = tmp / "sg2-1024-256.tflite"
        c = compare(reference, _convert(graph, path, "fp32", feeds))
        rows.append(_row("`sg2-1024` (config-f widths) pruned to 256 px, vs the reference's "
                         "own 256 px running image", f"{len(original):,} -> {len(graph):,}",
                         path.stat().st_size, c))
    print("| model | nodes | `.tflite` | max abs error (of output range) | PSNR |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    if qrows:
        print("\n| model | mode | size | max abs error | PSNR | SSIM |")
        print("|---|---|---|---|---|---|")
        print("\n".join(qrows))


if __name__ == "__main__":
    main()
