"""stylegan::raise_upfirdn2d_ref: the reference upfirdn2d chain (6-D pad, transposes, one
channel Conv2D) -> UpFirDn2D, lowered like the custom op. Op counts before and after,
numerics against numpy and the reference runner, and one canonical lowering for the ref and
custom-op forms of StyleGAN2."""

import graphsurgery.passes.stylegan.lower_fused_bias_act  # noqa: F401
import graphsurgery.passes.stylegan.lower_upfirdn2d  # noqa: F401
import graphsurgery.passes.stylegan.raise_upfirdn2d_ref  # noqa: F401
import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.testing import assert_equivalent, run_pass

from .prep import prepared
from .test_lower_upfirdn2d import K1331, KASYM, np_upfirdn2d, run_reference

PASS = "stylegan::raise_upfirdn2d_ref"


def _rank6_pads(graph):
    return sum(1 for n in graph.nodes("Pad", "PadV2")
               if graph.is_const(n.data_inputs[1])
               and graph.const_value(n.data_inputs[1]).shape == (6, 2))


def _max_rank(graph):
    return max(len(i.shape) for i in graph.infer().values() if i.shape is not None)


def ref_chain_graph(x_shape, k, attrs, layout="NCHW"):
    """The reference upfirdn2d (sgops.upfirdn2d_ref, the original code's structure)."""
    import tensorflow as tf

    from graphsurgery.zoo import sgops

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, x_shape, name="x")
        if layout == "NCHW":
            _, c, h, w = x_shape
            y = sgops.upfirdn2d_ref(tf.reshape(x, [-1, h, w, 1]), k, **attrs)
            y = tf.reshape(y, [-1, c, y.shape[1], y.shape[2]])
        else:
            y = sgops.upfirdn2d_ref(x, k, **attrs)
        tf.identity(y, name="y")
    return gs.load(g.as_graph_def(), outputs=["y"])


CASES = [
    ("up2", "NCHW", (1, 3, 4, 4), K1331 * 4,
     {"upx": 2, "upy": 2, "padx0": 2, "padx1": 1, "pady0": 2, "pady1": 1}),
    ("down2", "NCHW", (1, 5, 8, 8), K1331,
     {"downx": 2, "downy": 2, "padx0": 1, "padx1": 1, "pady0": 1, "pady1": 1}),
    ("crop_asym", "NCHW", (1, 2, 7, 6), KASYM,
     {"upx": 3, "upy": 3, "padx0": -1, "padx1": 2, "pady0": 1, "pady1": -2, "downx": 2,
      "downy": 2}),
    ("nhwc_minor3", "NHWC", (2, 5, 6, 3), KASYM,
     {"upx": 2, "upy": 2, "padx0": 1, "padx1": 2, "pady1": 1}),
]


