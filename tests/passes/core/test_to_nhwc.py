"""core::to_nhwc: whole-graph NCHW -> NHWC with no Transpose inside the network.

NCHW graphs do not run on the CPU, so numerics go through the reference runner
(``assert_equivalent``: NCHW ops wrapped in transposes) and NHWC outputs are compared
against the transposed reference.
"""

from __future__ import annotations

import functools
import itertools
import logging
import sys
from pathlib import Path

import graphsurgery.passes.core.to_nhwc  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf  # noqa: E402
from graphsurgery.passes.core._layout import (
    P,
    canonical_strided_slice,
    is_trivial,
    permute,
    reshape_compatible,
)

import graphsurgery as gs
from graphsurgery.runners import ReferenceRunner
from graphsurgery.testing import assert_equivalent, random_feeds, run_pass

PASS = "core::to_nhwc"
NCHW_OPS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "BiasAdd", "MaxPool",
            "AvgPool", "FusedBatchNormV3", "DepthToSpace", "SpaceToDepth")


# ----------------------------------------------------------------------------- helpers
def nchw_ops(graph: gs.Graph) -> list[str]:
    return [n.name for n in graph if n.attr("data_format") == "NCHW"]


def load(tf_graph: object, inputs: list[str], outputs: list[str]) -> gs.Graph:
    return gs.load(tf_graph.as_graph_def(), inputs=inputs, outputs=outputs)


def assert_nhwc_equivalent(before: gs.Graph, after: gs.Graph, max_rel: float = 1e-5) -> None:
    """``after`` declares NHWC outputs (and maybe NHWC inputs): compare with the reference."""
    feeds = random_feeds(before)
    after_feeds = {}
    for ref in after.inputs:
        v = feeds[ref.node]
        shape = after.static_shape(ref)
        if v.ndim == 4 and shape is not None and tuple(shape) != v.shape:
            v = np.ascontiguousarray(v.transpose(P))
        after_feeds[ref.node] = v
    with ReferenceRunner(before, noise="seeded") as a:
        ref_out = a.run(feeds)
    with ReferenceRunner(after, noise="seeded") as b:
        got = b.run(after_feeds)
    for x, y in zip(ref_out, got):
        if x.ndim == 4:
            x = x.transpose(P)
        assert x.shape == y.shape
        err = np.abs(x - y).max() / max(np.ptp(x), 1e-12)
        assert err <= max_rel, err


def _w(rng: np.random.Generator, *shape: int, scale: float = 0.3) -> object:
    return tf.constant((rng.standard_normal(shape) * scale).astype(np.float32))


