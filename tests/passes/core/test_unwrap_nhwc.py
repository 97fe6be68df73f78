"""core::unwrap_nhwc: NHWC ops between NCHW<->NHWC transposes become NCHW ops."""

from __future__ import annotations

import graphsurgery.passes.core.unwrap_nhwc  # noqa: F401
import numpy as np
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery.testing import assert_equivalent, run_pass

PASS = "core::unwrap_nhwc"
v1 = tf.compat.v1
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _w(rng: np.random.Generator, *shape: int) -> object:
    return tf.constant((rng.standard_normal(shape) * 0.3).astype(np.float32))


def wrapped(shared: bool = False) -> gs.Graph:
    """NCHW x -> [NHWC conv (stride 2), NHWC BiasAdd, NHWC transposed conv] each between
    transposes, as a TF2 port runs them on CPU."""
    rng = np.random.default_rng(0)
    g = tf.Graph()
    outputs = ["out"]
    with g.as_default():
        x = v1.placeholder(tf.float32, [1, 4, 8, 8], name="x")
        t = tf.transpose(x, TO_NHWC)
        y = tf.nn.conv2d(t, _w(rng, 3, 3, 4, 6), [1, 2, 2, 1], "SAME", data_format="NHWC")
        if shared:
            tf.identity(y, name="nhwc_out")
            outputs.append("nhwc_out")
        x = tf.nn.relu(tf.transpose(y, TO_NCHW))
        x = tf.transpose(tf.nn.bias_add(tf.transpose(x, TO_NHWC), _w(rng, 6)), TO_NCHW)
        up = tf.nn.conv2d_transpose(tf.transpose(x, TO_NHWC), _w(rng, 3, 3, 5, 6),
                                    tf.constant([1, 9, 9, 5]), [1, 2, 2, 1], "VALID")
        tf.identity(tf.transpose(up, TO_NCHW) * 2.0, name="out")
    return gs.load(g, inputs=["x"], outputs=outputs)


def test_wrapped_ops_become_nchw_and_transposes_go():
    graph = wrapped()
    before = graph.copy()
    assert graph.op_counts()["Transpose"] == 6
    record = run_pass(graph, PASS)
    counts = graph.op_counts()
    assert record.changed and counts.get("Transpose", 0) == 0
    for op in ("Conv2D", "BiasAdd", "Conv2DBackpropInput"):
        (node,) = graph.nodes(op)
        assert node.attr("data_format") == "NCHW", op
    assert graph.nodes("Conv2D")[0].attr("strides") == [1, 1, 2, 2]
    sizes = graph.nodes("Conv2DBackpropInput")[0].data_inputs[0]
    assert list(graph.const_value(sizes)) == [1, 5, 9, 9]
    assert_equivalent(before, graph, max_rel=1e-5)  # NCHW now: through the reference runner


def test_op_whose_nhwc_output_is_used_elsewhere_is_left_alone():
    graph = wrapped(shared=True)
    before = graph.copy()
    run_pass(graph, PASS)
    assert graph.nodes("Conv2D")[0].attr("data_format") == "NHWC"
    assert graph.op_counts()["Transpose"] == 2  # the conv's pair stays
    assert_equivalent(before, graph, max_rel=1e-5)
