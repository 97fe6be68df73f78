"""Structural verification, run after every pass by default.

:func:`check_structure` (:mod:`graphsurgery.ir.structure`) finds what makes a GraphDef
unloadable: a dangling input or port, a control input before a data input, a cycle, a
missing interface tensor.
:func:`check_interface` compares the declared outputs with a signature taken earlier,
and :func:`check_shapes` (TensorFlow shape inference) reports shape conflicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ir.dtypes import DType
from .ir.graph import Graph
from .ir.names import TensorRef
from .ir.structure import check_structure

__all__ = ["EditGuard", "Signature", "check_interface", "check_shapes", "check_structure",
           "signature", "verify"]


@dataclass(frozen=True)
class Signature:
    """What must not change across a pass: output names with their dtypes and shapes."""

    outputs: tuple[tuple[TensorRef, DType | None, tuple[int, ...] | None], ...]


class EditGuard:
    """Finds NodeDefs that a pass edited in place, behind the Rewriter's back.

    Every change made through a :class:`~graphsurgery.Rewriter` replaces the NodeDef and
    gives the node a new stamp (:meth:`Graph.stamps`). A pass that writes into a NodeDef
    instead (``graph.node_def("x").input[0] = "y"``) leaves the stamp as it was, so the
    consumer index, the caches and the incremental structure check would all trust a node
    that changed. The guard keeps a fingerprint of every node: its serialised NodeDef,
    but for a large Const the op, inputs, device, attribute names and the value's dtype
    and shape only, so weights are never copied. :meth:`edited` compares the nodes whose
    stamp did not change with their fingerprints of the last call (one serialisation per
    node and call: about 0.1 s per 100k nodes).
    """

    def __init__(self, graph: Graph) -> None:
        self._stamps: dict[str, int | None] = {}
        self._prints: dict[str, int] = {}
        self._large: dict[str, int] = {}  # Const larger than 4 KiB -> the stamp it was sized at
        self.edited(graph)

    def edited(self, graph: Graph) -> list[str]:
        """Nodes edited, added or erased in place since the last call (sorted); the
        fingerprints are then taken afresh."""
        nodes, stamps = graph._nodes, graph._stamps
        before, prints_before, large = self._stamps, self._prints, self._large
        names = list(nodes)
        now = [stamps.get(n) for n in names]
        # Size every Const once per NodeDef (a new stamp), from its shape alone.
        for name, stamp in zip(names, now):
            if before.get(name) != stamp and nodes[name].op == "Const":
                try:
                    is_large = graph.const_nbytes(name) > _FINGERPRINT_BYTES
                except (KeyError, ValueError):
                    is_large = False
                if is_large:
                    large[name] = stamp  # type: ignore[assignment]
                else:
                    large.pop(name, None)
        prints = [_large_const_print(nd) if large.get(name) == stamp
                  else hash(nd.SerializeToString(deterministic=True))
                  for name, nd, stamp in zip(names, nodes.values(), now)]
        found = [n for n, stamp, fp in zip(names, now, prints)
                 if stamp is None or (before.get(n) == stamp and prints_before[n] != fp)]
        found += [n for n, stamp in before.items() if n not in nodes and stamps.get(n) == stamp]
        self._stamps = dict(zip(names, now))
        self._prints = dict(zip(names, prints))
        if len(large) > 2 * len(names) + 64:  # forget erased Consts
            self._large = {n: v for n, v in large.items() if n in nodes}
        return sorted(found)


def _large_const_print(nd: Any) -> int:
    """A large Const's fingerprint: all but its value's content (never copied)."""
    tp = nd.attr["value"].tensor
    return hash((nd.name, nd.op, tuple(nd.input), nd.device, tuple(sorted(nd.attr)), tp.dtype,
                 tp.tensor_shape.SerializeToString(deterministic=True)))


# Consts above this size are fingerprinted without their value (see EditGuard).
_FINGERPRINT_BYTES = 4096


def signature(graph: Graph, shapes: bool = False) -> Signature:
    """The output signature of ``graph`` (shapes only from inference when ``shapes``)."""
    info = graph.infer() if shapes else {}
    out = []
    for ref in graph.outputs:
        if ref.node not in graph:
            out.append((ref, None, None))
            continue
        dtype = graph.dtype_hint(ref)
        shape = graph.static_shape(ref)
        if ref in info:
            dtype = dtype or info[ref].dtype
            shape = shape if shape is not None else info[ref].shape
        out.append((ref, dtype, shape))
    return Signature(tuple(out))


def check_interface(before: Signature, graph: Graph, shapes: bool = False) -> list[str]:
    """Declared outputs must still exist, with the same dtype, and shape where known."""
    after = signature(graph, shapes)
    problems = []
    if len(before.outputs) != len(after.outputs):
        problems.append(
            f"the graph had {len(before.outputs)} outputs and now has {len(after.outputs)}"
        )
        return problems
    for (_, dt0, sh0), (ref1, dt1, sh1) in zip(before.outputs, after.outputs):
        if ref1.node not in graph:
            problems.append(f"declared output {ref1} no longer exists")
            continue
        if dt0 is not None and dt1 is not None and dt0 != dt1:
            problems.append(f"output {ref1} changed dtype from {dt0.name} to {dt1.name}")
        if sh0 is not None and sh1 is not None and not _compatible(sh0, sh1):
            problems.append(f"output {ref1} changed shape from {list(sh0)} to {list(sh1)}")
    return problems


def _compatible(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or x < 0 or y < 0 for x, y in zip(a, b))


def check_shapes(graph: Graph) -> list[str]:
    """Shape conflicts TensorFlow's shape inference reports (empty when consistent)."""
    from .ir.shapes import shape_conflicts

    return shape_conflicts(graph)


def verify(
    graph: Graph, before: Signature | None = None, *, shapes: bool = False,
    incremental: bool = False,
) -> list[str]:
    """All structural problems, interface changes against ``before``, and shape conflicts.

    ``incremental``: see :func:`check_structure`."""
    problems = check_structure(graph, incremental=incremental)
    if problems:
        return problems
    if before is not None:
        problems += check_interface(before, graph, shapes)
    if shapes:
        problems += check_shapes(graph)
    return problems
