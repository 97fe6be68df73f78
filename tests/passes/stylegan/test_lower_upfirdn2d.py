"""stylegan::lower_upfirdn2d: UpFirDn2D -> Pad / DepthToSpace / DepthwiseConv2dNative.

Op counts before and after, numerics against an independent numpy upfirdn2d and against the
reference runner (which evaluates the custom op by sgops' reference maths)."""

import graphsurgery.passes.stylegan.lower_upfirdn2d  # noqa: F401
import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.runners import ReferenceRunner
from graphsurgery.testing import assert_equivalent, run_pass

from .prep import prepared_and_run

PASS = "stylegan::lower_upfirdn2d"
F32 = gs.DType.float32
I32 = gs.DType.int32
K1331 = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64
# An asymmetric kernel: a wrong flip or a shifted pad shows up at once.
KASYM = np.arange(1, 13, dtype=np.float32).reshape(3, 4) / 78


def np_upfirdn2d(x, k, upx=1, upy=1, downx=1, downy=1, padx0=0, padx1=0, pady0=0, pady1=0):
    """upfirdn2d of ``x`` [major, H, W, minor] in plain numpy (true convolution with k)."""
    m, h, w, c = x.shape
    y = np.zeros((m, h * upy, w * upx, c), np.float64)
    y[:, ::upy, ::upx, :] = x
    y = np.pad(y, [(0, 0), (max(pady0, 0), max(pady1, 0)), (max(padx0, 0), max(padx1, 0)),
                   (0, 0)])
    y = y[:, max(-pady0, 0):y.shape[1] - max(-pady1, 0),
          max(-padx0, 0):y.shape[2] - max(-padx1, 0), :]
    kh, kw = k.shape
    oh, ow = y.shape[1] - kh + 1, y.shape[2] - kw + 1
    out = np.zeros((m, oh, ow, c))
    for i in range(kh):
        for j in range(kw):
            out += y[:, i:i + oh, j:j + ow, :] * k[kh - 1 - i, kw - 1 - j]
    return out[:, ::downy, ::downx, :].astype(np.float32)


def out_size(size, k, up, down, p0, p1):
    return (size * up + p0 + p1 - k) // down + 1


def upfirdn_graph(x_shape, k, attrs, layout="NCHW"):
    """``x -> [Reshape [-1,H,W,1]] -> UpFirDn2D -> [Reshape [-1,C,H',W']] -> y``."""
    a = {"upx": 1, "upy": 1, "downx": 1, "downy": 1, "padx0": 0, "padx1": 0, "pady0": 0,
         "pady1": 0, **attrs}
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g)
    x = rw.placeholder("x", F32, x_shape)
    if layout == "NCHW":
        _, c, h, w = x_shape
        shape = rw.const(np.array([-1, h, w, 1], np.int32), name="to_major")
        t = rw.add_node("Reshape", [x, shape], {"T": F32, "Tshape": I32}, name="r").output()
    else:
        _, h, w, c = x_shape
        t = x.output()
    kc = rw.const(np.asarray(k, np.float32), name="k")
    u = rw.add_node("UpFirDn2D", [t, kc], {"T": F32, **a}, name="upfirdn").output()
    oh = out_size(h, k.shape[0], a["upy"], a["downy"], a["pady0"], a["pady1"])
    ow = out_size(w, k.shape[1], a["upx"], a["downx"], a["padx0"], a["padx1"])
    if layout == "NCHW":
        shape = rw.const(np.array([-1, c, oh, ow], np.int32), name="to_nchw")
        u = rw.add_node("Reshape", [u, shape], {"T": F32, "Tshape": I32}, name="y").output()
    rw.set_graph_inputs([x.output()])
    rw.set_outputs([u])
    return g, a


def run_reference(graph, x):
    with ReferenceRunner(graph) as r:
        return r.run({"x": x})[0]


def expected(x, k, a, layout):
    if layout == "NCHW":
        n, c, h, w = x.shape
        y = np_upfirdn2d(x.reshape(-1, h, w, 1), k, **a)
        return y.reshape(n, c, y.shape[1], y.shape[2])
    return np_upfirdn2d(x, k, **a)


