"""The driver (gs.convert) and the target registry: the Python API converts, verifies and
reports exactly like `graphsurgery run`."""

import json
from importlib.metadata import entry_points

import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.targets import Target, all_targets, get_target, register_target
from graphsurgery.targets.tflite import TFLiteTarget

from .graphs import chain


def _untimed(obj):
    """summary.json without wall times (they differ between two runs)."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items()
                if k != "seconds" and not k.endswith("_seconds")}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def test_python_api_and_cli_write_the_same_summary(tmp_path, capsys):
    model = gs.save(chain(), tmp_path / "model.pb")
    pipeline = "core::remove_identity,core::dce"
    code = main(["run", str(model), "-p", pipeline, "-o", str(tmp_path / "cli"), "--verify",
                 "--report", "--inputs", "x", "--outputs", "y"])
    assert code == 0, capsys.readouterr().err
    result = gs.convert(str(model), pipeline, target="tflite", outdir=tmp_path / "api",
                        verify=True, report=True, inputs=["x"], outputs=["y"])
    assert isinstance(result, gs.Result) and result.status == 0 and result.ok
    cli_summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    api_summary = json.loads((tmp_path / "api" / "summary.json").read_text())
    assert result.to_json() == api_summary  # Result serialised IS summary.json
    assert _untimed(api_summary) == _untimed(cli_summary)
    assert api_summary["audit"]["clean"] and api_summary["verification"]["ok"]
    assert api_summary["audit"]["path"] == "model.tflite" and api_summary["report"] == "report.html"
    # the typed result: artefacts where they were written, the audit, the fidelity
    assert result.artefacts == {"model": tmp_path / "api" / "model.pb",
                                "tflite": tmp_path / "api" / "model.tflite",
                                "report": tmp_path / "api" / "report.html"}
    assert all(p.is_file() for p in result.artefacts.values())
    assert result.audit.clean and result.audit.path == str(tmp_path / "api" / "model.tflite")
    assert set(result.fidelity) == {"tflite:y:0"}  # the .tflite checks the GraphDef too
    assert result.verification["graphdef"] == gs.driver.GRAPHDEF_NOT_RUN.format(target="tflite")
    assert sorted(p.name for p in (tmp_path / "api").iterdir()) == sorted(
        p.name for p in (tmp_path / "cli").iterdir())


def test_convert_takes_a_graph_and_leaves_it_alone(tmp_path):
    graph = chain()
    result = gs.convert(graph, "core::remove_identity", target=None, outdir=tmp_path / "o")
    assert graph.op_counts()["Identity"] == 3  # converted a copy
    assert result.ops_after.get("Identity", 0) <= 1 and result.export is None
    assert gs.load(result.artefacts["model"]).op_counts() == result.ops_after


def test_a_failed_verification_is_status_3_in_the_result(tmp_path):
    model = gs.save(chain(), tmp_path / "model.pb")
    # a tolerance no result can meet: the comparison itself fails
    result = gs.convert(str(model), "core::remove_identity", target="none",
                        outdir=tmp_path / "o", verify=True, tolerance=-1.0)
    assert result.status == 3 and not result.verification["ok"]
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["verification"]["ok"] is False


def test_targets_come_from_the_entry_point_group():
    eps = {ep.name: ep.value for ep in entry_points(group="graphsurgery.targets")}
    assert eps.get("tflite") == "graphsurgery.targets.tflite:TFLiteTarget"
    assert isinstance(all_targets()["tflite"], TFLiteTarget)
    assert {r.id for r in get_target("tflite").rules} >= {"no-inner-transpose", "rank<=4"}


def test_unknown_target_is_one_line_naming_the_known_ones(tmp_path, capsys):
    model = gs.save(chain(), tmp_path / "model.pb")
    code = main(["run", str(model), "-p", "core::dce", "-o", str(tmp_path / "o"),
                 "--target", "nosuch"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "unknown target 'nosuch' (targets: coreml, onnx, tflite" in err
    assert not (tmp_path / "o").exists()
    code = main(["check", str(model), "--target", "nosuch"])
    assert code == 2 and "unknown target 'nosuch'" in capsys.readouterr().err


def test_a_second_target_with_the_same_name_is_refused():
    class Other(Target):
        name = "tflite"

    with pytest.raises(gs.UsageError, match="registered twice"):
        register_target(Other)
    assert isinstance(get_target("tflite"), TFLiteTarget)


def test_stylegan_to_tflite_is_stylegan_plus_the_tflite_passes():
    ids = gs.Pipeline.preset("stylegan-to-tflite").pass_ids()
    neutral = gs.Pipeline.preset("stylegan").pass_ids()
    assert not [p for p in neutral if p.startswith("tflite::")]
    # the same pass list as before the target existed: polyphase right after the layout
    # pass, the broadcast guard last but the final dead-code elimination
    assert ids[ids.index("core::to_nhwc") + 1] == "tflite::polyphase_transpose_conv"
    assert ids[-2:] == ["tflite::guard_broadcast_folding", "core::dce"]
    assert [p for p in ids if not p.startswith("tflite::")] == neutral


def test_the_old_pass_ids_still_work():
    from graphsurgery.registry import get_pass

    for name in ("polyphase_transpose_conv", "guard_broadcast_folding"):
        old, new = get_pass(f"core::{name}"), get_pass(f"tflite::{name}")
        assert issubclass(old, new) and old.id == f"core::{name}"
        assert "Deprecated" in old.summary()
        gs.Pipeline.parse(f"core::{name}")  # validates
