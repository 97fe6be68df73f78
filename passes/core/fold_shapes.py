"""``core::fold_shapes``: replace Shape/Size/Rank of statically shaped tensors by Consts."""

from __future__ import annotations

import numpy as np

from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph
from graphsurgery.registry import Pass, register_pass
from graphsurgery.rewriter import Rewriter

_OPS = ("Shape", "Size", "Rank", "ShapeN")


@register_pass("core::fold_shapes")
class FoldShapes(Pass):
    """Replace ``Shape``, ``ShapeN``, ``Size`` and ``Rank`` of tensors whose static shape is
    fully known (TensorFlow's shape inference) by constants.

    Run after ``core::set_batch``; then ``core::fold_constants`` folds what they fed.

    Before::  x[1, 8, 4, 4] -> Shape -> StridedSlice(0) -> Pack(., 1, 4, 4) -> RandomStandardNormal
    After::   Const [1, 8, 4, 4] -> StridedSlice(0) -> Pack(., 1, 4, 4) -> RandomStandardNormal
    """

    infers_shapes = True

    def run(self, graph: Graph, rw: Rewriter) -> None:
        nodes = graph.nodes(*_OPS)
        if not nodes:
            return
        info = graph.infer()
        for node in nodes:
            shapes = []
            for ref in node.data_inputs:
                ti = info.get(ref)
                shape = graph.static_shape(ref) if ti is None else ti.shape
                if shape is None or any(d < 0 for d in shape):
                    break
                shapes.append(shape)
            else:
                out_type = node.attr("out_type", DType.int32)
                dt = out_type.numpy.type if isinstance(out_type, DType) else np.int32
                if node.op == "ShapeN":
                    for port, shape in enumerate(shapes):
                        c = rw.const(np.array(shape, dt), name=f"{node.name}/folded_{port}")
                        rw.replace_uses(node.output(port), c)
                    continue
                (shape,) = shapes
                value = {"Shape": np.array(shape, dt), "Size": dt(np.prod(shape, dtype=np.int64)),
                         "Rank": np.int32(len(shape))}[node.op]
                ctrl = node.control_inputs
                rw.erase(node, force=True)
                c = rw.const(np.asarray(value), name=node.name)
                for d in ctrl:
                    rw.add_control_input(c, d)
        rw.erase_dead([n.name for n in nodes if n.alive])
