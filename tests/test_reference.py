"""The exact reference (graphsurgery.reference) and splice_tf (graphsurgery.splice).

Numerical checks compare the reference with numpy written here from the ops' definitions
(modulated convolution, transposed convolution, upfirdn2d, StyleGAN v1 style modulation),
never with TensorFlow code from the package.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import graphsurgery as gs  # noqa: E402
from graphsurgery import zoo  # noqa: E402
from graphsurgery.errors import InputError  # noqa: E402
from graphsurgery.ir.names import TensorRef  # noqa: E402
from graphsurgery.reference import (  # noqa: E402
    make_reference,
    noise_input_name,
    noise_order,
    register_custom_op,
    registered_custom_ops,
    seeded_noise,
)
from graphsurgery.runners import GraphDefRunner  # noqa: E402
from graphsurgery.splice import splice_tf  # noqa: E402
from graphsurgery.testing import run_tf  # noqa: E402

F32 = gs.DType.float32
TOL = 1e-4


# ---------------------------------------------------------------------------- fixtures
@functools.cache
def _model(name: str) -> zoo.BuiltModel:
    return zoo.build(name)


def _graph(name: str) -> gs.Graph:
    m = _model(name)
    return gs.load(m.graph_def, inputs=m.inputs, outputs=m.outputs)


@functools.cache
def _reference(name: str, noise: str = "input", seed: int = 0):  # noqa: ANN202
    return make_reference(_graph(name), noise=noise, seed=seed)


def _feeds(name: str, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    size = _model(name).meta["latent_size"]
    z = np.random.default_rng(seed).standard_normal((batch, size)).astype(np.float32)
    return {"latents_in": z, "labels_in": np.zeros((batch, 0), np.float32)}


def _scaled(g: gs.Graph, var: str) -> np.ndarray:
    """A frozen variable times its run-time coefficient (``Mul(var/read, c)``), in numpy."""
    value = np.asarray(g.const_value(var), np.float64)
    read = f"{var}/read" if f"{var}/read" in g else var
    (mul, idx), = [(n, i) for n, i in g.consumers(read) if n.op == "Mul"]
    coef = np.asarray(g.const_value(mul.data_inputs[1 - idx]), np.float64)
    return value * coef


# ---------------------------------------------------------------------------- numpy maths
def np_conv_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Stride-1 SAME cross-correlation of x [C, H, W] with w [k, k, C, O] (odd k)."""
    k = w.shape[0]
    p = k // 2
    h, wd = x.shape[1:]
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    out = np.zeros((w.shape[3], h, wd))
    for i in range(k):
        for j in range(k):
            out += np.einsum("chw,co->ohw", xp[:, i:i + h, j:j + wd], w[i, j])
    return out


def np_conv_transpose(dy: np.ndarray, f: np.ndarray, size: tuple[int, int], stride: int,
                      pad_top: int, pad_left: int) -> np.ndarray:
    """Adjoint of a strided conv: dy [B, Ho, Wo], filter f [kh, kw, A, B] -> [A, H, W]."""
    kh, kw = f.shape[:2]
    _, ho, wo = dy.shape
    full = np.zeros((f.shape[2], (ho - 1) * stride + kh, (wo - 1) * stride + kw))
    for i in range(ho):
        for j in range(wo):
            full[:, i * stride:i * stride + kh, j * stride:j * stride + kw] += np.einsum(
                "b,pqab->apq", dy[:, i, j], f)
    h, w = size
    out = np.zeros((f.shape[2], h, w))
    crop = full[:, pad_top:pad_top + h, pad_left:pad_left + w]
    out[:, :crop.shape[1], :crop.shape[2]] = crop
    return out


def np_upfirdn2d(x: np.ndarray, k: np.ndarray, upx: int = 1, upy: int = 1, downx: int = 1,
                 downy: int = 1, padx0: int = 0, padx1: int = 0, pady0: int = 0,
                 pady1: int = 0) -> np.ndarray:
    """Insert zeros, pad (crop if negative), convolve with k, keep every down-th sample."""
    major, h, w, minor = x.shape
    y = np.zeros((major, h * upy, w * upx, minor))
    y[:, ::upy, ::upx, :] = x
    y = np.pad(y, ((0, 0), (max(pady0, 0), max(pady1, 0)), (max(padx0, 0), max(padx1, 0)),
                   (0, 0)))
    y = y[:, max(-pady0, 0):y.shape[1] - max(-pady1, 0),
          max(-padx0, 0):y.shape[2] - max(-padx1, 0), :]
    kh, kw = k.shape
    oh, ow = y.shape[1] - kh + 1, y.shape[2] - kw + 1
    flipped = k[::-1, ::-1]
    out = np.zeros((major, oh, ow, minor))
    for i in range(kh):
        for j in range(kw):
            out += y[:, i:i + oh, j:j + ow, :] * flipped[i, j]
    return out[:, ::downy, ::downx, :]


