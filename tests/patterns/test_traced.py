"""Traced patterns: plain TF functions traced once and matched structurally."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import graphsurgery as gs  # noqa: E402
from graphsurgery.patterns import (  # noqa: E402
    Rule,
    RuleSet,
    Template,
    Traced,
    trace_function,
    traced,
)
from graphsurgery.testing import run_tf  # noqa: E402


@traced
def lrelu(x):
    return tf.maximum(x, x * 0.2)


@traced
def pixel_norm(x):
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=1, keepdims=True) + 1e-8)


def build(fn, outputs=("out",)) -> gs.Graph:
    """A graph built independently of the patterns: ``fn(z)`` after a MatMul."""
    g = tf.Graph()
    with g.as_default():
        z = tf.compat.v1.placeholder(tf.float32, [2, 4], name="z")
        w = tf.constant(np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4), name="w")
        h = tf.matmul(z, w, name="h")
        tf.identity(fn(h), name="out")
    return gs.load(g.as_graph_def(), outputs=list(outputs))


def test_lrelu_matches_independent_graph():
    g = build(lambda h: tf.maximum(h, h * 0.2, name="act"))
    (m,) = lrelu.find(g)
    assert m.root.name == "act" and m.root.op == "Maximum"
    assert m["x"] == gs.TensorRef("h") and m.nodes == ("mul",)
    assert repr(lrelu.compiled()) == "Maximum($x, Mul($x, Const[0.2]))"


def test_lrelu_near_misses():
    other_const = build(lambda h: tf.maximum(h, h * 0.3, name="act"))
    assert lrelu.find(other_const) == []
    assert lrelu.explain(other_const, "act") == (
        "node 'mul/y': Const value is 0.3, pattern wants 0.2"
    )

    swapped = build(lambda h: tf.maximum(h * 0.2, h, name="act"))
    assert lrelu.find(swapped) == []
    assert lrelu.explain(swapped, "act") == "node 'act': input 1 is MatMul 'h', pattern wants Mul"

    def with_extra_consumer(h):
        scaled = h * 0.2
        return tf.maximum(h, scaled, name="act") + tf.nn.relu(scaled, name="extra")

    extra = build(with_extra_consumer)
    assert lrelu.find(extra) == []
    assert lrelu.explain(extra, "act") == "interior node 'mul' is used outside the match by 'extra'"

    other_x = build(lambda h: tf.maximum(h, tf.nn.relu(h) * 0.2, name="act"))
    assert lrelu.find(other_x) == []
    assert lrelu.explain(other_x, "act") == (
        "node 'mul': input 0: capture 'x' is already 'h', here it would be 'Relu'"
    )


def test_const_any_captures_the_constant():
    g = build(lambda h: tf.maximum(h, h * 0.3, name="act"))
    any_alpha = traced(const_any=True)(lambda x: tf.maximum(x, x * tf.constant(0.2, name="alpha")))
    (m,) = any_alpha.find(g)
    assert m.value("alpha") == pytest.approx(0.3)


def test_pixel_norm():
    g = build(lambda h: h * tf.math.rsqrt(
        tf.reduce_mean(tf.square(h), axis=1, keepdims=True) + 1e-8, name="r"))
    (m,) = pixel_norm.find(g)
    assert m["x"] == gs.TensorRef("h")
    assert sorted(m.nodes) == ["Mean", "Square", "add", "r"]

    no_keepdims = build(lambda h: h * tf.math.rsqrt(
        tf.reduce_mean(tf.square(h), axis=1, keepdims=False)[:, None] + 1e-8))
    mul = next(n.name for n in no_keepdims.nodes("Mul"))
    assert pixel_norm.find(no_keepdims) == []
    assert "input 0 is StridedSlice" in pixel_norm.explain(no_keepdims, mul)

    other_eps = build(lambda h: h * tf.math.rsqrt(
        tf.reduce_mean(tf.square(h), axis=1, keepdims=True) + 1e-6))
    assert pixel_norm.find(other_eps) == []
    assert pixel_norm.explain(other_eps, "mul") == (
        "node 'add/y': Const value is 1e-06, pattern wants 1e-08"
    )


def test_attr_mismatch_is_explained():
    g = build(lambda h: h * tf.math.rsqrt(
        tf.reduce_mean(tf.square(h), axis=1, keepdims=True) + 1e-8))
    keep_false = Traced(
        lambda x: x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=1) + 1e-8)
    )
    assert keep_false.find(g) == []
    assert keep_false.explain(g, "mul") == (
        "node 'Mean': attr keep_dims is True, pattern wants False"
    )


def test_traced_once():
    calls = []

    def f(x):
        calls.append(1)
        return tf.nn.relu(x)

    first = trace_function(f)
    assert trace_function(f) is first and len(calls) == 1
    pat = Traced(f)
    pat.compiled()
    pat.compiled()
    assert len(calls) == 1
    assert first.params == {"x": "x"} and first.root == gs.TensorRef("Relu")


def test_params_dtype_and_defaults():
    def scale(x, alpha=2):
        return x * alpha

    int_pat = Traced(scale, params={"x": "int32"})
    tr = int_pat.trace()
    assert tr.graph.node("x").attr("dtype") == gs.DType.int32
    with pytest.raises(gs.UsageError, match="no parameter 'y'"):
        Traced(scale, params={"y": "int32"}).compiled()


def test_template_replacement_numerically_equal():
    g = build(lambda h: tf.maximum(h, h * 0.2, name="act"))
    feeds = {"z": np.array([[1.0, -2.0, 3.0, -4.0], [0.5, 0.25, -1.0, 2.0]], np.float32)}
    before = run_tf(g, feeds)
    rule = Rule("lrelu", lrelu, Template(lambda x: tf.nn.leaky_relu(x, alpha=0.2)))
    rw = gs.Rewriter(g, "test::lrelu")
    assert RuleSet([rule]).apply(g, rw) == 1
    ops = g.op_counts()
    assert ops["Maximum"] == 0 and ops["Mul"] == 0 and ops["LeakyRelu"] == 1
    (leaky,) = g.nodes("LeakyRelu")
    assert leaky.attr("alpha") == pytest.approx(0.2) and leaky.attr("T") == gs.DType.float32
    assert g.provenance[leaky.name].rule == "lrelu"
    np.testing.assert_allclose(run_tf(g, feeds)[0], before[0], rtol=1e-6)


def test_plain_function_as_rule_pattern():
    g = build(lambda h: tf.maximum(h, h * 0.2, name="act"))
    rule = Rule("lrelu_fn", lrelu.fn, lambda b, m: b.op("LeakyRelu", m["x"], alpha=0.2))
    assert isinstance(rule.pattern, Traced)
    assert rule.match(g, "act") is not None
