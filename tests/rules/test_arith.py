"""core::simplify_arith: identities with zeros and ones, op counts and outputs checked."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import graphsurgery.rules.arith  # noqa: E402, F401
import tensorflow as tf  # noqa: E402
from graphsurgery.rules.arith import absorbs  # noqa: E402

import graphsurgery as gs  # noqa: E402
from graphsurgery.testing import assert_equivalent, check_pass, run_pass  # noqa: E402

PASS = "core::simplify_arith"
RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 4)).astype(np.float32)
Y = RNG.standard_normal((2, 3, 4)).astype(np.float32)


def load(fn, shape=(2, 3, 4), dtype=tf.float32) -> gs.Graph:
    """``out = fn(x, y)`` with placeholders ``x``, ``y``, built with TF in graph mode."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(dtype, shape, name="x")
        y = tf.compat.v1.placeholder(dtype, shape, name="y")
        tf.identity(fn(x, y), name="out")
    return gs.load(g.as_graph_def(), outputs=["out"])


def zeros(*shape: int) -> tf.Tensor:
    return tf.constant(np.zeros(shape, np.float32))


def ones(*shape: int) -> tf.Tensor:
    return tf.constant(np.ones(shape, np.float32))


def test_add_sub_zero_and_mul_div_one():
    def net(x, y):
        a = tf.add(x, zeros(1, 3, 1))             # x + 0 (broadcast, keeps x's shape)
        b = tf.add(zeros(4), a)                   # 0 + x
        c = tf.subtract(b, zeros())               # x - 0
        d = tf.multiply(ones(3, 1), c)            # 1 * x
        e = tf.math.truediv(d, ones(1, 1, 1))     # x / 1
        f = tf.nn.bias_add(e, np.zeros(4, np.float32))  # BiasAdd(x, 0)
        return tf.subtract(zeros(2, 3, 4), f) + y  # 0 - x -> Neg(x)

    g = load(net)
    after = check_pass(
        g, PASS, feeds={"x": X, "y": Y},
        before={"AddV2": 3, "Sub": 2, "Mul": 1, "RealDiv": 1, "BiasAdd": 1, "Neg": 0},
        after={"AddV2": 1, "Sub": 0, "Mul": 0, "RealDiv": 0, "BiasAdd": 0, "Neg": 1},
        atol=0, rtol=0,
    )
    (neg,) = after.nodes("Neg")
    assert neg.data_inputs[0].node == "x"


def test_broadcasting_zero_or_one_is_kept():
    """Dropping the op would change the output shape: nothing happens."""
    g = load(lambda x, y: tf.add(x, zeros(5, 1, 1, 1)) + y * ones(5, 1, 1, 1))
    check_pass(g, PASS, feeds={"x": X, "y": Y}, before={"AddV2": 2, "Mul": 1},
               after={"AddV2": 2, "Mul": 1}, expect_change=False)


def test_unknown_shape_only_scalar_or_rank_safe():
    # x has an unknown batch: a scalar zero and a [1, 1, 4] one are still provably safe,
    # a [2, 3, 4] zero is not (the batch could be 1 and broadcast to 2)
    g = load(lambda x, y: (x + 0.0) * ones(1, 1, 4) + zeros(2, 3, 4) + y, shape=(None, 3, 4))
    check_pass(g, PASS, feeds={"x": X, "y": Y}, before={"AddV2": 3, "Mul": 1},
               after={"AddV2": 2, "Mul": 0}, atol=0, rtol=0)


def test_zero_products_and_lerps():
    def net(x, y):
        noise = tf.multiply(zeros(1, 3, 4), ones(2, 1, 1) * 0.5)   # constant zeros * w
        a = x + noise * tf.constant(np.float32(0.3))               # x + zeros * w
        lerp0 = a + (y - a) * tf.constant(np.float32(0.0))          # lerp, t = 0 -> a
        lerp1 = lerp0 + (y - lerp0) * tf.constant(np.float32(1.0))  # lerp, t = 1 -> y
        return lerp1 - (x * zeros()) + x                            # - x * 0
    g = load(net)
    after = check_pass(
        g, PASS, feeds={"x": X, "y": Y},
        before={"AddV2": 4, "Sub": 3, "Mul": 6},
        after={"AddV2": 1, "Sub": 0, "Mul": 0},
        atol=1e-6, rtol=1e-6,
    )
    (add,) = after.nodes("AddV2")
    assert sorted(t.node for t in add.data_inputs) == ["x", "y"]


