"""Tests of the StyleGAN (v1) ``Gs`` graph builder (graphsurgery.zoo.stylegan1)."""

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
from graphsurgery.zoo import stylegan1  # noqa: E402
from graphsurgery.zoo.stylegan1 import PRESETS, StyleGAN1Config, build_stylegan1  # noqa: E402

TINY = ["sg1-tiny", "sg1-tiny-linear", "sg1-tiny-const-noise", "sg1-tiny-fused"]
CONVS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput")
# Full-size builds take seconds each; they run by default (deselect with -m "not slow").
SLOW = pytest.mark.slow


@functools.cache
def _build(name: str) -> zoo.BuiltModel:
    return zoo.build(name)


def _ops(model: zoo.BuiltModel) -> Counter:
    return Counter(n.op for n in model.graph_def.node)


def _nodes(model: zoo.BuiltModel) -> dict:
    return {n.name: n for n in model.graph_def.node}


def _const_value(node) -> np.ndarray:
    return tf.make_ndarray(node.attr["value"].tensor)


def _input_const(model: zoo.BuiltModel, node, index: int) -> np.ndarray | None:
    src = _nodes(model).get(node.input[index].split(":")[0])
    return _const_value(src) if src is not None and src.op == "Const" else None


# ------------------------------------------------------------------ a minimal CPU runner
def _i32_const(name: str, values: list[int]):
    node = tf.compat.v1.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = tf.int32.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.array(values, np.int32)))
    return node


def _cpu_runnable(graph_def, seed: int = 1):
    """Drop the ``Assign`` leftovers, seed the noise, wrap NCHW convs in NHWC transposes."""
    assigns = {n.name for n in graph_def.node if n.op == "Assign"}
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.node.extend(
        [_i32_const("cpu/to_nhwc", [0, 2, 3, 1]), _i32_const("cpu/to_nchw", [0, 3, 1, 2])]
    )
    out.node.append(_i32_const("cpu/axis0", 0))
    for idx, node in enumerate(graph_def.node):
        if node.name in assigns:
            continue
        new = out.node.add()
        new.CopyFrom(node)
        del new.input[:]
        new.input.extend(i for i in node.input if i.lstrip("^") not in assigns)
        if node.op == "RandomStandardNormal":
            new.attr["seed"].i, new.attr["seed2"].i = seed, idx + 1
        if node.op not in CONVS or node.attr["data_format"].s != b"NCHW":
            continue
        new.name = f"{node.name}/nhwc"
        new.attr["data_format"].s = b"NHWC"
        for key in ("strides", "dilations"):
            if key in new.attr:
                n, c, h, w = new.attr[key].list.i
                new.attr[key].list.i[:] = [n, h, w, c]
        data = 2 if node.op == "Conv2DBackpropInput" else 0
        tin = out.node.add(name=f"{node.name}/in_nhwc", op="Transpose")
        tin.input.extend([new.input[data], "cpu/to_nhwc"])
        new.input[data] = tin.name
        if node.op == "Conv2DBackpropInput":
            sizes = out.node.add(name=f"{node.name}/sizes_nhwc", op="GatherV2")
            sizes.input.extend([new.input[0], "cpu/to_nhwc", "cpu/axis0"])
            for key in ("Tparams", "Tindices", "Taxis"):
                sizes.attr[key].type = tf.int32.as_datatype_enum
            new.input[0] = sizes.name
        tout = out.node.add(name=node.name, op="Transpose", input=[new.name, "cpu/to_nchw"])
        for t in (tin, tout):
            t.attr["T"].type = tf.float32.as_datatype_enum
            t.attr["Tperm"].type = tf.int32.as_datatype_enum
    return tf.compat.v1.graph_util.extract_sub_graph(out, ["images_out"])


