"""Tests of core::dce."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery.testing import check_pass, run_pass, run_tf

v1 = tf.compat.v1
F32 = gs.DType.float32
X = np.array([[-1.0, 0.5, 2.0]], np.float32)


def _graph() -> gs.Graph:
    """out = Relu(x) * 2 with an unused Sigmoid -> Tanh chain, an unused placeholder, and
    control dependencies from a kept node (^guard) and from an unused node (^orphan)."""
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [1, 3], name="x")
        v1.placeholder(tf.float32, [1, 3], name="not_an_input")
        guard = v1.no_op(name="guard")
        orphan = v1.no_op(name="orphan")
        with tf.control_dependencies([guard]):
            a = tf.nn.relu(x, name="a")
        with tf.control_dependencies([orphan]):
            b = tf.sigmoid(x, name="b")
        tf.tanh(b, name="c")
        tf.identity(a * 2.0, name="out")
    return gs.load(g, inputs=["x"], outputs=["out"])


def test_removes_what_the_outputs_do_not_need():
    after = check_pass(
        _graph(), "core::dce", feeds={"x": X},
        before={"Sigmoid": 1, "Tanh": 1, "Placeholder": 2, "NoOp": 2, "Relu": 1},
        after={"Sigmoid": 0, "Tanh": 0, "Placeholder": 1, "NoOp": 1, "Relu": 1},
    )
    assert "guard" in after and "orphan" not in after and "not_an_input" not in after
    assert after.node("a").control_inputs == ["guard"]


def test_keep_option_keeps_named_nodes_and_their_inputs():
    after = check_pass(
        _graph(), "core::dce", feeds={"x": X}, options={"keep": " c:0 "},
        after={"Sigmoid": 1, "Tanh": 1, "NoOp": 2, "Placeholder": 1},
    )
    assert {"c", "b", "orphan"} <= set(after.names) and "not_an_input" not in after


def test_unknown_keep_name_is_a_usage_error():
    with pytest.raises(gs.UsageError, match="names no node 'nope'"):
        run_pass(_graph(), "core::dce", keep="nope")


def test_declared_inputs_are_kept_even_when_unused():
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 3])
    unused = rw.placeholder("unused", F32, [1, 3])
    rw.add_node("Neg", [unused], {"T": F32}, name="dead")
    y = rw.add_node("Relu", [x], {"T": F32}, name="y")
    rw.set_graph_inputs([x, unused])
    rw.set_outputs([y])
    after = check_pass(g, "core::dce", feeds={"x": X, "unused": X},
                       before={"Neg": 1}, after={"Neg": 0, "Placeholder": 2})
    assert "unused" in after


def test_colocation_with_a_removed_node_is_dropped():
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 3])
    rw.add_node("Neg", [x], {"T": F32}, name="gone")
    y = rw.add_node("Relu", [x], {"T": F32, "_class": ["loc:@gone", "loc:@x"]}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    after = check_pass(g, "core::dce", before={"Neg": 1}, after={"Neg": 0})
    assert after.node("y").attr("_class") == ["loc:@x"]
    np.testing.assert_allclose(run_tf(after, {"x": X})[0], np.maximum(X, 0))


def test_nothing_to_do_reports_no_change():
    g = run_pass_copy(_graph())
    check_pass(g, "core::dce", feeds={"x": X}, expect_change=False,
               before={"Relu": 1}, after={"Relu": 1})


def run_pass_copy(g: gs.Graph) -> gs.Graph:
    run_pass(g, "core::dce")
    return g


def test_prune_inputs_drops_inputs_nothing_reads():
    import graphsurgery as gs

    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", gs.DType.float32, [1, 2])
    labels = rw.placeholder("labels_in", gs.DType.float32, [1, 0])
    y = rw.add_node("Relu", [x], {"T": gs.DType.float32}, name="y")
    rw.set_graph_inputs([x, labels])
    rw.set_outputs([y])
    kept = g.copy()
    assert not gs.testing.run_pass(kept, "core::dce").changed
    assert "labels_in" in kept
    assert gs.testing.run_pass(g, "core::dce", prune_inputs=True).changed
    assert g.inputs == [gs.TensorRef("x")] and "labels_in" not in g
