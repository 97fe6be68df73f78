"""Tests of the TF2/Keras port builder (graphsurgery.zoo.tf2_port): CPU-mode structure."""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np

from graphsurgery import zoo
from graphsurgery.testing import random_feeds, run_tf


@functools.cache
def _model() -> zoo.BuiltModel:
    return zoo.build("tf2-port-tiny")


def test_registered():
    entries = {e.name: e for e in zoo.entries()}
    assert "tf2-port-tiny" in entries and entries["tf2-port-256"].full_size


def test_nhwc_convs_between_transposes_bias_add_sqrt_demodulation():
    gd = _model().graph_def
    ops = Counter(n.op for n in gd.node)
    nodes = {n.name: n for n in gd.node}
    convs = [n for n in gd.node if n.op in ("Conv2D", "Conv2DBackpropInput")]
    assert convs and all(n.attr["data_format"].s == b"NHWC" for n in convs)
    for conv in convs:  # the data input comes through a Transpose
        data = conv.input[2 if conv.op == "Conv2DBackpropInput" else 0]
        assert nodes[data.split(":")[0]].op == "Transpose"
    assert ops["Conv2DBackpropInput"] == 2 and ops["BiasAdd"] > 10 and ops["Sqrt"] == 5
    assert ops["Rsqrt"] == 0
    # the 6-D zero insertion on the 3-channel ToRGB skip path
    pads = [nodes[n.input[1]].attr["value"].tensor.tensor_shape.dim[0].size
            for n in gd.node if n.op == "Pad"]
    assert sorted(pads) == [4] * 4 + [6] * 4  # 4 upfirdn2d chains: 6-D zero insertion + pad


def test_runs_on_cpu_and_depends_on_the_dlatents():
    graph = zoo.load("tf2-port-tiny")
    (a,) = run_tf(graph, random_feeds(graph, seed=1))
    (b,) = run_tf(graph, random_feeds(graph, seed=2))
    assert a.shape == (1, 3, 16, 16) and np.abs(a - b).max() > 0.05 * np.ptp(a)
