"""``make bench``: graphsurgery against the tools people would use instead.

Writes ``benchmarks/results/<date>.json`` (every figure, every error) and
``benchmarks/results/<date>.md`` (the tables for the README), never overwriting an earlier
file of the same day (``<date>-2.json``...). Every measurement runs in a fresh child process
(:mod:`benchmarks._measure`); a tool that fails is a result, and the benchmark itself never
fails (exit status 0)::

    python -m benchmarks                   # full run: sg1-1024, sg2-1024, sg1-256, sg2-256
    python -m benchmarks --smoke           # tiny presets, 2 runs, no onnx2tf (the test suite)
    python -m benchmarks --models sg2-256 --no-onnx2tf

Per model (see the module of each step for details):

1. graphsurgery (:mod:`benchmarks.ours`): load, passes, save, TFLite conversion, each with
   its wall time and peak RSS; the pipeline is ``stylegan-to-tflite`` once that preset
   exists, else ``generic`` (:func:`choose_pipeline`; the one that ran is recorded). The
   command end to end (:mod:`benchmarks.cli_run`), and with ``--report`` once it exists.
2. The ``.tflite`` in LiteRT on 1 and 2 threads (:mod:`benchmarks.latency`).
3. Peers on the original graph (:mod:`benchmarks.peers`): the TFLite converter with builtins
   only and with Select TF ops; tf2onnx then onnxruntime on the original (random noise) and
   on a constant-noise variant; tf2onnx then onnx2tf, in its own virtual environment under
   ``benchmarks/.cache/venv-onnx2tf`` (it pins an older TensorFlow), last, with what is left
   of the time budget.
4. FLOPs of the graph (``graphsurgery.check.count_flops``) and achieved GFLOP/s against the
   fp32 GEMM roofline measured in the same run (:mod:`benchmarks.gemm`).

After the models: the mobile budget (:mod:`benchmarks.mobile`; ``--no-mobile`` skips it, and
``--smoke`` does not run it): StyleGAN v1 and StyleGAN2 config-f cut to 256 px, fp32,
``dynamic``, ``mobile`` and the size/SSIM frontier.

Once per run, before the models: the generic pipeline on a generated 100k-node graph and
CSE of 5,000 duplicates feeding one AddN (:mod:`benchmarks.scale`; ``--no-scale`` skips it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._measure import (
    last_error_line,
    run_child,
    run_child_safe,
    run_command_safe,
    strip_ansi,
)

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache"
ROOT = Path(__file__).resolve().parent.parent

#: The issue-4 preset; until it is registered the generic pipeline runs (and is recorded).
PREFERRED_PIPELINE = "stylegan-to-tflite"
FALLBACK_PIPELINE = "generic"

FULL_MODELS = ["sg1-1024", "sg2-1024", "sg1-256", "sg2-256"]
SMOKE_MODELS = ["sg1-tiny", "sg2-tiny"]
CORE_MODELS = ["sg1-1024", "sg2-1024"]
ONNX2TF_REQUIREMENT = "onnx2tf"


def choose_pipeline() -> tuple[str, str]:
    """The preset to run and why: the preferred one when registered, else the fallback."""
    from graphsurgery.pipeline import presets

    if PREFERRED_PIPELINE in presets():
        return PREFERRED_PIPELINE, "preset available"
    return FALLBACK_PIPELINE, f"{PREFERRED_PIPELINE!r} is not registered yet"


def zoo_path(name: str, timeout: float = 1800.0) -> tuple[Path | None, dict[str, Any]]:
    """The cached file of zoo preset ``name``, built in a child process when missing.

    ``zoo.cached`` itself would import the builders, and with them TensorFlow, into this
    process; the cache layout is ``zoo.cache_dir() / NAME.pb``.
    """
    from graphsurgery import zoo

    path = zoo.cache_dir() / (name if name.endswith("-savedmodel") else f"{name}.pb")
    if path.exists():
        return path, {"ok": True, "cached": True}
    rep = run_child_safe("benchmarks.peers", "zoo", name, timeout=timeout)
    return (Path(rep["path"]) if rep.get("ok") else None), rep


def bench_core_pipeline(models: list[str]) -> list[dict]:
    rows = []
    for name in models:
        path, built = zoo_path(name)
        if path is None:
            rows.append({"model": name, "ok": False, "error": built.get("error")})
            print(f"core pipeline {name}: FAILED {built.get('error')}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            rep = run_child("benchmarks.core_pipeline", str(path), str(Path(tmp) / "out.pb"))
        rep["model"] = name
        rows.append(rep)
        if rep.get("ok"):
            print(f"core pipeline {name}: {rep['file_mb']:.1f} MB, {rep['nodes_before']} -> "
                  f"{rep['nodes_after']} nodes; load {rep['load_s']:.2f} s, passes "
                  f"{rep['passes_s']:.2f} s, save {rep['save_s']:.2f} s, total "
                  f"{rep['total_s']:.2f} s; peak RSS {rep['peak_rss_mb']:.0f} MB "
                  f"({rep['peak_over_file']:.2f}x file; {rep['base_rss_mb']:.0f} MB before "
                  f"loading); TensorFlow imported: {rep['tensorflow_imported']}")
        else:
            print(f"core pipeline {name}: FAILED {rep.get('error')}")
    return rows


def bench_scale(s: Settings) -> dict[str, Any]:
    """The generic pipeline on a generated graph of ``s.scale_nodes`` nodes, and CSE of
    ``s.scale_duplicates`` duplicates feeding one AddN (:mod:`benchmarks.scale`)."""
    rep = run_child_safe("benchmarks.scale", "--nodes", str(s.scale_nodes), "--duplicates",
                         str(s.scale_duplicates), timeout=s.timeout_s)
    if not rep.get("ok"):
        print(f"scale: FAILED {rep.get('error')}")
        return rep
    g, c = rep["graph"], rep["cse"]
    print(f"scale: generated graph, {g['nodes_before']} -> {g['nodes_after']} nodes "
          f"({g['file_mb']:.1f} MB): load {g['load_s']:.2f} s, generic {g['passes_s']:.2f} s "
          f"(no verification {g['passes_unverified_s']:.2f} s, every pass edit-guarded "
          f"{g['passes_guard_all_s']:.2f} s), save {g['save_s']:.2f} s, total "
          f"{g['total_s']:.2f} s; core::cse over {c['duplicates']} duplicates into one AddN "
          f"{c['pass_s']:.3f} s; peak RSS {rep['peak_rss_mb']:.0f} MB")
    return rep


def bench_pickle_import(s: Settings) -> dict[str, Any]:
    """Opening an NVlabs pickle of ``s.pickle_preset``'s weights: the restricted read, then
    ``gs.load`` (:mod:`benchmarks.pickle_import`; the pickle is cached under CACHE)."""
    work = CACHE / "pickle-import"
    work.mkdir(parents=True, exist_ok=True)
    rep = run_child_safe("benchmarks.pickle_import", "--workdir", str(work), "--preset",
                         s.pickle_preset, timeout=s.timeout_s)
    read, load = rep.get("read") or {}, rep.get("load") or {}
    if not (read.get("ok") and load.get("ok")):
        print(f"pickle import: FAILED {rep.get('error') or read.get('error') or load}")
        return rep
    print(f"pickle import: {s.pickle_preset} snapshot, {rep['file_mb']} MB: read "
          f"{read['seconds']:.2f} s ({read['peak_over_file']}x the file); gs.load "
          f"{load['seconds']:.2f} s after import tensorflow {load['tf_import_s']:.1f} s "
          f"(+{load['added_over_file']}x the file, {load['peak_over_file']}x in all)")
    return rep


def bench_mobile(s: Settings, work: Path) -> dict[str, Any]:
    """The mobile budget (:mod:`benchmarks.mobile`): fp32, dynamic, mobile and the frontier
    of v1 and v2 cut to 256 px; its figures and markdown table."""
    out = work / "mobile.json"
    rep = run_child_safe("benchmarks.mobile", "--runs", str(s.runs), "--json", str(out),
                         timeout=3600)
    if out.exists():
        rep.update(json.loads(out.read_text()))
        _log(rep.get("markdown", ""))
    else:
        _log(f"mobile budget: FAILED {rep.get('error')}")
    return rep


# ============================================================================ settings
@dataclass
class Settings:
    models: list[str]
    core_models: list[str]
    runs: int = 10
    warmup: int = 2
    threads: list[int] = field(default_factory=lambda: [1, 2])
    peer_threads: int = 2
    gemm_n: int = 2048
    gemm_runs: int = 10
    onnx2tf: bool = True
    cli: bool = True
    timeout_s: float = 900.0  # one child
    onnx2tf_timeout_s: float = 600.0  # one onnx2tf conversion, at most
    budget_s: float = 28 * 60.0  # the whole run; onnx2tf gets what is left
    keep_artifacts: bool = False
    smoke: bool = False
    jobs: int = 1  # models measured at once (the smoke run: 2; measurements need 1)
    scale_nodes: int = 100_000  # the generated graph of benchmarks.scale (0: skipped)
    scale_duplicates: int = 5_000
    pickle_preset: str = "sg2-1024"  # the NVlabs pickle opened (empty: skipped)
    mobile: bool = True  # benchmarks.mobile: the mobile budget (not in --smoke)
    command: str = "make bench"


def _log(msg: str) -> None:
    print(msg, flush=True)


def _fmt_s(x: Any) -> str:
    return "-" if not isinstance(x, int | float) else (f"{x:.3g} s" if x < 10 else f"{x:.1f} s")


# ============================================================================ machine
def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("flags")), "")
        info["simd"] = [f for f in ("avx2", "fma", "avx512f") if f" {f}" in flags]
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal"))
        info["memory_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    from importlib import metadata

    versions = {}
    for pkg in ("graphsurgery", "tensorflow-cpu", "ai-edge-litert", "onnx", "onnxruntime",
                "tf2onnx", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info["versions"] = versions
    return info


def tensorflow_import_s() -> float | None:
    """How long ``import tensorflow`` takes in a fresh process (part of some phases)."""
    r = run_command_safe([sys.executable, "-c", "import time; t = time.perf_counter(); "
                          "import tensorflow; print(time.perf_counter() - t)"], timeout=300)
    try:
        return float(r.get("stdout", "").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def roofline(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """Per thread count, the better of the GEMM medians at the start and at the end of the
    run: the machine is shared, and a busy moment must not pass for a slow machine."""
    out = {}
    for t in sorted(set(start) | set(end)):
        runs = [g for g in ((start.get(t) or {}), (end.get(t) or {})) if g.get("ok")]
        if runs:
            best = max(runs, key=lambda g: g["gflops"])
            out[t] = {"ok": True, "gflops": best["gflops"], "blas": best.get("blas"),
                      "start_gflops": (start.get(t) or {}).get("gflops"),
                      "end_gflops": (end.get(t) or {}).get("gflops")}
        else:
            out[t] = {"ok": False, "error": (start.get(t) or {}).get("error")}
    return out


def bench_gemm(s: Settings) -> dict[str, Any]:
    out = {}
    for t in sorted(set(s.threads) | {s.peer_threads}):
        env = {k: str(t) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                   "MKL_NUM_THREADS")}
        rep = run_child_safe("benchmarks.gemm", str(s.gemm_n), str(s.gemm_runs), env=env,
                             timeout=s.timeout_s)
        out[str(t)] = rep
        if rep.get("ok"):
            _log(f"fp32 GEMM (numpy sgemm {s.gemm_n}, {rep.get('blas')}) on {t} thread(s): "
                 f"{rep['gflops']:.1f} GFLOP/s")
        else:
            _log(f"fp32 GEMM on {t} thread(s): FAILED {rep.get('error')}")
    return out


# ============================================================================ per model
class Runner:
    """Runs every step for one model into ``work`` and collects the results."""

    def __init__(self, s: Settings, pipeline: str, work: Path, deadline: float) -> None:
        self.s = s
        self.pipeline = pipeline
        self.work = work
        self.deadline = deadline
        self.report_option: bool | None = None

    def child(self, module: str, *args: str, timeout: float | None = None) -> dict[str, Any]:
        return run_child_safe(module, *args, timeout=timeout or self.s.timeout_s)

    def latency(self, kind: str, path: str, threads: int,
                save: Path | None = None) -> dict[str, Any]:
        extra = ["--save-output", str(save)] if save else []
        return self.child("benchmarks.latency", kind, path, "--threads", str(threads),
                          "--runs", str(self.s.runs), "--warmup", str(self.s.warmup), *extra)

    def model(self, name: str) -> dict[str, Any]:
        s = self.s
        res: dict[str, Any] = {"model": name}
        wd = self.work / name
        wd.mkdir(parents=True, exist_ok=True)
        path, z = zoo_path(name, s.timeout_s)
        if path is None:
            res["error"] = f"zoo preset not built: {z.get('error')}"
            _log(f"[{name}] {res['error']}")
            return res
        res["path"] = str(path)
        res["file_mb"] = path.stat().st_size / 2**20

        # -- the original graph: interface, FLOPs, the variants the peers need
        prep = self.child("benchmarks.peers", "prepare", str(path), str(wd / "variants"),
                          "--zoo", name, "--cache", str(CACHE / "variants"))
        res["interface"] = prep
        inputs = prep.get("inputs") or {}
        input_args = [a for n, d in inputs.items()
                      for a in ("--input", f"{n}:{','.join(map(str, d))}")]
        fl = prep.get("flops") or {}
        if "total" in fl:
            _log(f"[{name}] {res['file_mb']:.1f} MB, {prep.get('nodes')} nodes; FLOPs: conv "
                 f"{fl['conv'] / 1e9:.2f} G + matmul {fl['matmul'] / 1e9:.3f} G = "
                 f"{fl['total'] / 1e9:.2f} GFLOP; {prep.get('random_ops')} random ops, "
                 f"{prep.get('training_ops')} training ops")
        else:
            _log(f"[{name}] interface/FLOPs FAILED: {prep.get('error') or fl.get('error')}")
        imp = prep.get("importable") or {}
        importable = imp.get("path") if imp.get("ok") else None
        cn = prep.get("const_noise") or {"ok": False, "error": prep.get("error")}
        res["const_noise_variant"] = cn
        if not cn.get("ok"):
            _log(f"[{name}] constant-noise variant FAILED: {cn.get('error')}")

        # -- graphsurgery, phase by phase, then the .tflite in LiteRT
        ours = self.child("benchmarks.ours", str(path), str(wd / "ours"), self.pipeline)
        res["ours"] = ours
        ph = ours.get("phases", {})
        _log(f"[{name}] graphsurgery ({self.pipeline}): " + "; ".join(
            f"{k} {_fmt_s(v['s'])} / {v['peak_rss_mb']:.0f} MB" for k, v in ph.items()))
        # The pipeline's wall time moves by up to a third between single runs on a shared
        # machine: two more fresh processes, and the median of the three is reported.
        again = [self.child("benchmarks.ours", str(path), str(wd / "ours-again"),
                            self.pipeline, "--passes-only") for _ in range(2)]
        res["ours_pipeline_runs"] = [
            {**{k: r["phases"][k]["s"] for k in ("load", "passes", "save")
                if k in (r.get("phases") or {})},
             **({"calibration": r["calibration_s"]} if "calibration_s" in r else {})}
            for r in (ours, *again)]
        passes = sorted(r["passes"] for r in res["ours_pipeline_runs"] if "passes" in r)
        if passes:
            _log(f"[{name}] graphsurgery passes in {len(passes)} fresh processes: median "
                 f"{_fmt_s(passes[len(passes) // 2])} (min {_fmt_s(passes[0])}, "
                 f"max {_fmt_s(passes[-1])})")
        if ours.get("tflite_ok"):
            a = ours.get("audit", {})
            _log(f"[{name}] graphsurgery .tflite: {ours['tflite_bytes'] / 2**20:.1f} MB, "
                 f"{'clean' if a.get('clean') else str(a.get('violations')) + ' violation(s)'}"
                 f", {a.get('num_ops')} ops, {a.get('transpose_count')} TRANSPOSE, max rank "
                 f"{a.get('max_rank')}")
            res["ours_latency"] = {}
            for t in s.threads:
                save = wd / "ours-output.npy" if t == s.peer_threads else None
                lat = self.latency("tflite", ours["tflite_path"], t, save)
                res["ours_latency"][str(t)] = lat
                self._log_latency(name, f"graphsurgery .tflite, LiteRT {t} thread(s)", lat)
        else:
            why = ours.get("tflite_error") or ours.get("error")
            _log(f"[{name}] graphsurgery .tflite: FAILED {why}")

        # -- the command end to end, and the report (issue 5) once it exists
        if s.cli:
            res["cli"] = self.cli(name, str(path), wd)

        # -- peers: the TFLite converter
        fb = ["--fallback", importable] if importable else []
        tfl = self.child("benchmarks.peers", "tflite", str(path), str(wd / "tflite"),
                         *input_args, *fb)
        res["peer_tflite"] = tfl
        for mode in ("builtins", "select"):
            r = tfl.get(mode) or {}
            label = "TFLite converter, builtins only" if mode == "builtins" else \
                "TFLite converter, builtins + Select TF ops"
            pre = ""
            if r.get("original_graph"):
                pre = f"original graph: {r['original_graph'].get('error')}; importable variant: "
            if r.get("ok"):
                a = r.get("audit", {})
                _log(f"[{name}] {label}: {pre}converts in {_fmt_s(r.get('convert_s'))}, "
                     f"{r['bytes'] / 2**20:.1f} MB, {a.get('flex_count')} Flex op(s) "
                     f"{a.get('flex_ops')}, {a.get('transpose_count')} TRANSPOSE, "
                     f"{a.get('random_count')} RANDOM, max rank {a.get('max_rank')}; LiteRT runs "
                     f"it: {a.get('litert_runs')} {a.get('litert_error') or ''}")
            else:
                _log(f"[{name}] {label}: {pre}FAILS: {r.get('error') or tfl.get('error')}")

        # -- peers: tf2onnx then onnxruntime, original graph and constant noise
        jobs = [("original", str(path), str(wd / "original.onnx"), importable or "-")]
        if cn.get("ok"):
            jobs.append(("const", cn["path"], str(wd / "const-noise.onnx"), "-"))
        # One process per conversion (its own peak RSS); the smoke run shares one.
        groups = [jobs] if s.smoke else [[j] for j in jobs]
        conv: dict[str, Any] = {}
        for group in groups:
            r = self.child("benchmarks.peers", "tf2onnx", *input_args,
                           *[a for j in group for a in ("--job", *j)])
            for j in group:
                conv[j[0]] = r.get(j[0]) or {"ok": False, "error": r.get("error")}
        for label, key, lat_key, what in (
                ("original", "peer_tf2onnx", "peer_ort", "original graph, random noise"),
                ("const", "peer_tf2onnx_const", "peer_ort_const",
                 f"constant noise: {cn.get('method')}")):
            if label not in conv:
                continue
            ox = res[key] = conv[label]
            self._log_tf2onnx(name, f"tf2onnx ({what})", ox)
            if ox.get("ok"):
                save = wd / f"ort-{label}-output.npy"
                lat = self.latency("onnx", ox["path"], s.peer_threads, save)
                res[lat_key] = lat
                self._log_latency(name, f"onnxruntime {s.peer_threads} threads ({what})", lat)
        # Same latents, and with the noise pass the same seeded noise as graphsurgery's
        # default (stylegan::noise mode=const, seed 0): the two outputs should agree.
        if "stylegan::noise" in str(cn.get("method")):
            peer = res.get("peer_tf2onnx_const") or {}
            if not peer.get("ok"):
                # Say why there is nothing to compare, not only that a file is missing.
                res["ours_vs_ort_const"] = {
                    "ok": False, "error": "no onnxruntime output: tf2onnx of the constant-noise "
                    f"graph failed ({peer.get('error') or 'not run'})"}
            else:
                res["ours_vs_ort_const"] = compare_outputs(wd / "ours-output.npy",
                                                           wd / "ort-const-output.npy")
            c = res["ours_vs_ort_const"]
            if c.get("ok"):
                _log(f"[{name}] graphsurgery .tflite vs onnxruntime (constant noise), same "
                     f"inputs: max abs difference {c['max_abs_diff']:.3g} (output range "
                     f"{c['range']:.3g}{', layout ' + c['layout'] if c.get('layout') else ''})")
        # -- the headline ratio again, measured paired: both models in one process, run in
        #    alternation, so background load on the shared machine hits both alike
        for noise, conv_key, lat_key in (("constant", "peer_tf2onnx_const", "peer_ort_const"),
                                         ("random", "peer_tf2onnx", "peer_ort")):
            if ours.get("tflite_ok") and (res.get(lat_key) or {}).get("ok"):
                onnx = res[conv_key]["path"]
                res["paired"] = self.paired(name, "fp32", ours["tflite_path"], onnx, noise)
                # The same graph with dynamic-range int8 weights (--quantize dynamic): what
                # a user trading a little fidelity for speed gets, against the same
                # onnxruntime model. Not the like-for-like (fp32) comparison above.
                q = self.child("benchmarks.quantized", str(wd / "ours" / "model.pb"),
                               ours["tflite_path"], str(wd / "ours" / "model-dynamic.tflite"))
                res["quantized_dynamic"] = q
                if q.get("ok"):
                    _log(f"[{name}] dynamic-range int8 .tflite: {q['bytes'] / 2**20:.1f} MB in "
                         f"{_fmt_s(q['convert_s'])}; vs fp32 .tflite: max abs "
                         f"{q['max_abs']:.3g} (range {q['range']:.3g}), PSNR {q['psnr']:.1f} "
                         f"dB, SSIM {q['ssim']:.4f}")
                    res["paired_dynamic"] = self.paired(name, "dynamic-range int8", q["path"],
                                                        onnx, noise)
                else:
                    _log(f"[{name}] dynamic-range int8 FAILED: {q.get('error')}")
                break
        return res

    def paired(self, name: str, label: str, tflite: str, onnx: str, noise: str
               ) -> dict[str, Any]:
        """A ``.tflite`` and an ``.onnx`` timed in alternation (:mod:`benchmarks.paired`)."""
        s = self.s
        p = self.child("benchmarks.paired", f"tflite:{tflite}", f"onnx:{onnx}", "--threads",
                       str(s.peer_threads), "--runs", str(s.runs), "--warmup", str(s.warmup))
        p["noise"] = noise
        if p.get("ok"):
            _log(f"[{name}] paired, {s.peer_threads} threads, alternating runs: {label} LiteRT "
                 f"{p['a_median_s'] * 1e3:.1f} ms vs onnxruntime ({noise} noise) "
                 f"{p['b_median_s'] * 1e3:.1f} ms; median ratio {p['ratio_median']:.2f}")
        else:
            _log(f"[{name}] paired timing ({label}) FAILED: {p.get('error')}")
        return p

    def cli(self, name: str, path: str, wd: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        base = ["run", path, "-p", self.pipeline]
        r = self.child("benchmarks.cli_run", *base, "-o", str(wd / "cli"))
        out["run"] = r
        _log(f"[{name}] `graphsurgery run MODEL -p {self.pipeline} -o OUT`: exit {r.get('rc')}, "
             f"{_fmt_s(r.get('wall_s'))}, peak RSS {r.get('peak_rss_mb', float('nan')):.0f} MB")
        if self.report_option is None:
            h = self.child("benchmarks.cli_run", "--has-option", "run", "--report")
            self.report_option = bool(h.get("has_option"))
        if not self.report_option:
            out["report"] = {"ok": False, "status": "not available",
                             "error": "`graphsurgery run` has no --report option yet"}
            _log(f"[{name}] report render time: not available (no --report option)")
            return out
        rr = self.child("benchmarks.cli_run", *base, "-o", str(wd / "cli-report"), "--report")
        rep: dict[str, Any] = {"run": rr, "ok": bool(rr.get("ok"))}
        timings = rr.get("report_timings") or {}
        if rr.get("ok") and r.get("ok"):
            rep["extra_wall_s"] = rr["wall_s"] - r["wall_s"]
        if rr.get("report_render_s") is not None:
            rep["render_s"] = rr["report_render_s"]
            rep["parts"] = rr.get("report_measured")
            rep["source"] = "time in the report's recorder hooks and write_report"
        elif timings:
            rep["render_s"] = max(timings.values())
            rep["source"] = f"summary.json {max(timings, key=timings.get)}"
        elif "extra_wall_s" in rep:
            rep["render_s"] = max(rep["extra_wall_s"], 0.0)
            rep["source"] = "wall time with --report minus without"
        out["report"] = rep
        rv = self.child("benchmarks.cli_run", *base, "-o", str(wd / "cli-verify"), "--verify",
                        "--report")  # the whole run, by step (issue 18)
        out["verify_report"] = rv
        _log(f"[{name}] `graphsurgery run MODEL -p {self.pipeline} --verify --report -o OUT`: "
             f"exit {rv.get('rc')}, {_fmt_s(rv.get('wall_s'))} (load average "
             f"{(rv.get('load_avg') or [float('nan')])[0]:.1f}): {rv.get('steps_line')}")
        if "render_s" in rep:
            _log(f"[{name}] report render time: {_fmt_s(rep['render_s'])} ({rep['source']})")
        else:
            _log(f"[{name}] report: FAILED {rr.get('error')}")
        return out

    # -- onnx2tf, last
    def onnx2tf(self, name: str, res: dict[str, Any], label: str, venv: dict[str, Any],
                timeout: float) -> dict[str, Any]:
        """tf2onnx's model of ``label`` ("random": the original graph, "const": constant
        noise) through onnx2tf; on success its .tflite is audited and timed in LiteRT."""
        src = res.get("peer_tf2onnx" if label == "random" else "peer_tf2onnx_const") or {}
        noise = "random noise" if label == "random" else "constant noise"
        if not src.get("ok"):
            return {"ok": False, "error": "no ONNX model (tf2onnx failed)"}
        if not venv.get("ok"):
            return {"ok": False, "error": f"no onnx2tf: {venv.get('error')}"}
        if timeout <= 0:
            r = {"ok": False, "skipped": True, "error": "not run: the run's time budget is spent"}
            _log(f"[{name}] tf2onnx -> onnx2tf ({noise}): {r['error']}")
            return r
        logs = CACHE / "logs"
        r = run_onnx2tf(venv, Path(src["path"]), self.work / name / f"onnx2tf-{label}", timeout,
                        log=logs / f"{name}-onnx2tf-{label}.log")
        if r.get("ok"):
            au = run_child_safe("benchmarks.peers", "audit", r["tflite"],
                                timeout=self.s.timeout_s)
            r["audit"] = au.get("audit")
            r["bytes"] = au.get("bytes")
            r["latency"] = self.latency("tflite", r["tflite"], self.s.peer_threads)
            a = r.get("audit") or {}
            _log(f"[{name}] tf2onnx -> onnx2tf ({noise}): converts in "
                 f"{_fmt_s(r['wall_s'])}; {a.get('transpose_count')} TRANSPOSE, max rank "
                 f"{a.get('max_rank')}, {a.get('flex_count')} Flex")
            self._log_latency(name, f"onnx2tf .tflite ({noise}), LiteRT "
                              f"{self.s.peer_threads} threads", r["latency"])
        else:
            _log(f"[{name}] tf2onnx -> onnx2tf ({noise}): FAILS after "
                 f"{_fmt_s(r.get('wall_s'))}: {r.get('error')}")
        return r

    # -- logging helpers
    @staticmethod
    def _log_latency(name: str, label: str, lat: dict[str, Any]) -> None:
        if lat.get("ok"):
            _log(f"[{name}] {label}: median {lat['median_s'] * 1e3:.1f} ms (min "
                 f"{lat['min_s'] * 1e3:.1f}, {lat['runs']} runs after {lat['warmup']} warm-up), "
                 f"peak RSS {lat['peak_rss_mb']:.0f} MB, run-to-run output difference "
                 f"{lat['max_run_to_run_diff']:.3g}")
        else:
            _log(f"[{name}] {label}: FAILS: {lat.get('error')}")

    @staticmethod
    def _log_tf2onnx(name: str, label: str, r: dict[str, Any]) -> None:
        pre = ""
        if r.get("original_graph"):
            pre = f"original graph: {r['original_graph'].get('error')}; importable variant: "
        if r.get("ok"):
            _log(f"[{name}] {label}: {pre}converts in {_fmt_s(r['convert_s'])}, "
                 f"{r['bytes'] / 2**20:.1f} MB, {r['nodes']} ONNX nodes, random ops "
                 f"{r.get('random_ops') or 'none'}")
        else:
            _log(f"[{name}] {label}: {pre}FAILS: {r.get('error')}")


# ============================================================================ onnx2tf
def ensure_onnx2tf_venv(timeout: float = 1200.0) -> dict[str, Any]:
    """Create ``benchmarks/.cache/venv-onnx2tf`` with onnx2tf (and its pinned TensorFlow).

    Never touches the main virtual environment. Made once; later runs reuse it (a stamp
    file records the installed version). Returns ``ok``, ``bin`` and ``version`` or the
    error pip gave.
    """
    venv = CACHE / "venv-onnx2tf"
    stamp = venv / ".bench-installed"
    py = venv / "bin" / "python"
    info: dict[str, Any] = {"path": str(venv)}
    if stamp.exists() and py.exists():
        info.update(ok=True, bin=str(venv / "bin"), version=stamp.read_text().strip(),
                    created=False)
        return info
    t0 = time.perf_counter()
    CACHE.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", None) or sys.executable
    r = run_command_safe([base, "-m", "venv", "--clear", str(venv)], timeout=300)
    if not r.get("ok"):
        info.update(ok=False, error=f"python -m venv failed: {r.get('error')}")
        return info
    log = CACHE / "venv-onnx2tf-pip.log"
    r = run_command_safe([str(py), "-m", "pip", "install", "--disable-pip-version-check",
                          ONNX2TF_REQUIREMENT], timeout=timeout)
    log.write_text(r.get("stdout", "") + "\n" + r.get("stderr", ""))
    info["create_s"] = time.perf_counter() - t0
    if not r.get("ok"):
        info.update(ok=False, error=f"pip install {ONNX2TF_REQUIREMENT} failed: "
                    f"{r.get('error')}", log=str(log))
        return info
    v = run_command_safe([str(py), "-c", "import importlib.metadata as m; "
                          "print(m.version('onnx2tf'), m.version('tensorflow'))"], timeout=120)
    version = v.get("stdout", "").strip()
    stamp.write_text(version + "\n")
    info.update(ok=True, bin=str(venv / "bin"), version=version, created=True)
    return info


def run_onnx2tf(venv: dict[str, Any], onnx_path: Path, outdir: Path, timeout: float,
                log: Path | None = None) -> dict[str, Any]:
    """``onnx2tf -i MODEL.onnx -o OUTDIR`` in its venv; the float32 .tflite or the error."""
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True, exist_ok=True)
    exe = Path(venv["bin"]) / "onnx2tf"
    env = {"PATH": f"{venv['bin']}{os.pathsep}{os.environ.get('PATH', '')}",
           "VIRTUAL_ENV": str(Path(venv["bin"]).parent), "CUDA_VISIBLE_DEVICES": "-1"}
    r = run_command_safe([str(exe), "-i", str(onnx_path), "-o", str(outdir)], env=env,
                         timeout=timeout)
    text = strip_ansi(r.get("stdout", "") + "\n" + r.get("stderr", ""))
    log = log or outdir.parent / f"{outdir.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)
    rep: dict[str, Any] = {"wall_s": r.get("process_wall_s"), "rc": r.get("rc"),
                           "timeout_s": timeout, "version": venv.get("version"),
                           "log": str(log)}
    found = sorted(outdir.glob("*_float32.tflite"))
    if r.get("ok") and found:
        rep.update(ok=True, tflite=str(found[0]))
        return rep
    rep["ok"] = False
    stage = next((ln.strip() for ln in reversed(text.splitlines())
                  if "output complete" in ln or ln.startswith("INFO:")), None)
    if r.get("timed_out") or r.get("out_of_memory") or (r.get("rc") or 0) < 0:
        why = (f"did not finish within {timeout:.0f} s (stopped)" if r.get("timed_out")
               else r.get("error") or f"killed by signal {-r['rc']}")
        rep["error"] = why + (f"; its last progress line: {stage[:160]}" if stage else "")
        rep["timed_out"] = bool(r.get("timed_out"))
        rep["out_of_memory"] = bool(r.get("out_of_memory"))
        return rep
    rep["error"] = onnx2tf_error(text) or f"exit status {r.get('rc')}"
    op = next((ln.split("onnx_op_name:", 1)[1].strip() for ln in reversed(text.splitlines())
               if ln.startswith("ERROR:") and "onnx_op_name:" in ln), None)
    if op:
        rep["onnx_node"] = op
        rep["onnx_op_type"] = _onnx_op_type(onnx_path, op)
        rep["error"] += f" (at ONNX node {op}, {rep['onnx_op_type'] or '?'})"
    rep["log_tail"] = [ln for ln in text.splitlines() if ln.strip()][-8:]
    return rep


def onnx2tf_error(text: str) -> str:
    """onnx2tf's own error: its last exception line, with the sentence after it when Keras
    wrapped the real message ("Exception encountered when calling layer ...")."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        ln = lines[i].strip()
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b.*:", ln):
            if "Exception encountered" in ln:
                nxt = next((x.strip() for x in lines[i + 1:i + 4] if x.strip()), "")
                ln = f"{ln} {nxt}"
            return ln[:400]
    return last_error_line(text)


