"""Tests of core::fold_switch_merge."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery.testing import check_pass, run_pass, run_tf
from graphsurgery.tfcompat import control_flow_v1

v1 = tf.compat.v1
F32 = gs.DType.float32
X = np.array([1.0, -2.0], np.float32)
COND_PLUMBING = ("switch_t", "switch_f", "pred_id", "Switch", "Merge")


def _load(build, inputs: tuple[str, ...] = ("x",)) -> gs.Graph:
    with control_flow_v1():
        g = tf.Graph()
        with g.as_default():
            x = v1.placeholder(tf.float32, [2], name="x")
            tf.identity(build(x), name="out")
    return gs.load(g, inputs=list(inputs), outputs=["out"])


def _branch_nodes(graph: gs.Graph, *tags: str) -> set[str]:
    """Tags (the last name component of branch ops) present in ``graph``."""
    return {t for t in tags for n in graph.names if n.rsplit("/", 1)[-1] == t}


def _assert_no_plumbing(graph: gs.Graph) -> None:
    left = [n for n in graph.names if any(p in n.rsplit("/", 1)[-1] for p in COND_PLUMBING)]
    assert not left, left
    assert not any(n.control_inputs for n in graph), "control inputs left behind"


@pytest.mark.parametrize("outer,inner", [(True, True), (True, False), (False, True)])
def test_nested_conds_with_const_predicates_fold_fully(outer, inner):
    def build(x):
        def taken_outer():
            return v1.cond(tf.constant(inner), lambda: tf.multiply(x, 3.0, name="tt"),
                           lambda: tf.subtract(x, 1.0, name="tf"))

        return v1.cond(tf.constant(outer), taken_outer, lambda: tf.add(x, 2.0, name="ff"))

    graph = _load(build)
    after = check_pass(graph, "core::fold_switch_merge", feeds={"x": X},
                       before={"Merge": 2}, after={"Switch": 0, "Merge": 0})
    taken = "ff" if not outer else ("tt" if inner else "tf")
    assert _branch_nodes(after, "tt", "tf", "ff") == {taken}
    _assert_no_plumbing(after)
    assert len(after) == 4  # x, the branch constant, the branch op, out


@pytest.mark.parametrize("lod", [0.0, 0.7, 2.0])
def test_lod_comparisons_fold_like_progressive_growing(lod):
    """StyleGAN's recursive structure: cond(lod > 1, low, cond(lod < 0.5, high, blend)),
    where the blend reads lod inside the branch (through its own Switch)."""

    def build(x):
        lod_in = tf.constant(lod, name="lod")

        def blend():
            return tf.add(x * (lod_in - 0.5), 1.0, name="blend")

        def grow():
            return v1.cond(lod_in < 0.5, lambda: tf.multiply(x, 4.0, name="high"), blend)

        return v1.cond(tf.greater(lod_in, 1.0), lambda: tf.add(x, 10.0, name="low"), grow)

    graph = _load(build)
    after = check_pass(graph, "core::fold_switch_merge", feeds={"x": X},
                       before={"Greater": 1, "Less": 1, "Merge": 2},
                       after={"Switch": 0, "Merge": 0, "Greater": 0, "Less": 0})
    taken = "low" if lod > 1.0 else ("high" if lod < 0.5 else "blend")
    assert _branch_nodes(after, "low", "high", "blend") == {taken}
    assert ("lod" in after) == (taken == "blend")
    _assert_no_plumbing(after)


@pytest.mark.parametrize("outer", [True, False])
def test_runtime_predicates_inside_are_kept(outer):
    def build(x):
        p = v1.placeholder(tf.bool, [], name="p")

        def taken_outer():
            return v1.cond(p, lambda: tf.multiply(x, 3.0, name="tt"),
                           lambda: tf.subtract(x, 1.0, name="tf"))

        return v1.cond(tf.constant(outer), taken_outer, lambda: tf.add(x, 2.0, name="ff"))

    graph = _load(build, inputs=("x", "p"))
    after = check_pass(graph, "core::fold_switch_merge", feeds={"x": X, "p": True},
                       before={"Merge": 2}, after={"Merge": 1 if outer else 0})
    assert after.op_counts()["Switch"] == (3 if outer else 0)
    assert _branch_nodes(after, "tt", "tf", "ff") == ({"tt", "tf"} if outer else {"ff"})
    for p in (True, False):
        feeds = {"x": X, "p": p}
        np.testing.assert_allclose(run_tf(after, feeds)[0], run_tf(graph, feeds)[0])


def test_control_dependencies_inside_the_taken_branch_survive():
    def build(x):
        def checked():
            check = tf.raw_ops.Assert(condition=tf.reduce_all(x < 100.0), data=[x], name="check")
            with tf.control_dependencies([check]):
                return tf.multiply(x, 2.0, name="tt")

        return v1.cond(tf.constant(True), checked, lambda: tf.add(x, 2.0, name="ff"))

    after = check_pass(_load(build), "core::fold_switch_merge", feeds={"x": X},
                       before={"Assert": 1}, after={"Switch": 0, "Merge": 0, "Assert": 1})
    check = after.nodes("Assert")[0].name
    tt = after.node("out").input_node(0)
    assert tt.name.endswith("tt") and tt.input_node(1).control_inputs == [check]


def _manual_graph(pred: bool) -> gs.Graph:
    """Switch(x, Const pred) -> Merge(Relu(s:1), Neg(s:0)); out = m:0 * Cast(m:1); plus a
    Const with a control dependency on the Switch itself."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [2])
    p = rw.const(np.array(pred), name="p")
    sw = rw.add_node("Switch", [x, p], {"T": F32}, name="sw")
    t = rw.add_node("Relu", [sw.output(1)], {"T": F32}, name="t")
    f = rw.add_node("Neg", [sw.output(0)], {"T": F32}, name="f")
    m = rw.add_node("Merge", [t, f], {"T": F32, "N": 2}, name="m")
    idx = rw.add_node("Cast", [m.output(1)], {"SrcT": gs.DType.int32, "DstT": F32}, name="idx")
    late = rw.const(np.float32(3.0), name="late")
    rw.add_control_input(late, sw)
    s1 = rw.add_node("AddV2", [m, idx], {"T": F32}, name="s1")
    y = rw.add_node("AddV2", [s1, late], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    g.provenance.clear()
    return g


@pytest.mark.parametrize("pred", [True, False])
def test_merge_value_index_becomes_a_constant(pred):
    after = check_pass(_manual_graph(pred), "core::fold_switch_merge", feeds={"x": X},
                       before={"Switch": 1, "Merge": 1},
                       after={"Switch": 0, "Merge": 0, "Relu": int(pred), "Neg": int(not pred)})
    index = after.node("idx").input_node(0)
    assert index.op == "Const" and index.attr("dtype") == gs.DType.int32
    assert int(after.const_value(index.name)) == (0 if pred else 1)
    assert after.node("late").control_inputs == ["x"]  # ^sw -> what the Switch read


def test_declared_output_on_the_untaken_branch_fails():
    graph = _manual_graph(True)
    graph.outputs = [gs.TensorRef("f")]
    with pytest.raises(gs.PassFailure, match="declared output f:0"):
        run_pass(graph, "core::fold_switch_merge")


def test_runtime_predicate_reports_no_change():
    def build(x):
        p = v1.placeholder(tf.bool, [], name="p")
        return v1.cond(p, lambda: x * 3.0, lambda: x - 1.0)

    check_pass(_load(build, inputs=("x", "p")), "core::fold_switch_merge",
               feeds={"x": X, "p": False}, expect_change=False,
               before={"Switch": 3, "Merge": 1}, after={"Switch": 3, "Merge": 1})


@pytest.mark.parametrize("use_index", [False, True])
def test_merge_with_several_live_inputs_drops_its_dead_ones(use_index):
    """Merge(Neg(dead), Relu(s2:0), Abs(s2:1)) where s2 switches on a run-time predicate."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [2])
    p = rw.placeholder("p", gs.DType.bool, [])
    s1 = rw.add_node("Switch", [x, rw.const(np.array(True), name="c")], {"T": F32}, name="s1")
    s2 = rw.add_node("Switch", [x, p], {"T": F32}, name="s2")
    ins = [
        rw.add_node("Neg", [s1.output(0)], {"T": F32}, name="dead"),
        rw.add_node("Relu", [s2.output(0)], {"T": F32}, name="a"),
        rw.add_node("Abs", [s2.output(1)], {"T": F32}, name="b"),
    ]
    m = rw.add_node("Merge", ins, {"T": F32, "N": 3}, name="m")
    y = m
    if use_index:
        idx = rw.add_node("Cast", [m.output(1)], {"SrcT": gs.DType.int32, "DstT": F32})
        y = rw.add_node("AddV2", [m, idx], {"T": F32}, name="y")
    rw.set_graph_inputs([x, p])
    rw.set_outputs([rw.add_node("Identity", [y], {"T": F32}, name="out")])
    # With the value index used, the dead input must stay (its index is observable), and
    # with it the Switch feeding it: nothing can change.
    after = check_pass(g, "core::fold_switch_merge", feeds={"x": X, "p": True},
                       before={"Merge": 1, "Switch": 2}, expect_change=not use_index,
                       after={"Merge": 1, "Switch": 1 + use_index, "Neg": int(use_index)})
    assert after.node("m").attr("N") == (3 if use_index else 2)
    feeds = {"x": X, "p": False}
    np.testing.assert_allclose(run_tf(after, feeds)[0], run_tf(g, feeds)[0])


@pytest.mark.parametrize("pred", [True, False])
def test_a_folded_merge_declared_as_output_keeps_its_name(pred):
    """Callers fetch ``cond/Merge``; folding the cond made the output ``cond/mul``."""
    with control_flow_v1():
        g = tf.Graph()
        with g.as_default():
            x = v1.placeholder(tf.float32, [2], name="x")
            out = v1.cond(tf.constant(pred), lambda: x * 2.0, lambda: x - 1.0, name="cond")
    graph = gs.load(g, inputs=["x"], outputs=[out.name])
    assert graph.outputs == [gs.TensorRef("cond/Merge")]
    after = check_pass(graph, "core::fold_switch_merge", feeds={"x": X},
                       before={"Merge": 1}, after={"Merge": 0, "Switch": 0})
    assert after.outputs == [gs.TensorRef("cond/Merge")]
    np.testing.assert_array_equal(run_tf(after, {"x": X}, ["cond/Merge"])[0],
                                  X * 2 if pred else X - 1)


def test_predicates_are_computed_as_tensorflow_computes_them():
    """TensorFlow flushes denormals: ``1e-40 * 1.0 > 0`` is False there, True in numpy,
    and the pass folded the cond to the branch TensorFlow never takes."""
    def build(x):
        tiny = tf.multiply(tf.constant(np.float32(1e-40)), tf.constant(np.float32(1.0)))
        return v1.cond(tf.greater(tiny, tf.constant(np.float32(0))),
                       lambda: x * 2.0, lambda: x - 1.0)

    graph = _load(build)
    after = check_pass(graph, "core::fold_switch_merge", feeds={"x": X},
                       before={"Merge": 1}, after={"Merge": 0})
    np.testing.assert_array_equal(run_tf(after, {"x": X})[0], X - 1)
