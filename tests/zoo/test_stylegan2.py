"""Tests of the StyleGAN2 ``Gs`` builder (graphsurgery.zoo.stylegan2) and its op maths (sgops)."""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from graphsurgery import zoo  # noqa: E402
from graphsurgery.zoo import sgops  # noqa: E402
from graphsurgery.zoo.stylegan2 import PRESETS, build_gs  # noqa: E402

TINY = [n for n in PRESETS if n.startswith("sg2-tiny")]
RUNNABLE_TINY = [n for n in TINY if PRESETS[n].impl == "ref"]
CONVS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput")
# Full-size builds take seconds each; they run by default (deselect with -m "not slow").
SLOW = pytest.mark.slow


@functools.cache
def _build(name: str) -> zoo.BuiltModel:
    return zoo.build(name)


def _ops(gd) -> Counter:
    return Counter(n.op for n in gd.node)


def _nodes(gd) -> dict:
    return {n.name: n for n in gd.node}


def _src(nodes: dict, inp: str):
    return nodes[inp.lstrip("^").split(":")[0]]


def _const(node) -> np.ndarray:
    return tf.make_ndarray(node.attr["value"].tensor)


def _const_input(nodes: dict, node, i: int) -> np.ndarray | None:
    src = _src(nodes, node.input[i])
    return _const(src) if src.op == "Const" else None


def _const_derived(nodes: dict, name: str) -> bool:
    """True when ``name`` is computed from constants only (Const, Identity, Mul, ...)."""
    node = _src(nodes, name)
    if node.op == "Const":
        return True
    if node.op in ("Placeholder", "RandomStandardNormal", "Shape") or not node.input:
        return False
    return all(_const_derived(nodes, i) for i in node.input)


# --------------------------------------------------------------- a minimal NCHW-on-CPU runner
# Each NCHW convolution becomes a call of a small tf.function that transposes to NHWC. A
# grouped Conv2DBackpropInput (which the CPU kernels reject) is rewritten as zero insertion,
# padding and a grouped Conv2D with the flipped, regrouped filter.
_F4 = tf.TensorSpec([None] * 4, tf.float32)


