"""benchmarks/onnx_target.py on sg2-tiny: both exports convert and the paired run records
medians (the figures are meaningless at this size; that the harness runs is what counts)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tf2onnx")


def test_onnx_target_benchmark_runs_on_a_tiny_graph(tmp_path, capsys):
    from benchmarks.onnx_target import main

    main(["sg2-tiny", "--runs", "1", "--out", str(tmp_path), "--profile"])
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")][-1]
    rep = json.loads(line)
    assert rep["ours"]["status"] == 0 and rep["ours"]["clean"]
    assert "Transpose" not in rep["ours"]["ops"]
    assert rep["tf2onnx_original"]["ok"]
    paired = rep["paired"]
    assert paired["ok"] and paired["ratio_median"] > 0 and len(paired["b_times_s"]) == 1
    ours, theirs = rep["profile"]["ours"], rep["profile"]["tf2onnx_original"]
    assert "Conv" in ours["share"] and sum(ours["share"].values()) <= 1.01
    assert "Conv" in theirs["share"] and len(theirs["slowest"]) == 5
    assert ours["kernel_ms_per_run"] > 0 and theirs["kernel_ms_per_run"] > 0