def build_block(noise: str = "random") -> gs.Graph:
    """A StyleGAN-like NCHW block: tiled learned const, conv + bias + noise + relu, instance
    norm, style modulation by a [N, C] vector reshaped to [N, C, 1, 1] (and a [C, 1, 1]
    non-constant operand), DepthToSpace, Pad, StridedSlice, Concat, depthwise and 1x1 conv."""
    C, Z = 8, 6
    rng = np.random.default_rng(1)
    g = tf.Graph()
    with g.as_default():
        z = tf.compat.v1.placeholder(tf.float32, [1, Z], name="latents")
        inputs = ["latents"]
        x = tf.tile(_w(rng, 1, C, 4, 4, scale=1.0), [1, 1, 1, 1])
        x = tf.nn.conv2d(x, _w(rng, 3, 3, C, C), [1, 1, 1, 1], "SAME", data_format="NCHW")
        x = tf.nn.bias_add(x, _w(rng, C), data_format="NCHW")
        if noise == "random":
            n = tf.random.normal([1, 1, 4, 4])
        else:
            n = tf.compat.v1.placeholder(tf.float32, [1, 1, 4, 4], name="noise")
            inputs.append("noise")
        x = x + n * tf.reshape(_w(rng, C), [1, -1, 1, 1])
        x = tf.nn.relu(x)
        x = x - tf.reduce_mean(x, axis=[2, 3], keepdims=True)
        x = x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=[2, 3], keepdims=True) + 1e-8)
        s = tf.matmul(z, _w(rng, Z, C))
        x = x * (tf.reshape(s, [-1, C, 1, 1]) + 1.0) + tf.reshape(s, [C, 1, 1])
        x = tf.nn.depth_to_space(x, 2, data_format="NCHW")  # [1, C/4, 8, 8]
        x = tf.pad(x, [[0, 0], [0, 0], [1, 1], [1, 1]])
        x = x[:, :, 1:-1, 1:-1]
        x = tf.concat([x, x * 2.0], axis=1)
        x = tf.nn.depthwise_conv2d(x, _w(rng, 3, 3, C // 2, 1), [1, 1, 1, 1], "SAME",
                                   data_format="NCHW")
        x = tf.nn.conv2d(x, _w(rng, 1, 1, C // 2, 3), [1, 1, 1, 1], "VALID", data_format="NCHW")
        tf.identity(x, name="images_out")
    return load(g, inputs, ["images_out"])


@functools.cache
def _block(noise: str) -> gs.Graph:
    return build_block(noise)


def block(noise: str = "random") -> gs.Graph:
    return _block(noise).copy()


# ----------------------------------------------------------------------------- helpers' maths
def _factor_shapes(n: int, k: int) -> list[tuple[int, ...]]:
    if k == 1:
        return [(n,)]
    return [(d, *r) for d in range(1, n + 1) if n % d == 0 for r in _factor_shapes(n // d, k - 1)]


def test_reshape_compatible_and_trivial_agree_with_numpy() -> None:
    wrong = []
    for n in (4, 6, 12):
        shapes = _factor_shapes(n, 4)
        for a, b in itertools.product(shapes, shapes):
            x = np.arange(n).reshape(a)
            same = np.array_equal(np.transpose(x.reshape(b), P),
                                  np.transpose(x, P).reshape(permute(b)))
            if reshape_compatible(a, b) and not same:
                wrong.append((a, b))
        for a in shapes:
            for perm in itertools.permutations(range(4)):
                x = np.arange(n).reshape(a)
                flat_same = np.array_equal(np.transpose(x, perm).reshape(-1), x.reshape(-1))
                if is_trivial(a, perm) != flat_same:
                    wrong.append((a, perm))
    assert not wrong
    assert reshape_compatible((1, 8, 4, 4), (1, 8, 16, 1))  # merge H, W
    assert not reshape_compatible((1, 8, 4, 4), (1, 32, 4, 1))  # merge C with H
    assert reshape_compatible((-1, 8, 4, 4), (-1, 8, 2, 8))
    assert is_trivial((1, 16, 1, 1), P) and is_trivial((1, 1, 8, 8), P)
    assert not is_trivial((1, 3, 8, 8), P)


def test_canonical_strided_slice() -> None:
    # x[..., 1:3] with an ellipsis, and x[:, 0] (shrink, trailing dims implicit)
    spec = canonical_strided_slice([0, 1], [0, 3], [1, 1], rank=4, ellipsis_mask=1)
    assert spec is not None and spec.begin == [0, 0, 0, 1] and spec.end == [0, 0, 0, 3]
    assert spec.begin_mask == [True, True, True, False]
    spec = canonical_strided_slice([0, 0], [0, 1], [1, 1], rank=4, begin_mask=1, end_mask=1,
                                   shrink_axis_mask=2)
    assert spec is not None and spec.shrink == [False, True, False, False]
    assert canonical_strided_slice([0], [1], [1], rank=4, new_axis_mask=1) is None


# ----------------------------------------------------------------------------- the block
def test_block_nchw_output_one_boundary_transpose() -> None:
    g = block()
    before = g.copy()
    counts = g.op_counts()
    assert counts["Transpose"] == 0 and len(nchw_ops(g)) == 5
    assert (counts["Conv2D"], counts["Reshape"], counts["Tile"]) == (2, 3, 1)
    record = run_pass(g, PASS)
    assert record.changed
    after = g.op_counts()
    assert after["Transpose"] == 1  # only the boundary one
    assert g.node("images_out").op == "Transpose"  # the output keeps its name
    assert nchw_ops(g) == []
    for op in ("Conv2D", "DepthwiseConv2dNative", "BiasAdd", "DepthToSpace", "Tile", "Pad",
               "StridedSlice", "ConcatV2", "Mean", "RandomStandardNormal", "MatMul"):
        assert after[op] == counts[op], op
    # the [C, 1, 1] operand is re-broadcast as [C] by a reshape of the [N, C] vector that
    # replaces the original reshape; every other reshape only gets a permuted target
    assert after["Reshape"] == counts["Reshape"]
    assert g.node("images_out").input_node(0).op == "Conv2D"
    assert_equivalent(before, g, max_rel=1e-5)


def test_block_rewrites_dimension_lists() -> None:
    g = block()
    run_pass(g, PASS)
    means = g.nodes("Mean")
    assert all(sorted(g.const_value(m.data_inputs[1]).tolist()) == [1, 2] for m in means)
    pad = g.nodes("Pad")[0]
    assert g.const_value(pad.data_inputs[1]).tolist() == [[0, 0], [1, 1], [1, 1], [0, 0]]
    concat = g.nodes("ConcatV2")[0]
    assert int(g.const_value(concat.data_inputs[-1])) == 3
    noise = g.nodes("RandomStandardNormal")[0]
    assert g.const_value(noise.data_inputs[0]).tolist() == [1, 4, 4, 1]
    ss = g.nodes("StridedSlice")[0]
    assert g.const_value(ss.data_inputs[1]).tolist() == [0, 1, 1, 0]
    assert g.nodes("Conv2D")[0].attr("data_format") == "NHWC"


def test_block_nhwc_output_no_transpose() -> None:
    g = block()
    before = g.copy()
    run_pass(g, PASS, output_layout="NHWC")
    assert g.op_counts()["Transpose"] == 0
    assert g.shape("images_out") == (1, 8, 8, 3)
    assert_nhwc_equivalent(before, g)


def test_input_layouts() -> None:
    g = block("input")  # noise [1, 1, 4, 4] is a graph input
    before = g.copy()
    run_pass(g, PASS, output_layout="NHWC")  # input_layout NCHW: a Reshape, not a Transpose
    assert g.op_counts()["Transpose"] == 0
    assert g.node("noise").attr("shape") == (1, 1, 4, 4)
    assert_nhwc_equivalent(before, g)
    g = block("input")
    run_pass(g, PASS, output_layout="NHWC", input_layout="NHWC")
    assert g.node("noise").attr("shape") == (1, 4, 4, 1)
    assert g.op_counts()["Transpose"] == 0
    assert_nhwc_equivalent(before, g)


def test_image_input_boundary_transpose() -> None:
    rng = np.random.default_rng(2)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 3, 6, 6], name="x")
        y = tf.nn.conv2d(x, _w(rng, 3, 3, 3, 4), [1, 1, 2, 2], "SAME", data_format="NCHW")
        tf.identity(tf.nn.relu(y), name="y")
    graph = load(g, ["x"], ["y"])
    before = graph.copy()
    work = graph.copy()
    run_pass(work, PASS)
    assert work.op_counts()["Transpose"] == 2  # one per boundary
    assert work.nodes("Conv2D")[0].attr("strides") == [1, 2, 2, 1]
    assert_equivalent(before, work, max_rel=1e-5)
    work = graph.copy()
    run_pass(work, PASS, input_layout="NHWC", output_layout="NHWC")
    assert work.op_counts()["Transpose"] == 0
    assert work.node("x").attr("shape") == (1, 6, 6, 3)
    assert_nhwc_equivalent(before, work)


def test_more_op_kinds() -> None:
    """Pools, batch norm, transposed conv, SpaceToDepth, MirrorPad, Slice, Split, ReverseV2,
    a reduction to [N, C] feeding a MatMul, Squeeze/ExpandDims, Select, ArgMax, Shape."""
    C = 4
    rng = np.random.default_rng(3)
    g = tf.Graph()
    with g.as_default():
        z = tf.compat.v1.placeholder(tf.float32, [1, 5], name="z")
        x = _w(rng, 1, C, 4, 4) * tf.reshape(tf.matmul(z, _w(rng, 5, C)), [1, C, 1, 1])
        x = tf.nn.conv2d_transpose(x, _w(rng, 3, 3, C, C), tf.constant([1, C, 8, 8]),
                                   [1, 1, 2, 2], "SAME", data_format="NCHW")
        x, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x, _w(rng, C), _w(rng, C), mean=_w(rng, C), variance=tf.abs(_w(rng, C)) + 0.5,
            is_training=False, data_format="NCHW")
        x = tf.nn.max_pool2d(x, [1, 1, 2, 2], [1, 1, 1, 1], "SAME", data_format="NCHW")
        x = tf.nn.avg_pool2d(x, [1, 1, 3, 3], [1, 1, 1, 1], "SAME", data_format="NCHW")
        x = tf.pad(x, [[0, 0], [0, 0], [1, 1], [2, 2]], mode="REFLECT")
        x = tf.slice(x, [0, 0, 1, 2], [1, C, 8, 8])
        a, b = tf.split(x, 2, axis=1)
        x = tf.concat([tf.reverse(a, [3]), b], axis=1)
        x = tf.nn.space_to_depth(x, 2, data_format="NCHW")  # [1, 4C, 4, 4]
        x = tf.where(x > 0.0, x, x * 0.1)
        v = tf.reduce_mean(x, axis=[2, 3])  # [1, 4C]
        v = tf.matmul(v, _w(rng, 4 * C, 4 * C))
        v4 = tf.expand_dims(tf.expand_dims(v, 2), 3)  # [1, 4C, 1, 1]
        x = x * v4
        am = tf.cast(tf.argmax(x, axis=1), tf.float32)  # [1, 4, 4]
        x = x + tf.expand_dims(am, 1)
        sq = tf.squeeze(tf.reduce_max(x, axis=[2, 3], keepdims=True), [2, 3])  # [1, 4C]
        channels = tf.cast(tf.raw_ops.Shape(input=x)[1], tf.float32)
        x = x * tf.reshape(sq, [1, -1, 1, 1]) / channels
        x = tf.nn.conv2d(x, _w(rng, 1, 1, 4 * C, 2), [1, 1, 1, 1], "VALID", data_format="NCHW")
        tf.identity(x, name="out")
        tf.identity(sq, name="vec")
    graph = load(g, ["z"], ["out", "vec"])
    before = graph.copy()
    ops = graph.op_counts()
    assert ops["Transpose"] == 0 and len(nchw_ops(graph)) == 6
    run_pass(graph, PASS)
    after = graph.op_counts()
    assert nchw_ops(graph) == []
    assert after["Transpose"] == 1  # the 4-D output boundary; "vec" is 2-D
    for op in ("Conv2DBackpropInput", "FusedBatchNormV3", "MaxPool", "AvgPool", "MirrorPad",
               "Slice", "Split", "ReverseV2", "SpaceToDepth", "SelectV2", "ArgMax", "MatMul"):
        assert after[op] == ops[op], op
    assert graph.const_value(graph.nodes("Conv2DBackpropInput")[0].data_inputs[0]).tolist() == [
        1, 8, 8, C]
    assert "GatherV2" in after  # Shape of an NHWC tensor, gathered back into NCHW order
    assert_equivalent(before, graph, max_rel=1e-5)


def test_fallback_is_explicit_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    """Flattening [N, C, H, W] -> [N, C*H*W] keeps the NCHW element order: an explicit
    Transpose stays, and is reported. (Un-flattening a dense layer's output does not: its
    weight's columns are permuted, see test_dense_reshaped_to_nchw_gets_nhwc_columns.)"""
    rng = np.random.default_rng(4)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 6], name="z")
        x = tf.reshape(tf.matmul(x, _w(rng, 6, 2 * 9)), [1, 2, 3, 3], name="unflatten")
        x = tf.nn.conv2d(x, _w(rng, 3, 3, 2, 2), [1, 1, 1, 1], "SAME", data_format="NCHW")
        flat = tf.reshape(x, [1, -1], name="flatten")
        tf.identity(tf.matmul(flat, _w(rng, 18, 4)), name="out")
    graph = load(g, ["z"], ["out"])
    before = graph.copy()
    with caplog.at_level(logging.INFO, logger="graphsurgery.passes.core.to_nhwc"):
        run_pass(graph, PASS)
    assert graph.op_counts()["Transpose"] == 1
    assert "1 fallback Transpose(s)" in caplog.text
    assert "-> flatten" in caplog.text and "unflatten:0 -> Conv2D" not in caplog.text
    assert_equivalent(before, graph, max_rel=1e-5)


