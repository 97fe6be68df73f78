import numpy as np

import graphsurgery as gs
from graphsurgery.export import convert_tflite
from graphsurgery.testing import check_pass


def _graph(c=32, hw=64):
    import tensorflow as tf
    rng = np.random.default_rng(0)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, hw, hw, c], name="x")
        noise = rng.standard_normal((1, hw, hw, 1)).astype(np.float32)
        bias = rng.standard_normal((1, 1, 1, c)).astype(np.float32)
        small = rng.standard_normal((1, 1, 1, c)).astype(np.float32)
        h = tf.nn.relu(x + noise + bias)
        tf.identity(h + small + bias, name="y")  # both [C]: folding them is fine
    return gs.load(g.as_graph_def(), outputs=["y"])


def test_noise_plus_bias_is_not_left_for_the_converter_to_fold(tmp_path):
    g = _graph()
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 64, 64, 32)).astype(np.float32)}
    after = check_pass(g, "tflite::guard_broadcast_folding", feeds=feeds, atol=0, rtol=0,
                       before={"AddV2": 4, "Sub": 0}, after={"AddV2": 3, "Sub": 1})
    before_size = convert_tflite(g, tmp_path / "before.tflite").size
    after_size = convert_tflite(after, tmp_path / "after.tflite").size
    assert before_size > 64 * 64 * 32 * 4  # the converter materialised noise + bias
    assert after_size < 64 * 64 * 4 * 2


def test_nothing_to_do_on_small_broadcasts():
    g = _graph(c=2, hw=2)
    check_pass(g, "tflite::guard_broadcast_folding", expect_change=False)


def test_constant_outer_product_becomes_a_1x1_conv(tmp_path):
    import tensorflow as tf
    rng = np.random.default_rng(2)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 64, 64, 32], name="x")
        noise = rng.standard_normal((1, 64, 64, 1)).astype(np.float32)
        weight = rng.standard_normal((1, 1, 1, 32)).astype(np.float32)
        tf.identity(tf.nn.relu(x + tf.constant(noise) * tf.constant(weight)), name="y")
    graph = gs.load(g.as_graph_def(), outputs=["y"])
    feeds = {"x": rng.standard_normal((1, 64, 64, 32)).astype(np.float32)}
    after = check_pass(graph, "tflite::guard_broadcast_folding", feeds=feeds, atol=0, rtol=0,
                       before={"Mul": 1, "Conv2D": 0}, after={"Mul": 0, "Conv2D": 1})
    assert convert_tflite(graph, tmp_path / "a.tflite").size > 64 * 64 * 32 * 4
    assert convert_tflite(after, tmp_path / "b.tflite").size < 64 * 64 * 4 * 2
