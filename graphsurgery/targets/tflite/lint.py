"""The TFLite target's lint: every node that would keep a conversion from being TFLite-clean.

Each rule is a small function with an id (:data:`RULES`); a finding names the rule it breaks,
and the audit of the converted model reports violations of the same rules, so ``check``, the
audit and the report describe a problem alike (see ``targets.md``)::

    for f in lint(graph):
        print(f.rule, f)   # nhwc-layout error: node 'G/4x4/Conv/Conv2D' (Conv2D): TFLite has ...

Errors block a clean conversion: NCHW layouts, custom ops TensorFlow does not know, ops
that act on the host (:func:`graphsurgery.ir.opdefs.side_effect`: ``ReadFile``,
``ImmutableConst``, ``WriteFile``, ``PrintV2``, ``PyFunc``..., and calls of functions holding
one), random ops, v1/functional control flow, training leftovers (variables, ``Assign*``,
ref dtypes), other stateful ops (queues), tensors of rank above 4, and convolutions or
``MatMul`` whose weights are computed at run time from a graph input. The lint reads the
graph and runs TensorFlow's shape inference, in which nodes acting on the host stand in as
placeholders; it never executes a node and never opens a file the graph names.
Warnings: ``Transpose`` nodes (a layout pass should remove them; one at an input/output
boundary is tolerated), ``Assert`` and ops outside a curated list of TensorFlow ops with
TFLite builtin kernels (they may need Select TF ops).

Rank is checked from TensorFlow's shape inference (:meth:`Graph.infer`) when it is
available, and always from constants (``Reshape`` targets, ``Tile`` multiples, ``Pad``
paddings, placeholder shapes), so the lint works even where inference does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...check import inferred_shapes, shape_of
from ...ir import opdefs
from ...ir.dtypes import is_ref
from ...ir.graph import Graph, Node
from ...ir.names import TensorRef
from ..base import Finding, Rule

#: The TFLite-clean rules (targets.md). Lint findings and audit violations use these ids.
RULES: tuple[Rule, ...] = (
    Rule("builtins-only", "TFLite builtin ops only: no Flex (Select TF) ops, no custom ops",
         fixed_by="a plugin pass lowering the op (StyleGAN's: stylegan::lower_fused_bias_act, "
                  "stylegan::lower_upfirdn2d)"),
    Rule("one-subgraph", "one subgraph: no IF/WHILE (fold Switch/Merge before conversion)",
         fixed_by="core::fold_switch_merge (preset generic)"),
    Rule("no-random", "no RANDOM_* ops: noise is a constant or a model input",
         fixed_by="stylegan::noise (preset stylegan-to-tflite)"),
    Rule("rank<=4", "every tensor has rank <= 4 (GPU delegates and NPUs reject more)",
         fixed_by="stylegan::lower_upscale_6d, stylegan::lower_style_5d, "
                  "stylegan::raise_upfirdn2d_ref (preset stylegan-to-tflite)"),
    Rule("no-inner-transpose", "no TRANSPOSE inside the network (one per input/output "
                               "boundary is tolerated)",
         fixed_by="core::to_nhwc"),
    Rule("constant-weights", "every CONV_2D/DEPTHWISE_CONV_2D/TRANSPOSE_CONV/FULLY_CONNECTED "
                             "has a constant filter and bias (XNNPACK delegates it)",
         fixed_by="stylegan::unfuse_modconv (preset stylegan-to-tflite)"),
    Rule("runs-in-litert", "the model runs in the LiteRT interpreter with default delegates"),
    Rule("nhwc-layout", "no NCHW ops: TFLite has NHWC kernels only (run a layout pass)",
         fixed_by="core::to_nhwc"),
    Rule("no-host-ops", "no op that acts on this machine (file I/O, Python calls, printing)",
         fixed_by="core::dce when the outputs do not need it; otherwise cut it out"),
    Rule("no-training-ops", "no training leftovers (variables, Assign*, ref dtypes)",
         fixed_by="core::strip_training (preset generic)"),
    Rule("no-assert", "no Assert (the converter drops it)", "warning"),
)

# Ops whose data_format NCHW has no TFLite kernel (the converter either fails or wraps them
# in TRANSPOSEs). Any other op with an NCHW data_format is reported too.
CONV_OPS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3D")
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


@dataclass
class Context:
    """What the rules read besides the node: inferred shapes, run-time values, host ops."""

    graph: Graph
    shapes: dict[TensorRef, Any] | None
    runtime: dict[str, str]  # node -> the input (or random op) its value depends on
    input_nodes: set[str]
    host: dict[str, str]  # node -> why it acts on the host

    @classmethod
    def of(cls, graph: Graph, infer: bool = True) -> Context:
        """The facts of ``graph`` (inferred shapes only with ``infer``), for any target's
        lint."""
        return cls(graph, inferred_shapes(graph) if infer else None, _runtime_nodes(graph),
                   {t.node for t in graph.inputs},
                   {e.node: e.reason for e in opdefs.side_effects(graph)})


#: A rule: (context, node) -> (severity, reason) or None.
NodeRule = Callable[[Context, Node], "tuple[str, str] | None"]


def _error(reason: str) -> tuple[str, str]:
    return "error", reason


# ------------------------------------------------------------------ category rules
# A node falls in at most one category: the first of these rules that fires explains it.
def host_op(ctx: Context, node: Node) -> tuple[str, str] | None:
    if node.name not in ctx.host:
        return None
    return _error(f"{ctx.host[node.name]} (side effects on this machine: graphsurgery never "
                  "runs it, TFLite has no builtin for it); remove it from the inference graph")


def custom_op(ctx: Context, node: Node) -> tuple[str, str] | None:
    if opdefs.is_registered(node.op):
        return None
    return _error(f"custom op {node.op!r} is unknown to TensorFlow and TFLite; lower it to "
                  "standard ops (e.g. the reference form of UpFirDn2D/FusedBiasAct)")


def random_op(ctx: Context, node: Node) -> tuple[str, str] | None:
    if opdefs.is_random(node):  # the one op-category table
        return _error("random op: make the noise a constant or a graph input (TFLite-clean "
                      "has no RANDOM_*)")
    return None


def training_op(ctx: Context, node: Node) -> tuple[str, str] | None:
    if node.op in TRAINING_OPS or _has_ref_type(node) or opdefs.has_ref_input(node.op):
        return _error("training leftover (variable or its update; ref dtypes break import): "
                      "prune it")
    return None


def control_flow(ctx: Context, node: Node) -> tuple[str, str] | None:
    if node.op in V1_CONTROL_FLOW:
        return _error("v1 control flow (tf.cond/while_loop): fold Switch/Merge with constant "
                      "predicates before conversion; TFLite-clean has one subgraph")
    if node.op in FUNCTIONAL_CONTROL_FLOW:
        return _error("functional control flow becomes an IF/WHILE subgraph; TFLite-clean has "
                      "one subgraph")
    return None


def assert_op(ctx: Context, node: Node) -> tuple[str, str] | None:
    if node.op == "Assert":
        return "warning", "Assert is dropped by the converter; prune it (strip_training)"
    return None


def stateful_op(ctx: Context, node: Node) -> tuple[str, str] | None:
    op = node.op
    if opdefs.is_stateful(op) and op not in TFLITE_BUILTIN_TF_OPS and op not in INPUT_OPS:
        return _error("stateful op with side effects (I/O, printing, queues, iterators) has no "
                      "TFLite builtin; remove it from the inference graph")
    return None


#: (rule id, function), in the order that decides a node's category.
CATEGORY_RULES: tuple[tuple[str, NodeRule], ...] = (
    ("no-host-ops", host_op),
    ("builtins-only", custom_op),
    ("no-random", random_op),
    ("no-training-ops", training_op),
    ("one-subgraph", control_flow),
    ("no-assert", assert_op),
    ("builtins-only", stateful_op),
)


# ------------------------------------------------------------------ independent rules
def nchw_layout(ctx: Context, node: Node) -> tuple[str, str] | None:
    fmt = node.attr("data_format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if not (isinstance(fmt, str) and fmt.startswith("NC")):
        return None
    what = "convolution" if node.op in CONV_OPS else node.op
    return _error(f"TFLite has no {fmt} {what}; run a layout pass (NCHW -> NHWC)")


def high_rank(ctx: Context, node: Node) -> tuple[str, str] | None:
    rank = _high_rank(ctx.graph, node, ctx.shapes)
    if rank is None:
        return None
    return _error(f"produces a rank-{rank} tensor; TFLite-clean tensors have rank <= 4")


def runtime_weights(ctx: Context, node: Node) -> tuple[str, str] | None:
    weight = _weight_input(node)
    if weight is None or weight.node not in ctx.runtime:
        return None
    src = ctx.graph.node(ctx.runtime[weight.node])
    what = "filter" if node.op != "MatMul" else "weight"
    return _error(f"{what} {weight.node!r} is computed at run time from {src.name!r} "
                  f"({src.op}); XNNPACK needs a constant filter (rewrite as x * s -> "
                  "conv(const W) -> x * d)")


def inner_transpose(ctx: Context, node: Node) -> tuple[str, str] | None:
    if node.op != "Transpose":
        return None
    edge = node.data_inputs[0].node in ctx.input_nodes if node.data_inputs else False
    edge = edge or ctx.graph.is_output(node.name)
    where = "at the graph boundary" if edge else "inside the network"
    return "warning", (f"Transpose {where} becomes a TFLite TRANSPOSE; a layout pass should "
                       "remove it (one at an input/output boundary is tolerated)")


def not_builtin(ctx: Context, node: Node) -> tuple[str, str] | None:
    op = node.op
    if op == "Transpose" or not opdefs.is_registered(op) or op in TFLITE_BUILTIN_TF_OPS:
        return None
    return "warning", f"{op} is not a known TFLite builtin; it may need Select TF ops"


def lint(graph: Graph) -> list[Finding]:
    """Every node that blocks (or may hinder) a TFLite-clean conversion, in graph order."""
    ctx = Context.of(graph)
    found: list[Finding] = []
    for node in graph.nodes():
        found.extend(lint_node(ctx, node))
    return found


def lint_node(ctx: Context, node: Node) -> list[Finding]:
    """The findings on one node, in a fixed order: layout, category, rank, weights, and the
    Transpose / unknown-builtin warnings (the latter only for a node no category explains)."""
    out: list[Finding] = []

    def add(rule_id: str, hit: tuple[str, str] | None) -> bool:
        if hit is not None:
            out.append(Finding(node.name, node.op, hit[1], hit[0], rule_id))
        return hit is not None

    add("nhwc-layout", nchw_layout(ctx, node))
    known = any(add(rid, fn(ctx, node)) for rid, fn in CATEGORY_RULES)
    add("rank<=4", high_rank(ctx, node))
    add("constant-weights", runtime_weights(ctx, node))
    if not add("no-inner-transpose", inner_transpose(ctx, node)) and not known:
        add("builtins-only", not_builtin(ctx, node))
    return out


# ------------------------------------------------------------------ helpers
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
    sources += [n.name for n in graph.nodes() if opdefs.is_random(n)]
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


def _vector_len(graph: Graph, ref: TensorRef, shapes: dict[TensorRef, Any] | None) -> int | None:
    """Length of a 1-D shape-like tensor (``Reshape`` target, ``Tile`` multiples)."""
    if graph.is_const(ref):
        shape = graph.const_shape(ref.node)
        return shape[0] if len(shape) == 1 else None
    src = graph.get(ref.node)
    if src is not None and src.op == "Pack" and not src.attr("axis"):
        return len(src.data_inputs)
    shape = shape_of(graph, ref, shapes)
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
        pads = shape_of(graph, ins[1], shapes)
        rank = pads[0] if pads is not None and len(pads) == 2 and pads[0] >= 0 else None
    if rank is not None and rank > 4:
        return rank
    best = None
    for port in range(max(1, graph.num_outputs_used(node.name))):
        shape = shape_of(graph, node.output(port), shapes)
        if shape is not None and len(shape) > 4:
            best = max(best or 0, len(shape))
    return best
