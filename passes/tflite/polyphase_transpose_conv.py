"""``tflite::polyphase_transpose_conv``: strided transposed convolutions as phase convolutions."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.patterns.channel_bias import channel_bias
from graphsurgery.patterns.phases import interleave_phases
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


@dataclass(frozen=True)
class _Fused:
    """One axis of the single-convolution form: the input padded by ``before``/``after``
    and a window of ``taps`` taps at every position ``a``; phase ``p`` is the window at
    ``a = m + shift[p]`` and goes to sub-position ``slot[p]`` of ``DepthToSpace``, so that
    output ``u`` is position ``u + crop`` of the interleaved result."""

    taps: int
    before: int
    after: int
    shift: tuple[int, ...]
    slot: tuple[int, ...]
    crop: int


def _fused(size_in: int, size_out: int, stride: int, phases: list[_Phase]) -> _Fused | None:
    """The single-convolution layout of one axis, or None when the phases differ in their
    number of taps, one is cropped, or no interleaving order puts every phase at one
    common offset."""
    counts = {len(p.taps) for p in phases}
    if len(counts) != 1 or any(p.before < 0 or p.after < 0 for p in phases):
        return None
    (taps,) = counts
    before = max(p.before for p in phases)
    shift = tuple(before - p.before for p in phases)
    per_phase = -(-size_out // stride)
    after = per_phase + max(shift) + taps - 1 - before - size_in
    if after < 0:
        return None
    # slot[p] = crop + p - stride * shift[p] must be a permutation of range(stride)
    for crop in range(stride * max(shift) + 1):
        slot = tuple(crop + p - stride * s for p, s in enumerate(shift))
        if sorted(slot) == list(range(stride)):
            return _Fused(taps, before, after, shift, slot, crop)
    return None


#: Winograd F(2, 2): input transform ``B^T`` (3x3), filter transform ``G`` (3x2); the output
#: transform ``A^T = [[1, 1, 0], [0, 1, 1]]`` is written out as additions.
_BT2 = np.array([[1, -1, 0], [0, 1, 0], [0, -1, 1]], np.float64)
_G2 = np.array([[1, 0], [1, 1], [0, 1]], np.float64)


def _fused_kernel(w: np.ndarray, stride: int, rows: list[_Phase], cols: list[_Phase],
                  fr: _Fused, fc: _Fused) -> np.ndarray:
    """``[taps, taps, Ci, s*s*Co]`` from ``w [kh, kw, Co, Ci]``: phase ``(i, j)``'s taps in
    output channels ``(slot_i * s + slot_j) * Co``, where ``DepthToSpace`` puts them."""
    co = w.shape[2]
    kernel = np.zeros((fr.taps, fc.taps, w.shape[3], stride * stride * co), w.dtype)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            k = (fr.slot[i] * stride + fc.slot[j]) * co
            kernel[:, :, :, k:k + co] = w[np.ix_(r.taps, c.taps)].transpose(0, 1, 3, 2)
    return kernel


def _crop(rw: Rewriter, x: object, begin: tuple[int, int], size: tuple[int, ...],
          dtype: object, scope: str) -> object:
    """``Slice`` of rows and columns from ``begin``, with explicit sizes (LiteRT's XNNPACK
    delegate takes no -1 size in a Slice)."""
    b = rw.const(np.array([0, *begin, 0], np.int32), name=f"{scope}/crop_begin")
    n = rw.const(np.array(size, np.int32), name=f"{scope}/crop_size")
    return rw.add_node("Slice", [x, b, n], {"T": dtype, "Index": DType.int32},
                       name=f"{scope}/crop").output()


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

    ``form=winograd`` (the default) goes further where every phase has 2x2 taps (stride 2
    with a 4x4 kernel: the fused up-scale conv of ProGAN and StyleGAN) and the layer is
    large (``min_channels`` input channels, ``min_size`` px): the four phases are one 2x2
    convolution with 4*Co outputs on the input padded once (phase ``p`` at offset
    ``shift[p]``, interleaved into slot ``slot[p]`` and cropped: ``form=fused``), and that
    convolution runs as Winograd F(2x2, 2x2): per 2x2 tile of its output, the 3x3 input
    tile ``d`` is transformed by depthwise convolutions (``B^T d B``), multiplied by the
    transformed filters ``G k G^T`` in nine 1x1 convolutions and summed back
    (``A^T M A``, ten additions): 9 products per tile where the phases spend 16 (1.4-1.7x
    fewer multiply-adds at 16-64 px, the tiles' extra border row included). Exact in real
    arithmetic; the transformed filters round once (about 1e-5 relative error at 512
    channels). LiteRT, 2 threads, one layer with bias, leaky ReLU and pixel norm, paired
    against the phases (``python -m benchmarks.upconv``, busy machine): 1.53x faster at
    16 px with 512 channels, 1.41x at 32 px 512 -> 256, 1.34x at 64 px 256 -> 128. At
    8 px (512 channels) and at 128 channels single layers gained 0.97-1.18x, and the whole
    ProGAN no clear gain (0.90-1.04x paired, 1.05x in CPU time): hence ``min_size`` 16
    and ``min_channels`` 256.

    After (winograd)::
              x -> Pad -> DepthwiseConv2dNative(3x1: B^T row a) (x3) -> T_a
              T_a -> DepthwiseConv2dNative(1x3: B^T row b, stride 2) -> V_ab (x9)
              V_ab -> Conv2D(U_ab[1,1,Ci,4Co]) -> M_ab (x9; the bias on M_11)
              S_rb = M_rb + M_(r+1)b, Y_rs = S_rs + S_r(s+1)
              ConcatV2(Y_00, Y_01, Y_10, Y_11) -> DepthToSpace(2) (tiles)
                  -> DepthToSpace(2) (phases) -> Slice -> y
    """

    infers_shapes = True

    min_stride = Option(int, 2, "rewrite transposed convolutions whose stride is at least this")
    form = Option(("phases", "fused", "winograd"), "winograd",
                  "phases: one convolution per phase, concatenated; fused: one convolution "
                  "with stride*stride times the channels on the input padded once, then a "
                  "crop, where every phase has as many taps and none is cropped; winograd: "
                  "that convolution as Winograd F(2x2, 2x2) where it has 2x2 taps and is "
                  "large enough (min_channels, min_size), else phases")
    min_channels = Option(int, 256, "winograd form: only when the input has at least this "
                          "many channels")
    min_size = Option(int, 16, "winograd form: only when the input is at least this high "
                      "and wide")

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
        shape = graph.shape(x_ref)
        fused = [_fused(shape[a], out_shape[a], stride, phs) for a, phs in ((1, rows), (2, cols))]
        if None not in fused and -1 not in out_shape[:3]:
            fr, fc = fused
            if self.form == "winograd" and stride == 2 and fr.taps == fc.taps == 2 \
                    and node.attr("T") == DType.float32 and w.shape[3] >= self.min_channels \
                    and min(shape[1:3]) >= self.min_size:
                return self._rewrite_winograd(graph, rw, node, w, rows, cols, fr, fc,
                                              out_shape)
            if self.form == "fused":
                return self._rewrite_fused(rw, node, w, stride, rows, cols, fr, fc,
                                           out_shape)
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
        out = interleave_phases(rw, phases, stride, dtype, scope)
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
    def _rewrite_fused(rw: Rewriter, node: Node, w: np.ndarray, stride: int,
                       rows: list[_Phase], cols: list[_Phase], fr: _Fused, fc: _Fused,
                       out_shape: tuple[int, int, int, int]) -> list[str]:
        """One convolution for all phases (:func:`_fused_kernel`), ``DepthToSpace``, crop."""
        sizes_ref, filt_ref, x_ref = node.data_inputs
        dtype = node.attr("T")
        scope = node.name
        co = w.shape[2]
        kernel = _fused_kernel(w, stride, rows, cols, fr, fc)
        pads = _Phase((), fr.before, fr.after), _Phase((), fc.before, fc.after)
        src = PolyphaseTransposeConv._pad(rw, x_ref, *pads, dtype, f"{scope}/fused")
        filt = rw.const(kernel, name=f"{scope}/fused/filter")
        conv = rw.add_node("Conv2D", [src, filt],
                           {"T": dtype, "strides": [1, 1, 1, 1], "padding": "VALID",
                            "data_format": "NHWC", "dilations": [1, 1, 1, 1]},
                           name=f"{scope}/phases")
        out = rw.add_node("DepthToSpace", [conv.output()],
                          {"T": dtype, "block_size": stride, "data_format": "NHWC"},
                          name=f"{scope}/interleave").output()
        full = [stride * (n + max(f.shift)) for n, f in
                ((-(-out_shape[1] // stride), fr), (-(-out_shape[2] // stride), fc))]
        if [fr.crop, fc.crop] != [0, 0] or full != list(out_shape[1:3]):
            out = _crop(rw, out, (fr.crop, fc.crop), (*out_shape[:3], co), dtype, scope)
        rw.replace_uses(node.output(), out)
        rw.erase(node)
        return [sizes_ref.node, filt_ref.node]

    @staticmethod
    def _rewrite_winograd(graph: Graph, rw: Rewriter, node: Node, w: np.ndarray,
                          rows: list[_Phase], cols: list[_Phase], fr: _Fused, fc: _Fused,
                          out_shape: tuple[int, int, int, int]) -> list[str]:
        """The fused form's 2x2 convolution as Winograd F(2x2, 2x2): per 2x2 tile of its
        output, 9 products ``(B^T d B) . (G k G^T)`` of the 3x3 input tile ``d`` instead of
        16. A per-channel bias that alone reads the result goes onto ``M_11``, which every
        tile position sums once."""
        sizes_ref, filt_ref, x_ref = node.data_inputs
        f32 = node.attr("T")
        scope = f"{node.name}/wino"
        co, ci = w.shape[2], w.shape[3]
        u = np.einsum("at,tuio,bu->abio", _G2, _fused_kernel(w, 2, rows, cols, fr, fc)
                      .astype(np.float64), _G2).astype(w.dtype)  # [3, 3, Ci, 4 Co]
        _, height, width, _ = graph.shape(x_ref)
        # the fused form's input, padded to 2 * tiles + 1 rows and columns
        extra = [(n + f.before + f.after - 1) % 2 for n, f in ((height, fr), (width, fc))]
        paddings = rw.const(np.array([[0, 0], [fr.before, fr.after + extra[0]],
                                      [fc.before, fc.after + extra[1]], [0, 0]], np.int32),
                            name=f"{scope}/paddings")
        xp = rw.add_node("Pad", [x_ref, paddings], {"T": f32, "Tpaddings": DType.int32},
                         name=f"{scope}/pad").output()
        dw = {"T": f32, "padding": "VALID", "data_format": "NHWC", "dilations": [1, 1, 1, 1]}
        trows = []
        for a in range(3):  # B^T d: a 3x1 depthwise convolution per row of B^T
            k = np.broadcast_to(_BT2[a].astype(w.dtype)[:, None, None, None], (3, 1, ci, 1))
            trows.append(rw.add_node(
                "DepthwiseConv2dNative",
                [xp, rw.const(np.ascontiguousarray(k), name=f"{scope}/rows{a}/filter")],
                {**dw, "strides": [1, 1, 1, 1]}, name=f"{scope}/rows{a}").output())
        bias = channel_bias(graph, node.output())
        m = {}
        for b in range(3):  # (B^T d) B: a 1x3 depthwise convolution of stride 2 per column
            k = np.broadcast_to(_BT2[b].astype(w.dtype)[None, :, None, None], (1, 3, ci, 1))
            kc = rw.const(np.ascontiguousarray(k), name=f"{scope}/cols{b}/filter")
            for a in range(3):
                v = rw.add_node("DepthwiseConv2dNative", [trows[a], kc],
                                {**dw, "strides": [1, 2, 2, 1]}, name=f"{scope}/v{a}{b}")
                ua = rw.const(np.ascontiguousarray(u[a, b][None, None]), name=f"{scope}/u{a}{b}")
                mm = rw.add_node("Conv2D", [v.output(), ua],
                                 {"T": f32, "strides": [1, 1, 1, 1], "padding": "VALID",
                                  "data_format": "NHWC", "dilations": [1, 1, 1, 1]},
                                 name=f"{scope}/m{a}{b}").output()
                if bias is not None and (a, b) == (1, 1):
                    bk = rw.const(np.tile(bias.value, 4), name=f"{scope}/bias")
                    mm = rw.add_node("BiasAdd", [mm, bk], {"T": f32, "data_format": "NHWC"},
                                     name=f"{scope}/m11_bias").output()
                m[a, b] = mm

        def add(x: object, y: object, name: str) -> object:
            return rw.add_node("AddV2", [x, y], {"T": f32}, name=name).output()

        # A^T M A with A^T = [[1, 1, 0], [0, 1, 1]]
        srow = {(r, b): add(m[r, b], m[r + 1, b], f"{scope}/s{r}{b}")
                for r in range(2) for b in range(3)}
        ys = [add(srow[r, c], srow[r, c + 1], f"{scope}/y{r}{c}")
              for r in range(2) for c in range(2)]
        axis = rw.const(np.int32(3), name=f"{scope}/concat_axis")
        cat = rw.add_node("ConcatV2", [*ys, axis], {"T": f32, "N": 4, "Tidx": DType.int32},
                          name=f"{scope}/tiles").output()
        # tile position (r, s) outermost, then the phase slots: two interleaves of 2
        out = cat
        for level in ("tiles", "phases"):
            out = rw.add_node("DepthToSpace", [out], {"T": f32, "block_size": 2,
                                                     "data_format": "NHWC"},
                              name=f"{scope}/interleave_{level}").output()
        out = _crop(rw, out, (fr.crop, fc.crop), (*out_shape[:3], co), f32, scope)
        if bias is not None:
            rw.replace_uses(bias.add.output(), out)
            rw.erase(bias.add)
        else:
            rw.replace_uses(node.output(), out)
        rw.erase(node)
        return [sizes_ref.node, filt_ref.node] + ([] if bias is None else [bias.ref.node])

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
