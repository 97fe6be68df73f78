"""``core::winograd_conv3x3``: stride-1 SAME 3x3 convolutions with constant filters as
Winograd F(2x2, 3x3): 16 multiplies per 2x2 output tile instead of 36."""

from __future__ import annotations

import logging

import numpy as np

from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.patterns.channel_bias import ChannelBias, channel_bias
from graphsurgery.patterns.phases import interleave_phases
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

log = logging.getLogger(__name__)

#: Input transform ``B^T`` (rows: the four combinations of a tile's four rows).
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
#: Filter transform ``G`` (4 x 3).
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
#: Output transform ``A^T`` (2 x 4).
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def winograd_filters(w: np.ndarray) -> np.ndarray:
    """``U[a*4 + b] = (G w G^T)[a, b]`` as ``[16, Ci, Co]`` for ``w [3, 3, Ci, Co]``
    (computed in float64, returned in ``w``'s dtype)."""
    u = np.einsum("ai,ijco,bj->abco", G, w.astype(np.float64), G)
    return u.reshape(16, *w.shape[2:]).astype(w.dtype)


@register_pass("core::winograd_conv3x3")
class WinogradConv3x3(Pass):
    """Rewrite a stride-1 SAME 3x3 ``Conv2D`` with a constant filter as Winograd
    F(2x2, 3x3) in builtin ops: per 2x2 output tile, ``Y = A^T [(G g G^T) . (B^T d B)] A``
    over the 4x4 input tile ``d`` (overlapping by 2), i.e. 16 multiplies per tile, input
    and output channel where the convolution spends 36 (2.25x fewer multiply-adds).

    * input transform: the input padded by 1 (plus 1 at the bottom/right of an odd size);
      ``B^T d`` as four ``4x1`` depthwise convolutions (stride 1), then ``(.) B`` as four
      ``1x4`` depthwise convolutions of stride 2 on each: 16 planes ``V_ab [N, h, w, Ci]``
      with ``h, w = ceil(H/2), ceil(W/2)`` (TensorFlow's depthwise kernel needs equal
      strides, so the row step runs at every row; LiteRT ran it as fast as strided rows);
    * one ``1x1`` ``Conv2D`` per plane with the constant ``U_ab = (G g G^T)_ab [Ci, Co]``
      (folded here; XNNPACK pre-packs it), the bulk of the work;
    * output transform: ``A^T M`` as 8 sums of three planes, then ``(.) A`` as 4 more:
      ``AddV2``/``Sub`` only; the four output phases ``ConcatV2`` on the channels and
      ``DepthToSpace(2)`` interleave (channel ``(dy*2 + dx)*Co + c``); an odd size is
      cropped by a ``StridedSlice``.

    A per-channel constant bias read only by the convolution's output (``BiasAdd`` or
    ``Add`` of ``[Co]``) moves onto the 1x1 convolution of plane ``(1, 1)``, which feeds
    every output phase with coefficient 1 (the converter fuses it into that ``CONV_2D``).
    Exact in real arithmetic (the transformed filters round once; about 1e-5 relative
    error at 512 channels). Needs NHWC (run it after ``core::to_nhwc``) and known H, W.
    Thresholds from LiteRT on 2 threads (``python -m benchmarks.winograd``, one layer with
    bias and leaky ReLU, direct / Winograd): 512 channels 0.89-1.06x at 4 px, 1.3-1.6x at
    8 px, 1.8-1.9x at 16-64 px; 256 channels 0.90x at 8 px, 1.4-1.7x at 16-256 px; 128
    channels 0.70x / 0.89x at 8 / 16 px, 1.2-1.4x at 32-128 px, 0.90-0.98x at 256 px. So a
    layer pays when ``min(H, W) x C >= 4096`` and ``H x W <= 256 C``.

    Before::  x[N,H,W,Ci] -> Conv2D(w[3,3,Ci,Co], SAME) -> y[N,H,W,Co]
    After::   x -> Pad -> DepthwiseConv2dNative(4x1: B^T row a) (x4) -> T_a
              T_a -> DepthwiseConv2dNative(1x4: B^T row b, stride 2) (x4 per a) -> V_ab
              V_ab -> Conv2D(U_ab[1,1,Ci,Co]) -> M_ab (x16)
              S_0b = M_0b + M_1b + M_2b, S_1b = M_1b - M_2b - M_3b (x4 b)
              Y_r0 = S_r0 + S_r1 + S_r2, Y_r1 = S_r1 - S_r2 - S_r3
              ConcatV2(Y_00, Y_01, Y_10, Y_11, axis 3) -> DepthToSpace(2) -> y
    """

    infers_shapes = True

    min_channels = Option(int, 128, "rewrite only when input and output channels are both at "
                          "least this (C below: the smaller of the two)")
    min_size_x_channels = Option(int, 4096, "rewrite only when min(H, W) x C is at least this: "
                                 "512 channels from 8 px, 256 from 16 px, 128 from 32 px "
                                 "(below it the GEMMs are too small to pay for 60 more ops)")
    max_pixels_per_channel = Option(int, 256, "rewrite only when H x W / C is at most this: "
                                    "128 channels up to 128 px, 256 up to 256 px (beyond it "
                                    "the transforms' planes outgrow the caches)")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        plans = []
        for node in graph.nodes("Conv2D"):
            why = self._skip_reason(graph, node)
            if why is not None:
                log.debug("core::winograd_conv3x3: %s: %s", node.name, why)
                continue
            plans.append((node, channel_bias(graph, node.output(), np.float32)))
        for node, bias in plans:
            self._rewrite(graph, rw, node, bias)

    def _skip_reason(self, graph: Graph, node: Node) -> str | None:
        if node.attr("data_format", "NHWC") != "NHWC":
            return "not NHWC"
        if node.attr("padding") != "SAME":
            return f"padding {node.attr('padding')}"
        if list(node.attr("strides") or [1, 1, 1, 1]) != [1, 1, 1, 1]:
            return "strided"
        if any(d != 1 for d in (node.attr("dilations") or [1, 1, 1, 1])):
            return "dilated"
        if node.attr("T") != DType.float32:
            return "not float32"
        ins = node.data_inputs
        if len(ins) != 2 or not graph.is_const(ins[1]):
            return "filter not constant"
        wshape = tuple(graph.const_shape(ins[1].node))
        if len(wshape) != 4 or wshape[:2] != (3, 3):
            return f"filter {wshape} is not 3x3"
        shape = graph.shape(ins[0])
        if shape is None or len(shape) != 4 or shape[1] < 0 or shape[2] < 0:
            return "input height and width unknown"
        height, width, channels = shape[1], shape[2], min(wshape[2], wshape[3])
        if channels < self.min_channels:
            return f"{channels} channels below min_channels={self.min_channels}"
        if min(height, width) * channels < self.min_size_x_channels:
            return f"{height}x{width} px x {channels} channels below " \
                f"min_size_x_channels={self.min_size_x_channels}"
        if height * width > self.max_pixels_per_channel * channels:
            return f"{height}x{width} px over {channels} channels above " \
                f"max_pixels_per_channel={self.max_pixels_per_channel}"
        return None

    def _rewrite(self, graph: Graph, rw: Rewriter, node: Node,
                 bias: ChannelBias | None) -> None:
        x, filt_ref = node.data_inputs
        w = np.asarray(graph.const_value(filt_ref))
        _, height, width, _ = graph.shape(x)
        ci = w.shape[2]
        oh, ow = height % 2, width % 2
        scope = node.name
        f32 = DType.float32
        dw_attrs = {"T": f32, "padding": "VALID", "data_format": "NHWC",
                    "dilations": [1, 1, 1, 1]}
        paddings = rw.const(np.array([[0, 0], [1, 1 + oh], [1, 1 + ow], [0, 0]], np.int32),
                            name=f"{scope}/wino/paddings")
        xp = rw.add_node("Pad", [x, paddings], {"T": f32, "Tpaddings": DType.int32},
                         name=f"{scope}/wino/pad").output()
        # B^T d: one 4x1 depthwise convolution per row of B^T (stride 1)
        rows = []
        for a in range(4):
            k = np.broadcast_to(BT[a].astype(np.float32)[:, None, None, None], (4, 1, ci, 1))
            kr = rw.const(np.ascontiguousarray(k), name=f"{scope}/wino/rows{a}/filter")
            rows.append(rw.add_node("DepthwiseConv2dNative", [xp, kr],
                                    {**dw_attrs, "strides": [1, 1, 1, 1]},
                                    name=f"{scope}/wino/rows{a}").output())
        # (B^T d) B: one 1x4 depthwise convolution of stride 2 per column of B
        cols = []
        for b in range(4):
            k = np.broadcast_to(BT[b].astype(np.float32)[None, :, None, None], (1, 4, ci, 1))
            cols.append(rw.const(np.ascontiguousarray(k), name=f"{scope}/wino/cols{b}/filter"))
        u = winograd_filters(w)
        m = []
        for a in range(4):
            for b in range(4):
                v = rw.add_node("DepthwiseConv2dNative", [rows[a], cols[b]],
                                {**dw_attrs, "strides": [1, 2, 2, 1]},
                                name=f"{scope}/wino/v{a}{b}").output()
                ua = rw.const(np.ascontiguousarray(u[a * 4 + b][None, None]),
                              name=f"{scope}/wino/u{a}{b}")
                mm = rw.add_node("Conv2D", [v, ua],
                                 {"T": f32, "strides": [1, 1, 1, 1], "padding": "VALID",
                                  "data_format": "NHWC", "dilations": [1, 1, 1, 1]},
                                 name=f"{scope}/wino/m{a}{b}").output()
                if bias is not None and (a, b) == (1, 1):
                    bk = rw.const(np.ascontiguousarray(bias.value), name=f"{scope}/wino/bias")
                    mm = rw.add_node("BiasAdd", [mm, bk], {"T": f32, "data_format": "NHWC"},
                                     name=f"{scope}/wino/m11_bias").output()
                m.append(mm)

        def combine(terms: list[tuple[int, TensorRef]], name: str) -> TensorRef:
            # ((t0 +- t1) +- t2): AT's rows are [1, 1, 1, 0] and [0, 1, -1, -1]
            (_, acc), *rest = terms
            for i, (sign, t) in enumerate(rest):
                acc = rw.add_node("AddV2" if sign > 0 else "Sub", [acc, t], {"T": f32},
                                  name=f"{name}_{i}" if i < len(rest) - 1 else name).output()
            return acc

        def at_terms(r: int, items: list[TensorRef]) -> list[tuple[int, TensorRef]]:
            return [(int(AT[r, i]), t) for i, t in enumerate(items) if AT[r, i]]

        s = [[combine(at_terms(r, [m[a * 4 + b] for a in range(4)]), f"{scope}/wino/s{r}{b}")
              for b in range(4)] for r in range(2)]
        ys = [combine(at_terms(c, s[r]), f"{scope}/wino/y{r}{c}")
              for r in range(2) for c in range(2)]
        out = interleave_phases(rw, ys, 2, f32, f"{scope}/wino")
        if oh or ow:
            begin = rw.const(np.zeros(4, np.int32), name=f"{scope}/wino/crop_begin")
            end = rw.const(np.array([0, height, width, 0], np.int32),
                           name=f"{scope}/wino/crop_end")
            strides = rw.const(np.ones(4, np.int32), name=f"{scope}/wino/crop_strides")
            out = rw.add_node("StridedSlice", [out, begin, end, strides],
                              {"T": f32, "Index": DType.int32, "begin_mask": 9,
                               "end_mask": 9, "ellipsis_mask": 0, "new_axis_mask": 0,
                               "shrink_axis_mask": 0},
                              name=f"{scope}/wino/crop").output()
        if bias is not None:
            add, bref, _ = bias
            rw.replace_uses(add.output(), out)
            rw.erase(add)
            rw.erase(node)
            rw.erase_dead([filt_ref.node, bref.node])
        else:
            rw.replace_uses(node.output(), out)
            rw.erase(node)
            rw.erase_dead([filt_ref.node])