@pytest.mark.parametrize(("layout", "shape", "k", "attrs"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_standalone_chain(layout, shape, k, attrs):
    g = ref_chain_graph(shape, k, attrs, layout)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if layout == "NCHW":
        n, c, h, w = shape
        want = np_upfirdn2d(x.reshape(-1, h, w, 1), k, **attrs)
        want = want.reshape(n, c, want.shape[1], want.shape[2])
    else:
        want = np_upfirdn2d(x, k, **attrs)
    before = g.copy()
    counts = g.op_counts()
    assert counts["Transpose"] == 2 and counts["Conv2D"] == 1 and _rank6_pads(g) == 1
    assert _max_rank(g) == 6
    # Canonical form first: one UpFirDn2D with the constants read back.
    raised = g.copy()
    run_pass(raised, PASS, lower=False)
    (node,) = raised.nodes("UpFirDn2D")
    full = {"upx": 1, "upy": 1, "downx": 1, "downy": 1, "padx0": 0, "padx1": 0, "pady0": 0,
            "pady1": 0, **attrs}
    assert {key: node.attr(key) for key in full} == full
    np.testing.assert_allclose(raised.const_value(node.data_inputs[1]), k, rtol=1e-6)
    assert raised.op_counts()["Transpose"] == 0 and raised.op_counts()["Conv2D"] == 0
    # Default: lowered at once.
    run_pass(g, PASS)
    after = g.op_counts()
    assert after["UpFirDn2D"] == 0 and after["Transpose"] == 0 and after["Conv2D"] == 0
    assert after["DepthwiseConv2dNative"] == 1
    assert after["DepthToSpace"] == (1 if full["upx"] > 1 else 0)
    assert _rank6_pads(g) == 0 and _max_rank(g) <= 4
    np.testing.assert_allclose(run_reference(before, x), want, atol=1e-5)
    np.testing.assert_allclose(run_reference(raised, x), want, atol=1e-5)
    np.testing.assert_allclose(run_reference(g, x), want, atol=1e-5)


def test_plain_one_channel_conv_is_left_alone():
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2, 1, 8, 8], name="x")
        w = tf.constant(KASYM[:, :, None, None])
        tf.identity(tf.nn.conv2d(x, w, 1, "VALID", data_format="NCHW"), name="y")
    graph = gs.load(g.as_graph_def(), outputs=["y"])
    assert not run_pass(graph, PASS).changed


@pytest.mark.parametrize(("name", "chains", "up2"), [
    ("sg2-tiny", 4, 2),  # skip: 2 up-conv FIRs + 2 image up-samplings
    ("sg2-tiny-orig", 2, 0),
    ("sg2-tiny-resnet", 4, 0),  # 2 up-conv FIRs + 2 resnet skip up-convs
    ("sg2-tiny-nonfused", 4, 2),
])
def test_stylegan2_ref_graphs(name, chains, up2):
    _, g = prepared(name)
    before = g.copy()
    counts = g.op_counts()
    assert _rank6_pads(g) == chains
    run_pass(g, PASS)
    after = g.op_counts()
    assert _rank6_pads(g) == 0 and after["UpFirDn2D"] == 0
    assert after["Transpose"] == counts["Transpose"] - 2 * chains
    assert after["Conv2D"] == counts["Conv2D"] - chains
    assert after["DepthwiseConv2dNative"] == chains and after["DepthToSpace"] == up2
    # No rank-6 tensor is left (the rank-5 ones are the modulated convolutions' weights).
    assert _max_rank(g) <= 5
    if name == "sg2-tiny-nonfused":  # no modulated-conv transposes at all
        assert after["Transpose"] == 0 and _max_rank(g) <= 5
    assert_equivalent(before, g, max_rel=1e-4)


def test_ref_and_cuda_forms_lower_alike():
    """sg2-tiny (ref ops) after raise_upfirdn2d_ref and sg2-tiny-cuda (custom ops) after
    lower_fused_bias_act + lower_upfirdn2d hold the same ops, and the same numbers."""
    _, ref = prepared("sg2-tiny")
    _, cuda = prepared("sg2-tiny-cuda")
    run_pass(ref, PASS)
    run_pass(cuda, "stylegan::lower_fused_bias_act")
    run_pass(cuda, "stylegan::lower_upfirdn2d")
    ops = {"DepthToSpace", "DepthwiseConv2dNative", "Pad", "Reshape", "StridedSlice",
           "Transpose", "Conv2D", "UpFirDn2D", "FusedBiasAct", "LeakyRelu", "AddV2", "Mul"}
    hist_ref = {op: ref.op_counts().get(op, 0) for op in ops}
    hist_cuda = {op: cuda.op_counts().get(op, 0) for op in ops}
    assert hist_ref == hist_cuda
    # Same upfirdn2d filters and pads, in the same order.
    def fir(graph):
        return [(graph.const_value(n.data_inputs[1]).tolist(), n.attr("strides"))
                for n in (graph.node(x) for x in graph.toposort())
                if n.op == "DepthwiseConv2dNative"]

    assert fir(ref) == fir(cuda)
    assert_equivalent(ref, cuda, max_rel=1e-4)
