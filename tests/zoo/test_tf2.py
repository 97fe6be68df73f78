"""Tests of the TF2 StyleGAN2 synthesis SavedModel (graphsurgery.zoo.tf2)."""

from __future__ import annotations

import functools
import os
from dataclasses import replace

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from graphsurgery import zoo  # noqa: E402
from graphsurgery.zoo import tf2, tf2_module  # noqa: E402


@functools.cache
def _build(name: str) -> zoo.BuiltModel:
    return zoo.build(name)


def _serve(model: zoo.BuiltModel):
    loaded = tf.saved_model.load(str(model.saved_model_dir))
    return loaded, loaded.signatures[model.meta["signature"]]


def _dlatents(model: zoo.BuiltModel, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = [n, model.meta["num_layers"], model.meta["dlatent_size"]]
    return rng.standard_normal(shape).astype(np.float32)


def _run(fn, d: np.ndarray) -> np.ndarray:
    return fn(**{tf2.INPUT_KEY: tf.constant(d)})[tf2.OUTPUT_KEY].numpy()


def test_presets_registered():
    names = {e.name for e in zoo.entries()}
    assert {"tf2-tiny-savedmodel", "tf2-256-savedmodel"} <= names
    assert zoo.get("tf2-tiny-savedmodel").suffix == ""


def test_tiny_savedmodel_loads_and_runs():
    model = _build("tf2-tiny-savedmodel")
    assert model.graph_def is None and (model.saved_model_dir / "saved_model.pb").exists()
    assert model.meta["kind"] == "stylegan2-tf2"
    assert model.inputs == [tf2.INPUT_KEY] and model.outputs == [tf2.OUTPUT_KEY]
    _, fn = _serve(model)
    spec = fn.structured_input_signature[1][tf2.INPUT_KEY]
    assert spec.shape.as_list() == [None, model.meta["num_layers"], model.meta["dlatent_size"]]
    d = _dlatents(model, 2, seed=0)
    a = _run(fn, d)
    r = model.meta["resolution"]
    assert a.shape == (2, 3, r, r) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, _run(fn, d))  # constant noise: deterministic
    assert np.abs(a[0] - a[1]).mean() > 0.1 * a.std()  # different dlatents, different images
    one = _run(fn, d[1:])
    assert np.abs(one[0] - a[1]).max() < 1e-4  # the grouped conv folds the batch correctly


def test_fused_and_nonfused_agree(tmp_path):
    cfg = tf2.PRESETS["tf2-tiny-savedmodel"]
    fused = _build("tf2-tiny-savedmodel")
    nonfused = tf2.build_tf2_savedmodel(replace(cfg, fused_modconv=False), tmp_path / "nf")
    d = _dlatents(fused, 3, seed=1)
    a = _run(_serve(fused)[1], d)
    b = _run(_serve(nonfused)[1], d)
    assert np.abs(a - b).max() < 1e-4


def test_upsample_matches_upfirdn():
    rng = np.random.default_rng(2)
    x = rng.standard_normal([1, 5, 5, 3]).astype(np.float32)
    k = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64 * 4
    got = tf2_module._upsample_2d(tf.constant(x), k).numpy()
    # upfirdn2d(up=2, pad=(2, 1)): zero insertion, pad, true convolution with k
    z = np.zeros([1, 10, 10, 3])
    z[:, ::2, ::2] = x
    z = np.pad(z, [(0, 0), (2, 1), (2, 1), (0, 0)])
    kf = k[::-1, ::-1]
    want = np.zeros([1, 10, 10, 3])
    for a in range(4):
        for b in range(4):
            want += z[:, a:a + 10, b:b + 10] * kf[a, b]
    assert np.abs(got - want).max() < 1e-5


def test_write_copies_savedmodel(tmp_path):
    model = _build("tf2-tiny-savedmodel")
    out = zoo.write(model, tmp_path / "tiny")
    assert (out / "saved_model.pb").exists()
    _, fn = _serve(zoo.BuiltModel([], [], saved_model_dir=out, meta=model.meta))
    assert _run(fn, _dlatents(model, 1, seed=3)).shape[1] == 3
