"""core::fold_scalings: constant scalings folded, op counts and outputs checked."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import graphsurgery as gs  # noqa: E402
from graphsurgery.testing import check_pass  # noqa: E402

PASS = "core::fold_scalings"
RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 4)).astype(np.float32)


def load(fn, shape=(2, 4), dtype=tf.float32) -> gs.Graph:
    """``out = fn(x)`` with ``x`` a placeholder, built with TF in graph mode."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(dtype, shape, name="x")
        tf.identity(fn(x), name="out")
    return gs.load(g.as_graph_def(), outputs=["out"])


def test_equalised_lr_weight_and_chain():
    w = RNG.standard_normal((4, 4)).astype(np.float32) * 100

    def net(x):
        weight = tf.constant(w, name="weight") * tf.constant(np.float32(0.01), name="coef")
        y = tf.matmul(x, weight, name="dense")
        return y + x * 2.0 * 3.0

    g = load(net)
    after = check_pass(
        g, PASS, feeds={"x": X},
        before={"Mul": 3, "MatMul": 1, "Const": 4},
        after={"Mul": 1, "MatMul": 1, "Const": 2},
        atol=1e-5, rtol=1e-5,
    )
    # the key case: the MatMul reads ONE constant holding w * coef
    weight = after.node("dense").input_node(1)
    assert weight.op == "Const"
    np.testing.assert_array_equal(after.const_value(weight.output()), w * np.float32(0.01))
    assert after.const_value(weight.output()).dtype == np.float32
    (mul,) = after.nodes("Mul")
    assert after.const_value(mul.input_node(1).output()) == 6
    assert after.provenance[weight.name].rule == "const_product"


def test_constant_first_and_long_chains():
    g = load(lambda x: 0.5 * (3.0 * (x * 2.0) * 4.0) * 0.25)
    after = check_pass(g, PASS, feeds={"x": X}, before={"Mul": 5}, after={"Mul": 1})
    (mul,) = after.nodes("Mul")
    assert after.const_value(mul.input_node(1).output()) == pytest.approx(3.0)


def test_division_chains():
    g = load(lambda x: tf.concat([(x / 2.0) / 4.0, (x / 2.0) * 6.0, (x * 6.0) / 2.0], 1))
    after = check_pass(
        g, PASS, feeds={"x": X},
        before={"RealDiv": 4, "Mul": 2},
        after={"RealDiv": 1, "Mul": 2},
        atol=1e-6, rtol=1e-6,
    )
    scales = sorted(
        float(after.const_value(n.input_node(1).output()))
        for n in after.nodes("Mul", "RealDiv")
    )
    assert scales == [3.0, 3.0, 8.0]


def test_mul_by_one():
    g = load(lambda x: tf.nn.relu(x * 1.0) + 1.0 * x / 1.0)
    check_pass(g, PASS, feeds={"x": X}, before={"Mul": 2, "RealDiv": 1},
               after={"Mul": 0, "RealDiv": 0})


def test_mul_by_ones_that_would_broadcast_is_kept():
    ones = np.ones((1, 1, 1), np.float32)
    # x [2, 4] * ones [1, 1, 1] has shape [1, 2, 4]: dropping the Mul would change it
    g = load(lambda x: x * ones)
    check_pass(g, PASS, feeds={"x": X}, before={"Mul": 1}, after={"Mul": 1},
               expect_change=False)
    # with a known shape that the ones do not change, it goes
    g = load(lambda x: x * np.ones((1, 4), np.float32))
    check_pass(g, PASS, feeds={"x": X}, before={"Mul": 1}, after={"Mul": 0})


def test_shared_inner_product_is_not_folded():
    def net(x):
        inner = x * 2.0
        return tf.concat([inner * 3.0, tf.nn.relu(inner)], 1)

    check_pass(load(net), PASS, feeds={"x": X}, before={"Mul": 2}, after={"Mul": 2},
               expect_change=False)


