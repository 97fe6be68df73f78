"""stylegan::lower_upscale_6d: 6-D nearest upscale -> ConcatV2 + DepthToSpace (or a merged
rank-4 tile), op counts before/after and exact numerics."""

import graphsurgery.passes.stylegan.lower_upscale_6d  # noqa: F401
import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.testing import assert_equivalent, check_pass, run_pass

from .prep import prepared

PASS = "stylegan::lower_upscale_6d"


def _max_rank(graph):
    return max(len(t.shape) for t in graph.infer().values() if t.shape is not None)


def _rank6_tiles(graph):
    return sum(1 for n in graph.nodes("Tile") if graph.shape(n.output()) and
               len(graph.shape(n.output())) > 4)


@pytest.mark.parametrize(
    ("name", "upscales"),
    [("sg1-tiny", 3), ("sg1-tiny-linear", 6), ("sg1-tiny-fused", 4)],
)
def test_stylegan1_upscales_become_depth_to_space(name, upscales):
    _, g = prepared(name)
    before = g.copy()
    counts = g.op_counts()
    assert _rank6_tiles(g) == upscales
    assert counts["DepthToSpace"] == 0 and counts["ConcatV2"] == 0
    record = run_pass(g, PASS)
    assert record.changed
    after = g.op_counts()
    assert after["Tile"] == counts["Tile"] - upscales  # only the 6-D tiles went
    assert after["DepthToSpace"] == upscales and after["ConcatV2"] == upscales
    assert after["Reshape"] == counts["Reshape"] - 2 * upscales
    assert _rank6_tiles(g) == 0
    for node in g.nodes("DepthToSpace"):
        assert node.attr("block_size") == 2
        assert node.attr("data_format") in ("NCHW", b"NCHW")
    for node in g.nodes("ConcatV2"):
        assert len(node.data_inputs) == 5  # four copies + axis
        assert int(g.const_value(node.data_inputs[-1])) == 1
    # Nearest upscaling only moves values: bitwise equal to the reference.
    (cmp,) = assert_equivalent(before, g, max_rel=1e-5)
    assert cmp.max_abs == 0.0


def _upscale_graph(x_shape, reshape, multiples, out, *, data=None):
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, x_shape, name="x")
        h = tf.nn.relu(x)
        t = tf.tile(tf.reshape(h, reshape), multiples)
        y = tf.reshape(t, out) if data is None else data(t)
        tf.identity(y, name="y")
    return gs.load(g.as_graph_def(), outputs=["y"])


def _feeds(shape, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


def test_nhwc_upscale_with_unknown_batch():
    # NHWC: the upscaled axes are 1 and 2, so the channels are the last axis.
    g = _upscale_graph([None, 3, 5, 2], [-1, 3, 1, 5, 1, 2], [1, 1, 2, 1, 2, 1], [-1, 6, 10, 2])
    after = check_pass(g, PASS, feeds=_feeds((2, 3, 5, 2)),
                       before={"Tile": 1, "Reshape": 2, "DepthToSpace": 0},
                       after={"Tile": 0, "Reshape": 0, "DepthToSpace": 1, "ConcatV2": 1},
                       atol=0, rtol=0)
    (d2s,) = after.nodes("DepthToSpace")
    assert d2s.attr("data_format") in ("NHWC", b"NHWC")
    (cat,) = after.nodes("ConcatV2")
    assert int(after.const_value(cat.data_inputs[-1])) == 3
    assert _max_rank(after) <= 4


@pytest.mark.parametrize(("factor", "steps", "copies"), [(4, 2, 4), (3, 1, 9)])
def test_nchw_factor_in_prime_steps(factor, steps, copies):
    g = _upscale_graph([1, 3, 4, 5], [-1, 3, 4, 1, 5, 1], [1, 1, 1, factor, 1, factor],
                       [-1, 3, 4 * factor, 5 * factor])
    before = g.copy()
    assert g.op_counts()["Tile"] == 1
    run_pass(g, PASS)
    counts = g.op_counts()
    assert counts["Tile"] == 0 and counts["Reshape"] == 0
    assert counts["DepthToSpace"] == steps and counts["ConcatV2"] == steps
    assert all(len(n.data_inputs) == copies + 1 for n in g.nodes("ConcatV2"))
    assert _max_rank(g) <= 4
    (cmp,) = assert_equivalent(before, g, feeds=_feeds((1, 3, 4, 5)), max_rel=1e-5)
    assert cmp.max_abs == 0.0


def test_one_axis_upscale_falls_back_to_a_merged_tile():
    # 5-D, only H repeated: no depth-to-space form; merged view [N*C*H, 1, W] tiled [1, 3, 1].
    g = _upscale_graph([2, 3, 4, 5], [-1, 3, 4, 1, 5], [1, 1, 1, 3, 1], [-1, 3, 12, 5])
    after = check_pass(g, PASS, feeds=_feeds((2, 3, 4, 5)),
                       before={"Tile": 1, "Reshape": 2, "DepthToSpace": 0},
                       after={"Tile": 1, "Reshape": 2, "DepthToSpace": 0}, atol=0, rtol=0)
    (tile,) = after.nodes("Tile")
    assert list(after.const_value(tile.data_inputs[1])) == [1, 3, 1]
    assert _max_rank(after) <= 4
    # Without the fallback nothing changes.
    check_pass(g, PASS, options={"fallback": False}, expect_change=False,
               after={"Tile": 1, "Reshape": 2})


def test_unequal_factors_fall_back_to_a_merged_tile():
    g = _upscale_graph([None, 3, 4, 5], [-1, 3, 4, 1, 5, 1], [1, 1, 1, 2, 1, 3],
                       [-1, 3, 8, 15])
    after = check_pass(g, PASS, feeds=_feeds((2, 3, 4, 5)),
                       before={"Tile": 1, "Reshape": 2},
                       after={"Tile": 1, "Reshape": 2, "DepthToSpace": 0}, atol=0, rtol=0)
    (tile,) = after.nodes("Tile")
    assert list(after.const_value(tile.data_inputs[1])) == [1, 2, 1, 3]
    assert _max_rank(after) <= 4


def test_rank6_tile_read_by_other_ops_is_left_alone():
    import tensorflow as tf
    g = _upscale_graph([1, 3, 4, 5], [-1, 3, 4, 1, 5, 1], [1, 1, 1, 2, 1, 2], None,
                       data=lambda t: tf.reduce_sum(t, axis=[3, 5]))
    check_pass(g, PASS, feeds=_feeds((1, 3, 4, 5)), expect_change=False,
               before={"Tile": 1}, after={"Tile": 1})
