"""``stylegan::lower_fused_bias_act``: StyleGAN2's ``FusedBiasAct`` custom op as builtin ops.

``FusedBiasAct(x, b, ref)`` (StyleGAN2) or ``FusedBiasAct(x, b, xref, yref)`` (StyleGAN2-ADA,
with a ``clamp`` attribute) computes, elementwise, ``clamp(act(x + b) * gain)`` with ``b``
broadcast along ``axis``. The semantics follow the CUDA kernel: ``act`` codes 1 linear,
2 relu, 3 lrelu (slope ``alpha``), 4 tanh, 5 sigmoid, 6 elu, 7 selu, 8 softplus,
9 swish, and 0 (the op's registered default) linear; an empty ``b`` adds nothing;
``clamp < 0`` does not clamp. Attributes absent from the NodeDef take the op's registered
defaults (``axis=1 act=0 alpha=0 gain=1 grad=0 clamp=-1``), as TensorFlow fills them in;
option ``missing_attrs=act`` instead takes the per-activation defaults of the Python
wrapper (lrelu alpha 0.2; gain sqrt(2) for relu/lrelu/swish), which is how graphsurgery's
reference runner reads such a node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphsurgery.errors import UsageError
from graphsurgery.ir import proto
from graphsurgery.ir.attrs import make_node_def
from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

#: ``act`` code -> (name, default alpha, default gain) of the original wrapper.
ACTS: dict[int, tuple[str, float, float]] = {
    0: ("linear", 0.0, 1.0),
    1: ("linear", 0.0, 1.0),
    2: ("relu", 0.0, math.sqrt(2.0)),
    3: ("lrelu", 0.2, math.sqrt(2.0)),
    4: ("tanh", 0.0, 1.0),
    5: ("sigmoid", 0.0, 1.0),
    6: ("elu", 0.0, 1.0),
    7: ("selu", 0.0, 1.0),
    8: ("softplus", 0.0, 1.0),
    9: ("swish", 0.0, math.sqrt(2.0)),
}
#: Registered defaults of the ``FusedBiasAct`` op's attributes.
OP_DEFAULTS: dict[str, Any] = {"axis": 1, "act": 0, "alpha": 0.0, "gain": 1.0, "grad": 0,
                               "clamp": -1.0}



def lower_fused_bias_act_node(graph: Graph, rw: Rewriter, node: Node, *,
                              missing_attrs: str = "op",
                              shape: Callable[[TensorRef], Any] | None = None) -> list[str]:
    """Replace one ``FusedBiasAct`` node; returns names that may have become dead.

    ``shape(tensor)`` gives static shapes (default :meth:`Graph.shape`, which re-runs
    shape inference after every change: pass a lookup taken once when lowering many).
    """
    name = node.name
    data = node.data_inputs
    if len(data) < 2:
        raise UsageError(f"{name}: FusedBiasAct needs inputs (x, b, ...), has {len(data)}")
    x, b = data[0], data[1]

    def attr(key: str) -> Any:
        return node.attr(key, None)

    grad = int(attr("grad") if attr("grad") is not None else 0)
    if grad != 0:
        raise UsageError(f"{name}: FusedBiasAct with grad={grad} is a gradient op; only the "
                         "forward op (grad=0) can be lowered")
    act = int(attr("act") if attr("act") is not None else OP_DEFAULTS["act"])
    if act not in ACTS:
        raise UsageError(f"{name}: unknown FusedBiasAct activation code act={act} "
                         f"(known: {sorted(ACTS)})")
    act_name, def_alpha, def_gain = ACTS[act]
    use_act = missing_attrs == "act"
    alpha = attr("alpha")
    alpha = float(alpha if alpha is not None else (def_alpha if use_act else 0.0))
    gain = attr("gain")
    gain = float(gain if gain is not None else (def_gain if use_act else 1.0))
    clamp = attr("clamp")
    clamp = float(clamp if clamp is not None else -1.0)
    axis = int(attr("axis") if attr("axis") is not None else 1)
    dtype = node.attr("T") or graph.dtype_hint(x) or DType.float32

    # Bias.
    bias_in: str | None = None
    bias_vec: np.ndarray | None = None
    if graph.is_const(b):
        bias_vec = np.asarray(graph.const_value(b))
        if bias_vec.ndim != 1:
            raise UsageError(f"{name}: FusedBiasAct bias must be 1-D, got {bias_vec.shape}")
        if bias_vec.size == 0:
            bias_vec = None
    else:
        bias_in = b.input_string
    rank: int | None = None
    if bias_vec is not None or bias_in is not None:
        xs = (shape or graph.shape)(x)
        rank = None if xs is None else len(xs)
        if rank is None:
            raise UsageError(f"{name}: rank of FusedBiasAct input {x} is unknown")
        if not 0 <= axis < rank:
            raise UsageError(f"{name}: FusedBiasAct axis {axis} out of range for rank {rank}")

    def emit(op: str, inputs: Sequence[str], suffix: str, **attrs: Any) -> str:
        new = rw.add_node(op, inputs, {"T": dtype, **attrs}, name=f"{name}/{suffix}")
        return new.output().input_string

    def scalar(value: float, suffix: str) -> str:
        return rw.const(np.asarray(value, dtype=dtype.numpy), name=f"{name}/{suffix}").name

    cur = x.input_string
    if bias_vec is not None:
        bshape = [1] * rank  # type: ignore[operator]
        bshape[axis] = -1
        if axis == rank - 1:  # type: ignore[operator]
            bshape = [-1]  # broadcasts as it is
        bc = rw.const(bias_vec.reshape(bshape).astype(dtype.numpy), name=f"{name}/bias")
        cur = emit("AddV2", [cur, bc.name], "add_bias")
    elif bias_in is not None:
        if axis != rank - 1:  # type: ignore[operator]
            bshape = [1] * rank  # type: ignore[operator]
            bshape[axis] = -1
            sc = rw.const(np.asarray(bshape, dtype=np.int32), name=f"{name}/bias_shape")
            bias_in = emit("Reshape", [bias_in, sc.name], "bias_reshape", Tshape=DType.int32)
        cur = emit("AddV2", [cur, bias_in], "add_bias")

    # Activation.
    simple = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "elu": "Elu",
              "selu": "Selu"}
    if act_name in simple:
        cur = emit(simple[act_name], [cur], act_name)
    elif act_name == "lrelu":
        cur = emit("LeakyRelu", [cur], "lrelu", alpha=alpha)
    elif act_name == "softplus":
        # max(x, 0) + log(1 + exp(-|x|)): no overflow for large x.
        pos = emit("Maximum", [cur, scalar(0.0, "zero")], "softplus_pos")
        t = emit("Abs", [cur], "softplus_abs")
        t = emit("Neg", [t], "softplus_neg")
        t = emit("Exp", [t], "softplus_exp")
        t = emit("AddV2", [t, scalar(1.0, "one")], "softplus_1p")
        t = emit("Log", [t], "softplus_log")
        cur = emit("AddV2", [pos, t], "softplus")
    elif act_name == "swish":
        cur = emit("Mul", [cur, emit("Sigmoid", [cur], "sigmoid")], "swish")

    if gain != 1.0:
        cur = emit("Mul", [cur, scalar(gain, "gain")], "gain")
    if clamp >= 0:
        cur = emit("Maximum", [cur, scalar(-clamp, "clamp_lo")], "clamp_min")
        cur = emit("Minimum", [cur, scalar(clamp, "clamp_hi")], "clamp")

    dead = [name, *(t.node for t in data)]
    ctrl = [f"^{c}" for c in node.control_inputs]
    if cur == x.input_string:  # linear, no bias, gain 1: the identity
        rw.replace_uses(node.output(), x, outputs=False)
        if graph.has_outside_uses(name):
            rw.replace_node_def(make_node_def(name, "Identity", [x.input_string, *ctrl],
                                              {"T": dtype}))
        return dead
    # The last op takes the node's name (its consumers and fetches keep working).
    last = TensorRef.parse(cur).node
    nd = proto.NodeDef()
    nd.CopyFrom(graph.node_def(last))
    nd.name = name
    nd.input.extend(ctrl)
    rw.erase(last)
    rw.replace_node_def(nd)
    return dead


@register_pass("stylegan::lower_fused_bias_act")
class LowerFusedBiasAct(Pass):
    """Lower StyleGAN2's ``FusedBiasAct`` custom op to bias add, activation and gain.

    ``FusedBiasAct(x, b, ref)`` becomes ``x + b`` (a constant ``b`` reshaped to broadcast
    along ``axis``: ``[1, C, 1, 1]`` for NCHW ``x``, ``[C]`` for ``[N, C]``), then the
    activation as builtin ops (``LeakyRelu(alpha)``, ``Relu``, ``Tanh``, ``Sigmoid``,
    ``Elu``, ``Selu``, a stable softplus, swish ``x * Sigmoid(x)``, nothing for linear),
    then ``Mul`` by a scalar constant when ``gain != 1``, then ``Maximum``/``Minimum`` when
    StyleGAN2-ADA's ``clamp >= 0``. The last op keeps the node's name. Unknown activation
    codes and gradient nodes (``grad != 0``) are errors.

    Before::

        y = FusedBiasAct(x[1,C,H,W], b[C], ref[0]) axis=1 act=3 alpha=0.2 gain=1.414

    After::

        a = AddV2(x, Const b[1,C,1,1])
        l = LeakyRelu(a, alpha=0.2)
        y = Mul(l, Const 1.414)
    """

    infers_shapes = True

    missing_attrs = Option(("op", "act"), "op",
                           "attributes absent from a node: the op's registered defaults "
                           "(op) or the per-activation defaults of the Python wrapper (act)")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        nodes = graph.nodes("FusedBiasAct")
        if not nodes:
            return
        info = graph.infer()

        def shape(t: TensorRef) -> tuple[int, ...] | None:
            ti = info.get(t)
            return None if ti is None else ti.shape

        dead: list[str] = []
        for node in nodes:
            dead += lower_fused_bias_act_node(graph, rw, node, shape=shape,
                                              missing_attrs=self.missing_attrs)
        if dead:
            rw.erase_dead(dead)
