"""The mobile budget (issue 18): StyleGAN v1 and StyleGAN2 config-f cut from 1024 to 256 px.

``python -m benchmarks.mobile [--models sg1-1024:256 sg2-1024:256] [--latents 16]``

Per model (``PRESET:RESOLUTION``; ``sg1-tiny`` alone keeps the preset's resolution), each
step in a fresh child process (:mod:`benchmarks._measure`):

1. ``prepare``: ``gs.convert(zoo file, "stylegan-to-tflite")`` with
   ``stylegan::prune_resolution.resolution=R`` writes the fp32 ``.tflite`` and the rewritten
   ``model.pb``; ``convert_tflite(quantize="dynamic")`` and ``quantize="mobile"`` convert
   the same graph; the other points of the frontier come from
   :func:`graphsurgery.export.mobile.quantize_mobile` (everything int8; the last N
   convolutions int4; :data:`BLOCKWISE`: block-wise int4 with nearest or GPTQ rounding).
   When ``core::upsample_conv_phases`` or ``core::winograd_conv3x3`` changed the graph
   (v1's up-sampling 3x3 convolutions as four 2x2 phase convolutions, 3x3 convolutions as
   Winograd F(2x2,3x3): 16/36 of the multiplies, 16/9 of the weights), the graph is
   converted once more without them (:data:`SIZE_FOR_SPEED`) for
   ``mobile, 3x3 convs kept``, the smaller model, which the block-wise points start from.
2. ``fidelity``: every variant and the fp32 model on the same ``--latents`` seeded latents
   (same frozen noise): SSIM and PSNR per image against fp32 (:func:`graphsurgery.metrics
   .compare`), mean and worst.
3. peak RSS and latency: :mod:`benchmarks.latency` on 2 threads, one fresh process per
   model (its peak RSS is that process's VmHWM: Python, LiteRT and the model; the same
   imports without a model are measured too, ``baseline_rss_mb``); then
   ``mobile`` timed in alternation with fp32 and with dynamic (:mod:`benchmarks.paired`),
   the ratios to quote on a shared machine.

Prints the tables (markdown) and, with ``--json FILE``, writes every figure. The budget:
< 20 MB, SSIM >= 0.9 against fp32, < 200 MB peak RSS, then the lowest latency.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._measure import emit, peak_rss_mb, record_error, run_child_safe

DEFAULT_MODELS = ["sg1-1024:256", "sg2-1024:256"]
BUDGET_MB, BUDGET_SSIM, BUDGET_RSS_MB = 20.0, 0.9, 200.0
#: Frontier points beyond fp32/dynamic/mobile: (name, quantize_mobile keywords).
FRONTIER: tuple[tuple[str, dict[str, Any]], ...] = (
    ("int8 (mapping int8 too)", {"bottleneck_fp16": False}),
    # Counted from the output. v1 cut to 256 px has 31 int8 convolutions, 5 per resolution
    # from 8 px up (4 phases and a 3x3): the last 10 are the 128 and 256 px layers, 20
    # reach 32 px; v2 has 36 (its 512-channel ToRGBs too).
    ("mobile + int4 last 10 convs", {"int4_convs": 10}),
    ("mobile + int4 last 15 convs", {"int4_convs": 15}),
    ("mobile + int4 last 20 convs", {"int4_convs": 20}),
    ("mobile + int4 last 25 convs", {"int4_convs": 25}),
    ("mobile + int4 every conv", {"int4_convs": 10_000}),
)
MOBILE_3X3 = "mobile, 3x3 convs kept"
#: Passes that store more weights for fewer multiplies (16/9 of a 3x3 convolution's, 9/4 of
#: a transposed one's): the size-first build sets these options (where the pass has the
#: option) or, for None, leaves the pass out.
SIZE_FOR_SPEED: dict[str, str | None] = {
    "core::upsample_conv_phases": "max_factor=1",
    "core::winograd_conv3x3": None,
    "tflite::polyphase_transpose_conv": "form=phases",
}
#: Block-wise int4 (XNNPACK's qb4w FULLY_CONNECTED; convolutions with at most 32x32 outputs
#: as im2col + FULLY_CONNECTED), built from the 3x3 model when there is one (fewer weights).
#: ``calibration``: GPTQ against that many seeded runs of the fp32 model (seeds 10,000 on;
#: the fidelity step evaluates seeds 0..latents-1).
#: ``None``: :data:`graphsurgery.export.mobile.MOBILE_INT4` (``--quantize mobile-int4``; not
#: imported here, to keep the ``bare`` child's process bare).
BLOCKWISE: tuple[tuple[str, dict[str, Any] | None], ...] = (
    ("int4 blocks: convs to 32 px, nearest; mapping int8",
     {"int4_blocks": ("convs",), "bottleneck_fp16": False}),
    ("mobile-int4 (convs to 32 px int4 blocks, GPTQ; mapping int8)", None),
    ("int4 blocks: convs to 32 px + denses, GPTQ; mapping fp16",
     {"int4_blocks": ("convs", "denses"), "calibration": 32}),
    # StyleGAN2's 512-channel layers reach 64 px: under 20 MB only with those too (their
    # im2col at 64x64 is 75 MB of activations) and the denses.
    ("int4 blocks: convs to 65 px + denses, GPTQ; mapping int8",
     {"int4_blocks": ("convs", "denses"), "bottleneck_fp16": False, "calibration": 32,
      "conv_max_pixels": 65 * 65}),
)
TIMED = ("fp32", "dynamic", "mobile", MOBILE_3X3, "mobile + int4 every conv",
         *(name for name, kw in BLOCKWISE if kw is None or kw.get("calibration")))


# ============================================================================ children
def prepare(preset: str, resolution: int | None, work: Path) -> dict[str, Any]:
    """Convert the preset: fp32, dynamic, mobile and the frontier's points."""
    import graphsurgery as gs
    from benchmarks.__main__ import zoo_path
    from graphsurgery.export.mobile import MOBILE_INT4, quantize_mobile
    from graphsurgery.export.tflite import convert_tflite
    from graphsurgery.registry import get_pass

    path, info = zoo_path(preset)
    if path is None:
        raise RuntimeError(f"zoo preset {preset} not built: {info.get('error')}")
    overrides = [f"stylegan::prune_resolution.resolution={resolution}"] if resolution else []
    result = gs.convert(path, "stylegan-to-tflite", target="tflite", outdir=work / "fp32",
                        overrides=overrides)
    fp32 = work / "fp32" / "model.tflite"
    graph = gs.load(work / "fp32" / "model.pb")
    models: dict[str, Any] = {"fp32": {"path": str(fp32), "bytes": fp32.stat().st_size}}
    for mode in ("dynamic", "mobile"):
        conv = convert_tflite(graph, work / f"{mode}.tflite", quantize=mode)
        models[mode] = {"path": str(conv.path), "bytes": conv.size, "weights": conv.weights}
    # core::upsample_conv_phases and core::winograd_conv3x3 trade 16/9 the weights of a 3x3
    # convolution for 16/36 of its multiplies: the smaller model keeps the 3x3 convolutions.
    if any(r.pass_id in SIZE_FOR_SPEED and r.changed for r in result.records):
        pipe = gs.Pipeline.preset("stylegan-to-tflite")
        small = [*overrides]
        for pass_id, option in SIZE_FOR_SPEED.items():
            if option is None and pass_id in pipe.pass_ids():
                pipe = pipe.remove(pass_id)
            elif option and option.split("=")[0] in vars(get_pass(pass_id)):
                small.append(f"{pass_id}.{option}")
        gs.convert(path, pipe, target="tflite", outdir=work / "fp32-3x3", overrides=small)
        conv = convert_tflite(gs.load(work / "fp32-3x3" / "model.pb"), work / "mobile-3x3.tflite",
                              quantize="mobile")
        models[MOBILE_3X3] = {"path": str(conv.path), "bytes": conv.size,
                              "weights": conv.weights}
    data = fp32.read_bytes()
    for i, (name, kw) in enumerate(FRONTIER):
        model, report = quantize_mobile(data, **kw)
        out = work / f"frontier-{i}.tflite"
        out.write_bytes(model)
        models[name] = {"path": str(out), "bytes": len(model), "weights": report.to_json()}
    small = work / "fp32-3x3" / "model.tflite"
    data = (small if small.exists() else fp32).read_bytes()
    for i, (name, kw) in enumerate(BLOCKWISE):
        model, report = quantize_mobile(data, **(MOBILE_INT4 if kw is None else kw))
        out = work / f"blockwise-{i}.tflite"
        out.write_bytes(model)
        models[name] = {"path": str(out), "bytes": len(model), "weights": report.to_json()}
    for m in models.values():
        (m.get("weights") or {}).pop("fp16_ops", None)
    return {"nodes": [result.nodes_before, result.nodes_after], "models": models}


