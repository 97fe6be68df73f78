"""Noise inputs: how the random ops of any graph are numbered, named and drawn.

The reference runner (:mod:`graphsurgery.reference`) replaces random ops by inputs, and
passes that expose noise as model inputs (``stylegan::noise``) use the same names, so one
feed dictionary drives the reference and an optimised graph:

* the random ops that draw a tensor of a given shape with a float distribution
  (:data:`NOISE_OPS`: ``RandomStandardNormal``, ``RandomUniform``, ``TruncatedNormal``, from
  :data:`graphsurgery.ir.opdefs.RANDOM_OPS`), taken in ``graph.toposort()`` order (a stable
  topological order: ties keep GraphDef order, :func:`noise_order`), are numbered 0, 1, 2...;
* random op ``i`` becomes the input ``noise_input/<i>`` (:func:`noise_input_name`);
* :func:`seeded_noise` ``(seed, i, shape)`` draws its values: float32 from
  ``numpy.random.default_rng([seed, i])`` in the op's distribution.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .ir import opdefs
from .ir.graph import Graph
from .ir.names import TensorRef

NOISE_SCOPE = "noise_input"
_NOISE_NAME = re.compile(rf"^{NOISE_SCOPE}/(\d+)$")
#: The distributions :func:`seeded_noise` draws.
NOISE_KINDS = ("normal", "uniform", "truncated_normal")
#: Random ops replaced by noise inputs, and their distribution.
NOISE_OPS: dict[str, str] = {op: kind for op, kind in opdefs.RANDOM_OPS.items()
                             if kind in NOISE_KINDS}


def noise_input_name(index: int) -> str:
    """The name of noise input ``index``: ``noise_input/<index>``."""
    return f"{NOISE_SCOPE}/{int(index)}"


def noise_index(name: str) -> int | None:
    """The index of a noise input name (``noise_input/3``, ``noise_input/3:0``), else None."""
    node = TensorRef.parse(name).node
    m = _NOISE_NAME.match(node)
    return int(m.group(1)) if m else None


def noise_order(graph: Graph) -> list[str]:
    """The random ops of ``graph`` in the order that numbers them (``graph.toposort()``)."""
    return [n for n in graph.toposort() if graph.node_def(n).op in NOISE_OPS]


def seeded_noise(
    seed: int,
    index: int,
    shape: Sequence[int],
    *,
    op: str = "RandomStandardNormal",
    dtype: Any = np.float32,
) -> np.ndarray:
    """Deterministic values for noise input ``index``: ``np.random.default_rng([seed, index])``.

    Standard normal (float32) for ``RandomStandardNormal`` (the default); uniform in [0, 1)
    for ``RandomUniform``; normal redrawn outside two standard deviations for
    ``TruncatedNormal``.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    shape = tuple(int(d) for d in shape)
    kind = NOISE_OPS.get(op, "normal")
    if kind == "uniform":
        values = rng.random(shape, dtype=np.float32)
    else:
        values = rng.standard_normal(shape, dtype=np.float32)
        if kind == "truncated_normal":
            bad = np.abs(values) > 2
            while bad.any():
                values[bad] = rng.standard_normal(int(bad.sum()), dtype=np.float32)
                bad = np.abs(values) > 2
    return values.astype(dtype, copy=False)


def with_seeded_noise(graph: Graph, feeds: Mapping[str, Any], seed: int = 0) -> dict[str, Any]:
    """Feeds for every declared input of ``graph``: its noise inputs (``noise_input/<i>``)
    get the seeded noise the reference runner draws for ``seed``, the rest come from
    ``feeds`` by node name. Runs a rewritten graph with the same noise as the reference."""
    out: dict[str, Any] = {}
    for t in graph.inputs:
        i = noise_index(t.node)
        out[t.node] = (seeded_noise(seed, i, graph.static_shape(t)) if i is not None
                       else feeds[t.node])
    return out
