"""core::upcast_float16: mixed-precision graphs computed in float32."""

from __future__ import annotations

import graphsurgery.passes.core.upcast_float16  # noqa: F401
import numpy as np
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery import zoo
from graphsurgery.driver import FLOAT16_TOLERANCE, computes_in_float16
from graphsurgery.ir.dtypes import DType
from graphsurgery.metrics import compare
from graphsurgery.runners import ReferenceRunner
from graphsurgery.testing import check_pass, random_feeds, run_pass, run_tf

PASS = "core::upcast_float16"
v1 = tf.compat.v1
X = np.random.default_rng(0).standard_normal([2, 64]).astype(np.float32) * 3


def mixed_graph() -> gs.Graph:
    """float32 -> half -> * gain, clip_by_value(-c, c) in half -> float32 (ADA's layer tail)."""
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [2, 64], name="x")
        h = tf.cast(tf.matmul(x, tf.constant(np.eye(64, dtype=np.float32) * 1.7)), tf.float16)
        h = tf.nn.leaky_relu(h, alpha=0.2) * np.sqrt(2)
        h = tf.clip_by_value(h, -3.0, 3.0)
        tf.identity(tf.cast(h, tf.float32) + 0.1, name="out")
    return gs.load(g, inputs=["x"], outputs=["out"])


def test_casts_removed_constants_and_types_widened():
    graph = mixed_graph()
    assert computes_in_float16(graph)
    after = check_pass(graph, PASS, before={"Cast": 2, "Minimum": 1, "Maximum": 1},
                       after={"Cast": 0, "Minimum": 1, "Maximum": 1},
                       feeds={"x": X}, atol=4e-3, rtol=2e-3)
    assert not computes_in_float16(after)
    bound = after.node("out").input_node(0).input_node(0)  # clip_by_value: Maximum
    assert bound.op == "Maximum" and bound.attr("T") == DType.float32
    c = after.node(bound.data_inputs[1].node)
    assert c.op == "Const" and c.attr("dtype") == DType.float32
    # what the float32 graph computes: the original's maths with its float16 constants
    # (sqrt(2) rounded to half), in float32 arithmetic
    gain = np.float32(np.float16(np.sqrt(2)))
    y = X * np.float32(1.7)
    want = np.clip(np.where(y > 0, y, y * np.float32(0.2)) * gain, -3, 3) + np.float32(0.1)
    (got,) = run_tf(after, {"x": X})
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    (orig,) = run_tf(graph, {"x": X})
    assert np.abs(orig - want).max() > 1e-4  # the float16 original was less exact


def test_half_inputs_and_outputs_keep_their_dtype():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float16, [4], name="x")
        tf.identity(tf.abs(x) * np.float16(0.5), name="out")
    graph = gs.load(g, inputs=["x"], outputs=["out"])
    feeds = {"x": np.array([1, -2, 3, -4], np.float16)}
    after = check_pass(graph, PASS, before={"Cast": 0}, after={"Cast": 2}, feeds=feeds)
    assert after.dtype_hint(after.inputs[0]) == DType.float16
    assert [str(t) for t in after.outputs] == ["out:0"]
    out = after.node("out")  # the cast back to half took the output's name
    assert out.op == "Cast" and out.attr("DstT") == DType.float16
    assert after.node("Abs").attr("T") == DType.float32


def test_float32_graph_is_unchanged():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [4], name="x")
        tf.identity(tf.cast(tf.cast(x, tf.int32), tf.float32), name="out")
    graph = gs.load(g, inputs=["x"], outputs=["out"])
    check_pass(graph, PASS, before={"Cast": 2}, after={"Cast": 2}, expect_change=False,
               feeds={"x": np.array([1.5, -2.5, 3, 4], np.float32)})


def _reference(graph: gs.Graph, feeds: dict) -> np.ndarray:
    with ReferenceRunner(graph, noise="seeded", seed=0) as ref:
        return ref.run(feeds)[0]


def test_stylegan2_ada_tiny_against_its_float16_original_and_float32_twin():
    original = zoo.load("ada-tiny")
    before = original.op_counts()
    graph = original.copy()
    record = run_pass(graph, PASS)
    after = graph.op_counts()
    assert record.changed and before["Cast"] == 29 and after.get("Cast", 0) == 0
    assert before["Minimum"] == after["Minimum"] == 8
    assert not computes_in_float16(graph) and computes_in_float16(original)
    feeds = random_feeds(original, seed=1)
    out = _reference(graph, feeds)
    # vs the float16 original: equal to float16's precision (about 70 dB)
    cmp = compare(_reference(original, feeds), out)
    assert 60 <= cmp.psnr < 90 and cmp.rel_max_abs <= FLOAT16_TOLERANCE, cmp
    # vs the same weights built in float32 (num_fp16_res=0, no clamp, no guards): closer
    # than the float16 original is; what differs are the original's constants rounded to
    # half (the sqrt(2) gains), which the rewrite keeps
    twin = _reference(zoo.load("ada-tiny-fp32"), feeds)
    assert compare(twin, out).psnr >= cmp.psnr + 10
