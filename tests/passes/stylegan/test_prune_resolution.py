"""stylegan::prune_resolution: op counts before/after and the pruned output against the
original graph's own image at that resolution (reference runner, same inputs and noise)."""

from __future__ import annotations

import functools

import graphsurgery.passes.stylegan.prune_resolution  # noqa: F401
import numpy as np
import pytest
from graphsurgery.passes.stylegan.prune_resolution import PruneResolution

from graphsurgery import zoo
from graphsurgery.errors import UsageError
from graphsurgery.metrics import compare
from graphsurgery.rewriter import Rewriter
from graphsurgery.runners import ReferenceRunner
from graphsurgery.testing import assert_equivalent, random_feeds, run_pass

from .prep import prepared

PASS = "stylegan::prune_resolution"


@functools.cache
def _skip_images(name: str) -> dict[int, str]:
    return dict(zoo.build(name).meta["skip_images"])


def _counts(graph, *ops):
    c = graph.op_counts()
    return {op: c.get(op, 0) for op in ops}


def _at_lod(graph, lod: int):
    """A copy of a v1 graph whose ``lod`` variables (frozen constants) are set to ``lod``:
    what the original graph computes when trained up to that level."""
    g = graph.copy()
    rw = Rewriter(g, "test")
    for name in ("lod", "G_synthesis/lod"):
        rw.set_attr(name, "value", np.asarray(lod, np.float32))
    return g


def test_sg2_skip_pruned_to_8_is_the_running_image_at_8():
    original, g = prepared("sg2-tiny")
    ops = ("Conv2D", "Conv2DBackpropInput", "RandomStandardNormal", "MatMul")
    assert _counts(g, *ops) == {"Conv2D": 10, "Conv2DBackpropInput": 2,
                                "RandomStandardNormal": 5, "MatMul": 10}
    before = len(g)
    record = run_pass(g, PASS, resolution=8)
    assert record.changed
    # 16x16 block gone: its up-conv, conv, ToRGB, FIR up-sampling, 2 noise ops, 3 styles.
    assert _counts(g, *ops) == {"Conv2D": 6, "Conv2DBackpropInput": 1,
                                "RandomStandardNormal": 3, "MatMul": 7}
    assert len(g) < before * 0.75
    assert [str(t) for t in g.outputs] == ["images_out:0"]  # the output keeps its name
    assert g.shape(g.outputs[0]) == (1, 3, 8, 8)
    # The reference's own 8 px running image (G_synthesis/8x8/ToRGB/add...) of the original.
    y8 = _skip_images("sg2-tiny")[8]
    (cmp,) = assert_equivalent(original, g, fetches=([y8], ["images_out:0"]), max_rel=1e-5)
    assert cmp.value_range > 0.5


def test_sg2_skip_pruned_to_4_is_the_first_torgb():
    original, g = prepared("sg2-tiny")
    run_pass(g, PASS, resolution=4)
    assert _counts(g, "Conv2D", "Conv2DBackpropInput", "RandomStandardNormal", "Pad") == {
        "Conv2D": 2, "Conv2DBackpropInput": 0, "RandomStandardNormal": 1, "Pad": 0}
    assert g.shape(g.outputs[0]) == (1, 3, 4, 4)
    y4 = _skip_images("sg2-tiny")[4]
    assert_equivalent(original, g, fetches=([y4], ["images_out:0"]), max_rel=1e-5)


def test_sg2_raw_graph_pruned_before_preparation():
    original, _ = prepared("sg2-tiny")
    g = original.copy()
    run_pass(g, PASS, resolution=8)
    assert _counts(original, "Conv2D", "RandomStandardNormal") == {
        "Conv2D": 10, "RandomStandardNormal": 5}
    assert _counts(g, "Conv2D", "RandomStandardNormal") == {
        "Conv2D": 6, "RandomStandardNormal": 3}
    assert g.shape(g.outputs[0]) == (-1, 3, 8, 8)
    y8 = _skip_images("sg2-tiny")[8]
    (cmp,) = assert_equivalent(original, g, fetches=([y8], ["images_out:0"]), max_rel=0.0)
    assert cmp.max_abs == 0.0


def test_sg1_recursive_pruned_to_16_is_torgb_lod1():
    # v1 recursive: only the ToRGB that lod selects is computed, so the pass runs on the
    # graph before its control flow is folded, sets lod = 1 and folds it itself.
    original, _ = prepared("sg1-tiny")
    g = original.copy()
    run_pass(g, "core::strip_training")
    ops = ("Switch", "Merge", "Conv2D", "RandomStandardNormal", "DepthwiseConv2dNative")
    assert _counts(g, *ops) == {"Switch": 97, "Merge": 5, "Conv2D": 16,
                                "RandomStandardNormal": 8, "DepthwiseConv2dNative": 3}
    run_pass(g, PASS, resolution=16)
    assert _counts(g, *ops) == {"Switch": 0, "Merge": 0, "Conv2D": 6,
                                "RandomStandardNormal": 6, "DepthwiseConv2dNative": 2}
    assert g.shape(g.outputs[0]) == (-1, 3, 16, 16)
    assert any("ToRGB_lod1" in n for n in g.names)
    assert not any("ToRGB_lod0" in n or "32x32" in n for n in g.names)
    # The original graph at lod 1 outputs ToRGB_lod1 upscaled 2x (nearest): its even pixels
    # are the 16x16 ToRGB.
    feeds = random_feeds(original, seed=3)
    with ReferenceRunner(_at_lod(original, 1)) as ref:
        expected = ref.run(feeds)[0]
    with ReferenceRunner(g) as run:
        got = run.run(feeds)[0]
    assert expected.shape == (1, 3, 32, 32) and got.shape == (1, 3, 16, 16)
    cmp = compare(expected[:, :, ::2, ::2], got)
    assert cmp.max_abs <= 1e-5 * cmp.value_range and cmp.value_range > 0.5
    np.testing.assert_array_equal(np.repeat(np.repeat(got, 2, 2), 2, 3), expected)


