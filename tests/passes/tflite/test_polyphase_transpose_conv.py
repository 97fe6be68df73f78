import numpy as np
import pytest

from graphsurgery.testing import check_pass, run_pass, tf_graph

PASS = "tflite::polyphase_transpose_conv"


def _tconv(hw, k, stride, padding, out_hw, ci=3, co=5, batch=2):
    w = np.random.default_rng(k * 100 + stride * 10 + hw).standard_normal((k, k, co, ci))

    def build(tf, x):
        y = tf.nn.conv2d_transpose(x, w.astype(np.float32), [batch, out_hw, out_hw, co],
                                   stride, padding)
        return tf.nn.relu(y)

    return tf_graph(build, x=(batch, hw, hw, ci))


@pytest.mark.parametrize(
    "hw,k,stride,padding,out_hw,convs,crop",
    [
        (5, 3, 2, "VALID", 11, 4, 1),  # StyleGAN2's up-sampling conv: odd output, cropped
        (6, 4, 2, "SAME", 12, 4, 0),   # StyleGAN's fused up-scale: 4x4 taps, SAME
        (5, 3, 2, "SAME", 10, 4, 0),
        (4, 5, 3, "VALID", 14, 9, 1),
        (4, 2, 2, "VALID", 8, 4, 0),
        (5, 3, 2, "SAME", 9, 4, 1),    # an odd SAME size
    ],
)
def test_phases_compute_the_transposed_convolution(hw, k, stride, padding, out_hw, convs, crop):
    g, feeds = _tconv(hw, k, stride, padding, out_hw)
    check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5,
               before={"Conv2DBackpropInput": 1, "Conv2D": 0, "DepthToSpace": 0},
               after={"Conv2DBackpropInput": 0, "Conv2D": convs, "DepthToSpace": 1,
                      "ConcatV2": 1, "Slice": crop})


def test_the_multiplies_are_the_taps_of_the_kernel():
    # 3x3 stride 2: phases of 2x2, 2x1, 1x2 and 1x1 taps, 9 in all, as many as the kernel.
    g, _ = _tconv(5, 3, 2, "VALID", 11)
    run_pass(g, PASS)
    taps = sorted(int(np.prod(g.const_shape(n.data_inputs[1].node)[:2]))
                  for n in g.nodes("Conv2D"))
    assert taps == [1, 2, 2, 4]


def test_left_alone_when_a_phase_has_no_tap_or_the_stride_is_one():
    g, _ = _tconv(4, 1, 2, "VALID", 7)  # kernel 1 < stride 2: odd phases are all zero
    check_pass(g, PASS, expect_change=False)
    g, _ = _tconv(4, 3, 1, "VALID", 6)
    check_pass(g, PASS, expect_change=False)


def test_left_alone_when_the_filter_is_computed():
    g, _ = tf_graph(lambda tf, x, w: tf.nn.conv2d_transpose(x, w, [1, 9, 9, 2], 2, "VALID"),
                    x=(1, 4, 4, 2), w=(3, 3, 2, 2))
    check_pass(g, PASS, expect_change=False)


def test_litert_runs_the_phases_like_the_transposed_convolution(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from graphsurgery.export import audit_tflite, convert_tflite
    from graphsurgery.runners import TFLiteRunner

    g, feeds = _tconv(8, 3, 2, "VALID", 17, ci=4, co=6, batch=1)
    after = g.copy()
    run_pass(after, PASS)
    models = [convert_tflite(x, tmp_path / f"{i}.tflite").path for i, x in enumerate((g, after))]
    assert audit_tflite(models[0], run=False, analyzer=False).ops.get("TRANSPOSE_CONV") == 1
    audit = audit_tflite(models[1], run=False, analyzer=False)
    assert "TRANSPOSE_CONV" not in audit.ops and audit.ops["CONV_2D"] == 4
    assert audit.clean, audit.violations
    ref, got = (TFLiteRunner(m).run(feeds)[0] for m in models)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def _tconv_then_fir(hw, k, padding, out_hw, pads, ci=3, co=4):
    """Transposed conv -> multiply by a per-channel vector -> zero Pad -> depthwise conv:
    StyleGAN2's up-sampling conv, demodulation and FIR filter."""
    rng = np.random.default_rng(hw + k)
    w = rng.standard_normal((k, k, co, ci)).astype(np.float32)
    fir = rng.standard_normal((4, 4, co, 1)).astype(np.float32)

    def build(tf, x, d):
        y = tf.nn.conv2d_transpose(x, w, [1, out_hw, out_hw, co], 2, padding)
        y = tf.pad(y * tf.reshape(d, [1, 1, 1, co]), [[0, 0], *pads, [0, 0]])
        return tf.nn.depthwise_conv2d(y, fir, [1, 1, 1, 1], "VALID")

    return tf_graph(build, x=(1, hw, hw, ci), d=(co,))


@pytest.mark.parametrize(("padding", "out_hw", "pads", "slices"), [
    ("VALID", 11, ([1, 1], [1, 1]), 0),  # the cropped zeros are what the Pad adds: no Slice
    ("VALID", 11, ([2, 0], [2, 0]), 1),  # nothing padded after: the crop stays
    ("SAME", 9, ([1, 1], [1, 1]), 1),    # odd SAME: the dropped row holds real values
])
def test_a_following_pad_takes_the_crop(padding, out_hw, pads, slices):
    g, feeds = _tconv_then_fir(5, 3, padding, out_hw, pads)
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5,
                       after={"Conv2DBackpropInput": 0, "Slice": slices})
    if not slices:
        (fir_pad,) = [n for n in after.nodes("Pad") if "/phase" not in n.name]
        assert after.const_value(fir_pad.data_inputs[1]).tolist() == [
            [0, 0], [1, 0], [1, 0], [0, 0]]


