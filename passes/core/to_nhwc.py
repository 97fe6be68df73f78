"""``core::to_nhwc``: convert a whole NCHW graph to NHWC, with no transpose inside the network.

Design: layout assignment, then a single rewrite in topological order (no iterative
transpose pushing).

1. **Link.** Each op kind has a *layout handler* (the ``HANDLERS`` table). A handler says which
   of the op's rank-4 data inputs and outputs must share one layout (a *group*: the inputs and
   output of an element-wise op, the data input and output of a ``Conv2D``), and whether the
   op is natively NCHW (a *seed*: ``data_format: NCHW``). Groups are merged with union-find
   over tensors; constants are never merged (each use gets the constant in the layout it
   needs).
2. **Decide.** Every component that holds a seed is converted: its tensors will be stored
   NHWC (``transpose(nchw, [0, 2, 3, 1])``). Everything else keeps its layout, so a graph
   with no NCHW op is left alone (the pass is idempotent).
3. **Rewrite.** Nodes are visited once, in topological order. A handler rewrites its node for
   the decided layouts (``data_format``, strides/dilations/ksize, reduction axes, reshape
   targets, paddings, slice specs, tile multiples, concat/split axes, permuted constants...)
   and records the layout each output actually has. A consumer asks for each input in the
   layout it needs; when the producer could not deliver it, a conversion is inserted: a
   ``Reshape`` when the permutation only moves size-1 axes (``[1, C, 1, 1]`` <->
   ``[1, 1, 1, C]``, ``[1, 1, H, W]`` noise), otherwise an explicit ``Transpose``, reported in
   the pass log (INFO) with the node names (the *fallback*).

Op kinds with layout handlers: NCHW ``Conv2D``, ``DepthwiseConv2dNative``,
``Conv2DBackpropInput`` (``input_sizes`` permuted), ``BiasAdd``, ``MaxPool``/``AvgPool``/
``MaxPoolV2``, ``FusedBatchNorm*``, ``DepthToSpace``/``SpaceToDepth``; element-wise unary and
broadcasting binary/n-ary ops (lower-rank operands re-broadcast: a ``[C, 1, 1]`` constant
becomes ``[C]``, a non-constant one is reshaped); reductions (``Mean``, ``Sum``, ``Max``...,
``ArgMax``/``ArgMin``) with constant axes; ``Reshape``/``Squeeze``/``ExpandDims``; ``Tile``;
``Pad``/``PadV2``/``MirrorPad``; ``StridedSlice`` (masks permuted, ellipsis expanded);
``Slice``; ``ConcatV2``/``Concat``; ``Pack``/``Unpack``; ``Split``/``SplitV``; ``ReverseV2``;
``Transpose`` (permutations composed: an identity disappears, a size-1 move becomes a
``Reshape``); ``Shape`` (a ``Gather`` restores the NCHW order); ``Size``/``Rank``;
``Select``/``SelectV2``; ``BroadcastTo``; ``Fill`` and random ops (shape permuted: exact for
random ops only when the permutation is trivial, e.g. ``[1, 1, H, W]`` noise); ``Switch``/
``Merge``; ``Cast``/``Identity``/``IdentityN``. Ops without a handler (custom ops, rank-5/6
ops left by earlier passes, NHWC-only ops) keep their layout and get the fallback around them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphsurgery.ir import opdefs, proto
from graphsurgery.ir.attrs import Shape
from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

from ._layout import (
    IDENTITY,
    P_INV,
    POS,
    P,
    SliceSpec,
    canonical_strided_slice,
    compose,
    install_output,
    is_trivial,
    order_preserved,
    permute,
    reshape_compatible,
    static_target,
)

log = logging.getLogger("graphsurgery.passes.core.to_nhwc")

LAYOUTS = ("NCHW", "NHWC")


# =============================================================================== report
@dataclass
class Conversion:
    """A layout conversion the pass inserted: ``kind`` Transpose or Reshape, ``where`` one of
    ``input``/``output`` (the graph boundary) or ``inside`` (a fallback)."""

    node: str
    kind: str
    tensor: str
    consumer: str
    where: str


@dataclass
class Report:
    """What one run did (also logged at INFO level)."""

    converted_ops: list[str] = field(default_factory=list)  # NCHW ops now NHWC
    rewritten: int = 0  # nodes changed
    conversions: list[Conversion] = field(default_factory=list)
    removed_transposes: list[str] = field(default_factory=list)
    kept_transposes: list[str] = field(default_factory=list)  # the graph's own, not cancelled

    def transposes(self, where: str | None = None) -> list[Conversion]:
        return [c for c in self.conversions
                if c.kind == "Transpose" and (where is None or c.where == where)]

    @property
    def fallbacks(self) -> list[Conversion]:
        return self.transposes("inside")

    def lines(self) -> list[str]:
        out = [
            f"{len(self.converted_ops)} NCHW op(s) converted, {self.rewritten} node(s) "
            f"rewritten, {len(self.removed_transposes)} Transpose(s) cancelled, "
            f"{len(self.transposes('output')) + len(self.transposes('input'))} at the boundary, "
            f"{len(self.fallbacks)} fallback Transpose(s) inside the network"
        ]
        for c in self.fallbacks:
            out.append(f"fallback Transpose {c.node}: {c.tensor} -> {c.consumer}")
        for name in self.kept_transposes:
            out.append(f"Transpose {name} of the graph kept (its permutation does not cancel)")
        return out


# =============================================================================== handlers
@dataclass(frozen=True)
class Link:
    """Data inputs ``ins`` and output ports ``outs`` that share the op's layout; ``seed``:
    the op is natively NCHW and wants its group converted."""

    ins: tuple[int, ...]
    outs: tuple[int, ...]
    seed: bool = False
    pairs: bool = False  # input i shares its layout with output i only (IdentityN)


class Handler:
    """Layout handler of one or more op kinds. ``link`` declares the group; ``rewrite``
    changes the node for the decided layout ``c`` (True: its group is converted to NHWC).

    The default ``rewrite`` feeds group inputs in the group's layout (rank-4 tensors
    converted, lower-rank operands re-broadcast), every other input in its plain layout,
    calls :meth:`adapt` for attributes and dimension-list inputs, and records the outputs'
    layouts.
    """

    def link(self, cv: _Converter, node: Node) -> Link | None:
        return None

    def adapt(self, cv: _Converter, node: Node, inputs: list[TensorRef]) -> None:
        """Change attributes/inputs of a node whose group is converted (``inputs`` in place)."""

    def rewrite(self, cv: _Converter, node: Node, link: Link | None, c: bool) -> None:
        inputs = []
        for i, t in enumerate(node.data_inputs):
            if link is not None and i in link.ins:
                inputs.append(cv.operand(t, c, node))
            else:
                inputs.append(cv.get(t, False, node))
        if link is not None and c:
            self.adapt(cv, node, inputs)
        cv.set_inputs(node, inputs)
        for port in cv.ports(node):
            cv.set_layout(node.output(port), bool(link and c and port in link.outs))


HANDLERS: dict[str, Handler] = {}


def handles(*ops: str) -> Callable[[type[Handler]], type[Handler]]:
    def deco(cls: type[Handler]) -> type[Handler]:
        inst = cls()
        for op in ops:
            HANDLERS[op] = inst
        return cls

    return deco


UNARY = (
    "Identity", "Snapshot", "StopGradient", "PreventGradient", "CheckNumerics", "Cast",
    "Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Tanh", "Sigmoid", "Softplus", "Softsign",
    "Neg", "Abs", "Square", "Sqrt", "Rsqrt", "Exp", "Expm1", "Log", "Log1p", "Reciprocal",
    "Inv", "Floor", "Ceil", "Round", "Rint", "Sign", "Erf", "Erfc", "Sin", "Cos", "Tan",
    "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "IsNan", "IsInf",
    "IsFinite", "LogicalNot", "ZerosLike", "OnesLike", "ClipByValue", "Enter", "Exit",
)
BINARY = (
    "Add", "AddV2", "Sub", "Mul", "MulNoNan", "RealDiv", "Div", "DivNoNan", "TruncateDiv",
    "FloorDiv", "FloorMod", "Mod", "TruncateMod", "Maximum", "Minimum", "Pow",
    "SquaredDifference", "Atan2", "Xdivy", "Xlogy", "Xlog1py", "Greater", "GreaterEqual",
    "Less", "LessEqual", "Equal", "NotEqual", "LogicalAnd", "LogicalOr", "BitwiseAnd",
    "BitwiseOr", "BitwiseXor", "SelectV2", "AddN", "ApproximateEqual",
)


@handles(*UNARY, *BINARY)
class ElementWise(Handler):
    """Output and every input share the layout; inputs of lower rank are re-broadcast."""

    def link(self, cv: _Converter, node: Node) -> Link | None:
        if cv.rank(node.output()) != 4:
            return None
        ins = tuple(range(len(node.data_inputs)))
        if any(cv.rank(t) is None for t in node.data_inputs):
            return None
        return Link(ins, (0,))


@handles("Select")
class Select(ElementWise):
    """``Select`` v1: a rank-1 condition picks along the batch axis, which does not move."""

    def link(self, cv: _Converter, node: Node) -> Link | None:
        base = super().link(cv, node)
        if base is None:
            return None
        if cv.rank(node.data_inputs[0]) == 1:
            return Link((1, 2), (0,))
        return base


# NCHW-native ops: op -> (data input index, indices of 4-vector inputs in NCHW order)
NCHW_OPS: dict[str, tuple[int, tuple[int, ...]]] = {
    "Conv2D": (0, ()),
    "DepthwiseConv2dNative": (0, ()),
    "Conv2DBackpropInput": (2, (0,)),
    "BiasAdd": (0, ()),
    "MaxPool": (0, ()),
    "AvgPool": (0, ()),
    "MaxPoolV2": (0, (1, 2)),
    "FusedBatchNorm": (0, ()),
    "FusedBatchNormV2": (0, ()),
    "FusedBatchNormV3": (0, ()),
    "DepthToSpace": (0, ()),
    "SpaceToDepth": (0, ()),
}
_LIST_ATTRS = ("strides", "dilations", "ksize")


@handles(*NCHW_OPS)
class NCHWOp(Handler):
    """Ops with ``data_format``: NCHW ones are seeds and become NHWC."""

    def link(self, cv: _Converter, node: Node) -> Link | None:
        if node.attr("data_format", "NHWC") != "NCHW":
            return None
        data, _ = NCHW_OPS[node.op]
        return Link((data,), (0,), seed=True)

    def adapt(self, cv: _Converter, node: Node, inputs: list[TensorRef]) -> None:
        _, vectors = NCHW_OPS[node.op]
        cv.rw.set_attr(node, "data_format", "NHWC")
        for key in _LIST_ATTRS:
            value = node.attr(key)
            if isinstance(value, list) and len(value) == 4:
                cv.rw.set_attr(node, key, permute(value))
        pads = node.attr("explicit_paddings")
        if isinstance(pads, list) and len(pads) == 8:
            pairs = [pads[2 * i: 2 * i + 2] for i in range(4)]
            cv.rw.set_attr(node, "explicit_paddings", [v for p in permute(pairs) for v in p])
        for i in vectors:
            inputs[i] = cv.permute_vector(inputs[i], node)
        cv.report.converted_ops.append(node.name)


@handles("Mean", "Sum", "Max", "Min", "Prod", "All", "Any", "EuclideanNorm",
         "ArgMax", "ArgMin")
class Reduction(Handler):
    """Constant axes are remapped; without ``keep_dims`` the kept axes must keep their order."""

    def _axes(self, cv: _Converter, node: Node) -> list[int] | None:
        t = node.data_inputs[1]
        if cv.rank(node.data_inputs[0]) != 4 or not cv.graph.is_const(t):
            return None
        return sorted({int(a) % 4 for a in np.atleast_1d(cv.graph.const_value(t))})

    def link(self, cv: _Converter, node: Node) -> Link | None:
        axes = self._axes(cv, node)
        if axes is None:
            return None
        if node.attr("keep_dims", False):
            return Link((0,), (0,))
        if order_preserved([a for a in range(4) if a not in axes]):
            return Link((0,), ())
        return None

    def adapt(self, cv: _Converter, node: Node, inputs: list[TensorRef]) -> None:
        t = node.data_inputs[1]
        value = cv.graph.const_value(t)
        new = np.array(sorted(POS[int(a) % 4] for a in np.atleast_1d(value)), value.dtype)
        inputs[1] = cv.const(new.reshape(value.shape), f"{node.name}/axes_nhwc")


@handles("Tile")
class Tile(Handler):
    def link(self, cv: _Converter, node: Node) -> Link | None:
        return Link((0,), (0,)) if cv.rank(node.output()) == 4 else None

    def adapt(self, cv: _Converter, node: Node, inputs: list[TensorRef]) -> None:
        inputs[1] = cv.permute_vector(inputs[1], node)


@handles("BroadcastTo")
class BroadcastTo(Tile):
    pass


@handles("Pad", "PadV2", "MirrorPad")
class Pad(Handler):
    def link(self, cv: _Converter, node: Node) -> Link | None:
        return Link((0,), (0,)) if cv.rank(node.output()) == 4 else None

    def adapt(self, cv: _Converter, node: Node, inputs: list[TensorRef]) -> None:
        inputs[1] = cv.permute_vector(inputs[1], node)  # rows of the [4, 2] paddings


@handles("Slice")
class Slice(Handler):
    def link(self, cv: _Converter, node: Node) -> Link | None:
        return Link((0,), (0,)) if cv.rank(node.output()) == 4 else None

    def adapt(self, cv: _Converter, node: Node, inputs: list[TensorRef]) -> None:
        inputs[1] = cv.permute_vector(inputs[1], node)
        inputs[2] = cv.permute_vector(inputs[2], node)


@handles("ReverseV2")
class Reverse(Handler):
    def link(self, cv: _Converter, node: Node) -> Link | None:
        ok = cv.rank(node.output()) == 4 and cv.graph.is_const(node.data_inputs[1])
        return Link((0,), (0,)) if ok else None

    def adapt(self, cv: _Converter, node: Node, inputs: list[TensorRef]) -> None:
        value = cv.graph.const_value(node.data_inputs[1])
        new = np.array([POS[int(a) % 4] for a in value.reshape(-1)], value.dtype)
        inputs[1] = cv.const(new.reshape(value.shape), f"{node.name}/axis_nhwc")


@handles("StridedSlice")
class StridedSlice(Handler):
    """Begin/end/strides and the mask bits are permuted (an ellipsis is expanded first)."""

    def _spec(self, cv: _Converter, node: Node) -> SliceSpec | None:
        t = node.data_inputs
        if cv.rank(t[0]) != 4 or not all(cv.graph.is_const(x) for x in t[1:4]):
            return None
        return canonical_strided_slice(
            *(cv.graph.const_value(x).reshape(-1).tolist() for x in t[1:4]),
            rank=4,
            begin_mask=node.attr("begin_mask", 0),
            end_mask=node.attr("end_mask", 0),
            ellipsis_mask=node.attr("ellipsis_mask", 0),
            new_axis_mask=node.attr("new_axis_mask", 0),
            shrink_axis_mask=node.attr("shrink_axis_mask", 0),
        )

    def link(self, cv: _Converter, node: Node) -> Link | None:
        spec = self._spec(cv, node)
        if spec is None:
            return None
        if not any(spec.shrink):
            return Link((0,), (0,))
        if order_preserved([a for a in range(4) if not spec.shrink[a]]):
            return Link((0,), ())
        return None

    def adapt(self, cv: _Converter, node: Node, inputs: list[TensorRef]) -> None:
        spec = self._spec(cv, node)
        assert spec is not None
        new = spec.permuted(P)
        dtype = cv.graph.const_value(node.data_inputs[1]).dtype
        for i, (key, values) in enumerate(
            (("begin", new.begin), ("end", new.end), ("strides", new.strides)), start=1
        ):
            inputs[i] = cv.const(np.array(values, dtype), f"{node.name}/{key}_nhwc")
        cv.rw.set_attr(node, "begin_mask", SliceSpec.mask(new.begin_mask))
        cv.rw.set_attr(node, "end_mask", SliceSpec.mask(new.end_mask))
        cv.rw.set_attr(node, "shrink_axis_mask", SliceSpec.mask(new.shrink))
        cv.rw.set_attr(node, "ellipsis_mask", 0)
        cv.rw.set_attr(node, "new_axis_mask", 0)


@handles("ConcatV2", "Concat")
class Concat(Handler):
    def _axis_index(self, node: Node) -> int:
        return 0 if node.op == "Concat" else len(node.data_inputs) - 1

    def link(self, cv: _Converter, node: Node) -> Link | None:
        ai = self._axis_index(node)
        if cv.rank(node.output()) != 4 or not cv.graph.is_const(node.data_inputs[ai]):
            return None
        ins = tuple(i for i in range(len(node.data_inputs)) if i != ai)
        return Link(ins, (0,))

    def adapt(self, cv: _Converter, node: Node, inputs: list[TensorRef]) -> None:
        ai = self._axis_index(node)
        inputs[ai] = cv.remap_axis(node.data_inputs[ai], node)


@handles("Split", "SplitV")
class Split(Handler):
    def _idx(self, node: Node) -> tuple[int, int]:  # (value, axis)
        return (1, 0) if node.op == "Split" else (0, 2)

    def link(self, cv: _Converter, node: Node) -> Link | None:
        vi, ai = self._idx(node)
        if cv.rank(node.data_inputs[vi]) != 4 or not cv.graph.is_const(node.data_inputs[ai]):
            return None
        return Link((vi,), tuple(range(int(node.attr("num_split", 1)))))

    def adapt(self, cv: _Converter, node: Node, inputs: list[TensorRef]) -> None:
        _, ai = self._idx(node)
        inputs[ai] = cv.remap_axis(node.data_inputs[ai], node)


@handles("IdentityN")
class IdentityN(Handler):
    """Each input shares its layout with the output of the same index."""

    def link(self, cv: _Converter, node: Node) -> Link | None:
        n = len(node.data_inputs)
        return Link(tuple(range(n)), tuple(range(n)), pairs=True)

    def rewrite(self, cv: _Converter, node: Node, link: Link | None, c: bool) -> None:
        inputs = []
        for i, t in enumerate(node.data_inputs):
            want = cv.conv(node.output(i))
            inputs.append(cv.get(t, want, node))
            cv.set_layout(node.output(i), want)
        cv.set_inputs(node, inputs)


@handles("Switch")
class Switch(Handler):
    def link(self, cv: _Converter, node: Node) -> Link | None:
        return Link((0,), (0, 1)) if cv.rank(node.data_inputs[0]) == 4 else None


@handles("Merge")
class Merge(Handler):
    def link(self, cv: _Converter, node: Node) -> Link | None:
        if cv.rank(node.output()) != 4:
            return None
        return Link(tuple(range(len(node.data_inputs))), (0,))


# ----------------------------------------------------------------- rank-changing handlers
def _shape_op_to_reshape(cv: _Converter, node: Node, x: TensorRef, target: list[int]) -> None:
    """Turn ``node`` (Reshape/Squeeze/ExpandDims) into ``Reshape(x, target)``, same name."""
    shape = cv.const(np.array(target, np.int32), f"{node.name}/shape_nhwc")
    x = cv.reshape_source(x)
    nd = proto.NodeDef(name=node.name, op="Reshape", device=node.device)
    nd.input.extend([x.input_string, shape.input_string])
    nd.input.extend(f"^{c}" for c in node.control_inputs)
    nd.attr["T"].type = int(cv.dtype(node.output()))
    nd.attr["Tshape"].type = int(DType.int32)
    if "_class" in node.proto.attr:
        nd.attr["_class"].CopyFrom(node.proto.attr["_class"])
    cv.replace_node_def(nd, node)


@handles("Reshape", "Squeeze", "ExpandDims")
class ReshapeLike(Handler):
    """A layout-compatible 4-D -> 4-D reshape links its two sides (the target is permuted);
    any other reshape absorbs a size-1-only permutation on either side into its target."""

    def link(self, cv: _Converter, node: Node) -> Link | None:
        if node.op != "Reshape":
            return None
        x, y = node.data_inputs[0], node.output()
        if cv.rank(x) == 4 and cv.rank(y) == 4 and reshape_compatible(cv.shape(x), cv.shape(y)):
            return Link((0,), (0,))
        return None

    def rewrite(self, cv: _Converter, node: Node, link: Link | None, c: bool) -> None:
        x, y = node.data_inputs[0], node.output()
        if link is not None:
            if not c:
                return Handler.rewrite(self, cv, node, link, c)
            shape = cv.get(node.data_inputs[1], False, node)
            cv.set_inputs(node, [cv.get(x, True, node), cv.permute_vector(shape, node)])
            cv.set_layout(y, True)
            return
        y_shape = cv.shape(y)
        target = static_target(y_shape)
        absorbed = False
        if (cv.layout(x) and cv.rank(x) == 4 and target is not None
                and is_trivial(permute(cv.shape(x)), P_INV)):
            src = cv.current(x)  # NHWC, but only size-1 axes moved: the reshape absorbs it
            absorbed = True
        else:
            src = cv.get(x, False, node)
        out_conv = bool(cv.conv(y) and target is not None and is_trivial(y_shape, P))
        if not out_conv and cv.conv(y) and target is not None and cv.rank(x) == 2 \
                and _dense_columns_to_nhwc(cv, src, y_shape):
            # [N, C*H*W] dense output -> [N, C, H, W]: its columns now come in (h, w, c)
            # order, so the same reshape gives NHWC directly (ProGAN's 4x4 block).
            _shape_op_to_reshape(cv, node, src, static_target(permute(y_shape)))
            cv.set_layout(y, True)
            return
        if out_conv:
            _shape_op_to_reshape(cv, node, src, static_target(permute(y_shape)))
        elif absorbed:
            _shape_op_to_reshape(cv, node, src, target)
        else:
            cv.set_inputs(node, [src, *[cv.get(t, False, node) for t in node.data_inputs[1:]]])
        cv.set_layout(y, out_conv)


#: Ops a dense layer's output may pass through before its reshape to NCHW: unary
#: element-wise ops, and binary ones with a constant scalar or per-column operand.
_COLUMNWISE_UNARY = frozenset({"Identity", "Relu", "Relu6", "LeakyRelu", "Elu", "Selu",
                               "Tanh", "Sigmoid", "Softplus", "Neg"})
_COLUMNWISE_BINARY = frozenset({"Add", "AddV2", "BiasAdd", "Sub", "Mul", "RealDiv",
                                "Maximum", "Minimum"})


def _dense_columns_to_nhwc(cv: _Converter, x: TensorRef, y_shape: Sequence[int]) -> bool:
    """Permute the columns of the constant-weight ``MatMul`` producing 2-D ``x`` (and of the
    per-column constants on the way) from NCHW ``(c, h, w)`` order to NHWC ``(h, w, c)``
    order, so that reshaping ``x`` to ``[N, H, W, C]`` gives the NHWC version of its
    reshape to ``y_shape = [N, C, H, W]``. Nothing changes unless the whole chain qualifies:
    every node used only by the next, ending at a ``MatMul`` with a constant weight.
    """
    _, c, h, w = y_shape
    if None in (c, h, w) or min(c, h, w) < 1:
        return False
    k = c * h * w
    order = np.arange(k).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    graph = cv.graph
    edits: list[tuple[Node, int, np.ndarray]] = []
    t = x
    for _ in range(16):
        node = graph.get(t.node)
        if node is None or t.port != 0 or graph.is_output(node.name) \
                or len(graph.consumers(t)) != 1:
            return False
        data = node.data_inputs
        if node.op == "MatMul" and len(data) == 2 and graph.is_const(data[1]) \
                and not node.attr("transpose_a", False):
            wv = np.asarray(graph.const_value(data[1]))
            axis = 0 if node.attr("transpose_b", False) else 1
            if wv.ndim != 2 or wv.shape[axis] != k:
                return False
            edits.append((node, 1, np.ascontiguousarray(np.take(wv, order, axis=axis))))
            break
        if node.op in _COLUMNWISE_UNARY and len(data) == 1:
            t = data[0]
            continue
        if node.op in _COLUMNWISE_BINARY and len(data) == 2:
            consts = [i for i in (0, 1) if graph.is_const(data[i])]
            if len(consts) != 1 or (node.op == "BiasAdd" and consts != [1]):
                return False
            i = consts[0]
            v = np.asarray(graph.const_value(data[i]))
            if v.size != 1:
                if v.shape[-1] != k or v.size != k:
                    return False
                edits.append((node, i, np.ascontiguousarray(v[..., order])))
            t = data[1 - i]
            continue
        return False
    else:
        return False
    for node, i, value in edits:
        const = cv.const(value, f"{node.name}/nhwc_columns")
        inputs = list(node.data_inputs)
        inputs[i] = const
        cv.set_inputs(node, inputs)
    return True


@handles("Transpose")
class Transpose(Handler):
    """The node's permutation is composed with the layouts on both sides."""

    def rewrite(self, cv: _Converter, node: Node, link: Link | None, c: bool) -> None:
        x, y = node.data_inputs
        if cv.rank(x) != 4 or not cv.graph.is_const(y):
            return Handler.rewrite(self, cv, node, None, False)
        perm = tuple(int(p) for p in cv.graph.const_value(y))
        out = node.output()
        a = P if cv.layout(x) else IDENTITY
        b = P if cv.conv(out) else IDENTITY
        q = compose(a, perm, b)
        cur = cv.current(x)
        cur_shape = permute(cv.shape(x), a) if cv.shape(x) is not None else None
        if q == IDENTITY:
            cv.alias(out, cur, b == P)
            cv.report.removed_transposes.append(node.name)
            cv.dead.add(node.name)
            return
        target = static_target(permute(cv.shape(out), b)) if cv.shape(out) else None
        if target is not None and is_trivial(cur_shape, q):
            _shape_op_to_reshape(cv, node, cur, target)
            cv.report.removed_transposes.append(node.name)
        else:
            cv.set_inputs(node, [cur, cv.const(np.array(q, np.int32), f"{node.name}/perm_nhwc")
                                 if q != perm else y])
            cv.report.kept_transposes.append(node.name)
        cv.set_layout(out, b == P)


