"""``core::upsample_conv_phases``: nearest-neighbour up-sampling + convolution as phase
convolutions on the low-resolution input."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.patterns.phases import interleave_phases
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Phase:
    """Output phase ``p`` of one axis: ``out[f*m + p] = sum_d x[m + d] * taps[d - lo]``
    for ``lo <= d <= hi``, with ``x`` zero outside the image. ``groups[i]`` lists the
    original kernel taps summed into tap ``i``."""

    lo: int
    hi: int
    groups: tuple[tuple[int, ...], ...]


def phases(factor: int, kernel: int) -> list[_Phase]:
    """The ``factor`` phases of one axis of a stride-1 SAME convolution of ``kernel`` taps
    applied to the input repeated ``factor`` times (nearest-neighbour up-sampling).

    SAME pads ``(kernel - 1) // 2`` before, so ``out[Y] = sum_t u[Y + t - before] w[t]``
    with ``u[z] = x[z // f]`` for ``0 <= z < f*H`` and zero elsewhere. For ``Y = f*m + p``
    the tap ``t`` reads ``x[m + (p + t - before) // f]``, and ``z`` is inside the image
    exactly when that index is in ``[0, H)``: the up-sampled image's zero padding is the
    low-resolution image's zero padding, at every size, odd or even.
    """
    before = (kernel - 1) // 2
    out = []
    for p in range(factor):
        offsets = [(p + t - before) // factor for t in range(kernel)]
        lo, hi = min(offsets), max(offsets)
        groups = tuple(tuple(t for t in range(kernel) if offsets[t] == d)
                       for d in range(lo, hi + 1))
        out.append(_Phase(lo, hi, groups))
    return out


def phase_kernel(w: np.ndarray, rows: _Phase, cols: _Phase) -> np.ndarray:
    """The taps of ``w [kh, kw, Ci, Co]`` summed into one phase's ``[nh, nw, Ci, Co]``
    kernel (in float64, then back to ``w``'s dtype)."""
    acc = w.astype(np.float64)
    sub = np.zeros((len(rows.groups), len(cols.groups), *w.shape[2:]), np.float64)
    for i, gi in enumerate(rows.groups):
        for j, gj in enumerate(cols.groups):
            sub[i, j] = acc[np.ix_(gi, gj)].sum(axis=(0, 1))
    return sub.astype(w.dtype)


@dataclass(frozen=True)
class _Fused:
    """One axis of the single-convolution form: the input padded by ``before``/``after``,
    one window of ``taps`` taps per position ``a``; phase ``p`` is the window at
    ``a = m + shift[p]`` and goes to sub-position ``slot[p]`` of ``DepthToSpace``, so that
    output ``Y`` is position ``Y + crop`` of the interleaved result."""

    taps: int
    before: int
    after: int
    shift: tuple[int, ...]
    slot: tuple[int, ...]
    crop: int


def fused_axis(factor: int, axis: list[_Phase]) -> _Fused | None:
    """The single-convolution layout of one axis, or None when the phases' windows differ
    in width or no interleaving order puts every phase at one common offset."""
    widths = {p.hi - p.lo + 1 for p in axis}
    if len(widths) != 1:
        return None
    (taps,) = widths
    low = min(p.lo for p in axis)
    shift = tuple(p.lo - low for p in axis)
    # slot[p] = crop + p - factor * shift[p] must be a permutation of range(factor)
    for crop in range(factor * (max(shift) + 1)):
        slot = tuple(crop + p - factor * s for p, s in enumerate(shift))
        if sorted(slot) == list(range(factor)) and crop <= factor * max(shift):
            after = max(shift) + taps - 1 + low
            if after < 0:
                return None
            return _Fused(taps, -low, after, shift, slot, crop)
    return None


def fused_kernel(w: np.ndarray, factor: int, rows: list[_Phase], cols: list[_Phase],
                 fr: _Fused, fc: _Fused) -> np.ndarray:
    """``[taps_h, taps_w, Ci, f*f*Co]``: each phase's kernel in its ``DepthToSpace`` slot."""
    co = w.shape[3]
    out = np.zeros((fr.taps, fc.taps, w.shape[2], factor * factor * co), w.dtype)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            k = (fr.slot[i] * factor + fc.slot[j]) * co
            out[:, :, :, k:k + co] = phase_kernel(w, r, c)
    return out


@register_pass("core::upsample_conv_phases")
class UpsampleConvPhases(Pass):
    """Rewrite nearest-neighbour up-sampling by ``f`` followed by a stride-1 SAME
    convolution with a constant filter as ``f*f`` convolutions on the low-resolution
    input, one per output phase, interleaved by ``DepthToSpace``.

    Every ``f x f`` block of the up-sampled image repeats one input pixel, so for output
    phase ``(i, j)`` several taps of the kernel read the same input pixel: their weights
    are summed once into a smaller kernel. For a 3x3 kernel and ``f = 2`` each phase has a
    2x2 kernel: 4 x 4 = 16 multiplies per input pixel and output channel where the
    convolution of the up-sampled image spends 4 x 9 = 36. The SAME padding of the
    up-sampled image is exactly zero rows and columns of the input, at odd and even sizes
    (see :func:`phases`). Exact in real arithmetic (the summed weights round once).

    The up-sampling is StyleGAN's after ``stylegan::lower_upscale_6d`` (``DepthToSpace``
    of ``f*f`` copies of ``x`` concatenated on the channels: StyleGAN v1 below 128 px,
    ProGAN with ``fused_scale=False``) or a ``ResizeNearestNeighbor`` to exactly ``f``
    times the size (``align_corners`` false). Needs NHWC (run it after ``core::to_nhwc``),
    no dilation; the up-sampled tensor stays if something else reads it.

    Before::  x[N,H,W,Ci] -> ConcatV2(x, x, x, x, axis 3) -> DepthToSpace(2)
                  -> Conv2D(w[3,3,Ci,Co], SAME) -> y[N,2H,2W,Co]
    After::   x -> Pad([1,0],[1,0]) -> Conv2D(w00[2,2,Ci,Co], VALID) --\\
              x -> Pad([1,0],[0,1]) -> Conv2D(w01[2,2,Ci,Co], VALID) ---+-> ConcatV2(axis 3)
              x -> Pad([0,1],[1,0]) -> Conv2D(w10[2,2,Ci,Co], VALID) ---+   -> DepthToSpace(2)
              x -> Pad([0,1],[0,1]) -> Conv2D(w11[2,2,Ci,Co], VALID) --/    -> y
              with w00 = [[w[0,0], w[0,1]+w[0,2]], [w[1,0]+w[2,0], sum w[1:,1:]]], ...
    """

    infers_shapes = True

    max_factor = Option(int, 4, "rewrite up-sampling factors up to this")
    form = Option(("phases", "fused"), "phases",
                  "phases: one convolution per phase, concatenated; fused: one convolution "
                  "with f*f times the channels on the input padded once, then a crop (more "
                  "multiplies at the borders, one larger GEMM; LiteRT ran it no faster than "
                  "the phases, 8x8 to 64x64 px with 512 channels)")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        plans = []
        for node in graph.nodes("Conv2D"):
            plan = self._plan(graph, node)
            if plan is not None:
                plans.append((node, *plan))
        dead: list[str] = []
        for node, x, factor in plans:
            dead.extend(self._rewrite(graph, rw, node, x, factor))
        rw.erase_dead(dead)

    def _plan(self, graph: Graph, node: Node) -> tuple[TensorRef, int] | None:
        why = self._skip_reason(graph, node)
        if why is not None:
            log.debug("core::upsample_conv_phases: %s: %s", node.name, why)
            return None
        up = graph.node(node.data_inputs[0].node)
        found = self._upsampled(graph, up)
        if found is None:
            log.debug("core::upsample_conv_phases: %s: input is not a nearest up-sampling",
                      node.name)
            return None
        x, factor = found
        if not 2 <= factor <= self.max_factor:
            return None
        return x, factor

    @staticmethod
    def _skip_reason(graph: Graph, node: Node) -> str | None:
        if node.attr("data_format", "NHWC") != "NHWC":
            return "not NHWC"
        if node.attr("padding") != "SAME":
            return f"padding {node.attr('padding')}"
        if list(node.attr("strides") or [1, 1, 1, 1]) != [1, 1, 1, 1]:
            return "strided"
        if any(d != 1 for d in (node.attr("dilations") or [1, 1, 1, 1])):
            return "dilated"
        ins = node.data_inputs
        if len(ins) != 2 or not graph.is_const(ins[1]):
            return "filter not constant"
        if len(graph.const_shape(ins[1].node)) != 4:
            return "filter not rank 4"
        return None

    @staticmethod
    def _upsampled(graph: Graph, up: Node) -> tuple[TensorRef, int] | None:
        """``(x, f)`` when ``up`` repeats every pixel of NHWC ``x`` in an ``f x f`` block."""
        if up.op == "DepthToSpace":
            if up.attr("data_format", "NHWC") != "NHWC":
                return None
            factor = int(up.attr("block_size"))
            cat = graph.node(up.data_inputs[0].node)
            if cat.op != "ConcatV2":
                return None
            *parts, axis = cat.data_inputs
            if len(parts) != factor * factor or len(set(parts)) != 1:
                return None
            if not graph.is_const(axis):
                return None
            shape = graph.shape(parts[0])
            ax = int(np.asarray(graph.const_value(axis)))
            if shape is None or len(shape) != 4 or ax not in (3, -1):
                return None
            return parts[0], factor
        if up.op == "ResizeNearestNeighbor":
            if up.attr("align_corners", False):
                return None
            x, size = up.data_inputs
            shape = graph.shape(x)
            if not graph.is_const(size) or shape is None or len(shape) != 4:
                return None
            h, w = (int(v) for v in np.asarray(graph.const_value(size)))
            if shape[1] <= 0 or shape[2] <= 0 or h % shape[1] or w % shape[2]:
                return None
            if h // shape[1] != w // shape[2]:
                return None
            return x, h // shape[1]
        return None

    def _rewrite(
        self, graph: Graph, rw: Rewriter, node: Node, x: TensorRef, factor: int
    ) -> list[str]:
        up_ref, filt_ref = node.data_inputs
        w = np.asarray(graph.const_value(filt_ref))  # [kh, kw, Ci, Co]
        dtype = node.attr("T")
        scope = node.name
        rows, cols = phases(factor, w.shape[0]), phases(factor, w.shape[1])
        fr, fc = fused_axis(factor, rows), fused_axis(factor, cols)
        shape = graph.shape(node.output())
        known = shape is not None and len(shape) == 4 and all(d >= 0 for d in shape)
        if self.form == "fused" and fr is not None and fc is not None and known:
            return self._rewrite_fused(graph, rw, node, x, factor, w, rows, cols, fr, fc)
        padded: dict[tuple[int, ...], object] = {}
        outs = []
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                pads = (-r.lo, r.hi, -c.lo, c.hi)
                if pads not in padded:
                    padded[pads] = self._pad(rw, x, pads, dtype, f"{scope}/pad{len(padded)}")
                filt = rw.const(phase_kernel(w, r, c), name=f"{scope}/phase{i}{j}/filter")
                conv = rw.add_node(
                    "Conv2D", [padded[pads], filt],
                    {"T": dtype, "strides": [1, 1, 1, 1], "padding": "VALID",
                     "data_format": "NHWC", "dilations": [1, 1, 1, 1]},
                    name=f"{scope}/phase{i}{j}",
                )
                outs.append(conv.output())
        out = interleave_phases(rw, outs, factor, dtype, scope)
        rw.replace_uses(node.output(), out)
        rw.erase(node)
        return [up_ref.node, filt_ref.node]

    def _rewrite_fused(self, graph: Graph, rw: Rewriter, node: Node, x: TensorRef,
                       factor: int, w: np.ndarray, rows: list[_Phase], cols: list[_Phase],
                       fr: _Fused, fc: _Fused) -> list[str]:
        up_ref, filt_ref = node.data_inputs
        dtype = node.attr("T")
        scope = node.name
        src = self._pad(rw, x, (fr.before, fr.after, fc.before, fc.after), dtype,
                        f"{scope}/pad")
        filt = rw.const(fused_kernel(w, factor, rows, cols, fr, fc), name=f"{scope}/filter")
        conv = rw.add_node("Conv2D", [src, filt],
                           {"T": dtype, "strides": [1, 1, 1, 1], "padding": "VALID",
                            "data_format": "NHWC", "dilations": [1, 1, 1, 1]},
                           name=f"{scope}/phases")
        out = rw.add_node("DepthToSpace", [conv.output()],
                          {"T": dtype, "block_size": factor, "data_format": "NHWC"},
                          name=f"{scope}/interleave").output()
        shape = graph.shape(node.output())  # known: checked by the caller
        if fr.crop or fc.crop or max(fr.shift) or max(fc.shift):
            # explicit sizes (LiteRT's XNNPACK delegate takes no -1 size in a Slice)
            size = [int(d) for d in shape]
            begin = rw.const(np.array([0, fr.crop, fc.crop, 0], np.int32),
                             name=f"{scope}/crop_begin")
            sizes = rw.const(np.array(size, np.int32), name=f"{scope}/crop_size")
            out = rw.add_node("Slice", [out, begin, sizes], {"T": dtype, "Index": DType.int32},
                              name=f"{scope}/crop").output()
        rw.replace_uses(node.output(), out)
        rw.erase(node)
        return [up_ref.node, filt_ref.node]

    @staticmethod
    def _pad(rw: Rewriter, x: TensorRef, pads: tuple[int, ...], dtype: object,
             name: str) -> object:
        """``x`` zero-padded by ``(top, bottom, left, right)``; ``x`` itself when all 0."""
        if not any(pads):
            return x
        paddings = rw.const(np.array([[0, 0], pads[:2], pads[2:], [0, 0]], np.int32),
                            name=f"{name}/paddings")
        return rw.add_node("Pad", [x, paddings], {"T": dtype, "Tpaddings": DType.int32},
                           name=name).output()
