"""Recognition of StyleGAN2 modulated convolutions (helpers of ``stylegan::unfuse_modconv``).

Nothing here is registered. Matching is structural: op types, constant values and static
shapes (from :meth:`Graph.infer`), never node names.

Terms used below (StyleGAN2's own layout, ``[N, k, k, Cin, Cout]`` for the 5-D weight):

* **view chain**: a run of pure data-movement ops (``Reshape``, ``Transpose``,
  ``StridedSlice``, ``ReverseV2``, ``ExpandDims``, ``Squeeze``...) whose non-data inputs are
  constants. What such a chain does to each element is found by running it (with the numpy
  kernels of :mod:`graphsurgery.kernels`) on an array of element *indices*: the result says
  where every output element comes from, whatever the exact ops are.
* **modulated weight** ``ww``: a product (tree of ``Mul``) of a constant weight ``w``
  ``[1|-, k, k, Cin, Cout]``, a style view ``s5`` ``[N, 1, 1, Cin, 1]`` and, with
  demodulation, ``d5`` ``[N, 1, 1, 1, Cout]``;
* **demodulation**: ``d = f(Sum(Square(w * s5), axes=[1, 2, 3]))`` where ``f`` is a chain of
  element-wise ops (``+ eps``, ``Rsqrt``) whose other operands are scalar constants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphsurgery import kernels
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef

#: Pure data-movement ops with one data input (input 0); the others must be constants.
VIEW_OPS = frozenset({
    "Reshape", "Transpose", "StridedSlice", "Slice", "ReverseV2", "ExpandDims", "Squeeze",
    "Identity", "Snapshot", "GatherV2",
})
#: Element-wise unary ops allowed between the demodulation ``Sum`` and ``d``.
UNARY_OPS = frozenset({"Rsqrt", "Sqrt", "Reciprocal", "Inv", "Identity", "Snapshot"})
#: Element-wise binary ops allowed there when their other operand is a one-element constant.
BINARY_OPS = frozenset({"Add", "AddV2", "Mul", "Sub", "RealDiv", "Div", "Maximum", "Pow"})

Shapes = dict[TensorRef, Any]


# ------------------------------------------------------------------------------ basics
def shape_of(graph: Graph, infos: Shapes, t: TensorRef) -> tuple[int, ...] | None:
    """Fully known static shape of ``t``, else None."""
    if graph.is_const(t):
        return tuple(graph.const_shape(t.node))
    info = infos.get(t)
    if info is None or info.shape is None or any(d < 0 for d in info.shape):
        return None
    return tuple(info.shape)


def producer(graph: Graph, t: TensorRef) -> Node:
    return graph.node(t.node)


def is_view(graph: Graph, node: Node) -> bool:
    """A data-movement op whose every input but the first is a constant."""
    if node.op not in VIEW_OPS:
        return False
    ins = node.data_inputs
    return bool(ins) and all(graph.is_const(t) for t in ins[1:])


def run_views(graph: Graph, chain: Sequence[Node], array: np.ndarray) -> np.ndarray | None:
    """Apply ``chain`` (first op first) to ``array`` with the numpy kernels; None on error."""
    x = array
    for node in chain:
        params = [np.asarray(graph.const_value(t)) for t in node.data_inputs[1:]]
        try:
            x = kernels.evaluate(node, [x, *params])[0]
        except (KeyError, kernels.KernelError, kernels.Unsupported):
            return None
    return x


def views_back(graph: Graph, infos: Shapes, t: TensorRef) -> list[tuple[TensorRef, list[Node]]]:
    """Walk back from ``t`` through view ops that keep the element count.

    Returns ``[(source, chain)]`` nearest first (``t`` itself with an empty chain first);
    ``chain`` is the list of ops from ``source`` to ``t`` in execution order.
    """
    shape = shape_of(graph, infos, t)
    if shape is None:
        return []
    size = int(np.prod(shape, dtype=np.int64))
    out = [(t, [])]
    chain: list[Node] = []
    cur = t
    while cur.port == 0 and not graph.is_const(cur):
        node = producer(graph, cur)
        if not is_view(graph, node):
            break
        src = node.data_inputs[0]
        src_shape = shape_of(graph, infos, src)
        if src_shape is None or int(np.prod(src_shape, dtype=np.int64)) != size:
            break
        chain = [node, *chain]
        cur = src
        out.append((cur, list(chain)))
    return out


#: Index tracing of a view chain is skipped above this many elements (too slow to be worth it).
MAX_TRACE = 1 << 24


def keeps_order(graph: Graph, infos: Shapes, chain: Sequence[Node]) -> bool:
    """True when every op of ``chain`` provably keeps the row-major element order (it only
    reshapes): decided from the op, its constant parameters and the shapes, without data."""
    for node in chain:
        src = shape_of(graph, infos, node.data_inputs[0])
        out = shape_of(graph, infos, node.output())
        if src is None or out is None or np.prod(src) != np.prod(out):
            return False
        if node.op in ("Reshape", "ExpandDims", "Squeeze", "Identity", "Snapshot"):
            continue
        if node.op == "Transpose":
            perm = [int(p) % len(src) for p in np.atleast_1d(const_value(graph,
                                                                          node.data_inputs[1]))]
            moved = [p for p in perm if src[p] != 1]
            if moved != sorted(moved):
                return False
        elif node.op == "StridedSlice":
            strides = const_value(graph, node.data_inputs[3])
            if strides is None or np.any(np.asarray(strides) <= 0):
                return False
        elif node.op == "Slice":
            continue
        elif node.op == "ReverseV2":
            axes = np.atleast_1d(const_value(graph, node.data_inputs[1]))
            if any(src[int(a) % len(src)] != 1 for a in axes):
                return False
        else:
            return False
    return True


def axis_map(graph: Graph, infos: Shapes, chain: Sequence[Node]) -> list[tuple[int, bool]] | None:
    """Where the source's axes of size > 1 end up after ``chain``: ``(source axis,
    reversed)`` in output order, when every op only permutes axes (``Transpose``),
    reverses whole axes (a ``StridedSlice`` with strides of +-1 that keeps the shape) or
    adds and removes axes of size 1 (``Reshape``, ``ExpandDims``, ``Squeeze``,
    ``Identity``); else None. Decided from the shapes and constant parameters, without
    tracing element indices."""
    if not chain:
        return None
    first = shape_of(graph, infos, chain[0].data_inputs[0])
    if first is None:
        return None
    labels: list[tuple[int, bool] | None] = [(i, False) if d != 1 else None
                                             for i, d in enumerate(first)]
    for node in chain:
        src = shape_of(graph, infos, node.data_inputs[0])
        out = shape_of(graph, infos, node.output())
        if src is None or out is None or len(src) != len(labels):
            return None
        if node.op == "Transpose":
            perm = const_value(graph, node.data_inputs[1])
            if perm is None:
                return None
            perm = [int(p) % len(src) for p in np.atleast_1d(perm)]
            if sorted(perm) != list(range(len(src))):
                return None
            labels = [labels[p] for p in perm]
        elif node.op in ("Reshape", "ExpandDims", "Squeeze", "Identity", "Snapshot"):
            if [d for d in src if d != 1] != [d for d in out if d != 1]:
                return None
            moving = iter([lab for lab in labels if lab is not None])
            labels = [next(moving) if d != 1 else None for d in out]
        elif node.op == "StridedSlice":
            # Same shape and every stride +-1: each axis is taken whole, forwards or
            # backwards (a run of d steps of 1 inside an axis of length d).
            strides = const_value(graph, node.data_inputs[3])
            if (src != out or strides is None
                    or any(node.attr(m, 0) for m in ("ellipsis_mask", "new_axis_mask",
                                                     "shrink_axis_mask"))):
                return None
            strides = [int(v) for v in np.atleast_1d(strides)]
            if len(strides) > len(src) or any(v not in (1, -1) for v in strides):
                return None
            labels = [lab if lab is None or k >= len(strides) or strides[k] == 1
                      else (lab[0], not lab[1]) for k, lab in enumerate(labels)]
        else:
            return None
    return [lab for lab in labels if lab is not None]


def is_reshape_chain(graph: Graph, infos: Shapes, chain: Sequence[Node],
                     shape: tuple[int, ...]) -> bool:
    """``chain`` applied to a ``shape`` tensor is a pure reshape (symbolic check first, then,
    for other chains of moderate size, an element-index trace)."""
    if keeps_order(graph, infos, chain):
        return True
    size = int(np.prod(shape, dtype=np.int64))
    if size > MAX_TRACE:
        return False
    idx = np.arange(size, dtype=np.int64)
    got = run_views(graph, chain, idx.reshape(shape))
    return got is not None and np.array_equal(got.reshape(-1), idx)


def flat_source(
    graph: Graph, infos: Shapes, t: TensorRef
) -> tuple[TensorRef, tuple[int, ...]] | None:
    """The earliest tensor that ``t`` is a pure reshape of (same elements, same order)."""
    best = None
    for src, chain in views_back(graph, infos, t):
        shape = shape_of(graph, infos, src)
        if is_reshape_chain(graph, infos, chain, shape):
            best = (src, shape)
    return best


def const_value(graph: Graph, t: TensorRef) -> np.ndarray | None:
    """Value of ``t`` when it is a constant, a view of one, or a product of such."""
    if graph.is_const(t):
        return np.asarray(graph.const_value(t))
    if t.port != 0:
        return None
    node = producer(graph, t)
    if is_view(graph, node):
        src = const_value(graph, node.data_inputs[0])
        return None if src is None else run_views(graph, [node], src)
    if node.op == "Mul":
        a, b = (const_value(graph, x) for x in node.data_inputs)
        if a is not None and b is not None:
            return np.multiply(a, b, dtype=np.result_type(a, b))
    return None


def is_constant(graph: Graph, t: TensorRef) -> bool:
    """Structural test for what :func:`const_value` can evaluate (no value is decoded)."""
    if graph.is_const(t):
        return True
    if t.port != 0:
        return False
    node = producer(graph, t)
    if is_view(graph, node):
        return is_constant(graph, node.data_inputs[0])
    if node.op == "Mul":
        return all(is_constant(graph, x) for x in node.data_inputs)
    return False


def mul_leaves(graph: Graph, t: TensorRef) -> list[TensorRef]:
    """Leaves of the ``Mul`` tree rooted at ``t`` (constant subtrees are one leaf)."""
    if t.port != 0 or graph.is_const(t):
        return [t]
    node = producer(graph, t)
    if node.op != "Mul" or is_constant(graph, t):
        return [t]
    a, b = node.data_inputs
    return mul_leaves(graph, a) + mul_leaves(graph, b)


def scalar_const(graph: Graph, t: TensorRef) -> np.ndarray | None:
    """The value of a one-element constant ``t``, else None."""
    v = const_value(graph, t)
    return v if v is not None and v.size == 1 else None


# ------------------------------------------------------------------------------ matches
@dataclass
class Product:
    """A modulated weight ``w * s5 [* d5]``, 5-D ``[N, k, k, Cin, Cout]``."""

    root: TensorRef
    shape: tuple[int, int, int, int, int]
    w: np.ndarray  # [k, k, Cin, Cout], the product of the constant leaves
    s_leaf: TensorRef
    s_src: TensorRef  # a tensor with the N*Cin styles in [N, Cin] order
    s_src_shape: tuple[int, ...]
    d_leaf: TensorRef | None = None
    const_leaves: list[TensorRef] = field(default_factory=list)


@dataclass
class Demod:
    """``d = chain(Sum(Square(w * s5), [1, 2, 3]))``: ``chain`` in execution order, each
    entry ``(node, index of the input that carries d)``."""

    sum_node: Node
    chain: list[tuple[Node, int]]
    product: Product


def match_product(graph: Graph, infos: Shapes, root: TensorRef,
                  cache: dict | None = None) -> Product | None:
    """Recognise ``root`` as a modulated weight (with or without a demodulation factor)."""
    shape = shape_of(graph, infos, root)
    if shape is None or len(shape) != 5:
        return None
    n, kh, kw, cin, cout = shape
    if cin == 1 and cout == 1:
        return None  # a style and a demodulation factor would have the same shape
    leaves = mul_leaves(graph, root)
    if len(leaves) < 2:
        return None
    consts, s_leaves, d_leaves = [], [], []
    for leaf in leaves:
        if is_constant(graph, leaf):
            consts.append(leaf)
            continue
        lshape = shape_of(graph, infos, leaf)
        if lshape == (n, 1, 1, cin, 1):
            s_leaves.append(leaf)
        elif lshape == (n, 1, 1, 1, cout):
            d_leaves.append(leaf)
        else:
            return None
    if len(s_leaves) != 1 or len(d_leaves) > 1 or not consts:
        return None
    key = ("w", tuple(consts), (kh, kw, cin, cout))
    w = None if cache is None else cache.get(key)
    for leaf in consts if w is None else ():
        v = const_value(graph, leaf)
        if v is None or v.ndim > 5:
            return None
        v = v.reshape((1,) * (5 - v.ndim) + v.shape)
        if v.shape[0] != 1:
            return None
        try:
            w = v if w is None else np.multiply(w, v, dtype=np.result_type(w, v))
            w = np.broadcast_to(w, (1, kh, kw, cin, cout))
        except ValueError:
            return None
    if cache is not None:  # keep only the latest weight: the demodulation check reuses it
        cache.clear()
        cache[key] = w
    dtype = w.dtype
    src = flat_source(graph, infos, s_leaves[0])
    if src is None:
        return None
    return Product(
        root=root, shape=shape, w=np.asarray(w[0], dtype), s_leaf=s_leaves[0], s_src=src[0],
        s_src_shape=src[1], d_leaf=d_leaves[0] if d_leaves else None, const_leaves=consts,
    )


def _same_weight(graph: Graph, a: Product, b: Product) -> bool:
    if a.shape != b.shape or a.s_src != b.s_src:
        return False
    if set(a.const_leaves) == set(b.const_leaves):
        return True
    return np.array_equal(a.w, b.w)


def match_sum_of_squares(graph: Graph, infos: Shapes, node: Node,
                         cache: dict | None = None) -> Product | None:
    """``Sum(Square(w * s5), axes=[1, 2, 3])`` -> the product ``w * s5`` (without d)."""
    if node.op != "Sum" or len(node.data_inputs) != 2:
        return None
    x, axes_t = node.data_inputs
    axes = const_value(graph, axes_t)
    if axes is None or x.port != 0:
        return None
    sq = producer(graph, x)
    if sq.op == "Square":
        m = sq.data_inputs[0]
    elif sq.op == "Mul" and sq.data_inputs[0] == sq.data_inputs[1]:
        m = sq.data_inputs[0]
    elif sq.op == "Pow" and _is_value(scalar_const(graph, sq.data_inputs[1]), 2.0):
        m = sq.data_inputs[0]
    else:
        return None
    prod = match_product(graph, infos, m, cache)
    if prod is None or prod.d_leaf is not None:
        return None
    if sorted(int(a) % 5 for a in np.atleast_1d(axes)) != [1, 2, 3]:
        return None
    return prod


def _is_value(v: np.ndarray | None, x: float) -> bool:
    return v is not None and float(v.reshape(-1)[0]) == x


def match_demod(graph: Graph, infos: Shapes, prod: Product,
                cache: dict | None = None) -> Demod | None:
    """Recognise the demodulation factor ``prod.d_leaf`` as computed from ``w * s5``."""
    if prod.d_leaf is None:
        return None
    n, cout = prod.shape[0], prod.shape[4]
    src = flat_source(graph, infos, prod.d_leaf)
    if src is None or int(np.prod(src[1])) != n * cout:
        return None
    t = src[0]
    chain: list[tuple[Node, int]] = []
    while True:
        if t.port != 0 or graph.is_const(t):
            return None
        node = producer(graph, t)
        if node.op == "Sum":
            break
        ins = node.data_inputs
        if node.op in UNARY_OPS and len(ins) == 1:
            chain.append((node, 0))
            t = ins[0]
        elif node.op in BINARY_OPS and len(ins) == 2:
            c0, c1 = (scalar_const(graph, x) for x in ins)
            if c1 is not None and c0 is None:
                chain.append((node, 0))
                t = ins[0]
            elif c0 is not None and c1 is None:
                chain.append((node, 1))
                t = ins[1]
            else:
                return None
        else:
            return None
        if len(chain) > 8:
            return None
    inner = match_sum_of_squares(graph, infos, node, cache)
    if inner is None or not _same_weight(graph, inner, _without_d(prod)):
        return None
    sum_shape = shape_of(graph, infos, node.output())
    if sum_shape not in ((n, cout), (n, 1, 1, 1, cout)):
        return None
    chain.reverse()
    return Demod(sum_node=node, chain=chain, product=inner)


def _without_d(prod: Product) -> Product:
    return Product(
        root=prod.root, shape=prod.shape, w=prod.w, s_leaf=prod.s_leaf, s_src=prod.s_src,
        s_src_shape=prod.s_src_shape, d_leaf=None, const_leaves=prod.const_leaves,
    )


@dataclass
class ModConv:
    """One fused modulated convolution: ``conv`` reads a run-time filter made from
    ``product`` by ``filter_chain``; ``wc`` is the equivalent constant per-sample filter."""

    conv: Node
    product: Product
    demod: Demod | None
    data_format: str
    wc: np.ndarray
    x_src: TensorRef | None  # [N, Cin, H, W] (or NHWC) tensor equal to the folded input
    x_in: TensorRef
    x_in_shape: tuple[int, ...]
    y_dst: TensorRef | None  # [N, Cout, H', W'] tensor equal to the unfolded output
    out_shape: tuple[int, ...]  # shape of the conv output (batch folded into channels)


def channel_axis(node: Node) -> int:
    fmt = node.attr("data_format", "NHWC")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    return 1 if fmt == "NCHW" else 3


def _fmt(node: Node) -> str:
    return "NCHW" if channel_axis(node) == 1 else "NHWC"


def match_modconv(graph: Graph, infos: Shapes, conv: Node,
                  cache: dict | None = None) -> ModConv | None:
    """Recognise a ``Conv2D``/``Conv2DBackpropInput`` whose filter is a view of a
    modulated weight, the batch folded into the channels (groups = N)."""
    ins = conv.data_inputs
    if conv.op == "Conv2D" and len(ins) == 2:
        x_in, filt = ins
    elif conv.op == "Conv2DBackpropInput" and len(ins) == 3:
        filt, x_in = ins[1], ins[2]
    else:
        return None
    if graph.is_const(filt):
        return None
    chains = views_back(graph, infos, filt)
    if not chains:
        return None
    root, chain = chains[-1]
    prod = match_product(graph, infos, root, cache)
    if prod is None:
        return None
    demod = match_demod(graph, infos, prod, cache) if prod.d_leaf is not None else None
    if prod.d_leaf is not None and demod is None:
        return None
    f_shape = shape_of(graph, infos, filt)
    x_shape = shape_of(graph, infos, x_in)
    out_shape = shape_of(graph, infos, conv.output())
    if f_shape is None or x_shape is None or out_shape is None or len(x_shape) != 4:
        return None
    n, _, _, cin, cout = prod.shape
    ax = channel_axis(conv)
    if (conv.op == "Conv2D" and n == 1 and f_shape == prod.shape[1:] and x_shape[ax] == cin
            and keeps_order(graph, infos, chain)):
        wc = prod.w  # batch 1: the filter is ww[0], only reshaped (the common case, fast)
    elif conv.op == "Conv2DBackpropInput" and n == 1 and x_shape[ax] == cin:
        wc = _transposed_filter(graph, infos, chain, prod, f_shape)
        if wc is None:
            wc = _traced_filter(graph, chain, prod, f_shape, x_shape[ax], transposed=True)
    else:
        wc = _traced_filter(graph, chain, prod, f_shape, x_shape[ax],
                            transposed=conv.op != "Conv2D")
    if wc is None or x_shape[0] != 1 or out_shape[ax] != n * cout:
        return None
    fmt = _fmt(conv)
    x_src = _find_input(graph, infos, x_in, n, cin, fmt)
    y_dst = _find_output(graph, infos, conv.output(), out_shape, n, cout, fmt)
    return ModConv(conv=conv, product=prod, demod=demod, data_format=fmt, wc=wc, x_src=x_src,
                   x_in=x_in, x_in_shape=x_shape, y_dst=y_dst, out_shape=out_shape)


def _transposed_filter(graph: Graph, infos: Shapes, chain: Sequence[Node], prod: Product,
                       f_shape: tuple[int, ...]) -> np.ndarray | None:
    """Batch 1, transposed convolution: the filter when ``chain`` only swaps Cin and Cout
    of ``ww[0]`` and perhaps flips it spatially (what :func:`_grouped_filter` would find by
    tracing every element index, read off the chain's parameters); else None."""
    _, kh, kw, cin, cout = prod.shape
    moves = axis_map(graph, infos, chain)
    if f_shape != (kh, kw, cout, cin) or moves is None:
        return None
    if [a for a, _ in moves] != [a for a in (1, 2, 4, 3) if prod.shape[a] != 1]:
        return None
    flips = {a - 1 for a, rev in moves if rev}
    if not flips <= {0, 1}:
        return None  # a reversed channel axis is not a grouped filter
    w = prod.w.reshape(prod.shape[1:])
    if flips:
        w = np.flip(w, axis=tuple(sorted(flips)))
    return np.ascontiguousarray(w.transpose(0, 1, 3, 2))


def _traced_filter(graph: Graph, chain: Sequence[Node], prod: Product,
                   f_shape: tuple[int, ...], x_channels: int,
                   transposed: bool) -> np.ndarray | None:
    """The per-sample filter found by running ``chain`` on element indices."""
    size = int(np.prod(prod.shape, dtype=np.int64))
    itype = np.int32 if size < 2**31 else np.int64
    f_idx = run_views(graph, chain, np.arange(size, dtype=itype).reshape(prod.shape))
    if f_idx is None or f_idx.shape != f_shape:
        return None
    return _grouped_filter(f_idx, prod, x_channels, transposed=transposed)


def _grouped_filter(f_idx: np.ndarray, prod: Product, x_channels: int,
                    transposed: bool) -> np.ndarray | None:
    """Check that the filter is the grouped (groups = N) form of ``w * s * d`` and return
    the per-sample constant filter (``[kh, kw, Cin, Cout]``, or ``[kh, kw, Cout, Cin]``
    for a transposed convolution), else None.

    ``f_idx`` holds, for each filter entry, the flat index of the modulated-weight element
    ``[n, kh, kw, ci, co]`` it is. ``Conv2D``: entry ``[p, q, c, g*Cout + o]`` must be an
    element of sample ``g`` with ``ci = c``, ``co = o``. ``Conv2DBackpropInput``: entry
    ``[p, q, o, g*Cin + c]`` likewise. The spatial position is free (flips are allowed).
    """
    n, _, _, cin, cout = prod.shape
    per_sample = int(np.prod(prod.shape[1:]))
    if f_idx.ndim != 4 or x_channels != n * cin:
        return None
    fh, fw, a, b = f_idx.shape
    if not transposed:
        if a != cin or b != n * cout:
            return None
        per = cout
        chan = np.arange(cin)[:, None] * cout + np.arange(cout)[None, :]  # [c, o]
    else:
        if a != cout or b != n * cin:
            return None
        per = cin
        chan = np.arange(cin)[None, :] * cout + np.arange(cout)[:, None]  # [o, c]
    grouped = f_idx.reshape(fh, fw, a, n, per)
    first = grouped[:, :, :, 0, :]
    if first.min() < 0 or first.max() >= per_sample:
        return None
    if not np.array_equal(first % (cin * cout), np.broadcast_to(chan, first.shape)):
        return None
    shift = (np.arange(n) * per_sample).reshape(1, 1, 1, n, 1)
    if n > 1 and not np.array_equal(grouped, first[:, :, :, None, :] + shift):
        return None
    return prod.w.reshape(-1)[first]


def _per_sample_shape(n: int, c: int, h: int, w: int, fmt: str) -> tuple[int, ...]:
    return (n, c, h, w) if fmt == "NCHW" else (n, h, w, c)


def _spatial(shape: tuple[int, ...], fmt: str) -> tuple[int, int]:
    return (shape[2], shape[3]) if fmt == "NCHW" else (shape[1], shape[2])


def unfold_const(value: np.ndarray, n: int, c: int, fmt: str) -> np.ndarray:
    """The per-sample value of a batch-folded constant ``[1, N*C, H, W]`` (or NHWC)."""
    h, w = _spatial(value.shape, fmt)
    fold = _fold_map(n, c, h, w, fmt)
    if fold is None:
        return value.reshape(_per_sample_shape(n, c, h, w, fmt))
    out = np.empty(value.size, dtype=value.dtype)
    out[fold] = value.reshape(-1)
    return out.reshape(_per_sample_shape(n, c, h, w, fmt))


def _folds(graph: Graph, infos: Shapes, chain: Sequence[Node], src_shape: tuple[int, ...],
           expected: np.ndarray | None) -> bool:
    """``chain`` maps a ``src_shape`` tensor to one whose flat position ``i`` holds the
    source element of flat index ``expected[i]`` (None: the identity, a pure reshape)."""
    if expected is None:
        return is_reshape_chain(graph, infos, chain, src_shape)
    if expected.size > MAX_TRACE:
        return False
    got = run_views(graph, chain, np.arange(expected.size, dtype=np.int64).reshape(src_shape))
    return got is not None and np.array_equal(got.reshape(-1), expected)


def _find_input(graph: Graph, infos: Shapes, x_in: TensorRef, n: int, cin: int,
                fmt: str) -> TensorRef | None:
    """The earliest tensor ``X`` (per-sample layout) that ``x_in`` folds into channels."""
    x_shape = shape_of(graph, infos, x_in)
    h, w = _spatial(x_shape, fmt)
    want = _per_sample_shape(n, cin, h, w, fmt)
    expected = _fold_map(n, cin, h, w, fmt)
    best = None
    for src, chain in views_back(graph, infos, x_in):
        if shape_of(graph, infos, src) == want and _folds(graph, infos, chain, want, expected):
            best = src
    return best


def _find_output(graph: Graph, infos: Shapes, out: TensorRef, out_shape: tuple[int, ...],
                 n: int, cout: int, fmt: str) -> TensorRef | None:
    """The furthest tensor ``Y`` (per-sample layout) on the single-consumer view chain after
    the convolution that unfolds its channels back into the batch."""
    h, w = _spatial(out_shape, fmt)
    want = _per_sample_shape(n, cout, h, w, fmt)
    fold = _fold_map(n, cout, h, w, fmt)  # folded position -> per-sample index
    size = n * cout * h * w
    unfold = None  # per-sample index -> folded position
    if fold is not None:
        unfold = np.empty(size, dtype=np.int64)
        unfold[fold] = np.arange(size)
    chain: list[Node] = []
    cur = out
    best = out if out_shape == want and _folds(graph, infos, [], out_shape, unfold) else None
    while cur not in graph.outputs:
        users = graph.consumers(cur)
        if len(users) != 1 or graph.control_users(cur.node):
            break
        node, i = users[0]
        if i != 0 or not is_view(graph, node):
            break
        chain.append(node)
        cur = node.output()
        shape = shape_of(graph, infos, cur)
        if shape is None or int(np.prod(shape, dtype=np.int64)) != size:
            break
        if shape == want and _folds(graph, infos, chain, out_shape, unfold):
            best = cur
    return best


def _fold_map(n: int, c: int, h: int, w: int, fmt: str) -> np.ndarray | None:
    """Flat per-sample index at each flat position of the batch-folded tensor; None when
    that is the identity (NCHW, or a batch of 1). NHWC moves the batch next to channels."""
    if fmt == "NCHW" or n == 1:
        return None
    per_sample = np.arange(n * c * h * w, dtype=np.int64).reshape(n, h, w, c)
    return per_sample.transpose(1, 2, 0, 3).reshape(-1)
