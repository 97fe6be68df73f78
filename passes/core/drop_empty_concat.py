"""``core::drop_empty_concat``: concatenated operands that hold no elements are dropped."""

from __future__ import annotations

from graphsurgery.ir.graph import Graph
from graphsurgery.registry import Pass, register_pass
from graphsurgery.rewriter import Rewriter


@register_pass("core::drop_empty_concat")
class DropEmptyConcat(Pass):
    """Drop the operands of ``ConcatV2`` that are empty along the concatenation axis
    (their static shape has size 0 there); a concat left with one operand is that operand.

    Unconditional ProGAN and StyleGAN generators concatenate ``labels_in [N, 0]`` to the
    latent: the label input is real in the graph yet carries nothing, and a zero-size model
    input is what mobile runtimes handle worst. Once the concat is gone nothing reads the
    input, and ``core::dce(prune_inputs=true)`` removes it from the interface.

    Before::

        z      = Placeholder[?, 512]
        labels = Placeholder[?, 0]
        axis   = Const(1)
        x      = ConcatV2(z, labels, axis)
        y      = Mul(x, x)

    After::

        z      = Placeholder[?, 512]
        labels = Placeholder[?, 0]                (unused: pruned later)
        y      = Mul(z, z)
    """

    def run(self, graph: Graph, rw: Rewriter) -> None:
        for node in graph.nodes("ConcatV2"):
            *values, axis_ref = node.data_inputs
            if not graph.is_const(axis_ref) or len(values) < 2:
                continue
            kept = []
            for ref in values:
                shape = graph.static_shape(ref)
                if shape is None:
                    kept.append(ref)
                    continue
                axis = int(graph.const_value(axis_ref))
                axis = axis + len(shape) if axis < 0 else axis
                if not (0 <= axis < len(shape)) or shape[axis] != 0:
                    kept.append(ref)
            if len(kept) == len(values) or not kept:
                continue
            if len(kept) == 1 and not node.control_inputs:
                rw.replace_uses(node.output(), kept[0])
                rw.erase(node.name)
            else:
                rw.set_inputs(node, [*kept, axis_ref])
                rw.set_attr(node, "N", len(kept))