@handles("Shape")
class ShapeOp(Handler):
    """``Shape`` of an NHWC tensor, gathered back into NCHW order."""

    def rewrite(self, cv: _Converter, node: Node, link: Link | None, c: bool) -> None:
        x = node.data_inputs[0]
        if not (cv.layout(x) and cv.rank(x) == 4):
            return Handler.rewrite(self, cv, node, None, False)
        cv.set_inputs(node, [cv.current(x)])
        dtype = node.attr("out_type", DType.int32)
        gathered = cv.gather(node.output(), POS, dtype, f"{node.name}/nchw_order")
        cv.alias(node.output(), gathered, False)


@handles("Size", "Rank")
class LayoutFree(Handler):
    """The result does not depend on the layout."""

    def rewrite(self, cv: _Converter, node: Node, link: Link | None, c: bool) -> None:
        cv.set_inputs(node, [cv.current(node.data_inputs[0])])


@handles("Pack")
class Pack(Handler):
    """Rank-3 tensors packed into a rank-4 one: the new axis moves when the others keep
    their order."""

    def rewrite(self, cv: _Converter, node: Node, link: Link | None, c: bool) -> None:
        y = node.output()
        axis = int(node.attr("axis", 0)) % 4 if cv.rank(y) == 4 else None
        ok = (axis is not None and cv.conv(y)
              and order_preserved([a for a in range(4) if a != axis]))
        inputs = [cv.get(t, False, node) for t in node.data_inputs]
        cv.set_inputs(node, inputs)
        if ok:
            cv.rw.set_attr(node, "axis", POS[axis])
        cv.set_layout(y, bool(ok))


