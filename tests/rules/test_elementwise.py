import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.testing import check_pass

PASS = "core::fuse_elementwise"


def _graph(build):
    tf = pytest.importorskip("tensorflow")
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 8], name="x")
        tf.identity(build(tf, x), name="y")
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 4, 4, 8)).astype(np.float32)}
    return gs.load(g.as_graph_def(), outputs=["y"]), feeds


@pytest.mark.parametrize("order", ["x_first", "scaled_first"])
def test_max_of_x_and_scaled_x_is_leaky_relu(order):
    def build(tf, x):
        return tf.maximum(x, x * 0.2) if order == "x_first" else tf.maximum(0.2 * x, x)

    g, feeds = _graph(build)
    after = check_pass(g, PASS, feeds=feeds, atol=0, rtol=0,
                       before={"Maximum": 1, "Mul": 1}, after={"Maximum": 0, "LeakyRelu": 1})
    assert after.nodes("LeakyRelu")[0].attr("alpha") == pytest.approx(0.2)


def test_max_with_a_factor_above_one_is_not_leaky_relu():
    g, _ = _graph(lambda tf, x: tf.maximum(x, x * 1.5))
    check_pass(g, PASS, expect_change=False)


def test_square_of_a_difference():
    g, feeds = _graph(lambda tf, x: tf.square(x - tf.reduce_mean(x, axis=[1, 2], keepdims=True)))
    check_pass(g, PASS, feeds=feeds, atol=0, rtol=0,
               before={"Square": 1, "Sub": 1}, after={"Square": 0, "Sub": 0,
                                                     "SquaredDifference": 1})


def test_bias_moves_next_to_the_convolution():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 4], name="x")
        noise = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 16], name="noise")
        w = rng.standard_normal((3, 3, 4, 16)).astype(np.float32)
        bias = rng.standard_normal(16).astype(np.float32)
        tf.identity(tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME") + noise + bias), name="y")
    graph = gs.load(g.as_graph_def(), outputs=["y"])
    feeds = {"x": rng.standard_normal((1, 8, 8, 4)).astype(np.float32),
             "noise": rng.standard_normal((1, 8, 8, 16)).astype(np.float32)}
    after = check_pass(graph, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
    conv = after.nodes("Conv2D")[0]
    (reader,) = after.users(conv.name)
    assert reader.op == "AddV2" and any(after.is_const(t) for t in reader.data_inputs)


def test_bias_stays_when_the_other_term_is_constant():
    # x + noise_const + bias is core::guard_broadcast_folding's case: left as it is.
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(2)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 4], name="x")
        w = rng.standard_normal((3, 3, 4, 16)).astype(np.float32)
        noise = rng.standard_normal((1, 8, 8, 16)).astype(np.float32)
        tf.identity(tf.nn.conv2d(x, w, 1, "SAME") + noise + np.ones(16, np.float32),
                    name="y")
    check_pass(gs.load(g.as_graph_def(), outputs=["y"]), PASS, expect_change=False)
