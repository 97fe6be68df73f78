"""Tests of the StyleGAN2-ADA builder (graphsurgery.zoo.ada): the structures of the original's
mixed precision, conv_clamp, fp16 overflow guards and conditional mapping."""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest

from graphsurgery import zoo
from graphsurgery.ir.dtypes import DType
from graphsurgery.runners import ReferenceRunner
from graphsurgery.testing import random_feeds
from graphsurgery.zoo.ada import PRESETS

HALF = int(DType.float16)
TINY = [n for n in PRESETS if n.startswith("ada-tiny")]


@functools.cache
def _build(name: str) -> zoo.BuiltModel:
    return zoo.build(name)


def _ops(name: str) -> Counter:
    return Counter(n.op for n in _build(name).graph_def.node)


def _half_nodes(name: str, op: str) -> list:
    return [n for n in _build(name).graph_def.node
            if n.op == op and any(av.type == HALF for av in n.attr.values())]


def test_presets_registered_tiny_and_full_size():
    entries = {e.name: e for e in zoo.entries()}
    assert set(PRESETS) <= set(entries)
    assert entries["ada-256"].full_size and entries["ada-256-cond"].full_size
    assert not any(entries[n].full_size for n in TINY)


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_are_small(name):
    model = _build(name)
    assert model.meta["kind"] == "stylegan2-ada" and model.meta["resolution"] == 16
    assert 500 < len(model.graph_def.node) < 1200


def test_mixed_precision_blocks_and_casts():
    meta = _build("ada-tiny").meta
    assert meta["fp16_resolutions"] == [8, 16]
    ops = _ops("ada-tiny")
    # Cast to half at each fp16 block, of weights, biases, styles, noise strengths; back
    # to float32 at each fp16 ToRGB.
    assert ops["Cast"] >= 20
    convs = {n.name.split("/")[1]: n.attr["T"].type for n in _build("ada-tiny").graph_def.node
             if n.op in ("Conv2D", "Conv2DBackpropInput") and n.name.startswith("G_synthesis")}
    assert convs["4x4"] != HALF and convs["8x8"] == HALF and convs["16x16"] == HALF
    assert not _half_nodes("ada-tiny-fp32", "Cast") and "Cast" not in _ops("ada-tiny-fp32")


def test_conv_clamp_is_minimum_then_maximum_with_half_constants_in_fp16_blocks():
    # every layer and ToRGB: 5 conv layers + 3 ToRGB at 16 px
    assert _ops("ada-tiny")["Minimum"] == 8 and _ops("ada-tiny")["Maximum"] >= 8
    nodes = {n.name: n for n in _build("ada-tiny").graph_def.node}
    half_mins = _half_nodes("ada-tiny", "Minimum")
    assert len(half_mins) == 6  # 2 fp16 blocks x (2 layers + ToRGB)
    bound = nodes[half_mins[0].input[1]]
    assert bound.op == "Const" and bound.attr["dtype"].type == HALF
    assert "Minimum" not in _ops("ada-tiny-fp32")


def test_fp16_overflow_guards_only_in_nonfused_fp16_blocks():
    # 4 demodulated layers in fp16 blocks: Abs+Max on the weight and on the styles
    assert _ops("ada-tiny")["Abs"] == 8 and _ops("ada-tiny")["Max"] == 8
    assert _ops("ada-tiny-fused")["Abs"] == 0
    assert _ops("ada-tiny-fp32")["Abs"] == 0


def test_conditional_mapping_embeds_labels_and_concatenates():
    model = _build("ada-tiny-cond")
    nodes = {n.name: n for n in model.graph_def.node}
    labels = nodes["labels_in"]
    assert [d.size for d in labels.attr["shape"].shape.dim] == [-1, 10]
    assert _ops("ada-tiny-cond")["ConcatV2"] == 1
    assert any(n.startswith("G_mapping/LabelEmbed/") for n in nodes)
    # unconditional: [N, 0] labels read by nothing but their identity
    unc = {n.name: n for n in _build("ada-tiny").graph_def.node}
    assert [d.size for d in unc["labels_in"].attr["shape"].shape.dim] == [-1, 0]
    assert _ops("ada-tiny")["ConcatV2"] == 0


def _run(name: str, feeds: dict) -> np.ndarray:
    graph = zoo.load(name)
    with ReferenceRunner(graph, noise="seeded", seed=0) as ref:
        return ref.run(feeds)[0]


def test_outputs_depend_on_latents_and_labels():
    graph = zoo.load("ada-tiny-cond")
    a, b = random_feeds(graph, seed=1), random_feeds(graph, seed=2)
    out_a = _run("ada-tiny-cond", a)
    assert out_a.shape == (1, 3, 16, 16) and np.isfinite(out_a).all()
    other_z = _run("ada-tiny-cond", {**a, "latents_in": b["latents_in"]})
    other_c = _run("ada-tiny-cond", {**a, "labels_in": b["labels_in"]})
    assert np.abs(out_a - other_z).max() > 0.05 * np.ptp(out_a)
    assert np.abs(out_a - other_c).max() > 0.05 * np.ptp(out_a)


def test_custom_ops_carry_clamp_and_half_types():
    nodes = _build("ada-tiny-cuda").graph_def.node
    fba = [n for n in nodes if n.op == "FusedBiasAct"]
    clamped = [n for n in fba if "clamp" in n.attr]
    assert clamped and all(n.attr["clamp"].f == 2.0 for n in clamped)
    assert any(n.attr["T"].type == HALF for n in clamped)
    assert any(n.op == "UpFirDn2D" and n.attr["T"].type == HALF for n in nodes)
    assert "Minimum" not in _ops("ada-tiny-cuda")  # the clamp is inside the custom op
