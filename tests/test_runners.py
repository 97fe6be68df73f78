"""The runner interface (graphsurgery.runners): TensorFlow, reference, LiteRT, onnxruntime."""

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
from graphsurgery.runners import (  # noqa: E402
    BackgroundRun,
    GraphDefRunner,
    ONNXRunner,
    ReferenceRunner,
    TFLiteRunner,
    canonical_name,
    compare_runners,
    run_tflite,
    same_feeds,
)


@functools.cache
def _conv_relu() -> tuple[bytes, bytes]:
    """A tiny NHWC conv + bias + relu: (GraphDef bytes, .tflite bytes)."""
    rng = np.random.default_rng(0)
    tfg = tf.Graph()
    with tfg.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 16, 16, 3], name="x")
        w = tf.constant(rng.standard_normal((3, 3, 3, 4)).astype(np.float32) * 0.3)
        b = tf.constant(rng.standard_normal(4).astype(np.float32) * 0.1)
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME"), b), name="y")
        with tf.compat.v1.Session(graph=tfg) as sess:
            converter = tf.compat.v1.lite.TFLiteConverter.from_session(sess, [x], [y])
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            tflite = converter.convert()
    return tfg.as_graph_def().SerializeToString(), tflite


def _graph() -> gs.Graph:
    gd = tf.compat.v1.GraphDef.FromString(_conv_relu()[0])
    return gs.load(gd, inputs=["x"], outputs=["y"])


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 16, 16, 3)).astype(np.float32)


def test_canonical_names() -> None:
    assert canonical_name("serving_default_latents_in:0") == "latents_in"
    assert canonical_name("x:0") == "x"
    assert canonical_name("x:1") == "x:1"


def test_graphdef_runner_reuses_its_session() -> None:
    runner = GraphDefRunner(_graph())
    assert runner.input_names == ["x"] and runner.output_names == ["y"]
    assert runner.inputs[0].shape == (1, 16, 16, 3)
    (a,) = runner.run({"x:0": _x()})
    session = runner.session
    (b,) = runner.run({"x": _x()})
    assert runner.session is session
    np.testing.assert_array_equal(a, b)
    assert a.shape == (1, 16, 16, 4) and a.min() == 0 and a.max() > 0
    runner.close()


def test_tflite_runner_matches_graphdef() -> None:
    tflite = _conv_relu()[1]
    lite = TFLiteRunner(tflite)
    assert [canonical_name(n) for n in lite.input_names] == ["x"]
    assert lite.accepts("serving_default_x:0")
    ref = GraphDefRunner(_graph())
    (a,) = ref.run({"x": _x(1)})
    (b,) = lite.run({"serving_default_x:0": _x(1)})
    assert np.abs(a - b).max() < 1e-5
    np.testing.assert_array_equal(run_tflite(tflite, [_x(1)])[0], b)
    (c,) = compare_runners(ref, lite, {"x": _x(1), "unrelated": np.zeros(1)})
    assert c.max_abs < 1e-5 and c.psnr > 80 and c.ssim > 0.9999
    with pytest.raises(InputError, match="not fed"):
        lite.run({})
    with pytest.raises(InputError, match="unknown inputs"):
        lite.run({"x": _x(), "z": _x()})


def test_onnx_runner_matches_graphdef() -> None:
    tf2onnx = pytest.importorskip("tf2onnx")
    gd = tf.compat.v1.GraphDef.FromString(_conv_relu()[0])
    model, _ = tf2onnx.convert.from_graph_def(gd, input_names=["x:0"], output_names=["y:0"],
                                              opset=13)
    onnx_runner = ONNXRunner(model.SerializeToString())
    assert [canonical_name(n) for n in onnx_runner.input_names] == ["x"]
    ref = GraphDefRunner(_graph())
    (c,) = compare_runners(ref, onnx_runner, {"x": _x(2)})
    assert c.max_abs < 1e-5 and c.psnr > 80 and c.ssim > 0.9999


