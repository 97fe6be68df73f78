"""core::drop_empty_concat: zero-size concat operands ([N, 0] labels) dropped."""

from __future__ import annotations

import graphsurgery.passes.core.drop_empty_concat  # noqa: F401
import numpy as np
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery.testing import check_pass, run_pass

PASS = "core::drop_empty_concat"
v1 = tf.compat.v1


def _graph(label_size: int, third: bool = False) -> gs.Graph:
    g = tf.Graph()
    with g.as_default():
        z = v1.placeholder(tf.float32, [None, 4], name="latents_in")
        labels = v1.placeholder(tf.float32, [None, label_size], name="labels_in")
        parts = [z, labels] + ([z * 2.0] if third else [])
        x = tf.concat(parts, axis=1)
        tf.identity(x * x, name="out")
    return gs.load(g, inputs=["latents_in", "labels_in"], outputs=["out"])


FEEDS = {"latents_in": np.arange(8, dtype=np.float32).reshape(2, 4),
         "labels_in": np.zeros([2, 0], np.float32)}


def test_empty_labels_operand_dropped_and_input_pruned():
    graph = _graph(0)
    after = check_pass(graph, PASS, feeds=FEEDS, before={"ConcatV2": 1}, after={"ConcatV2": 0})
    assert after.node("out").input_node(0).data_inputs[0].node == "latents_in"
    run_pass(after, "core::dce", prune_inputs=True)
    assert [str(t) for t in after.inputs] == ["latents_in:0"]


def test_concat_of_three_keeps_the_non_empty_operands():
    graph = _graph(0, third=True)
    after = check_pass(graph, PASS, feeds=FEEDS, before={"ConcatV2": 1}, after={"ConcatV2": 1})
    concat = after.nodes("ConcatV2")[0]
    assert len(concat.data_inputs) == 3 and concat.attr("N") == 2


def test_real_labels_are_kept():
    feeds = {**FEEDS, "labels_in": np.ones([2, 3], np.float32)}
    check_pass(_graph(3), PASS, feeds=feeds, after={"ConcatV2": 1}, expect_change=False)
