"""check.lint_tflite names every node blocking a TFLite-clean conversion; count_flops."""

from __future__ import annotations

import os

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.check import Blocker, check_tflite, count_flops, lint_tflite
from graphsurgery.ir.dtypes import DType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402


def _w(*shape):
    return tf.constant(np.random.default_rng(0).standard_normal(shape).astype(np.float32))


def build(fn, shape=(None, 8, 8, 4), outputs=("out",), extra=()):
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape, name="x")
        more = [tf.compat.v1.placeholder(tf.float32, s, name=n) for n, s in extra]
        fn(x, *more)
    return gs.load(g.as_graph_def(), outputs=list(outputs))


def by_node(blockers, severity="error"):
    return {b.node: b for b in blockers if b.severity == severity}


def test_clean_nhwc_graph_has_no_blockers():
    def net(x):
        y = tf.nn.conv2d(x, _w(3, 3, 4, 8), 1, "SAME", name="conv")
        y = tf.nn.bias_add(y, _w(8))
        y = tf.reduce_mean(y, axis=[1, 2])
        return tf.nn.relu(tf.matmul(y, _w(8, 2)), name="out")

    assert lint_tflite(build(net)) == []
    assert check_tflite(build(net)) == []


def test_nchw_convolutions_and_pools_are_named():
    def net(x):
        y = tf.nn.conv2d(x, _w(3, 3, 4, 8), 1, "SAME", data_format="NCHW", name="G/conv")
        y = tf.nn.depthwise_conv2d(y, _w(3, 3, 8, 1), [1, 1, 1, 1], "SAME",
                                   data_format="NCHW", name="G/blur")
        return tf.nn.max_pool2d(y, 2, 2, "VALID", data_format="NCHW", name="out")

    errors = by_node(lint_tflite(build(net, shape=(None, 4, 8, 8))))
    assert set(errors) == {"G/conv", "G/blur", "out"}
    assert errors["G/conv"].op == "Conv2D"
    assert "TFLite has no NCHW convolution; run a layout pass" in errors["G/conv"].reason
    assert "NCHW convolution" in errors["G/blur"].reason
    assert "NCHW MaxPool" in errors["out"].reason


def test_custom_assign_switch_and_random_nodes_are_named():
    graph = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(graph, "test")
    x = rw.placeholder("x", DType.float32, (1, 4, 8, 8))
    k = rw.const(np.ones((4, 4), np.float32), name="k")
    up = rw.add_node("UpFirDn2D", [x, k], {"T": DType.float32, "upx": 2, "upy": 2},
                     name="G/upfirdn")
    pred = rw.const(np.array(True), name="pred")
    sw = rw.add_node("Switch", [up, pred], {"T": DType.float32}, name="G/cond/Switch")
    merge = rw.add_node("Merge", [sw.output(0), sw.output(1)],
                        {"T": DType.float32, "N": 2}, name="G/cond/Merge")
    shape = rw.const(np.array([1, 1, 8, 8], np.int32), name="noise_shape")
    noise = rw.add_node("RandomStandardNormal", [shape],
                        {"dtype": DType.float32, "T": DType.int32, "seed": 0, "seed2": 0},
                        name="G/noise")
    out = rw.add_node("AddV2", [merge, noise], {"T": DType.float32}, name="out")
    lod = rw.const(np.array(0.0, np.float32), name="lod")
    zero = rw.const(np.array(0.0, np.float32), name="zero")
    rw.add_node("Assign", [lod, zero], {"T": DType.float32}, name="lod/Assign")
    rw.set_graph_inputs([x])
    rw.set_outputs([out])

    errors = by_node(lint_tflite(graph))
    assert set(errors) == {"G/upfirdn", "G/cond/Switch", "G/cond/Merge", "G/noise",
                           "lod/Assign"}, errors
    assert "custom op 'UpFirDn2D'" in errors["G/upfirdn"].reason
    assert "fold Switch/Merge" in errors["G/cond/Switch"].reason
    assert errors["G/cond/Merge"].op == "Merge"
    assert "random op" in errors["G/noise"].reason
    assert "training leftover" in errors["lod/Assign"].reason
    with pytest.raises(gs.VerificationError, match="5 TFLite blocker") as info:
        check_tflite(graph)
    assert "\n" not in str(info.value) and len(info.value.problems) == 5


