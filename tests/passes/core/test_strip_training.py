"""Tests of core::strip_training."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery.ir import proto
from graphsurgery.testing import check_pass, run_pass, run_tf
from graphsurgery.tfcompat import control_flow_v1

v1 = tf.compat.v1
F32 = gs.DType.float32
W = np.array([1.5, 2.0], np.float32)
XS = [np.array([1.0, 2.0], np.float32), np.array([-1.0, 0.5], np.float32)]


@contextlib.contextmanager
def _quiet_v1_control_flow():
    """v1 Switch/Merge control flow and no convert_variables_to_constants deprecation noise."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with control_flow_v1():
            yield
    finally:
        logger.setLevel(level)


def _freeze(build, keep: list[str]) -> tf.compat.v1.GraphDef:
    with _quiet_v1_control_flow():
        g = tf.Graph()
        with g.as_default():
            build()
            init = v1.global_variables_initializer()
        with v1.Session(graph=g) as sess:
            sess.run(init)
            return v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), keep)


def _training_leftovers() -> None:
    """out = x * w + (step - 1 if x[0] > 0 else step) + (step + 1), the way a frozen
    training graph computes it: through Assign, AssignAdd, AssignSub and RefSwitch."""
    x = v1.placeholder(tf.float32, [2], name="x")
    w = v1.get_variable("w", initializer=W, use_resource=False)
    lod = v1.get_variable("lod", initializer=0.0, use_resource=False, trainable=False)
    step = v1.get_variable("step", initializer=3.0, use_resource=False, trainable=False)
    set_lod = v1.assign(lod, 0.0, name="set_lod")
    inc = v1.assign_add(step, 1.0, name="inc")
    with tf.control_dependencies([set_lod, inc]):
        y = x * w
    # AssignSub of a variable inside a v1 cond reads it through a RefSwitch.
    z = v1.cond(x[0] > 0, lambda: v1.assign_sub(step, 1.0), lambda: tf.identity(step._ref()))
    tf.identity(y + z + inc, name="out")


def _expected(x: np.ndarray) -> np.ndarray:
    return x * W + (2.0 if x[0] > 0 else 3.0) + 4.0


def test_frozen_training_graph_imports_after_stripping():
    graph = gs.load(_freeze(_training_leftovers, ["out"]), inputs=["x"], outputs=["out"])
    with pytest.raises(ValueError, match="float_ref"):
        run_tf(graph, {"x": XS[0]})
    after = check_pass(
        graph, "core::strip_training",
        before={"Assign": 1, "AssignAdd": 1, "AssignSub": 1, "RefSwitch": 2, "Switch": 1},
        after={"Assign": 0, "AssignAdd": 0, "AssignSub": 0, "RefSwitch": 0, "Switch": 3},
    )
    assert "set_lod" not in after and "lod" not in after
    # The used updates became the values they returned.
    assert after.node("inc").op == "AddV2" and after.node("cond/AssignSub").op == "Sub"
    assert not any(n.control_inputs for n in after.nodes("Mul"))
    for x in XS:
        np.testing.assert_allclose(run_tf(after, {"x": x})[0], _expected(x), rtol=1e-6)


def _saver_and_resource_variable() -> None:
    x = v1.placeholder(tf.float32, [2], name="x")
    w = v1.get_variable("w", initializer=W, use_resource=False)
    r = v1.get_variable("r", initializer=[0.5, 0.25], use_resource=True)
    r.assign([1.0, 1.0], name="r_up")
    ready = tf.cast(v1.is_variable_initialized(w), tf.float32)
    tf.identity(x * w + r.read_value() * ready, name="out")
    v1.train.Saver()


def test_checkpoint_io_resource_assigns_and_init_checks_go():
    keep = ["out", "r_up", "save/control_dependency", "save/restore_all"]
    graph = gs.load(_freeze(_saver_and_resource_variable, keep), inputs=["x"], outputs=["out"])
    with pytest.raises(ValueError, match="incompatible with expected (float_ref|resource)"):
        run_tf(graph, {"x": XS[0]})
    after = check_pass(
        graph, "core::strip_training",
        before={"SaveV2": 1, "RestoreV2": 1, "Assign": 1, "AssignVariableOp": 2,
                "IsVariableInitialized": 1, "NoOp": 1},
        after={"SaveV2": 0, "RestoreV2": 0, "Assign": 0, "AssignVariableOp": 0,
               "IsVariableInitialized": 0, "NoOp": 0, "PlaceholderWithDefault": 0},
    )
    assert not [n for n in after.names if n.startswith("save/")]
    for x in XS:
        np.testing.assert_allclose(run_tf(after, {"x": x})[0], x * W + [0.5, 0.25])


def test_ref_dtypes_in_attributes_become_base_dtypes():
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [2])
    nd = proto.NodeDef(name="y", op="Identity", input=["x"])
    nd.attr["T"].type = int(F32) + 100  # float_ref
    nd.attr["_output_types"].list.type.extend([int(F32) + 100, int(gs.DType.int32)])
    rw.replace_node_def(nd)
    rw.set_graph_inputs([x])
    rw.set_outputs(["y"])
    after = check_pass(g, "core::strip_training", before={"Identity": 1}, after={"Identity": 1})
    assert after.node("y").attr("T") == F32 and after.node("y").proto.attr["T"].type == 1
    assert list(after.node("y").proto.attr["_output_types"].list.type) == [1, 3]
    np.testing.assert_allclose(run_tf(after, {"x": W})[0], W)


def test_unfrozen_variable_is_a_usage_error_naming_it():
    with _quiet_v1_control_flow():
        g = tf.Graph()
        with g.as_default():
            x = v1.placeholder(tf.float32, [2], name="x")
            w = v1.get_variable("w", initializer=W, use_resource=False)
            tf.identity(x * w, name="out")
    graph = gs.load(g, inputs=["x"], outputs=["out"])
    with pytest.raises(gs.UsageError, match="node 'w/read' still uses variable 'w'"):
        run_pass(graph, "core::strip_training")


def test_nothing_to_do_reports_no_change():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [2], name="x")
        tf.identity(x * tf.constant(W), name="out")
    graph = gs.load(g, inputs=["x"], outputs=["out"])
    check_pass(graph, "core::strip_training", feeds={"x": XS[0]}, expect_change=False,
               before={"Mul": 1}, after={"Mul": 1})
