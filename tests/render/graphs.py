"""Small graphs for the diff-drawing tests, built with a Rewriter (no TensorFlow needed)."""

from __future__ import annotations

import numpy as np
from core.graphs import F32, chain  # tests/core/graphs.py (pytest puts tests/ on sys.path)

import graphsurgery as gs


def edited_chain() -> tuple[gs.Graph, gs.Graph, gs.Rewriter]:
    """``x -> id0 -> id1 -> mul(., c) -> y`` (+ unused Relu), and a copy edited so that
    id0 is removed, id1 and y read new inputs, unused gets an attribute and neg is added."""
    g = chain(n_identity=2)
    after = g.copy()
    rw = gs.Rewriter(after, "test::edit")
    rw.set_input("id1", 0, "x")
    rw.erase("id0")
    with rw.rule_scope("negate"):
        neg = rw.add_node("Neg", ["mul"], {"T": F32}, name="neg")
    rw.set_input("y", 0, neg)
    rw.set_attr("unused", "_marker", "x")
    return g, after, rw


def blocks(n: int = 4, width: int = 3) -> gs.Graph:
    """x -> per block ``b/<r>x<r>``: read (Identity) -> mul (by a Const w) -> act (Relu),
    chained ``width`` times inside the block; blocks in sequence, r = 4, 8, 16, ..."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    t = rw.placeholder("x", F32, [1, 4])
    x = t
    for i in range(n):
        r = 4 << i
        scope = f"b/{r}x{r}"
        for j in range(width):
            read = rw.add_node("Identity", [t], {"T": F32}, name=f"{scope}/read_{j}")
            w = rw.const(np.full(4, j + 1, np.float32), name=f"{scope}/w_{j}")
            mul = rw.add_node("Mul", [read, w], {"T": F32}, name=f"{scope}/mul_{j}")
            t = rw.add_node("Relu", [mul], {"T": F32}, name=f"{scope}/act_{j}")
    y = rw.add_node("Identity", [t], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    g.provenance.clear()
    return g


def remove_reads(graph: gs.Graph, scopes: tuple[str, ...] | None = None) -> gs.Rewriter:
    """Bypass and erase the ``read_*`` Identity nodes (of ``scopes``, or all) in place."""
    rw = gs.Rewriter(graph, "test::remove_reads")
    for node in graph.nodes("Identity"):
        if "/read_" not in node.name:
            continue
        if scopes is not None and not node.name.startswith(scopes):
            continue
        rw.replace_node(node, node.data_inputs[0].node)
        rw.erase(node)
    return rw