def test_tf_built_leftovers_switch_and_random():
    def net(x):
        v = tf.compat.v1.Variable(0.0, name="lod", use_resource=False)  # float_ref
        tf.compat.v1.assign(v, 1.0, name="lod_update")
        noise = tf.random.normal(tf.shape(x), name="noise")
        f, t = tf.raw_ops.Switch(data=x + noise, pred=tf.constant(True), name="cond")
        return tf.identity(tf.raw_ops.Merge(inputs=[f, t], name="merge")[0], name="out")

    errors = by_node(lint_tflite(build(net)))
    assert {"lod", "lod_update", "noise/RandomStandardNormal", "cond", "merge"} <= set(errors)
    assert "fold Switch/Merge" in errors["cond"].reason
    assert errors["lod"].op == "VariableV2" and errors["lod_update"].op == "Assign"


def test_rank_above_4_is_named_with_and_without_inference(monkeypatch):
    def upscale(x):  # StyleGAN v1's nearest-neighbour upscale, NHWC flavour
        y = tf.reshape(x, [-1, 8, 1, 8, 1, 4], name="up/reshape6")
        y = tf.tile(y, [1, 1, 2, 1, 2, 1], name="up/tile6")
        return tf.reshape(y, [-1, 16, 16, 4], name="out")

    graph = build(upscale)
    errors = by_node(lint_tflite(graph))
    assert set(errors) == {"up/reshape6", "up/tile6"}
    assert "rank-6 tensor" in errors["up/tile6"].reason

    def no_inference(self):
        raise ImportError("no shape inference")

    monkeypatch.setattr(gs.Graph, "infer", no_inference)
    fresh = build(upscale)
    assert set(by_node(lint_tflite(fresh))) == {"up/reshape6", "up/tile6"}


def test_runtime_filter_is_an_error_naming_the_input():
    def modulated(x, s):
        w = tf.multiply(_w(3, 3, 4, 8), tf.reshape(s, [1, 1, 4, 1]), name="modw")
        return tf.nn.conv2d(x, w, 1, "SAME", name="out")

    errors = by_node(lint_tflite(build(modulated, extra=[("style", [4])])))
    assert set(errors) == {"out"}
    assert "filter 'modw' is computed at run time from 'style' (Placeholder)" in (
        errors["out"].reason
    )


def test_filter_depending_only_on_the_input_shape_is_constant():
    def batch_tiled(x):
        w = tf.tile(_w(3, 3, 4, 2), [1, 1, 1, tf.shape(x)[0]], name="tiled")
        return tf.nn.conv2d(x, w, 1, "SAME", name="out")

    assert by_node(lint_tflite(build(batch_tiled))) == {}


def test_transpose_and_unknown_ops_are_warnings():
    def net(x):
        y = tf.transpose(x, [0, 2, 1, 3], name="swap")
        return tf.raw_ops.Cumprod(x=y, axis=tf.constant(1), name="out")

    blockers = lint_tflite(build(net))
    assert by_node(blockers) == {}
    warnings = by_node(blockers, "warning")
    assert set(warnings) == {"swap", "out"}
    assert "boundary" in warnings["swap"].reason  # reads the graph input
    assert "Select TF ops" in warnings["out"].reason
    assert str(warnings["out"]).startswith("warning: node 'out' (Cumprod): ")


def test_functional_cond_is_an_error():
    def net(x, p):
        return tf.identity(tf.cond(p[0] > 0, lambda: x * 2.0, lambda: x + 1.0), name="out")

    errors = by_node(lint_tflite(build(net, extra=[("p", [1])])))
    (name,) = errors
    assert errors[name].op == "StatelessIf" and "IF/WHILE subgraph" in errors[name].reason


