"""What a target is: lint rules, the passes it appends, export, audit and a runner.

A target is one object (a :class:`Target` subclass) that knows a deployment format::

    class MyTarget(Target):
        name = "mine"
        description = "my runtime"
        rules = (Rule("no-bad-op", "the runtime has no BadOp"),)

        def lint(self, graph):          # before conversion: findings on GraphDef nodes
            return [Finding("no-bad-op", n.name, n.op, "BadOp has no kernel")
                    for n in graph.nodes("BadOp")]

        def export(self, graph, outdir, **options):   # -> Artefact (a file in outdir)
            ...

        def audit(self, artefact):      # after conversion: -> Audit (clean, violations)
            ...

Each rule has an id (``no-inner-transpose``); a lint finding and an audit violation name the
rule they break, so ``graphsurgery check``, the audit in ``summary.json`` and the report
describe a problem the same way (:meth:`Target.rule`). Register the target with
:func:`graphsurgery.targets.register_target` or the ``graphsurgery.targets`` entry-point group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import UsageError

if TYPE_CHECKING:
    from ..ir.graph import Graph
    from ..pipeline import Pipeline
    from ..runners import Runner


@dataclass(frozen=True)
class Rule:
    """One requirement of a target: ``id`` (``no-inner-transpose``) and what it asks for."""

    id: str
    description: str
    severity: str = "error"  # "error" makes an artefact unclean; "warning" does not
    #: The pass or preset that fixes a violation (shown by ``check``), "" when none does.
    fixed_by: str = ""


@dataclass(frozen=True)
class Finding:
    """One problem on one node found by a target's lint.

    ``severity`` is ``"error"`` (blocks a clean conversion) or ``"warning"``; ``rule`` is the
    id of the rule it breaks.
    """

    node: str
    op: str
    reason: str
    severity: str = "error"
    rule: str = ""

    def __str__(self) -> str:
        return f"{self.severity}: node {self.node!r} ({self.op}): {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Artefact:
    """What :meth:`Target.export` wrote: the file, its size, how long it took, and any
    other models written beside it (``variants``: name -> (path, bytes), such as Core ML's
    compressed ``model.linear8.mlpackage``)."""

    target: str
    path: Path
    size: int
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, tuple[Path, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``summary.json``'s ``export`` entry (``variants`` only when there are some)."""
        out: dict[str, Any] = {"target": self.target, "ok": True, "seconds": self.seconds,
                               "bytes": self.size}
        out.update({k: self.details[k] for k in ("quantize", "weights") if k in self.details})
        if self.variants:  # beside the artefact: named relative to OUTDIR
            out["variants"] = {k: {"path": p.name if p.parent == self.path.parent else str(p),
                                   "bytes": n} for k, (p, n) in self.variants.items()}
        return out


class AuditLike(Protocol):
    """What the driver needs from an audit (the TFLite audit has many more fields)."""

    clean: bool
    violations: list[str]

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class Audit:
    """A target's verdict on an artefact: ``violations`` are ``"<rule id>: <detail>"`` lines;
    ``facts`` are whatever else the target measured (shown in the report)."""

    target: str
    path: str | None
    size: int
    violations: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "path": self.path, "size": self.size,
                "clean": self.clean, "violations": list(self.violations), **self.facts}

    def summary(self) -> str:
        return "clean" if self.clean else f"{len(self.violations)} violation(s)"


def parse_target_options(specs: list[str] | tuple[str, ...], target: str | None
                         ) -> dict[str, str]:
    """``--target-option`` strings (``opset=13`` or ``onnx.opset=13``) as ``{option: text}``
    for ``target``; the target's :meth:`Target.check_options` converts and checks the values.

    A spec without ``=``, one naming another target, or any spec without a target is a
    UsageError naming it.
    """
    out: dict[str, str] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--target-option {spec}: write OPTION=VALUE (e.g. opset=17)")
        if target is None:
            raise UsageError(f"--target-option {spec}: there is no target (--target none)")
        prefix, dot, name = key.rpartition(".")
        if dot:
            if prefix != target:
                raise UsageError(f"--target-option {spec}: an option of target {prefix!r}, "
                                 f"but the target is {target}")
            key = name
        out[key] = value.strip()
    return out


def violation_rule(line: str) -> str:
    """The rule id a violation line names (``"no-random: ..."`` -> ``"no-random"``)."""
    return line.split(":", 1)[0].strip()


class Target:
    """Base class of targets; subclasses set :attr:`name` and override what they support.

    Only :meth:`export` is required. :meth:`lint` defaults to no findings, :meth:`passes`
    to none, :meth:`audit` to a clean audit of the file's size, :meth:`runner` to None
    (the result graph is still verified; the artefact is not run).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: How messages name the target ("TFLite: clean"); the name when empty.
    label: ClassVar[str] = ""
    #: The artefact's file name inside OUTDIR.
    filename: ClassVar[str] = "model.out"
    #: Other suffixes of models :meth:`audit` reads (``check`` audits a file ending in one
    #: of these or in :attr:`filename`'s suffix), e.g. Core ML's older ``.mlmodel``.
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: The target's rules; lint findings and audit violations name them by id.
    rules: ClassVar[tuple[Rule, ...]] = ()
    #: Export options the target accepts (the driver passes only these).
    options: ClassVar[tuple[str, ...]] = ()

    @property
    def display_name(self) -> str:
        """:attr:`label`, or :attr:`name` when there is none."""
        return self.label or self.name

    def rule(self, rule_id: str) -> Rule | None:
        """The rule named ``rule_id``, or None."""
        return next((r for r in self.rules if r.id == rule_id), None)

    def lint(self, graph: Graph) -> list[Finding]:
        """Every node of ``graph`` that would keep its conversion from being clean."""
        return []

    def passes(self) -> str:
        """Pipeline text of the passes this target appends (ids in its own namespace)."""
        return ""

    def extend(self, pipeline: Pipeline) -> Pipeline:
        """``pipeline`` with :meth:`passes` appended (a target may place them elsewhere)."""
        from ..pipeline import Pipeline

        text = self.passes()
        return Pipeline([*pipeline.items, *Pipeline.parse(text).items]) if text else pipeline

    def pass_options(self, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Pass options that the export ``options`` call for (``{pass_id: {option: value}}``),
        set before the user's ``--set`` overrides, which win; passes not in the pipeline are
        skipped. None by default."""
        return {}

    def export(self, graph: Graph, outdir: str | os.PathLike, **options: Any) -> Artefact:
        """Convert ``graph`` into ``outdir / self.filename``; raise VerificationError (one
        line) when it cannot be converted."""
        raise NotImplementedError(f"target {self.name} does not implement export()")

    def audit(self, artefact: Artefact) -> AuditLike:
        """Check the artefact against :attr:`rules`."""
        return Audit(self.name, str(artefact.path), artefact.size)

    def runner(self, artefact: Artefact) -> Runner | None:
        """A runner for the artefact, so ``verify`` compares it with the input graph."""
        return None

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The export options this target takes; an unknown one is a UsageError."""
        unknown = sorted(k for k, v in options.items() if v is not None and k not in self.options)
        if unknown:
            raise UsageError(f"target {self.name} has no option {unknown[0]!r} "
                             f"(options: {', '.join(self.options) or 'none'})")
        return {k: v for k, v in options.items() if v is not None}

    def __repr__(self) -> str:
        return f"<target {self.name}: {self.description}>"
