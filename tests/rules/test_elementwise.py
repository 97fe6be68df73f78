import numpy as np
import pytest

from graphsurgery.testing import check_pass, tf_graph

PASS = "core::fuse_elementwise"
X = (1, 4, 4, 8)


@pytest.mark.parametrize("order", ["x_first", "scaled_first"])
def test_max_of_x_and_scaled_x_is_leaky_relu(order):
    def build(tf, x):
        return tf.maximum(x, x * 0.2) if order == "x_first" else tf.maximum(0.2 * x, x)

    g, feeds = tf_graph(build, x=X)
    after = check_pass(g, PASS, feeds=feeds, atol=0, rtol=0,
                       before={"Maximum": 1, "Mul": 1}, after={"Maximum": 0, "LeakyRelu": 1})
    assert after.nodes("LeakyRelu")[0].attr("alpha") == pytest.approx(0.2)


def test_max_with_a_factor_above_one_is_not_leaky_relu():
    g, _ = tf_graph(lambda tf, x: tf.maximum(x, x * 1.5), x=X)
    check_pass(g, PASS, expect_change=False)


def test_square_of_a_difference():
    g, feeds = tf_graph(
        lambda tf, x: tf.square(x - tf.reduce_mean(x, axis=[1, 2], keepdims=True)), x=X)
    check_pass(g, PASS, feeds=feeds, atol=0, rtol=0, before={"Square": 1, "Sub": 1},
               after={"Square": 0, "Sub": 0, "SquaredDifference": 1})


_RNG = np.random.default_rng(1)
_W = _RNG.standard_normal((3, 3, 4, 16)).astype(np.float32)
_BIAS = _RNG.standard_normal(16).astype(np.float32)


def test_bias_moves_next_to_the_convolution():
    g, feeds = tf_graph(
        lambda tf, x, noise: tf.nn.relu(tf.nn.conv2d(x, _W, 1, "SAME") + noise + _BIAS),
        x=(1, 8, 8, 4), noise=(1, 8, 8, 16))
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
    (reader,) = after.users(after.nodes("Conv2D")[0].name)
    assert reader.op == "AddV2" and any(after.is_const(t) for t in reader.data_inputs)


def test_bias_stays_when_the_other_term_is_constant():
    # x + noise_const + bias is core::guard_broadcast_folding's case: left as it is.
    noise = _RNG.standard_normal((1, 8, 8, 16)).astype(np.float32)
    g, _ = tf_graph(lambda tf, x: tf.nn.conv2d(x, _W, 1, "SAME") + noise + _BIAS,
                    x=(1, 8, 8, 4))
    check_pass(g, PASS, expect_change=False)