def test_side_effecting_ops_are_errors():
    graph = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(graph, "test")
    x = rw.placeholder("x", DType.float32, (1, 4))
    msg = rw.const(np.array(b"hello", dtype=object), name="msg")
    rw.add_node("PrintV2", [msg], {"output_stream": "stderr", "end": "\n"}, name="print")
    out = rw.add_node("Relu", [x], {"T": DType.float32}, name="out")
    rw.set_graph_inputs([x])
    rw.set_outputs([out])
    errors = by_node(lint_tflite(graph))
    assert set(errors) == {"print"} and "side effects" in errors["print"].reason


def test_blocker_defaults():
    b = Blocker("n", "Op", "why")
    assert b.severity == "error" and str(b) == "error: node 'n' (Op): why"


def test_count_flops_exact():
    def net(x):
        y = tf.nn.conv2d(x, _w(3, 3, 3, 4), 1, "SAME", name="conv")  # [1,8,8,4]
        d = tf.nn.depthwise_conv2d(y, _w(3, 3, 4, 2), [1, 1, 1, 1], "SAME",
                                   name="dw")  # [1,8,8,8]
        t = tf.nn.conv2d_transpose(y, _w(3, 3, 2, 4), [1, 16, 16, 2], 2, "SAME",
                                   name="up")  # from [1,8,8,4]
        m = tf.matmul(tf.reshape(d, [-1, 512]), _w(512, 10), name="fc")
        return tf.identity(m, name="out"), t

    graph = build(net, shape=(None, 8, 8, 3), outputs=("out", "up"))
    flops = count_flops(graph)
    conv = 2 * (8 * 8 * 4) * (3 * 3 * 3)
    dw = 2 * (8 * 8 * 8) * (3 * 3)
    up = 2 * (8 * 8 * 4) * (3 * 3 * 2)
    fc = 2 * 10 * 512
    assert flops["nodes"] == {"conv": conv, "dw": dw, "up": up, "fc": fc}
    assert flops["conv"] == conv + dw + up and flops["matmul"] == fc
    assert flops["total"] == conv + dw + up + fc and flops["unknown"] == []


def test_count_flops_nchw_and_batch_dependent_grouped_conv():
    def net(x):
        y = tf.nn.conv2d(x, _w(3, 3, 3, 4), 1, "SAME", data_format="NCHW", name="conv")
        # StyleGAN2's fused modulated conv: the batch folded into channels
        z = tf.reshape(y, [1, -1, 8, 8])
        w = tf.tile(_w(3, 3, 4, 2), [1, 1, 1, tf.shape(x)[0]])
        z = tf.nn.conv2d(z, w, 1, "SAME", data_format="NCHW", name="grouped")
        return tf.identity(z, name="out")

    flops = count_flops(build(net, shape=(None, 3, 8, 8)))
    assert flops["nodes"] == {
        "conv": 2 * (4 * 8 * 8) * 27,
        "grouped": 2 * (2 * 8 * 8) * (3 * 3 * 4),  # batch 1
    }


def test_every_finding_names_a_declared_rule_of_the_target():
    from graphsurgery.targets import get_target

    def net(x):
        y = tf.nn.conv2d(x, _w(3, 3, 4, 8), 1, "SAME", data_format="NCHW", name="conv")
        y = tf.reshape(y, [1, 2, 4, 2, 2, 1], name="r6")  # rank 6
        return tf.transpose(tf.reshape(y, [1, 8, 2, 2]), [0, 2, 1, 3], name="out")

    declared = {r.id for r in get_target("tflite").rules}
    found = lint_tflite(build(net, shape=(1, 4, 2, 2)))
    rules = {f.node: f.rule for f in found}
    assert rules["conv"] == "nhwc-layout" and rules["r6"] == "rank<=4"
    assert {f.rule for f in found} <= declared
    assert all(isinstance(f, Blocker) for f in found)


