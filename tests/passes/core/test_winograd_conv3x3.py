import numpy as np
import pytest

from graphsurgery.check import count_flops
from graphsurgery.testing import check_pass, run_pass, tf_graph

PASS = "core::winograd_conv3x3"
# tiny graphs: no thresholds
SMALL = {"min_channels": 1, "min_size_x_channels": 1, "max_pixels_per_channel": 1 << 30}


def _conv(hw, ci=3, co=5, batch=1, tail="none", padding="SAME", stride=1, k=3, seed=0):
    """A ``k x k`` convolution of ``x``, then optionally a bias and a leaky ReLU."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, k, ci, co)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)

    def build(tf, x):
        y = tf.nn.conv2d(x, w, stride, padding)
        if tail in ("bias", "bias_act"):
            y = tf.nn.bias_add(y, b)
        if tail == "add_act":
            y = b + y
        if tail in ("bias_act", "add_act"):
            y = tf.nn.leaky_relu(y, 0.2)
        return y

    return tf_graph(build, x=(batch, *hw, ci))


WINO = {"Conv2D": 16, "DepthwiseConv2dNative": 20, "DepthToSpace": 1, "ConcatV2": 1,
        "AddV2": 12, "Sub": 12}


@pytest.mark.parametrize(("hw", "batch", "crops"), [
    ((4, 6), 1, 0),
    ((5, 7), 1, 1),   # odd: padded to even tiles, then cropped
    ((6, 3), 2, 1),   # odd width only, batch 2
    ((1, 1), 1, 1),
])
def test_winograd_computes_the_convolution(hw, batch, crops):
    g, feeds = _conv(hw, batch=batch)
    check_pass(g, PASS, feeds=feeds, atol=1e-4, rtol=1e-4, options=SMALL,
               before={"Conv2D": 1, "DepthwiseConv2dNative": 0},
               after={**WINO, "StridedSlice": crops})


@pytest.mark.parametrize("tail", ["bias", "bias_act", "add_act"])
def test_bias_after_the_conv_moves_onto_plane_11(tail):
    g, feeds = _conv((6, 5), tail=tail)
    after = check_pass(g, PASS, feeds=feeds, atol=1e-4, rtol=1e-4, options=SMALL,
                       before={"Conv2D": 1},
                       after={**WINO, "BiasAdd": 1})  # no add of the bias is left
    (bias,) = after.nodes("BiasAdd")
    assert bias.data_inputs[0].node.endswith("wino/m11")


def test_many_channels_stay_close():
    g, feeds = _conv((8, 8), ci=64, co=32, tail="bias_act", seed=3)
    check_pass(g, PASS, feeds=feeds, atol=1e-4, rtol=1e-4, options=SMALL,
               after=WINO | {"BiasAdd": 1})


def test_flops_of_the_convolution_drop_to_16_of_36():
    ci, co = 16, 8
    g, _ = _conv((8, 8), ci=ci, co=co)
    before = count_flops(g)
    run_pass(g, PASS, **SMALL)
    after = count_flops(g)
    assert before["total"] == 2 * 64 * 9 * ci * co
    gemm = sum(f for n, f in after["nodes"].items() if "/wino/m" in n)
    assert gemm * 36 == before["total"] * 16
    # the transforms are 4-tap depthwise convolutions: 4 row planes of 7x10 (the 10x10
    # padded input, every row), then 16 planes of 4x4 (stride 2)
    assert after["total"] == gemm + 2 * ci * 4 * (4 * 7 * 10 + 16 * 4 * 4)


@pytest.mark.parametrize("kwargs", [
    {"padding": "VALID"},
    {"stride": 2},
    {"k": 5},
])
def test_left_alone_unless_3x3_same_stride_one(kwargs):
    g, _ = _conv((6, 6), **kwargs)
    check_pass(g, PASS, options=SMALL, expect_change=False)


@pytest.mark.parametrize(("hw", "options", "changed"), [
    ((8, 8), {}, True),
    ((8, 8), {"min_channels": 5}, False),
    ((8, 8), {"min_size_x_channels": 32}, True),   # 8 px x 4 channels
    ((8, 7), {"min_size_x_channels": 32}, False),
    ((8, 8), {"max_pixels_per_channel": 16}, True),  # 64 px / 4 channels
    ((8, 10), {"max_pixels_per_channel": 16}, False),
])
def test_thresholds(hw, options, changed):
    g, _ = _conv(hw, ci=4, co=6)
    check_pass(g, PASS, options={**SMALL, **options}, expect_change=changed)


@pytest.mark.parametrize(("hw", "ci", "co", "changed"), [
    ((32, 32), 128, 128, True),   # narrow, mid-size image
    ((16, 16), 128, 128, False),  # narrow, too small
    ((8, 8), 512, 512, True),     # wide
    ((8, 8), 256, 256, False),    # too small for 256 channels
    ((128, 64), 64, 256, False),  # below min_channels
])
def test_default_thresholds(hw, ci, co, changed):
    g, _ = _conv(hw, ci=ci, co=co)
    check_pass(g, PASS, expect_change=changed)


def test_computed_filters_are_left_alone():
    g, _ = tf_graph(lambda tf, x, w: tf.nn.conv2d(x, w, 1, "SAME"),
                    x=(1, 4, 4, 2), w=(3, 3, 2, 2))
    check_pass(g, PASS, options=SMALL, expect_change=False)


def test_a_conv_output_read_twice_keeps_its_bias_apart():
    w = np.random.default_rng(0).standard_normal((3, 3, 2, 3)).astype(np.float32)

    def build(tf, x):
        y = tf.nn.conv2d(x, w, 1, "SAME")
        return {"y": tf.nn.bias_add(y, np.ones(3, np.float32)), "raw": y}

    g, feeds = tf_graph(build, x=(1, 4, 4, 2))
    check_pass(g, PASS, feeds=feeds, atol=1e-4, rtol=1e-4, options=SMALL,
               after={**WINO, "BiasAdd": 1})


def test_in_the_stylegan_preset_after_the_phase_passes():
    from graphsurgery.pipeline import Pipeline

    for preset in ("stylegan", "stylegan-to-tflite"):
        ids = Pipeline.preset(preset).pass_ids()
        assert ids.index(PASS) > ids.index("core::to_nhwc")
        assert ids.index(PASS) > ids.index("core::bias_into_phases")
    ids = Pipeline.preset("stylegan-to-tflite").pass_ids()
    assert ids.index(PASS) > ids.index("tflite::polyphase_transpose_conv")
