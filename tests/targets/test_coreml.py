"""The Core ML target: a tiny StyleGAN2 and the TF2 SavedModel -> a clean .mlpackage (an ML
Program, no custom layer, the modulation as mul -> conv(const) -> mul); the audit lists the
MIL op histogram and says prediction is skipped on Linux; fp16 and weight compression
report their sizes; each audit rule catches a crafted violation; a missing extra is one line.
"""

import json
import sys

import pytest

import graphsurgery as gs
from graphsurgery import zoo
from graphsurgery.check import lint
from graphsurgery.cli import main
from graphsurgery.targets import get_target
from graphsurgery.targets.coreml import CoreMLTarget
from graphsurgery.targets.coreml.rules import audit_spec, mil_ops

ct = pytest.importorskip("coremltools")


def _summary(out):
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("source", ["sg2-tiny", "tf2-tiny-savedmodel"])
def test_stylegan2_converts_to_a_clean_mlpackage(source, tmp_path):
    model = zoo.cached(source) if "savedmodel" in source else zoo.load(source)
    result = gs.convert(model, "stylegan-to-coreml", target="coreml", outdir=tmp_path / "o",
                        verify=True, report=source == "sg2-tiny")
    summary = _summary(tmp_path / "o")
    audit = summary["audit"]
    assert result.status == 0 and audit["clean"], audit["violations"]
    assert (tmp_path / "o" / "model.mlpackage" / "Manifest.json").is_file()
    assert audit["model_type"] == "mlProgram"
    # the modulation as plain ops: multiplies around convolutions with constant weights
    assert audit["ops"]["conv"] >= 1 and audit["ops"]["mul"] >= audit["ops"]["conv"]
    assert not any(op.startswith("custom") for op in audit["ops"])
    assert audit["prediction"].startswith("skipped: Core ML cannot run predictions on Linux")
    assert summary["verification"]["ok"]  # the rewritten GraphDef against the reference
    assert not any(k.startswith("coreml:") for k in summary["verification"])
    if source == "sg2-tiny":  # the report's audit section says so too
        assert "Core ML cannot run predictions on Linux" in (tmp_path / "o" / "report.html"
                                                              ).read_text()


def test_fp16_and_weight_compression_report_their_sizes(tmp_path):
    result = gs.convert(zoo.load("sg2-tiny"), "stylegan-to-coreml",
                        target=CoreMLTarget(compress=("linear8", "palettize4")),
                        outdir=tmp_path / "o", quantize="fp16")
    sizes = result.audit.to_json()["sizes"]
    assert result.status == 0 and set(sizes) == {"fp16", "linear8", "palettize4"}
    for variant in ("linear8", "palettize4"):
        spec = ct.utils.load_spec(str(tmp_path / "o" / f"model.{variant}.mlpackage"))
        assert audit_spec(spec) == []
        assert any(op.startswith("constexpr_") for op in mil_ops(spec))  # compressed weights
    assert sizes["palettize4"] < sizes["fp16"]
    # each compressed model is an artefact, in summary.json with its size
    variants = _summary(tmp_path / "o")["export"]["variants"]
    assert variants == {v: {"path": f"model.{v}.mlpackage", "bytes": sizes[v]}
                        for v in ("linear8", "palettize4")}
    assert result.artefacts["coreml.linear8"] == tmp_path / "o" / "model.linear8.mlpackage"
    assert result.artefacts["coreml.palettize4"].is_dir()
    fp32 = gs.convert(zoo.load("sg2-tiny"), "stylegan-to-coreml", target="coreml",
                      outdir=tmp_path / "f")
    assert sizes["fp16"] < fp32.audit.size


def test_each_audit_rule_catches_its_violation(tmp_path):
    gs.convert(zoo.load("sg2-tiny"), "stylegan-to-coreml", target="coreml",
               outdir=tmp_path / "o")
    clean = ct.utils.load_spec(str(tmp_path / "o" / "model.mlpackage"))
    assert audit_spec(clean) == []

    def broken(edit):
        spec = type(clean)()
        spec.CopyFrom(clean)
        fn = next(iter(spec.mlProgram.functions.values()))
        ops = next(iter(fn.block_specializations.values())).operations
        edit(spec, ops)
        return {line.split(":", 1)[0] for line in audit_spec(spec)}

    def custom(spec, ops):
        next(op for op in ops if op.type == "mul").type = "custom_modulation"

    def runtime_weight(spec, ops):  # a conv reading its weight from a run-time tensor
        conv = next(op for op in ops if op.type == "conv")
        x = conv.inputs["x"].arguments[0].name
        conv.inputs["weight"].arguments[0].name = x

    def neural_network(spec, ops):
        spec.neuralNetwork.layers.add(name="mine").custom.className = "Mine"

    assert broken(custom) == {"no-custom-layers"}
    assert broken(runtime_weight) == {"plain-modulation"}
    assert broken(neural_network) == {"ml-program", "no-custom-layers"}
    assert all(get_target("coreml").rule(r) for r in ("ml-program", "no-custom-layers",
                                                      "plain-modulation"))


def test_lint_before_conversion():
    ids = {f.rule for f in lint(zoo.load("sg2-tiny-cuda"), "coreml")}
    assert {"no-custom-layers", "plain-modulation"} <= ids  # FusedBiasAct, modulated conv
    graph = zoo.load("sg2-tiny-cuda")
    gs.Pipeline.preset("stylegan-to-coreml").run(graph)
    assert lint(graph, "coreml") == []


def test_quantize_values(tmp_path):
    with pytest.raises(gs.UsageError, match="--quantize dynamic is not supported"):
        get_target("coreml").check_options({"quantize": "dynamic"})
    with pytest.raises(gs.UsageError, match="unknown compression 'zip'"):
        CoreMLTarget(compress=("zip",))


def test_a_missing_extra_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)
    model = gs.save(zoo.load("sg2-tiny"), tmp_path / "g.pb")
    code = main(["run", str(model), "-p", "core::dce", "--target", "coreml",
                 "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "pip install 'graphsurgery[coreml]'" in err


def test_compress_option_on_the_command_line(tmp_path, capsys):
    model = gs.save(zoo.load("sg2-tiny"), tmp_path / "g.pb")
    code = main(["run", str(model), "-p", "stylegan-to-coreml", "--target", "coreml",
                 "--target-option", "coreml.compress=palettize6", "-o", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = _summary(tmp_path / "o")
    size = summary["export"]["variants"]["palettize6"]["bytes"]
    assert size == summary["audit"]["sizes"]["palettize6"] > 0
    assert f"{tmp_path / 'o' / 'model.palettize6.mlpackage'} (" in out
    code = main(["run", str(model), "-p", "core::dce", "--target", "coreml",
                 "--target-option", "compress=zip", "-o", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and "option compress: unknown compression 'zip'" in err