def _onnx_op_type(path: Path, node: str) -> str | None:
    try:
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        return next((n.op_type for n in m.graph.node if n.name == node), None)
    except Exception:  # only a label
        return None


def compare_outputs(ours: Path, peer: Path) -> dict[str, Any]:
    """Max abs difference of two saved outputs (an NHWC/NCHW layout difference is undone)."""
    import numpy as np

    if not ours.exists() or not peer.exists():
        return {"ok": False, "error": "an output is missing"}
    a, b = np.load(ours).astype(np.float64), np.load(peer).astype(np.float64)
    layout = None
    if a.shape != b.shape and a.ndim == 4 and a.shape == (b.shape[0], *b.shape[2:], b.shape[1]):
        b, layout = b.transpose(0, 2, 3, 1), "NHWC vs NCHW"
    elif a.shape != b.shape and a.ndim == 4 and b.shape == (a.shape[0], *a.shape[2:], a.shape[1]):
        a, layout = a.transpose(0, 2, 3, 1), "NCHW vs NHWC"
    if a.shape != b.shape:
        return {"ok": False, "error": f"shapes differ: {a.shape} vs {b.shape}"}
    return {"ok": True, "max_abs_diff": float(np.max(np.abs(a - b))),
            "range": float(b.max() - b.min()), "layout": layout}