def test_transposes_cancel() -> None:
    """NCHW -> NHWC -> (NHWC-only op) -> NCHW round trips of the graph disappear."""
    rng = np.random.default_rng(5)
    g = tf.Graph()
    with g.as_default():
        z = tf.compat.v1.placeholder(tf.float32, [1, 4], name="z")
        x = _w(rng, 1, 3, 4, 4) * tf.reshape(tf.matmul(z, _w(rng, 4, 3)), [1, 3, 1, 1])
        x = tf.nn.conv2d(x, _w(rng, 3, 3, 3, 3), [1, 1, 1, 1], "SAME", data_format="NCHW")
        t = tf.transpose(x, [0, 2, 3, 1])
        t = tf.compat.v1.image.resize_nearest_neighbor(t, [8, 8])
        x = tf.transpose(t, [0, 3, 1, 2])
        x = tf.nn.conv2d(x, _w(rng, 1, 1, 3, 3), [1, 1, 1, 1], "SAME", data_format="NCHW")
        tf.identity(x, name="out")
    graph = load(g, ["z"], ["out"])
    before = graph.copy()
    assert graph.op_counts()["Transpose"] == 2
    run_pass(graph, PASS, output_layout="NHWC")
    assert graph.op_counts()["Transpose"] == 0
    assert_nhwc_equivalent(before, graph)


