"""Lint a GraphDef for a target before converting it, and count its FLOPs.

:func:`lint` asks a target (:mod:`graphsurgery.targets`) for every node that would keep the
converted model from being clean, with the rule it breaks, the reason and what to do::

    for f in lint(graph, "tflite"):
        print(f)            # error: node 'G/4x4/Conv/Conv2D' (Conv2D): TFLite has no NCHW ...

The rules themselves live in the target (TFLite's in
:mod:`graphsurgery.targets.tflite.lint`, each a small function with an id such as
``no-inner-transpose``), so ``check``, the audit and the report share them.
:func:`lint_tflite` and :func:`check_tflite` are the TFLite target's lint by its old names.
The lint reads the graph and runs TensorFlow's shape inference, in which nodes acting on the
host stand in as placeholders; it never executes a node and never opens a file the graph names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import GraphSurgeryError, InputError, UsageError, VerificationError
from .ir.graph import Graph, Node
from .ir.names import TensorRef
from .targets.base import Finding

log = logging.getLogger("graphsurgery.check")

#: A lint finding (the name ``check`` has always used).
Blocker = Finding


def lint(graph: Graph, target: str = "tflite") -> list[Finding]:
    """Every node of ``graph`` that blocks (or may hinder) a clean conversion for ``target``."""
    from .targets import get_target

    return get_target(target).lint(graph)


def check(graph: Graph, target: str = "tflite") -> list[Finding]:
    """:func:`lint`, raising VerificationError when any finding is an error.

    Returns the warnings when there is no error.
    """
    blockers = lint(graph, target)
    errors = [b for b in blockers if b.severity == "error"]
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        name = "TFLite" if target == "tflite" else target
        raise VerificationError(
            f"{len(errors)} {name} blocker(s): {errors[0]}{more}", [str(b) for b in blockers]
        )
    return blockers


def lint_tflite(graph: Graph) -> list[Finding]:
    """Every node that blocks (or may hinder) a TFLite-clean conversion, in graph order."""
    return lint(graph, "tflite")


def check_tflite(graph: Graph) -> list[Finding]:
    """:func:`check` for the TFLite target."""
    return check(graph, "tflite")


# ---------------------------------------------------------------------------- the report
@dataclass
class RuleGroup:
    """Every finding of one rule: how many, which nodes, and what fixes it."""

    rule: str
    severity: str
    description: str
    fixed_by: str
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "count": len(self.findings),
                "description": self.description, "fixed_by": self.fixed_by or None,
                "nodes": [{"node": f.node, "op": f.op, "reason": f.reason}
                          for f in self.findings]}


@dataclass
class CheckReport:
    """What ``graphsurgery check`` prints: findings grouped by rule, FLOPs and parameters.

    Errors first, then warnings; within each, the rule with most findings first.
    """

    model: str
    target: str
    nodes: int
    groups: list[RuleGroup]
    flops: dict[str, Any] | None
    parameters: int | None
    #: "graph" (a lint before conversion) or "artefact" (the audit of a converted model).
    kind: str = "graph"
    #: A converted model's op histogram, as its audit counts them (None for a graph).
    ops: dict[str, int] | None = None

    @property
    def errors(self) -> int:
        return sum(len(g.findings) for g in self.groups if g.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(len(g.findings) for g in self.groups if g.severity != "error")

    def to_json(self) -> dict[str, Any]:
        """The JSON ``check --json`` prints (strict: no NaN or Infinity)."""
        flops = None
        if self.flops is not None:
            flops = {k: self.flops[k] for k in ("conv", "matmul", "total")}
            flops["unknown_nodes"] = len(self.flops["unknown"])
        out = {"model": self.model, "kind": self.kind, "target": self.target,
               "nodes": self.nodes,
               "clean": self.errors == 0, "errors": self.errors, "warnings": self.warnings,
               "flops": flops, "parameters": self.parameters,
               "rules": [g.to_json() for g in self.groups]}
        if self.kind == "artefact":
            out["ops"] = self.ops
        return out

    def lines(self, per_rule: int | None = 2) -> list[str]:
        """One block per rule: ``error no-random (12): ...``, its first ``per_rule`` nodes
        (all when None) and the fix; then FLOPs, parameters and the verdict."""
        out = []
        for g in self.groups:
            out.append(f"{g.severity} {g.rule}: {len(g.findings)} node(s); {g.description}")
            shown = g.findings if per_rule is None else g.findings[:per_rule]
            last = None
            for f in shown:  # the lint's own line for each node; a repeated reason once
                what = f"{f.node} ({f.op})" if f.op else f.node
                why = f": {f.reason}" if f.reason and f.reason != last else ""
                out.append(f"  {f.severity}: {what}{why}")
                last = f.reason
            if len(shown) < len(g.findings):
                out.append(f"  ... and {len(g.findings) - len(shown)} more (-v lists all)")
            if g.fixed_by:
                out.append(f"  fix: {g.fixed_by}")
        if self.parameters is None:
            pass
        elif self.flops is not None:
            f = self.flops
            unknown = f" ({len(f['unknown'])} nodes of unknown shape)" if f["unknown"] else ""
            out.append(f"FLOPs: {_si(f['total'])} (conv {f['conv']:,}, matmul {f['matmul']:,})"
                       f"{unknown}; parameters: {_si(self.parameters)} ({self.parameters:,})")
        else:
            out.append(f"parameters: {_si(self.parameters)} ({self.parameters:,})")
        if self.ops:
            hist = ", ".join(f"{op} {n}" for op, n in sorted(self.ops.items()))
            out.append(f"ops: {self.nodes} ({hist})")
        verdict = "clean" if not self.errors else "NOT clean"
        if self.kind == "artefact":
            out.append(f"{self.model}: audit for target {self.target}: {self.errors} "
                       f"violation(s): {verdict}")
        else:
            out.append(f"{self.model}: {self.nodes} nodes; {self.errors} blocker(s), "
                       f"{self.warnings} warning(s) for target {self.target}: {verdict}")
        return out


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(int(n))


def check_report(graph: Graph, target: str = "tflite", model: str = "") -> CheckReport:
    """:func:`lint` grouped by rule (with each rule's fix), FLOPs and the parameter count."""
    from .targets import get_target

    tgt = get_target(target)
    groups: dict[tuple[str, str], RuleGroup] = {}
    for f in tgt.lint(graph):
        key = (f.rule, f.severity)
        if key not in groups:
            rule = tgt.rule(f.rule)
            groups[key] = RuleGroup(f.rule or "other", f.severity,
                                    rule.description if rule else "",
                                    getattr(rule, "fixed_by", "") if rule else "")
        groups[key].findings.append(f)
    order = sorted(groups.values(), key=lambda g: (g.severity != "error", -len(g.findings),
                                                    g.rule))
    try:
        flops: dict[str, Any] | None = count_flops(graph)
    except GraphSurgeryError as exc:  # shape inference may not cover every graph
        log.info("FLOPs not counted: %s", exc)
        flops = None
    return CheckReport(model or graph.source or "<graph>", target, len(graph), order, flops,
                       count_parameters(graph))


def artefact_target(path: str) -> str | None:
    """The registered target whose models end like ``path`` (``.tflite``...), or None."""
    from pathlib import Path

    from .targets import all_targets

    suffix = Path(path.rstrip("/")).suffix.lower()
    if not suffix or suffix in (".pb", ".pbtxt"):
        return None
    for name, target in all_targets().items():
        if suffix in (Path(target.filename).suffix.lower(), *target.suffixes):
            return name
    return None


def check_artefact(path: str, target: str) -> CheckReport:
    """The target's audit of a converted model (a ``.tflite``...), grouped by rule like
    :func:`check_report`: the same rule ids, each violation listed under its rule."""
    from pathlib import Path

    from .targets import Artefact, get_target
    from .targets.base import violation_rule

    tgt = get_target(target)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    size = p.stat().st_size if p.is_file() else 0
    try:
        audit = tgt.audit(Artefact(tgt.name, p, size))
    except GraphSurgeryError:
        raise
    except ImportError as exc:
        raise UsageError(f"{path}: checking a {tgt.display_name} model needs {exc.name}: "
                         f"pip install 'graphsurgery[{tgt.name}]'") from None
    except Exception as exc:  # the reader refused the file: not a model of this kind
        log.debug("auditing %s failed", path, exc_info=True)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable {tgt.display_name} model "
                         f"({type(exc).__name__}: {first})") from None
    groups: dict[str, RuleGroup] = {}
    for line in audit.violations:
        rule_id = violation_rule(line)
        detail = line.split(":", 1)[1].strip() if ":" in line else line
        if rule_id not in groups:
            rule = tgt.rule(rule_id)
            groups[rule_id] = RuleGroup(rule_id, rule.severity if rule else "error",
                                        rule.description if rule else "",
                                        getattr(rule, "fixed_by", "") if rule else "")
        groups[rule_id].findings.append(Finding(detail, "", "", groups[rule_id].severity,
                                                rule_id))
    order = sorted(groups.values(), key=lambda g: (g.severity != "error", -len(g.findings),
                                                    g.rule))
    facts = audit.to_json()
    ops = facts.get("ops") if isinstance(facts.get("ops"), dict) else None
    nodes = sum(ops.values()) if ops else int(facts.get("nodes") or 0)
    return CheckReport(str(path), tgt.name, nodes, order, None, None, kind="artefact",
                       ops=ops)


