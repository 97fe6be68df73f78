"""The ONNX target: tiny zoo graphs -> clean model.onnx matching the reference in onnxruntime;
each audit rule catches a crafted violation; the lint shares the ids; the Transpose clean-up;
a missing extra is one line naming it."""

import json
import sys

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery import zoo
from graphsurgery.check import lint
from graphsurgery.cli import main
from graphsurgery.errors import UsageError
from graphsurgery.targets import get_target
from graphsurgery.targets.onnx import ONNXTarget
from graphsurgery.targets.onnx.rules import audit_model

onnx = pytest.importorskip("onnx")
ogs = pytest.importorskip("onnx_graphsurgeon")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

TINY = ["sg1-tiny", "sg1-tiny-const-noise", "sg1-tiny-fused", "sg1-tiny-linear", "sg2-tiny",
        "sg2-tiny-const-noise", "sg2-tiny-cuda", "sg2-tiny-nonfused", "sg2-tiny-orig",
        "sg2-tiny-resnet"]


def _convert(source, tmp_path, target="onnx"):
    return gs.convert(source, "stylegan-to-onnx", target=target, outdir=tmp_path / "out",
                      verify=True)


@pytest.mark.parametrize("name", TINY)
def test_tiny_zoo_graphs_convert_to_clean_onnx_matching_the_reference(name, tmp_path):
    result = _convert(zoo.load(name), tmp_path)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert result.status == 0, summary.get("audit")
    assert (tmp_path / "out" / "model.onnx").is_file()
    audit = summary["audit"]
    assert audit["clean"] and audit["violations"] == []
    # op counts before and after: the custom ops, 5-D/6-D chains and run-time filters went;
    # the network is NCHW ONNX Conv with no Transpose
    assert "Transpose" not in audit["ops"] and audit["ops"]["Conv"] >= 1
    assert not {"FusedBiasAct", "UpFirDn2D"} & set(result.ops_after)
    cmp = summary["verification"][f"onnx:{result.outputs[0]}"]
    assert summary["verification"]["ok"] and cmp["psnr"] >= 60, cmp


def test_tf2_savedmodel_is_clean_once_the_transposes_are_sunk(tmp_path):
    """The Keras generator is NHWC: tf2onnx leaves a Transpose pair around each convolution
    (it does not push them through a multiply by a run-time [1,1,1,C] style)."""
    result = _convert(zoo.cached("tf2-tiny-savedmodel"), tmp_path)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert result.status == 0 and summary["audit"]["clean"], summary["audit"]["violations"]
    assert "Transpose" not in summary["audit"]["ops"]
    assert summary["verification"][f"onnx:{result.outputs[0]}"]["psnr"] >= 60


def test_remove_transposes_cancels_the_pair_around_a_modulation():
    from graphsurgery.targets.onnx.transposes import remove_transposes

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c1"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["t1", "s"], ["m"]),
        helper.make_node("LeakyRelu", ["m"], ["a"], alpha=0.2),
        helper.make_node("Transpose", ["a"], ["t2"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t2", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5]),
                     helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 1, 1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": rng.standard_normal((1, 4, 5, 5)).astype(np.float32),
             "s": rng.standard_normal((1, 1, 1, 4)).astype(np.float32)}
    expected = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    assert [r for r in audit_model(model) if r.startswith("no-inner-transpose")]

    g = ogs.import_onnx(onnx.shape_inference.infer_shapes(model))
    assert remove_transposes(g) == 2
    out = ogs.export_onnx(g)
    ops = [n.op_type for n in out.graph.node]
    assert "Transpose" not in ops and ops.count("Reshape") == 1  # s [1,1,1,4] -> [1,4,1,1]
    got = ort.InferenceSession(out.SerializeToString()).run(None, feeds)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert audit_model(out) == []


def test_remove_transposes_lifts_one_into_a_constant():
    """Keras' learned constant: Mul(const NHWC, s) -> Transpose -> Conv; the transpose goes
    into the constant and s [1,1,1,4] becomes a Reshape."""
    from graphsurgery.targets.onnx.transposes import remove_transposes

    rng = np.random.default_rng(1)
    k = numpy_helper.from_array(rng.standard_normal((1, 5, 5, 4)).astype(np.float32), "k")
    w = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Mul", ["k", "s"], ["m"]),
             helper.make_node("Transpose", ["m"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 1, 1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])], [k, w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"s": rng.standard_normal((1, 1, 1, 4)).astype(np.float32)}
    expected = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    g = ogs.import_onnx(onnx.shape_inference.infer_shapes(model))
    assert remove_transposes(g) == 1
    out = ogs.export_onnx(g)
    assert [n.op_type for n in out.graph.node] == ["Reshape", "Mul", "Conv"]
    got = ort.InferenceSession(out.SerializeToString()).run(None, feeds)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- each audit rule
