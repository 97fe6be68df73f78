"""Lint a GraphDef for TFLite before converting it, and count its FLOPs.

:func:`lint_tflite` names every node that would keep the converted model from being
TFLite-clean (see ``targets.md``), with the reason and what to do about it::

    for b in lint_tflite(graph):
        print(b)            # error: node 'G/4x4/Conv/Conv2D' (Conv2D): TFLite has no NCHW ...

Errors block a clean conversion: NCHW layouts, custom ops TensorFlow does not know, ops
that act on the host (:func:`graphsurgery.ir.opdefs.side_effect`: ``ReadFile``,
``ImmutableConst``, ``WriteFile``, ``PrintV2``, ``PyFunc``..., and calls of functions holding
one), random ops, v1/functional control flow, training leftovers (variables, ``Assign*``,
ref dtypes), other stateful ops (queues), tensors of rank above 4, and convolutions or
``MatMul`` whose weights are computed at run time from a graph input. The lint reads the
graph and runs TensorFlow's shape inference, in which nodes acting on the host stand in as
placeholders; it never executes a node and never opens a file the graph names.
Warnings: ``Transpose`` nodes (a layout pass should remove them; one at an input/output
boundary is tolerated) and ops outside a curated list of TensorFlow ops with TFLite builtin
kernels (they may need Select TF ops).

Rank is checked from TensorFlow's shape inference (:meth:`Graph.infer`) when it is
available, and always from constants (``Reshape`` targets, ``Tile`` multiples, ``Pad``
paddings, placeholder shapes), so the lint works even where inference does not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import VerificationError
from .ir import opdefs
from .ir.dtypes import is_ref
from .ir.graph import Graph, Node
from .ir.names import TensorRef

log = logging.getLogger("graphsurgery.check")

# Ops whose data_format NCHW has no TFLite kernel (the converter either fails or wraps them
# in TRANSPOSEs). Any other op with an NCHW data_format is reported too.
CONV_OPS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3D")
RANDOM_OPS = frozenset({
    "RandomStandardNormal", "RandomUniform", "RandomUniformInt", "TruncatedNormal",
    "ParameterizedTruncatedNormal", "RandomShuffle", "RandomGamma", "RandomPoisson",
    "RandomPoissonV2", "Multinomial", "RandomCrop",
})  # fmt: skip
V1_CONTROL_FLOW = frozenset({
    "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond", "RefMerge", "RefEnter",
    "RefExit", "RefNextIteration", "RefSelect", "ControlTrigger",
})  # fmt: skip
FUNCTIONAL_CONTROL_FLOW = frozenset({
    "If", "StatelessIf", "While", "StatelessWhile", "Case", "StatelessCase",
})  # fmt: skip
TRAINING_OPS = frozenset({
    "Assign", "AssignAdd", "AssignSub", "AssignVariableOp", "AssignAddVariableOp",
    "AssignSubVariableOp", "VariableV2", "Variable", "VarHandleOp", "ReadVariableOp",
    "VarIsInitializedOp", "IsVariableInitialized", "RefSwitch", "RefIdentity",
    "SaveV2", "RestoreV2", "Save", "Restore", "SaveSlices", "RestoreSlice", "MergeV2Checkpoints",
    "ScatterUpdate", "ScatterAdd", "ScatterSub", "TemporaryVariable", "DestroyTemporaryVariable",
})  # fmt: skip
SHAPE_OPS = frozenset({"Shape", "ShapeN", "Size", "Rank"})
# Ops that are runtime inputs: a weight depending on one is not constant.
INPUT_OPS = frozenset({"Placeholder", "PlaceholderWithDefault", "PlaceholderV2"})

#: TensorFlow ops the TFLite converter lowers to builtin ops (curated, not exhaustive;
#: anything else is reported as a warning, not an error).
TFLITE_BUILTIN_TF_OPS = frozenset({
    # graph plumbing
    "Const", "Placeholder", "PlaceholderWithDefault", "Identity", "IdentityN", "NoOp",
    "StopGradient", "Snapshot", "PreventGradient", "CheckNumerics", "EnsureShape",
    # elementwise arithmetic
    "Add", "AddV2", "AddN", "Sub", "Mul", "Div", "RealDiv", "DivNoNan", "FloorDiv", "FloorMod",
    "Maximum", "Minimum", "Pow", "SquaredDifference", "Square", "Sqrt", "Rsqrt", "Exp", "Log",
    "Abs", "Neg", "Sin", "Cos", "Floor", "Ceil", "Round", "Sign", "Reciprocal", "ClipByValue",
    "Cast", "Tanh", "Sigmoid", "Relu", "Relu6", "LeakyRelu", "Elu", "Softmax",
    "LogSoftmax", "Softplus", "Erf", "IsFinite",
    # comparison and logic
    "Greater", "GreaterEqual", "Less", "LessEqual", "Equal", "NotEqual", "LogicalAnd",
    "LogicalOr", "LogicalNot", "Select", "SelectV2", "Where",
    # linear algebra and convolution
    "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3D", "MatMul",
    "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "BiasAdd", "MaxPool", "AvgPool",
    "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "L2Normalize", "LRN",
    # reductions
    "Mean", "Sum", "Max", "Min", "Prod", "Any", "All", "ArgMax", "ArgMin", "Cumsum",
    # shapes and data movement
    "Reshape", "Squeeze", "ExpandDims", "Transpose", "ConcatV2", "Concat", "Pack", "Unpack",
    "Split", "SplitV", "Slice", "StridedSlice", "Pad", "PadV2", "MirrorPad", "Tile", "Fill",
    "ZerosLike", "OnesLike", "Shape", "Rank", "Size", "BroadcastTo", "BroadcastArgs",
    "GatherV2", "Gather", "GatherNd", "ScatterNd", "Range", "ReverseV2", "OneHot", "TopKV2",
    "DepthToSpace", "SpaceToDepth", "BatchToSpaceND", "SpaceToBatchND", "ResizeBilinear",
    "ResizeNearestNeighbor", "MatrixDiag", "MatrixSetDiag", "SegmentSum", "Unique",
})  # fmt: skip


@dataclass(frozen=True)
class Blocker:
    """One problem on one node; ``severity`` is ``"error"`` (blocks) or ``"warning"``."""

    node: str
    op: str
    reason: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.severity}: node {self.node!r} ({self.op}): {self.reason}"


def lint_tflite(graph: Graph) -> list[Blocker]:
    """Every node that blocks (or may hinder) a TFLite-clean conversion, in graph order."""
    shapes = _inferred_shapes(graph)
    runtime = _runtime_nodes(graph)
    input_nodes = {t.node for t in graph.inputs}
    host = {e.node: e.reason for e in opdefs.side_effects(graph)}
    found: list[Blocker] = []
    for node in graph.nodes():
        found.extend(_lint_node(graph, node, shapes, runtime, input_nodes, host))
    return found


def check_tflite(graph: Graph) -> list[Blocker]:
    """:func:`lint_tflite`, raising VerificationError when any blocker is an error.

    Returns the warnings when there is no error.
    """
    blockers = lint_tflite(graph)
    errors = [b for b in blockers if b.severity == "error"]
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise VerificationError(
            f"{len(errors)} TFLite blocker(s): {errors[0]}{more}", [str(b) for b in blockers]
        )
    return blockers


def _lint_node(
    graph: Graph,
    node: Node,
    shapes: dict[TensorRef, Any] | None,
    runtime: dict[str, str],
    input_nodes: set[str],
    host: dict[str, str],
) -> list[Blocker]:
    op = node.op
    out: list[Blocker] = []

    def add(reason: str, severity: str = "error") -> None:
        out.append(Blocker(node.name, op, reason, severity))

    known = True  # in a category that already explains the node
    fmt = node.attr("data_format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if isinstance(fmt, str) and fmt.startswith("NC"):
        if op in CONV_OPS:
            add(f"TFLite has no {fmt} convolution; run a layout pass (NCHW -> NHWC)")
        else:
            add(f"TFLite has no {fmt} {op}; run a layout pass (NCHW -> NHWC)")

    if node.name in host:
        add(
            f"{host[node.name]} (side effects on this machine: graphsurgery never runs it, "
            "TFLite has no builtin for it); remove it from the inference graph"
        )
    elif not opdefs.is_registered(op):
        add(
            f"custom op {op!r} is unknown to TensorFlow and TFLite; lower it to standard ops "
            "(e.g. the reference form of UpFirDn2D/FusedBiasAct)"
        )
    elif op in RANDOM_OPS or op.startswith(("StatelessRandom", "StatelessTruncated")) or (
        op == "StatelessMultinomial"
    ):
        add("random op: make the noise a constant or a graph input (TFLite-clean has no RANDOM_*)")
    elif op in TRAINING_OPS or _has_ref_type(node) or opdefs.has_ref_input(op):
        add("training leftover (variable or its update; ref dtypes break import): prune it")
    elif op in V1_CONTROL_FLOW:
        add(
            "v1 control flow (tf.cond/while_loop): fold Switch/Merge with constant predicates "
            "before conversion; TFLite-clean has one subgraph"
        )
    elif op in FUNCTIONAL_CONTROL_FLOW:
        add("functional control flow becomes an IF/WHILE subgraph; TFLite-clean has one subgraph")
    elif op == "Assert":
        add("Assert is dropped by the converter; prune it (strip_training)", "warning")
    elif opdefs.is_stateful(op) and op not in TFLITE_BUILTIN_TF_OPS and op not in INPUT_OPS:
        add(
            "stateful op with side effects (I/O, printing, queues, iterators) has no TFLite "
            "builtin; remove it from the inference graph"
        )
    else:
        known = False

    rank = _high_rank(graph, node, shapes)
    if rank is not None:
        add(f"produces a rank-{rank} tensor; TFLite-clean tensors have rank <= 4")

    weight = _weight_input(node)
    if weight is not None and weight.node in runtime:
        src = graph.node(runtime[weight.node])
        what = "filter" if op != "MatMul" else "weight"
        add(
            f"{what} {weight.node!r} is computed at run time from {src.name!r} ({src.op}); "
            "XNNPACK needs a constant filter (rewrite as x * s -> conv(const W) -> x * d)"
        )

    if op == "Transpose":
        edge = node.data_inputs[0].node in input_nodes if node.data_inputs else False
        edge = edge or graph.is_output(node.name)
        where = "at the graph boundary" if edge else "inside the network"
        add(
            f"Transpose {where} becomes a TFLite TRANSPOSE; a layout pass should remove it "
            "(one at an input/output boundary is tolerated)",
            "warning",
        )
    elif not known and opdefs.is_registered(op) and op not in TFLITE_BUILTIN_TF_OPS:
        add(f"{op} is not a known TFLite builtin; it may need Select TF ops", "warning")
    return out


def _has_ref_type(node: Node) -> bool:
    for key in node.attr_names:
        value = node.proto.attr[key]
        kind = value.WhichOneof("value")
        if kind == "type" and is_ref(value.type):
            return True
        if kind == "list" and any(is_ref(t) for t in value.list.type):
            return True
    return False


def _weight_input(node: Node) -> TensorRef | None:
    """The filter/weight input of a convolution or MatMul."""
    ins = node.data_inputs
    if node.op in ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3D", "MatMul"):
        return ins[1] if len(ins) > 1 else None
    return None


def _runtime_nodes(graph: Graph) -> dict[str, str]:
    """Nodes whose value depends on a graph input (or a random op): node -> that source.

    ``Shape``-like ops stop the propagation: with the static input shapes the converter
    uses, a weight that depends on an input only through its shape folds to a constant.
    """
    sources = [n.name for n in graph.nodes(*INPUT_OPS)]
    sources += [t.node for t in graph.inputs]
    sources += [n.name for n in graph.nodes(*RANDOM_OPS)]
    users: dict[str, list[str]] = {}
    for node in graph.nodes():
        if node.op in SHAPE_OPS:
            continue  # static once the converter fixes the input shapes
        for ref in node.data_inputs:
            users.setdefault(ref.node, []).append(node.name)
    seen: dict[str, str] = {}
    for src in dict.fromkeys(sources):
        if src in seen or src not in graph:
            continue
        seen[src] = src
        stack = [src]
        while stack:
            n = stack.pop()
            for u in users.get(n, ()):
                if u not in seen:
                    seen[u] = src
                    stack.append(u)
    return seen


# ---------------------------------------------------------------------------- shapes
def _inferred_shapes(graph: Graph) -> dict[TensorRef, Any] | None:
    """TensorFlow's inferred shapes, or None when inference is unavailable or fails."""
    from .export.tflite import capture_output, import_tensorflow

    try:
        import_tensorflow()  # imported quietly; inference would import it noisily
        with capture_output(stdout=False):
            return graph.infer()
    except Exception as exc:  # inference is optional for the lint
        log.info("shape inference unavailable (%s); checking ranks from constants only", exc)
        return None