def test_sg1_recursive_folds_through_the_registered_pass(monkeypatch):
    """The pass folds lod's tf.cond nest with whatever core::fold_switch_merge is
    registered (it used to import FoldSwitchMerge's class directly)."""
    from graphsurgery import registry

    calls = []
    folder = registry.get_pass("core::fold_switch_merge")

    class Spy(folder):
        def run(self, graph, rw):
            calls.append(len(graph))
            return super().run(graph, rw)

    original, _ = prepared("sg1-tiny")
    g = original.copy()
    run_pass(g, "core::strip_training")
    monkeypatch.setitem(registry._PASSES, "core::fold_switch_merge", Spy)
    run_pass(g, PASS, resolution=16)
    assert len(calls) == 1 and _counts(g, "Switch", "Merge") == {"Switch": 0, "Merge": 0}


def test_sg1_linear_prepared_pruned_to_16_is_torgb_lod1():
    original, g = prepared("sg1-tiny-linear")
    assert _counts(g, "Conv2D", "RandomStandardNormal") == {
        "Conv2D": 11, "RandomStandardNormal": 8}
    run_pass(g, PASS, resolution=16)
    assert _counts(g, "Conv2D", "RandomStandardNormal") == {
        "Conv2D": 6, "RandomStandardNormal": 6}
    assert g.shape(g.outputs[0]) == (1, 3, 16, 16)
    assert_equivalent(original, g, fetches=(["G_synthesis/ToRGB_lod1/add:0"], ["images_out:0"]),
                      max_rel=1e-5)


def test_sg1_folded_for_lod0_explains_the_order():
    _, g = prepared("sg1-tiny")  # control flow already folded at lod 0: ToRGB_lod1 is gone
    with pytest.raises(UsageError, match="before core::fold_switch_merge"):
        PruneResolution(resolution=16).run(g, Rewriter(g, PASS))


@pytest.mark.parametrize("res", [0, 16])
def test_full_resolution_or_zero_changes_nothing(res):
    _, g = prepared("sg2-tiny")
    counts = g.op_counts()
    record = run_pass(g, PASS, resolution=res)
    assert not record.changed
    assert g.op_counts() == counts


@pytest.mark.parametrize("res,message", [
    (6, "power of two"), (2, "power of two"), (-8, "power of two"), (32, "larger than"),
])
def test_bad_resolutions_are_usage_errors(res, message):
    _, g = prepared("sg2-tiny")
    with pytest.raises(UsageError, match=message):
        PruneResolution(resolution=res).run(g, Rewriter(g, PASS))
    with pytest.raises(UsageError, match=message):
        run_pass(g, PASS, resolution=res)


@pytest.mark.parametrize("name,arch", [("sg2-tiny-orig", "orig"), ("sg2-tiny-resnet", "resnet")])
def test_v2_without_skip_images_names_the_architecture(name, arch):
    g = zoo.load(name)
    with pytest.raises(UsageError, match=f"'{arch}' architecture"):
        PruneResolution(resolution=8).run(g, Rewriter(g, PASS))


def test_output_tail_is_kept_uint8_pixels_of_the_8px_image():
    # Pruning after core::output_format: the shape-agnostic tail (scale, offset, floor,
    # clip, cast) now converts the 8 px running image.
    import graphsurgery.passes.core.output_format  # noqa: F401

    original, g = prepared("sg2-tiny")
    run_pass(g, "core::output_format", format="uint8")
    tail = ("Floor", "Maximum", "Minimum", "Cast")
    assert _counts(g, "Conv2D", *tail) == {"Conv2D": 10, "Floor": 1, "Maximum": 1,
                                           "Minimum": 1, "Cast": 1}
    run_pass(g, PASS, resolution=8)
    assert _counts(g, "Conv2D", *tail) == {"Conv2D": 6, "Floor": 1, "Maximum": 1,
                                           "Minimum": 1, "Cast": 1}
    assert [str(t) for t in g.outputs] == ["images_out:0"]
    assert g.shape(g.outputs[0]) == (1, 3, 8, 8)
    feeds = random_feeds(original, seed=8)
    with ReferenceRunner(original) as ref:
        (y8,) = ref.fetch(feeds, [_skip_images("sg2-tiny")[8]])
    with ReferenceRunner(g) as run:
        got = run.run(feeds)[0]
    assert got.dtype == np.uint8
    expected = np.clip(np.floor(y8.astype(np.float64) * 127.5 + 128.0), 0, 255)
    assert np.abs(got.astype(np.float64) - expected).max() <= 1  # float rounding at .5
    assert len(np.unique(got)) > 20