def test_reference_runner() -> None:
    m = zoo.build("sg2-tiny")
    g = gs.load(m.graph_def, inputs=m.inputs, outputs=m.outputs)
    z = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    feeds = {"latents_in:0": z, "labels_in": np.zeros((1, 0), np.float32)}

    seeded = ReferenceRunner(g, noise="seeded", seed=4)
    assert seeded.input_names == ["latents_in", "labels_in"]
    exact = ReferenceRunner(g, noise="input")
    assert exact.input_names[2:] == [f"noise_input/{i}" for i in range(5)]
    assert exact.inputs[2].shape == (None, 1, 4, 4)
    noise = seeded.reference.make_noise(feeds)
    # One feed dictionary for both; the seeded runner draws the very same noise itself.
    (c,) = compare_runners(seeded, exact, {**feeds, **noise})
    assert c.max_abs == 0 and c.psnr == float("inf") and c.ssim is not None
    (img,) = seeded.run(feeds)
    assert img.shape == (1, 3, 16, 16)
    (skip8,) = seeded.fetch(feeds, [m.meta["skip_images"][8]])
    assert skip8.shape == (1, 3, 8, 8)


# ---------------------------------------------------------------------------- in the background
def test_background_run_gives_the_outputs_of_a_run_here() -> None:
    (want,) = ReferenceRunner(_graph()).run({"x": _x(2)})
    job = BackgroundRun(lambda: ReferenceRunner(_graph()), {"x": _x(2)})
    (got,) = job.result()
    np.testing.assert_array_equal(got, want)
    assert job.done() and job.seconds is not None and job.seconds > 0
    assert same_feeds(job.feeds, {"x": _x(2)}) and not same_feeds(job.feeds, {"x": _x(3)})


def test_background_run_raises_what_the_run_raised_and_waits_its_turn() -> None:
    order = []

    class Slow(GraphDefRunner):
        def run(self, feeds):  # noqa: ANN001, ANN202
            order.append("first")
            return super().run(feeds)

    first = BackgroundRun(lambda: Slow(_graph()), {"x": _x()})
    second = BackgroundRun(lambda: order.append("second") or GraphDefRunner(_graph()),
                           {"nope": _x()}, after=first)
    with pytest.raises(InputError, match="nope"):
        second.result()
    assert order == ["first", "second"] and first.done()


def test_same_feeds_compares_names_dtypes_shapes_and_values() -> None:
    a = {"x": np.zeros((1, 2), np.float32)}
    assert same_feeds(a, {"x": np.zeros((1, 2), np.float32)})
    assert not same_feeds(a, {"x": np.zeros((1, 2), np.float64)})
    assert not same_feeds(a, {"x": np.zeros((2, 1), np.float32)})
    assert not same_feeds(a, {"y": np.zeros((1, 2), np.float32)})
    assert not same_feeds(a, {**a, "y": np.zeros(1)})


def test_tflite_runner_uses_a_recorded_run_only_on_the_same_feeds() -> None:
    """``recorded`` (the audit's LiteRT run) stands in for a run on exactly its feeds; other
    values, another shape or another thread count run the model."""
    from graphsurgery.export.audit import audit_tflite

    tflite = _conv_relu()[1]
    run = audit_tflite(tflite, analyzer=False).litert_run
    assert run is not None and run.num_threads == 2
    (fresh,) = TFLiteRunner(tflite).run({"x": run.feeds[0]})
    np.testing.assert_array_equal(run.outputs[0], fresh)
    run.outputs = [np.full_like(fresh, 42.0)]  # a marker: returned only when the run is used
    lite = TFLiteRunner(tflite, recorded=run)
    assert lite.input_names == TFLiteRunner(tflite).input_names and lite._interp is None
    (same,) = lite.run({"x": run.feeds[0].copy()})
    assert (same == 42).all() and lite._interp is None
    (other,) = lite.run({"x": run.feeds[0] + 1})
    (want,) = TFLiteRunner(tflite).run({"x": run.feeds[0] + 1})
    np.testing.assert_array_equal(other, want)
    (bigger,) = lite.run({"x": np.concatenate([run.feeds[0]] * 2)})
    assert bigger.shape[0] == 2 and not (bigger == 42).any()
    (threads,) = TFLiteRunner(tflite, num_threads=1, recorded=run).run({"x": run.feeds[0]})
    np.testing.assert_allclose(threads, fresh, rtol=1e-5, atol=1e-6)