def _shape_of(graph: Graph, ref: TensorRef, shapes: dict[TensorRef, Any] | None) -> Any:
    static = graph.static_shape(ref)
    if static is not None:
        return static
    if shapes is None:
        return None
    info = shapes.get(ref)
    return None if info is None else getattr(info, "shape", None)


def _vector_len(graph: Graph, ref: TensorRef, shapes: dict[TensorRef, Any] | None) -> int | None:
    """Length of a 1-D shape-like tensor (``Reshape`` target, ``Tile`` multiples)."""
    if graph.is_const(ref):
        shape = graph.const_shape(ref.node)
        return shape[0] if len(shape) == 1 else None
    src = graph.get(ref.node)
    if src is not None and src.op == "Pack" and not src.attr("axis"):
        return len(src.data_inputs)
    shape = _shape_of(graph, ref, shapes)
    if shape is not None and len(shape) == 1 and shape[0] >= 0:
        return int(shape[0])
    return None


def _high_rank(graph: Graph, node: Node, shapes: dict[TensorRef, Any] | None) -> int | None:
    """The rank (> 4) of a tensor ``node`` produces, or None."""
    op = node.op
    if op == "Const":
        return None  # reported where a high-rank constant is used at run time
    ins = node.data_inputs
    rank: int | None = None
    if op in ("Reshape", "BroadcastTo", "Fill") and ins:
        idx = 0 if op == "Fill" else 1
        if len(ins) > idx:
            rank = _vector_len(graph, ins[idx], shapes)
    elif op == "Tile" and len(ins) > 1:
        rank = _vector_len(graph, ins[1], shapes)
    elif op in ("Pad", "PadV2", "MirrorPad") and len(ins) > 1:
        pads = _shape_of(graph, ins[1], shapes)
        rank = pads[0] if pads is not None and len(pads) == 2 and pads[0] >= 0 else None
    if rank is not None and rank > 4:
        return rank
    best = None
    for port in range(max(1, graph.num_outputs_used(node.name))):
        shape = _shape_of(graph, node.output(port), shapes)
        if shape is not None and len(shape) > 4:
            best = max(best or 0, len(shape))
    return best