def test_check_report_groups_by_rule_with_counts_fixes_flops_and_parameters():
    from graphsurgery.check import check_report

    def net(x):
        ys = [tf.nn.conv2d(x, _w(3, 3, 4, 2), 1, "SAME", data_format="NCHW", name=f"conv{i}")
              for i in range(5)]
        noise = tf.random.normal([1, 2, 4, 4], name="noise")
        return tf.identity(tf.add_n(ys) + noise, name="out")

    graph = build(net, shape=(1, 4, 4, 4))
    report = check_report(graph, "tflite", model="net.pb")
    groups = {g.rule: g for g in report.groups}
    assert len(groups["nhwc-layout"].findings) == 5
    assert groups["nhwc-layout"].fixed_by == "core::to_nhwc"
    assert "stylegan::noise" in groups["no-random"].fixed_by
    assert report.groups[0].rule == "nhwc-layout"  # most findings first
    # five 3x3x4x2 filters, and random_normal's float mean and stddev
    assert report.errors == 6 and report.parameters == 5 * 3 * 3 * 4 * 2 + 2
    assert report.flops["conv"] == 5 * 2 * (2 * 4 * 4) * (3 * 3 * 4)
    lines = report.lines(per_rule=2)
    at = lines.index(next(x for x in lines if x.startswith("error nhwc-layout: 5 node(s)")))
    assert lines[at + 1] == ("  error: conv0 (Conv2D): TFLite has no NCHW convolution; run a "
                             "layout pass (NCHW -> NHWC)")
    assert lines[at + 2] == "  error: conv1 (Conv2D)"  # the same reason is not repeated
    assert lines[at + 3] == "  ... and 3 more (-v lists all)"
    assert lines[at + 4] == "  fix: core::to_nhwc"
    assert any(x.startswith("FLOPs: ") and "parameters: " in x for x in lines)
    assert lines[-1] == (f"net.pb: {len(graph)} nodes; 6 blocker(s), 0 warning(s) for target "
                         "tflite: NOT clean")
    js = report.to_json()
    assert js["rules"][0]["count"] == 5 and js["rules"][0]["fixed_by"] == "core::to_nhwc"
    assert js["parameters"] == report.parameters and js["clean"] is False


def test_every_error_rule_of_tflite_says_what_fixes_it():
    from graphsurgery.registry import all_passes
    from graphsurgery.targets import get_target

    known = set(all_passes())
    for rule in get_target("tflite").rules:
        if rule.severity != "error" or rule.id == "runs-in-litert":
            continue
        assert rule.fixed_by, rule.id
        named = {w.strip(",()") for w in rule.fixed_by.split() if "::" in w}
        assert named and named <= known, (rule.id, named - known)


def test_check_a_tflite_model_runs_the_audit_grouped_by_rule(tmp_path, capsys):
    """`check model.tflite`: the TFLite audit, its violations under the lint's rule ids."""
    import json

    from graphsurgery.cli import main

    def net(x):
        return tf.identity(x + tf.random.normal([1, 4], name="noise"), name="out")

    graph = build(net, shape=(1, 4))
    result = gs.convert(graph, "core::dce", target="tflite", outdir=tmp_path / "o")
    tflite = tmp_path / "o" / "model.tflite"
    assert not result.audit.clean and tflite.is_file()
    assert main(["check", str(tflite)]) == 3
    out = capsys.readouterr().out
    assert "error no-random: 1 node(s)" in out and "fix: stylegan::noise" in out
    assert out.rstrip().endswith("audit for target tflite: 1 violation(s): NOT clean")
    assert main(["check", str(tflite), "--json"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "artefact" and [r["rule"] for r in data["rules"]] == ["no-random"]
    assert main(["check", str(tflite), "--target", "nope"]) == 2
    assert "is a tflite model" in capsys.readouterr().err
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage")
    assert main(["check", str(bad)]) == 2
    assert "TFL3" in capsys.readouterr().err