def np_modconv(x: np.ndarray, w: np.ndarray, s: np.ndarray, up: bool) -> np.ndarray:
    """StyleGAN2 modulated, demodulated conv of x [N, C, H, W]; up: 2x transposed + FIR."""
    ww = w[np.newaxis] * s[:, np.newaxis, np.newaxis, :, np.newaxis]
    ww = ww / np.sqrt(np.sum(ww**2, axis=(1, 2, 3)) + 1e-8)[:, np.newaxis, np.newaxis,
                                                            np.newaxis, :]
    outs = []
    for n in range(x.shape[0]):
        if not up:
            outs.append(np_conv_same(x[n], ww[n]))
            continue
        # Transposed conv (stride 2, VALID) with the spatially flipped kernel, i.e. a true
        # convolution of the zero-upsampled input, then the [1,3,3,1] FIR with gain 4.
        f = np.transpose(ww[n][::-1, ::-1], (0, 1, 3, 2))  # [k, k, O, C]
        k = ww.shape[1]
        size = ((x.shape[2] - 1) * 2 + k, (x.shape[3] - 1) * 2 + k)
        y = np_conv_transpose(x[n], f, size, 2, 0, 0)
        fir = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float64)
        fir = fir / fir.sum() * 4
        y = np_upfirdn2d(y[:, :, :, np.newaxis], fir, padx0=1, padx1=1, pady0=1, pady1=1)
        outs.append(y[..., 0])
    return np.stack(outs)


# ---------------------------------------------------------------------------- StyleGAN v1
def test_sg1_needs_the_reference_and_it_runs() -> None:
    g = _graph("sg1-tiny")
    before = (g.version, dict(g.op_counts()), list(g.inputs), list(g.outputs))
    with pytest.raises(Exception, match="float_ref|NHWC"):
        GraphDefRunner(g).run(_feeds("sg1-tiny"))
    ref = _reference("sg1-tiny")
    assert (g.version, dict(g.op_counts()), list(g.inputs), list(g.outputs)) == before
    ops = ref.graph.op_counts()
    assert ops["Assign"] == 0 and ops["RandomStandardNormal"] == 0
    assert all(n.attr("data_format") != "NCHW" for n in ref.graph.nodes("Conv2D"))
    assert [n.name for n in ref.noise] == [noise_input_name(i) for i in range(8)]
    assert [n.source for n in ref.noise] == noise_order(g)
    assert ref.noise[-1].shape == (-1, 1, 32, 32)

    feeds = _feeds("sg1-tiny")
    noise = ref.make_noise(feeds, seed=5)
    (a,) = ref.run(feeds, noise)
    (b,) = ref.run(feeds, noise)
    (c,) = ref.run(_feeds("sg1-tiny", seed=1), noise)
    assert a.shape == (2, 3, 32, 32) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-2  # the latent matters
    assert np.abs(a[0] - a[1]).max() > 1e-2


def test_noise_modes() -> None:
    feeds = _feeds("sg1-tiny")
    with pytest.raises(InputError, match="noise inputs not fed"):
        _reference("sg1-tiny").run(feeds)
    seeded = _reference("sg1-tiny", "seeded", 7)
    (a,) = seeded.run(feeds)
    (b,) = make_reference(_graph("sg1-tiny"), noise="seeded", seed=7).run(feeds)
    (c,) = _reference("sg1-tiny", "seeded", 8).run(feeds)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3  # noise matters
    # seeded == input mode fed with the same seeded noise; keys by index or source name work
    ref = _reference("sg1-tiny")
    noise = {i: seeded_noise(7, i, (2, *n.shape[1:])) for i, n in enumerate(ref.noise)}
    (d,) = ref.run(feeds, noise)
    np.testing.assert_array_equal(a, d)
    by_source = {n.source: noise[n.index] for n in ref.noise}
    np.testing.assert_array_equal(ref.run(feeds, by_source)[0], a)
    z = seeded_noise(1, 2, (3, 4))
    assert z.dtype == np.float32 and z.shape == (3, 4)
    np.testing.assert_array_equal(z, np.random.default_rng([1, 2]).standard_normal(
        (3, 4), dtype=np.float32))


