import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.testing import check_pass, run_pass

PASS = "core::fold_affine_chains"


def _big_ops(graph, shape):
    """Element-wise ops whose output has the activation's (big) shape."""
    ops = ("Mul", "AddV2", "Add", "Sub", "BiasAdd")
    return sum(1 for n in graph.nodes(*ops) if graph.shape(n.output()) == shape)


def _instance_norm_and_style(c=16, hw=8):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, hw, hw, c], name="x")
        style = tf.compat.v1.placeholder(tf.float32, [1, 2 * c], name="style")
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        d = x - mean
        var = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=[1, 2], keepdims=True)
        y = d * tf.math.rsqrt(var + 1e-8)
        s = tf.reshape(style[:, :c], [1, 1, 1, c]) + 1.0
        b = tf.reshape(style[:, c:], [1, 1, 1, c])
        tf.identity(tf.nn.relu(y * s + b), name="y")
    feeds = {"x": rng.standard_normal((1, hw, hw, c)).astype(np.float32) * 3 + 1,
             "style": rng.standard_normal((1, 2 * c)).astype(np.float32)}
    return gs.load(g.as_graph_def(), outputs=["y"]), feeds


def test_instance_norm_then_style_is_one_multiply_and_one_add():
    g, feeds = _instance_norm_and_style()
    big = (1, 8, 8, 16)
    assert _big_ops(g, big) == 4  # Sub, Mul, Mul, AddV2
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
    assert _big_ops(after, big) == 2
    assert [n.op for n in after.nodes() if after.shape(n.output()) == big].count("Mul") == 1


def test_a_shared_gain_goes_into_each_readers_scale():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 16], name="x")
        s1 = tf.compat.v1.placeholder(tf.float32, [1, 16], name="s1")
        s2 = tf.compat.v1.placeholder(tf.float32, [1, 16], name="s2")
        h = tf.nn.leaky_relu(x, 0.2) * np.float32(np.sqrt(2))
        tf.identity(h * s1, name="a")
        tf.identity(h * s2, name="b")
    graph = gs.load(g.as_graph_def(), outputs=["a", "b"])
    feeds = {k: rng.standard_normal(v).astype(np.float32)
             for k, v in (("x", (1, 8, 8, 16)), ("s1", (1, 16)), ("s2", (1, 16)))}
    after = check_pass(graph, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
    assert _big_ops(graph, (1, 8, 8, 16)) == 3
    assert _big_ops(after, (1, 8, 8, 16)) == 2


def test_a_noise_map_and_a_bias_are_not_merged_into_a_big_tensor():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(2)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 32], name="x")
        d = tf.compat.v1.placeholder(tf.float32, [1, 1, 1, 32], name="d")
        noise = rng.standard_normal((1, 8, 8, 1)).astype(np.float32)
        bias = rng.standard_normal((1, 1, 1, 32)).astype(np.float32)
        tf.identity(tf.nn.relu(x * d + noise + bias), name="y")
    graph = gs.load(g.as_graph_def(), outputs=["y"])
    check_pass(graph, PASS, expect_change=False)


def test_left_alone_when_a_middle_result_has_another_reader():
    tf = pytest.importorskip("tensorflow")
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 16], name="x")
        s = tf.compat.v1.placeholder(tf.float32, [1, 1, 1, 16], name="s")
        h = x * s
        tf.identity(h + 1.0, name="y")
        tf.identity(tf.nn.relu(h), name="z")  # h is needed as is
    graph = gs.load(g.as_graph_def(), outputs=["y", "z"])
    check_pass(graph, PASS, expect_change=False)


def test_subtracting_from_a_small_tensor():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2, 4, 4, 16], name="x")
        s = tf.compat.v1.placeholder(tf.float32, [1, 1, 1, 16], name="s")
        tf.identity((s - x * s) * 2.0 + 1.0, name="y")
    graph = gs.load(g.as_graph_def(), outputs=["y"])
    feeds = {"x": rng.standard_normal((2, 4, 4, 16)).astype(np.float32),
             "s": rng.standard_normal((1, 1, 1, 16)).astype(np.float32)}
    after = check_pass(graph, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
    assert _big_ops(after, (2, 4, 4, 16)) == 2


def test_instance_norm_chain_after_fuse_elementwise():
    # StyleGAN's own form: square of the centred tensor, which then has two readers.
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(4)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 16], name="x")
        d = x - tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        y = d * tf.math.rsqrt(tf.reduce_mean(tf.square(d), axis=[1, 2], keepdims=True) + 1e-8)
        z = y * 3.0 + 0.5
        tf.identity(tf.maximum(z, z * 0.2), name="y")
    graph = gs.load(g.as_graph_def(), outputs=["y"])
    feeds = {"x": rng.standard_normal((1, 8, 8, 16)).astype(np.float32)}
    big = (1, 8, 8, 16)
    alone = graph.copy()
    run_pass(alone, PASS)  # d has two readers (Square, Mul): the chain starts after it
    work = check_pass(graph, "core::fuse_elementwise", feeds=feeds, atol=0, rtol=0,
                      after={"Square": 0, "SquaredDifference": 1, "LeakyRelu": 1})
    work = check_pass(work, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
    assert _big_ops(alone, big) == 4  # Sub; Mul, AddV2 for d * r * 3 + 0.5; Mul by 0.2
    assert _big_ops(work, big) == 2  # Mul and AddV2 for the whole chain
