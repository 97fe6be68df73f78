"""`graphsurgery demo`: the snapshot it writes carries live code that must never run; the
frozen-graph and built-in routes still work (the default pickle route: test_end_to_end)."""

from __future__ import annotations

import json

from graphsurgery import zoo
from graphsurgery.cli import _demo_snapshot, main
from graphsurgery.ir.pickle import read_pickle, select_network


def test_the_demo_snapshot_holds_code_that_would_leave_a_mark(tmp_path):
    """The canary is real: executed (as the NVlabs loader would), the snapshot's
    build_module_src writes the file the demo then finds absent."""
    entry = zoo.get("sg2-tiny")
    pkl, canary, head = _demo_snapshot(entry, entry.builder(), tmp_path)
    assert pkl == tmp_path / "sg2-tiny.pkl" and pkl.is_file() and not canary.exists()
    assert "Gs is G_main with" in "\n".join(head)  # the short name real snapshots store
    net = select_network(read_pickle(pkl), "Gs", str(pkl))  # read as data: nothing ran
    assert not canary.exists()
    exec(compile(net.state["build_module_src"], str(pkl), "exec"), {})  # what pickle.load does
    assert canary.read_text() == "the pickle code ran"


def test_demo_frozen_route_and_builtin(capsys, tmp_path):
    code = main(["demo", "--model", "sg2-tiny-cuda", "--frozen", "-o", str(tmp_path / "f")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("demo: zoo graph sg2-tiny-cuda (") and ".pkl" not in out
    assert "stylegan::lower_fused_bias_act" in out  # the custom CUDA ops, lowered
    summary = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert summary["audit"]["clean"] and summary["verification"]["ok"]

    code = main(["demo", "--model", "builtin", "-o", str(tmp_path / "b")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("demo: a small built-in graph (29 nodes)") and "-> generic" in out
    assert "core::strip_training" in out and "model.tflite" in out


def test_demo_unknown_model_is_one_line(capsys):
    assert main(["demo", "--model", "sg2-tinyy", "-o", "never-written"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown zoo preset 'sg2-tinyy'" in err
