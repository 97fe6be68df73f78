"""Zoo graphs prepared the way the stylegan-to-tflite pipeline prepares them before its
StyleGAN-specific passes, cached per test session."""

from __future__ import annotations

import functools
from collections import Counter

import graphsurgery as gs
from graphsurgery import zoo
from graphsurgery.testing import run_pass

PREP = (
    "core::strip_training",
    "core::set_batch",
    "core::fold_shapes",
    "core::fold_switch_merge",
    "core::remove_identity",
    "core::fold_constants",
    "core::fold_scalings",
    "core::cse",
    "core::dce",
)


@functools.cache
def _built(name: str) -> tuple[gs.Graph, gs.Graph]:
    original = zoo.load(name)
    prepared = original.copy()
    for pass_id in PREP:
        run_pass(prepared, pass_id)
    return original, prepared


def prepared(name: str) -> tuple[gs.Graph, gs.Graph]:
    """(the zoo graph as built, a copy after the generic preparation); fresh copies."""
    original, prep = _built(name)
    return original.copy(), prep.copy()


def prepared_and_run(
    name: str, pass_id: str
) -> tuple[gs.Graph, gs.Graph, Counter[str], Counter[str]]:
    """(the prepared graph, a copy after ``pass_id``, the op counts of both)."""
    _, before = prepared(name)
    graph = before.copy()
    run_pass(graph, pass_id)
    return before, graph, before.op_counts(), graph.op_counts()
