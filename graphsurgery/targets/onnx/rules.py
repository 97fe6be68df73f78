"""The ONNX target's rules: one small function per rule, shared by the lint and the audit.

A graph is ONNX-clean (``targets.md``) when the converted ``model.onnx`` has:

* ``ai-onnx-domain``: nodes of the standard ``ai.onnx`` domain only (no custom domains);
* ``static-shapes``: every input, output and inferred intermediate tensor has a static shape;
* ``no-random``: no ``RandomNormal``/``RandomUniform``/``Multinomial``/``Bernoulli``...;
* ``no-inner-transpose``: no ``Transpose`` inside the network (one reading a graph input or
  writing a graph output is tolerated);
* ``constant-weights``: every ``Conv``/``ConvTranspose``/``Gemm`` weight (and bias) is an
  initializer, not a tensor computed at run time;
* ``runs-in-onnxruntime``: the model loads in onnxruntime (CPU).

:func:`lint` checks the GraphDef before conversion (``graphsurgery check --target onnx``)
with the same ids; :func:`audit_model` checks an ``onnx.ModelProto``::

    for line in audit_model(onnx.load("out/model.onnx")):
        print(line)   # no-inner-transpose: node 'Transpose__12' (Transpose) inside the network
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...ir import opdefs
from ...ir.graph import Graph, Node
from ..base import Finding, Rule

RULES: tuple[Rule, ...] = (
    Rule("ai-onnx-domain", "standard ai.onnx domain only: no custom-domain ops",
         fixed_by="a plugin pass lowering the op (StyleGAN's: stylegan::lower_fused_bias_act, "
                  "stylegan::lower_upfirdn2d; preset stylegan-to-onnx)"),
    Rule("static-shapes", "every input, output and intermediate tensor has a static shape",
         fixed_by="--inputs NAME:[dims], core::set_batch"),
    Rule("no-random", "no random ops: noise is a constant or a model input",
         fixed_by="stylegan::noise (preset stylegan-to-onnx)"),
    Rule("no-inner-transpose", "no Transpose inside the network (one at an input/output "
                               "boundary is tolerated)",
         fixed_by="preset stylegan-to-onnx (keeps NCHW)"),
    Rule("constant-weights", "every Conv/ConvTranspose/Gemm weight and bias is an initializer",
         fixed_by="stylegan::unfuse_modconv (preset stylegan-to-onnx)"),
    Rule("runs-in-onnxruntime", "the model loads and runs in onnxruntime (CPU)"),
    Rule("no-host-ops", "no op that acts on this machine (file I/O, Python calls, printing)",
         fixed_by="core::dce when the outputs do not need it; otherwise cut it out"),
    Rule("no-training-ops", "no training leftovers (variables, Assign*, ref dtypes)",
         fixed_by="core::strip_training (preset generic)"),
)

#: ONNX ops that draw random numbers.
ONNX_RANDOM_OPS = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "Dropout",
})  # fmt: skip
#: ONNX ops whose input 1 (weight) and 2 (bias) must be initializers.
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm"})
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


# ------------------------------------------------------------------ lint (GraphDef)
def lint(graph: Graph) -> list[Finding]:
    """Every node of ``graph`` that would keep its ONNX conversion from being clean.

    Reads the graph only (TensorFlow's shape inference, never a kernel): custom ops,
    host ops, training leftovers, random ops, convolution/MatMul weights computed from a
    graph input, ``Transpose`` inside the network, and inputs of unknown shape.
    """
    from ..tflite.lint import Context, _weight_input, training_op

    ctx = Context.of(graph)
    found: list[Finding] = []

    def add(node: Node, rule_id: str, reason: str, severity: str = "error") -> None:
        found.append(Finding(node.name, node.op, reason, severity, rule_id))

    for node in graph.nodes():
        if node.name in ctx.host:
            add(node, "no-host-ops", f"{ctx.host[node.name]} (acts on this machine; "
                "graphsurgery never runs or converts it)")
        elif not opdefs.is_registered(node.op):
            add(node, "ai-onnx-domain", f"custom op {node.op!r} has no ai.onnx equivalent; "
                "lower it to standard ops first")
        elif opdefs.is_random(node):
            add(node, "no-random", "random op: make the noise a constant or a graph input")
        elif training_op(ctx, node) is not None:
            add(node, "no-training-ops", "training leftover (variable or its update): prune it")
        weight = _weight_input(node)
        if weight is not None and weight.node in ctx.runtime:
            add(node, "constant-weights", f"weight {weight.node!r} is computed at run time; "
                "ONNX Conv/Gemm want an initializer (x * s -> conv(const W) -> x * d)")
        if node.op == "Transpose":
            edge = bool(node.data_inputs) and node.data_inputs[0].node in ctx.input_nodes
            if not (edge or graph.is_output(node.name)):
                add(node, "no-inner-transpose", "Transpose inside the network; the ONNX "
                    "target keeps the original layout, so a rewrite should not need it",
                    "warning")
        if node.op in ("Placeholder", "PlaceholderV2") and node.name in ctx.input_nodes:
            shape = graph.static_shape(node.output(0))
            if shape is None or any(d < 0 for d in shape):
                add(node, "static-shapes", f"input of shape {shape}: give a static shape "
                    f"with --inputs {node.name}:[dims]", "warning")
    return found


# ------------------------------------------------------------------ audit (ModelProto)
#: An audit rule: (model, facts) -> violation details ("node 'x' (Op): why").
ModelRule = Callable[[Any], list[str]]


def standard_domain(model: Any) -> list[str]:
    """Nodes and opset imports outside the ``ai.onnx`` domain."""
    bad = [f"node {n.name!r} ({n.op_type}) in domain {n.domain!r}"
           for n in model.graph.node if n.domain not in STANDARD_DOMAINS]
    bad += [f"opset import of domain {o.domain!r}" for o in model.opset_import
            if o.domain not in STANDARD_DOMAINS]
    return bad


def _static(tensor_type: Any) -> bool:
    return tensor_type.HasField("shape") and all(
        d.HasField("dim_value") and d.dim_value >= 0 for d in tensor_type.shape.dim)


def static_shapes(model: Any) -> list[str]:
    """Inputs, outputs and (by ONNX shape inference) intermediate tensors of unknown shape."""
    import onnx

    bad = [f"{what} {v.name!r} has a dynamic or unknown shape"
           for what, vals in (("input", model.graph.input), ("output", model.graph.output))
           for v in vals if not _static(v.type.tensor_type)]
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:
        return [*bad, f"shape inference failed: {str(exc).splitlines()[0]}"]
    known = {v.name: v for v in inferred.graph.value_info}
    for node in model.graph.node:
        for out in node.output:
            v = known.get(out)
            if out and (v is None or not _static(v.type.tensor_type)):
                if out not in {o.name for o in model.graph.output}:
                    bad.append(f"tensor {out!r} of node {node.name!r} ({node.op_type}) has no "
                               "static shape")
    return bad


def no_random(model: Any) -> list[str]:
    """Random ops."""
    return [f"node {n.name!r} ({n.op_type})" for n in model.graph.node
            if n.op_type in ONNX_RANDOM_OPS]


def no_inner_transpose(model: Any) -> list[str]:
    """``Transpose`` nodes reading no graph input and writing no graph output."""
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    return [f"node {n.name!r} (Transpose) inside the network (an NHWC graph? the "
            "stylegan-to-onnx pipeline keeps NCHW)" for n in model.graph.node
            if n.op_type == "Transpose" and n.input[0] not in inputs
            and not outputs.intersection(n.output)]


def constant_weights(model: Any) -> list[str]:
    """``Conv``/``ConvTranspose``/``Gemm`` whose weight or bias is not an initializer."""
    inits = {i.name for i in model.graph.initializer}
    bad = []
    for n in model.graph.node:
        if n.op_type not in WEIGHTED_OPS:
            continue
        for port, what in ((1, "weight"), (2, "bias")):
            if len(n.input) > port and n.input[port] and n.input[port] not in inits:
                bad.append(f"node {n.name!r} ({n.op_type}) {what} {n.input[port]!r} is "
                           "computed at run time")
    return bad


def runs_in_onnxruntime(model: Any) -> list[str]:
    """The model fails to load in onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return ["onnxruntime is not installed (pip install 'graphsurgery[onnx]')"]
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        return [str(exc).splitlines()[0] if str(exc) else type(exc).__name__]
    return []


#: (rule id, function), in the order the audit reports them.
MODEL_RULES: tuple[tuple[str, ModelRule], ...] = (
    ("ai-onnx-domain", standard_domain),
    ("static-shapes", static_shapes),
    ("no-random", no_random),
    ("no-inner-transpose", no_inner_transpose),
    ("constant-weights", constant_weights),
    ("runs-in-onnxruntime", runs_in_onnxruntime),
)


def audit_model(model: Any) -> list[str]:
    """Every violation of the ONNX-clean rules, as ``"<rule id>: <detail>"`` lines."""
    return [f"{rid}: {detail}" for rid, fn in MODEL_RULES for detail in fn(model)]


__all__ = ["MODEL_RULES", "RULES", "audit_model", "lint"]
