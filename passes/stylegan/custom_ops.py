"""StyleGAN2's custom ops, declared to graphsurgery: ``FusedBiasAct`` and ``UpFirDn2D``.

StyleGAN2's released graphs carry the CUDA ops ``FusedBiasAct`` and ``UpFirDn2D``, which
TensorFlow does not know. Registered with :func:`graphsurgery.ir.customops.register_custom_op`
when the stylegan plugin package loads, each gets:

* a **shape function**, so shape inference knows their outputs;
* its **reference maths** (:mod:`graphsurgery.zoo.sgops`, standard TensorFlow ops), which
  the reference runner (:mod:`graphsurgery.reference`) splices in place of every node;
* the pass that **lowers** it to builtin ops: ``stylegan::lower_fused_bias_act``,
  ``stylegan::lower_upfirdn2d``.

Before (StyleGAN2 frozen graph, not runnable on a CPU)::

    y = UpFirDn2D(x [N*C, H, W, 1], k [4, 4], upx=2, upy=2, padx0=2, padx1=1, ...)

After (in the reference; ``y`` keeps its name and meaning)::

    y = Identity(y/reference/...)   # sgops.upfirdn2d_ref's Pad/Conv2D/Reshape subgraph
"""

from __future__ import annotations

from typing import Any

from graphsurgery.errors import GraphError
from graphsurgery.ir.customops import register_custom_op
from graphsurgery.ir.graph import Node
from graphsurgery.ir.shapes import UNKNOWN, TensorInfo, attr_dtype

FUSED_BIAS_ACT = "FusedBiasAct"
UPFIRDN2D = "UpFirDn2D"


# ---------------------------------------------------------------------------- shapes
def upfirdn2d_shape(node: Node, inputs: list[TensorInfo]) -> list[TensorInfo]:
    """``UpFirDn2D``: x ``[major, H, W, minor]``, kernel ``[kh, kw]``."""
    x = inputs[0] if inputs else UNKNOWN
    k = inputs[1] if len(inputs) > 1 else UNKNOWN
    dtype = x.dtype or attr_dtype(node)
    if x.shape is None or len(x.shape) != 4:
        return [TensorInfo(dtype, (-1, -1, -1, -1))]
    major, in_h, in_w, minor = x.shape
    kh, kw = k.shape if k.shape is not None and len(k.shape) == 2 else (-1, -1)

    def out(size: int, ksize: int, axis: str) -> int:
        if size < 0 or ksize < 0:
            return -1
        up = int(node.attr(f"up{axis}", 1) or 1)
        down = int(node.attr(f"down{axis}", 1) or 1)
        pad0 = int(node.attr(f"pad{axis}0", 0) or 0)
        pad1 = int(node.attr(f"pad{axis}1", 0) or 0)
        return max((size * up + pad0 + pad1 - ksize) // down + 1, 0)

    return [TensorInfo(dtype, (major, out(in_h, kh, "y"), out(in_w, kw, "x"), minor))]


def fused_bias_act_shape(node: Node, inputs: list[TensorInfo]) -> list[TensorInfo]:
    """``FusedBiasAct`` is elementwise: its output is like input 0."""
    x = inputs[0] if inputs else UNKNOWN
    return [TensorInfo(x.dtype or attr_dtype(node), x.shape)]


# ---------------------------------------------------------------------------- reference maths
def fused_bias_act_reference(node: Node, inputs: list[Any]) -> Any:
    """``FusedBiasAct(x, b, ref)``: ``act(x + b) * gain`` (sgops reference)."""
    from graphsurgery.zoo import sgops

    if node.attr("grad", 0):
        raise GraphError(f"{node.name}: FusedBiasAct with grad={node.attr('grad')} (a gradient)")
    code = int(node.attr("act", 1))
    if code not in sgops.ACT_NAMES:
        raise GraphError(f"{node.name}: unknown FusedBiasAct activation {code}")
    x = inputs[0]
    b = inputs[1] if len(inputs) > 1 else None
    if b is not None and b.shape.rank == 1 and b.shape[0] == 0:
        b = None
    return sgops.fused_bias_act_ref(
        x, b, axis=int(node.attr("axis", 1)), act=sgops.ACT_NAMES[code],
        # As the original op: an absent attribute takes its registered default (alpha 0,
        # gain 1), not the activation's usual value; frozen graphs carry all of them.
        alpha=node.attr("alpha", 0.0), gain=node.attr("gain", 1.0),
        clamp=node.attr("clamp", -1.0),  # StyleGAN2-ADA's op; < 0 (the default): none
    )


def upfirdn2d_reference(node: Node, inputs: list[Any]) -> Any:
    """``UpFirDn2D(x, k)`` on ``[major, H, W, minor]`` (sgops reference)."""
    from graphsurgery.zoo import sgops

    kwargs = {a: int(node.attr(a, 1 if a[:2] in ("up", "do") else 0)) for a in sgops.UPFIRDN_ATTRS}
    return sgops.upfirdn2d_ref(inputs[0], inputs[1], **kwargs)


register_custom_op(FUSED_BIAS_ACT, fused_bias_act_reference, shape=fused_bias_act_shape,
                   lowered_by="stylegan::lower_fused_bias_act")
register_custom_op(UPFIRDN2D, upfirdn2d_reference, shape=upfirdn2d_shape,
                   lowered_by="stylegan::lower_upfirdn2d")
