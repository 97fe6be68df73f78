"""core::output_format: 4-D float outputs as uint8 pixels (or unchanged as float)."""

from __future__ import annotations

import sys
from pathlib import Path

import graphsurgery.passes.core.output_format  # noqa: F401
import graphsurgery.passes.core.to_nhwc  # noqa: F401
import numpy as np
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery.runners import ReferenceRunner
from graphsurgery.testing import random_feeds, run_pass, run_tf

PASS = "core::output_format"


def nhwc_graph() -> gs.Graph:
    """x [1, 4, 4, 3] -> tanh * 1.2 (values slightly beyond [-1, 1]) -> images; plus a 2-D
    side output that must stay float."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 3], name="x")
        y = tf.tanh(x) * 1.2
        tf.identity(y, name="images_out")
        tf.identity(tf.reduce_mean(y, axis=[1, 2]), name="mean_rgb")
    return gs.load(g.as_graph_def(), inputs=["x"], outputs=["images_out", "mean_rgb"])


def original_uint8(images: np.ndarray) -> np.ndarray:
    """StyleGAN's convert_images_to_uint8 (drange [-1, 1]): x * 127.5 + 128, then a saturating
    cast that truncates."""
    v = images * (255 / 2) + (0.5 + 255 / 2)
    return np.clip(v, 0, 255).astype(np.uint8)


def feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32) * 2
    x.reshape(-1)[:4] = [0.0, np.arctanh(0.5 / 1.2), 5.0, -5.0]  # exact .5 cases and clipping
    return {"x": x}


def test_uint8_matches_original_conversion() -> None:
    g = nhwc_graph()
    before = run_tf(g, feeds())
    counts = g.op_counts()
    assert counts.get("Cast", 0) == 0 and counts.get("Floor", 0) == 0
    record = run_pass(g, PASS, format="uint8")
    assert record.changed
    after = g.op_counts()
    assert (after["Cast"], after["Floor"], after["Maximum"], after["Minimum"]) == (1, 1, 1, 1)
    assert after["Mul"] == counts["Mul"] + 1 and after.get("Round", 0) == 0
    assert [t.node for t in g.outputs] == ["images_out", "mean_rgb"]  # names kept
    assert g.node("images_out").op == "Cast"
    images, mean_rgb = run_tf(g, feeds())
    assert images.dtype == np.uint8 and mean_rgb.dtype == np.float32
    np.testing.assert_array_equal(images, original_uint8(before[0]))
    np.testing.assert_array_equal(mean_rgb, before[1])
    assert images.min() == 0 and images.max() == 255


def test_half_even_and_custom_scale() -> None:
    g = nhwc_graph()
    before = run_tf(g, feeds())[0]
    run_pass(g, PASS, format="uint8", rounding="half_even", scale=100.0, offset=128.0)
    assert g.op_counts()["Round"] == 1 and g.op_counts().get("Floor", 0) == 0
    got = run_tf(g, feeds())[0]
    expected = np.clip(np.round(before * np.float32(100) + np.float32(128)), 0, 255)
    np.testing.assert_array_equal(got, expected.astype(np.uint8))


def test_float_is_a_no_op() -> None:
    g = nhwc_graph()
    assert not run_pass(g, PASS).changed
    assert not run_pass(g, PASS, format="float").changed


sys.path.insert(0, str(Path(__file__).resolve().parent))


def test_after_to_nhwc_on_an_nchw_graph() -> None:
    """The StyleGAN-like NCHW block, converted to NHWC outputs, then uint8 (scale 127.5 / 8,
    its values span about [-8, 8]): the pixels are the reference's transposed float output
    converted as the original code does."""
    from test_to_nhwc import block

    g = block()
    reference = g.copy()
    run_pass(g, "core::to_nhwc", output_layout="NHWC")
    ops = g.op_counts()
    run_pass(g, PASS, format="uint8", scale=127.5 / 8)
    after = g.op_counts()
    assert after["Transpose"] == 0 and after["Cast"] == ops.get("Cast", 0) + 1
    f = random_feeds(reference)
    with ReferenceRunner(reference, noise="seeded") as r:
        ref = r.run(f)[0].transpose(0, 2, 3, 1)
    with ReferenceRunner(g, noise="seeded") as r:
        got = r.run(f)[0]
    assert got.dtype == np.uint8 and got.shape == ref.shape
    assert len(np.unique(got)) > 20
    expected = np.clip(np.floor(ref * np.float32(127.5 / 8) + np.float32(128.0)), 0, 255)
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.02  # only float noise at exact .5 steps
