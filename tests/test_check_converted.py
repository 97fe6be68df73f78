"""`graphsurgery check` on converted models: an .onnx gets the ONNX audit, an .mlpackage the
Core ML audit, grouped by rule like a GraphDef's lint; text and strict JSON; a broken file
is exit 2 and one line naming it. The models are built with `graphsurgery run --target`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main

F32 = gs.DType.float32


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("graphsurgery: error: "), lines[0]
    for frag in fragments:
        assert frag in lines[0], lines[0]


@pytest.fixture(scope="module")
def graph_pb(tmp_path_factory) -> str:
    """x [1, 8, 8, 3] -> Conv2D (constant 3x3x3x4 filter) -> Identity -> Relu -> y."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 8, 8, 3])
    w = rw.const(np.random.default_rng(0).standard_normal((3, 3, 3, 4)).astype(np.float32),
                 name="w")
    conv = rw.add_node("Conv2D", [x, w], {"T": F32, "strides": [1, 1, 1, 1], "padding": "SAME",
                                         "data_format": "NHWC"}, name="conv")
    ident = rw.add_node("Identity", [conv], {"T": F32}, name="id0")
    y = rw.add_node("Relu", [ident], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    return str(gs.save(g, tmp_path_factory.mktemp("check") / "model.pb"))


def _convert(capsys, graph_pb: str, target: str, out) -> None:
    code, _, err = _run(capsys, "run", graph_pb, "-p", "core::remove_identity", "--target",
                        target, "-o", out)
    assert code == 0, err


# ---------------------------------------------------------------------------- ONNX
def test_check_onnx_clean_text_and_json(capsys, tmp_path, graph_pb):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    _convert(capsys, graph_pb, "onnx", tmp_path / "o")
    model = tmp_path / "o" / "model.onnx"
    code, out, err = _run(capsys, "check", model)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-1] == f"{model}: audit for target onnx: 0 violation(s): clean"
    assert lines[-2].startswith("ops: ") and "Conv 1" in lines[-2], out
    code, out, _ = _run(capsys, "check", model, "--json")
    data = _strict(out)
    assert code == 0 and data["kind"] == "artefact" and data["target"] == "onnx"
    assert data["clean"] and data["errors"] == 0 and data["rules"] == []
    assert data["ops"]["Conv"] == 1 and data["nodes"] == sum(data["ops"].values())


def test_check_onnx_groups_the_audit_by_rule(capsys, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    # x -> Relu -> Transpose -> Relu -> + RandomNormalLike -> y: an inner transpose, noise
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu_a"),
             helper.make_node("Transpose", ["a"], ["t"], name="inner_t", perm=[1, 0]),
             helper.make_node("Relu", ["t"], ["b"], name="relu_b"),
             helper.make_node("RandomNormalLike", ["b"], ["n"], name="noise"),
             helper.make_node("Add", ["b", "n"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])])
    model = tmp_path / "crafted.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    code, out, err = _run(capsys, "check", model)
    assert code == 3, err
    assert "error no-inner-transpose: 1 node(s)" in out and "inner_t" in out
    assert "error no-random: 1 node(s)" in out and "fix: stylegan::noise" in out
    assert out.rstrip().endswith("audit for target onnx: 2 violation(s): NOT clean")
    code, out, _ = _run(capsys, "check", model, "--json")
    data = _strict(out)
    assert code == 3 and not data["clean"] and data["errors"] == 2
    assert sorted(r["rule"] for r in data["rules"]) == ["no-inner-transpose", "no-random"]


