"""``tflite::polyphase_transpose_conv``: strided transposed convolutions as phase convolutions."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Phase:
    """One output phase ``p`` of one spatial axis: ``out[s*m + p]`` for ``m < size``.

    It is a stride-1 VALID correlation of the input padded by ``before``/``after``
    (negative: cropped) with the kernel taps ``taps`` (indices into the original kernel,
    already in correlation order)."""

    taps: tuple[int, ...]
    before: int
    after: int


def _phases(size_in: int, size_out: int, kernel: int, stride: int, padding: str) -> list[_Phase]:
    """The ``stride`` phases of one axis of ``Conv2DBackpropInput``, or [] when one phase
    gets no kernel tap (``kernel < stride``) or the sizes do not fit the padding."""
    if padding == "VALID":
        top = 0
        expected = -(-(size_out - kernel + 1) // stride)
    else:  # SAME: the forward convolution's padding, as TensorFlow computes it
        expected = -(-size_out // stride)
        top = max((expected - 1) * stride + kernel - size_out, 0) // 2
    if expected != size_in:
        return []
    per_phase = -(-size_out // stride)
    out = []
    for p in range(stride):
        # out[u] = sum over i*stride + k == u + top of x[i] * w[k]; for u = stride*m + p
        # the taps are k = q, q + stride, ... and i = m + base - j.
        q = (p + top) % stride
        base = (p + top - q) // stride
        count = -(-(kernel - q) // stride)
        if count <= 0:
            return []
        taps = tuple(q + (count - 1 - t) * stride for t in range(count))
        before = count - 1 - base
        after = per_phase + count - 1 - before - size_in
        out.append(_Phase(taps, before, after))
    return out


def _zero_tail(size_in: int, size_out: int, kernel: int, stride: int, padding: str) -> bool:
    """True when the positions that the phases compute past ``size_out`` (up to the next
    multiple of ``stride``) receive no kernel tap: they are zeros (VALID padding)."""
    if padding == "VALID":
        top = 0
    else:
        expected = -(-size_out // stride)
        top = max((expected - 1) * stride + kernel - size_out, 0) // 2
    full = stride * -(-size_out // stride)
    return not any(0 <= u + top - i * stride < kernel
                   for u in range(size_out, full) for i in range(size_in))


def _pad_after(graph: Graph, node: Node, crop: tuple[int, ...]) -> Node | None:
    """The zero ``Pad`` that ``node``'s output reaches through multiplications by
    per-channel values (single users all along) and that pads at least ``crop`` after the
    rows and columns: StyleGAN2's FIR filter pads the up-sampling conv's output right
    after it is cropped and demodulated. None when there is no such Pad."""
    cur = node.output()
    while True:
        users = graph.consumers(cur)
        if len(users) != 1 or cur in graph.outputs:
            return None
        user, i = users[0]
        if user.op != "Mul":
            break
        other = graph.shape(user.data_inputs[1 - i])
        if other is None or len(other) > 4:
            return None
        if any(d != 1 for d in ((1,) * (4 - len(other)) + tuple(other))[1:3]):
            return None  # an operand over the image would not fit the uncropped tensor
        cur = user.output()
    if user.op != "Pad" or i != 0 or not graph.is_const(user.data_inputs[1]):
        return None
    pads = np.asarray(graph.const_value(user.data_inputs[1]))
    if pads.shape != (4, 2) or pads[1, 1] < crop[0] or pads[2, 1] < crop[1]:
        return None
    return user


@register_pass("tflite::polyphase_transpose_conv")
class PolyphaseTransposeConv(Pass):
    """Rewrite a strided ``Conv2DBackpropInput`` (TFLite ``TRANSPOSE_CONV``) as one
    stride-1 convolution per output phase, interleaved by ``DepthToSpace``.

    A transposed convolution with stride s computes each of its s x s output phases
    (rows ``s*m + i``, columns ``s*m + j``) from a sub-kernel of every s-th tap. Done
    directly, no multiply is spent on the zeros a zero-insertion would add, and each
    phase is an ordinary convolution: LiteRT's XNNPACK runs those about twice as fast as
    its ``TRANSPOSE_CONV`` with VALID padding and an odd output (StyleGAN2's up-sampling
    convolutions), and faster with SAME padding too (StyleGAN's fused up-scale). The
    multiplies are the same products summed in another order. An output size that is not
    a multiple of the stride needs a crop, unless the rows and columns past it are zeros
    (VALID padding) and a zero ``Pad`` follows (through per-channel multiplications), as
    StyleGAN2's FIR filter does: that Pad then pads less instead. Needs NHWC (run it after
    ``core::to_nhwc``), a constant filter and sizes, equal strides, no dilation, and at
    least one tap per phase (kernel >= stride); other nodes are left alone.

    Before::  x[N,H,W,Ci] -> Conv2DBackpropInput(sizes, w[3,3,Co,Ci], strides 2, VALID)
                  -> y[N,2H+1,2W+1,Co]
    After::   x -> Pad -> Conv2D(w[2,2,Ci,Co]) --\\
              x -> Pad -> Conv2D(w[2,1,Ci,Co]) ---+-> ConcatV2(axis 3) -> DepthToSpace(2)
              x -> Pad -> Conv2D(w[1,2,Ci,Co]) ---+      -> Slice([N,2H+1,2W+1,Co]) -> y
              x -> Pad -> Conv2D(w[1,1,Ci,Co]) --/
    """

    infers_shapes = True

    min_stride = Option(int, 2, "rewrite transposed convolutions whose stride is at least this")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        # Plan everything first: shapes come from one inference of the unchanged graph.
        plans = [(node, self._plan(graph, node)) for node in graph.nodes("Conv2DBackpropInput")]
        dead: list[str] = []
        for node, plan in plans:
            if plan is not None:
                dead.extend(self._rewrite(graph, rw, node, *plan))
        rw.erase_dead(dead)

    def _plan(
        self, graph: Graph, node: Node
    ) -> tuple[int, list[_Phase], list[_Phase], tuple[int, int, int, int], Node | None] | None:
        why = self._skip_reason(graph, node)
        if why is not None:
            log.debug("tflite::polyphase_transpose_conv: %s: %s", node.name, why)
            return None
        sizes_ref, filt_ref, x_ref = node.data_inputs
        sizes = [int(v) for v in graph.const_value(sizes_ref)]
        kh, kw = graph.const_shape(filt_ref.node)[:2]
        stride = int(node.attr("strides")[1])
        shape = graph.shape(x_ref)
        if shape is None or len(shape) != 4 or shape[1] < 0 or shape[2] < 0:
            log.debug("tflite::polyphase_transpose_conv: %s: input size unknown", node.name)
            return None
        padding = node.attr("padding")
        rows = _phases(shape[1], sizes[1], kh, stride, padding)
        cols = _phases(shape[2], sizes[2], kw, stride, padding)
        if not rows or not cols:
            log.debug("tflite::polyphase_transpose_conv: %s: a phase has no tap", node.name)
            return None
        out = graph.shape(node.output())
        batch = out[0] if out is not None and len(out) == 4 else -1
        crop = tuple(stride * -(-n // stride) - n for n in sizes[1:3])
        pad = None
        if crop != (0, 0) and all(_zero_tail(shape[a], sizes[a], k, stride, padding)
                                  for a, k in ((1, kh), (2, kw))):
            pad = _pad_after(graph, node, crop)
        return stride, rows, cols, (batch, sizes[1], sizes[2], sizes[3]), pad

    def _skip_reason(self, graph: Graph, node: Node) -> str | None:
        if node.attr("data_format", "NHWC") != "NHWC":
            return "not NHWC"
        if node.attr("padding") not in ("SAME", "VALID"):
            return f"padding {node.attr('padding')}"
        strides = list(node.attr("strides") or [1, 1, 1, 1])
        if strides[0] != 1 or strides[3] != 1 or strides[1] != strides[2]:
            return f"strides {strides}"
        if strides[1] < max(self.min_stride, 2):
            return f"stride {strides[1]}"
        if any(d != 1 for d in (node.attr("dilations") or [1, 1, 1, 1])):
            return "dilated"
        ins = node.data_inputs
        if len(ins) != 3 or not graph.is_const(ins[0]) or not graph.is_const(ins[1]):
            return "filter or sizes not constant"
        return None

    def _rewrite(
        self,
        graph: Graph,
        rw: Rewriter,
        node: Node,
        stride: int,
        rows: list[_Phase],
        cols: list[_Phase],
        out_shape: tuple[int, int, int, int],
        pad: Node | None,
    ) -> list[str]:
        sizes_ref, filt_ref, x_ref = node.data_inputs
        w = np.asarray(graph.const_value(filt_ref))  # [kh, kw, Co, Ci]
        dtype = node.attr("T")
        scope = node.name
        phases = []
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                sub = w[np.ix_(r.taps, c.taps)].transpose(0, 1, 3, 2)  # [th, tw, Ci, Co]
                src = self._pad(rw, x_ref, r, c, dtype, f"{scope}/phase{i}{j}")
                filt = rw.const(np.ascontiguousarray(sub), name=f"{scope}/phase{i}{j}/filter")
                conv = rw.add_node(
                    "Conv2D", [src, filt],
                    {"T": dtype, "strides": [1, 1, 1, 1], "padding": "VALID",
                     "data_format": "NHWC", "dilations": [1, 1, 1, 1]},
                    name=f"{scope}/phase{i}{j}",
                )
                phases.append(conv.output())
        axis = rw.const(np.int32(3), name=f"{scope}/concat_axis")
        cat = rw.add_node("ConcatV2", [*phases, axis],
                          {"T": dtype, "N": len(phases), "Tidx": DType.int32},
                          name=f"{scope}/phases")
        out = rw.add_node("DepthToSpace", [cat], {"T": dtype, "block_size": stride,
                                                  "data_format": "NHWC"},
                          name=f"{scope}/interleave").output()
        out_hw = out_shape[1:3]
        full = (stride * -(-out_hw[0] // stride), stride * -(-out_hw[1] // stride))
        if pad is not None:
            # The rows and columns a crop would drop are zeros that the Pad re-adds.
            pads = np.array(graph.const_value(pad.data_inputs[1]))
            pads[1:3, 1] -= np.subtract(full, out_hw)
            rw.set_input(pad, 1, rw.const(pads, name=f"{pad.name}/paddings_uncropped"))
        elif full != out_hw:
            # Explicit sizes where known: LiteRT's XNNPACK delegate does not take a Slice
            # with a -1 size, and an op left out of it splits the delegated graph.
            begin = rw.const(np.zeros(4, np.int32), name=f"{scope}/crop_begin")
            size = rw.const(np.array([out_shape[0], out_hw[0], out_hw[1], w.shape[2]],
                                     np.int32), name=f"{scope}/crop_size")
            out = rw.add_node("Slice", [out, begin, size], {"T": dtype, "Index": DType.int32},
                              name=f"{scope}/crop").output()
        rw.replace_uses(node.output(), out)
        rw.erase(node)
        return [sizes_ref.node, filt_ref.node]

    @staticmethod
    def _pad(rw: Rewriter, x: object, r: _Phase, c: _Phase, dtype: object, scope: str) -> object:
        """``x`` cropped and zero-padded for one phase (no op where nothing is needed)."""
        crop = (max(-r.before, 0), max(-r.after, 0), max(-c.before, 0), max(-c.after, 0))
        if any(crop):
            begin = rw.const(np.array([0, crop[0], crop[2], 0], np.int32),
                             name=f"{scope}/crop_begin")
            end = rw.const(np.array([0, -crop[1], -crop[3], 0], np.int32),
                           name=f"{scope}/crop_end")
            one = rw.const(np.ones(4, np.int32), name=f"{scope}/crop_strides")
            # end_mask for every axis whose end is not cropped (an end of 0 would be empty)
            mask = 0b1001 | (0 if crop[1] else 0b10) | (0 if crop[3] else 0b100)
            x = rw.add_node("StridedSlice", [x, begin, end, one],
                            {"T": dtype, "Index": DType.int32, "begin_mask": 0b1001,
                             "end_mask": mask, "ellipsis_mask": 0, "new_axis_mask": 0,
                             "shrink_axis_mask": 0}, name=f"{scope}/crop").output()
        pads = [max(r.before, 0), max(r.after, 0), max(c.before, 0), max(c.after, 0)]
        if not any(pads):
            return x
        paddings = rw.const(np.array([[0, 0], pads[:2], pads[2:], [0, 0]], np.int32),
                            name=f"{scope}/paddings")
        return rw.add_node("Pad", [x, paddings], {"T": dtype, "Tpaddings": DType.int32},
                           name=f"{scope}/pad").output()
