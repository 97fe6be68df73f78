"""``tflite::guard_broadcast_folding``: keep the TFLite converter from materialising broadcasts."""

from __future__ import annotations

import numpy as np

from graphsurgery.ir.graph import Graph, Node
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

_ADDS = ("Add", "AddV2")


def _broadcast_nbytes(a: tuple[int, ...], b: tuple[int, ...], itemsize: int) -> int | None:
    try:
        return int(np.prod(np.broadcast_shapes(a, b), dtype=np.int64)) * itemsize
    except ValueError:
        return None


@register_pass("tflite::guard_broadcast_folding")
class GuardBroadcastFolding(Pass):
    """Keep constant broadcasts for the TFLite converter to fold from growing the model.

    The TFLite converter reassociates two additions of constants and folds ``c1 + c2``
    into one constant even when it broadcasts: StyleGAN2's per-layer ``x + noise[1,H,W,1] +
    bias[1,1,1,C]`` becomes a ``[1,H,W,C]`` constant per layer, doubling a 1024 px model.
    It does not reassociate a subtraction, and ``x - (-c)`` equals ``x + c`` bit for bit
    (negation is exact), so the graph computes the same values and the model keeps its size.
    Likewise StyleGAN's ``noise[1,H,W,1] * weight[1,1,1,C]`` (two constants) becomes a 1x1
    convolution of the noise map, which the converter keeps as an op: one multiply per
    element, the same values as the product. Runs on NHWC graphs (after ``core::to_nhwc``).

    Before::  x -> AddV2(., noise[1,H,W,1]) -> AddV2(., bias[1,1,1,C]) -> y
              noise[1,H,W,1] * w[1,1,1,C] -> AddV2(x, .)
    After::   x -> Sub(., -noise[1,H,W,1])  -> AddV2(., bias[1,1,1,C]) -> y
              Conv2D(noise[1,H,W,1], filter w[1,1,1,C]) -> AddV2(x, .)
    """

    max_growth = Option(float, 4.0, "rewrite when the folded constant would be more than "
                        "this many times the larger of the two constants")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        replaced = self._outer_products(graph, rw)
        for outer in graph.nodes(*_ADDS, "BiasAdd"):  # TF2 ports add biases by BiasAdd
            if not outer.alive:
                continue
            inner, c2 = self._split(graph, outer)
            if inner is None or inner.op not in _ADDS or len(graph.consumers(inner.output())) != 1:
                continue
            x, c1 = self._split(graph, inner)
            if x is None:
                continue
            s1, s2 = graph.const_shape(c1), graph.const_shape(c2)
            itemsize = graph.const_value(c1).dtype.itemsize if graph.const_nbytes(c1) else 4
            folded = _broadcast_nbytes(s1, s2, itemsize)
            larger = max(graph.const_nbytes(c1), graph.const_nbytes(c2), 1)
            if folded is None or folded <= self.max_growth * larger:
                continue
            neg = rw.const(-graph.const_value(c1), name=f"{c1}/neg")
            rw.set_op(inner, "Sub")
            rw.set_inputs(inner, [x.output(), neg])
            replaced.append(c1)
        rw.erase_dead(replaced)

    def _outer_products(self, graph: Graph, rw: Rewriter) -> list[str]:
        """``Mul(map[1,H,W,1], vec[1,1,1,C])`` of two constants -> a 1x1 ``Conv2D`` of the
        map with the vector as its filter: one multiply per element, so the same values,
        but an op the converter does not fold into a ``[1,H,W,C]`` constant."""
        replaced: list[str] = []
        for mul in graph.nodes("Mul"):
            a, b = mul.data_inputs
            if not (graph.is_const(a) and graph.is_const(b)):
                continue
            sa, sb = graph.const_shape(a.node), graph.const_shape(b.node)
            if len(sa) == 4 and len(sb) == 4 and sa[0] == sa[3] == 1 and sb[:3] == (1, 1, 1):
                spatial, vec = a, b
            elif len(sa) == 4 and len(sb) == 4 and sb[0] == sb[3] == 1 and sa[:3] == (1, 1, 1):
                spatial, vec = b, a
            else:
                continue
            folded = _broadcast_nbytes(sa, sb, graph.const_value(vec).dtype.itemsize)
            larger = max(graph.const_nbytes(a.node), graph.const_nbytes(b.node), 1)
            if folded is None or folded <= self.max_growth * larger:
                continue
            filt = rw.const(graph.const_value(vec).reshape(1, 1, 1, -1),
                            name=f"{mul.name}/filter")
            dtype = mul.attr("T")
            ctrl = mul.control_inputs
            rw.erase(mul, force=True)
            conv = rw.add_node(
                "Conv2D", [spatial, filt],
                {"T": dtype, "strides": [1, 1, 1, 1], "padding": "VALID",
                 "data_format": "NHWC", "dilations": [1, 1, 1, 1]},
                name=mul.name, control_inputs=ctrl,
            )
            replaced.extend([a.node, b.node])
            assert conv.name == mul.name
        return replaced

    @staticmethod
    def _split(graph: Graph, node: Node) -> tuple[Node | None, str]:
        """(the non-constant operand, the constant operand's name) of a binary add."""
        a, b = node.data_inputs
        if graph.is_const(b) and not graph.is_const(a) and a.port == 0:
            return graph.node(a.node), b.node
        if graph.is_const(a) and not graph.is_const(b) and b.port == 0:
            return graph.node(b.node), a.node
        return None, ""