def test_nhwc_graph_unchanged_and_idempotent() -> None:
    rng = np.random.default_rng(6)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 3], name="x")
        y = tf.nn.conv2d(x, _w(rng, 3, 3, 3, 3), [1, 1, 1, 1], "SAME")
        tf.identity(tf.reduce_mean(y, axis=[1, 2], keepdims=True) + y, name="y")
    graph = load(g, ["x"], ["y"])
    assert not run_pass(graph, PASS).changed
    g2 = block()
    run_pass(g2, PASS)
    again = run_pass(g2, PASS)
    assert not again.changed


def test_nhwc_network_with_an_nchw_output_gives_nhwc_on_request() -> None:
    """An NHWC network (a TF2 port) that transposes its image to NCHW at the end: the
    default keeps that interface; output_layout=NHWC drops the final Transpose."""
    rng = np.random.default_rng(7)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 3], name="x")
        y = tf.nn.conv2d(x, _w(rng, 3, 3, 3, 3), [1, 1, 1, 1], "SAME")
        img = tf.transpose(y + 1.0, [0, 3, 1, 2])
        with tf.control_dependencies([_w(rng, 2)]):  # as a SavedModel's output Identity
            tf.identity(img, name="y")
    graph = load(g, ["x"], ["y"])
    before = graph.copy()
    assert not run_pass(graph, PASS).changed
    assert graph.op_counts()["Transpose"] == 1
    record = run_pass(graph, PASS, output_layout="NHWC")
    assert record.changed and graph.op_counts().get("Transpose", 0) == 0
    assert graph.shape(graph.outputs[0]) == (1, 4, 4, 3)
    feeds = random_feeds(before)
    with ReferenceRunner(before) as a, ReferenceRunner(graph) as b:
        np.testing.assert_allclose(a.run(feeds)[0].transpose(P), b.run(feeds)[0], rtol=1e-6)
    assert not run_pass(graph, PASS, output_layout="NHWC").changed


