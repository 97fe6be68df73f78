"""The benchmark harness on tiny presets, so that ``make bench`` cannot rot.

``python -m benchmarks --smoke`` runs every step of the full benchmark (graphsurgery phase
by phase, LiteRT latency, the TFLite converter with and without Select TF ops, tf2onnx then
onnxruntime on the original and the constant-noise graph, FLOPs, the GEMM roofline) on
sg1-tiny and sg2-tiny with 2 timed runs, without onnx2tf (its virtual environment takes
minutes to create). The figures are meaningless at this size; what is checked is that every
step ran and left a result (a figure or a recorded error) and that the files are written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("sg1-tiny", "sg2-tiny")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, str]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--results-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(out.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text()), files[0].with_suffix(".md").read_text(), proc.stdout


def test_smoke_run_records_every_step(smoke):
    rep, md, stdout = smoke
    assert rep["machine"]["cores"] >= 1
    assert rep["command"] == "python -m benchmarks --smoke"
    assert all(g["ok"] and g["gflops"] > 0 for g in rep["gemm"].values())
    assert set(rep["gemm"]) == {"1", "2"}
    assert [r["model"] for r in rep["core_pipeline"]] == list(MODELS)
    assert rep["pipeline"]["name"] in ("stylegan-to-tflite", "generic")
    for name in MODELS:
        m = rep["models"][name]
        assert "error" not in m, m["error"]
        assert m["interface"]["ok"] and m["interface"]["flops"]["total"] > 0
        assert m["interface"]["inputs"] == {"latents_in": [1, 16]}
        ours = m["ours"]
        assert ours["ok"], ours
        assert {"load", "passes", "save", "tflite"} <= set(ours["phases"])
        assert all(p["s"] >= 0 and p["peak_rss_mb"] > 0 for p in ours["phases"].values())
        # the pipeline in 3 fresh processes, each with its CPU calibration
        runs = m["ours_pipeline_runs"]
        assert len(runs) == 3 and all(r["passes"] > 0 and r["calibration"] > 0 for r in runs)
        if ours["tflite_ok"]:  # a converted model is timed on 1 and 2 threads
            assert set(m["ours_latency"]) == {"1", "2"}
            assert all(lat["ok"] and len(lat["times_s"]) == 2
                       for lat in m["ours_latency"].values())
        else:
            assert ours["tflite_error"]
        # the TFLite converter: builtins only fails on these graphs (NCHW, 6-D pads);
        # Select TF ops converts, and the plain LiteRT interpreter cannot run Flex ops
        builtins, select = m["peer_tflite"]["builtins"], m["peer_tflite"]["select"]
        assert not builtins["ok"] and builtins["error"]
        assert select["ok"] and select["audit"]["flex_count"] > 0
        assert select["audit"]["litert_runs"] is False
        # tf2onnx -> onnxruntime, random noise (outputs differ run to run) and constant
        assert m["peer_tf2onnx"]["ok"] and m["peer_tf2onnx"]["random_ops"]
        assert m["peer_ort"]["ok"] and m["peer_ort"]["max_run_to_run_diff"] > 0
        assert m["const_noise_variant"]["ok"]
        assert m["peer_tf2onnx_const"]["ok"] and not m["peer_tf2onnx_const"]["random_ops"]
        assert m["peer_ort_const"]["ok"] and m["peer_ort_const"]["max_run_to_run_diff"] == 0
        if ours["tflite_ok"]:  # the headline ratio, timed in alternation in one process
            assert m["paired"]["ok"] and m["derived"]["ratios"]["latency_paired_vs_ort"] > 0
        assert "ratios" in m["derived"]
    # StyleGAN v1 graphs do not import into TensorFlow until training ops are stripped
    v1 = rep["models"]["sg1-tiny"]
    assert "float_ref" in v1["peer_tflite"]["builtins"]["original_graph"]["error"]
    assert "float_ref" in v1["peer_tf2onnx"]["original_graph"]["error"]
    assert rep["onnx2tf_venv"]["ok"] is False  # skipped in the smoke run


def test_smoke_run_writes_the_tables(smoke):
    rep, md, stdout = smoke
    for heading in ("## graphsurgery", "## Peers on the same original graph",
                    "## Ratios graphsurgery / peer"):
        assert heading in md
    assert "| sg1-tiny | sg2-tiny |" in md
    assert "| CPU calibration in the same 3 processes" in md
    assert f"{rep['machine']['cores']} cores" in md
    assert md in stdout  # every figure is printed too


def test_result_files_are_never_overwritten(tmp_path):
    from benchmarks.__main__ import _result_path

    assert _result_path(tmp_path, "2026-01-01").name == "2026-01-01.json"
    (tmp_path / "2026-01-01.json").write_text("{}")
    assert _result_path(tmp_path, "2026-01-01").name == "2026-01-01-2.json"
    (tmp_path / "2026-01-01-2.md").write_text("")
    assert _result_path(tmp_path, "2026-01-01").name == "2026-01-01-3.json"


def test_a_failing_child_is_a_result_not_a_crash():
    from benchmarks._measure import run_child_safe, run_command_safe

    rep = run_child_safe("benchmarks.no_such_module")
    assert rep["ok"] is False and "No module named" in rep["error"]
    rep = run_command_safe([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert rep["ok"] is False and rep["timed_out"]
