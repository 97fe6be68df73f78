import numpy as np
import pytest

from graphsurgery.testing import check_pass, run_pass, tf_graph

PASS = "core::scale_after_pointwise_conv"


def _pixel_norm_to_rgb(hw=(5, 6), ci=8, co=3, k=1, stride=1, extra_reader=False):
    """Leaky ReLU -> pixel norm -> 1x1 conv (ProGAN's last layer and ToRGB)."""
    rng = np.random.default_rng(ci * 10 + co + k)
    w = rng.standard_normal((k, k, ci, co)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)

    def build(tf, x):
        y = tf.nn.leaky_relu(x, 0.2)
        y = y * tf.math.rsqrt(tf.reduce_mean(tf.square(y), axis=3, keepdims=True) + 1e-8)
        out = {"rgb": tf.nn.conv2d(y, w, stride, "SAME") + b}
        if extra_reader:
            out["y"] = y
        return out

    return tf_graph(build, x=(2, *hw, ci))


@pytest.mark.parametrize("hw", [(5, 6), (4, 4)])
def test_the_pixel_scale_moves_to_the_three_channels(hw):
    g, feeds = _pixel_norm_to_rgb(hw)
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5,
                       before={"Mul": 1, "Conv2D": 1, "AddV2": 2},
                       after={"Mul": 1, "Conv2D": 1, "AddV2": 2, "Rsqrt": 1})
    (mul,) = after.nodes("Mul")
    assert after.shape(mul.output()) == (2, *hw, 3)  # the scale runs over 3 channels, not 8
    assert after.node(mul.data_inputs[0].node).op == "Conv2D"


def test_left_alone_for_wider_outputs_larger_kernels_strides_or_other_readers():
    for kwargs in ({"co": 8}, {"k": 3}, {"stride": 2}, {"extra_reader": True}):
        g, _ = _pixel_norm_to_rgb(**kwargs)
        check_pass(g, PASS, expect_change=False)


def test_left_alone_when_the_scale_is_per_channel():
    w = np.ones((1, 1, 4, 2), np.float32)
    g, _ = tf_graph(lambda tf, x, s: tf.nn.conv2d(x * s, w, 1, "VALID"),
                    x=(1, 3, 3, 4), s=(1, 1, 1, 4))
    check_pass(g, PASS, expect_change=False)


def test_litert_multiplies_the_narrow_output(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from graphsurgery.export import convert_tflite
    from graphsurgery.runners import TFLiteRunner

    g, feeds = _pixel_norm_to_rgb((8, 8), ci=16)
    after = g.copy()
    run_pass(after, PASS)
    ref, got = (TFLiteRunner(convert_tflite(x, tmp_path / f"{i}.tflite").path).run(feeds)[0]
                for i, x in enumerate((g, after)))
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