@handles("Unpack")
class Unpack(Handler):
    def rewrite(self, cv: _Converter, node: Node, link: Link | None, c: bool) -> None:
        x = node.data_inputs[0]
        axis = int(node.attr("axis", 0)) % 4 if cv.rank(x) == 4 else None
        if (axis is not None and cv.layout(x)
                and order_preserved([a for a in range(4) if a != axis])):
            cv.set_inputs(node, [cv.current(x)])
            cv.rw.set_attr(node, "axis", POS[axis])
        else:
            cv.set_inputs(node, [cv.get(x, False, node)])
        for port in cv.ports(node):
            cv.set_layout(node.output(port), False)


RANDOM_OPS = tuple(opdefs.RANDOM_OPS)  # random ops drawing a tensor of a given shape


@handles("Fill", *RANDOM_OPS)
class ShapedSource(Handler):
    """Ops that make a tensor of a given shape: the shape is permuted. For random ops only
    when the permutation moves size-1 axes alone (the same values in the same order)."""

    def rewrite(self, cv: _Converter, node: Node, link: Link | None, c: bool) -> None:
        y = node.output()
        dims = node.data_inputs[0]
        ok = cv.conv(y) and cv.rank(y) == 4 and cv.rank(dims) == 1
        if ok and node.op != "Fill":
            ok = is_trivial(cv.shape(y), P)
        inputs = [cv.get(t, False, node) for t in node.data_inputs]
        if ok:
            inputs[0] = cv.permute_vector(inputs[0], node)
        cv.set_inputs(node, inputs)
        cv.set_layout(y, bool(ok))


