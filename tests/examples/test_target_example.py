"""examples/03_target: a toy target as one plugin file (lint, export, audit) through the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.targets import get_target, register_target, unregister_target

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "03_target" / "histogram_target.py"
F32 = gs.DType.float32


@pytest.fixture
def plugin():
    module = gs.load_plugin(str(PLUGIN))
    register_target(module.HistogramTarget)  # again, if a test before unregistered it
    yield module
    unregister_target("histogram")


def _model(tmp_path, noisy):
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 4])
    h = rw.add_node("Identity", [x], {"T": F32}, name="h")
    if noisy:
        shape = rw.const(np.array([1, 4], np.int32), name="shape")
        noise = rw.add_node("RandomStandardNormal", [shape],
                            {"dtype": F32, "T": gs.DType.int32, "seed": 1, "seed2": 2},
                            name="noise")
        h = rw.add_node("AddV2", [h, noise], {"T": F32}, name="add")
    y = rw.add_node("Relu", [h], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    return gs.save(g, tmp_path / ("noisy.pb" if noisy else "clean.pb"))


def test_histogram_target_lints_exports_and_audits(plugin, tmp_path, capsys):
    noisy = _model(tmp_path, noisy=True)
    assert main(["check", str(noisy), "--plugin", str(PLUGIN), "--target", "histogram",
                 "-v"]) == 3
    out = capsys.readouterr().out
    assert "error no-random: 1 node(s)" in out and "error: noise (RandomStandardNormal)" in out

    code = main(["run", str(noisy), "-p", "core::dce", "--plugin", str(PLUGIN), "--target",
                 "histogram", "--report", "-o", str(tmp_path / "a")])
    assert code == 3, capsys.readouterr().err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["export"]["target"] == "histogram"
    assert summary["audit"]["violations"] == ["no-random: 1 x RandomStandardNormal"]
    assert summary["audit"]["path"] == "ops.json"  # relative to OUTDIR
    ops = json.loads((tmp_path / "a" / "ops.json").read_text())
    assert ops["RandomStandardNormal"] == 1 and ops["Relu"] == 1
    assert "histogram: 1 violation(s)" in capsys.readouterr().out
    # the report lists each violation under its rule, with the rule's description
    page = (tmp_path / "a" / "report.html").read_text()
    assert "<code>no-random</code>: no random ops: make the noise a constant" in page


def test_histogram_target_clean_verified_and_reported(plugin, tmp_path, capsys):
    clean = _model(tmp_path, noisy=False)
    code = main(["run", str(clean), "-p", "core::remove_identity", "--plugin", str(PLUGIN),
                 "--target", "histogram", "--verify", "--report", "-o", str(tmp_path / "b")])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["audit"]["clean"] and summary["verification"]["ok"]
    assert "graphdef:y:0" in summary["verification"]  # the GraphDef is verified; no runner
    page = (tmp_path / "b" / "report.html").read_text()
    assert "histogram audit" in page
    # the Python API takes the target object itself
    result = gs.convert(str(clean), "core::remove_identity", target=get_target("histogram"),
                        outdir=tmp_path / "c")
    assert result.audit.clean and result.artefacts["histogram"] == tmp_path / "c" / "ops.json"


def test_targets_command_lists_the_plugin(plugin, capsys):
    assert main(["targets", "--plugin", str(PLUGIN), "-v"]) == 0
    out = capsys.readouterr().out
    assert "histogram" in out and "no-random" in out and "tflite" in out