def count_parameters(graph: Graph) -> int:
    """Elements of every floating-point constant (weights, biases): the parameter count.

    Read from the constants' shapes, never decoding them.
    """
    from .ir.dtypes import DType

    total = 0
    for node in graph.nodes("Const"):
        try:
            dtype = DType.of(node.attr("dtype"))
        except Exception:  # noqa: BLE001 - an odd dtype attribute is not a parameter
            continue
        if not dtype.is_floating:
            continue
        n = 1
        for d in graph.const_shape(node.name):
            n *= int(d)
        total += n
    return total


# ---------------------------------------------------------------------------- shapes
def inferred_shapes(graph: Graph) -> dict[TensorRef, Any] | None:
    """TensorFlow's inferred shapes, or None when inference is unavailable or fails."""
    from .export.tflite import capture_output, import_tensorflow

    try:
        import_tensorflow()  # imported quietly; inference would import it noisily
        with capture_output(stdout=False):
            return graph.infer()
    except Exception as exc:  # inference is optional for the lint
        log.info("shape inference unavailable (%s); checking ranks from constants only", exc)
        return None


def shape_of(graph: Graph, ref: TensorRef, shapes: dict[TensorRef, Any] | None) -> Any:
    """The static shape of ``ref``, else its inferred one from ``shapes``, else None."""
    static = graph.static_shape(ref)
    if static is not None:
        return static
    if shapes is None:
        return None
    info = shapes.get(ref)
    return None if info is None else getattr(info, "shape", None)


_inferred_shapes, _shape_of = inferred_shapes, shape_of


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