# ----------------------------------------------------------------------------- zoo
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stylegan"))


def test_sg1_tiny_prepared() -> None:
    """sg1-tiny after the generic preparation still holds the 6-D upscales (another pass
    lowers them): those keep reported Transposes around them; everything else converts."""
    from prep import prepared

    _, graph = prepared("sg1-tiny")
    before = graph.copy()
    ops = graph.op_counts()
    upscales = [n for n in graph.nodes("Reshape") if graph.shape(n.output()) is not None
                and len(graph.shape(n.output())) == 6]
    assert ops["Transpose"] == 0 and len(upscales) == 3
    n_nchw = len(nchw_ops(graph))
    record = run_pass(graph, PASS)
    after = graph.op_counts()
    assert nchw_ops(graph) == [] and n_nchw == 11
    assert after["Transpose"] == 2 * len(upscales) + 1
    for t in graph.nodes("Transpose"):
        assert t.name == "images_out" or "Upscale2D" in t.name or "Upscale2D" in " ".join(
            u.name for u, _ in graph.consumers(t.output()))
    for op in ("Conv2D", "DepthwiseConv2dNative", "Mean", "MatMul", "Tile",
               "RandomStandardNormal", "StridedSlice"):
        assert after[op] == ops[op], op
    assert record.changed
    assert_equivalent(before, graph, max_rel=1e-5)