def test_sg1_style_modulation_matches_numpy() -> None:
    g = _graph("sg1-tiny")
    ref = _reference("sg1-tiny", "seeded")
    scope = "G_synthesis/4x4/Conv"
    row = g.node(f"{scope}/StyleMod/MatMul").data_inputs[0]
    x, dl, got = ref.run(_feeds("sg1-tiny"), fetches=[
        f"{scope}/LeakyReLU/IdentityN:0", row, f"{scope}/StyleMod/add_2:0"])
    x = x.astype(np.float64)
    x = x - x.mean(axis=(2, 3), keepdims=True)
    x = x / np.sqrt(np.mean(x**2, axis=(2, 3), keepdims=True) + 1e-8)
    style = dl @ _scaled(g, f"{scope}/StyleMod/weight") + _scaled(g, f"{scope}/StyleMod/bias")
    style = style.reshape(-1, 2, x.shape[1], 1, 1)
    want = x * (style[:, 0] + 1) + style[:, 1]
    assert got.shape == want.shape == (2, 16, 4, 4)
    assert np.abs(got - want).max() < TOL


def test_sg1_fused_upconv_runs() -> None:
    """128 px: ungrouped NCHW Conv2DBackpropInput (SAME, stride 2) run natively in NHWC."""
    ref = make_reference(_graph("sg1-tiny-fused"), noise="seeded")
    assert ref.graph.op_counts()["Conv2DBackpropInput"] == 1
    (img,) = ref.run(_feeds("sg1-tiny-fused", batch=1))
    assert img.shape == (1, 3, 128, 128) and np.isfinite(img).all()


# ---------------------------------------------------------------------------- StyleGAN2
def test_sg2_custom_ops_equal_reference_implementation() -> None:
    assert {"FusedBiasAct", "UpFirDn2D"} <= set(registered_custom_ops())
    cuda, plain = _reference("sg2-tiny-cuda"), _reference("sg2-tiny")
    assert _graph("sg2-tiny-cuda").op_counts()["UpFirDn2D"] == 4
    assert not {"FusedBiasAct", "UpFirDn2D"} & set(cuda.graph.op_counts())
    assert [n.shape for n in cuda.noise] == [n.shape for n in plain.noise]
    feeds = _feeds("sg2-tiny")
    noise = plain.make_noise(feeds, seed=3)
    (a,) = plain.run(feeds, noise)
    (b,) = cuda.run(feeds, noise)
    assert a.shape == (2, 3, 16, 16) and np.isfinite(a).all()
    assert np.abs(a - b).max() < TOL
    assert np.abs(a[0] - a[1]).max() > 1e-2


@pytest.mark.parametrize("layer_idx", [1, 2])  # 8x8/Conv0_up (transposed), 8x8/Conv1
def test_sg2_modulated_conv_matches_numpy(layer_idx: int) -> None:
    model, g, ref = _model("sg2-tiny"), _graph("sg2-tiny"), _reference("sg2-tiny")
    layer = model.meta["layers"][layer_idx]
    x_name = model.meta["layers"][layer_idx - 1]["out"]
    rng = np.random.default_rng(layer_idx)
    x = rng.standard_normal((2, 16, 4 if layer["up"] else 8, 4 if layer["up"] else 8))
    dl = rng.standard_normal((2, model.meta["num_layers"], model.meta["dlatent_size"]))
    feeds = {x_name: x.astype(np.float32), "G_synthesis/dlatents_in:0": dl.astype(np.float32)}
    (got,) = ref.run(feeds, fetches=[layer["modconv_out"]])  # no noise needed: x is fed

    w = _scaled(g, layer["weight"])
    s = dl[:, layer_idx] @ _scaled(g, layer["mod_weight"]) + _scaled(g, layer["mod_bias"]) + 1
    want = np_modconv(x, w, s, layer["up"])
    assert got.shape == want.shape == (2, 16, 8, 8)
    assert np.abs(got - want).max() < TOL
    assert np.abs(want).max() > 0.1


