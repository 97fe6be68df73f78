import numpy as np
import pytest

from graphsurgery.check import count_flops
from graphsurgery.testing import check_pass, run_pass, tf_graph

PASS = "core::upsample_conv_phases"


def _up_conv(hw, k, factor=2, ci=3, co=5, form="d2s", batch=2, padding="SAME", stride=1):
    """``x`` up-sampled by ``factor`` (StyleGAN's concat + DepthToSpace, or a resize),
    then a ``k x k`` convolution and a ReLU."""
    h, w_ = hw
    kh, kw = k
    w = np.random.default_rng(kh * 10 + kw + h).standard_normal((kh, kw, ci, co))

    def build(tf, x):
        if form == "d2s":
            u = tf.nn.depth_to_space(tf.concat([x] * factor * factor, axis=3), factor)
        else:
            u = tf.compat.v1.image.resize_nearest_neighbor(x, [h * factor, w_ * factor])
        y = tf.nn.conv2d(u, w.astype(np.float32), stride, padding)
        return tf.nn.relu(y)

    return tf_graph(build, x=(batch, h, w_, ci))


@pytest.mark.parametrize(("hw", "k", "factor", "form"), [
    ((4, 4), (3, 3), 2, "d2s"),     # StyleGAN v1 / ProGAN: 3x3 after a 2x up-sampling
    ((5, 7), (3, 3), 2, "d2s"),     # odd sizes: the border phases pad on different sides
    ((5, 6), (3, 3), 2, "resize"),
    ((3, 4), (5, 2), 2, "d2s"),     # a 5-tap and an even 2-tap axis
    ((3, 5), (3, 3), 3, "d2s"),     # 3x up-sampling: 9 phases
    ((1, 1), (3, 3), 2, "resize"),  # a single pixel: every phase reads padding
])
def test_phases_compute_the_convolution_of_the_upsampled_image(hw, k, factor, form):
    g, feeds = _up_conv(hw, k, factor, form=form)
    up = {"d2s": {"DepthToSpace": 1, "ConcatV2": 1}, "resize": {"ResizeNearestNeighbor": 1}}
    after = check_pass(
        g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5,
        before={"Conv2D": 1, **up[form]},
        after={"Conv2D": factor * factor, "DepthToSpace": 1, "ConcatV2": 1,
               "ResizeNearestNeighbor": 0})
    # the convolutions read the low-resolution input, through at most one Pad each
    for conv in after.nodes("Conv2D"):
        src = after.node(conv.data_inputs[0].node)
        assert src.op == "Placeholder" or after.node(src.data_inputs[0].node).op == "Placeholder"


@pytest.mark.parametrize(("hw", "k", "factor", "convs", "slices"), [
    ((4, 4), (3, 3), 2, 1, 1),  # phase 1 reads one row further on: shifted, then cropped
    ((5, 7), (3, 3), 2, 1, 1),
    ((1, 1), (3, 3), 2, 1, 1),
    ((3, 4), (5, 5), 2, 1, 0),  # both phases read rows m-1..m+1: no crop
    ((3, 5), (3, 3), 3, 9, 0),  # 3x: windows of 2 and 1 rows, not one convolution
])
def test_fused_form_is_one_convolution_and_a_crop(hw, k, factor, convs, slices):
    g, feeds = _up_conv(hw, k, factor)
    check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5, options={"form": "fused"},
               after={"Conv2D": convs, "DepthToSpace": 1, "Slice": slices,
                      "ConcatV2": int(convs > 1)})


def test_an_unknown_form_is_a_usage_error():
    from graphsurgery.errors import UsageError
    from graphsurgery.pipeline import Pipeline

    with pytest.raises(UsageError, match="form='tiled' must be one of phases, fused"):
        Pipeline.parse(f"{PASS}(form=tiled)")


def test_flops_drop_to_16_of_36():
    g, _ = _up_conv((8, 8), (3, 3), ci=16, co=8, batch=1)
    before = count_flops(g)["total"]
    run_pass(g, PASS)
    after = count_flops(g)["total"]
    assert before == 2 * 16 * 16 * 9 * 16 * 8
    assert after * 36 == before * 16
    kernels = sorted(g.const_shape(n.data_inputs[1].node)[:2] for n in g.nodes("Conv2D"))
    assert kernels == [(2, 2)] * 4


def test_phase_kernels_sum_the_taps_that_read_one_pixel():
    g, _ = _up_conv((4, 4), (3, 3), ci=1, co=1, batch=1)
    (conv,) = g.nodes("Conv2D")
    w = g.const_value(conv.data_inputs[1])[:, :, 0, 0].astype(np.float64)
    run_pass(g, PASS)
    got = {n.name.rsplit("/", 1)[-1]: g.const_value(n.data_inputs[1])[:, :, 0, 0]
           for n in g.nodes("Conv2D")}
    # output row 2m reads rows m-1 (tap 0) and m (taps 1, 2); row 2m+1 rows m (taps 0, 1)
    # and m+1 (tap 2)
    rows = {0: [[0], [1, 2]], 1: [[0, 1], [2]]}
    for i in (0, 1):
        for j in (0, 1):
            want = [[w[np.ix_(a, b)].sum() for b in rows[j]] for a in rows[i]]
            np.testing.assert_allclose(got[f"phase{i}{j}"], want, rtol=1e-6)


@pytest.mark.parametrize("kwargs", [
    {"padding": "VALID"},
    {"stride": 2},
])
def test_left_alone_unless_same_and_stride_one(kwargs):
    g, _ = _up_conv((4, 4), (3, 3), **kwargs)
    check_pass(g, PASS, expect_change=False)


def test_left_alone_when_the_filter_is_computed_or_copies_differ():
    g, _ = tf_graph(lambda tf, x, w: tf.nn.conv2d(
        tf.nn.depth_to_space(tf.concat([x] * 4, axis=3), 2), w, 1, "SAME"),
        x=(1, 4, 4, 2), w=(3, 3, 2, 2))
    check_pass(g, PASS, expect_change=False)
    k = np.ones((3, 3, 2, 2), np.float32)
    g, _ = tf_graph(lambda tf, x: tf.nn.conv2d(
        tf.nn.depth_to_space(tf.concat([x, x, x, x * 2.0], axis=3), 2), k, 1, "SAME"),
        x=(1, 4, 4, 2))
    check_pass(g, PASS, expect_change=False)


def test_an_upsampling_read_elsewhere_stays():
    k = np.random.default_rng(0).standard_normal((3, 3, 2, 3)).astype(np.float32)

    def build(tf, x):
        u = tf.nn.depth_to_space(tf.concat([x] * 4, axis=3), 2)
        return {"y": tf.nn.conv2d(u, k, 1, "SAME"), "u": u}

    g, feeds = tf_graph(build, x=(1, 5, 5, 2))
    check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5,
               after={"Conv2D": 4, "DepthToSpace": 2})


def test_in_the_stylegan_preset_after_the_layout_pass():
    from graphsurgery.pipeline import Pipeline

    for preset in ("stylegan", "stylegan-to-tflite"):
        ids = Pipeline.preset(preset).pass_ids()
        assert ids.index(PASS) > ids.index("core::to_nhwc")