def _nhwc_function(op: str, strides: tuple, padding: str):
    s = [1, strides[2], strides[3], 1]

    if op == "Conv2D":

        @tf.function(input_signature=[_F4, _F4])
        def fn(x, w):
            y = tf.nn.conv2d(tf.transpose(x, [0, 2, 3, 1]), w, s, padding)
            return tf.transpose(y, [0, 3, 1, 2])

    elif op == "DepthwiseConv2dNative":

        @tf.function(input_signature=[_F4, _F4])
        def fn(x, w):
            y = tf.nn.depthwise_conv2d(tf.transpose(x, [0, 2, 3, 1]), w, s, padding)
            return tf.transpose(y, [0, 3, 1, 2])

    else:
        assert op == "Conv2DBackpropInput" and padding == "VALID"
        sh, sw = s[1], s[2]

        @tf.function(input_signature=[tf.TensorSpec([4], tf.int32), _F4, _F4])
        def fn(sizes, w, dy):
            dy = tf.transpose(dy, [0, 2, 3, 1])
            n, h, wd, c = tf.unstack(tf.shape(dy))
            kh, kw, in_g, out_t = tf.unstack(tf.shape(w))
            z = tf.reshape(dy, [n, h, 1, wd, 1, c])
            z = tf.pad(z, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])
            z = tf.reshape(z, [n, h * sh, wd * sw, c])[:, : (h - 1) * sh + 1, : (wd - 1) * sw + 1]
            extra_h = sizes[2] - ((h - 1) * sh + kh)
            extra_w = sizes[3] - ((wd - 1) * sw + kw)
            z = tf.pad(z, [[0, 0], [kh - 1, kh - 1 + extra_h], [kw - 1, kw - 1 + extra_w], [0, 0]])
            groups = sizes[1] // in_g
            f = tf.reshape(w, [kh, kw, in_g, groups, out_t // groups])
            f = tf.transpose(tf.reverse(f, [0, 1]), [0, 1, 4, 3, 2])
            f = tf.reshape(f, [kh, kw, out_t // groups, groups * in_g])
            return tf.transpose(tf.nn.conv2d(z, f, 1, "VALID"), [0, 3, 1, 2])

    return fn.get_concrete_function()


def cpu_runnable(graph_def):
    """Copy of ``graph_def`` whose NCHW convolutions run on CPU."""
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    fns: dict = {}
    for node in out.node:
        if node.op not in CONVS or node.attr["data_format"].s != b"NCHW":
            continue
        key = (node.op, tuple(node.attr["strides"].list.i), node.attr["padding"].s.decode())
        assert all(d == 1 for d in node.attr["dilations"].list.i)
        if key not in fns:
            fns[key] = _nhwc_function(*key)
            out.library.function.add().CopyFrom(fns[key].function_def)
        node.op = fns[key].function_def.signature.name
        node.ClearField("attr")
    return out


def run_graph(graph_def, feeds: dict, fetches: list[str]) -> list[np.ndarray]:
    """Run a frozen NCHW graph on CPU."""
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.graph_util.import_graph_def(cpu_runnable(graph_def), name="")
    with tf.compat.v1.Session(graph=g) as sess:
        return sess.run(fetches, feed_dict=feeds)


def _run_model(model: zoo.BuiltModel, latents: np.ndarray) -> np.ndarray:
    feeds = {"latents_in:0": latents, "labels_in:0": np.zeros([len(latents), 0], np.float32)}
    return run_graph(model.graph_def, feeds, model.outputs)[0]


def _latents(model: zoo.BuiltModel, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal([n, model.meta["latent_size"]]).astype(np.float32)


# --------------------------------------------------------------------- registry and sizes
def test_presets_registered():
    names = {e.name for e in zoo.entries()}
    expected = {
        "sg2-tiny", "sg2-tiny-orig", "sg2-tiny-resnet", "sg2-tiny-nonfused", "sg2-tiny-cuda",
        "sg2-tiny-const-noise", "sg2-256", "sg2-256-cuda", "sg2-1024", "sg2-1024-cuda",
    }
    assert expected <= names
    assert zoo.get("sg2-1024").full_size and zoo.get("sg2-1024-cuda").full_size
    assert not zoo.get("sg2-256").full_size and not zoo.get("sg2-tiny").full_size


@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_small_and_described(name):
    model = _build(name)
    cfg = PRESETS[name]
    assert model.inputs == ["latents_in:0", "labels_in:0"]
    assert model.outputs == ["images_out:0"]
    assert model.graph_def.ByteSize() < 1_000_000
    meta = model.meta
    assert meta["kind"] == "stylegan2"
    for key in ("architecture", "fused_modconv", "impl", "randomize_noise", "resolution"):
        assert meta[key] == getattr(cfg, key)
    assert meta["num_layers"] == 2 * int(np.log2(cfg.resolution)) - 2
    nodes = _nodes(model.graph_def)
    assert {"latents_in", "labels_in", "images_out", "dlatent_avg"} <= set(nodes)
    assert "G_synthesis/4x4/Const/const" in nodes
    assert "G_mapping/Dense0/weight" in nodes
    assert "G_synthesis/dlatents_in" in nodes
    for layer in meta["layers"]:
        assert layer["noise_node"] in nodes
        assert layer["conv"] in nodes and nodes[layer["conv"]].op == layer["conv_op"]
        assert layer["conv_op"] == ("Conv2DBackpropInput" if layer["up"] else "Conv2D")
        for key in ("weight", "mod_weight", "mod_bias", "bias", "noise_strength"):
            assert nodes[layer[key]].op == "Const"
    for torgb in meta["torgb"]:
        assert nodes[torgb["conv"]].op == "Conv2D" and torgb["demod"] is None
    if cfg.architecture == "skip":
        for r, tensor in meta["skip_images"].items():
            assert tensor.split(":")[0] in nodes and f"{r}x{r}" in tensor


def test_tiny_builds_quickly():
    build_gs(PRESETS["sg2-tiny"])  # warm-up
    t0 = time.perf_counter()
    build_gs(PRESETS["sg2-tiny"])
    assert time.perf_counter() - t0 < 2.0


# ------------------------------------------------------------------------- op histograms
def _pads_6d(gd) -> list:
    nodes = _nodes(gd)
    out = []
    for n in gd.node:
        if n.op in ("Pad", "PadV2", "MirrorPad"):
            pads = _const_input(nodes, n, 1)
            if pads is not None and pads.shape == (6, 2):
                out.append(n.name)
    return out


def _rank6_reshapes(gd) -> list:
    nodes = _nodes(gd)
    out = []
    for n in gd.node:
        if n.op == "Reshape":
            src = _src(nodes, n.input[1])
            rank = len(src.input) if src.op == "Pack" else None
            if src.op == "Const":
                rank = _const(src).size
            if rank == 6:
                out.append(n.name)
    return out


@pytest.mark.parametrize("name", TINY)
def test_op_histogram(name):
    cfg = PRESETS[name]
    gd = _build(name).graph_def
    ops = _ops(gd)
    nodes = _nodes(gd)

    # Every convolution is NCHW; the up-sampling conv is a Conv2DBackpropInput.
    for n in gd.node:
        if n.op in CONVS:
            assert n.attr["data_format"].s == b"NCHW", n.name
    assert ops["Conv2DBackpropInput"] >= int(np.log2(cfg.resolution)) - 2
    assert ops["MatMul"] >= cfg.mapping_layers

    # Noise.
    assert (ops["RandomStandardNormal"] > 0) == cfg.randomize_noise
    if not cfg.randomize_noise:
        noise = _const(nodes["G_synthesis/noise0"])
        assert noise.shape == (1, 1, 4, 4)

    # Reference ops versus custom ops.
    if cfg.impl == "ref":
        assert _pads_6d(gd), "ref upfirdn2d has a 6-D Pad"
        assert _rank6_reshapes(gd)
        assert ops["LeakyRelu"] > 0
        assert "FusedBiasAct" not in ops and "UpFirDn2D" not in ops
    else:
        assert ops["FusedBiasAct"] > 0 and ops["UpFirDn2D"] > 0
        assert not _pads_6d(gd) and ops["Pad"] == 0 and ops["LeakyRelu"] == 0

    # Fused versus non-fused modulated convolutions.
    conv_filters = [(n, n.input[1]) for n in gd.node if n.op == "Conv2D"]
    runtime = [n.name for n, w in conv_filters if not _const_derived(nodes, w)]
    group_reshapes = []
    for n in gd.node:
        if n.op == "Reshape":
            shape = _const_input(nodes, n, 1)
            if shape is not None and shape.size == 4 and shape[2] > 1:
                if list(shape[:2]) == [1, -1]:
                    group_reshapes.append(n.name)
    if cfg.fused_modconv:
        assert runtime, "fused modconv convolves with a run-time weight"
        assert group_reshapes, "fused modconv folds the batch: reshape [1, -1, H, W]"
        assert _src(nodes, nodes[runtime[0]].input[1]).op == "Reshape"  # regrouped ww
    else:
        assert not runtime and not group_reshapes
        weights = [w for n, w in conv_filters if "/weight" in "".join(_src(nodes, w).input)]
        assert weights, "non-fused convs use Mul(weight, coef)"
        for n in gd.node:
            if n.op == "Conv2DBackpropInput":
                assert _const_derived(nodes, n.input[1])

    # Equalised learning rate: the mapping weight is a Const times a run-time coefficient.
    mul = next(n for n in gd.node if n.name == "G_mapping/Dense0/mul")
    coef = _const_input(nodes, mul, 1)
    assert coef is not None and coef.shape == ()
    np.testing.assert_allclose(coef, 0.01 / np.sqrt(cfg.latent_size), rtol=1e-6)
    stored = _const(nodes["G_mapping/Dense0/weight"])
    assert 50 < stored.std() < 200  # N(0, 1/lrmul)

    # Truncation: Select over layer_idx < cutoff, lerp with dlatent_avg.
    if cfg.truncation_cutoff is not None:
        assert ops["Select"] == 1


def test_custom_op_nodes_and_attrs():
    gd = _build("sg2-tiny-cuda").graph_def
    nodes = _nodes(gd)
    fba = [n for n in gd.node if n.op == "FusedBiasAct"]
    ufd = [n for n in gd.node if n.op == "UpFirDn2D"]
    for n in fba:
        assert set(n.attr) == {"axis", "act", "alpha", "gain", "grad", "T"}
        assert n.attr["axis"].i == 1 and n.attr["grad"].i == 0
        assert n.attr["T"].type == tf.float32.as_datatype_enum
        assert len(n.input) == 3
        assert _const_input(nodes, n, 2).shape == (0,)  # ref: empty tensor
        # tf.custom_gradient leaves an IdentityN(y, x, b)
        assert any(m.op == "IdentityN" and m.input[0] == n.name for m in gd.node)
    # One layer: the style's bias (linear) and the layer's bias + leaky ReLU.
    layer = {n.attr["act"].i: n for n in fba if n.name.startswith("G_synthesis/4x4/Conv/")}
    assert sorted(layer) == [1, 3]
    lrelu = layer[sgops.ACT_CODES["lrelu"]]
    assert lrelu.attr["alpha"].f == pytest.approx(0.2)
    assert lrelu.attr["gain"].f == pytest.approx(np.sqrt(2))
    mapping = nodes["G_mapping/Dense0/FusedBiasAct"]
    assert mapping.attr["act"].i == 3
    linear = [n for n in fba if n.attr["act"].i == 1]
    assert linear and all(n.attr["gain"].f == 1.0 for n in linear)
    assert ufd
    for n in ufd:
        assert set(n.attr) == {"upx", "upy", "downx", "downy", "padx0", "padx1", "pady0",
                               "pady1", "T"}
        assert _const_input(nodes, n, 1).shape == (4, 4)
    up = nodes["G_synthesis/8x8/Upsample/UpFirDn2D"]
    assert (up.attr["upx"].i, up.attr["padx0"].i, up.attr["padx1"].i) == (2, 2, 1)
    k = _const_input(nodes, up, 1)
    np.testing.assert_allclose(k, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64 * 4, rtol=1e-6)
    conv_up = next(n for n in ufd if n.name.startswith("G_synthesis/8x8/Conv0_up/"))
    assert (conv_up.attr["upx"].i, conv_up.attr["padx0"].i, conv_up.attr["padx1"].i) == (1, 1, 1)


def test_cuda_and_ref_share_weights():
    ref, cuda = _nodes(_build("sg2-tiny").graph_def), _nodes(_build("sg2-tiny-cuda").graph_def)
    for name in ("G_synthesis/8x8/Conv0_up/weight", "G_mapping/Dense1/bias", "dlatent_avg"):
        np.testing.assert_array_equal(_const(ref[name]), _const(cuda[name]))


def test_custom_op_graph_fails_import_ref_imports():
    with tf.Graph().as_default():
        tf.graph_util.import_graph_def(_build("sg2-tiny").graph_def, name="")
    with tf.Graph().as_default(), pytest.raises(Exception, match="FusedBiasAct|UpFirDn2D"):
        tf.graph_util.import_graph_def(_build("sg2-tiny-cuda").graph_def, name="")


# ------------------------------------------------------------ numpy references for sgops
def _np_correlate_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x [N, C, H, W], w [kh, kw, C, O] -> [N, O, H-kh+1, W-kw+1] (cross-correlation)."""
    kh, kw = w.shape[:2]
    oh, ow = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    out = np.zeros([x.shape[0], w.shape[3], oh, ow], np.float64)
    for a in range(kh):
        for b in range(kw):
            out += np.einsum("nchw,co->nohw", x[:, :, a:a + oh, b:b + ow], w[a, b])
    return out


def _np_upfirdn(x, k, up, down, pad0, pad1):
    """x [N, C, H, W]; zero-insert, pad/crop, true convolution with k, downsample."""
    n, c, h, w = x.shape
    z = np.zeros([n, c, h * up, w * up])
    z[:, :, ::up, ::up] = x
    z = np.pad(z, [(0, 0), (0, 0), (max(pad0, 0), max(pad1, 0)), (max(pad0, 0), max(pad1, 0))])
    z = z[:, :, max(-pad0, 0):z.shape[2] - max(-pad1, 0), max(-pad0, 0):z.shape[3] - max(-pad1, 0)]
    kf = np.asarray(k, np.float64)[::-1, ::-1]
    out = np.stack([_np_correlate_valid(z[:, i:i + 1], kf[:, :, None, None])[:, 0]
                    for i in range(c)], axis=1)
    return out[:, :, ::down, ::down]


def _np_modconv(x, w, s, demod, up):
    n = x.shape[0]
    outs = []
    for i in range(n):
        wi = w * s[i][None, None, :, None]
        if demod:
            wi = wi / np.sqrt(np.sum(wi**2, axis=(0, 1, 2), keepdims=True) + 1e-8)
        xi = x[i:i + 1]
        k = w.shape[0]
        if up:
            z = np.zeros([1, xi.shape[1], 2 * xi.shape[2] - 1, 2 * xi.shape[3] - 1])
            z[:, :, ::2, ::2] = xi
            z = np.pad(z, [(0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)])
            t = _np_correlate_valid(z, wi)
            fir = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0 * 4
            outs.append(_np_upfirdn(t, fir, 1, 1, 1, 1))
        else:
            p = k // 2
            outs.append(_np_correlate_valid(np.pad(xi, [(0, 0), (0, 0), (p, p), (p, p)]), wi))
    return np.concatenate(outs)


def _run_ops(fn, *arrays):
    """Build ``fn(*placeholders)`` in a fresh graph and run it with the NCHW runner."""
    g = tf.Graph()
    with g.as_default():
        phs = [tf.compat.v1.placeholder(tf.float32, a.shape, name=f"in{i}")
               for i, a in enumerate(arrays)]
        y = tf.identity(fn(*phs), name="out")
    feeds = {f"in{i}:0": a for i, a in enumerate(arrays)}
    return run_graph(g.as_graph_def(), feeds, [y.name])[0]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demod", [True, False])
def test_modulated_conv_matches_numpy(fused, up, demod):
    rng = np.random.default_rng(3)
    x = rng.standard_normal([2, 4, 5, 5]).astype(np.float32)
    w = (rng.standard_normal([3, 3, 4, 6]) / 6).astype(np.float32)
    s = (rng.standard_normal([2, 4]) + 1).astype(np.float32)

    def fn(x, w, s):
        return sgops.modulated_conv2d(x, w, s, demodulate=demod, fused=fused, up=up)

    got = _run_ops(fn, x, w, s)
    want = _np_modconv(x.astype(np.float64), w.astype(np.float64), s.astype(np.float64),
                       demod, up)
    assert got.shape == want.shape == (2, 6, 10 if up else 5, 10 if up else 5)
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize(
    "k,up,down,pad",
    [
        ([1, 3, 3, 1], 2, 1, (2, 1)),  # upsample_2d
        ([1, 3, 3, 1], 1, 2, (1, 1)),  # downsample_2d
        (np.outer([1, 2, 3], [1, 4, 2]), 2, 1, (1, -1)),  # asymmetric kernel, crop
    ],
)
def test_upfirdn2d_matches_numpy(k, up, down, pad):
    rng = np.random.default_rng(4)
    x = rng.standard_normal([2, 3, 6, 6]).astype(np.float32)
    kk = np.asarray(k, np.float32)
    kk = sgops.setup_kernel(kk) if kk.ndim == 1 else kk

    got = _run_ops(lambda x: sgops.upfirdn2d_nchw(x, kk, up=up, down=down, pad=pad), x)
    want = _np_upfirdn(x.astype(np.float64), kk, up, down, *pad)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4


def test_upsample_2d_matches_numpy():
    rng = np.random.default_rng(5)
    x = rng.standard_normal([1, 3, 4, 4]).astype(np.float32)
    got = _run_ops(lambda x: sgops.upsample_2d(x), x)
    k = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0 * 4
    assert got.shape == (1, 3, 8, 8)
    assert np.abs(got - _np_upfirdn(x.astype(np.float64), k, 2, 1, 2, 1)).max() < 1e-4


def test_fused_bias_act_lrelu_matches_numpy():
    rng = np.random.default_rng(6)
    x = rng.standard_normal([2, 5, 3, 3]).astype(np.float32)
    b = rng.standard_normal([5]).astype(np.float32)
    got = _run_ops(lambda x, b: sgops.fused_bias_act_ref(x, b, act="lrelu"), x, b)
    v = x + b[None, :, None, None]
    want = np.where(v > 0, v, 0.2 * v) * np.sqrt(2)
    assert np.abs(got - want).max() < 1e-4
    got2 = _run_ops(lambda x, b: sgops.fused_bias_act_ref(x, b, act="linear"), x, b)
    assert np.abs(got2 - v).max() < 1e-6


def test_act_codes():
    assert sgops.ACT_CODES == {"linear": 1, "relu": 2, "lrelu": 3, "tanh": 4, "sigmoid": 5,
                               "elu": 6, "selu": 7, "softplus": 8, "swish": 9}


# ------------------------------------------------------------------------ running Gs on CPU
def test_different_latents_give_different_images():
    model = _build("sg2-tiny-const-noise")
    lat = _latents(model, 2, seed=0)
    a = _run_model(model, lat)
    b = _run_model(model, lat)
    assert a.shape == (2, 3, 16, 16) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)  # constant noise: deterministic
    diff = np.abs(a[0] - a[1]).mean()
    assert diff > 0.1 * a.std(), "the mapping network must make the output depend on the latent"
    # Batch of one equals the corresponding row of a batch of two (grouped conv folding).
    one = _run_model(model, lat[1:])
    assert np.abs(one[0] - a[1]).max() < 1e-4


@pytest.mark.parametrize("name", ["sg2-tiny", "sg2-tiny-orig", "sg2-tiny-resnet"])
def test_tiny_runs(name):
    model = _build(name)
    out = _run_model(model, _latents(model, 2, seed=1))
    assert out.shape == (2, 3, 16, 16) and np.isfinite(out).all()
    assert out.std() > 1e-3


def test_fused_and_nonfused_agree():
    cfg = replace(PRESETS["sg2-tiny-const-noise"], fused_modconv=False)
    nonfused = build_gs(cfg)
    fused = _build("sg2-tiny-const-noise")
    lat = _latents(fused, 2, seed=2)
    a, b = _run_model(fused, lat), _run_model(nonfused, lat)
    assert np.abs(a - b).max() < 1e-4


def test_skip_image_is_lower_resolution_output():
    model = _build("sg2-tiny-const-noise")
    lat = _latents(model, 1, seed=3)
    feeds = {"latents_in:0": lat, "labels_in:0": np.zeros([1, 0], np.float32)}
    skips = model.meta["skip_images"]
    y8, y16, out = run_graph(model.graph_def, feeds, [skips[8], skips[16], "images_out:0"])
    assert y8.shape == (1, 3, 8, 8)
    np.testing.assert_array_equal(y16, out)


# ------------------------------------------------------------------------------ full size
@SLOW
@pytest.mark.parametrize("name", ["sg2-1024", "sg2-1024-cuda"])
def test_full_size(name):
    t0 = time.perf_counter()
    model = zoo.build(name)
    assert time.perf_counter() - t0 < 60
    n = len(model.graph_def.node)
    if name == "sg2-1024":
        assert abs(n - 2800) < 280
    assert abs(model.meta["num_params"] - 30.0e6) < 1.5e6
    assert 110e6 < model.graph_def.ByteSize() < 135e6
    assert model.meta["num_layers"] == 18


def test_upfirdn2d_ref_dynamic_shapes_and_tensor_kernel():
    """The form a reference runner needs: unknown N/H/W and the kernel as a tensor input."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, None, None, 1], name="x")
        k = tf.compat.v1.placeholder(tf.float32, [4, 4], name="k")
        y = sgops.upfirdn2d_ref(x, k, upx=2, upy=2, padx0=2, padx1=1, pady0=2, pady1=1)
        tf.identity(y, name="y")
    xv = np.random.default_rng(7).standard_normal([6, 5, 5, 1]).astype(np.float32)
    kv = sgops.setup_kernel([1, 3, 3, 1]) * 4
    (got,) = run_graph(g.as_graph_def(), {"x:0": xv, "k:0": kv}, ["y:0"])
    want = _np_upfirdn(xv.transpose(3, 0, 1, 2), kv, 2, 1, 2, 1).transpose(1, 2, 3, 0)
    assert got.shape == (6, 10, 10, 1) and np.abs(got - want).max() < 1e-5