def fidelity(paths: dict[str, str], latents: int) -> dict[str, Any]:
    """SSIM and PSNR of every model against ``paths["fp32"]`` on the same seeded inputs."""
    import numpy as np

    from benchmarks.latency import _feeds
    from graphsurgery.export.tflite import capture_output
    from graphsurgery.metrics import compare
    from graphsurgery.runners import TFLiteRunner

    with capture_output():
        runners = {k: TFLiteRunner(p) for k, p in paths.items()}
    ref = runners["fp32"]
    out: dict[str, Any] = {k: {"ssim": [], "psnr": []} for k in paths if k != "fp32"}
    for seed in range(latents):
        feeds = _feeds(ref, seed=seed)
        expected = ref.run(feeds)[0]
        for k, r in runners.items():
            if k == "fp32":
                continue
            c = compare(expected, r.run({s.name: feeds[s.name] for s in r.inputs})[0])
            out[k]["ssim"].append(c.ssim)
            out[k]["psnr"].append(c.psnr)
    for v in out.values():
        s, p = v.pop("ssim"), v.pop("psnr")
        v.update(ssim=float(np.mean(s)), ssim_min=float(np.min(s)), psnr=float(np.mean(p)),
                 psnr_min=float(np.min(p)))
    return out


def bare_rss(path: str) -> dict[str, float]:
    """Peak RSS of a process that imports only numpy and LiteRT, loads ``path`` (2 threads,
    XNNPACK) and runs it twice: what an app pays, less Python's own ~34 MB."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    before = peak_rss_mb()
    it = Interpreter(model_path=path, num_threads=2)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        shape = [max(int(v), 1) for v in d["shape"]]
        it.set_tensor(d["index"], rng.standard_normal(shape).astype(d["dtype"]))
    it.invoke()
    it.invoke()
    return {"peak_rss_mb": peak_rss_mb(), "imports_rss_mb": before}


# ============================================================================ the run
def measure(spec: str, latents: int, runs: int, work: Path) -> dict[str, Any]:
    preset, _, res = spec.partition(":")
    wd = work / preset.replace("/", "_")
    wd.mkdir(parents=True, exist_ok=True)
    rep: dict[str, Any] = {"model": spec}
    prep = run_child_safe("benchmarks.mobile", "prepare", preset, res or "0", str(wd),
                          timeout=1800)
    if not prep.get("ok"):
        rep["error"] = f"prepare: {prep.get('error')}"
        return rep
    models = prep["models"]
    rep["nodes"] = prep.get("nodes")
    fid = run_child_safe("benchmarks.mobile", "fidelity", "--latents", str(latents),
                         *[f"{k}={m['path']}" for k, m in models.items()], timeout=1800)
    for k, m in models.items():
        m["fidelity"] = fid.get("fidelity", {}).get(k) if fid.get("ok") else None
    if not fid.get("ok"):
        rep["fidelity_error"] = fid.get("error")
    rep["baseline_rss_mb"] = run_child_safe("benchmarks.mobile", "baseline").get("peak_rss_mb")
    for k in (k for k in TIMED if k in models):
        lat = run_child_safe("benchmarks.latency", "tflite", models[k]["path"], "--threads",
                             "2", "--runs", str(runs), "--warmup", "2", timeout=1200)
        models[k]["latency"] = {x: lat.get(x) for x in ("ok", "median_s", "min_s",
                                                        "peak_rss_mb", "error")}
        bare = run_child_safe("benchmarks.mobile", "bare", models[k]["path"], timeout=600)
        models[k]["bare_rss_mb"] = bare.get("peak_rss_mb") if bare.get("ok") else None
    rep["paired"] = {}
    for other in ("fp32", "dynamic"):
        p = run_child_safe("benchmarks.paired", f"tflite:{models['mobile']['path']}",
                           f"tflite:{models[other]['path']}", "--threads", "2", "--runs",
                           str(runs), "--warmup", "2", timeout=1200)
        rep["paired"][other] = {x: p.get(x) for x in ("ok", "a_median_s", "b_median_s",
                                                      "ratio_median", "error")}
    rep["models"] = models
    rep["load_average"] = os.getloadavg()
    return rep


def markdown(reports: list[dict[str, Any]], latents: int) -> str:
    lines = [f"Mobile budget: < {BUDGET_MB:.0f} MB, SSIM >= {BUDGET_SSIM} against fp32 "
             f"({latents} latents), < {BUDGET_RSS_MB:.0f} MB peak RSS, then the lowest "
             "latency (LiteRT, 2 threads).", "",
             "| model | mode | size | SSIM mean (worst) | PSNR | peak RSS | peak RSS, bare "
             "LiteRT | latency | budget |",
             "|---|---|---|---|---|---|---|---|---|"]
    for rep in reports:
        if rep.get("error"):
            lines.append(f"| {rep['model']} | FAILED: {rep['error']} | | | | | | | |")
            continue
        for name, m in rep["models"].items():
            mb = m["bytes"] / 2**20
            size = f"{mb:.1f} MB" if mb >= 1 else f"{m['bytes'] / 1024:.0f} kB"
            f = m.get("fidelity") or {}
            lat = m.get("latency") or {}
            ssim = (f"{f['ssim']:.3f} ({f['ssim_min']:.3f})" if f else
                    ("1 (reference)" if name == "fp32" else "n/a"))
            psnr = f"{f['psnr']:.1f} dB" if f else ""
            rss = f"{lat['peak_rss_mb']:.0f} MB" if lat.get("ok") else ""
            bare = f"{m['bare_rss_mb']:.0f} MB" if m.get("bare_rss_mb") else ""
            ms = _ms(lat["median_s"]) if lat.get("ok") else ""
            ok = [mb < BUDGET_MB, (f.get("ssim") or (1.0 if name == "fp32" else 0.0))
                  >= BUDGET_SSIM]
            if m.get("bare_rss_mb") or lat.get("ok"):  # the app's memory: bare LiteRT's
                ok.append((m.get("bare_rss_mb") or lat["peak_rss_mb"]) < BUDGET_RSS_MB)
            verdict = "meets" if all(ok) else "misses " + ", ".join(
                w for w, good in zip(("size", "SSIM", "RSS"), ok) if not good)
            lines.append(f"| {rep['model']} | {name} | {size} | {ssim} | {psnr} | {rss} "
                         f"| {bare} | {ms} | {verdict} |")
        for other, p in (rep.get("paired") or {}).items():
            if p.get("ok"):
                lines.append(f"| {rep['model']} | time of mobile / {other}, paired | | | | | | "
                             f"{p['ratio_median']:.2f}x ({_ms(p['a_median_s'])} vs "
                             f"{_ms(p['b_median_s'])}) | |")
    base = [r["baseline_rss_mb"] for r in reports if r.get("baseline_rss_mb")]
    if base:
        lines += ["", f"Peak RSS is the whole process's (Python, numpy and LiteRT hold "
                  f"{max(base):.0f} MB before a model is loaded); bare LiteRT: a process "
                  "importing only numpy and LiteRT (about 34 MB), which the budget's "
                  "verdict uses."]
    load = [r.get("load_average") for r in reports if r.get("load_average")]
    if load:
        lines += ["", "Load average after each model: "
                  + ", ".join(f"{x[0]:.2f}" for x in load) + f" ({os.cpu_count()} cores)."]
    return "\n".join(lines) + "\n"


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["prepare"]:
        rep: dict[str, Any] = {"ok": False}
        try:
            res = int(argv[2])
            rep.update(prepare(argv[1], res or None, Path(argv[3])), ok=True)
        except Exception as exc:  # recorded
            record_error(rep, exc)
        emit(rep)
        return 0
    if argv[:1] == ["bare"]:  # peak RSS of LiteRT alone: numpy, the interpreter, the model
        rep = {"ok": False}
        try:
            rep.update(bare_rss(argv[1]), ok=True)
        except Exception as exc:  # recorded
            record_error(rep, exc)
        emit(rep)
        return 0
    if argv[:1] == ["baseline"]:  # what the latency child holds before it loads a model
        import numpy  # noqa: F401

        from graphsurgery.export.tflite import capture_output  # noqa: F401
        from graphsurgery.runners import TFLiteRunner  # noqa: F401

        emit({"ok": True, "peak_rss_mb": peak_rss_mb()})
        return 0
    if argv[:1] == ["fidelity"]:
        ap = argparse.ArgumentParser()
        ap.add_argument("--latents", type=int, default=16)
        ap.add_argument("models", nargs="+", metavar="NAME=PATH")
        a = ap.parse_args(argv[1:])
        rep = {"ok": False}
        try:
            paths = dict(m.split("=", 1) for m in a.models)
            rep.update(fidelity=fidelity(paths, a.latents), ok=True)
        except Exception as exc:  # recorded
            record_error(rep, exc)
        emit(rep)
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks.mobile",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, metavar="PRESET[:RES]")
    ap.add_argument("--latents", type=int, default=16)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    ap.add_argument("--work", type=Path, default=None, help="keep the models here")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mobile-") as tmp:
        work = a.work or Path(tmp)
        reports = []
        for spec in a.models:
            print(f"[mobile] {spec} ...", file=sys.stderr, flush=True)
            reports.append(measure(spec, a.latents, a.runs, work))
    md = markdown(reports, a.latents)
    print(md)
    if a.json:
        a.json.write_text(json.dumps({"models": reports, "markdown": md}, indent=2,
                                     default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
