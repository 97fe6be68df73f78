"""Tests of core::remove_identity."""

from __future__ import annotations

import numpy as np
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery.testing import check_pass, run_tf
from graphsurgery.tfcompat import control_flow_v1

v1 = tf.compat.v1
F32 = gs.DType.float32
X = np.array([[-1.0, 0.5, 2.0]], np.float32)


def test_identity_chains_identity_n_and_snapshot_are_bypassed():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [1, 3], name="x")
        i2 = tf.identity(tf.identity(x, name="i1"), name="i2")
        n = tf.identity_n([i2, x * 3.0], name="n")
        s = tf.raw_ops.Snapshot(input=n[1], name="snap")
        tf.identity(n[0] - s, name="out")
    graph = gs.load(g, inputs=["x"], outputs=["out"])
    after = check_pass(
        graph, "core::remove_identity", feeds={"x": X},
        before={"Identity": 3, "IdentityN": 1, "Snapshot": 1},
        after={"Identity": 1, "IdentityN": 0, "Snapshot": 0},
    )
    sub = after.node("out").input_node(0)
    assert [str(t) for t in sub.data_inputs] == ["x:0", "mul:0"]


def test_control_inputs_are_forwarded_and_control_users_rewired():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [1, 3], name="x")
        ok = tf.reduce_all(x > -100.0)
        check = tf.raw_ops.Assert(condition=ok, data=[x], name="check")
        other = tf.raw_ops.Assert(condition=ok, data=[ok], name="other")
        group = tf.group(check, name="group")  # NoOp(^check)
        with tf.control_dependencies([check]):
            gated = tf.identity(x, name="gated")  # Identity(x, ^check)
        with tf.control_dependencies([group, other]):
            grouped = tf.identity(x, name="grouped")  # Identity(x, ^group, ^other)
        with tf.control_dependencies([grouped]):
            late = tf.constant(2.0, name="late")  # Const(^grouped)
        tf.identity(gated * late + grouped, name="out")
    graph = gs.load(g, inputs=["x"], outputs=["out"])
    check_name, other_name = check.name, other.name
    after = check_pass(
        graph, "core::remove_identity", feeds={"x": X},
        before={"Identity": 3, "NoOp": 1}, after={"Identity": 1, "NoOp": 0},
    )
    mul = after.node("out").input_node(0).input_node(0)
    assert mul.op == "Mul" and mul.data_inputs[0].node == "x"
    assert mul.control_inputs == [check_name]
    # ^grouped became ^x (what it read) plus its own control inputs, ^group turned to ^check.
    assert sorted(after.node("late").control_inputs) == sorted(["x", check_name, other_name])
    add = after.node("out").input_node(0)
    assert add.data_inputs[1].node == "x"
    assert sorted(add.control_inputs) == sorted([check_name, other_name])


def test_declared_interface_identities_are_kept():
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 3])
    a = rw.add_node("Identity", [x], {"T": F32}, name="a")
    y = rw.add_node("Identity", [a], {"T": F32}, name="y")
    z = rw.add_node("Identity", [a], {"T": F32}, name="z")
    rw.set_graph_inputs([x])
    rw.set_outputs([y, z])
    after = check_pass(g, "core::remove_identity", feeds={"x": X},
                       before={"Identity": 3}, after={"Identity": 2})
    assert after.outputs == [gs.TensorRef("y"), gs.TensorRef("z")]
    assert after.node("y").data_inputs == [gs.TensorRef("x")]


def test_cond_pivots_with_control_users_are_kept():
    with control_flow_v1():
        g = tf.Graph()
        with g.as_default():
            x = v1.placeholder(tf.float32, [1, 3], name="x")
            p = v1.placeholder(tf.bool, [], name="p")
            # Branch constants hang on the pivots (^cond/switch_t, ^cond/switch_f).
            y = v1.cond(p, lambda: x * 2.0, lambda: x + 1.0)
            tf.identity(tf.identity(y), name="out")
    graph = gs.load(g, inputs=["x", "p"], outputs=["out"])
    after = check_pass(graph, "core::remove_identity", feeds={"x": X, "p": True},
                       before={"Identity": 5}, after={"Identity": 3, "Switch": 3, "Merge": 1})
    assert "cond/switch_t" in after and "cond/switch_f" in after
    np.testing.assert_allclose(run_tf(after, {"x": X, "p": False})[0], X + 1.0)


def test_identity_with_control_inputs_feeding_a_merge_is_kept():
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 3])
    p = rw.placeholder("p", gs.DType.bool, [])
    sw = rw.add_node("Switch", [x, p], {"T": F32}, name="sw")
    f = rw.add_node("Identity", [sw.output(0)], {"T": F32}, name="f")
    # t waits for f: when p is true f is dead, so t is too and the Merge takes neg.
    t = rw.add_node("Identity", [x], {"T": F32}, name="t", control_inputs=[f])
    neg = rw.add_node("Neg", [sw.output(1)], {"T": F32}, name="neg")
    m = rw.add_node("Merge", [t, neg], {"T": F32, "N": 2}, name="m")
    mi = rw.add_node("Identity", [m], {"T": F32}, name="mi")
    y = rw.add_node("Relu", [mi], {"T": F32}, name="y")
    rw.set_graph_inputs([x, p])
    rw.set_outputs([y])
    after = check_pass(g, "core::remove_identity", feeds={"x": X, "p": True},
                       before={"Identity": 3}, after={"Identity": 2})
    # t: control inputs and a Merge consumer; f: a Switch output something waits for.
    assert "t" in after and "f" in after and "mi" not in after
    np.testing.assert_allclose(run_tf(after, {"x": X, "p": False})[0], np.maximum(X, 0))


def test_nothing_to_do_reports_no_change():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [1, 3], name="x")
        tf.identity(tf.nn.relu(x), name="out")
    graph = gs.load(g, inputs=["x"], outputs=["out"])
    check_pass(graph, "core::remove_identity", feeds={"x": X}, expect_change=False,
               before={"Identity": 1}, after={"Identity": 1})