def test_growing_constant_is_not_folded():
    col = np.arange(1, 3, dtype=np.float32).reshape(2, 1)
    row = np.arange(1, 5, dtype=np.float32).reshape(1, 4)
    # (x * col) * row: col*row would be a [2, 4] constant, larger than either
    check_pass(load(lambda x: x * col * row), PASS, feeds={"x": X},
               before={"Mul": 2}, after={"Mul": 2}, expect_change=False)


def test_noise_map_times_channel_weight_is_not_folded():
    """A constant noise map [1, 1, H, W] times a per-channel weight [1, C, 1, 1] would be a
    [1, C, H, W] constant, larger than either: both constants stay."""
    noise = RNG.standard_normal((1, 1, 2, 4)).astype(np.float32)
    weight = np.arange(1, 4, dtype=np.float32).reshape(1, 3, 1, 1)
    check_pass(load(lambda x: x + tf.constant(noise) * tf.constant(weight), shape=(1, 3, 2, 4)),
               PASS, feeds={"x": RNG.standard_normal((1, 3, 2, 4)).astype(np.float32)},
               before={"Mul": 1}, after={"Mul": 1}, expect_change=False)


def test_dtype_is_preserved():
    g = load(lambda x: x * 2.0 * 3.0, dtype=tf.float16)
    after = check_pass(g, PASS, feeds={"x": X.astype(np.float16)}, before={"Mul": 2},
                       after={"Mul": 1}, atol=1e-3, rtol=1e-3)
    (mul,) = after.nodes("Mul")
    k = after.const_value(mul.input_node(1).output())
    assert k.dtype == np.float16 and k == 6
    assert mul.attr("T") == gs.DType.float16


def test_integer_constants_fold():
    g = load(lambda x: x * 3 * 5, dtype=tf.int32)
    check_pass(g, PASS, feeds={"x": np.arange(8, dtype=np.int32).reshape(2, 4)},
               before={"Mul": 2}, after={"Mul": 1})


def test_one_value_const_too_large_to_decode_is_left_alone():
    """A legal one-value Const of shape [32768, 32768] (4 GiB once expanded) times a scalar:
    the rule does not match (the value is never materialised) instead of failing the pass."""
    from graphsurgery.ir import proto

    gd = proto.GraphDef()
    big = gd.node.add(name="big", op="Const")
    big.attr["dtype"].type = 1
    t = big.attr["value"].tensor
    t.dtype = 1
    t.tensor_shape.dim.add().size = 32768
    t.tensor_shape.dim.add().size = 32768
    t.float_val.append(2.0)
    k = gd.node.add(name="k", op="Const")
    k.attr["dtype"].type = 1
    k.attr["value"].tensor.dtype = 1
    k.attr["value"].tensor.float_val.append(3.0)
    m = gd.node.add(name="out", op="Mul", input=["big", "k"])
    m.attr["T"].type = 1
    graph = gs.load(gd, outputs=["out"])
    result = gs.Pipeline.parse(PASS).run(graph)
    assert result.ok
    assert graph.op_counts() == {"Const": 2, "Mul": 1}


def test_explain_says_why_a_chain_is_not_folded():
    from graphsurgery.rules.scalings import DIV_DIV, MUL_ONE

    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    i32, f32 = gs.DType.int32, gs.DType.float32
    x = rw.placeholder("x", i32, [2]).output()
    d1 = rw.add_node("RealDiv", [x, rw.const(np.int32(3), name="c1")], {"T": i32}, name="d1")
    rw.add_node("RealDiv", [d1, rw.const(np.int32(5), name="c2")], {"T": i32}, name="d2")
    y = rw.placeholder("y", f32, [2]).output()
    one = rw.const(np.ones(2, np.float64), name="one", dtype=gs.DType.float64)
    rw.add_node("Mul", [y, one], {"T": f32}, name="m")
    assert DIV_DIV.explain(g, "d2").endswith(
        "the rule's where rejects it: T is int32, not a floating type")
    assert MUL_ONE.explain(g, "m").endswith(
        "the rule's where rejects it: the constant one is float64, T is float32")