def _model(nodes, inputs=None, inits=(), extra_opsets=()):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])]
    graph = helper.make_graph(nodes, "g", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
                              list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   *extra_opsets])


W = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
CLEAN = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]

BAD = {
    "ai-onnx-domain": lambda: _model(
        [helper.make_node("Conv", ["x", "w"], ["c"]),
         helper.make_node("FusedBiasAct", ["c"], ["y"], domain="graphsurgery")],
        inits=[W], extra_opsets=[helper.make_opsetid("graphsurgery", 1)]),
    "static-shapes": lambda: _model(
        CLEAN, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
        inits=[W]),
    "no-random": lambda: _model(
        [helper.make_node("RandomNormalLike", ["x"], ["n"]), helper.make_node("Add", ["x", "n"],
                                                                              ["c"]),
         helper.make_node("Conv", ["c", "w"], ["y"])], inits=[W]),
    "no-inner-transpose": lambda: _model(
        [helper.make_node("Conv", ["x", "w"], ["c"]),
         helper.make_node("Transpose", ["c"], ["t"], perm=[0, 1, 3, 2]),
         helper.make_node("Relu", ["t"], ["y"])], inits=[W]),
    "constant-weights": lambda: _model(
        [helper.make_node("Mul", ["w", "s"], ["ws"]),
         helper.make_node("Conv", ["x", "ws"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 1, 1, 1])], inits=[W]),
    "runs-in-onnxruntime": lambda: _model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("NoSuchOp", ["c"], ["y"])],
        inits=[W]),
}


def test_a_clean_model_has_no_violations():
    assert audit_model(_model(CLEAN, inits=[W])) == []


@pytest.mark.parametrize("rule", sorted(BAD))
def test_each_audit_rule_catches_its_violation(rule):
    lines = audit_model(BAD[rule]())
    assert rule in {line.split(":", 1)[0] for line in lines}, lines
    assert get_target("onnx").rule(rule) is not None


def test_the_audit_reads_the_written_file(tmp_path):
    from graphsurgery.targets import Artefact

    path = tmp_path / "model.onnx"
    path.write_bytes(BAD["no-inner-transpose"]().SerializeToString())
    audit = ONNXTarget().audit(Artefact("onnx", path, path.stat().st_size))
    assert not audit.clean and audit.to_json()["ops"]["Transpose"] == 1


# ---------------------------------------------------------------- lint, pipeline, options
def test_lint_names_the_same_rules_before_conversion():
    ids = {f.rule for f in lint(zoo.load("sg2-tiny-cuda"), "onnx") if f.severity == "error"}
    assert {"ai-onnx-domain", "constant-weights"} <= ids  # FusedBiasAct, modulated conv
    assert "no-random" in {f.rule for f in lint(zoo.load("sg1-tiny"), "onnx")}
    graph = zoo.load("sg2-tiny-cuda")
    gs.Pipeline.preset("stylegan-to-onnx").run(graph)
    assert [f for f in lint(graph, "onnx") if f.severity == "error"] == []


def test_check_target_onnx_on_the_command_line(tmp_path, capsys):
    model = zoo.write(zoo.build("sg2-tiny-cuda"), tmp_path / "g.pb")
    code = main(["check", str(model), "--target", "onnx"])
    out = capsys.readouterr().out
    assert code != 0 and "constant-weights" in out


