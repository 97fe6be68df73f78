import numpy as np

from graphsurgery.testing import check_pass, run_pass, tf_graph

PASS = "core::fold_affine_chains"
X = (1, 8, 8, 16)


def _big_ops(graph, shape=X):
    """Element-wise ops whose output has the activation's (big) shape."""
    ops = ("Mul", "AddV2", "Add", "Sub", "BiasAdd")
    return sum(1 for n in graph.nodes(*ops) if graph.shape(n.output()) == shape)


def _instance_norm_and_style(tf, x, style):
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    var = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=[1, 2], keepdims=True)
    y = (x - mean) * tf.math.rsqrt(var + 1e-8)
    s = tf.reshape(style[:, :16], [1, 1, 1, 16]) + 1.0
    return tf.nn.relu(y * s + tf.reshape(style[:, 16:], [1, 1, 1, 16]))


def test_instance_norm_then_style_is_one_multiply_and_one_add():
    g, feeds = tf_graph(_instance_norm_and_style, x=X, style=(1, 32))
    assert _big_ops(g) == 4  # Sub, Mul, Mul, AddV2
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
    assert _big_ops(after) == 2
    assert [n.op for n in after.nodes() if after.shape(n.output()) == X].count("Mul") == 1


def test_a_shared_gain_goes_into_each_readers_scale():
    def build(tf, x, s1, s2):
        h = tf.nn.leaky_relu(x, 0.2) * np.float32(np.sqrt(2))
        return {"a": h * s1, "b": h * s2}

    g, feeds = tf_graph(build, x=X, s1=(1, 16), s2=(1, 16))
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
    assert (_big_ops(g), _big_ops(after)) == (3, 2)


def test_a_noise_map_and_a_bias_are_not_merged_into_a_big_tensor():
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((1, 8, 8, 1)).astype(np.float32)
    bias = rng.standard_normal((1, 1, 1, 32)).astype(np.float32)
    g, _ = tf_graph(lambda tf, x, d: tf.nn.relu(x * d + noise + bias),
                    x=(1, 8, 8, 32), d=(1, 1, 1, 32))
    check_pass(g, PASS, expect_change=False)


def test_left_alone_when_a_middle_result_has_another_reader():
    def build(tf, x, s):
        h = x * s
        return {"y": h + 1.0, "z": tf.nn.relu(h)}  # h is needed as is

    g, _ = tf_graph(build, x=X, s=(1, 1, 1, 16))
    check_pass(g, PASS, expect_change=False)


def test_subtracting_from_a_small_tensor():
    g, feeds = tf_graph(lambda tf, x, s: (s - x * s) * 2.0 + 1.0, x=(2, 4, 4, 16),
                        s=(1, 1, 1, 16))
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
    assert _big_ops(after, (2, 4, 4, 16)) == 2


def test_instance_norm_chain_after_fuse_elementwise():
    # StyleGAN's own form: square of the centred tensor, which then has two readers.
    def build(tf, x):
        d = x - tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        y = d * tf.math.rsqrt(tf.reduce_mean(tf.square(d), axis=[1, 2], keepdims=True) + 1e-8)
        z = y * 3.0 + 0.5
        return tf.maximum(z, z * 0.2)

    g, feeds = tf_graph(build, x=X)
    alone = g.copy()
    run_pass(alone, PASS)  # d has two readers (Square, Mul): the chain starts after it
    work = check_pass(g, "core::fuse_elementwise", feeds=feeds, atol=0, rtol=0,
                      after={"Square": 0, "SquaredDifference": 1, "LeakyRelu": 1})
    work = check_pass(work, PASS, feeds=feeds, atol=1e-5, rtol=1e-5)
    assert _big_ops(alone) == 4  # Sub; Mul, AddV2 for d * r * 3 + 0.5; Mul by 0.2
    assert _big_ops(work) == 2  # Mul and AddV2 for the whole chain
