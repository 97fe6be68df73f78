"""benchmarks/families.py and benchmarks/op_profile.py on tiny graphs: the harness runs and
records what the README table needs (the figures are meaningless at this size)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tf2onnx")


def test_families_benchmark_runs_on_a_tiny_graph(tmp_path, capsys):
    from benchmarks.families import main

    main(["--models", "progan-tiny-nonfused", "--runs", "1", "--out", str(tmp_path)])
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (m,) = rep["models"]
    assert m["ok"], m.get("error")
    assert m["ours"]["clean"] and m["ours"]["psnr_db"] >= 60
    assert m["flops"]["ours"] < m["flops"]["original"]
    assert m["paired"]["ratio_median"] > 0
    ablation = m["ablation"]["core::upsample_conv_phases"]
    assert ablation["flops_without"] > m["flops"]["ours"] and ablation["speedup"] > 0
    assert "| progan-tiny-nonfused |" in rep["table"]


def test_table_says_whether_a_target_is_met():
    from benchmarks.families import table

    rec = {"model": "sg1-64-512", "flops": {"original": 2e9, "ours": 1e9}, "ours": {},
           "paired": {"ratio_median": 1.05, "a_median_s": 0.2, "b_median_s": 0.19}}
    assert ">= 1.1x not met" in table([rec], 2)
    rec["paired"]["ratio_median"] = 1.2
    assert ">= 1.1x met" in table([rec], 2)


def test_op_profile_times_every_op_once_per_signature(tmp_path):
    import graphsurgery as gs
    from benchmarks.op_profile import profile
    from graphsurgery.testing import tf_graph

    w = np.ones((3, 3, 4, 4), np.float32)
    g, _ = tf_graph(lambda tf, x: tf.nn.relu(tf.nn.conv2d(tf.nn.relu(tf.nn.conv2d(
        x, w, 1, "SAME")), w, 1, "SAME")), x=(1, 8, 8, 4))
    gs.save(g, tmp_path / "g.pb")
    rep = profile(str(tmp_path / "g.pb"), threads=1, runs=2)
    counts = {r["op"]: r["count"] for r in rep["by_op"]}
    assert counts == {"Conv2D": 2, "Relu": 2}
    assert len(rep["top"]) == 2  # two signatures: the identical pairs are timed once
    assert rep["whole_model_ms"] > 0 and rep["sum_of_ops_ms"] > 0
