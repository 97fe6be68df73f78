"""``stylegan::lower_upscale_6d``: the 6-D nearest-neighbour upscale -> rank-4 ops.

StyleGAN (v1) upscales with ``reshape(x, [-1, C, H, 1, W, 1])``, ``tile(x, [1, 1, 1, f, 1,
f])``, ``reshape(x, [-1, C, f*H, f*W])``: two rank-6 tensors that GPU delegates and most NPUs
reject. The same maths in rank 4, exactly (nearest upscaling only moves values, so the result
is bitwise equal):

* **depth-to-space** (preferred): ``DepthToSpace(ConcatV2([x] * f*f, channel axis), f)``.
  DepthToSpace reads output pixel ``(h*f + i, w*f + j)`` channel ``c`` from input channel
  ``(i*f + j)*C + c``; f*f copies of ``x`` along the channels hold ``x[c]`` there, so every
  f x f block repeats its source pixel. The ``data_format`` follows the axes upscaled: axes
  2 and 3 of a rank-4 tensor give ``NCHW`` (concat on axis 1), axes 1 and 2 ``NHWC`` (concat
  on axis 3). NCHW ``DepthToSpace`` is what the later NCHW -> NHWC layout pass expects (it
  turns it into TFLite ``DEPTH_TO_SPACE`` and the concat axis into 3), with no ``TRANSPOSE``
  to cancel; ``DEPTH_TO_SPACE`` and ``CONCATENATION`` are TFLite builtins that the GPU
  delegate and XNNPACK both run (``RESIZE_NEAREST_NEIGHBOR`` would need NHWC around it and
  XNNPACK does not take it). A composite factor is done in prime steps (``f = 4``: two
  2x steps of a 4-input concat), which keeps every concat at ``p*p`` inputs.
* **merged tile** (fallback, option ``fallback``): any other rank > 4 ``Tile`` fed by a
  ``Reshape`` and read only by ``Reshape`` s (one axis upscaled, unequal factors, whole-block
  repeats...) becomes ``Tile`` of a view in which every run of untiled axes is merged into one
  axis, when that view has rank <= 4. Exact (tiling commutes with merging untiled axes), but
  the view mixes batch, channel and spatial axes, so a layout pass cannot keep it free of
  transposes; it is a safety net, not the preferred form.

Matching is by structure only: a ``Tile`` with a constant ``multiples`` of length > 4 whose
input is a ``Reshape`` and whose every consumer is a ``Reshape`` (the original code's
``tf.custom_gradient`` wrapper adds an ``IdentityN`` after the last reshape, which simply
follows the rewrite). Shapes come from TensorFlow's shape inference (``graph.infer()``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.patterns import P
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

#: Highest rank that TFLite-clean tensors may have.
MAX_RANK = 4


@dataclass
class _Plan:
    """How to rewrite one reshape -> tile -> reshape chain."""

    tile: str
    kind: str  # "d2s" or "merge"
    consumers: list[str]
    out_shape: tuple[int, ...]  # shape of the rank <= 4 result (-1 unknown)
    # d2s
    factor: int = 1
    data_format: str = "NCHW"
    # merge
    view: list[int] = field(default_factory=list)
    multiples: list[int] = field(default_factory=list)


@register_pass("stylegan::lower_upscale_6d")
class LowerUpscale6D(Pass):
    """Lower the 6-D nearest-neighbour upscale (reshape, tile, reshape) to rank-4 ops.

    A square upscale of the two spatial axes of a rank-4 tensor becomes ``ConcatV2`` of
    ``f*f`` copies on the channel axis then ``DepthToSpace`` (block ``f``, ``NCHW`` or
    ``NHWC`` as the axes say; prime steps for a composite ``f``). With ``fallback`` any
    other rank > 4 reshape -> tile -> reshape becomes a reshape -> tile -> reshape of rank
    <= 4 that merges the untiled axes. Exact: nearest upscaling only copies values.

    Before::

        x = ...                                    [1, 16, 4, 4]   (NCHW)
        r = Reshape(x, [-1, 16, 4, 1, 4, 1])        rank 6
        t = Tile(r, [1, 1, 1, 2, 1, 2])             rank 6
        y = Reshape(t, [-1, 16, 8, 8])

    After::

        c = ConcatV2(x, x, x, x, axis=1)           [1, 64, 4, 4]
        y = DepthToSpace(c, block_size=2, data_format="NCHW")    [1, 16, 8, 8]
    """

    infers_shapes = True

    fallback = Option(
        bool,
        True,
        help="lower other rank > 4 reshape -> tile -> reshape chains by merging untiled axes "
        "(exact and rank <= 4, but not layout-friendly)",
    )

    def run(self, graph: Graph, rw: Rewriter) -> None:
        candidates = [n.name for n in graph.nodes("Tile") if _is_candidate(graph, n)]
        if not candidates:
            return
        shapes = graph.infer()
        plans = []
        for name in candidates:
            plan = _plan(graph, graph.node(name), shapes, self.fallback)
            if plan is not None:
                plans.append(plan)
        consts: dict[tuple[str, tuple[int, ...]], TensorRef] = {}
        for plan in plans:
            with rw.rule_scope(plan.kind):
                _apply(graph, rw, plan, consts)
        if plans:
            rw.erase_dead([n for p in plans for n in (p.tile, *p.consumers)])


# ---------------------------------------------------------------------------- matching
def _rank_above_4(node: Node, graph: Graph) -> bool | str:
    """A constant ``multiples`` vector longer than 4 (read from its shape, not decoded)."""
    shape = graph.const_shape(node.name)
    return (len(shape) == 1 and shape[0] > MAX_RANK) or f"multiples has shape {list(shape)}"


def _read_by_reshapes(node: Node, graph: Graph) -> bool | str:
    """Every data use of the Tile is input 0 of a Reshape, and it is no graph output."""
    if graph.is_output(node.name):
        return "the Tile is a graph output"
    users = graph.consumers(node.output())
    if not users:
        return "nothing reads the Tile"
    other = next((u.name for u, i in users if u.op != "Reshape" or i != 0), None)
    return other is None or f"{other!r} reads it and is not a Reshape's input 0"


#: ``Reshape -> Tile(multiples of length > 4) -> Reshape(s)``, found by structure only.
UPSCALE_6D = P("Tile", P("Reshape", capture="reshape"),
               P("Const", where=_rank_above_4, capture="multiples"), where=_read_by_reshapes)


def _is_candidate(graph: Graph, tile: Node) -> bool:
    return UPSCALE_6D.match(graph, tile) is not None


def _shape(shapes: dict[TensorRef, object], ref: TensorRef) -> tuple[int, ...] | None:
    info = shapes.get(ref)
    shape = getattr(info, "shape", None)
    return None if shape is None else tuple(int(d) for d in shape)


def _plan(
    graph: Graph, tile: Node, shapes: dict[TensorRef, object], fallback: bool
) -> _Plan | None:
    reshape = graph.node(tile.data_inputs[0].node)
    src = reshape.data_inputs[0]
    mult = [int(m) for m in graph.const_value(tile.data_inputs[1]).reshape(-1)]
    tiled_in = _shape(shapes, tile.data_inputs[0])
    x_shape = _shape(shapes, src)
    consumers = [u.name for u, _ in graph.consumers(tile.output())]
    if tiled_in is None or len(tiled_in) != len(mult) or any(m < 1 for m in mult):
        return None
    if x_shape is not None and len(x_shape) == MAX_RANK:
        up = _upscale_axes(x_shape, tiled_in, mult)
        if up is not None:
            axes, factor = up
            fmt = {(2, 3): "NCHW", (1, 2): "NHWC"}.get(axes)
            if fmt is not None:
                out = tuple(
                    d * factor if i in axes and d >= 0 else d for i, d in enumerate(x_shape)
                )
                return _Plan(tile.name, "d2s", consumers, out, factor=factor, data_format=fmt)
    if not fallback:
        return None
    merged = _merge_untiled(tiled_in, mult)
    if merged is None:
        return None
    view, multiples = merged
    out = tuple(-1 if d < 0 else d * m for d, m in zip(view, multiples))
    return _Plan(tile.name, "merge", consumers, out, view=view, multiples=multiples)


def _upscale_axes(
    x_shape: tuple[int, ...], tiled_in: tuple[int, ...], mult: list[int]
) -> tuple[tuple[int, ...], int] | None:
    """When ``tile(reshape(x, tiled_in), mult)`` is a nearest upscale of ``x`` along two axes
    by one factor: (those axes, the factor).

    ``tiled_in`` must be ``x``'s shape with size-1 axes inserted, each tiled axis one of them
    and placed right after an axis of ``x`` (so it repeats each element of that axis).
    """
    rank6, rank = len(tiled_in), len(x_shape)
    for inserted in itertools.combinations(range(1, rank6), rank6 - rank):
        kept = [i for i in range(rank6) if i not in inserted]
        if any(tiled_in[i] != 1 for i in inserted):
            continue
        if any(mult[i] != 1 for i in kept):
            continue
        if any(a != b and a >= 0 and b >= 0 for a, b in zip((tiled_in[i] for i in kept), x_shape)):
            continue
        if any((tiled_in[i] < 0) != (d < 0) for i, d in zip(kept, x_shape)):
            continue
        factors = [1] * rank
        axis = -1
        for i in range(rank6):
            if i in inserted:
                factors[axis] *= mult[i]
            else:
                axis += 1
        axes = tuple(i for i, f in enumerate(factors) if f > 1)
        if len(axes) == 2 and factors[axes[0]] == factors[axes[1]]:
            return axes, factors[axes[0]]
    return None


def _merge_untiled(
    tiled_in: tuple[int, ...], mult: list[int]
) -> tuple[list[int], list[int]] | None:
    """(view shape, multiples) merging each run of untiled axes into one, if rank <= 4."""
    view: list[int] = []
    multiples: list[int] = []
    run: list[int] | None = None
    for d, m in zip(tiled_in, mult):
        if m == 1:
            if run is None:
                run = []
                view.append(0)
                multiples.append(1)
            run.append(d)
            view[-1] = -1 if any(x < 0 for x in run) else math.prod(run)
        else:
            run = None
            view.append(d)
            multiples.append(m)
    if len(view) > MAX_RANK or sum(1 for d in view if d < 0) > 1:
        return None
    return view, multiples


# ---------------------------------------------------------------------------- rewriting
def _primes(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def _apply(
    graph: Graph, rw: Rewriter, plan: _Plan, consts: dict[tuple[str, tuple[int, ...]], TensorRef]
) -> None:
    def const(values: list[int], name: str, scalar: bool = False) -> TensorRef:
        key = (name.rsplit("/", 1)[-1], tuple(values))
        if key not in consts:  # shared between the chains
            value = np.array(values, np.int32).reshape(() if scalar else -1)
            consts[key] = rw.const(value, name=name).output()
        return consts[key]

    tile = graph.node(plan.tile)
    reshape = graph.node(tile.data_inputs[0].node)
    src = reshape.data_inputs[0]
    dtype = tile.attr("T") or DType.float32
    scope = plan.tile.rsplit("/", 1)[0] + "/" if "/" in plan.tile else ""
    # Control dependencies of the nodes that go away move to the first new node.
    ctrl = list(dict.fromkeys(
        c for n in (reshape, tile, *(graph.node(u) for u in plan.consumers))
        for c in n.control_inputs
    ))
    if plan.kind == "d2s":
        axis = 1 if plan.data_format == "NCHW" else 3
        cur = src
        for p in _primes(plan.factor):
            axis_c = const([axis], f"{scope}DepthToSpace/concat/axis", scalar=True)
            cat = rw.add_node(
                "ConcatV2",
                [cur] * (p * p) + [axis_c],
                {"N": p * p, "T": dtype, "Tidx": DType.int32},
                name=f"{scope}DepthToSpace/concat",
                control_inputs=ctrl if cur == src else (),
            )
            d2s = rw.add_node(
                "DepthToSpace",
                [cat.output()],
                {"block_size": p, "data_format": plan.data_format, "T": dtype},
                name=f"{scope}DepthToSpace",
            )
            cur = d2s.output()
        result = cur
    else:
        view = const(plan.view, f"{scope}Tile4D/shape")
        x = rw.add_node(
            "Reshape", [src, view], {"T": dtype, "Tshape": DType.int32},
            name=f"{scope}Tile4D/view", control_inputs=ctrl,
        )
        mult = const(plan.multiples, f"{scope}Tile4D/multiples")
        result = rw.add_node(
            "Tile", [x.output(), mult], {"T": dtype, "Tmultiples": DType.int32},
            name=f"{scope}Tile4D",
        ).output()
    # Same elements in the same flat order as the rank-6 tile: each consumer reshape reads
    # the rank <= 4 tensor instead; one that merely restores its shape goes away.
    for name in plan.consumers:
        user = graph.node(name)
        target = _reshape_target(graph, user)
        if target is not None and _same_shape(target, plan.out_shape):
            rw.replace_uses(user.output(), result)
        else:
            rw.set_input(user, 0, result)


def _reshape_target(graph: Graph, reshape: Node) -> tuple[int, ...] | None:
    ins = reshape.data_inputs
    if len(ins) < 2 or not graph.is_const(ins[1]):
        return None
    return tuple(int(d) for d in graph.const_value(ins[1]).reshape(-1))


def _same_shape(target: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether reshaping a ``shape`` tensor (same element count) to ``target`` is a no-op."""
    if len(target) != len(shape):
        return False
    unknown = 0
    for t, s in zip(target, shape):
        if t == -1 or s < 0:
            unknown += 1
            if unknown > 1:
                return False
        elif t != s:
            return False
    return True