# ---------------------------------------------------------------------------- FLOPs
def count_flops(graph: Graph) -> dict[str, Any]:
    """Convolution and matrix-multiply FLOPs (2 x multiply-accumulates) of one inference.

    Counted: ``Conv2D`` (out elements x kh x kw x filter in-channels, so grouped
    convolutions count per group), ``DepthwiseConv2dNative`` (out elements x kh x kw),
    ``Conv2DBackpropInput`` (``out_backprop`` elements x kh x kw x result channels),
    ``MatMul`` and ``BatchMatMul*`` (out elements x inner dimension). Not counted:
    elementwise ops, reductions, padding and zero taps. An unknown batch (-1) counts as 1;
    nodes whose shapes stay unknown are listed under ``unknown``.

    Returns ``{"conv": int, "matmul": int, "total": int, "nodes": {name: flops},
    "unknown": [names]}``.
    """
    graph = _batch_one(graph)
    shapes = _inferred_shapes(graph)
    result: dict[str, Any] = {"conv": 0, "matmul": 0, "total": 0, "nodes": {}, "unknown": []}
    for node in graph.nodes(*_FLOP_OPS):
        flops = _node_flops(graph, node, shapes)
        if flops is None:
            result["unknown"].append(node.name)
            continue
        kind = "matmul" if "MatMul" in node.op else "conv"
        result[kind] += flops
        result["nodes"][node.name] = flops
    result["total"] = result["conv"] + result["matmul"]
    return result


