"""Render a benchmark report (the JSON ``python -m benchmarks`` writes) as Markdown tables.

``python -m benchmarks.table benchmarks/results/<date>.json`` prints them again from a kept
result file. Every cell says what happened: a figure, or ``fails`` with the tool's first
error line (in full under "What failed").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _cell(text: Any, limit: int = 160) -> str:
    s = str(text).replace("|", "\\|").replace("\n", " ")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _s(x: Any) -> str:
    if not isinstance(x, int | float):
        return "-"
    if x < 0.01:
        return f"{x * 1e3:.2f} ms"
    if x < 1:
        return f"{x * 1e3:.0f} ms"
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def _mb(x: Any) -> str:
    return "-" if not isinstance(x, int | float) else f"{x:.0f} MB"


def _bytes(x: Any) -> str:
    return "-" if not isinstance(x, int | float) else f"{x / 2**20:.1f} MB"


def _ratio(x: Any, better: str = "better", worse: str = "worse") -> str:
    if not isinstance(x, int | float) or x <= 0:
        return "n/a"
    if 0.95 <= x <= 1.05:
        return f"{x:.2f} (about even)"
    return f"{x:.2f} ({1 / x:.1f}x {better})" if x < 1 else f"{x:.2f} ({x:.1f}x {worse})"


def _g(x: Any) -> str:
    return "-" if not isinstance(x, int | float) else f"{x:.0f}"


class _Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, model: str, what: str, error: Any) -> str:
        self.items.append(f"- **{model}**, {what}: {str(error).strip()}")
        return f"fails [{len(self.items)}]"


def render(rep: dict[str, Any]) -> str:
    m = rep.get("machine", {})
    v = m.get("versions", {})
    models: dict[str, dict[str, Any]] = rep.get("models", {})
    names = list(models)
    gemm = rep.get("gemm", {})
    pipe = rep.get("pipeline", {})
    settings = rep.get("settings", {})
    fails = _Failures()
    venv = rep.get("onnx2tf_venv") or {}
    o2t = f"onnx2tf {venv['version']} (own venv)" if venv.get("ok") else "onnx2tf: not run"
    la0, la1 = rep.get("load_average_start") or [None], rep.get("load_average_end") or [None]
    lines = [
        f"# graphsurgery benchmark, {rep.get('date', '?')[:10]}",
        "",
        f"- Date: {rep.get('date')} (UTC); result file `{rep.get('result_file', '?')}`",
        f"- Machine: {m.get('cores')} cores ({m.get('cpu', '?')}, "
        f"{'/'.join(m.get('simd', [])) or 'no AVX2'}), {m.get('memory_gib', '?')} GiB; "
        f"{m.get('platform')}; Python {m.get('python')}; load average "
        f"{_num(la0[0])} at start, {_num(la1[0])} at end",
        f"- Versions: tensorflow-cpu {v.get('tensorflow-cpu')}, ai-edge-litert "
        f"{v.get('ai-edge-litert')}, onnxruntime {v.get('onnxruntime')}, tf2onnx "
        f"{v.get('tf2onnx')}, onnx {v.get('onnx')}, numpy {v.get('numpy')}; {o2t}",
        f"- Command: `{rep.get('command')}` (`.venv/bin/python -m benchmarks`); wall time of "
        f"the run {_s(rep.get('wall_s'))}",
        f"- graphsurgery pipeline: `{pipe.get('name')}`"
        + (f" (fallback: {pipe.get('why')})" if pipe.get("name") != pipe.get("preferred") else ""),
        "- fp32 GEMM roofline (numpy sgemm "
        f"{settings.get('gemm_n')}x{settings.get('gemm_n')}, "
        f"{next((g.get('blas') for g in gemm.values() if g.get('blas')), '?')}, the better "
        "median of a measurement at the start and one at the end of the run): "
        + ", ".join(f"{t} thread(s) {g['gflops']:.0f} GFLOP/s ({_g(g.get('start_gflops'))} "
                    f"at the start, {_g(g.get('end_gflops'))} at the end)"
                    for t, g in gemm.items() if g.get("ok")),
        f"- `import tensorflow` in a fresh process: {_s(rep.get('tensorflow_import_s'))} "
        "(paid by whichever phase first needs TensorFlow)",
        f"- Latency: median of {settings.get('runs')} runs after {settings.get('warmup')} "
        "warm-up, batch 1, the same seeded inputs every run; peak RSS is VmHWM of a fresh "
        "process (per phase for graphsurgery's steps).",
        "",
    ]

    def _spread(values: list[float]) -> str:
        if not values:
            return "-"
        v = sorted(values)
        return f"{_s(v[len(v) // 2])} ({_s(v[0])}-{_s(v[-1])})"

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(_cell(c) for c in cells) + " |")

    def header(title: str) -> None:
        lines.append(f"| {title} | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))

    # ---------------------------------------------------------------- graphsurgery
    lines += ["## graphsurgery", ""]
    header("")
    row("original graph", [
        f"{r.get('file_mb', 0):.1f} MB, {(r.get('interface') or {}).get('nodes', '?')} nodes"
        for r in models.values()])
    row("conv + matmul FLOPs (batch 1)", [_gflop(r) for r in models.values()])
    for ph, label in (("load", "load"), ("passes", "passes"), ("save", "save"),
                      ("tensorflow_import", "TensorFlow import (for the converter)"),
                      ("tflite", "TFLite conversion")):
        cells = []
        for r in models.values():
            o = r.get("ours") or {}
            p = (o.get("phases") or {}).get(ph)
            note = ""
            if ph == "tensorflow_import" and o.get("tensorflow_imported_before_export"):
                note = " (already imported by a pass)"
            cells.append(f"{_s(p['s'])} / {_mb(p['peak_rss_mb'])}{note}" if p else "-")
        row(f"{label}: wall / peak RSS", cells)
        if ph == "passes":
            row("passes: median of 3 fresh processes (min-max)",
                [_spread([x["passes"] for x in r.get("ours_pipeline_runs") or []
                          if "passes" in x]) for r in models.values()])
            steps = ("load", "passes", "save")
            row("load + passes + save: median of 3",
                [_spread([sum(x[k] for k in steps) for x in r.get("ours_pipeline_runs") or []
                          if all(k in x for k in steps)]) for r in models.values()])
            row("CPU calibration in the same 3 processes (fixed Python workload)",
                [_spread([x["calibration"] for x in r.get("ours_pipeline_runs") or []
                          if "calibration" in x]) for r in models.values()])
    cells = []
    for name, r in models.items():
        o = r.get("ours") or {}
        if o.get("tflite_ok"):
            a = o.get("audit") or {}
            clean = "clean" if a.get("clean") else f"{a.get('violations')} violation(s)"
            cells.append(f"{_bytes(o.get('tflite_bytes'))}, {clean}, {a.get('num_ops')} ops, "
                         f"{a.get('transpose_count')} TRANSPOSE, max rank {a.get('max_rank')}")
        elif o:
            cells.append(fails.add(name, "graphsurgery TFLite conversion",
                                   o.get("tflite_error") or o.get("error")))
        else:
            cells.append("-")
    row(".tflite", cells)
    row("load → .tflite total", [_s((r.get("derived") or {}).get("ours_convert_s"))
                                 for r in models.values()])
    for t in settings.get("threads", [1, 2]):
        cells = []
        for name, r in models.items():
            lat = (r.get("ours_latency") or {}).get(str(t))
            cells.append(_lat(lat, r, f"ours_{t}t", fails, name,
                              f"LiteRT {t} thread(s) on graphsurgery's .tflite"))
        row(f"LiteRT, {t} thread(s): median, min (GFLOP/s, % of GEMM at the median)", cells)
    pt = settings.get("peer_threads", 2)
    cells = []
    for name, r in models.items():
        c = r.get("ours_vs_ort_const")
        if not c:
            cells.append("-")
        elif c.get("ok"):
            cells.append(f"{c['max_abs_diff']:.2g} (output range {c['range']:.2g})")
        else:
            cells.append(fails.add(name, "output vs onnxruntime", c.get("error", "-")))
    row("output vs onnxruntime, same latents and noise: max abs difference", cells)
    row(f"LiteRT peak RSS ({pt} threads)", [
        _mb(((r.get("ours_latency") or {}).get(str(pt)) or {}).get("peak_rss_mb"))
        for r in models.values()])
    cells = []
    for name, r in models.items():
        c = (r.get("cli") or {}).get("run")
        if not c:
            cells.append("not run")
        elif c.get("ok"):
            cells.append(f"{_s(c.get('wall_s'))} / {_mb(c.get('peak_rss_mb'))} (exit {c['rc']})")
        else:
            cells.append(fails.add(name, "`graphsurgery run`", c.get("error")))
    row("`graphsurgery run MODEL -p … -o OUT`: wall / peak RSS", cells)
    cells = []
    for name, r in models.items():
        rp = (r.get("cli") or {}).get("report")
        if not rp:
            cells.append("not run")
        elif rp.get("status") == "not available":
            cells.append("not available")
        elif "render_s" in rp:
            cells.append(f"{_s(rp['render_s'])}")
        else:
            cells.append(fails.add(name, "report", (rp.get("run") or {}).get("error")))
    row("report render (`--report`)", cells)
    lines.append("")

    # ---------------------------------------------------------------- peers
    lines += ["## Peers on the same original graph", ""]
    header("")
    for mode, label in (("builtins", "TFLite converter, builtins only"),
                        ("select", "TFLite converter, builtins + Select TF ops")):
        cells = []
        for name, r in models.items():
            p = (r.get("peer_tflite") or {}).get(mode)
            if p is None:
                cells.append(fails.add(name, label, (r.get("peer_tflite") or {}).get("error"))
                             if r.get("peer_tflite") else "-")
                continue
            pre = ""
            if p.get("original_graph"):
                pre = fails.add(name, f"{label} on the original graph",
                                p["original_graph"].get("error")) + "; stripped of training ops: "
            if p.get("ok"):
                a = p.get("audit") or {}
                runs = "LiteRT runs it" if a.get("litert_runs") else "LiteRT cannot run it"
                cells.append(f"{pre}{_bytes(p['bytes'])} in {_s(p.get('convert_s'))}, "
                             f"{a.get('flex_count')} Flex, {a.get('transpose_count')} TRANSPOSE, "
                             f"{a.get('random_count')} RANDOM, max rank {a.get('max_rank')}; "
                             f"{runs}")
                if not a.get("litert_runs") and a.get("litert_error"):
                    fails.add(name, f"LiteRT running the {label} model", a["litert_error"])
            else:
                cells.append(pre + fails.add(name, label, p.get("error")))
        row(label, cells)
    for key, lat_key, label in (
            ("peer_tf2onnx", "peer_ort", "original graph (random noise)"),
            ("peer_tf2onnx_const", "peer_ort_const", "constant noise")):
        cells, lcells = [], []
        for name, r in models.items():
            p = r.get(key)
            if not p:
                cn = r.get("const_noise_variant") or {}
                cells.append(fails.add(name, "constant-noise variant", cn.get("error"))
                             if key == "peer_tf2onnx_const" and cn and not cn.get("ok") else "-")
                lcells.append("-")
                continue
            pre = ""
            if p.get("original_graph"):
                pre = fails.add(name, "tf2onnx on the original graph",
                                p["original_graph"].get("error")) + "; stripped of training ops: "
            if p.get("ok"):
                rnd = ", ".join(f"{n} {o}" for o, n in (p.get("random_ops") or {}).items())
                cells.append(f"{pre}{_s(p.get('convert_s'))}, {_bytes(p.get('bytes'))}, "
                             f"{p.get('nodes')} nodes" + (f", {rnd}" if rnd else ""))
            else:
                cells.append(pre + fails.add(name, f"tf2onnx ({label})", p.get("error")))
            lat = r.get(lat_key)
            ak = "ort_random" if lat_key == "peer_ort" else "ort_const"
            lcells.append(_lat(lat, r, f"{ak}_{pt}t", fails, name, f"onnxruntime ({label})")
                          if lat else "-")
        row(f"tf2onnx, {label}: conversion", cells)
        row(f"onnxruntime {pt} threads, {label}: median, min (GFLOP/s, % of GEMM)", lcells)
    cells = []
    for name, r in models.items():
        p = r.get("paired")
        if not p:
            cells.append("-")
        elif p.get("ok"):
            cells.append(f"LiteRT {_s(p['a_median_s'])} vs onnxruntime {_s(p['b_median_s'])} "
                         f"({p.get('noise')} noise)")
        else:
            cells.append(fails.add(name, "paired timing", p.get("error")))
    row(f"paired, {pt} threads, alternating runs in one process: medians", cells)
    qcells, pcells = [], []
    for name, r in models.items():
        q, p = r.get("quantized_dynamic"), r.get("paired_dynamic")
        if not q:
            qcells.append("-")
        elif q.get("ok"):
            qcells.append(f"{_bytes(q.get('bytes'))}; vs fp32 .tflite: max abs "
                          f"{q['max_abs']:.2g} (range {q['range']:.2g}), PSNR "
                          f"{q['psnr']:.1f} dB, SSIM {q['ssim']:.4f}")
        else:
            qcells.append(fails.add(name, "dynamic-range int8 conversion", q.get("error")))
        if not p:
            pcells.append("-")
        elif p.get("ok"):
            ratio = _ratio(p["ratio_median"], "faster", "slower")
            pcells.append(f"LiteRT int8 {_s(p['a_median_s'])} vs onnxruntime fp32 "
                          f"{_s(p['b_median_s'])}: {ratio}")
        else:
            pcells.append(fails.add(name, "paired timing (int8)", p.get("error")))
    row("graphsurgery .tflite with dynamic-range int8 weights (`--quantize dynamic`)", qcells)
    row(f"paired, {pt} threads: dynamic-range int8 LiteRT vs fp32 onnxruntime (not like for "
        "like)", pcells)
    methods = {(r.get("const_noise_variant") or {}).get("method") for r in models.values()}
    methods.discard(None)
    for label in ("random", "const"):
        cells = []
        for name, r in models.items():
            o = (r.get("onnx2tf") or {}).get(label)
            if not o:
                cells.append("not run")
            elif o.get("ok"):
                a = o.get("audit") or {}
                cells.append(f"{_s(o.get('wall_s'))}, {_bytes(o.get('bytes'))}, "
                             f"{a.get('transpose_count')} TRANSPOSE, max rank {a.get('max_rank')}"
                             f"; LiteRT {pt}t: " + _lat(o.get("latency"), r,
                                                        f"onnx2tf_const_{pt}t", fails, name,
                                                        "LiteRT on onnx2tf's .tflite"))
            else:
                cells.append(fails.add(name, f"tf2onnx -> onnx2tf ({label} noise)",
                                       o.get("error")))
        noise = "original graph (random noise)" if label == "random" else "constant noise"
        row(f"tf2onnx → onnx2tf, {noise}", cells)
    lines.append("")
    if methods:
        lines.append("Constant-noise variant: " + "; ".join(sorted(methods)) + ". graphsurgery's"
                     " .tflite runs with its own noise handling (the pipeline's default); the"
                     " fair latency comparison is against the constant-noise ONNX model.")
        lines.append("")

    # ---------------------------------------------------------------- ratios
    lines += ["## Ratios graphsurgery / peer (below 1: graphsurgery is smaller, faster or "
              "leaner)", ""]
    header("")
    fast, small, lean = ("faster", "slower"), ("smaller", "larger"), ("less", "more")
    noise = {(r.get("derived") or {}).get("paired_noise") for r in models.values()} - {None}
    for key, label, words in (
            ("latency_paired_vs_ort", f"latency, paired (alternating runs in one process): "
                                      f"LiteRT / onnxruntime, {pt} threads, "
                                      f"{'/'.join(sorted(noise)) or 'constant'} noise", fast),
            ("latency_vs_ort_const", f"latency: LiteRT / onnxruntime, {pt} threads, constant "
                                     "noise", fast),
            ("latency_vs_ort_random", f"latency: LiteRT / onnxruntime, {pt} threads, random "
                                      "noise (same compute)", fast),
            ("latency_vs_onnx2tf_const", f"latency: LiteRT / onnx2tf's .tflite, {pt} threads",
             fast),
            ("size_vs_original_graph", "model size: .tflite / original frozen graph", small),
            ("size_vs_select_tflite", "model size: .tflite / Select-TF .tflite", small),
            ("size_vs_onnx", "model size: .tflite / tf2onnx .onnx (original graph)", small),
            ("size_vs_onnx_const", "model size: .tflite / tf2onnx .onnx (constant noise)", small),
            ("convert_time_vs_select_tflite", "conversion time: load → .tflite / Select-TF "
                                              "converter", fast),
            ("convert_time_vs_tf2onnx", "conversion time: load → .tflite / tf2onnx", fast),
            ("run_peak_rss_vs_ort_const", f"peak RSS running: LiteRT / onnxruntime ({pt} "
                                          "threads, constant noise)", lean),
            ("run_peak_rss_vs_ort_random", f"peak RSS running: LiteRT / onnxruntime ({pt} "
                                           "threads, random noise)", lean)):
        row(label, [_ratio(((r.get("derived") or {}).get("ratios") or {}).get(key), *words)
                    for r in models.values()])
    lines.append("")
    lines.append("n/a: graphsurgery's or the peer's model is missing (see What failed).")
    lines.append("")

    scale = rep.get("scale") or {}
    if scale.get("ok"):
        g, c = scale["graph"], scale["cse"]
        lines += ["## Scale (generated graph, `benchmarks.scale`)", "",
                  "| | seconds |", "|---|---|",
                  f"| load, {g['nodes_before']} nodes ({g['file_mb']:.1f} MB) | "
                  f"{_s(g['load_s'])} |",
                  f"| generic pipeline, {g['passes']} passes, -> {g['nodes_after']} nodes | "
                  f"{_s(g['passes_s'])} |",
                  f"| ... without verification after each pass | "
                  f"{_s(g['passes_unverified_s'])} |",
                  f"| ... with every pass (not only plugins') edit-guarded | "
                  f"{_s(g['passes_guard_all_s'])} |",
                  f"| save | {_s(g['save_s'])} |",
                  f"| load + generic + save | {_s(g['total_s'])} |",
                  f"| core::cse, {c['duplicates']} duplicates into one AddN | "
                  f"{_s(c['pass_s'])} |", ""]
    elif scale.get("error") != "skipped" and scale:
        fails.add("scale", "generated graph", scale.get("error"))

    if fails.items:
        lines += ["## What failed", ""]
        lines += [f"{i}. {item[2:]}" for i, item in enumerate(fails.items, 1)]
        lines.append("")
    return "\n".join(lines)


def _num(x: Any) -> str:
    return "?" if not isinstance(x, int | float) else f"{x:.2f}"


def _gflop(r: dict[str, Any]) -> str:
    f = (r.get("interface") or {}).get("flops") or {}
    if "total" not in f:
        return "-"
    return f"{f['total'] / 1e9:.1f} G (conv {f['conv'] / 1e9:.1f}, matmul {f['matmul'] / 1e9:.2f})"


def _lat(lat: dict[str, Any] | None, r: dict[str, Any], key: str, fails: _Failures,
         name: str, what: str) -> str:
    if not lat:
        return "-"
    if not lat.get("ok"):
        return fails.add(name, what, lat.get("error"))
    ach = ((r.get("derived") or {}).get("achieved") or {}).get(key) or {}
    extra = ""
    if ach.get("gflops"):
        pct = ach.get("pct_of_gemm")
        extra = f" ({ach['gflops']:.1f} GFLOP/s" + (f", {pct:.0f}%" if pct else "") + ")"
    return f"{_s(lat['median_s'])}, min {_s(lat['min_s'])}{extra}"


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