@pytest.mark.parametrize("content", [b"garbage\n", b"\x08\x07\x12\xff\xff"])
def test_check_a_broken_onnx_file_is_one_line(capsys, tmp_path, content):
    pytest.importorskip("onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    before = bad.read_bytes()
    for extra in ([], ["--json"]):
        code, out, err = _run(capsys, "check", bad, *extra)
        assert code == 2 and out == "", out
        _one_line_error(err, str(bad), "ONNX")
    assert bad.read_bytes() == before
    code, _, err = _run(capsys, "check", tmp_path / "missing.onnx")
    assert code == 2
    _one_line_error(err, "missing.onnx", "no such file")


def test_check_onnx_with_another_target_is_refused(capsys, tmp_path, graph_pb):
    pytest.importorskip("onnx")
    _convert(capsys, graph_pb, "onnx", tmp_path / "o")
    code, _, err = _run(capsys, "check", tmp_path / "o" / "model.onnx", "--target", "tflite")
    assert code == 2
    _one_line_error(err, "model.onnx", "--target onnx")


# ---------------------------------------------------------------------------- Core ML
def test_check_mlpackage_clean_violating_and_broken(capsys, tmp_path, graph_pb):
    ct = pytest.importorskip("coremltools")
    _convert(capsys, graph_pb, "coreml", tmp_path / "o")
    model = tmp_path / "o" / "model.mlpackage"
    for path in (model, f"{model}/"):  # a folder, given with or without its slash
        code, out, err = _run(capsys, "check", path)
        assert code == 0, err
        assert out.splitlines()[-1].endswith("audit for target coreml: 0 violation(s): clean")
        assert "conv 1" in out.splitlines()[-2], out
    code, out, _ = _run(capsys, "check", model, "--json")
    data = _strict(out)
    assert code == 0 and data["target"] == "coreml" and data["clean"]
    assert data["ops"]["conv"] == 1

    # A custom op in the ML Program: the model file inside the package, edited.
    bad = tmp_path / "custom.mlpackage"
    shutil.copytree(model, bad)
    spec_file = bad / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = ct.proto.Model_pb2.Model.FromString(spec_file.read_bytes())
    fn = next(iter(spec.mlProgram.functions.values()))
    ops = next(iter(fn.block_specializations.values())).operations
    next(op for op in ops if op.type == "relu").type = "custom_relu"
    spec_file.write_bytes(spec.SerializeToString())
    code, out, err = _run(capsys, "check", bad)
    assert code == 3, err
    assert "error no-custom-layers: 1 node(s)" in out and "custom_relu" in out
    code, out, _ = _run(capsys, "check", bad, "--json")
    assert [r["rule"] for r in _strict(out)["rules"]] == ["no-custom-layers"]

    # Broken packages: an empty folder, a file, a manifest without its fields, a model
    # file that is not a Core ML spec.
    empty = tmp_path / "empty.mlpackage"
    empty.mkdir()
    file = tmp_path / "file.mlpackage"
    file.write_bytes(b"garbage")
    manifest = tmp_path / "manifest.mlpackage"
    manifest.mkdir()
    (manifest / "Manifest.json").write_text("{}")
    garbled = tmp_path / "garbled.mlpackage"
    shutil.copytree(model, garbled)
    (garbled / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\xff" * 8)
    for broken in (empty, file, manifest, garbled):
        code, out, err = _run(capsys, "check", broken)
        assert code == 2 and out == "", (broken, out)
        _one_line_error(err, str(broken), "Core ML")


def test_check_an_older_mlmodel_file(capsys, tmp_path):
    """A single-file .mlmodel (a neural network, Core ML's older format) is audited too: it
    is not an ML Program."""
    ct = pytest.importorskip("coremltools")
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    builder = NeuralNetworkBuilder([("x", datatypes.Array(4))], [("y", datatypes.Array(4))])
    builder.add_activation("relu", "RELU", "x", "y")
    model = tmp_path / "old.mlmodel"
    ct.utils.save_spec(builder.spec, str(model))
    code, out, err = _run(capsys, "check", model)
    assert code == 3, err
    assert "error ml-program: 1 node(s)" in out and "'neuralNetwork'" in out
    code, out, _ = _run(capsys, "check", model, "--json")
    data = _strict(out)
    assert data["target"] == "coreml" and [r["rule"] for r in data["rules"]] == ["ml-program"]
    model.write_bytes(b"\xff" * 8)
    code, out, err = _run(capsys, "check", model)
    assert code == 2 and out == ""
    _one_line_error(err, str(model), "Core ML")