_FLOP_OPS = (
    "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MatMul", "BatchMatMul",
    "BatchMatMulV2", "BatchMatMulV3",
)  # fmt: skip


def _batch_one(graph: Graph) -> Graph:
    """A copy of ``graph`` whose placeholders have batch 1 where it was unknown.

    Shapes such as StyleGAN2's fused ``[1, N*C, H, W]`` are only static once the batch is.
    """
    fix = []
    for node in graph.nodes("Placeholder"):
        shape = graph.static_shape(node.output())
        if shape and shape[0] < 0:
            fix.append((node.name, (1, *shape[1:])))
    if not fix:
        return graph
    from .ir.attrs import Shape
    from .rewriter import Rewriter

    copy = graph.copy()
    rw = Rewriter(copy, "check::count_flops")
    for name, dims in fix:
        rw.set_attr(name, "shape", Shape(tuple(None if d < 0 else d for d in dims)))
        if "_output_shapes" in copy.node(name).attr_names:
            rw.del_attr(name, "_output_shapes")
    return copy


def _dims(shape: Iterable[int] | None, batch_axis: bool = True) -> list[int] | None:
    """Shape with an unknown leading (batch) dimension as 1; None if anything else is unknown."""
    if shape is None:
        return None
    dims = [int(d) for d in shape]
    if batch_axis and dims and dims[0] < 0:
        dims[0] = 1
    return None if any(d < 0 for d in dims) else dims


