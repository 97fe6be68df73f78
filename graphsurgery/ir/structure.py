"""Structural checks of a graph: what makes a GraphDef unloadable.

:func:`check_structure` finds a dangling input or port, a control input before a data
input, a cycle, a missing interface tensor or a colocation with a missing node. Loading
(:func:`graphsurgery.ir.io.load`) and the pass manager (after every pass, through
:mod:`graphsurgery.verify`) run it.
"""

from __future__ import annotations

from ..errors import GraphError
from . import opdefs
from .graph import Graph
from .names import Input


def check_structure(graph: Graph, *, incremental: bool = False) -> list[str]:
    """Problems that make ``graph`` invalid, one line each (empty when valid).

    With ``incremental``, after a check that found nothing, the next one on the same graph
    looks only at what changed since: a node whose stamp (:meth:`Graph.stamps`) is the one
    of the last clean check still has the inputs that were valid then, provided NodeDefs
    are replaced, never edited in place; only its sources may have gone or been rewritten
    (with fewer outputs, say), so their users are checked too. The pass manager asks for it
    only after an :class:`~graphsurgery.verify.EditGuard` has found no NodeDef edited in
    place; by default every node is checked.
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