# ============================================================================ figures
def derive(res: dict[str, Any], gemm: dict[str, Any], peer_threads: int) -> dict[str, Any]:
    """Achieved GFLOP/s, roofline percentages and ours/peer ratios of one model."""
    d: dict[str, Any] = {}
    flops = ((res.get("interface") or {}).get("flops") or {}).get("total")

    def med(lat: dict[str, Any] | None) -> float | None:
        return lat.get("median_s") if lat and lat.get("ok") else None

    lats = {f"ours_{t}t": med(v) for t, v in (res.get("ours_latency") or {}).items()}
    lats[f"ort_random_{peer_threads}t"] = med(res.get("peer_ort"))
    lats[f"ort_const_{peer_threads}t"] = med(res.get("peer_ort_const"))
    o2 = (res.get("onnx2tf") or {}).get("const") or {}
    lats[f"onnx2tf_const_{peer_threads}t"] = med(o2.get("latency"))
    achieved = {}
    for k, t in lats.items():
        if not t or not flops:
            continue
        threads = k.rsplit("_", 1)[1].rstrip("t")
        g = flops / t / 1e9
        roof = (gemm.get(threads) or {}).get("gflops")
        achieved[k] = {"gflops": g, "pct_of_gemm": 100 * g / roof if roof else None}
    d["latency_s"] = lats
    d["achieved"] = achieved

    ratios: dict[str, Any] = {}
    paired = res.get("paired") or {}
    if paired.get("ok"):
        ratios["latency_paired_vs_ort"] = paired["ratio_median"]
        d["paired_noise"] = paired.get("noise")
    ours2 = lats.get(f"ours_{peer_threads}t")
    for peer in ("ort_const", "ort_random", "onnx2tf_const"):
        p = lats.get(f"{peer}_{peer_threads}t")
        if ours2 and p:
            ratios[f"latency_vs_{peer}"] = ours2 / p
    ours = res.get("ours") or {}
    tfl = res.get("peer_tflite") or {}
    sel = tfl.get("select") or {}
    if ours.get("tflite_bytes") and sel.get("ok"):
        ratios["size_vs_select_tflite"] = ours["tflite_bytes"] / sel["bytes"]
    for key, onnx_key in (("size_vs_onnx", "peer_tf2onnx"),
                          ("size_vs_onnx_const", "peer_tf2onnx_const")):
        ox = res.get(onnx_key) or {}
        if ours.get("tflite_bytes") and ox.get("ok"):
            ratios[key] = ours["tflite_bytes"] / ox["bytes"]
    if ours.get("tflite_bytes") and res.get("file_mb"):
        ratios["size_vs_original_graph"] = ours["tflite_bytes"] / (res["file_mb"] * 2**20)
    ph = ours.get("phases") or {}
    if ours.get("tflite_ok"):
        steps = ("load", "tensorflow_import", "passes", "save", "tflite")
        convert = sum(ph[k]["s"] for k in steps if k in ph)
        d["ours_convert_s"] = convert
        if sel.get("ok"):
            ratios["convert_time_vs_select_tflite"] = convert / sel["convert_s"]
        if (res.get("peer_tf2onnx") or {}).get("ok"):
            ratios["convert_time_vs_tf2onnx"] = convert / res["peer_tf2onnx"]["convert_s"]
    ol = (res.get("ours_latency") or {}).get(str(peer_threads)) or {}
    for key, ort_key in (("run_peak_rss_vs_ort_const", "peer_ort_const"),
                         ("run_peak_rss_vs_ort_random", "peer_ort")):
        ort = res.get(ort_key) or {}
        if ol.get("ok") and ort.get("ok"):
            ratios[key] = ol["peak_rss_mb"] / ort["peak_rss_mb"]
    d["ratios"] = ratios
    return d