# =============================================================================== converter
class _Converter:
    def __init__(self, graph: Graph, rw: Rewriter, input_layout: str, output_layout: str):
        self.graph = graph
        self.orig = graph.copy()  # shapes and dtypes as they were (inputs may change layout)
        self.rw = rw
        self.input_layout = input_layout
        self.output_layout = output_layout
        self.info = graph.infer()
        self.report = Report()
        self.parent: dict[TensorRef, TensorRef] = {}
        self.seeded: set[TensorRef] = set()
        self.links: dict[str, Link] = {}
        # original tensor -> (tensor that now holds its value, stored NHWC?)
        self.value: dict[TensorRef, tuple[TensorRef, bool]] = {}
        self.cache: dict[tuple[Any, ...], TensorRef] = {}
        self.dead: set[str] = set()
        self.orig_inputs: set[str] = set()
        self.inputs = set(graph.inputs)

    # ------------------------------------------------------------------ facts
    def shape(self, t: TensorRef) -> tuple[int, ...] | None:
        """The static shape of original tensor ``t`` in its original layout."""
        known = self.orig.static_shape(t)
        if known is not None:
            return known
        info = self.info.get(t)
        return None if info is None else info.shape

    def rank(self, t: TensorRef) -> int | None:
        s = self.shape(t)
        return None if s is None else len(s)

    def dtype(self, t: TensorRef) -> DType:
        dt = self.orig.dtype(t) if t.node in self.orig else self.graph.dtype(t)
        if dt is None:
            info = self.info.get(t)
            dt = info.dtype if info is not None else None
        return dt if dt is not None else DType.float32

    def ports(self, node: Node) -> range:
        return range(max(self.graph.num_outputs_used(node.name), 1))

    # ------------------------------------------------------------------ union-find
    def find(self, t: TensorRef) -> TensorRef:
        root = t
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while t != root:
            self.parent[t], t = root, self.parent.get(t, t)
        return root

    def union(self, a: TensorRef, b: TensorRef) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb
            if ra in self.seeded:
                self.seeded.add(rb)

    def conv(self, t: TensorRef) -> bool:
        """The decided layout of original tensor ``t``: True when it is to be NHWC."""
        return self.rank(t) == 4 and not self.graph.is_const(t) and self.find(t) in self.seeded

    def members(self, node: Node, link: Link) -> list[TensorRef]:
        if link.pairs:
            return [node.output(p) for p in link.outs if self.rank(node.output(p)) == 4]
        out = [t for i, t in enumerate(node.data_inputs)
               if i in link.ins and self.rank(t) == 4 and not self.graph.is_const(t)]
        out += [node.output(p) for p in link.outs if self.rank(node.output(p)) == 4]
        return out

    # ------------------------------------------------------------------ values
    def layout(self, t: TensorRef) -> bool:
        return self.value.get(t, (t, False))[1]

    def current(self, t: TensorRef) -> TensorRef:
        return self.value.get(t, (t, False))[0]

    def set_layout(self, t: TensorRef, converted: bool) -> None:
        self.value[t] = (t, converted)

    def alias(self, t: TensorRef, cur: TensorRef, converted: bool) -> None:
        self.value[t] = (cur, converted)

    def remapped(self, t: TensorRef) -> bool:
        return self.value.get(t, (t, False)) != (t, False)

    def reshape_source(self, t: TensorRef) -> TensorRef:
        """The tensor a chain of reshapes starts from: ``reshape(reshape(x, a), b)`` is
        ``reshape(x, b)``, so a new reshape may read ``x`` directly."""
        seen = 0
        while seen < 16:
            node = self.graph.get(t.node)
            if node is None or node.op not in _PURE_RESHAPES or t.port != 0:
                break
            t = node.data_inputs[0]
            seen += 1
        return t

    def const(self, value: np.ndarray, name: str) -> TensorRef:
        """A new Const; small ones (axes, shapes, paddings) are shared by value."""
        value = np.asarray(value)
        if value.size > 64:
            return self.rw.const(value, name=name).output()
        key = ("const", value.dtype.str, value.shape, value.tobytes())
        if key not in self.cache or self.cache[key].node not in self.graph:
            self.cache[key] = self.rw.const(value, name=name).output()
        return self.cache[key]

    def set_inputs(self, node: Node, inputs: Sequence[TensorRef]) -> None:
        old = node.data_inputs
        if list(inputs) != old:
            self.orig_inputs.update(t.node for t in old)
            self.rw.set_inputs(node, list(inputs))

    def replace_node_def(self, nd: Any, node: Node) -> None:
        self.orig_inputs.update(t.node for t in node.data_inputs)
        self.rw.replace_node_def(nd)

    def get(self, t: TensorRef, want: bool, consumer: Node | None = None,
            where: str | None = None) -> TensorRef:
        """Original tensor ``t`` in the layout ``want`` (True: NHWC), converting if needed."""
        cur, lay = self.value.get(t, (t, False))
        if lay == want or self.rank(t) != 4:
            return cur
        key = (t, want)
        if key in self.cache:
            return self.cache[key]
        if not lay and self.graph.is_const(cur):
            arr = self.graph.const_value(cur)
            ref = self.const(np.ascontiguousarray(np.transpose(arr, P)), f"{cur.node}/nhwc")
        else:
            if where is None:
                where = "input" if t in self.inputs else "inside"
            ref = self.convert(t, cur, lay, consumer.name if consumer else "", where)
        self.cache[key] = ref
        return ref

    def convert(self, t: TensorRef, cur: TensorRef, lay: bool, consumer: str,
                where: str) -> TensorRef:
        """A new node turning ``cur`` (``t`` stored NHWC when ``lay``) into the other layout:
        a Reshape when the permutation moves only size-1 axes, else a Transpose."""
        plain = self.shape(t)
        src_shape = permute(plain, P) if (lay and plain is not None) else plain
        perm = P_INV if lay else P
        dst_shape = plain if lay else (permute(plain, P) if plain is not None else None)
        target = static_target(dst_shape)
        suffix = "to_nchw" if lay else "to_nhwc"
        dtype = self.dtype(t)
        if target is not None and is_trivial(src_shape, perm):
            shape = self.const(np.array(target, np.int32), f"{t.node}/{suffix}/shape")
            node = self.rw.add_node("Reshape", [self.reshape_source(cur), shape],
                                    {"T": dtype, "Tshape": DType.int32},
                                    name=f"{t.node}/{suffix}")
            kind = "Reshape"
        else:
            p = self.const(np.array(perm, np.int32), f"{t.node}/{suffix}/perm")
            node = self.rw.add_node("Transpose", [cur, p], {"T": dtype, "Tperm": DType.int32},
                                    name=f"{t.node}/{suffix}")
            kind = "Transpose"
        self.report.conversions.append(Conversion(node.name, kind, str(t), consumer, where))
        return node.output()

    def operand(self, t: TensorRef, c: bool, consumer: Node) -> TensorRef:
        """Input ``t`` of a group whose layout is ``c``: rank-4 tensors in that layout,
        lower-rank operands re-broadcast for NHWC."""
        r = self.rank(t)
        if r == 4 or not c or not r:
            return self.get(t, c if r == 4 else False, consumer)
        key = (t, "bcast")
        if key in self.cache:
            return self.cache[key]
        cur = self.current(t)
        s = self.shape(t)
        expanded = (1,) * (4 - r) + tuple(s)
        target = permute(expanded)
        while len(target) > 1 and target[0] == 1:
            target = target[1:]
        if self.graph.is_const(cur):
            arr = self.graph.const_value(cur).reshape(expanded).transpose(P).reshape(target)
            ref = self.const(np.ascontiguousarray(arr), f"{cur.node}/nhwc")
        elif static_target(target) is not None and is_trivial(expanded, P):
            shape = self.const(np.array(static_target(target), np.int32),
                               f"{t.node}/nhwc_bcast/shape")
            ref = self.rw.add_node("Reshape", [self.reshape_source(cur), shape],
                                   {"T": self.dtype(t), "Tshape": DType.int32},
                                   name=f"{t.node}/nhwc_bcast").output()
        else:
            shape = self.const(np.array(static_target(expanded) or expanded, np.int32),
                               f"{t.node}/rank4/shape")
            r4 = self.rw.add_node("Reshape", [cur, shape],
                                  {"T": self.dtype(t), "Tshape": DType.int32},
                                  name=f"{t.node}/rank4").output()
            p = self.const(np.array(P, np.int32), f"{t.node}/nhwc_bcast/perm")
            node = self.rw.add_node("Transpose", [r4, p],
                                    {"T": self.dtype(t), "Tperm": DType.int32},
                                    name=f"{t.node}/nhwc_bcast")
            ref = node.output()
            self.report.conversions.append(
                Conversion(node.name, "Transpose", str(t), consumer.name, "inside"))
        self.cache[key] = ref
        return ref

    def permute_vector(self, t: TensorRef, node: Node) -> TensorRef:
        """A per-axis vector (or the rows of a [4, 2] paddings matrix) in NHWC order."""
        key = (t, "vec")
        if key in self.cache:
            return self.cache[key]
        producer = self.graph.get(t.node)
        if self.graph.is_const(t):
            arr = self.graph.const_value(t)
            ref = self.const(np.ascontiguousarray(arr[list(P)]), f"{t.node}/nhwc")
        elif (producer is not None and producer.op == "Pack" and t.port == 0
              and producer.attr("axis", 0) == 0 and len(producer.data_inputs) == 4):
            nd = proto.NodeDef()
            nd.CopyFrom(producer.proto)
            nd.name = self.graph.unique_name(f"{t.node}/nhwc")
            del nd.input[:]
            nd.input.extend(permute([x.input_string for x in producer.data_inputs]))
            ref = TensorRef(self.rw.replace_node_def(nd).name)
        else:
            ref = self.gather(t, P, self.dtype(t), f"{node.name}/{t.node.split('/')[-1]}_nhwc")
        self.cache[key] = ref
        return ref

    def gather(self, t: TensorRef, indices: Sequence[int], dtype: DType,
               name: str) -> TensorRef:
        idx = self.const(np.array(indices, np.int32), f"{name}/indices")
        axis = self.const(np.array(0, np.int32), f"{name}/axis")
        return self.rw.add_node(
            "GatherV2", [t, idx, axis],
            {"Tparams": dtype, "Tindices": DType.int32, "Taxis": DType.int32, "batch_dims": 0},
            name=name,
        ).output()

    def remap_axis(self, t: TensorRef, node: Node) -> TensorRef:
        value = self.graph.const_value(t)
        new = np.array(POS[int(value) % 4], value.dtype)
        return self.const(new, f"{node.name}/axis_nhwc")

    # ------------------------------------------------------------------ the pass
    def run(self) -> Report:
        graph = self.graph
        order = graph.toposort()
        for name in order:
            node = graph.node(name)
            handler = HANDLERS.get(node.op)
            link = handler.link(self, node) if handler is not None else None
            if link is None:
                continue
            self.links[name] = link
            if link.pairs:
                for i, t in enumerate(node.data_inputs):
                    o = node.output(i)
                    if self.rank(o) == 4 and self.rank(t) == 4 and not self.graph.is_const(t):
                        self.union(t, o)
                continue
            members = self.members(node, link)
            for m in members[1:]:
                self.union(members[0], m)
            if link.seed and members:
                self.seeded.add(self.find(members[0]))
        if not self.seeded:
            if self.output_layout == "NHWC":  # an NHWC graph may still end in NCHW
                self._graph_outputs()
                self.rw.erase_dead(self.dead - {t.node for t in graph.outputs})
            return self.report
        self.seeded = {r for r in self.seeded if self.find(r) == r}
        self._graph_inputs()
        for name in order:
            node = graph.node(name)
            if node.op in ("Const", "Placeholder") and not node.data_inputs:
                continue
            link = self.links.get(name)
            c = bool(link and any(self.conv(m) for m in self.members(node, link)))
            outs = [node.output(p) for p in self.ports(node)]
            if not c and not any(self.remapped(t) for t in node.data_inputs) and not any(
                self.conv(t) for t in outs
            ):
                continue
            handler = HANDLERS.get(node.op, _DEFAULT)
            handler.rewrite(self, node, link, c)
        self._graph_outputs()
        candidates = (self.orig_inputs | self.dead) - {t.node for t in graph.outputs}
        self.rw.erase_dead(candidates)
        self.report.rewritten = sum(v == "changed" for v in self.rw.changes.values())
        return self.report

    def _graph_inputs(self) -> None:
        for t in self.graph.inputs:
            node = self.graph.get(t.node)
            if node is None or node.op != "Placeholder" or not self.conv(t):
                continue
            if self.input_layout == "NHWC":
                self.rw.set_attr(node, "shape", Shape(tuple(permute(self.shape(t)))))
                self.set_layout(t, True)

    def _graph_outputs(self) -> None:
        for t in dict.fromkeys(self.graph.outputs):
            cur, lay = self.value.get(t, (t, False))
            if self.output_layout == "NHWC" and not lay:
                nhwc = self._nhwc_source(cur)
                if nhwc is not None:
                    cur, lay = nhwc, True
            want = lay if self.output_layout == "NHWC" else False
            if cur == t and lay == want:
                continue
            while (cur.port == 0 and self.graph.node(cur.node).op == "Identity"
                   and not self.graph.node(cur.node).control_inputs):
                cur = self.graph.node(cur.node).data_inputs[0]  # the boundary node replaces it
            if lay != want:
                final = self.convert(t, cur, lay, "graph output", "output")
            else:
                final = self.rw.add_node("Identity", [cur], {"T": self.dtype(t)},
                                         name=f"{t.node}/out").output()
            declared = install_output(self.graph, self.rw, t, final, suffix="nhwc")
            if lay != want:
                self.report.conversions[-1].node = declared.node


    def _nhwc_source(self, t: TensorRef) -> TensorRef | None:
        """The NHWC tensor that ``t`` is a 4-D ``Transpose([0, 3, 1, 2])`` of (through
        identities), the way an NHWC network hands out an NCHW image; else None."""
        node = self.graph.node(t.node)
        # (a SavedModel's output Identity waits on the captured constants: no ordering)
        while t.port == 0 and node.op == "Identity" and all(
                self.graph.node(c).op == "Const" for c in node.control_inputs):
            t = node.data_inputs[0]
            node = self.graph.node(t.node)
        if t.port != 0 or node.op != "Transpose" or self.rank(t) != 4:
            return None
        perm = node.data_inputs[1]
        if not self.graph.is_const(perm) or tuple(
                int(p) for p in self.graph.const_value(perm)) != P_INV:
            return None
        self.dead.add(node.name)
        self.report.removed_transposes.append(node.name)
        return node.data_inputs[0]