# ----------------------------------------------------------------------------- TFLite
@pytest.mark.parametrize("layout,expected", [("NHWC", 0), ("NCHW", 1)])
def test_tflite_transpose_audit(tmp_path: Path, layout: str, expected: int) -> None:
    from graphsurgery.export import audit_tflite, convert_tflite

    g = block("input")
    run_pass(g, PASS, output_layout=layout)
    path = tmp_path / "model.tflite"
    convert_tflite(g, path)
    audit = audit_tflite(path, analyzer=False)
    assert audit.transpose_count == expected, audit.summary()
    assert audit.max_rank <= 4
    assert not [v for v in audit.violations if "TRANSPOSE" in v or "transpose" in v]


def test_sg1_tiny_after_rank_lowering_has_no_inner_transpose() -> None:
    """In the pipeline's order (rank lowering first), only the boundary Transpose is left;
    with output_layout=NHWC none at all."""
    import graphsurgery.passes.stylegan  # noqa: F401
    from prep import prepared

    _, graph = prepared("sg1-tiny")
    for pass_id in ("stylegan::lower_upscale_6d", "stylegan::lower_style_5d"):
        run_pass(graph, pass_id)
    before = graph.copy()
    ops = graph.op_counts()
    assert ops.get("Transpose", 0) == 0 and len(nchw_ops(graph)) >= 11
    run_pass(graph, PASS)
    assert graph.op_counts()["Transpose"] == 1 and graph.node("images_out").op == "Transpose"
    assert nchw_ops(graph) == []
    assert_equivalent(before, graph, max_rel=1e-5)
    nhwc = before.copy()
    run_pass(nhwc, PASS, output_layout="NHWC")
    assert nhwc.op_counts().get("Transpose", 0) == 0
    assert_nhwc_equivalent(before, nhwc)


def _dense_to_nchw(bias_before_reshape: bool, shared: bool = False) -> gs.Graph:
    """ProGAN's 4x4 block: dense [N, Z] -> [N, C*4*4] reshaped to NCHW [N, C, 4, 4], then
    bias, leaky ReLU and a conv (optionally a per-column bias before the reshape, or the
    dense output also read by another output)."""
    C, Z = 6, 5
    rng = np.random.default_rng(3)
    g = tf.Graph()
    outputs = ["images_out"]
    with g.as_default():
        z = tf.compat.v1.placeholder(tf.float32, [None, Z], name="latents")
        d = tf.matmul(z, _w(rng, Z, C * 16, scale=1.0)) * 0.5
        if bias_before_reshape:
            d = d + _w(rng, C * 16)
        if shared:
            tf.identity(d, name="dense_out")
            outputs.append("dense_out")
        x = tf.reshape(d, [-1, C, 4, 4])
        x = x + tf.reshape(_w(rng, C), [1, -1, 1, 1])
        x = tf.maximum(x * 0.2, x)
        x = tf.nn.conv2d(x, _w(rng, 3, 3, C, 3), [1, 1, 1, 1], "SAME", data_format="NCHW")
        tf.identity(x, name="images_out")
    return load(g, ["latents"], outputs)


@pytest.mark.parametrize("bias_before_reshape", [False, True])
def test_dense_reshaped_to_nchw_gets_nhwc_columns(bias_before_reshape: bool) -> None:
    g = _dense_to_nchw(bias_before_reshape)
    before = g.copy()
    counts = g.op_counts()
    assert counts["Transpose"] == 0 and counts["Reshape"] == 2
    run_pass(g, PASS)
    after = g.op_counts()
    assert after["Transpose"] == 1  # the NCHW output boundary only: none after the reshape
    assert g.node("images_out").op == "Transpose"
    reshape = [n for n in g.nodes("Reshape") if g.node(n.data_inputs[0].node).op != "Const"]
    assert any(list(g.const_value(n.data_inputs[1])) == [-1, 4, 4, 6] for n in reshape)
    assert_equivalent(before, g, max_rel=1e-5)


def test_dense_with_another_consumer_keeps_its_columns() -> None:
    g = _dense_to_nchw(False, shared=True)
    before = g.copy()
    run_pass(g, PASS)
    assert g.op_counts()["Transpose"] == 2  # the fallback after the reshape, and the output
    assert_equivalent(before, g, max_rel=1e-5)
