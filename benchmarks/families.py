"""Every family at its original widths: LiteRT (``stylegan-to-tflite``) against onnxruntime
on the tf2onnx export of the original graph, paired, with FLOPs and fidelity.

``python -m benchmarks.families [--models sg1-64-512 ...] [--threads 2] [--runs 10]
[--ablate PASS ...] [--out DIR]``

Per zoo preset (built once and cached, :func:`graphsurgery.zoo.cached`):

1. ``gs.convert(..., "stylegan-to-tflite", verify=True)``: the ``.tflite`` and its PSNR
   against the reference runner on the original graph (same latents, seeded noise);
2. ``graphsurgery.check.count_flops`` of the original graph and of the rewritten one;
3. ``tf2onnx.convert.from_graph_def`` of the original (:func:`benchmarks.peers._tf2onnx`);
4. :mod:`benchmarks.paired`: ``onnx:original`` against ``tflite:ours`` in alternation on
   the same latents; ``speedup`` is the median of the per-round ratios onnxruntime / LiteRT
   (above 1: LiteRT is faster);
5. per pass named with ``--ablate`` that changed the graph: the same preset without it,
   paired against the full pipeline (``speedup`` without / with).

Prints one JSON line (``models``: one record per preset; ``table``: the Markdown table).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

from benchmarks._measure import peak_rss_mb, record_error

#: The issue's measurements (issue 18) and their targets (speedup over onnxruntime).
MODELS = ["sg1-64-512", "sg2-256-f", "sg2-1024", "progan-256-orig",
          "progan-256-orig-nonfused", "ada-64-fp32"]
TARGETS = {"sg1-64-512": 1.1, "sg2-256-f": 2.0, "sg2-1024": 2.0, "progan-256-orig": 1.3,
           "progan-256-orig-nonfused": 1.3}
SMOKE_MODELS = ["sg1-tiny", "progan-tiny-nonfused"]
PIPELINE = "stylegan-to-tflite"


def _paired(a: str, b: str, threads: int, runs: int) -> dict[str, Any]:
    from benchmarks import paired

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        paired.main([a, b, "--threads", str(threads), "--runs", str(runs)])
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {"ok": False, "error": buf.getvalue()[-300:]}


def _convert(path: Path, pipeline: Any, outdir: Path, verify: bool) -> tuple[Any, float]:
    import graphsurgery as gs

    t0 = time.perf_counter()
    result = gs.convert(str(path), pipeline, target="tflite", outdir=outdir, verify=verify)
    return result, time.perf_counter() - t0


def _psnr(original: Any, rewritten: Any, tflite: Path) -> float | None:
    """PSNR of the ``.tflite`` in LiteRT against the reference runner on the original graph,
    same latents and seeded noise (as ``tests/passes/stylegan/test_pipeline.py``)."""
    from graphsurgery.metrics import compare
    from graphsurgery.reference import with_seeded_noise
    from graphsurgery.runners import ReferenceRunner, TFLiteRunner
    from graphsurgery.testing import random_feeds

    feeds = random_feeds(original, seed=1, batch=1)
    with ReferenceRunner(original, noise="seeded", seed=0) as ref:
        reference = ref.run(feeds)[0]
    with TFLiteRunner(tflite) as lite:
        (out,) = lite.run(with_seeded_noise(rewritten, feeds))
    return float(compare(reference, out).psnr)


def bench_model(name: str, out: Path, threads: int, runs: int,
                ablate: list[str]) -> dict[str, Any]:
    import graphsurgery as gs
    from benchmarks.peers import _tf2onnx, _variant
    from graphsurgery import zoo
    from graphsurgery.check import count_flops
    from graphsurgery.export.tflite import import_tensorflow

    rep: dict[str, Any] = {"model": name, "ok": False}
    try:
        t0 = time.perf_counter()
        path = zoo.cached(name)
        rep["build_or_cache_s"] = round(time.perf_counter() - t0, 1)
        work = out / name
        work.mkdir(parents=True, exist_ok=True)
        result, convert_s = _convert(path, PIPELINE, work / "ours", verify=False)
        tflite = result.artefacts["tflite"]
        original = gs.load(str(path))
        rep["ours"] = {"convert_s": round(convert_s, 1), "status": result.status,
                       "bytes": Path(tflite).stat().st_size, "clean": result.audit.clean,
                       "psnr_db": _psnr(original, result.graph, tflite),
                       "changed": [r.pass_id for r in result.records if r.changed]}
        rep["flops"] = {"original": count_flops(original)["total"],
                        "ours": count_flops(result.graph)["total"]}
        inputs = {t.node: [1, *(original.static_shape(t) or (0, 512))[1:]]
                  for t in original.inputs}
        theirs = work / "original.onnx"
        tf2onnx = _tf2onnx(import_tensorflow(), __import__("tf2onnx"), str(path), theirs,
                           inputs, original.outputs[0].node, 17)
        if not tf2onnx.get("ok", True) or not theirs.exists():
            # StyleGAN v1's frozen graph does not import into TensorFlow (training Assign
            # ops): the peer gets it with those stripped and nothing else, as in peers.py.
            importable = work / "importable.pb"
            _variant(original.copy(), ["core::strip_training"], importable)
            tf2onnx = _tf2onnx(import_tensorflow(), __import__("tf2onnx"), str(importable),
                               theirs, inputs, original.outputs[0].node, 17)
            tf2onnx["graph_note"] = "original with core::strip_training only"
        rep["tf2onnx_original"] = {k: v for k, v in tf2onnx.items() if k != "onnx_ops"}
        if not tf2onnx.get("ok", True) or not theirs.exists():
            rep["error"] = f"tf2onnx: {tf2onnx.get('error')}"
            return rep
        pair = _paired(f"onnx:{theirs}", f"tflite:{tflite}", threads, runs)
        rep["paired"] = {k: pair.get(k) for k in ("ok", "a_median_s", "b_median_s",
                                                   "ratio_median", "load_average_start",
                                                   "load_average_end", "error")}
        rep["ablation"] = {}
        for pass_id in ablate:
            if pass_id not in rep["ours"]["changed"]:
                continue
            pipe = gs.Pipeline.preset(PIPELINE).remove(pass_id)
            res2, _ = _convert(path, pipe, work / f"without-{pass_id.replace('::', '-')}",
                               verify=False)
            without = res2.artefacts["tflite"]
            p2 = _paired(f"tflite:{without}", f"tflite:{tflite}", threads, runs)
            rep["ablation"][pass_id] = {
                "flops_without": count_flops(res2.graph)["total"],
                "without_median_s": p2.get("a_median_s"), "with_median_s": p2.get("b_median_s"),
                "speedup": p2.get("ratio_median"), "ok": p2.get("ok")}
        rep["ok"] = bool(pair.get("ok"))
    except Exception as exc:  # recorded: one model's failure is a result
        record_error(rep, exc)
    return rep


def table(models: list[dict[str, Any]], threads: int) -> str:
    """The README table: one row per preset."""
    rows = [f"| model | FLOPs original -> ours (G) | LiteRT ms | onnxruntime ms | speedup "
            f"({threads} threads, paired) | target | PSNR dB | faster by the passes |",
            "|---|---|---|---|---|---|---|---|"]
    for m in models:
        f, p, o = m.get("flops") or {}, m.get("paired") or {}, m.get("ours") or {}

        def ms(v: Any) -> str:
            return f"{1e3 * v:.0f}" if isinstance(v, float) else "-"

        gf = (f"{f['original'] / 1e9:.2f} -> {f['ours'] / 1e9:.2f}"
              if f.get("original") and f.get("ours") else "-")
        sp = p.get("ratio_median")
        target = TARGETS.get(m["model"])
        met = "" if target is None or sp is None else (" met" if sp >= target else " not met")
        abl = "; ".join(f"{k}: {v['speedup']:.2f}x" for k, v in (m.get("ablation") or {}).items()
                        if v.get("speedup"))
        psnr = o.get("psnr_db")
        rows.append(f"| {m['model']} | {gf} | {ms(p.get('b_median_s'))} | "
                    f"{ms(p.get('a_median_s'))} | "
                    f"{f'{sp:.2f}x' if sp else m.get('error', '-')} | "
                    f"{f'>= {target}x' if target else '-'}{met} | "
                    f"{f'{psnr:.1f}' if isinstance(psnr, float) else '-'} | {abl or '-'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny presets, 2 runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--ablate", nargs="*",
                    default=["core::upsample_conv_phases", "core::bias_into_phases",
                             "core::winograd_conv3x3"])
    ap.add_argument("--out", default="/tmp/graphsurgery-families-bench")
    args = ap.parse_args(argv)
    models = args.models or (SMOKE_MODELS if args.smoke else MODELS)
    runs = 2 if args.smoke else args.runs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep: dict[str, Any] = {"threads": args.threads, "runs": runs, "pipeline": PIPELINE,
                           "load_average_start": os.getloadavg()}
    rep["models"] = [bench_model(n, out, args.threads, runs, args.ablate) for n in models]
    rep["table"] = table(rep["models"], args.threads)
    rep["load_average_end"] = os.getloadavg()
    rep["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(rep, default=str))


if __name__ == "__main__":
    main()