def test_mul_zero_materialises_small_zeros_only():
    def net(x, y):
        return tf.concat([x * zeros(), y], axis=0)
    g = load(net)
    after = check_pass(g, PASS, feeds={"x": X, "y": Y}, before={"Mul": 1, "Const": 2},
                       after={"Mul": 0})
    (cat,) = after.nodes("ConcatV2")
    z = after.const_value(cat.data_inputs[0])
    assert z.shape == (2, 3, 4) and not z.any() and z.dtype == np.float32

    big = load(lambda x, y: tf.concat([x * zeros(), y], 0), shape=(300, 300, 1))
    xb = RNG.standard_normal((300, 300, 1)).astype(np.float32)
    check_pass(big, PASS, feeds={"x": xb, "y": xb}, before={"Mul": 1}, after={"Mul": 1},
               expect_change=False)


def test_integer_and_output_interface():
    g = tf.Graph()
    with g.as_default():
        i = tf.compat.v1.placeholder(tf.int32, (3,), name="i")
        tf.identity(i, name="keep")
        tf.multiply(i, tf.constant(1), name="out")   # a declared output rewritten
    graph = gs.load(g.as_graph_def(), outputs=["out", "keep"])
    after = check_pass(graph, PASS, feeds={"i": np.arange(3, dtype=np.int32)},
                       before={"Mul": 1}, after={"Mul": 0})
    assert [t.node for t in after.outputs] == ["out", "keep"]


def test_absorbs():
    assert absorbs((1, 3, 4), ())
    assert absorbs(None, ())
    assert absorbs((-1, 3, 4), (1, 3, 4))
    assert absorbs((-1, 3, 4), (1, 1))
    assert not absorbs((-1, 3, 4), (2, 3, 4))
    assert not absorbs((3, 4), (1, 3, 4))
    assert not absorbs((1, 3, 4), (2, 1, 1))
    assert not absorbs(None, (1,))
    assert not absorbs((3, 4), None)


def test_linear_v1_lerps_fold_away():
    """sg1-tiny-linear at lod 0: every lerp_clip(a, b, 0) blend reduces to its first term."""
    from tests.passes.stylegan.prep import prepared

    original, g = prepared("sg1-tiny-linear")
    grow = [n.name for n in g.nodes() if "/Grow_lod" in n.name]
    assert len(grow) >= 3  # the blends are still there after the generic preparation
    before = g.op_counts()
    record = run_pass(g, PASS)
    run_pass(g, "core::dce")
    after = g.op_counts()
    assert record.changed
    assert [n.name for n in g.nodes() if "/Grow_lod" in n.name] == []
    # AddV2: the 3 blends, the 8 random_normal `+ 0` of the noise, the biases of the 3
    # lower-resolution ToRGBs (dead once their blend is gone)
    assert before["AddV2"] - after["AddV2"] == 3 + 8 + 3
    assert before["Conv2D"] - after["Conv2D"] == 3  # the lower ToRGBs are dead
    assert before["Sub"] - after["Sub"] == 3
    assert_equivalent(original, g)


def test_inside_v1_cond_branches_stay_dead():
    """x * 0 inside an unfolded tf.cond: the new zeros keep the branch's pivot."""
    from graphsurgery.testing import run_tf
    from graphsurgery.tfcompat import control_flow_v1

    g = tf.Graph()
    with g.as_default(), control_flow_v1():
        x = tf.compat.v1.placeholder(tf.float32, (2, 3, 4), name="x")
        p = tf.compat.v1.placeholder(tf.bool, (), name="p")
        out = tf.compat.v1.cond(p, lambda: x * zeros() + 1.0, lambda: x + zeros(1, 4))
        tf.identity(out, name="out")
    graph = gs.load(g.as_graph_def(), outputs=["out"])
    after = check_pass(graph, PASS, feeds={"x": X, "p": True},
                       before={"Mul": 1, "AddV2": 2, "Switch": 3, "Merge": 1},
                       after={"Mul": 0, "AddV2": 1, "Switch": 2, "Merge": 1})
    (got,) = run_tf(after, {"x": X, "p": False})
    np.testing.assert_array_equal(got, X)
    zero_consts = [n for n in after.nodes("Const") if n.control_inputs]
    assert zero_consts  # the pivots survive on the constants of the true branch