# ============================================================================ main
def _result_path(directory: Path, stem: str) -> Path:
    """``<stem>.json``, or ``<stem>-2.json``... when that day's file exists (never overwrite)."""
    n = 1
    while True:
        base = stem if n == 1 else f"{stem}-{n}"
        if not (directory / f"{base}.json").exists() and not (directory / f"{base}.md").exists():
            return directory / f"{base}.json"
        n += 1


def parse_args(argv: list[str]) -> tuple[Settings, Path]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny presets (sg1-tiny, sg2-tiny), 2 runs, no onnx2tf, small GEMM")
    ap.add_argument("--models", nargs="+", default=None, metavar="PRESET")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--no-onnx2tf", action="store_true")
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end command run")
    ap.add_argument("--no-core", action="store_true", help="skip the core pipeline section")
    ap.add_argument("--no-scale", action="store_true",
                    help="skip the 100k-node generated graph and the 5,000-duplicate CSE case")
    ap.add_argument("--no-mobile", action="store_true",
                    help="skip the mobile budget (v1 and v2 cut to 256 px, quantized)")
    ap.add_argument("--no-pickle", action="store_true",
                    help="skip opening a 1024 px NVlabs pickle")
    ap.add_argument("--budget-min", type=float, default=None,
                    help="time budget of the whole run; onnx2tf gets what is left (28)")
    ap.add_argument("--results-dir", type=Path, default=None,
                    help=f"where to write results (default {RESULTS}; "
                    "benchmarks/.cache/smoke-results with --smoke)")
    ap.add_argument("--keep-artifacts", action="store_true",
                    help="keep the converted models under benchmarks/.cache/work")
    a = ap.parse_args(argv)
    if a.smoke:
        s = Settings(models=a.models or SMOKE_MODELS, core_models=a.models or SMOKE_MODELS,
                     runs=2, warmup=1, gemm_n=512, gemm_runs=3, onnx2tf=False, cli=False,
                     timeout_s=300, budget_s=600, smoke=True, jobs=2, scale_nodes=2_000,
                     scale_duplicates=200, pickle_preset="sg2-tiny-const-noise",
                     command="python -m benchmarks --smoke")
    else:
        s = Settings(models=a.models or FULL_MODELS, core_models=CORE_MODELS,
                     command="make bench" if not argv else "python -m benchmarks " + " ".join(argv))
    if a.runs is not None:
        s.runs = max(a.runs, 1)
    if a.warmup is not None:
        s.warmup = max(a.warmup, 0)
    if a.no_onnx2tf:
        s.onnx2tf = False
    if a.no_cli:
        s.cli = False
    if a.no_core:
        s.core_models = []
    if a.no_scale:
        s.scale_nodes = 0
    if a.no_pickle:
        s.pickle_preset = ""
    if a.no_mobile or a.smoke:
        s.mobile = False
    if a.budget_min is not None:
        s.budget_s = a.budget_min * 60
    s.keep_artifacts = a.keep_artifacts
    results = a.results_dir or (CACHE / "smoke-results" if a.smoke else RESULTS)
    return s, results


