import numpy as np

import graphsurgery as gs
from graphsurgery.testing import check_pass, run_pass


def _graph():
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3, 4, 4], name="x")
        h = tf.nn.relu(x)
        noise_shape = tf.stack([tf.shape(h)[0], 1, tf.shape(h)[2], tf.shape(h)[3]])
        z = tf.zeros(noise_shape) + tf.cast(tf.size(h) + tf.rank(h), tf.float32)
        tf.identity(h + z, name="y")
    return gs.load(g.as_graph_def(), outputs=["y"])


def test_shapes_fold_once_the_batch_is_known():
    g = _graph()
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)}
    assert not run_pass(g.copy(), "core::fold_shapes").changed  # batch unknown: nothing
    run_pass(g, "core::set_batch")
    after = check_pass(g, "core::fold_shapes", feeds=feeds,
                       before={"Shape": 3, "Size": 1},
                       after={"Shape": 0, "Size": 0})
    run_pass(after, "core::fold_constants")
    run_pass(after, "core::dce")
    assert after.op_counts().get("Pack", 0) == 0  # the noise shape became a constant