def _numel(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _node_flops(graph: Graph, node: Node, shapes: dict[TensorRef, Any] | None) -> int | None:
    ins = node.data_inputs
    if len(ins) < 2:
        return None
    op = node.op
    if op in ("Conv2D", "DepthwiseConv2dNative"):
        w = _dims(_shape_of(graph, ins[1], shapes), batch_axis=False)
        out = _dims(_shape_of(graph, node.output(), shapes))
        if w is None or out is None or len(w) != 4:
            return None
        per_out = w[0] * w[1] * (w[2] if op == "Conv2D" else 1)
        return 2 * _numel(out) * per_out
    if op == "Conv2DBackpropInput":
        w = _dims(_shape_of(graph, ins[1], shapes), batch_axis=False)
        dy = _dims(_shape_of(graph, ins[2], shapes)) if len(ins) > 2 else None
        if w is None or dy is None or len(w) != 4:
            return None
        return 2 * _numel(dy) * w[0] * w[1] * w[2]
    a = _dims(_shape_of(graph, ins[0], shapes))
    out = _dims(_shape_of(graph, node.output(), shapes))
    if a is None or out is None or len(a) < 2:
        return None
    if op == "MatMul":
        inner = a[0] if node.attr("transpose_a") else a[1]
    else:
        inner = a[-2] if node.attr("adj_x") else a[-1]
    return 2 * _numel(out) * inner
