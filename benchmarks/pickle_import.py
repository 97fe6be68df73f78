"""Issue 16: importing a 1024 px NVlabs pickle (StyleGAN2 config-f weights, about 120 MB).

``python -m benchmarks.pickle_import [--workdir DIR] [--preset sg2-1024]`` writes an
NVlabs-format ``(G, D, Gs)`` pickle from the zoo's ``sg2-1024`` weights with
:mod:`graphsurgery.zoo.nvlabs_write` (``Gs`` only carries real weights; ``G`` and ``D`` are
small), then measures, each in a fresh child process so its time and peak RSS are
its own:

* ``read``: :func:`graphsurgery.ir.pickle.read_pickle` alone (the restricted unpickler; no
  TensorFlow);
* ``load``: ``gs.load(snapshot.pkl)``: read, rebuild the generator with the zoo builder,
  freeze, load as a Graph, with TensorFlow imported first (its import time and RSS are
  reported apart, ``tf_import_s``/``baseline_mb``).

Prints one JSON line: file size, and per phase seconds, peak RSS and peak RSS over the file
size.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks._measure import peak_rss_mb, run_child


def _write_pickle(path: Path, preset: str = "sg2-1024") -> None:
    import numpy as np

    from graphsurgery.zoo import nvlabs_write, stylegan2

    cfg = replace(stylegan2.PRESETS[preset], randomize_noise=False)  # the noise variables kept
    model = stylegan2.build_gs(cfg)
    _, d, gs_net = nvlabs_write.snapshot(model)
    small = nvlabs_write.network("G", "training.networks_stylegan2.G_main",
                                 {"resolution": cfg.resolution},
                                 {"lod": np.zeros([], np.float32)})
    nvlabs_write.write(path, (small, d, gs_net), protocol=4)


def _child(phase: str, path: str) -> None:
    out: dict[str, object] = {"phase": phase}
    if phase == "read":
        from graphsurgery.ir.pickle import read_pickle

        out["baseline_mb"] = peak_rss_mb()
        t0 = time.perf_counter()
        read_pickle(path)
        out["seconds"] = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        import tensorflow  # noqa: F401

        import graphsurgery as gs

        out["tf_import_s"] = time.perf_counter() - t0
        out["baseline_mb"] = peak_rss_mb()
        t0 = time.perf_counter()
        graph = gs.load(path)
        out["seconds"] = time.perf_counter() - t0
        out["nodes"] = len(graph)
    out["peak_mb"] = peak_rss_mb()
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pickle_import")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--preset", default="sg2-1024",
                    help="the StyleGAN2 zoo preset whose weights the pickle holds")
    ap.add_argument("--child", nargs=2, metavar=("PHASE", "PKL"))
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gs-pickle-bench-"))
    path = work / f"{args.preset}-snapshot.pkl"
    if not path.exists():
        _write_pickle(path, args.preset)
    size_mb = os.path.getsize(path) / 2**20
    report: dict[str, object] = {"preset": args.preset, "file_mb": round(size_mb, 1)}
    for phase in ("read", "load"):
        r = run_child("benchmarks.pickle_import", "--child", phase, str(path))
        if r.get("ok"):
            r["peak_over_file"] = round(float(r["peak_mb"]) / size_mb, 2)
            r["added_over_file"] = round((float(r["peak_mb"]) - float(r["baseline_mb"]))
                                         / size_mb, 2)
        report[phase] = r
    print(json.dumps(report))


if __name__ == "__main__":
    main()
