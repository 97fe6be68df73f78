"""``stylegan::unfuse_modconv``: StyleGAN2 modulated convolutions with constant filters."""

from __future__ import annotations

import logging

import numpy as np

from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.ir.shapes import TensorInfo
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

from . import _modconv as mc

log = logging.getLogger("graphsurgery.passes.stylegan.unfuse_modconv")


@register_pass("stylegan::unfuse_modconv")
class UnfuseModConv(Pass):
    """Rewrite StyleGAN2's fused modulated convolutions as constant-filter convolutions.

    The fused form builds a 5-D weight ``ww = w * s[:, None, None, :, None]`` ([N, k, k,
    Cin, Cout]), demodulates it with ``d = rsqrt(sum(square(ww), [1, 2, 3]) + eps)``, folds
    the batch into the channels and runs ONE grouped ``Conv2D`` (or, for the 2x up-sampling
    layers, ``Conv2DBackpropInput`` with a flipped, regrouped weight) whose filter is computed
    at run time. The same maths with a constant filter is ``x * s``, the convolution with
    ``w``, then ``* d``, where ``sum(square(w * s), [kh, kw, Cin]) = square(s) @ W2`` with
    ``W2 = sum(square(w), [kh, kw])`` precomputed: a ``MatMul`` with a constant weight.

    Recognised by structure: a convolution whose filter is a view (reshape, transpose,
    flip...) of a product of a constant weight, a style view ``[N, 1, 1, Cin, 1]`` and
    optionally a demodulation factor ``[N, 1, 1, 1, Cout]``; what the views do is checked
    element by element, so NCHW (TF1) and NHWC (TF2 ports) layouts and any static batch are
    handled. The tensors around the convolution that fold the batch into the channels are
    bypassed. The demodulation of non-fused modulated convolutions (``fused_modconv=False``:
    already ``x * s -> conv(W) -> * d``, but ``d`` computed from 5-D ``w * s``) gets the
    ``MatMul`` form too (option ``nonfused``).

    Before::

        ww = Mul(Mul(w[1,3,3,Cin,Cout], s5[N,1,1,Cin,1]), d5)     # d5 = Rsqrt(Sum(Square)..)
        f  = Reshape(Transpose(ww, [1,2,3,0,4]), [3,3,Cin,-1])
        y  = Reshape(Conv2D(Reshape(x, [1,-1,H,W]), f), [-1,Cout,H,W])

    After::

        xs = Mul(x, Reshape(s, [N,Cin,1,1]))
        d  = Rsqrt(AddV2(MatMul(Square(s), W2[Cin,Cout]), eps))
        y  = Mul(Conv2D(xs, Const w[3,3,Cin,Cout]), Reshape(d, [N,Cout,1,1]))

    The up-sampling layers become ``Mul(Conv2DBackpropInput(sizes, Const flip(w)^T
    [3,3,Cout,Cin], xs), d4)`` feeding the FIR filter exactly as the grouped one did (the
    fused form applies ``d`` inside the weight, i.e. before the FIR step as well). With a
    batch above 1, a FIR filter already lowered to ``Pad`` and a depthwise conv on the
    batch-folded ``[1, N*Cout, H, W]`` tensor is rebuilt on the per-sample one, so the batch
    never sits in the channels (in NHWC that fold would be a ``Transpose``).
    """

    infers_shapes = True

    nonfused = Option(bool, True, "also give non-fused demodulations the MatMul form")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        convs = graph.nodes("Conv2D", "Conv2DBackpropInput")
        candidates = [c for c in convs if len(c.data_inputs) > 1
                      and not graph.is_const(c.data_inputs[1])]
        sums = [s for s in graph.nodes("Sum") if self.nonfused
                and graph.node(s.data_inputs[0].node).op in ("Square", "Mul", "Pow")]
        if not candidates and not sums:
            return
        infos = dict(graph.infer())
        self._styles: dict[TensorRef, TensorRef] = {}
        cache: dict = {}  # decoded constant weights, shared by the matchers
        dead: list[str] = []
        for conv in candidates:
            match = mc.match_modconv(graph, infos, conv, cache)
            if match is None:
                log.info("%s: run-time filter not recognised as a modulated conv", conv.name)
                continue
            with rw.rule_scope("fused"):
                dead.append(self._rewrite_conv(graph, rw, infos, match))
        rw.erase_dead(dead)
        dead = []
        for node in sums:
            if not node.alive:
                continue
            prod = mc.match_sum_of_squares(graph, infos, node, cache)
            shape = mc.shape_of(graph, infos, node.output())
            if prod is None or shape is None:
                continue
            if int(np.prod(shape)) != prod.shape[0] * prod.shape[4]:
                continue
            with rw.rule_scope("demodulation"):
                dead.append(self._rewrite_sum(graph, rw, infos, node, prod))
        rw.erase_dead(dead)

    # ------------------------------------------------------------------ building blocks
    def _style(self, rw: Rewriter, prod: mc.Product, dtype: DType, base: str) -> TensorRef:
        """The styles as a [N, Cin] tensor (one per style source)."""
        n, cin = prod.shape[0], prod.shape[3]
        if prod.s_src_shape == (n, cin):
            return prod.s_src
        hit = self._styles.get(prod.s_src)
        if hit is not None:
            return hit
        shape = rw.const(np.array([n, cin], np.int32), name=f"{base}/style/shape")
        s2d = rw.add_node("Reshape", [prod.s_src, shape], {"T": dtype, "Tshape": DType.int32},
                          name=f"{base}/style").output()
        self._styles[prod.s_src] = s2d
        return s2d

    def _sum_of_squares(self, rw: Rewriter, prod: mc.Product, s2d: TensorRef, dtype: DType,
                        base: str) -> TensorRef:
        """``sum(square(w * s), [kh, kw, Cin]) = square(s) @ sum(square(w), [kh, kw])``."""
        w = prod.w.reshape(-1, prod.shape[3] * prod.shape[4])
        w2 = np.einsum("ij,ij->j", w, w).reshape(prod.shape[3], prod.shape[4])
        w2 = rw.const(w2.astype(dtype.numpy), name=f"{base}/weight_sq")
        sq = rw.add_node("Square", [s2d], {"T": dtype}, name=f"{base}/style_sq")
        return rw.add_node("MatMul", [sq, w2], {"T": dtype, "transpose_a": False,
                                                "transpose_b": False},
                           name=f"{base}/demod_sum").output()

    @staticmethod
    def _rebuild_chain(graph: Graph, rw: Rewriter, demod: mc.Demod, t: TensorRef,
                       base: str) -> TensorRef:
        """Re-apply the element-wise ops between the ``Sum`` and ``d`` to ``t`` (2-D)."""
        for node, i in demod.chain:
            ins: list[TensorRef] = list(node.data_inputs)
            ins[i] = t
            for j, x in enumerate(ins):
                if j == i or (graph.is_const(x) and graph.const_shape(x.node) == ()):
                    continue
                v = mc.scalar_const(graph, x)
                ins[j] = rw.const(v.reshape(()), name=f"{base}/demod_const",
                                  dtype=DType.of(v.dtype)).output()
            attrs = {k: node.attr(k) for k in node.attr_names if not k.startswith("_")}
            t = rw.add_node(node.op, ins, attrs, name=f"{base}/demod_{node.op.lower()}").output()
        return t

    @staticmethod
    def _reshape(rw: Rewriter, t: TensorRef, shape: tuple[int, ...], dtype: DType,
                 name: str) -> TensorRef:
        c = rw.const(np.array(shape, np.int32), name=f"{name}/shape")
        return rw.add_node("Reshape", [t, c], {"T": dtype, "Tshape": DType.int32},
                           name=name).output()

    @staticmethod
    def _transpose(rw: Rewriter, t: TensorRef, perm: list[int], dtype: DType,
                   name: str) -> TensorRef:
        c = rw.const(np.array(perm, np.int32), name=f"{name}/perm")
        return rw.add_node("Transpose", [t, c], {"T": dtype, "Tperm": DType.int32},
                           name=name).output()

    # ------------------------------------------------------------------ rewrites
    def _rewrite_conv(self, graph: Graph, rw: Rewriter, infos: dict, m: mc.ModConv) -> str:
        conv = m.conv
        dtype = conv.attr("T")
        base = _scope(conv)
        prod = m.product
        n, _, _, cin, cout = prod.shape
        nchw = m.data_format == "NCHW"
        h, w = (m.x_in_shape[2], m.x_in_shape[3]) if nchw else (m.x_in_shape[1],
                                                               m.x_in_shape[2])
        oh, ow = (m.out_shape[2], m.out_shape[3]) if nchw else (m.out_shape[1], m.out_shape[2])

        # x: the per-sample input [N, Cin, H, W] (NHWC: [N, H, W, Cin]).
        if m.x_src is not None:
            x = m.x_src
        elif graph.is_const(m.x_in):
            x = rw.const(mc.unfold_const(graph.const_value(m.x_in), n, cin, m.data_format),
                         name=f"{base}/input").output()
        elif nchw:
            x = self._reshape(rw, m.x_in, (n, cin, h, w), dtype, f"{base}/input")
        else:
            x = self._reshape(rw, m.x_in, (h, w, n, cin), dtype, f"{base}/input")
            x = self._transpose(rw, x, [2, 0, 1, 3], dtype, f"{base}/input_nhwc")

        s2d = self._style(rw, prod, dtype, base)
        s4 = self._reshape(rw, s2d, (n, cin, 1, 1) if nchw else (n, 1, 1, cin), dtype,
                           f"{base}/style4")
        xs = rw.add_node("Mul", [x, s4], {"T": dtype}, name=f"{base}/modulate").output()

        attrs = {k: conv.attr(k) for k in conv.attr_names if not k.startswith("_")}
        wc = rw.const(np.ascontiguousarray(m.wc.astype(dtype.numpy)), name=f"{base}/weight")
        per_sample = (n, cout, oh, ow) if nchw else (n, oh, ow, cout)
        if conv.op == "Conv2D":
            y = rw.add_node("Conv2D", [xs, wc], attrs, name=f"{base}/conv").output()
        else:
            sizes = conv.data_inputs[0]
            if n != 1 or not graph.is_const(sizes):
                sizes = rw.const(np.array(per_sample, np.int32),
                                 name=f"{base}/conv/input_sizes").output()
            y = rw.add_node("Conv2DBackpropInput", [sizes, wc, xs], attrs,
                            name=f"{base}/conv").output()

        if m.demod is not None:
            ss = self._sum_of_squares(rw, prod, s2d, dtype, base)
            d = self._rebuild_chain(graph, rw, m.demod, ss, base)
            d4 = self._reshape(rw, d, (n, cout, 1, 1) if nchw else (n, 1, 1, cout), dtype,
                               f"{base}/demod4")
            y = rw.add_node("Mul", [y, d4], {"T": dtype}, name=f"{base}/demodulate").output()
        infos[y] = TensorInfo(dtype, per_sample)

        if m.y_dst is not None:
            rw.replace_uses(m.y_dst, y)
            return m.y_dst.node
        if nchw and n > 1:
            unfolded = self._per_channel_tail(graph, rw, infos, conv.output(), y, n, cout, base)
            if unfolded is not None:
                rw.replace_uses(unfolded[0], unfolded[1])
                return unfolded[0].node
        if nchw:
            # Same element order: a Reshape consumer can read the per-sample tensor directly.
            users = graph.consumers(conv.output())
            for user, i in users:
                if user.op == "Reshape" and i == 0:
                    rw.set_input(user, 0, y)
            if not graph.consumers(conv.output()) and conv.output() not in graph.outputs:
                return conv.name
            folded = self._reshape(rw, y, m.out_shape, dtype, f"{base}/fold")
        else:
            t = self._transpose(rw, y, [1, 2, 0, 3], dtype, f"{base}/fold_nhwc")
            folded = self._reshape(rw, t, m.out_shape, dtype, f"{base}/fold")
        rw.replace_uses(conv.output(), folded)
        return conv.name

    def _per_channel_tail(self, graph: Graph, rw: Rewriter, infos: dict, out: TensorRef,
                          y: TensorRef, n: int, cout: int,
                          base: str) -> tuple[TensorRef, TensorRef] | None:
        """Ops after a batch-folded NCHW convolution that treat every channel alike, up to
        the ``Reshape`` that unfolds the batch again (StyleGAN2's FIR filter after the
        up-sampling conv: ``Pad`` then a depthwise conv whose filter repeats per sample).

        Rebuilds them on the per-sample ``y`` ``[N, Cout, H, W]`` so the batch never moves
        into the channels: returns (the unfolding reshape's output, its replacement), or
        None when the chain is anything else.
        """
        chain: list[Node] = []
        cur = out
        while True:
            users = graph.consumers(cur)
            if len(users) != 1 or cur in graph.outputs or graph.control_users(cur.node):
                return None
            node, i = users[0]
            if i != 0:
                return None
            shape = mc.shape_of(graph, infos, node.output())
            if node.op == "Reshape":
                src = mc.shape_of(graph, infos, cur)
                if (src is None or shape is None or len(src) != 4
                        or shape != (n, cout, src[2], src[3]) or not chain):
                    return None
                unfold = node
                break
            if not _channelwise(graph, node, n, cout):
                return None
            chain.append(node)
            cur = node.output()
        t = y
        for node in chain:
            ins = list(node.data_inputs)
            ins[0] = t
            if node.op == "DepthwiseConv2dNative":
                filt = np.asarray(graph.const_value(ins[1]))[:, :, :cout]
                ins[1] = rw.const(np.ascontiguousarray(filt), name=f"{base}/{_leaf(node)}/filter"
                                  ).output()
            attrs = {k: node.attr(k) for k in node.attr_names if not k.startswith("_")}
            t = rw.add_node(node.op, ins, attrs, name=f"{base}/{_leaf(node)}").output()
        return unfold.output(), t

    def _rewrite_sum(self, graph: Graph, rw: Rewriter, infos: dict, node: Node,
                     prod: mc.Product) -> str:
        dtype = node.attr("T")
        base = _scope(node)
        s2d = self._style(rw, prod, dtype, base)
        ss = self._sum_of_squares(rw, prod, s2d, dtype, base)
        n, cout = prod.shape[0], prod.shape[4]
        shape = mc.shape_of(graph, infos, node.output())
        if shape != (n, cout):
            ss = self._reshape(rw, ss, shape, dtype, f"{base}/demod_sum5")
        rw.replace_uses(node.output(), ss)
        return node.name