def test_intermediate_fetches_keep_names_and_layout() -> None:
    model, ref = _model("sg2-tiny"), _reference("sg2-tiny", "seeded")
    feeds = _feeds("sg2-tiny")
    skip8, conv, img = ref.run(feeds, fetches=[
        model.meta["skip_images"][8], "G_synthesis/8x8/Conv1/Conv2D", "images_out:0"])
    assert skip8.shape == (2, 3, 8, 8)
    assert conv.shape == (1, 32, 8, 8)  # the fused grouped conv, NCHW as in the original
    np.testing.assert_array_equal(img, ref.run(feeds)[0])


def test_upfirdn2d_node_matches_numpy() -> None:
    g = _graph("sg2-tiny-cuda")
    ref = _reference("sg2-tiny-cuda", "seeded")
    node = g.node("G_synthesis/8x8/Upsample/UpFirDn2D")
    x, y = ref.run(_feeds("sg2-tiny"), fetches=[node.data_inputs[0], node.name])
    attrs = {a: node.attr(a) for a in ("upx", "upy", "downx", "downy", "padx0", "padx1",
                                       "pady0", "pady1")}
    want = np_upfirdn2d(x, np.asarray(g.const_value(node.data_inputs[1])), **attrs)
    assert y.shape == want.shape == (6, 8, 8, 1)
    assert np.abs(y - want).max() < TOL


def test_upfirdn2d_registry_with_crop_and_downsampling() -> None:
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [None, 9, 7, 2])
    k = rw.const(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32), name="k")
    attrs = {"upx": 2, "upy": 1, "downx": 1, "downy": 2, "padx0": 1, "padx1": -2,
             "pady0": -1, "pady1": 2, "T": F32}
    y = rw.add_node("UpFirDn2D", [x, k], attrs, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    xv = np.random.default_rng(1).standard_normal((3, 9, 7, 2)).astype(np.float32)
    (got,) = make_reference(g).run({"x": xv})
    want = np_upfirdn2d(xv, np.asarray(g.const_value("k")),
                        **{a: v for a, v in attrs.items() if a != "T"})
    assert got.shape == want.shape
    assert np.abs(got - want).max() < TOL


def test_register_custom_op() -> None:
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [None, 3])
    y = rw.add_node("TestScaleBy", [x], {"T": F32, "factor": 3.0}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    register_custom_op("TestScaleBy", lambda node, ins: ins[0] * node.attr("factor"))
    ref = make_reference(g)
    assert ref.graph.node("y").op == "Identity"
    assert "TestScaleBy" in ref.changes["y"]
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(ref.run({"x": xv})[0], xv * 3)


# ---------------------------------------------------------------------------- transposed conv
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize("grouped", [False, True])
def test_conv2d_backprop_input_nchw(padding: str, grouped: bool) -> None:
    """Native (provably ungrouped) and lowered (channels unknown) paths against numpy."""
    rng = np.random.default_rng(0)
    groups, a, bg, hi, k, s = (2 if grouped else 1), 3, 2, 4, 3, 2
    h = (hi - 1) * s + k if padding == "VALID" else hi * s
    f = rng.standard_normal((k, k, a, groups * bg)).astype(np.float32)
    dy = rng.standard_normal((2, groups * bg, hi, hi)).astype(np.float32)
    tfg = tf.Graph()
    with tfg.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, None if grouped else groups * bg, hi, hi],
                                     name="x")
        channels = tf.shape(x)[1] // bg * a  # not static when grouped: the lowering path
        sizes = tf.stack([tf.shape(x)[0], channels, h, h])
        y = tf.compat.v1.nn.conv2d_transpose(x, f, sizes, [1, 1, s, s], padding,
                                             data_format="NCHW")
        tf.identity(y, name="y")
    g = gs.load(tfg.as_graph_def(), inputs=["x"], outputs=["y"])
    ref = make_reference(g)
    lowered = "lowered" in ref.changes[y.op.name]
    assert lowered == grouped
    (got,) = ref.run({"x": dy})
    pad = max((hi - 1) * s + k - h, 0) // 2 if padding == "SAME" else 0
    want = np.stack([np.concatenate([
        np_conv_transpose(dy[n, g_ * bg:(g_ + 1) * bg], f[:, :, :, g_ * bg:(g_ + 1) * bg],
                          (h, h), s, pad, pad) for g_ in range(groups)]) for n in range(2)])
    assert got.shape == want.shape == (2, groups * a, h, h)
    assert np.abs(got - want).max() < TOL