def _run(model: zoo.BuiltModel, latents: np.ndarray, seed: int = 1) -> np.ndarray:
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(_cpu_runnable(model.graph_def, seed), name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run("images_out:0", {"latents_in:0": latents})


def _latents(model: zoo.BuiltModel, seed: int, n: int = 1) -> np.ndarray:
    size = model.meta["latent_size"]
    return np.random.default_rng(seed).standard_normal((n, size)).astype(np.float32)


# ------------------------------------------------------------------ registry and presets
def test_presets_registered():
    entries = {e.name: e for e in zoo.entries()}
    for name in [*TINY, "sg1-256", "sg1-1024"]:
        assert name in entries
    assert entries["sg1-1024"].full_size
    assert not entries["sg1-tiny"].full_size


@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_small_fast_and_described(name):
    _build("sg1-tiny")  # TensorFlow import and first-graph overhead out of the timing
    start = time.perf_counter()
    model = zoo.build(name)
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"{name} built in {elapsed:.2f} s"
    assert model.graph_def.ByteSize() < 1_000_000
    assert model.inputs == ["latents_in:0", "labels_in:0"]
    assert model.outputs == ["images_out:0"]
    meta, cfg = model.meta, PRESETS[name]
    assert meta["kind"] == "stylegan1"
    assert meta["resolution"] == cfg.resolution
    assert meta["num_layers"] == 2 * int(np.log2(cfg.resolution)) - 2
    assert meta["structure"] == cfg.structure
    assert meta["randomize_noise"] == cfg.randomize_noise
    assert meta["architecture"]
    assert meta["inputs"] == model.inputs and meta["outputs"] == model.outputs
    nodes = _nodes(model)
    for tensor in [*model.inputs, *model.outputs, meta["dlatents_tensor"], meta["mapping_output"]]:
        assert tensor.split(":")[0] in nodes
    assert nodes["images_out"].op == "Identity"
    assert all(n in nodes for n in meta["noise_nodes"])
    assert len(meta["noise_nodes"]) == meta["num_layers"]


def test_config_validation_and_nf():
    with pytest.raises(ValueError):
        StyleGAN1Config(resolution=48)
    with pytest.raises(ValueError):
        StyleGAN1Config(resolution=4)
    with pytest.raises(ValueError):
        StyleGAN1Config(structure="fixed")
    cfg = StyleGAN1Config()
    assert [cfg.nf(s) for s in range(1, 10)] == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert cfg.num_layers == 18
    assert cfg.fused_at(128) and not cfg.fused_at(64)


def test_placeholders_and_output_shapes():
    model = _build("sg1-tiny")
    nodes = _nodes(model)
    dims = [d.size for d in nodes["latents_in"].attr["shape"].shape.dim]
    assert dims == [-1, 16]
    assert [d.size for d in nodes["labels_in"].attr["shape"].shape.dim] == [-1, 0]
    fixed = build_stylegan1(replace(PRESETS["sg1-tiny"], batch=2))
    dims = [d.size for d in _nodes(fixed)["latents_in"].attr["shape"].shape.dim]
    assert dims == [2, 16]


# ------------------------------------------------------------------ op histograms
@pytest.mark.parametrize("name", ["sg1-tiny", "sg1-tiny-const-noise", "sg1-tiny-fused"])
def test_recursive_structure_has_v1_control_flow(name):
    ops = _ops(_build(name))
    assert ops["Switch"] > 50
    assert 1 <= ops["Merge"] < ops["Switch"]
    assert ops["Greater"] >= 1 and ops["Less"] >= 1
    for op in ("If", "StatelessIf", "While", "StatelessWhile", "PartitionedCall"):
        assert ops[op] == 0
    # the predicates compare the frozen synthesis lod with constants
    model = _build(name)
    nodes = _nodes(model)
    for node in model.graph_def.node:
        if node.op in ("Greater", "Less"):
            src = nodes[node.input[0].split(":")[0]]
            while src.op == "Switch":
                src = nodes[src.input[0].split(":")[0]]
            assert src.name == "G_synthesis/lod/read"
            assert _input_const(model, node, 1) is not None


def test_linear_structure_blends_without_control_flow():
    model = _build("sg1-tiny-linear")
    ops = _ops(model)
    assert ops["Switch"] == 0 and ops["Merge"] == 0
    # lerp_clip: clip_by_value(lod - k, 0, 1) = Maximum(Minimum(...)); one per grown resolution
    assert ops["Minimum"] == int(np.log2(model.meta["resolution"])) - 2
    names = {n.name for n in model.graph_def.node}
    assert any(n.startswith("G_synthesis/Grow_lod0/") for n in names)


@pytest.mark.parametrize("name", TINY)
def test_common_op_histogram(name):
    model = _build(name)
    ops = _ops(model)
    assert ops["Assign"] == 1
    assert ops["IdentityN"] >= model.meta["num_layers"]
    assert ops["DepthwiseConv2dNative"] == int(np.log2(model.meta["resolution"])) - 2
    assert ops["Select"] == 1  # truncation
    assert ops["MatMul"] == PRESETS[name].mapping_layers + model.meta["num_layers"]
    assert (ops["RandomStandardNormal"] > 0) == model.meta["randomize_noise"]
    if model.meta["randomize_noise"]:
        assert ops["RandomStandardNormal"] == model.meta["num_layers"]
    for node in model.graph_def.node:
        if node.op in CONVS:
            assert node.attr["data_format"].s == b"NCHW", node.name
        if node.op == "DepthwiseConv2dNative":
            assert list(node.attr["strides"].list.i) == [1, 1, 1, 1]
            kernel = _input_const(model, node, 1)
            assert kernel is not None and kernel.shape[:2] == (3, 3)
            ref = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
            np.testing.assert_allclose(kernel[:, :, 0, 0], ref)


@pytest.mark.parametrize("name", ["sg1-tiny", "sg1-tiny-linear"])
def test_six_d_upscale(name):
    model = _build(name)
    reshapes6 = [
        n
        for n in model.graph_def.node
        if n.op == "Reshape" and (s := _input_const(model, n, 1)) is not None and s.size == 6
    ]
    tiles6 = [
        n
        for n in model.graph_def.node
        if n.op == "Tile" and (m := _input_const(model, n, 1)) is not None and m.size == 6
    ]
    assert reshapes6 and tiles6
    assert any(list(_input_const(model, t, 1)) == [1, 1, 1, 2, 1, 2] for t in tiles6)
    shape = _input_const(model, reshapes6[0], 1)
    assert shape[0] == -1 and shape[3] == 1 and shape[5] == 1


def test_style_modulation_is_five_d_and_sliced():
    model = _build("sg1-tiny")
    styles = [
        n
        for n in model.graph_def.node
        if n.op == "Reshape" and "StyleMod" in n.name and _input_const(model, n, 1) is not None
    ]
    assert len(styles) == model.meta["num_layers"]
    for node in styles:
        shape = list(_input_const(model, node, 1))
        assert len(shape) == 5 and shape[:2] == [-1, 2] and shape[3:] == [1, 1]
    consumers = Counter(
        n.op for n in model.graph_def.node for i in n.input if i.split(":")[0] == styles[0].name
    )
    assert consumers["StridedSlice"] == 2


def test_const_input_tiled_over_batch_from_shape():
    model = _build("sg1-tiny")
    nodes = _nodes(model)
    tile = next(n for n in model.graph_def.node if n.op == "Tile" and "4x4/Const" in n.name)
    assert nodes[tile.input[0]].op == "Identity"  # const/read
    assert list(_const_value(nodes[tile.input[0].replace("/read", "")]).shape) == [1, 16, 4, 4]
    pack = nodes[tile.input[1]]
    assert pack.op == "Pack"
    first = nodes[pack.input[0]]
    assert first.op == "StridedSlice" and nodes[first.input[0]].op == "Shape"


def test_constant_noise_is_frozen():
    model = _build("sg1-tiny-const-noise")
    nodes = _nodes(model)
    assert _ops(model)["RandomStandardNormal"] == 0
    for i, name in enumerate(model.meta["noise_nodes"]):
        res = 2 ** (i // 2 + 2)
        assert nodes[name].op == "Const"
        assert _const_value(nodes[name]).shape == (1, 1, res, res)


def test_fused_upconv():
    model = _build("sg1-tiny-fused")
    ops = _ops(model)
    assert model.meta["fused_resolutions"] == [128]
    assert ops["Conv2DBackpropInput"] == 1
    assert ops["AddN"] == 1 and ops["Pad"] == 1 and ops["Transpose"] == 1
    nodes = _nodes(model)
    conv = next(n for n in model.graph_def.node if n.op == "Conv2DBackpropInput")
    assert conv.name.startswith("G_synthesis/cond/cond/cond/cond/128x128/Conv0_up/")
    assert list(conv.attr["strides"].list.i) == [1, 1, 2, 2]
    assert nodes[conv.input[0]].op == "Pack"  # output shape built from the batch size
    weight = nodes[conv.input[1].split(":")[0]]
    while weight.op == "Switch":
        weight = nodes[weight.input[0]]
    assert weight.op == "AddN" and len(weight.input) == 4
    assert _ops(_build("sg1-tiny"))["Conv2DBackpropInput"] == 0


def test_equalised_learning_rate_weights():
    model = _build("sg1-tiny")
    nodes = _nodes(model)
    stored = _const_value(nodes["G_mapping/Dense0/weight"])
    assert 50 < stored.std() < 200  # N(0, 1/lrmul) with lrmul = 0.01
    read = "G_mapping/Dense0/weight/read"
    mul = next(n for n in model.graph_def.node if n.op == "Mul" and read in n.input)
    coef = _input_const(model, mul, 1)
    np.testing.assert_allclose(coef, 0.01 / np.sqrt(16), rtol=1e-5)
    synth = _const_value(nodes["G_synthesis/4x4/Conv/weight"])
    assert 0.5 < synth.std() < 2


def test_frozen_graph_fails_to_import_with_float_ref():
    model = _build("sg1-tiny")
    assign = next(n for n in model.graph_def.node if n.op == "Assign")
    assert assign.input[0] == "G_synthesis/lod"
    with tf.Graph().as_default(), pytest.raises(ValueError, match="float_ref") as err:
        tf.graph_util.import_graph_def(model.graph_def, name="")
    assert "Assign" in str(err.value)


# ------------------------------------------------------------------ numerics (CPU)
@pytest.mark.parametrize("name", TINY)
def test_different_latents_give_different_images(name):
    model = _build(name)
    za, zb = _latents(model, 1), _latents(model, 2)
    a, b = _run(model, za), _run(model, zb)
    res = model.meta["resolution"]
    assert a.shape == (1, 3, res, res)
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert np.abs(a).max() < 10 and np.abs(b).max() < 10
    assert np.abs(a).mean() > 0.05
    assert np.abs(a - b).mean() > 1e-2
    again = _run(model, za)  # same seed, same noise: deterministic
    np.testing.assert_allclose(again, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lod", [0.0, 0.5])
def test_recursive_and_linear_agree(lod):
    base = replace(PRESETS["sg1-tiny-const-noise"], lod=lod)
    rec = build_stylegan1(base)
    lin = build_stylegan1(replace(base, structure="linear"))
    z = _latents(rec, 3, n=2)
    np.testing.assert_allclose(_run(rec, z), _run(lin, z), rtol=1e-4, atol=1e-4)


def test_lod_changes_the_image():
    base = PRESETS["sg1-tiny-const-noise"]
    z = _latents(_build("sg1-tiny-const-noise"), 4)
    full = _run(_build("sg1-tiny-const-noise"), z)
    coarse = _run(build_stylegan1(replace(base, lod=1.0)), z)
    assert np.abs(full - coarse).mean() > 1e-2
    # lod 1: the 16 px image upscaled, so each 2x2 block is constant
    np.testing.assert_allclose(coarse[..., ::2, ::2], coarse[..., 1::2, 1::2], atol=1e-6)


# ------------------------------------------------------------------ full size (slow)
@SLOW
def test_sg1_256():
    model = _build("sg1-256")
    ops = _ops(model)
    assert ops["Conv2DBackpropInput"] == 2
    assert model.meta["fused_resolutions"] == [128, 256]


@SLOW
def test_sg1_1024_size():
    _build("sg1-tiny")
    start = time.perf_counter()
    model = stylegan1.build_stylegan1(PRESETS["sg1-1024"])
    elapsed = time.perf_counter() - start
    assert elapsed < 60
    assert abs(len(model.graph_def.node) - 2700) <= 270
    assert abs(model.meta["num_params"] - 26e6) <= 2.6e6
    floats = sum(
        int(np.prod([d.size for d in n.attr["value"].tensor.tensor_shape.dim]))
        for n in model.graph_def.node
        if n.op == "Const" and n.attr["dtype"].type == tf.float32.as_datatype_enum
    )
    assert abs(floats - 26e6) <= 2.6e6
    ops = _ops(model)
    assert ops["Switch"] > 300 and ops["Merge"] == 15
    assert ops["RandomStandardNormal"] == 18 and ops["Conv2DBackpropInput"] == 4
    assert model.meta["num_layers"] == 18
