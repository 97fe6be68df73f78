"""Helpers for testing passes: run a graph in TensorFlow and check a pass's effect.

``check_pass`` is the shape of every pass test: op counts before and after are asserted,
and the outputs before and after the pass are compared on the same inputs::

    g = build_graph()
    after = check_pass(g, "core::dce", feeds={"x": x},
                       before={"Identity": 3}, after={"Identity": 0})
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .ir.graph import Graph
from .ir.names import TensorRef
from .pipeline import PassRecord, Pipeline, Step


def run_tf(
    graph: Graph,
    feeds: Mapping[str, Any],
    outputs: list[str | TensorRef] | None = None,
) -> list[np.ndarray]:
    """Evaluate ``outputs`` (default: the declared outputs) with TensorFlow on CPU."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    wanted = outputs or graph.outputs
    refs = [t if isinstance(t, TensorRef) else TensorRef.parse(t) for t in wanted]
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        tf.graph_util.import_graph_def(graph.to_tf_graph_def(), name="")
    feed = {tf_graph.get_tensor_by_name(str(TensorRef.parse(k))): v for k, v in feeds.items()}
    fetch = [tf_graph.get_tensor_by_name(str(r)) for r in refs]
    with tf.compat.v1.Session(graph=tf_graph) as sess:
        return [np.asarray(v) for v in sess.run(fetch, feed)]


def assert_runs_alone(code: str, timeout: float = 300) -> None:
    """Run Python ``code`` in a fresh interpreter (nothing imported yet) and assert that it
    exits 0; the failure shows the end of its stderr. For checks on what gets imported."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]


def tf_graph(
    build: Callable[..., Any], *, seed: int = 0, **inputs: Sequence[int]
) -> tuple[Graph, dict[str, np.ndarray]]:
    """A graph written as TF1 code, with standard-normal feeds for its inputs.

    ``inputs`` maps placeholder names to float32 shapes. ``build(tf, **placeholders)``
    returns the output: a tensor (named ``y``) or a dict of name -> tensor; each output is
    an ``Identity`` of that name, declared as the graph's outputs::

        g, feeds = tf_graph(lambda tf, x: tf.nn.relu(x * 2.0), x=(1, 8, 8, 4))
        check_pass(g, "core::fold_scalings", feeds=feeds)
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    g = tf.Graph()
    with g.as_default():
        phs = {k: tf.compat.v1.placeholder(tf.float32, list(v), name=k) for k, v in inputs.items()}
        out = build(tf, **phs)
        outs = out if isinstance(out, dict) else {"y": out}
        for name, t in outs.items():
            tf.identity(t, name=name)
    feeds = {k: rng.standard_normal(tuple(v)).astype(np.float32) for k, v in inputs.items()}
    return Graph.from_graph_def(g.as_graph_def(), outputs=list(outs)), feeds


def run_pass(graph: Graph, pass_id: str, **options: Any) -> PassRecord:
    """Run one pass in place with verification; returns its record."""
    result = Pipeline([Step(pass_id, options)]).run(graph)
    return result.records[-1]


def check_pass(
    graph: Graph,
    pass_id: str,
    *,
    feeds: Mapping[str, Any] | None = None,
    before: Mapping[str, int] | None = None,
    after: Mapping[str, int] | None = None,
    options: Mapping[str, Any] | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-6,
    expect_change: bool = True,
) -> Graph:
    """Assert op counts before/after ``pass_id`` and that outputs are unchanged.

    ``before``/``after`` map op types to expected counts (only the named ops are checked).
    With ``feeds`` the declared outputs are computed before and after and compared.
    """
    counts = graph.op_counts()
    for op, n in (before or {}).items():
        assert counts.get(op, 0) == n, f"before {pass_id}: {op} x{counts.get(op, 0)}, expected {n}"
    ref = run_tf(graph, feeds) if feeds is not None else None
    work = graph.copy()
    record = run_pass(work, pass_id, **(options or {}))
    assert record.changed == expect_change, f"{pass_id} changed={record.changed}"
    counts = work.op_counts()
    for op, n in (after or {}).items():
        assert counts.get(op, 0) == n, f"after {pass_id}: {op} x{counts.get(op, 0)}, expected {n}"
    if ref is not None:
        got = run_tf(work, feeds)
        for a, b, t in zip(ref, got, work.outputs):
            assert a.shape == b.shape, f"{t}: shape {b.shape} != {a.shape}"
            np.testing.assert_allclose(b, a, atol=atol, rtol=rtol, err_msg=str(t))
    return work


def random_feeds(graph: Graph, seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
    """Standard-normal values for every declared float input (unknown dims: ``batch``);
    noise inputs (``noise_input/<i>``) are left to the reference runner's seeded noise."""
    from .reference import noise_index

    rng = np.random.default_rng(seed)
    feeds = {}
    for ref in graph.inputs:
        if noise_index(ref.node) is not None:
            continue
        dtype = graph.dtype_hint(ref)
        shape = graph.static_shape(ref)
        if shape is None or dtype is None:
            raise ValueError(f"input {ref}: unknown shape or dtype")
        dims = [batch if d < 0 else d for d in shape]
        if dtype.is_floating:
            feeds[ref.node] = rng.standard_normal(dims).astype(dtype.numpy)
        else:
            feeds[ref.node] = np.zeros(dims, dtype=dtype.numpy)
    return feeds


def assert_equivalent(
    before: Graph,
    after: Graph,
    *,
    feeds: Mapping[str, Any] | None = None,
    seed: int = 0,
    max_rel: float = 1e-4,
    fetches: tuple[list[str], list[str]] | None = None,
) -> list[Any]:
    """Run both graphs through the reference runner with the same inputs and the same
    seeded noise and assert their outputs agree: max abs error at most ``max_rel`` of the
    reference output's value range. Returns the :class:`~graphsurgery.metrics.Comparison`s.

    Noise matches when ``after`` exposes noise as ``noise_input/<i>`` Placeholders or
    froze it with :func:`graphsurgery.reference.seeded_noise` under the same ``seed``, and
    the random ops keep their topological order. ``fetches`` compares other tensors:
    (names in ``before``, names in ``after``).
    """
    from .metrics import compare
    from .runners import ReferenceRunner

    feeds = dict(feeds) if feeds is not None else random_feeds(before, seed)
    with ReferenceRunner(before, noise="seeded", seed=seed) as a:
        ref = a.fetch(feeds, fetches[0]) if fetches else a.run(feeds)
    after_feeds = {k: v for k, v in feeds.items() if k.split(":")[0] in after}
    with ReferenceRunner(after, noise="seeded", seed=seed) as b:
        got = b.fetch(after_feeds, fetches[1]) if fetches else b.run(after_feeds)
    results = []
    for i, (x, y) in enumerate(zip(ref, got)):
        assert x.shape == y.shape, f"output {i}: shape {y.shape} != reference {x.shape}"
        cmp = compare(x, y)
        assert cmp.rel_max_abs <= max_rel, f"output {i}: {cmp}"
        results.append(cmp)
    return results