def main(argv: list[str]) -> int:
    t_start = time.monotonic()
    s, results_dir = parse_args(argv)
    deadline = t_start + s.budget_s
    pipeline, why = choose_pipeline()
    _log(f"graphsurgery benchmark: models {', '.join(s.models)}; pipeline {pipeline} ({why}); "
         f"{s.runs} timed runs after {s.warmup} warm-up")
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "command": s.command,
        "settings": asdict(s),
        "pipeline": {"name": pipeline, "preferred": PREFERRED_PIPELINE, "why": why},
        "load_average_start": os.getloadavg(),
    }
    _log(f"machine: {report['machine'].get('cores')} cores, {report['machine'].get('cpu')}, "
         f"load average {report['load_average_start'][0]:.2f}")
    gemm_start = bench_gemm(s)
    report["tensorflow_import_s"] = tensorflow_import_s()
    _log(f"import tensorflow in a fresh process: {_fmt_s(report['tensorflow_import_s'])}")
    report["core_pipeline"] = bench_core_pipeline(s.core_models) if s.core_models else []
    report["scale"] = bench_scale(s) if s.scale_nodes else {"ok": False, "error": "skipped"}
    report["pickle_import"] = (bench_pickle_import(s) if s.pickle_preset
                               else {"ok": False, "error": "skipped"})

    # A fresh folder per run: other checkouts' test suites may run a smoke run meanwhile.
    (CACHE / "work").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="smoke-" if s.smoke else "full-", dir=CACHE / "work"))
    runner = Runner(s, pipeline, work, deadline)
    def one(name: str) -> dict[str, Any]:
        t0 = time.monotonic()
        try:
            res = runner.model(name)
        except Exception as exc:  # the harness must not stop: record and go on
            res = {"model": name, "error": f"harness: {type(exc).__name__}: {exc}"}
            _log(f"[{name}] harness error: {exc}")
        res["wall_s"] = time.monotonic() - t0
        return res

    if s.jobs > 1:  # the smoke run: figures do not matter, wall time does
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(s.jobs) as pool:
            models = dict(zip(s.models, pool.map(one, s.models)))
    else:
        models = {name: one(name) for name in s.models}
    if not s.smoke:  # each family at its original widths vs onnxruntime (issue 18)
        report["families"] = run_child_safe("benchmarks.families", timeout=2400)
        _log(report["families"].get("table") or f"families: {report['families'].get('error')}")
    if s.onnx2tf:
        venv = ensure_onnx2tf_venv()
        report["onnx2tf_venv"] = venv
        state = f"ready {venv.get('version')}" if venv.get("ok") else venv.get("error")
        _log(f"onnx2tf venv: {state}")
        # Random-noise models first (they fail fast), then constant noise from the smallest
        # model up, each with an equal share of what is left of the budget (at most
        # onnx2tf_timeout_s): a conversion that would take longer is stopped and recorded.
        # The share counts only conversions that can run; 90 s stay for what follows one
        # (audit and LiteRT timing of its .tflite, the final GEMM, the files).
        def key_of(label: str) -> str:
            return "peer_tf2onnx" if label == "random" else "peer_tf2onnx_const"

        def runnable(name: str, label: str) -> bool:
            return bool(venv.get("ok") and (models[name].get(key_of(label)) or {}).get("ok"))

        jobs = sorted([(0, 0.0, name, "random") for name in models]
                      + [(1, m.get("file_mb", 0.0), name, "const") for name, m in models.items()])
        for i, (_, _, name, label) in enumerate(jobs):
            later = sum(runnable(n, lab) for _, _, n, lab in jobs[i:])
            left = deadline - 90 - time.monotonic()
            share = min(s.onnx2tf_timeout_s, left / max(later, 1)) if left > 20 else 0.0
            if not runnable(name, label):
                share = 1.0  # nothing runs: onnx2tf() records why
            models[name].setdefault("onnx2tf", {})[label] = runner.onnx2tf(
                name, models[name], label, venv, share)
    else:
        report["onnx2tf_venv"] = {"ok": False, "error": "skipped (--smoke or --no-onnx2tf)"}
    report["mobile"] = bench_mobile(s, work) if s.mobile else {"ok": False,
                                                                "error": "skipped"}
    _log("GEMM again, at the end of the run:")
    report["gemm_end"] = bench_gemm(s)
    report["gemm_start"] = gemm_start
    report["gemm"] = roofline(gemm_start, report["gemm_end"])
    for res in models.values():
        res["derived"] = derive(res, report["gemm"], s.peer_threads)
    report["models"] = models
    report["load_average_end"] = os.getloadavg()
    report["wall_s"] = time.monotonic() - t_start
    if not s.keep_artifacts:
        shutil.rmtree(work, ignore_errors=True)

    from benchmarks.table import render

    results_dir.mkdir(parents=True, exist_ok=True)
    stem = dt.date.today().isoformat()
    out = _result_path(results_dir, stem)
    try:
        report["result_file"] = str(out.relative_to(ROOT))
    except ValueError:
        report["result_file"] = str(out)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = render(report)
    if (report.get("mobile") or {}).get("markdown"):  # benchmarks.mobile's own table
        md += "\n" + report["mobile"]["markdown"]
    if (report.get("families") or {}).get("table"):
        md += "\n## Families at their original widths (benchmarks/families.py)\n\n"
        md += report["families"]["table"] + "\n"
    out.with_suffix(".md").write_text(md)
    _log("")
    _log(md)
    _log(f"wrote {out} and {out.with_suffix('.md').name} in {report['wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
