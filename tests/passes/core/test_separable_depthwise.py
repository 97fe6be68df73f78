import itertools

import numpy as np
import pytest
from graphsurgery.passes.core.separable_depthwise import rank1_factors

from graphsurgery.testing import check_pass, tf_graph

PASS = "core::separable_depthwise"


def _fir(c):
    """StyleGAN2's [1, 3, 3, 1] FIR kernel (times the up-sampling gain 4) on ``c`` channels."""
    k = np.array([1.0, 3.0, 3.0, 1.0])
    k2 = np.outer(k, k) / 16.0
    return np.repeat(k2[:, :, None, None], c, axis=2).astype(np.float32)


def _dw(kernel, padding="VALID", strides=(1, 1), hw=(9, 11), batch=1):
    c = kernel.shape[2]

    def build(tf, x):
        y = tf.nn.depthwise_conv2d(x, kernel, [1, *strides, 1], padding)
        return tf.nn.relu(y)

    return tf_graph(build, x=(batch, *hw, c))


def test_fir_filter_becomes_rows_then_columns():
    g, feeds = _dw(_fir(5))
    after = check_pass(g, PASS, feeds=feeds, atol=1e-6, rtol=1e-6,
                       before={"DepthwiseConv2dNative": 1},
                       after={"DepthwiseConv2dNative": 2})
    shapes = sorted(after.const_shape(n.data_inputs[1].node)
                    for n in after.nodes("DepthwiseConv2dNative"))
    assert shapes == [(1, 4, 5, 1), (4, 1, 5, 1)]


@pytest.mark.parametrize(("kh", "kw", "padding"),
                         list(itertools.product((2, 4, 5), (4, 5), ("VALID", "SAME"))))
def test_every_size_and_padding(kh, kw, padding):
    """Per-channel rank-1 kernels (a different one per channel, a zero channel too)."""
    rng = np.random.default_rng(kh * 10 + kw)
    u = rng.standard_normal((kh, 4))
    v = rng.standard_normal((kw, 4))
    u[:, 2] = 0.0
    kernel = np.einsum("ic,jc->ijc", u, v)[:, :, :, None].astype(np.float32)
    g, feeds = _dw(kernel, padding, batch=2)
    check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5, options={"min_taps": 8},
               after={"DepthwiseConv2dNative": 2})


def test_small_and_non_separable_kernels_are_left_alone():
    blur = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0  # 3x3: under min_taps
    g, _ = _dw(np.repeat(blur[:, :, None, None], 3, axis=2).astype(np.float32))
    check_pass(g, PASS, expect_change=False, after={"DepthwiseConv2dNative": 1})
    full = np.random.default_rng(0).standard_normal((4, 4, 3, 1)).astype(np.float32)  # rank 4
    g, _ = _dw(full)
    check_pass(g, PASS, expect_change=False, after={"DepthwiseConv2dNative": 1})
    g, _ = _dw(_fir(3), strides=(2, 2))  # strided: the 1-D halves would need unequal strides
    check_pass(g, PASS, expect_change=False, after={"DepthwiseConv2dNative": 1})


def test_rank1_factors():
    k = _fir(3)[:, :, :, 0]
    u, v = rank1_factors(k)
    np.testing.assert_allclose(np.einsum("ic,jc->ijc", u, v), k, rtol=1e-7)
    k[0, 0, 1] += 1e-3
    assert rank1_factors(k) is None