CASES = [
    # id, layout, x shape, kernel, attrs, ops expected after
    ("up2", "NCHW", (1, 3, 4, 4), K1331 * 4,
     {"upx": 2, "upy": 2, "padx0": 2, "padx1": 1, "pady0": 2, "pady1": 1},
     {"DepthToSpace": 1, "Pad": 2, "DepthwiseConv2dNative": 1, "StridedSlice": 0}),
    ("down2", "NCHW", (1, 5, 8, 8), K1331,
     {"downx": 2, "downy": 2, "padx0": 1, "padx1": 1, "pady0": 1, "pady1": 1},
     {"DepthToSpace": 0, "Pad": 1, "DepthwiseConv2dNative": 1, "StridedSlice": 0}),
    ("crop_asym", "NCHW", (1, 2, 7, 6), KASYM,
     {"upx": 3, "upy": 3, "padx0": -1, "padx1": 2, "pady0": 1, "pady1": -2, "downx": 2,
      "downy": 2},
     {"DepthToSpace": 1, "Pad": 2, "DepthwiseConv2dNative": 1, "StridedSlice": 1}),
    ("nhwc_minor3", "NHWC", (2, 5, 6, 3), KASYM,
     {"upx": 2, "upy": 2, "padx0": 1, "padx1": 2, "pady0": 0, "pady1": 1},
     {"DepthToSpace": 1, "Pad": 2, "DepthwiseConv2dNative": 1, "Reshape": 0}),
    ("unequal_factors", "NCHW", (1, 2, 5, 4), KASYM,
     {"upx": 2, "upy": 1, "downx": 1, "downy": 2, "padx0": 1, "padx1": 1},
     {"Conv2DBackpropInput": 1, "DepthwiseConv2dNative": 1, "StridedSlice": 1}),
]


