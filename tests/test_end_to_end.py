"""The main job from the command line: zoo graph -> stylegan-to-tflite -> clean, verified."""

import json

import pytest

from graphsurgery.cli import main


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_demo(capsys, tmp_path):
    code, out, err = _run(capsys, "demo", "-o", tmp_path / "demo")
    assert code == 0, err
    assert err == ""  # quiet by default, TensorFlow's import included
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["audit"]["clean"] and summary["verification"]["ok"]
    assert (tmp_path / "demo" / "report.html").exists()
    assert "model.tflite" in out and "clean" in out
    # it starts from an NVlabs snapshot, read as data: the pickle's code never ran
    assert out.startswith("demo: sg2-tiny.pkl (") and "an NVlabs snapshot (G, D, Gs)" in out
    assert "Gs is G_main with" in out  # the short name real snapshots store
    assert "nothing in the pickle ran" in out and "it was never run" in out
    assert summary["model"].endswith("sg2-tiny.pkl")
    for key, val in summary["verification"].items():
        if isinstance(val, dict):
            assert val["psnr"] >= 60, (key, val)


@pytest.mark.parametrize("name", ["sg1-tiny", "tf2-tiny-savedmodel"])
def test_zoo_build_check_run_check(capsys, tmp_path, name):
    suffix = "" if name.endswith("savedmodel") else ".pb"
    model = tmp_path / f"{name}{suffix}"
    code, _, err = _run(capsys, "zoo", "build", name, "-o", model)
    assert code == 0, err
    code, out, _ = _run(capsys, "check", model)
    # v1: NCHW convolutions, Switch, Assign, random ops; TF2: run-time conv filters
    assert code == 3 and out.count("error:") >= 3
    assert ("NCHW" in out) == (name == "sg1-tiny")
    code, out, err = _run(capsys, "run", model, "-p", "stylegan-to-tflite", "-o",
                          tmp_path / "out", "--verify")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["audit"]["clean"], summary["audit"]["violations"]
    assert summary["verification"]["ok"]
    for key, val in summary["verification"].items():
        if isinstance(val, dict):
            assert val["psnr"] >= 60 and val["rel_max_abs"] <= 1e-3, (key, val)
    code, out, _ = _run(capsys, "check", tmp_path / "out" / "model.pb")
    assert code == 0, out
