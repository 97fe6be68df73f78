"""``core::scale_after_pointwise_conv``: a per-pixel scale in front of a 1x1 convolution
moves behind it, onto the (narrower) output."""

from __future__ import annotations

import logging

from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.registry import Pass, register_pass
from graphsurgery.rewriter import Rewriter

log = logging.getLogger(__name__)


@register_pass("core::scale_after_pointwise_conv")
class ScaleAfterPointwiseConv(Pass):
    """Move a multiplication by a per-pixel value ``r[N,H,W,1]`` from the input of a 1x1
    stride-1 ``Conv2D`` with a constant filter to its output, when the output has fewer
    channels than the input.

    A 1x1 convolution is a matrix product per pixel, so ``conv(x * r) = conv(x) * r`` for
    any ``r`` that is one value per pixel: the same products, scaled after the sum instead
    of before it. Pixel norm ends in such a multiply (``x * rsqrt(mean(x^2) + eps)``), and
    ProGAN's ToRGB is a 1x1 convolution from 64 channels to 3 at 256 px: the multiply then
    runs over 3 channels instead of 64 (one pass over a 16 MB activation less in LiteRT).
    Exact in real arithmetic (each output rounds ``r`` in at a different step). Needs NHWC;
    the scaled tensor must have no other reader.

    Before::  x[N,H,W,64] -> Mul(r[N,H,W,1]) -> Conv2D(w[1,1,64,3]) -> AddV2(b) -> y
    After::   x[N,H,W,64] -> Conv2D(w[1,1,64,3]) -> Mul(r[N,H,W,1]) -> AddV2(b) -> y
    """

    infers_shapes = True

    def run(self, graph: Graph, rw: Rewriter) -> None:
        plans = []
        for node in graph.nodes("Conv2D"):
            plan = self._plan(graph, node)
            if plan is not None:
                plans.append((node, *plan))
        for node, mul, x, r in plans:
            dtype = node.attr("T")
            conv = rw.add_node("Conv2D", [x, node.data_inputs[1]],
                               {k: node.attr(k) for k in node.attr_names
                                if not k.startswith("_")},
                               name=f"{node.name}/unscaled")
            scaled = rw.add_node("Mul", [conv.output(), r], {"T": dtype},
                                 name=f"{node.name}/scale")
            rw.replace_uses(node.output(), scaled.output())
            rw.erase(node)
            rw.erase_dead([mul.name])

    @staticmethod
    def _plan(graph: Graph, node: Node) -> tuple[Node, TensorRef, TensorRef] | None:
        if node.attr("data_format", "NHWC") != "NHWC":
            return None
        if list(node.attr("strides") or [1, 1, 1, 1]) != [1, 1, 1, 1] or any(
                d != 1 for d in (node.attr("dilations") or [1, 1, 1, 1])):
            return None
        src, filt = node.data_inputs
        if not graph.is_const(filt):
            return None
        kh, kw, ci, co = graph.const_shape(filt.node)
        if (kh, kw) != (1, 1) or co >= ci:
            return None
        mul = graph.node(src.node)
        if mul.op != "Mul" or src.port != 0 or len(graph.consumers(src)) != 1 \
                or src in graph.outputs:
            return None
        out = graph.shape(src)
        for x, r in (mul.data_inputs, mul.data_inputs[::-1]):
            xs, rs = graph.shape(x), graph.shape(r)
            if out is None or xs is None or rs is None or len(out) != 4 or min(out) < 0:
                return None
            if tuple(xs) == tuple(out) and len(rs) == 4 and tuple(rs) == (*out[:3], 1):
                return mul, x, r
        log.debug("core::scale_after_pointwise_conv: %s: the scale is not one value per pixel",
                  node.name)
        return None
