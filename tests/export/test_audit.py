"""audit_tflite: every TFLite-clean rule checked on the flatbuffer itself."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.export.audit import audit_tflite
from graphsurgery.export.tflite import capture_output, convert_tflite

from . import build, conv_bias_relu, tf, weights


def _convert(graph, tmp_path, name="m.tflite"):
    return convert_tflite(graph, tmp_path / name).path


def test_clean_model_json(tmp_path):
    path = _convert(build(conv_bias_relu), tmp_path)
    audit = audit_tflite(path.read_bytes())  # bytes work as well as paths
    assert audit.clean and audit.violations == [] and audit.path is None
    data = json.loads(json.dumps(audit.to_json()))
    for key in (
        "ops", "subgraphs", "max_rank", "high_rank_tensors", "transpose_count", "flex_count",
        "custom_count", "random_count", "nonconst_weights", "gpu_warnings",
        "analyzer_gpu_warnings", "runs", "clean", "violations", "inputs", "outputs",
    ):  # fmt: skip
        assert key in data, key
    assert data["subgraphs"] == 1 and data["max_rank"] == 4 and data["runs"] is True
    assert data["inputs"] == [{"name": "x", "shape": [1, 8, 8, 16], "dtype": "FLOAT32"}]
    assert data["analyzer_gpu_compatible"] is True
    assert "clean" in audit.summary()


def test_rank5_reshape_converts_but_is_flagged(tmp_path):
    def split_channels(t, x):
        y = t.reshape(x, [1, 8, 8, 2, 8], name="split")
        y = y * t.constant(weights(1, 1, 1, 2, 1))
        return t.reshape(y, [1, 8, 8, 16], name="out")

    audit = audit_tflite(_convert(build(split_channels), tmp_path))
    assert audit.max_rank == 5 and audit.runs and not audit.clean
    assert {t["name"] for t in audit.high_rank_tensors} >= {"split"}
    assert "rank<=4: tensor 'split' has shape [1, 8, 8, 2, 8]" in audit.violations


def _transpose_inside(t, x):
    y = conv_bias_relu(t, x, name="body")
    y = t.transpose(y, [0, 2, 1, 3], name="swap_hw")  # a real transpose: cannot fold away
    return t.nn.conv2d(y, t.constant(weights(1, 1, 16, 4)), 1, "SAME", name="out")


def _transpose_at_output(t, x):
    y = conv_bias_relu(t, x, name="body")
    y = t.nn.conv2d(y, t.constant(weights(1, 1, 16, 4)), 1, "SAME", name="head")
    return t.transpose(y, [0, 3, 1, 2], name="out")  # NHWC -> NCHW at the boundary


def test_transpose_inside_the_network_is_a_violation(tmp_path):
    audit = audit_tflite(_convert(build(_transpose_inside), tmp_path))
    assert audit.transpose_count == 1 and audit.boundary_transposes == []
    assert audit.violations == ["no-inner-transpose: TRANSPOSE inside the network -> 'swap_hw'"]


def test_one_boundary_transpose_is_allowed_unless_asked(tmp_path):
    path = _convert(build(_transpose_at_output), tmp_path)
    audit = audit_tflite(path)
    assert audit.clean, audit.violations
    assert audit.transpose_count == 1 and audit.boundary_transposes == ["out"]
    strict = audit_tflite(path, allow_boundary_transpose=False, run=False, analyzer=False)
    assert strict.violations == ["no-inner-transpose: TRANSPOSE inside the network -> 'out'"]
    assert strict.runs is None


def test_runtime_filter_is_flagged(tmp_path):
    def modulated(t, x, s):
        w = t.constant(weights(3, 3, 16, 8)) * t.reshape(s, [1, 1, 16, 1], name="style")
        return t.nn.conv2d(x, w, 1, "SAME", name="out")

    graph = build(modulated, extra_inputs=[("s", [16])])
    audit = audit_tflite(_convert(graph, tmp_path))
    assert audit.runs  # slow kernels, but it runs
    assert [(w["op"], w["operand"]) for w in audit.nonconst_weights] == [("CONV_2D", "filter")]
    assert any(v.startswith("constant-weights: CONV_2D -> 'out'") for v in audit.violations)


def test_functional_cond_becomes_extra_subgraphs(tmp_path):
    def cond(t, x, p):
        y = t.cond(p[0] > 0, lambda: x * 2.0, lambda: x + 1.0)  # StatelessIf in TF2
        return t.identity(y, name="out")

    audit = audit_tflite(_convert(build(cond, extra_inputs=[("p", [1])]), tmp_path))
    assert audit.subgraphs == 3 and audit.ops["IF"] == 1
    assert audit.violations == ["one-subgraph: the model has 3 subgraphs"]


def test_flex_model_is_flagged_and_does_not_run(tmp_path):
    # Built with Select TF ops on purpose: convert_tflite never produces such a model.
    t = tf()
    g = t.Graph()
    with g.as_default():
        x = t.compat.v1.placeholder(t.float32, [1, 3, 8, 8], name="x")
        y = t.nn.depthwise_conv2d(
            x, t.constant(weights(3, 3, 3, 1)), [1, 1, 1, 1], "SAME", data_format="NCHW"
        )
        y = t.nn.relu(y, name="out")
    with t.compat.v1.Session(graph=g) as sess, capture_output():
        conv = t.compat.v1.lite.TFLiteConverter.from_session(sess, [x], [y])
        conv.target_spec.supported_ops = [
            t.lite.OpsSet.TFLITE_BUILTINS, t.lite.OpsSet.SELECT_TF_OPS
        ]
        model = conv.convert()
    audit = audit_tflite(model)
    assert audit.flex_count == 1 and audit.flex_ops == {"FlexDepthwiseConv2dNative": 1}
    assert audit.runs is False and "FlexDepthwiseConv2dNative" in audit.run_error
    assert any(v.startswith("builtins-only: Flex op FlexDepthwiseConv2dNative")
               for v in audit.violations)
    assert any(v.startswith("runs-in-litert:") for v in audit.violations)
    # TFLite's own analyzer calls this model GPU compatible: the audit must not rely on it
    assert audit.analyzer_gpu_compatible is True


def test_gpu_friendliness_warnings_do_not_make_a_model_unclean(tmp_path):
    def unfriendly(t, x):
        y = t.nn.depthwise_conv2d(x, t.constant(weights(3, 3, 16, 2)), [1, 1, 1, 1], "SAME",
                                  name="dw")  # depth multiplier 2
        y = t.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        return t.identity(y[:, 0], name="out")  # shrink_axis_mask

    audit = audit_tflite(_convert(build(unfriendly), tmp_path))
    text = "\n".join(audit.gpu_warnings)
    assert "depth multiplier 2" in text and "shrink_axis_mask" in text, audit.gpu_warnings
    assert audit.clean, audit.violations


def test_not_a_tflite_file(tmp_path):
    with pytest.raises(gs.InputError, match="TFL3"):
        audit_tflite(b"definitely not a flatbuffer")
    with pytest.raises(gs.InputError, match="cannot read"):
        audit_tflite(tmp_path / "missing.tflite")


def test_audit_input_is_random_but_deterministic(tmp_path):
    path = _convert(build(conv_bias_relu), tmp_path)
    a, b = audit_tflite(path, analyzer=False), audit_tflite(path, analyzer=False)
    assert a.runs and b.runs and a.analyzer_gpu_compatible is None
    assert np.isfinite(a.run_seconds)


def test_check_and_audit_name_the_same_rule(tmp_path):
    from graphsurgery.check import lint
    from graphsurgery.targets import get_target, violation_rule

    graph = build(_transpose_inside)
    finding = next(f for f in lint(graph, "tflite") if f.node == "swap_hw")
    audit = audit_tflite(_convert(graph, tmp_path), run=False, analyzer=False)
    assert finding.rule == violation_rule(audit.violations[0]) == "no-inner-transpose"
    target = get_target("tflite")
    ids = {r.id for r in target.rules}
    from graphsurgery.export.audit import AUDIT_RULES

    assert {rule_id for rule_id, _ in AUDIT_RULES} <= ids  # every audit rule is declared
    assert target.rule("no-inner-transpose").description.startswith("no TRANSPOSE inside")