# ---------------------------------------------------------------------------- splice_tf
def test_splice_tf() -> None:
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [None, 4])
    b = rw.const(np.arange(4, dtype=np.float32), name="b")
    rw.add_node("Identity", [x], {"T": F32}, name="body")  # takes the scope name "body"
    out, same = splice_tf(rw, lambda t, u: (tf.nn.relu(t + u) * 2.0, u),
                          [x.output(), b.output()], scope="body")
    assert out.node.startswith("body_1/") and same == TensorRef("b")
    assert not any(n.name.startswith("body_1/input_") for n in g)  # placeholders rewired
    rw.set_graph_inputs([x])
    rw.set_outputs([out])
    xv = np.array([[-3, -1, 1, 3]], np.float32)
    (got,) = run_tf(g, {"x": xv})
    np.testing.assert_allclose(got, np.maximum(xv + np.arange(4), 0) * 2)


# ---------------------------------------------------------------------------- NCHW ops
def _nchw_net(fmt: str) -> tuple[tf.Graph, str]:
    """Convs (explicit pads, strides, dilations), depthwise, bias, batch norm, pools in ``fmt``."""
    rng = np.random.default_rng(0)
    nhwc = fmt == "NHWC"

    def vec(*dims: int) -> list[int]:  # spatial values of a 4-vector in this layout
        return [1, *dims, 1] if nhwc else [1, 1, *dims]

    tfg = tf.Graph()
    with tfg.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 12, 12, 3] if nhwc else [None, 3, 12, 12],
                                     name="x")
        pads = [[0, 0], [1, 2], [0, 1], [0, 0]] if nhwc else [[0, 0], [0, 0], [1, 2], [0, 1]]
        y = tf.nn.conv2d(x, rng.standard_normal((3, 3, 3, 4)).astype(np.float32), vec(2, 1),
                         pads, data_format=fmt)
        y = tf.nn.conv2d(y, rng.standard_normal((3, 3, 4, 4)).astype(np.float32), 1, "SAME",
                         data_format=fmt, dilations=vec(2, 1))
        y = tf.compat.v1.nn.depthwise_conv2d_native(
            y, rng.standard_normal((3, 3, 4, 2)).astype(np.float32), vec(2, 2), "SAME",
            data_format=fmt)
        y = tf.nn.bias_add(y, rng.standard_normal(8).astype(np.float32), data_format=fmt)
        y, mean, _ = tf.compat.v1.nn.fused_batch_norm(
            y, rng.random(8).astype(np.float32) + 0.5, rng.standard_normal(8).astype(np.float32),
            mean=rng.standard_normal(8).astype(np.float32),
            variance=rng.random(8).astype(np.float32) + 0.5, is_training=False,
            data_format=fmt)
        y = y + tf.reshape(mean, [1, 1, 1, -1] if nhwc else [1, -1, 1, 1])
        y = tf.nn.max_pool2d(y, vec(2, 2), vec(2, 1), "SAME", data_format=fmt)
        y = tf.compat.v1.nn.avg_pool(y, vec(1, 2), vec(1, 2), "VALID", data_format=fmt)
        if not nhwc:
            y = tf.transpose(y, [0, 2, 3, 1])
        tf.identity(y, name="y")
    return tfg, "y"


def test_nchw_ops_run_as_nhwc() -> None:
    nchw, _ = _nchw_net("NCHW")
    g = gs.load(nchw.as_graph_def(), inputs=["x"], outputs=["y"])
    ref = make_reference(g)
    wrapped = {n.split(":")[0] for n, what in ref.changes.items() if "NCHW" in what}
    ops = {g.node(n).op for n in wrapped}
    assert {"Conv2D", "DepthwiseConv2dNative", "BiasAdd", "FusedBatchNormV3", "MaxPool",
            "AvgPool"} <= ops
    assert ref.graph.node(next(n for n in wrapped if g.node(n).op.startswith("FusedBatch"))
                          ).op == "IdentityN"  # port 1 (the mean) is used too
    x = np.random.default_rng(1).standard_normal((2, 12, 12, 3)).astype(np.float32)
    (got,) = ref.run({"x": np.transpose(x, (0, 3, 1, 2))})
    nhwc, _ = _nchw_net("NHWC")
    (want,) = run_tf(gs.load(nhwc.as_graph_def(), inputs=["x"], outputs=["y"]), {"x": x})
    assert got.shape == want.shape
    assert np.abs(got - want).max() < TOL


