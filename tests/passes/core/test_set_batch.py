import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.testing import check_pass


def _graph():
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        n = tf.shape(x)[0]
        tf.identity(x + tf.cast(tf.fill(tf.stack([n, 4]), n), tf.float32), name="y")
    return gs.load(g.as_graph_def(), outputs=["y"])


def test_batch_becomes_static_and_outputs_stay_equal():
    g = _graph()
    feeds = {"x": np.arange(4, dtype=np.float32).reshape(1, 4)}
    after = check_pass(g, "core::set_batch", feeds=feeds)
    assert after.static_shape("x") == (1, 4)
    assert g.static_shape("x") == (-1, 4)


def test_no_change_when_already_static():
    g = _graph()
    check_pass(g, "core::set_batch", options={"size": 2})
    g2 = g.copy()
    gs.testing.run_pass(g2, "core::set_batch", size=2)
    assert not gs.testing.run_pass(g2, "core::set_batch", size=2).changed


def test_bad_size():
    with pytest.raises(gs.UsageError, match="size must be at least 1"):
        gs.testing.run_pass(_graph(), "core::set_batch", size=0)