@pytest.mark.parametrize(("layout", "shape", "k", "attrs", "after"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_standalone_matches_numpy(layout, shape, k, attrs, after):
    g, a = upfirdn_graph(shape, k, attrs, layout)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want = expected(x, k, a, layout)
    before = g.copy()
    assert g.op_counts()["UpFirDn2D"] == 1
    assert g.op_counts()["Reshape"] == (2 if layout == "NCHW" else 0)
    assert run_pass(g, PASS).changed
    counts = g.op_counts()
    assert counts["UpFirDn2D"] == 0 and counts["Transpose"] == 0
    for op, n in after.items():
        assert counts.get(op, 0) == n, (op, dict(counts))
    if layout == "NCHW":  # the ops run on the NCHW tensor; only the declared output's
        # reshape (now a no-op [1,C,H',W'] -> [1,C,H',W']) keeps its name
        (r,) = g.nodes("Reshape")
        assert r.name == "y" and r.input_node(0).op in ("DepthwiseConv2dNative", "StridedSlice")
        assert all(n.attr("data_format") == "NCHW"
                   for n in g.nodes("DepthwiseConv2dNative", "DepthToSpace"))
    assert max(len(i.shape) for i in g.infer().values() if i.shape is not None) <= 4
    np.testing.assert_allclose(run_reference(before, x), want, atol=1e-5)
    np.testing.assert_allclose(run_reference(g, x), want, atol=1e-5)


def test_emitted_sequence_and_filter():
    """Zero insertion by a channel pad + DepthToSpace; the FIR filter is the flipped kernel,
    tiled over the channels, depth multiplier 1."""
    g, _ = upfirdn_graph((1, 3, 4, 4), KASYM, {"upx": 2, "upy": 2, "padx0": 1, "pady0": 1})
    run_pass(g, PASS)
    order = [g.node(n).op for n in g.toposort() if g.node(n).op not in ("Const", "Placeholder")]
    assert order == ["Pad", "DepthToSpace", "Pad", "DepthwiseConv2dNative", "Reshape"]
    pads = [g.const_value(n.data_inputs[1]).tolist() for n in g.nodes("Pad")]
    assert [[0, 0], [0, 9], [0, 0], [0, 0]] in pads  # 3 zero phases x 3 channels
    assert [[0, 0], [0, 0], [1, 0], [1, 0]] in pads
    (conv,) = g.nodes("DepthwiseConv2dNative")
    f = g.const_value(conv.data_inputs[1])
    assert f.shape == (3, 4, 3, 1)
    np.testing.assert_array_equal(f[:, :, 1, 0], KASYM[::-1, ::-1])
    assert conv.attr("padding") == "VALID" and conv.attr("strides") == [1, 1, 1, 1]
    assert g.outputs == [gs.TensorRef("y")]  # the declared output keeps its name


def test_non_constant_kernel_is_an_error():
    g, _ = upfirdn_graph((1, 1, 4, 4), K1331, {})
    rw = gs.Rewriter(g)
    kp = rw.placeholder("kp", F32, (4, 4))
    rw.set_input("upfirdn", 1, kp)
    with pytest.raises(gs.UsageError, match="upfirdn.*not a constant"):
        run_pass(g, PASS)


def test_sg2_tiny_cuda():
    before, g, counts, after = prepared_and_run("sg2-tiny-cuda", PASS)
    assert counts["UpFirDn2D"] == 4 and counts["DepthwiseConv2dNative"] == 0
    assert after["UpFirDn2D"] == 0
    assert after["DepthwiseConv2dNative"] == 4
    assert after["DepthToSpace"] == 2  # the two skip up-samplings (up=2)
    assert after["Pad"] == 6  # 2 zero insertions + 4 spatial pads
    assert after["Reshape"] == counts["Reshape"] - 8  # both reshapes around each op
    assert after["Transpose"] == counts["Transpose"]
    info = g.infer()
    new = [n for n in g.names if g.provenance.get(n) and g.provenance[n].pass_id == PASS]
    assert all(len(info[gs.TensorRef(n)].shape) <= 4 for n in new)
    assert_equivalent(before, g, max_rel=1e-4)


def test_lower_upfirdn_function_without_spatial_size():
    """The reusable builder: any 4-D tensor, layout given, spatial size not needed."""
    from graphsurgery.passes.stylegan.lower_upfirdn2d import lower_upfirdn

    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g)
    x = rw.placeholder("x", F32, (1, 2, 6, 5))
    y = lower_upfirdn(rw, x.output(), KASYM, up=2, down=2, pad=(1, -2), layout="NCHW",
                      channels=2, name="u")
    rw.set_graph_inputs([x.output()])
    rw.set_outputs([y])
    assert dict(g.op_counts()) == {"Placeholder": 1, "Const": 6, "Pad": 2, "DepthToSpace": 1,
                                   "StridedSlice": 1, "DepthwiseConv2dNative": 1}
    xv = np.random.default_rng(3).standard_normal((1, 2, 6, 5)).astype(np.float32)
    a = {"upx": 2, "upy": 2, "downx": 2, "downy": 2, "padx0": 1, "padx1": -2, "pady0": 1,
         "pady1": -2}
    np.testing.assert_allclose(run_reference(g, xv), expected(xv, KASYM, a, "NCHW"), atol=1e-5)


def test_nhwc_lowering_is_tflite_clean(tmp_path):
    """In NHWC (what the layout pass produces) the ops are TFLite builtins and match numpy."""
    from graphsurgery.export import audit_tflite, convert_tflite
    from graphsurgery.runners import TFLiteRunner

    attrs = {"upx": 2, "upy": 2, "padx0": -1, "padx1": 2, "pady0": 2, "pady1": 1}
    g, a = upfirdn_graph((1, 6, 6, 3), KASYM, attrs, "NHWC")
    run_pass(g, PASS)
    path = tmp_path / "u.tflite"
    convert_tflite(g, path)
    audit = audit_tflite(path)
    assert audit.clean, audit.violations
    assert audit.ops == {"PAD": 2, "DEPTH_TO_SPACE": 1, "STRIDED_SLICE": 1,
                         "DEPTHWISE_CONV_2D": 1}
    x = np.random.default_rng(4).standard_normal((1, 6, 6, 3)).astype(np.float32)
    with TFLiteRunner(path) as r:
        np.testing.assert_allclose(r.run({"x": x})[0], np_upfirdn2d(x, KASYM, **a), atol=1e-5)