def _scope(node: Node) -> str:
    return node.name.rsplit("/", 1)[0] if "/" in node.name else node.name


def _leaf(node: Node) -> str:
    return node.name.rsplit("/", 1)[-1]


def _channelwise(graph: Graph, node: Node, n: int, cout: int) -> bool:
    """``node`` (reading a batch-folded NCHW ``[1, N*Cout, H, W]`` tensor as input 0) does
    the same to every channel and keeps the channel count: a spatial ``Pad`` or a depthwise
    convolution (multiplier 1) whose constant filter repeats with period ``Cout``."""
    ins = node.data_inputs
    if mc.channel_axis(node) != 1 and node.op == "DepthwiseConv2dNative":
        return False
    if node.op in ("Pad", "PadV2"):
        pads = mc.const_value(graph, ins[1])
        if pads is None or pads.shape != (4, 2) or np.any(pads[:2] != 0):
            return False
        return node.op == "Pad" or mc.scalar_const(graph, ins[2]) is not None
    if node.op == "DepthwiseConv2dNative" and len(ins) == 2 and graph.is_const(ins[1]):
        filt = np.asarray(graph.const_value(ins[1]))
        if filt.ndim != 4 or filt.shape[2:] != (n * cout, 1):
            return False
        per = filt.reshape(filt.shape[0], filt.shape[1], n, cout)
        return bool(np.all(per == per[:, :, :1]))
    return False