_DEFAULT = Handler()
_PURE_RESHAPES = ("Reshape", "Squeeze", "ExpandDims")


def convert(graph: Graph, rw: Rewriter, *, input_layout: str = "NCHW",
            output_layout: str = "NCHW") -> Report:
    """Run the conversion (what ``core::to_nhwc`` does) and return its :class:`Report`."""
    return _Converter(graph, rw, input_layout, output_layout).run()


@register_pass("core::to_nhwc")
class ToNHWC(Pass):
    """Convert the whole graph from NCHW to NHWC so that no Transpose remains inside it.

    Every NCHW op (Conv2D, DepthwiseConv2dNative, Conv2DBackpropInput, BiasAdd, pools,
    FusedBatchNorm, DepthToSpace/SpaceToDepth) becomes NHWC and the layout is propagated
    through every op around it by per-op layout handlers (element-wise broadcasts,
    reductions, reshapes, tiles, pads, slices, concats, transposes...). Where an op cannot
    follow, an explicit Transpose is kept and reported (INFO). ``output_layout=NCHW`` keeps
    the interface with one Transpose per 4-D output; ``NHWC`` declares NHWC outputs instead
    (likewise ``input_layout`` for 4-D graph inputs). An output that the network itself
    transposes from NHWC to NCHW (``Transpose([0,3,1,2])``, as TF2 ports hand out their
    image) is delivered without that Transpose under ``output_layout=NHWC``.

    Before::

        x -> Conv2D(NCHW) -> Add(b: [1,C,1,1]) -> Mean(axes [2,3], keep_dims) -> Sub -> y

    After::

        x -> Conv2D(NHWC) -> Add(b: [C]) -> Mean(axes [1,2], keep_dims) -> Sub
          -> Transpose([0,3,1,2]) -> y        (output_layout=NHWC: no Transpose)
    """

    infers_shapes = True

    output_layout = Option(LAYOUTS, "NCHW", "layout of the 4-D graph outputs")
    input_layout = Option(LAYOUTS, "NCHW", "layout of the 4-D graph inputs")

    @property
    def changes_interface(self) -> bool:  # type: ignore[override]
        return self.output_layout == "NHWC" or self.input_layout == "NHWC"

    def run(self, graph: Graph, rw: Rewriter) -> None:
        report = convert(graph, rw, input_layout=self.input_layout,
                         output_layout=self.output_layout)
        self.report = report
        if report.converted_ops or report.conversions:
            for line in report.lines():
                log.info("core::to_nhwc: %s", line)