@pytest.mark.parametrize(
    "hw,k,stride,padding,out_hw,fused,crop",
    [
        (6, 4, 2, "SAME", 12, True, 1),   # ProGAN's and StyleGAN's fused up-scale: 2x2 taps
        (5, 4, 2, "SAME", 10, True, 1),   # odd input
        (5, 4, 2, "SAME", 9, True, 1),    # odd output: the crop drops one more row
        (4, 6, 3, "SAME", 12, True, 1),
        (4, 4, 2, "VALID", 10, True, 0),  # every phase at the same offset: no crop
        (5, 3, 2, "VALID", 11, False, 1),  # 2 and 1 taps: stays phases
    ],
)
def test_fused_form_is_one_convolution_and_a_crop(hw, k, stride, padding, out_hw, fused, crop):
    g, feeds = _tconv(hw, k, stride, padding, out_hw)
    after = ({"Conv2DBackpropInput": 0, "Conv2D": 1, "ConcatV2": 0, "DepthToSpace": 1,
              "Slice": crop, "Pad": 1} if fused else
             {"Conv2DBackpropInput": 0, "Conv2D": stride * stride, "ConcatV2": 1})
    check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5, options={"form": "fused"},
               before={"Conv2DBackpropInput": 1, "Conv2D": 0}, after=after)


def _tconv_bias(hw, out_hw, padding="SAME", k=4, ci=4, co=3):
    """Transposed conv (stride 2) -> + per-channel bias -> leaky ReLU (ProGAN's up-conv)."""
    rng = np.random.default_rng(hw * 10 + out_hw)
    w = rng.standard_normal((k, k, co, ci)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)

    def build(tf, x):
        y = tf.nn.conv2d_transpose(x, w, [2, out_hw, out_hw, co], 2, padding)
        return tf.nn.leaky_relu(y + b, 0.2)

    return tf_graph(build, x=(2, hw, hw, ci))


@pytest.mark.parametrize("hw,out_hw,padding", [
    (6, 12, "SAME"), (5, 10, "SAME"), (5, 9, "SAME"), (4, 10, "VALID"), (7, 14, "SAME")])
def test_winograd_form_is_nine_products_per_tile(hw, out_hw, padding):
    g, feeds = _tconv_bias(hw, out_hw, padding)
    after = check_pass(g, PASS, feeds=feeds, atol=1e-4, rtol=1e-4,
                       options={"form": "winograd", "min_channels": 1, "min_size": 1},
                       before={"Conv2DBackpropInput": 1, "AddV2": 1},
                       after={"Conv2DBackpropInput": 0, "Conv2D": 9,
                              "DepthwiseConv2dNative": 12, "AddV2": 10, "BiasAdd": 1,
                              "DepthToSpace": 2, "Slice": 1})
    convs = list(after.nodes("Conv2D"))
    assert {after.const_shape(c.data_inputs[1].node) for c in convs} == {(1, 1, 4, 12)}


def test_winograd_form_falls_back_to_phases_below_its_thresholds():
    g, feeds = _tconv_bias(6, 12)
    check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5, options={"form": "winograd"},
               after={"Conv2DBackpropInput": 0, "Conv2D": 4, "DepthwiseConv2dNative": 0})


def test_litert_runs_the_winograd_form_like_the_transposed_convolution(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from graphsurgery.export import audit_tflite, convert_tflite
    from graphsurgery.runners import TFLiteRunner

    g, feeds = _tconv_bias(6, 12)
    after = g.copy()
    run_pass(after, PASS, form="winograd", min_channels=1, min_size=1)
    models = [convert_tflite(x, tmp_path / f"{i}.tflite").path for i, x in enumerate((g, after))]
    audit = audit_tflite(models[1], run=False, analyzer=False)
    assert audit.clean, audit.violations
    assert "TRANSPOSE_CONV" not in audit.ops and "ADD" in audit.ops
    assert audit.ops["CONV_2D"] == 9 and audit.ops["DEPTHWISE_CONV_2D"] == 12
    ref, got = (TFLiteRunner(m).run(feeds)[0] for m in models)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
