"""Small graphs for core tests, built with a Rewriter (no TensorFlow needed)."""

from __future__ import annotations

import numpy as np

import graphsurgery as gs
from graphsurgery.ir import proto

F32 = gs.DType.float32


def chain(n_identity: int = 2) -> gs.Graph:
    """x [1,4] -> Identity*n -> Mul(., c) -> y; plus an unused Relu."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 4])
    t = x
    for i in range(n_identity):
        t = rw.add_node("Identity", [t], {"T": F32}, name=f"id{i}")
    c = rw.const(np.arange(4, dtype=np.float32), name="c")
    m = rw.add_node("Mul", [t, c], {"T": F32}, name="mul")
    rw.add_node("Relu", [x], {"T": F32}, name="unused")
    y = rw.add_node("Identity", [m], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    g.provenance.clear()
    return g


def raw_graph_def(nodes: list[tuple[str, str, list[str]]]) -> bytes:
    """Serialised GraphDef of (name, op, inputs) float32 nodes, without any checking."""
    gd = proto.GraphDef()
    for name, op, inputs in nodes:
        nd = gd.node.add(name=name, op=op)
        nd.input.extend(inputs)
        nd.attr["T"].type = int(F32)
        if op == "Placeholder":
            nd.attr["dtype"].type = int(F32)
    return gd.SerializeToString()


def deep_chain(n: int, kind: str) -> gs.Graph:
    """x -> ... -> y with an ``n``-long chain (deeper than Python's recursion limit).

    ``kind``: ``"data"`` (Neg/Relu on x), ``"control"`` (Relu(x) nodes each waiting on the
    previous one), ``"const_control"`` (Consts each waiting on the previous one, folded
    into y by ``core::fold_constants``).
    """
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 4])
    t, prev = x, None
    for i in range(n):
        after = [prev] if prev is not None else []
        if kind == "data":
            t = rw.add_node("Relu" if i % 2 else "Neg", [t], {"T": F32}, name=f"n{i}")
        elif kind == "control":
            prev = rw.add_node("Relu", [x], {"T": F32}, name=f"n{i}", control_inputs=after)
        else:
            prev = t = rw.const(np.float32(i), name=f"n{i}")
            for dep in after:
                rw.add_control_input(t, dep)
    if kind == "const_control":
        t = rw.add_node("Neg", [t], {"T": F32}, name="k")
    y = rw.add_node("AddV2", [x, t], {"T": F32}, name="y",
                    control_inputs=[prev] if kind == "control" else [])
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    g.provenance.clear()
    return g