def test_the_onnx_pipeline_keeps_the_original_layout():
    stylegan = gs.Pipeline.preset("stylegan").pass_ids()
    onnx_ids = gs.Pipeline.preset("stylegan-to-onnx").pass_ids()
    assert "core::to_nhwc" in stylegan and "core::to_nhwc" not in onnx_ids
    assert onnx_ids == [p for p in stylegan if p != "core::to_nhwc"]


def test_opset_option(tmp_path):
    result = gs.convert(zoo.load("sg2-tiny"), "stylegan-to-onnx", target=ONNXTarget(opset=13),
                        outdir=tmp_path / "o")
    assert result.status == 0 and result.audit.to_json()["opset"] == 13
    with pytest.raises(UsageError, match="opset=3 is out of range"):
        ONNXTarget(opset=3)
    with pytest.raises(UsageError, match="--quantize int8 is not supported"):
        get_target("onnx").check_options({"quantize": "int8"})


def test_a_missing_extra_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import tf2onnx -> ImportError
    model = gs.save(zoo.load("sg2-tiny"), tmp_path / "g.pb")
    code = main(["run", str(model), "-p", "core::dce", "--target", "onnx",
                 "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "pip install 'graphsurgery[onnx]'" in err and "tf2onnx" in err
    assert not (tmp_path / "o").exists()


def test_a_graph_acting_on_the_host_is_not_converted(tmp_path):
    from graphsurgery.errors import VerificationError
    from graphsurgery.ir.dtypes import DType

    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", DType.float32, [1, 4])
    path = rw.const(np.array(b"/etc/passwd", dtype=object), name="path")
    rf = rw.add_node("ReadFile", [path], {}, name="read")
    y = rw.add_node("Identity", [x], {"T": DType.float32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y, rf])
    with pytest.raises(VerificationError, match="'read'"):
        get_target("onnx").export(g, tmp_path)


def test_opset_and_layout_options_on_the_command_line(tmp_path, capsys):
    """``--target-option``: opset 13, images delivered NHWC (one Transpose writing the
    output), verified against the NCHW reference through the recorded permutation."""
    model = gs.save(zoo.load("sg2-tiny"), tmp_path / "g.pb")
    code = main(["run", str(model), "-p", "stylegan-to-onnx", "--target", "onnx",
                 "--target-option", "onnx.opset=13", "--target-option", "layout=nhwc",
                 "--verify", "-o", str(tmp_path / "o")])
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert code == 0, capsys.readouterr()
    assert summary["audit"]["opset"] == 13 and summary["audit"]["clean"]
    m = onnx.load(str(tmp_path / "o" / "model.onnx"))
    assert [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] == [1, 16, 16, 3]
    transposes = [n for n in m.graph.node if n.op_type == "Transpose"]
    assert len(transposes) == 1 and transposes[0].output[0] == m.graph.output[0].name
    assert summary["verification"]["onnx:images_out:0"]["psnr"] >= 60


def test_layout_nchw_drops_a_transpose_writing_an_output():
    from graphsurgery.targets.onnx.layout import set_layout

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 2])], [W])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    g = ogs.import_onnx(onnx.shape_inference.infer_shapes(model))
    assert set_layout(g, "nchw") == {"outputs": {"y": [0, 3, 1, 2]}, "inputs": {}}
    out = ogs.export_onnx(g)
    assert [n.op_type for n in out.graph.node] == ["Conv"]
    got = ort.InferenceSession(out.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, expected.transpose(0, 3, 1, 2))
    assert set_layout(ogs.import_onnx(out), "nchw") == {"outputs": {}, "inputs": {}}


@pytest.mark.parametrize("option, says", [
    ("opset=abc", "opset='abc' is not an integer"),
    ("onnx.opset=30", "opset=30 is out of range"),
    ("layout=nwhc", "layout='nwhc' is not one of nchw, nhwc"),
    ("coreml.compress=linear8", "an option of target 'coreml', but the target is onnx"),
    ("threads=2", "target onnx has no option 'threads'"),
    ("opset", "write OPTION=VALUE"),
])
def test_a_bad_target_option_is_one_line_naming_it(option, says, tmp_path, capsys):
    model = gs.save(zoo.load("sg2-tiny"), tmp_path / "g.pb")
    code = main(["run", str(model), "-p", "core::dce", "--target", "onnx",
                 "--target-option", option, "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "o").exists()
