"""``core::cse``: common-subexpression elimination."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from graphsurgery.ir import opdefs, proto
from graphsurgery.ir.attrs import tensor_shape, tensor_to_numpy
from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph
from graphsurgery.ir.names import TensorRef, source_node
from graphsurgery.registry import Pass, register_pass
from graphsurgery.rewriter import Rewriter

# Feedable or frame-changing ops: two of them with equal inputs are still different nodes.
_NEVER_MERGED = frozenset({
    "Placeholder", "PlaceholderV2", "PlaceholderWithDefault",
    "Enter", "RefEnter", "Exit", "RefExit", "NextIteration", "RefNextIteration",
})
# Bookkeeping attributes that do not change what a node computes.
_IGNORED_ATTRS = frozenset({"_class", "_output_shapes", "_has_manual_control_dependencies"})


@register_pass("core::cse")
class CommonSubexpressionElimination(Pass):
    """Merge nodes that compute the same thing: same op, inputs, attributes and device.

    Data inputs must match in order, control inputs as a set. Constants are equal when
    dtype, shape and content bytes are (however they are encoded). Stateful ops (random,
    variables, I/O), unregistered custom ops, ops with reference inputs, placeholders and
    loop frame ops are never merged, nor are declared graph inputs or outputs merged away.
    Nodes are visited in topological order, so whole chains of duplicates collapse in one
    run.

    Before::

        x = Placeholder
        a = Mul(x, c)
        b = Mul(x, c)
        y = Add(Relu(a), Relu(b))             (declared output)

    After::

        x = Placeholder
        a = Mul(x, c)
        r = Relu(a)
        y = Add(r, r)
    """

    def run(self, graph: Graph, rw: Rewriter) -> None:
        inputs = {t.node for t in graph.inputs}
        outputs = {t.node for t in graph.outputs}
        table: dict[tuple[Any, ...], list[str]] = {}
        # duplicate -> the node that replaces it. Nodes are only renamed while visiting;
        # the users of duplicates are rewritten once each at the end, so that 5,000
        # duplicates feeding one AddN rewrite its input list once, not 5,000 times.
        renamed: dict[str, str] = {}
        # Keys of unchanged nodes (same stamp) carry over from the last run on this graph:
        # a weight's digest is computed once per pipeline.
        cache: dict[str, tuple[int | None, tuple[Any, ...]]] = getattr(graph, "_cse_keys", {})
        keys: dict[str, tuple[int | None, tuple[Any, ...]]] = {}
        order = graph.toposort()
        for name in order:
            nd = graph.node_def(name)
            if not _mergeable(nd.op) or name in inputs:
                continue
            stamp = graph.stamp(name)
            if renamed and any(source_node(s) in renamed for s in nd.input):
                key = _key(nd, renamed)  # its inputs change below: a new stamp, no caching
            else:
                hit = cache.get(name)
                key = hit[1] if hit is not None and hit[0] == stamp else _key(nd)
                keys[name] = (stamp, key)
            bucket = table.setdefault(key, [])
            rep = next((r for r in bucket if _same_value(graph, r, name)), None)
            if rep is None:
                bucket.append(name)  # declared outputs may be kept as representatives
                continue
            if name in outputs:
                continue
            renamed[name] = rep
            keys.pop(name, None)
        if renamed:
            _redirect(graph, rw, renamed, order)
            rw.fix_colocation(renamed)
        graph._cse_keys = keys


def _redirect(graph: Graph, rw: Rewriter, renamed: dict[str, str], order: list[str]) -> None:
    """Point every use of a duplicate at its representative (each user rewritten once,
    control dependencies kept as a set), then erase the duplicates."""
    users = {u for d in renamed for u in graph._users.get(d, ()) if u not in renamed}
    for user in sorted(users):
        nd = proto.NodeDef()
        nd.CopyFrom(graph.node_def(user))
        data, ctrl = [], []
        for s in nd.input:
            if s[0] == "^":
                dep = renamed.get(s[1:], s[1:])
                if dep != user and f"^{dep}" not in ctrl:
                    ctrl.append(f"^{dep}")
            else:
                ref = TensorRef.parse(s)
                rep = renamed.get(ref.node)
                data.append(s if rep is None else TensorRef(rep, ref.port).input_string)
        del nd.input[:]
        nd.input.extend(data + ctrl)
        rw.replace_node_def(nd)
    # Users first: in reverse topological order every duplicate is unused when erased.
    for name in reversed(order):
        if name in renamed:
            rw.erase(name)


def _mergeable(op: str) -> bool:
    if op in _NEVER_MERGED or not opdefs.is_registered(op):
        return False
    return not opdefs.is_stateful(op) and not opdefs.has_ref_input(op)


_HASHED_BYTES = 64 << 10


def _key(nd: Any, renamed: dict[str, str] | None = None) -> tuple[Any, ...]:
    """What makes two nodes equal, with inputs read through ``renamed`` (duplicates found
    so far -> their representatives)."""
    data, ctrl = [], set()
    for s in nd.input:
        if s.startswith("^"):
            ctrl.add(renamed.get(s[1:], s[1:]) if renamed else s[1:])
        else:
            ref = TensorRef.parse(s)
            if renamed and ref.node in renamed:
                ref = TensorRef(renamed[ref.node], ref.port)
            data.append(ref)
    attrs = []
    for k in sorted(nd.attr.keys()):
        if k in _IGNORED_ATTRS:
            continue
        if nd.op == "Const" and k == "value":
            attrs.append((k, _const_digest(nd.attr[k].tensor)))
        else:
            attrs.append((k, nd.attr[k].SerializeToString(deterministic=True)))
    return (nd.op, nd.device, tuple(data), frozenset(ctrl), tuple(attrs))


def _const_bytes(tp: Any) -> bytes:
    """Content of a TensorProto in a canonical encoding (numpy bytes, or repr for strings)."""
    if tp.tensor_content and tp.dtype != DType.string:
        return bytes(tp.tensor_content)
    try:
        arr = tensor_to_numpy(tp)
    except (ValueError, KeyError):  # a dtype we do not decode (bfloat16...): exact encoding
        return b"proto:" + tp.SerializeToString(deterministic=True)
    if tp.dtype == DType.string:
        return repr(arr.ravel().tolist()).encode()
    return np.ascontiguousarray(arr).tobytes()


def _const_digest(tp: Any) -> tuple[int, tuple[int, ...], bytes]:
    """A bucket key for a constant: small ones by a hash of their content, large ones (the
    weights) by their size and a few slices, which is enough to tell weights apart without
    hashing 120 MB on every run; equal keys are then compared exactly (``_same_value``)."""
    data = _const_bytes(tp)
    if len(data) <= _HASHED_BYTES:
        key = hashlib.blake2b(data, digest_size=16).digest()
    else:
        step = len(data) // 8
        key = len(data).to_bytes(8, "little") + b"".join(
            data[i * step: i * step + 64] for i in range(8)) + data[-64:]
    return (int(tp.dtype), tensor_shape(tp), key)


def _same_value(graph: Graph, a: str, b: str) -> bool:
    """Exact comparison behind an equal key: only Const contents were compared by digest."""
    na, nb = graph.node_def(a), graph.node_def(b)
    if na.op != "Const":
        return True
    return _const_bytes(na.attr["value"].tensor) == _const_bytes(nb.attr["value"].tensor)
