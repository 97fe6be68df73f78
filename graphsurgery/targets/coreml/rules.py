"""The Core ML target's rules, shared by the lint (GraphDef) and the audit (the ML Program).

* ``ml-program``: the artefact is an ML Program (``.mlpackage``), not a neural network;
* ``no-custom-layers``: no custom layer or custom op (coremltools writes one for an op it
  cannot express; Core ML then needs app code to run it);
* ``plain-modulation``: every ``conv``/``conv_transpose``/``linear``/``matmul`` weight is a
  constant, so StyleGAN2's modulation is ``x * s -> conv(const W) -> x * d``, not a grouped
  convolution over run-time weights (which divides input channels by weight channels);
* ``no-host-ops``/``no-training-ops``: lint only (the converter would refuse them).

::

    spec = ct.utils.load_spec("out/model.mlpackage")
    print(mil_ops(spec))          # {'conv': 14, 'mul': 30, ...}
    print(audit_spec(spec))       # [] when clean
"""

from __future__ import annotations

import collections
from typing import Any

from ...ir import opdefs
from ...ir.graph import Graph, Node
from ..base import Finding, Rule

RULES: tuple[Rule, ...] = (
    Rule("ml-program", "an ML Program (.mlpackage), not a neural network"),
    Rule("no-custom-layers", "no custom layers or custom ops",
         fixed_by="a plugin pass lowering the op (StyleGAN's: stylegan::lower_fused_bias_act, "
                  "stylegan::lower_upfirdn2d; preset stylegan-to-coreml)"),
    Rule("plain-modulation", "every conv/conv_transpose/linear/matmul weight is a constant "
                             "(modulation as multiply -> conv -> multiply)",
         fixed_by="stylegan::unfuse_modconv (preset stylegan-to-coreml)"),
    Rule("no-host-ops", "no op that acts on this machine (file I/O, Python calls, printing)",
         fixed_by="core::dce when the outputs do not need it; otherwise cut it out"),
    Rule("no-training-ops", "no training leftovers (variables, Assign*, ref dtypes)",
         fixed_by="core::strip_training (preset generic)"),
)

#: MIL ops whose ``weight`` (or ``y`` for matmul) must be a constant.
WEIGHTED_OPS = {"conv": "weight", "conv_transpose": "weight", "linear": "weight", "matmul": "y"}
#: MIL ops that produce a constant (plain, or decompressed when loaded).
CONST_OPS = ("const", "constexpr_")


# ------------------------------------------------------------------ lint (GraphDef)
def lint(graph: Graph) -> list[Finding]:
    """Every node of ``graph`` that keeps its Core ML conversion from being clean."""
    from ..tflite.lint import Context, _weight_input, training_op

    ctx = Context.of(graph, infer=False)
    found: list[Finding] = []

    def add(node: Node, rule_id: str, reason: str) -> None:
        found.append(Finding(node.name, node.op, reason, "error", rule_id))

    for node in graph.nodes():
        if node.name in ctx.host:
            add(node, "no-host-ops", f"{ctx.host[node.name]} (acts on this machine; "
                "graphsurgery never runs or converts it)")
        elif not opdefs.is_registered(node.op):
            add(node, "no-custom-layers", f"custom op {node.op!r} would need a Core ML custom "
                "layer; lower it to standard ops first")
        elif training_op(ctx, node) is not None:
            add(node, "no-training-ops", "training leftover (variable or its update): prune it")
        weight = _weight_input(node)
        if weight is not None and weight.node in ctx.runtime:
            add(node, "plain-modulation", f"weight {weight.node!r} is computed at run time "
                "(a modulated convolution): rewrite as x * s -> conv(const W) -> x * d "
                "(stylegan::unfuse_modconv)")
    return found


# ------------------------------------------------------------------ audit (Model spec)
def _operations(spec: Any) -> list[Any]:
    if spec.WhichOneof("Type") != "mlProgram":
        return []
    return [op for fn in spec.mlProgram.functions.values()
            for block in fn.block_specializations.values() for op in _walk(block)]


def _walk(block: Any) -> list[Any]:
    ops = []
    for op in block.operations:
        ops.append(op)
        for inner in op.blocks:
            ops.extend(_walk(inner))
    return ops


def mil_ops(spec: Any) -> dict[str, int]:
    """The MIL op histogram of an ML Program spec, sorted by op name."""
    return dict(sorted(collections.Counter(op.type for op in _operations(spec)).items()))


def ml_program(spec: Any) -> list[str]:
    """The model is not an ML Program."""
    kind = spec.WhichOneof("Type")
    return [] if kind == "mlProgram" else [f"model type {kind!r}, not an ML Program"]


def no_custom_layers(spec: Any) -> list[str]:
    """Custom layers (neural networks) and custom ops (ML Programs)."""
    bad = [f"op {_name(op)!r} ({op.type})" for op in _operations(spec)
           if op.type.startswith("custom") or op.type not in _known_mil_ops()]
    if spec.WhichOneof("Type") == "neuralNetwork":
        bad += [f"layer {layer.name!r} (custom)" for layer in spec.neuralNetwork.layers
                if layer.WhichOneof("layer") == "custom"]
    return bad


def plain_modulation(spec: Any) -> list[str]:
    """Weighted ops whose weight is computed at run time."""
    ops = _operations(spec)
    consts = {out.name for op in ops if op.type.startswith(CONST_OPS) for out in op.outputs}
    bad = []
    for op in ops:
        arg = WEIGHTED_OPS.get(op.type)
        if arg is None or arg not in op.inputs:
            continue
        for a in op.inputs[arg].arguments:
            if a.WhichOneof("binding") == "name" and a.name not in consts:
                bad.append(f"op {_name(op)!r} ({op.type}) {arg} {a.name!r} is computed at "
                           "run time")
    return bad


#: (rule id, function), in the order the audit reports them.
SPEC_RULES = (
    ("ml-program", ml_program),
    ("no-custom-layers", no_custom_layers),
    ("plain-modulation", plain_modulation),
)


def audit_spec(spec: Any) -> list[str]:
    """Every violation of the Core ML-clean rules, as ``"<rule id>: <detail>"`` lines."""
    return [f"{rid}: {detail}" for rid, fn in SPEC_RULES for detail in fn(spec)]


def _name(op: Any) -> str:
    return op.outputs[0].name if op.outputs else op.type


_KNOWN: frozenset[str] | None = None


def _known_mil_ops() -> frozenset[str]:
    """Every op type of coremltools' MIL op registry (any opset)."""
    global _KNOWN
    if _KNOWN is None:
        from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

        # core ops by name (each a table of opset versions); dialect ops are converter-internal
        names: set[str] = set(SSAOpRegistry.core_ops)
        _KNOWN = frozenset(names)
    return _KNOWN


__all__ = ["RULES", "audit_spec", "lint", "mil_ops"]
