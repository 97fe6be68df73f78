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


@pytest.mark.parametrize("noise_shape", [(1, 8, 8, 16), (1, 8, 8, 1)])
def test_bias_moves_in_front_of_a_constant_noise_map(noise_shape):
    """conv + noise_const + bias: the bias (the smaller constant) moves next to the conv
    and the two constants never meet in one op (the converter would fold them into one
    [1,H,W,C] constant). A noise map subtracted (its strength folded negative) too."""
    noise = _RNG.standard_normal(noise_shape).astype(np.float32)
    for build in (lambda tf, x: tf.nn.conv2d(x, _W, 1, "SAME") + noise + _BIAS,
                  lambda tf, x: tf.nn.conv2d(x, _W, 1, "SAME") - noise + _BIAS):
        g, feeds = tf_graph(build, x=(1, 8, 8, 4))
        after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
        (reader,) = after.users(after.nodes("Conv2D")[0].name)
        assert reader.op == "AddV2"
        assert after.const_shape(reader.data_inputs[1].node) == (16,)
        (outer,) = after.users(reader.name)
        assert outer.op in ("AddV2", "Sub")
        assert after.const_shape(outer.data_inputs[1].node) == noise_shape


def test_two_equal_sized_constants_stay_put():
    """Neither constant is the smaller one: nothing moves (and nothing swaps back and
    forth between rounds)."""
    other = _RNG.standard_normal((16,)).astype(np.float32)
    g, _ = tf_graph(lambda tf, x: tf.nn.conv2d(x, _W, 1, "SAME") + other + _BIAS,
                    x=(1, 8, 8, 4))
    check_pass(g, PASS, expect_change=False)


def test_reshape_to_its_own_shape_goes_and_the_bias_then_moves():
    """StyleGAN2 reshapes the FIR filter's output to the shape it already has; without
    that Reshape the bias can move next to the (depthwise) convolution."""
    fir = np.ones((4, 4, 16, 1), np.float32) / 16.0
    g, feeds = tf_graph(
        lambda tf, x, noise: tf.reshape(
            tf.nn.depthwise_conv2d(tf.nn.conv2d(x, _W, 1, "SAME"), fir, [1, 1, 1, 1], "SAME"),
            [1, 8, 8, 16]) + noise + _BIAS,
        x=(1, 8, 8, 4), noise=(1, 8, 8, 1))
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5,
                       before={"Reshape": 1}, after={"Reshape": 0})
    (reader,) = after.users(after.nodes("DepthwiseConv2dNative")[0].name)
    assert reader.op == "AddV2" and after.is_const(reader.data_inputs[1])


def test_explain_says_why_a_bias_stays_put():
    from graphsurgery.rules.elementwise import BIAS_FIRST

    big = _RNG.standard_normal((8, 8, 16)).astype(np.float32)
    g, _ = tf_graph(lambda tf, x, noise: tf.nn.conv2d(x, _W, 1, "SAME") + noise + big,
                    x=(1, 8, 8, 4), noise=(1, 8, 8, 1))
    outer = g.consumers(g.nodes("AddV2")[0].output())[0][0]
    assert BIAS_FIRST.explain(g, outer.name).endswith(
        "where rejects it: the constant c [8, 8, 16] is over 1/16 of the output [1, 8, 8, 16]")
