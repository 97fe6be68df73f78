"""Tests of the ProGAN G_paper builder (graphsurgery.zoo.progan)."""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest

from graphsurgery import zoo
from graphsurgery.runners import ReferenceRunner
from graphsurgery.testing import random_feeds
from graphsurgery.zoo.progan import PRESETS

TINY = [n for n in PRESETS if n.startswith("progan-tiny")]


@functools.cache
def _build(name: str) -> zoo.BuiltModel:
    return zoo.build(name)


def _ops(name: str) -> Counter:
    return Counter(n.op for n in _build(name).graph_def.node)


def test_presets_registered():
    entries = {e.name: e for e in zoo.entries()}
    assert set(PRESETS) <= set(entries) and entries["progan-256"].full_size


@pytest.mark.parametrize("name", TINY)
def test_dense_reshaped_to_nchw_and_empty_labels_concatenated(name):
    nodes = {n.name: n for n in _build(name).graph_def.node}
    reshape = nodes["4x4/Dense/Reshape"]
    assert nodes[reshape.input[0]].op == "MatMul"
    labels = nodes["labels_in"]
    assert [d.size for d in labels.attr["shape"].shape.dim] == [-1, 0]
    concat = [n for n in nodes.values() if n.op == "ConcatV2"]
    assert len(concat) == 1 and "labels_in" in concat[0].input
    lrelu = [n for n in nodes.values() if n.op == "Maximum" and "LeakyRelu" in n.name]
    assert len(lrelu) == 6  # Maximum(x * 0.2, x) after the dense and the 5 convs


def test_structures_and_upsampling():
    assert _ops("progan-tiny")["Switch"] > 50 and _ops("progan-tiny")["Merge"] >= 4
    assert _ops("progan-tiny-linear")["Switch"] == 0
    assert _ops("progan-tiny")["Conv2DBackpropInput"] == 2
    assert _ops("progan-tiny-nonfused")["Conv2DBackpropInput"] == 0
    assert _ops("progan-tiny-nonfused")["Tile"] > _ops("progan-tiny")["Tile"]


def test_outputs_depend_on_the_latent():
    graph = zoo.load("progan-tiny")
    outs = []
    for seed in (1, 2):
        with ReferenceRunner(graph, noise="seeded", seed=0) as ref:
            outs.append(ref.run(random_feeds(graph, seed=seed))[0])
    assert outs[0].shape == (1, 3, 16, 16)
    assert np.abs(outs[0] - outs[1]).max() > 0.05 * np.ptp(outs[0])