# ---------------------------------------------------------------------------- leftovers, reuse
def test_training_leftovers() -> None:
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [2])
    v = rw.const(np.float32([1, 2]), name="v")
    val = rw.const(np.float32([10, 20]), name="val")
    read = rw.add_node("Assign", [v, val], {"T": F32, "use_locking": True}, name="assign")
    bump = rw.add_node("AssignAdd", [v, val], {"T": F32}, name="bump")  # value unused
    y = rw.add_node("AddV2", [x, read], {"T": F32}, name="y", control_inputs=[bump])
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    ref = make_reference(g)
    assert "bump" not in ref.graph and ref.graph.node("assign").op == "Identity"
    assert ref.graph.node("y").control_inputs == []
    np.testing.assert_array_equal(ref.run({"x": np.float32([1, 1])})[0], [11, 21])


def test_reference_of_a_reference_keeps_noise_inputs() -> None:
    first = _reference("sg2-tiny", "seeded", 2)
    second = make_reference(first.graph, noise="seeded", seed=2)
    assert [(n.name, n.source, n.shape) for n in second.noise] == [
        (n.name, None, n.shape) for n in first.noise]
    assert not second.changes  # nothing left to rewrite
    feeds = _feeds("sg2-tiny", batch=1)
    np.testing.assert_array_equal(first.run(feeds)[0], second.run(feeds)[0])


def test_shapes_are_inferred_only_when_a_rewrite_reads_them(monkeypatch) -> None:
    calls = []
    real = gs.Graph.infer

    def infer(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(len(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(gs.Graph, "infer", infer)
    x = np.random.default_rng(2).standard_normal((2, 12, 12, 3)).astype(np.float32)
    nhwc = gs.load(_nchw_net("NHWC")[0].as_graph_def(), inputs=["x"], outputs=["y"])
    ref = make_reference(nhwc)
    assert calls == [] and ref.changes == {}  # nothing to rewrite: runs as it is
    (got,) = ref.run({"x": x})
    (want,) = run_tf(nhwc, {"x": x})
    np.testing.assert_array_equal(got, want)
    nchw = gs.load(_nchw_net("NCHW")[0].as_graph_def(), inputs=["x"], outputs=["y"])
    assert make_reference(nchw).changes and len(calls) == 1  # the NCHW ops need shapes
    g = _graph("sg2-tiny")  # custom ops and random ops need them too
    calls.clear()
    assert make_reference(g).noise and len(calls) == 1


def test_pinned_input_shapes_run_the_transposed_conv_natively() -> None:
    """With the fed shapes known, StyleGAN2's fused up-conv (groups = batch) is proven
    ungrouped: TensorFlow's own Conv2DBackpropInput, not the 4x-work lowering; same outputs."""
    g, feeds = _graph("sg2-tiny"), _feeds("sg2-tiny", batch=1)
    loose = make_reference(g, noise="seeded")
    pinned = make_reference(g, noise="seeded", input_shapes={k: v.shape for k, v in feeds.items()})
    lowered = [n for n, why in loose.changes.items() if "lowered" in why]
    assert lowered and not any("lowered" in why for why in pinned.changes.values())
    assert all(pinned.graph.node(f"{n}/nhwc").op == "Conv2DBackpropInput" for n in lowered)
    assert "latents_in" in g and g.static_shape("latents_in")[0] < 0  # the input is untouched
    (want,), (got,) = loose.run(feeds), pinned.run(feeds)
    assert np.abs(got - want).max() < TOL * np.abs(want).max()
    with pytest.raises(InputError, match="not a declared input"):
        make_reference(g, input_shapes={"G_synthesis/dlatents_in": (1, 8, 16)})
    with pytest.raises(InputError, match="latents_in: shape \\[1, 7\\] does not fit"):
        make_reference(g, input_shapes={"latents_in:0": (1, 7)})
