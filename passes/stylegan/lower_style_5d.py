"""``stylegan::lower_style_5d``: 5-D reshapes that are only indexed along one axis -> 4-D.

StyleGAN (v1) style modulation computes ``style = reshape(dense(w), [-1, 2, C, 1, 1])`` and
reads ``style[:, 0]`` and ``style[:, 1]`` (``StridedSlice`` with ``shrink_axis_mask`` on
axis 1), each ``[N, C, 1, 1]``. The rank-5 tensor is only a way of splitting the ``2C``
dense outputs into two groups.

Indexing axis ``a`` of a rank-5 tensor ``T`` (shape ``D``) equals a range slice of the rank-4
view that merges axis ``a`` with axis ``a + 1``: element ``(.., k, i, ..)`` of ``T`` is
element ``(.., k * D[a+1] + i, ..)`` of the view (same flat order), so ``T[.., k, ..]`` is
``view[.., k*D[a+1] : (k+1)*D[a+1], ..]``, already of the right shape. The view is a
``Reshape`` of what ``T`` was reshaped from; each index becomes a 4-D ``StridedSlice``
without shrink, ellipsis or new-axis masks (GPU-delegate friendly), and an ``Unpack`` along
``a`` a ``Split`` of the view. For the style, the view is ``[N, 2C, 1, 1]`` (NCHW: the groups
are channel ranges) and ``style[:, k]`` is channels ``k*C .. (k+1)*C``, which the NCHW ->
NHWC layout pass maps to a slice of the last axis. When ``a`` is the last axis it is merged
with the axis before it instead and the index is a slice with stride ``D[a]``.

Matched by structure: a ``Reshape`` whose output has rank 5 (read off its constant target
when at most the batch entry is -1, else from ``graph.infer()``) and whose
consumers are ``StridedSlice`` s that index exactly one axis with a constant and take every
other axis whole, or ``Unpack`` s; any number of groups. Consumers of other kinds are left
alone (the rank-5 tensor then stays for them). Exact: only data movement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.registry import Pass, register_pass
from graphsurgery.rewriter import Rewriter

_RANK = 5


@dataclass(frozen=True)
class _Index:
    """A consumer reading index ``k`` (or, for Unpack, every index) of axis ``axis``."""

    node: str
    axis: int
    k: int | None  # None for Unpack


@register_pass("stylegan::lower_style_5d")
class LowerStyle5D(Pass):
    """Lower rank-5 reshapes read only by single-axis indexing (v1 style split) to rank 4.

    ``T = Reshape(d, D)`` (rank 5) indexed on axis ``a`` becomes ``V = Reshape(d, D with
    axes a and a+1 merged)`` (rank 4); ``T[.., k, ..]`` becomes a ``StridedSlice`` of ``V``
    taking ``k*D[a+1] .. (k+1)*D[a+1]`` on the merged axis (no shrink mask) and
    ``Unpack(T, axis=a)`` becomes ``Split(V, D[a], axis=a)``. Any number of groups.

    Before::

        d  = AddV2(MatMul(w, W), b)                        [1, 32]
        s  = Reshape(d, [-1, 2, 16, 1, 1])                 rank 5
        s0 = StridedSlice(s, [0, 0], [0, 1], [1, 1], begin_mask=1, end_mask=1,
                          shrink_axis_mask=2)              [1, 16, 1, 1]
        s1 = StridedSlice(s, [0, 1], [0, 2], [1, 1], begin_mask=1, end_mask=1,
                          shrink_axis_mask=2)              [1, 16, 1, 1]

    After::

        v  = Reshape(d, [-1, 32, 1, 1])                    [1, 32, 1, 1]
        s0 = StridedSlice(v, [0, 0, 0, 0], [0, 16, 0, 0], [1, 1, 1, 1],
                          begin_mask=0b1101, end_mask=0b1101)      [1, 16, 1, 1]
        s1 = StridedSlice(v, [0, 16, 0, 0], [0, 32, 0, 0], [1, 1, 1, 1],
                          begin_mask=0b1101, end_mask=0b1101)      [1, 16, 1, 1]
    """

    infers_shapes = True

    def run(self, graph: Graph, rw: Rewriter) -> None:
        reshapes = [n.name for n in graph.nodes("Reshape") if _maybe_rank5(graph, n)]
        if not reshapes:
            return
        inferred: dict[TensorRef, object] | None = None
        dead: list[str] = []
        consts: dict[tuple[str, tuple[int, ...]], TensorRef] = {}
        for name in reshapes:
            node = graph.node(name)
            # The constant target is enough when only the batch is unknown (no inference:
            # it costs a TensorFlow import of the whole graph); else infer, once.
            shape = _target_shape(graph, node)
            uses = _uses(graph, node, shape) if shape is not None else None
            if uses is None or (None in uses and -1 in shape):
                if inferred is None:
                    inferred = graph.infer()
                shape = _shape(inferred, node.output())
                if shape is None or len(shape) != _RANK:
                    continue
                uses = _uses(graph, node, shape)
            views: dict[int, TensorRef] = {}
            for use in uses:
                if use is None:
                    continue
                merged = use.axis if use.axis < _RANK - 1 else use.axis - 1
                if merged not in views:
                    dims = _view_dims(node, graph, shape, merged)
                    if dims is None:
                        continue
                    views[merged] = _make_view(graph, rw, node, dims, consts)
                with rw.rule_scope("Unpack" if use.k is None else "StridedSlice"):
                    _rewrite(graph, rw, use, views[merged], shape, merged, consts)
                dead.append(use.node)
            dead.append(node.name)
        if dead:
            rw.erase_dead(dead)


def _target_shape(graph: Graph, node: Node) -> tuple[int, ...] | None:
    """The rank-5 constant target of ``node`` when at most its first entry is -1."""
    target = _const_ints(graph, node.data_inputs[1])
    if target is None or len(target) != _RANK or any(d < 0 for d in target[1:]):
        return None
    return tuple(target) if target[0] >= -1 else None


def _uses(graph: Graph, node: Node, shape: tuple[int, ...]) -> list[_Index | None]:
    return [_index_of(graph, u, shape) for u, _ in graph.consumers(node.output())]


# ---------------------------------------------------------------------------- matching
def _maybe_rank5(graph: Graph, node: Node) -> bool:
    """Cheap pre-filter: a Reshape whose target has 5 entries (or is not a constant)."""
    ins = node.data_inputs
    if len(ins) != 2:
        return False
    if not graph.is_const(ins[1]):
        return True
    shape = graph.const_shape(ins[1].node)
    return len(shape) == 1 and shape[0] == _RANK


def _shape(shapes: dict[TensorRef, object], ref: TensorRef) -> tuple[int, ...] | None:
    shape = getattr(shapes.get(ref), "shape", None)
    return None if shape is None else tuple(int(d) for d in shape)


def _const_ints(graph: Graph, ref: TensorRef) -> list[int] | None:
    if not graph.is_const(ref):
        return None
    value = graph.const_value(ref)
    if value.ndim != 1 or value.dtype.kind not in "iu":
        return None
    return [int(v) for v in value]


def _index_of(graph: Graph, node: Node, shape: tuple[int, ...]) -> _Index | None:
    """The single-axis index that ``node`` reads from its rank-5 input, if that is all."""
    if node.op == "Unpack":
        axis = int(node.attr("axis", 0))
        axis = axis + _RANK if axis < 0 else axis
        if not 0 <= axis < _RANK or shape[axis] < 0 or graph.is_output(node.name):
            return None
        return _Index(node.name, axis, None)
    if node.op != "StridedSlice" or len(node.data_inputs) != 4:
        return None
    if node.attr("ellipsis_mask", 0) or node.attr("new_axis_mask", 0):
        return None
    begin, end, strides = (_const_ints(graph, t) for t in node.data_inputs[1:])
    if begin is None or end is None or strides is None:
        return None
    n = len(begin)
    if not (len(end) == len(strides) == n) or n > _RANK:
        return None
    shrink = int(node.attr("shrink_axis_mask", 0))
    bmask = int(node.attr("begin_mask", 0))
    emask = int(node.attr("end_mask", 0))
    axes = [i for i in range(n) if shrink >> i & 1]
    if len(axes) != 1 or shrink >> n:
        return None
    axis = axes[0]
    size = shape[axis]
    if size < 0 or bmask >> axis & 1:
        return None
    k = begin[axis] + size if begin[axis] < 0 else begin[axis]
    if not 0 <= k < size:
        return None
    for i in range(n):
        if i == axis:
            continue
        whole_begin = bmask >> i & 1 or begin[i] == 0 or (shape[i] >= 0 and begin[i] <= -shape[i])
        whole_end = emask >> i & 1 or (shape[i] >= 0 and end[i] >= shape[i])
        if strides[i] != 1 or not whole_begin or not whole_end:
            return None
    return _Index(node.name, axis, k)


# ---------------------------------------------------------------------------- rewriting
def _view_dims(
    node: Node, graph: Graph, shape: tuple[int, ...], merged: int
) -> list[int] | None:
    """The rank-4 view merging axes ``merged`` and ``merged + 1``; one unknown axis at most,
    and not in the merged pair."""
    if shape[merged] < 0 or shape[merged + 1] < 0:
        return None
    dims = [*shape[:merged], shape[merged] * shape[merged + 1], *shape[merged + 2 :]]
    if sum(1 for d in dims if d < 0) > 1:
        return None
    # Keep a -1 the original target had (e.g. the batch) so the view stays batch-agnostic.
    target = _const_ints(graph, node.data_inputs[1])
    if target is not None and len(target) == _RANK and target.count(-1) == 1:
        pos = target.index(-1)
        if pos not in (merged, merged + 1) and all(d >= 0 for d in dims):
            dims[pos if pos < merged else pos - 1] = -1
    return dims


def _make_view(
    graph: Graph,
    rw: Rewriter,
    node: Node,
    dims: list[int],
    consts: dict[tuple[str, tuple[int, ...]], TensorRef],
) -> TensorRef:
    key = ("shape", tuple(dims))
    if key not in consts:
        consts[key] = rw.const(np.array(dims, np.int32), name=f"{node.name}_4d/shape").output()
    view = rw.add_node(
        "Reshape",
        [node.data_inputs[0], consts[key]],
        {"T": node.attr("T") or DType.float32, "Tshape": DType.int32},
        name=f"{node.name}_4d",
        control_inputs=node.control_inputs,
    )
    return view.output()


def _rewrite(
    graph: Graph,
    rw: Rewriter,
    use: _Index,
    view: TensorRef,
    shape: tuple[int, ...],
    merged: int,
    consts: dict[tuple[str, tuple[int, ...]], TensorRef],
) -> None:
    node = graph.node(use.node)
    dtype = node.attr("T") or DType.float32
    inner = use.axis == merged  # merged with the next axis (else with the previous one)
    if use.k is None and inner:
        axis = rw.const(np.int32(merged), name=f"{use.node}/split_dim")
        split = rw.add_node(
            "Split", [axis.output(), view], {"num_split": shape[use.axis], "T": dtype},
            name=f"{use.node}/split", control_inputs=node.control_inputs,
        )
        for k in range(shape[use.axis]):
            rw.replace_uses(TensorRef(use.node, k), split.output(k))
        return
    ks = range(shape[use.axis]) if use.k is None else [use.k]
    for k in ks:
        if inner:
            step = shape[use.axis + 1]
            lo, hi, stride = k * step, (k + 1) * step, 1
        else:
            lo, hi, stride = k, shape[use.axis - 1] * shape[use.axis], shape[use.axis]
        begin = [0] * (_RANK - 1)
        end = [0] * (_RANK - 1)
        strides = [1] * (_RANK - 1)
        begin[merged], end[merged], strides[merged] = lo, hi, stride
        mask = ((1 << (_RANK - 1)) - 1) & ~(1 << merged)
        base = f"{use.node}_4d" if use.k is not None else f"{use.node}_4d_{k}"
        args = []
        for v, what in ((begin, "begin"), (end, "end"), (strides, "strides")):
            key = (what, tuple(v))
            if key not in consts:  # shared: every layer slices the same ranges
                consts[key] = rw.const(np.array(v, np.int32), name=f"{base}/{what}").output()
            args.append(consts[key])
        sliced = rw.add_node(
            "StridedSlice",
            [view, *args],
            {
                "T": dtype, "Index": DType.int32, "begin_mask": mask, "end_mask": mask,
                "ellipsis_mask": 0, "new_axis_mask": 0, "shrink_axis_mask": 0,
            },
            name=base,
            control_inputs=node.control_inputs,
        )
        port = 0 if use.k is not None else k
        rw.replace_uses(TensorRef(use.node, port), sliced.output())
