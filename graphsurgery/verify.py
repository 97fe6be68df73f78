"""Structural verification, run after every pass by default.

:func:`check_structure` finds what makes a GraphDef unloadable: a dangling input or port,
a control input before a data input, a cycle, a missing interface tensor.
:func:`check_interface` compares the declared outputs with a signature taken earlier,
and :func:`check_shapes` (TensorFlow shape inference) reports shape conflicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import GraphError
from .ir import opdefs
from .ir.dtypes import DType
from .ir.graph import Graph
from .ir.names import Input, TensorRef


@dataclass(frozen=True)
class Signature:
    """What must not change across a pass: output names with their dtypes and shapes."""

    outputs: tuple[tuple[TensorRef, DType | None, tuple[int, ...] | None], ...]


def check_structure(graph: Graph, *, incremental: bool = False) -> list[str]:
    """Problems that make ``graph`` invalid, one line each (empty when valid).

    With ``incremental``, after a check that found nothing, the next one on the same graph
    looks only at what changed since: a node whose stamp (:meth:`Graph.stamps`) is the one
    of the last clean check still has the inputs that were valid then, provided NodeDefs
    are replaced, never edited in place; only its sources may have gone or been rewritten
    (with fewer outputs, say), so their users are checked too. The pass manager asks for it
    only after an :class:`EditGuard` has found no NodeDef edited in place; by default every
    node is checked.
    """
    problems: list[str] = []
    nodes = graph._nodes
    base = getattr(graph, "_structure_base", None) if incremental else None
    if base is not None and base[0] == graph.version:
        return []
    stamps = graph._stamps
    if base is None:
        todo = nodes.items()
    else:
        before = base[1]
        todo_names = {n for n in nodes if before.get(n) != stamps.get(n)}
        for n, stamp in before.items():
            if stamps.get(n) != stamp:  # gone, or rewritten (perhaps with fewer outputs)
                todo_names.update(graph._users.get(n, ()))
        todo = [(n, nodes[n]) for n in todo_names if n in nodes]
    no_outputs = opdefs.ops_without_outputs()
    for name, nd in todo:
        if nd.name != name:
            problems.append(f"node table key {name!r} holds node {nd.name!r}")
        seen_control = False
        for i, s in enumerate(nd.input):
            if s[0] == "^":
                seen_control = True
                if s[1:] not in nodes:
                    problems.append(f"node {name!r}: input {i} {s!r} names a missing node")
                continue
            if seen_control:
                problems.append(f"node {name!r}: data input {s!r} comes after a control input")
            inp = Input.parse(s) if ":" in s else None
            src = nodes.get(s if inp is None else inp.node)
            if src is None:
                problems.append(f"node {name!r}: input {i} {s!r} names a missing node")
                continue
            # Port 0 exists unless the op has no outputs at all; other ports need the arity.
            if inp is None and src.op not in no_outputs:
                continue
            port = 0 if inp is None else inp.port
            n_out = opdefs.num_outputs(src)
            if n_out is not None and port >= n_out:
                problems.append(
                    f"node {name!r}: input {i} {s!r} names port {port} but "
                    f"{src.op} node {src.name!r} has {n_out} output(s)"
                )
    for what, refs in (("input", graph.inputs), ("output", graph.outputs)):
        for ref in refs:
            if ref.node not in nodes:
                problems.append(f"declared graph {what} {ref} names a missing node")
    problems += _dangling_colocations(graph)
    if not problems:
        cycle = _find_cycle(graph)
        if cycle:
            problems.append(f"graph has a cycle: {cycle[0]}")
    if not problems:
        graph._structure_base = (graph.version, dict(stamps))
    return problems


def _find_cycle(graph: Graph) -> list[str]:
    try:
        graph.toposort()
    except GraphError as exc:
        return [str(exc).split("graph has a cycle: ", 1)[-1]]
    return []


def _dangling_colocations(graph: Graph) -> list[str]:
    problems = []
    for name, nd in graph._nodes.items():
        if "_class" not in nd.attr:
            continue
        for entry in nd.attr["_class"].list.s:
            if entry.startswith(b"loc:@") and entry[5:].decode(errors="replace") not in graph:
                problems.append(f"node {name!r}: colocated with missing node "
                                f"{entry[5:].decode(errors='replace')!r}")
    return problems


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
