"""stylegan::lower_style_5d: 5-D style reshape + shrink slices -> 4-D view + range slices;
with stylegan::lower_upscale_6d, no StyleGAN v1 tensor above rank 4."""

import graphsurgery.passes.stylegan.lower_style_5d  # noqa: F401
import graphsurgery.passes.stylegan.lower_upscale_6d  # noqa: F401
import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.check import lint_tflite
from graphsurgery.testing import assert_equivalent, check_pass, run_pass

from .prep import prepared

PASS = "stylegan::lower_style_5d"


def _high_rank(graph):
    return sorted(str(ref) for ref, t in graph.infer().items()
                  if t.shape is not None and len(t.shape) > 4)


def _rank5_reshapes(graph):
    return [n.name for n in graph.nodes("Reshape") if len(graph.shape(n.output()) or ()) == 5]


def test_stylegan1_style_split_becomes_rank4():
    _, g = prepared("sg1-tiny")
    before = g.copy()
    counts = g.op_counts()
    layers = 8  # two per resolution, 4..32 px
    assert len(_rank5_reshapes(g)) == layers
    shrinking = [n for n in g.nodes("StridedSlice") if n.attr("shrink_axis_mask")]
    run_pass(g, PASS)
    after = g.op_counts()
    # Every 5-D reshape became a 4-D view, every style[:, k] a 4-D range slice.
    assert after["Reshape"] == counts["Reshape"]
    assert after["StridedSlice"] == counts["StridedSlice"]
    assert _rank5_reshapes(g) == []
    assert len([n for n in g.nodes("StridedSlice") if n.attr("shrink_axis_mask")]) == (
        len(shrinking) - 2 * layers
    )
    for view in (n for n in g.nodes("Reshape") if n.name.endswith("StyleMod/Reshape_4d")):
        shape = list(g.const_value(view.data_inputs[1]))
        assert len(shape) == 4 and shape[0] == -1 and shape[2:] == [1, 1]
    (cmp,) = assert_equivalent(before, g, max_rel=1e-5)
    assert cmp.max_abs == 0.0


@pytest.mark.parametrize("name", ["sg1-tiny", "sg1-tiny-linear", "sg1-tiny-fused"])
def test_stylegan1_has_no_tensor_above_rank4(name):
    original, g = prepared(name)
    assert _high_rank(g)
    run_pass(g, "stylegan::lower_upscale_6d")
    run_pass(g, PASS)
    assert _high_rank(g) == []
    assert not [b for b in lint_tflite(g) if "rank" in b.reason]
    (cmp,) = assert_equivalent(original, g, max_rel=1e-5)
    assert cmp.max_abs == 0.0


def _graph(build, x_shape=(2, 12)):
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, x_shape, name="x")
        outs = build(tf, x * 2.0)
        for i, y in enumerate(outs):
            tf.identity(y, name=f"y{i}")
    return gs.load(g.as_graph_def(), outputs=[f"y{i}" for i in range(len(outs))])


def _feeds(shape=(2, 12)):
    return {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}


def test_three_groups_and_negative_index():
    def build(tf, d):
        s = tf.reshape(d, [-1, 3, 4, 1, 1])
        return [s[:, 0] + 1.0, s[:, 1], s[:, -1]]

    g = _graph(build, (None, 12))
    after = check_pass(g, PASS, feeds=_feeds(), atol=0, rtol=0,
                       before={"Reshape": 1, "StridedSlice": 3},
                       after={"Reshape": 1, "StridedSlice": 3})
    assert _high_rank(after) == []
    begins = sorted(int(after.const_value(n.data_inputs[1])[1])
                    for n in after.nodes("StridedSlice"))
    assert begins == [0, 4, 8]
    assert all(not n.attr("shrink_axis_mask") for n in after.nodes("StridedSlice"))


def test_unpack_becomes_split():
    def build(tf, d):
        return tf.unstack(tf.reshape(d, [2, 2, 3, 2, 1]), axis=1)

    g = _graph(build)
    after = check_pass(g, PASS, feeds=_feeds(), atol=0, rtol=0,
                       before={"Unpack": 1, "Reshape": 1},
                       after={"Unpack": 0, "Split": 1, "Reshape": 1})
    assert _high_rank(after) == []


def test_last_axis_index_is_a_strided_slice_of_the_merged_axis():
    def build(tf, d):
        s = tf.reshape(d, [2, 1, 1, 2, 6])
        return [s[:, :, :, :, 1], s[:, :, :, :, 5]]

    g = _graph(build)
    after = check_pass(g, PASS, feeds=_feeds(), atol=0, rtol=0,
                       before={"StridedSlice": 2}, after={"StridedSlice": 2})
    assert _high_rank(after) == []
    assert all(int(after.const_value(n.data_inputs[3])[3]) == 6
               for n in after.nodes("StridedSlice"))


def test_other_readers_keep_the_rank5_tensor():
    def build(tf, d):
        s = tf.reshape(d, [-1, 2, 6, 1, 1])
        return [s[:, 0], tf.reduce_sum(s, axis=[1, 3]), s[:, 0:1]]

    g = _graph(build)
    after = check_pass(g, PASS, feeds=_feeds(), atol=0, rtol=0,
                       before={"Reshape": 1, "StridedSlice": 2},
                       after={"Reshape": 2, "StridedSlice": 2})
    # The whole-range slice s[:, 0:1] (5-D itself) and the reduction still read the 5-D
    # tensor; s[:, 0] reads the new 4-D view.
    assert _high_rank(after) == ["Reshape:0", "strided_slice_1:0", "y2:0"]
    s0 = after.node(after.node("y0").data_inputs[0].node)
    assert s0.op == "StridedSlice" and after.shape(s0.data_inputs[0]) == (2, 12, 1, 1)


def test_target_with_inner_unknown_dim_uses_inferred_shape():
    def build(tf, d):
        s = tf.reshape(d, [2, -1, 2, 3, 1])  # -> [2, 2, 2, 3, 1]
        return [s[:, 1], s[:, 0]]

    g = _graph(build)
    after = check_pass(g, PASS, feeds=_feeds(), atol=0, rtol=0,
                       before={"StridedSlice": 2}, after={"StridedSlice": 2})
    assert _high_rank(after) == []
    (view,) = after.nodes("Reshape")
    assert list(after.const_value(view.data_inputs[1])) == [2, 4, 3, 1]
