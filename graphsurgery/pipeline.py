"""Pipelines: ordered, editable lists of passes, run with verification and instruments.

A pipeline is written as text, ``"core::dce,stylegan::prune_resolution(size=256)"``, or
built in Python; presets are named factories that return a fresh copy each time::

    p = gs.Pipeline.preset("generic")
    p.insert(0, "my::drop_checks")
    p.set_options("core::fold_constants", max_bytes=1 << 20)
    result = p.run(graph)

A fixpoint group repeats its passes until none of them changes the graph, up to
``max_iter`` rounds, and warns when it stops without converging:
``fixpoint(max_iter=8){core::fold_constants,core::dce}``.

After every pass the graph is verified (structure, declared outputs). A pass that raises
or leaves an invalid graph stops the pipeline with ``pass X failed after [a, b, c]`` and,
when an output directory is given, a reproducer (the graph as the failing pass received
it and the pipeline text). With ``keep_going`` the graph is restored instead and the
failure is logged as an error and recorded in the result.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .diff import op_count_deltas
from .errors import GraphSurgeryError, PassFailure, UsageError
from .ir.graph import Graph
from .registry import Pass, counting_rules, get_pass
from .rewriter import Rewriter
from .verify import EditGuard, check_structure, signature, verify

log = logging.getLogger("graphsurgery")
#: Modules of the passes shipped with graphsurgery (not watched for edits in place).
BUILTIN_MODULES = ("graphsurgery.passes.", "graphsurgery.rules.")


# ---------------------------------------------------------------------- pipeline items
@dataclass
class Step:
    """One pass with its options (values as given; validated when the pipeline is built)."""

    pass_id: str
    options: dict[str, Any] = field(default_factory=dict)

    def instantiate(self) -> Pass:
        """A fresh instance of the pass with these options (validates them)."""
        return get_pass(self.pass_id)(**self.options)

    def text(self, expand: bool = False, *, pretty: bool = False) -> str:
        """``pass_id`` or ``pass_id(key=value,...)``, as pipeline text."""
        if not self.options:
            return self.pass_id
        opts = ",".join(f"{k}={_fmt(v)}" for k, v in self.options.items())
        return f"{self.pass_id}({opts})"


@dataclass
class Fixpoint:
    """Passes repeated until a whole round changes nothing, at most ``max_iter`` rounds.

    ``group`` names the registered group (:func:`register_group`) the fixpoint was written
    as, e.g. ``core::canonicalize``; its text keeps that name while the steps are the
    group's own.
    """

    steps: list[Step]
    max_iter: int = 10
    group: str | None = None

    def text(self, expand: bool = False, *, pretty: bool = False) -> str:
        """The pipeline text of the group: its registered name unless ``expand`` (or its
        steps were edited), else ``fixpoint(max_iter=N){a,b}`` (one pass per line with
        ``pretty``)."""
        inner = ",".join(s.text() for s in self.steps)
        full = f"fixpoint(max_iter={self.max_iter}){{{inner}}}"
        if not expand and self.group is not None and _group_text(self.group) == full:
            return self.group
        if pretty:
            body = ",\n".join(f"  {s.text()}" for s in self.steps)
            return f"fixpoint(max_iter={self.max_iter}){{\n{body}\n}}"
        return full


Item = Step | Fixpoint


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# ---------------------------------------------------------------------- text parsing
_TOKEN = re.compile(r"\s*(?:(::)|([A-Za-z_][A-Za-z0-9_.\-]*)|(\S))")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, msg: str) -> UsageError:
        return UsageError(f"pipeline {self.text!r}: {msg} at character {self.pos + 1}")

    def peek(self) -> str:
        rest = self.text[self.pos :].lstrip()
        return rest[:1]

    def expect(self, ch: str) -> None:
        self.skip_ws()
        if self.text[self.pos : self.pos + len(ch)] != ch:
            found = self.text[self.pos : self.pos + 1] or "end of text"
            raise self.error(f"expected {ch!r}, found {found!r}")
        self.pos += len(ch)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def word(self, what: str) -> str:
        self.skip_ws()
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(self.text, self.pos)
        if not m:
            raise self.error(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def value(self) -> str:
        self.skip_ws()
        m = re.compile(r"[^,(){}\s=]+").match(self.text, self.pos)
        if not m:
            raise self.error("expected an option value")
        self.pos = m.end()
        return m.group(0)

    def options(self) -> dict[str, str]:
        opts: dict[str, str] = {}
        if self.peek() != "(":
            return opts
        self.expect("(")
        if self.peek() == ")":
            self.expect(")")
            return opts
        while True:
            key = self.word("an option name")
            self.expect("=")
            if key in opts:
                raise self.error(f"option {key!r} given twice")
            opts[key] = self.value()
            if self.peek() == ",":
                self.expect(",")
                continue
            self.expect(")")
            return opts

    def step(self) -> Step:
        ns = self.word("a pass id like 'core::dce'")
        self.skip_ws()
        if self.text[self.pos : self.pos + 2] != "::":
            raise self.error(f"pass id {ns!r} needs a namespace, like 'core::{ns}'")
        self.pos += 2
        name = self.word("a pass name after '::'")
        return Step(f"{ns}::{name}", self.options())

    def item(self) -> list[Item]:
        save = self.pos
        self.skip_ws()
        if self.text.startswith("fixpoint", self.pos) and not self.text.startswith(
            "fixpoint::", self.pos
        ):
            self.pos += len("fixpoint")
            opts = self.options()
            unknown = set(opts) - {"max_iter"}
            if unknown:
                raise self.error(f"fixpoint takes only max_iter, not {sorted(unknown)[0]!r}")
            try:
                max_iter = int(opts.get("max_iter", 10))
            except ValueError:
                raise self.error("fixpoint max_iter must be an integer") from None
            if max_iter < 1:
                raise self.error("fixpoint max_iter must be at least 1")
            self.expect("{")
            steps = self.inner_steps()
            while self.peek() == ",":
                self.expect(",")
                steps += self.inner_steps()
            self.expect("}")
            return [Fixpoint(steps, max_iter)]
        self.pos = save
        step = self.step()
        group = _lookup_group(step.pass_id)
        if group is None:
            return [step]
        self.no_group_options(step)
        return group.items()

    def inner_steps(self) -> list[Step]:
        """One step inside ``fixpoint{...}``; a group of plain steps is inlined there."""
        step = self.step()
        group = _lookup_group(step.pass_id)
        if group is None:
            return [step]
        self.no_group_options(step)
        items = group.items()
        if not all(isinstance(it, Step) for it in items):
            raise self.error(f"group {step.pass_id} holds a fixpoint and cannot be nested "
                             "in another fixpoint")
        return [it for it in items if isinstance(it, Step)]

    def no_group_options(self, step: Step) -> None:
        if step.options:
            raise self.error(f"group {step.pass_id} takes no options (set them on its passes)")

    def parse(self) -> list[Item]:
        if not self.text.strip():
            raise UsageError("pipeline text is empty")
        items = self.item()
        while self.peek() == ",":
            self.expect(",")
            items += self.item()
        self.skip_ws()
        if self.pos != len(self.text):
            raise self.error(f"unexpected {self.text[self.pos]!r}")
        return items


# ---------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """A named piece of pipeline text, written like a pass (``core::canonicalize``) and
    expanded when parsed; a fixpoint group keeps the name when printed."""

    name: str
    text: str
    description: str

    def items(self) -> list[Item]:
        """Fresh pipeline items of the group (fixpoints remember the group's name)."""
        items = _Parser(self.text).parse()
        if len(items) == 1 and isinstance(items[0], Fixpoint):
            items[0].group = self.name
        return items


_GROUPS: dict[str, Group] = {}


def register_group(name: str, text: str, description: str) -> Group:
    """Register pipeline ``text`` as the group ``name`` (``namespace::name``), usable in
    pipeline text like a pass: ``"core::strip_training,core::canonicalize"``.

    Example::

        register_group("core::canonicalize",
                       "fixpoint(max_iter=10){core::fold_constants,core::cse,core::dce}",
                       "fold, merge and prune until nothing changes")
    """
    ns, sep, rest = name.partition("::")
    if not sep or not ns.isidentifier() or not rest.isidentifier():
        raise UsageError(f"group name {name!r} must look like 'namespace::name'")
    if name in _GROUPS:
        raise UsageError(f"pipeline group {name!r} is registered twice")
    group = Group(name, text, description)
    _GROUPS[name] = group
    return group


def groups() -> dict[str, Group]:
    """Every registered group by name (plugins loaded)."""
    from .plugins import load_entry_points

    load_entry_points()
    return dict(sorted(_GROUPS.items()))


def _lookup_group(name: str) -> Group | None:
    if name not in _GROUPS:
        from .plugins import load_entry_points

        load_entry_points()
    return _GROUPS.get(name)


def _group_text(name: str) -> str | None:
    group = _GROUPS.get(name)
    if group is None:
        return None
    return ",".join(it.text(expand=True) for it in _Parser(group.text).parse())


# ---------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    factory: Callable[[], Pipeline]


_PRESETS: dict[str, Preset] = {}


def register_pipeline(name: str, description: str) -> Callable[[Callable[[], Any]], Any]:
    """Register a factory returning a Pipeline (or pipeline text) as preset ``name``."""

    def deco(fn: Callable[[], Any]) -> Callable[[], Any]:
        if name in _PRESETS:
            raise UsageError(f"pipeline preset {name!r} is registered twice")

        def factory() -> Pipeline:
            try:
                made = fn()
            except SystemExit as exc:  # a plugin's preset: its exit is an error, not ours
                raise UsageError(f"pipeline preset {name!r} ({fn.__module__}) called "
                                 f"sys.exit({exc.code!r})") from None
            return Pipeline.parse(made) if isinstance(made, str) else made

        _PRESETS[name] = Preset(name, description, factory)
        return fn

    return deco


def presets() -> dict[str, Preset]:
    from .plugins import load_entry_points

    load_entry_points()
    return dict(sorted(_PRESETS.items()))


# ---------------------------------------------------------------------- results
@dataclass
class PassRecord:
    """What one pass did; serialised into summary.json."""

    pass_id: str
    options: dict[str, Any]
    seconds: float
    changed: bool
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    nodes_before: int
    nodes_after: int
    verification: str = "ok"
    problems: list[str] = field(default_factory=list)
    iteration: int | None = None
    error: str | None = None
    changes: dict[str, str] = field(default_factory=dict)
    #: How many times each named rule rewrote the graph in this pass (rule sets, and
    #: hand-written passes that call :func:`~graphsurgery.registry.count_rule`).
    rule_counts: dict[str, int] = field(default_factory=dict)

    def deltas(self) -> list[str]:
        """Op-count changes, largest first: ``"Transpose -18 (20 -> 2)"``."""
        return op_count_deltas(self.ops_before, self.ops_after)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("changes")
        d["deltas"] = self.deltas()
        d["counts"] = {
            "added": sum(1 for v in self.changes.values() if v == "added"),
            "removed": sum(1 for v in self.changes.values() if v == "removed"),
            "changed": sum(1 for v in self.changes.values() if v == "changed"),
        }
        return d


@dataclass
class PipelineResult:
    graph: Graph
    pipeline: str
    records: list[PassRecord] = field(default_factory=list)
    failures: list[PassRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "seconds": round(self.seconds, 4),
            "ok": self.ok,
            "passes": [r.to_json() for r in self.records],
            "failures": [r.to_json() for r in self.failures],
            "warnings": self.warnings,
        }


# ---------------------------------------------------------------------- instruments
class Instrument:
    """Hooks called around every pass. Override what you need."""

    def before_pass(self, pass_id: str, graph: Graph) -> None:
        """Called before a pass runs."""

    def after_pass(self, record: PassRecord, graph: Graph) -> None:
        """Called after a pass ran and verified."""

    def on_failure(self, record: PassRecord, graph: Graph) -> None:
        """Called when a pass raised or failed verification (graph as the pass left it)."""


class LogTimings(Instrument):
    """Logs each pass's wall time at INFO level."""

    def after_pass(self, record: PassRecord, graph: Graph) -> None:
        log.info("%-36s %8.1f ms%s", record.pass_id, record.seconds * 1e3,
                 "" if record.changed else "  (no change)")


class LogOpDeltas(Instrument):
    """Logs op-count deltas ("Transpose -18 (20 -> 2)") after passes that changed ops, and
    how often each rule applied ("rules mul_one x3, mul_mul x1")."""

    def after_pass(self, record: PassRecord, graph: Graph) -> None:
        """Log the pass's rule counts and op-count deltas at INFO."""
        if record.rule_counts:
            counts = ", ".join(f"{k} x{v}" for k, v in sorted(record.rule_counts.items()))
            log.info("  %s: rules %s", record.pass_id, counts)
        for line in record.deltas():
            log.info("  %s: %s", record.pass_id, line)


class DumpChanged(Instrument):
    """Writes the graph after every pass that changed it: ``NN_<pass>.pb`` in ``directory``."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.count = 0
        self.written: list[Path] = []

    def after_pass(self, record: PassRecord, graph: Graph) -> None:
        if not record.changed:
            return
        from .ir.io import save

        self.count += 1
        name = record.pass_id.replace("::", "__")
        path = self.directory / f"{self.count:02d}_{name}.pb"
        save(graph, path)
        self.written.append(path)


# ---------------------------------------------------------------------- the pipeline
class Pipeline:
    """An ordered list of passes and fixpoint groups."""

    def __init__(self, items: Sequence[Item | str] = (), name: str | None = None) -> None:
        self.name = name
        self.items: list[Item] = []
        for it in items:
            self.items.extend(_Parser(it).parse() if isinstance(it, str) else [it])

    # construction ---------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Pipeline:
        """Parse pipeline text; pass ids and options are validated at once."""
        p = cls(_Parser(text).parse())
        p.validate()
        return p

    @classmethod
    def preset(cls, name: str) -> Pipeline:
        """A fresh copy of preset ``name``."""
        table = presets()
        if name not in table:
            from .registry import did_you_mean

            hint = did_you_mean(name, table)
            raise UsageError(
                f"unknown pipeline preset {name!r}{hint} (presets: {', '.join(table) or 'none'})"
            )
        p = table[name].factory()
        p.name = name
        p.validate()
        return p

    @classmethod
    def from_spec(cls, spec: str) -> Pipeline:
        """A preset name, pipeline text, or ``@FILE``: pipeline text read from FILE.

        In a file, lines are joined with commas; blank lines and ``#`` comments are ignored.
        """
        if spec.startswith("@"):
            return cls.from_file(spec[1:])
        if "::" not in spec and "," not in spec and "(" not in spec:
            return cls.preset(spec)
        return cls.parse(spec)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Pipeline:
        """Pipeline text (or a preset name) read from ``path`` (``-p @pipeline.txt``)."""
        try:
            raw = Path(path).read_text()
        except FileNotFoundError:
            raise UsageError(f"-p @{path}: no such pipeline file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"-p @{path}: cannot read the pipeline file ({exc})") from None
        lines = [line.split("#", 1)[0].strip() for line in raw.splitlines()]
        text = ",".join(line.rstrip(",") for line in lines if line)
        if not text:
            raise UsageError(f"-p @{path}: the pipeline file is empty")
        if text.startswith("@"):
            raise UsageError(f"-p @{path}: a pipeline file cannot name another (@...)")
        try:
            return cls.from_spec(text)
        except UsageError as exc:
            raise UsageError(f"-p @{path}: {exc}") from None

    def copy(self) -> Pipeline:
        """An independent copy (same passes, options and groups)."""
        return Pipeline.parse(self.text()) if self.items else Pipeline()

    def validate(self) -> None:
        """Instantiate every pass once so unknown ids and bad options fail early."""
        for step in self.steps():
            step.instantiate()

    # editing ----------------------------------------------------------------
    def steps(self) -> Iterator[Step]:
        for it in self.items:
            yield from (it.steps if isinstance(it, Fixpoint) else [it])

    def pass_ids(self) -> list[str]:
        return [s.pass_id for s in self.steps()]

    def append(self, pass_id: str, **options: Any) -> Pipeline:
        step = Step(pass_id, options)
        step.instantiate()
        self.items.append(step)
        return self

    def insert(self, index: int, pass_id: str, **options: Any) -> Pipeline:
        step = Step(pass_id, options)
        step.instantiate()
        self.items.insert(index, step)
        return self

    def remove(self, pass_id: str) -> Pipeline:
        """Remove every occurrence of ``pass_id`` (inside fixpoint groups too)."""
        found = False
        kept: list[Item] = []
        for it in self.items:
            if isinstance(it, Fixpoint):
                inner = [s for s in it.steps if s.pass_id != pass_id]
                found |= len(inner) != len(it.steps)
                if inner:
                    kept.append(Fixpoint(inner, it.max_iter, it.group))
            elif it.pass_id == pass_id:
                found = True
            else:
                kept.append(it)
        if not found:
            raise UsageError(f"pipeline has no pass {pass_id!r}")
        self.items = kept
        return self

    def set_options(self, pass_id: str, **options: Any) -> Pipeline:
        """Set options on every occurrence of ``pass_id``."""
        hits = [s for s in self.steps() if s.pass_id == pass_id]
        if not hits:
            raise UsageError(f"pipeline has no pass {pass_id!r} to set options on")
        for s in hits:
            merged = {**s.options, **options}
            get_pass(pass_id)(**merged)
            s.options = merged
        return self

    def apply_overrides(self, overrides: Sequence[str]) -> Pipeline:
        """Apply ``--set pass.option=value`` strings (``core::dce.keep=x``)."""
        for text in overrides:
            target, eq, value = text.partition("=")
            pass_id, dot, opt = target.rpartition(".")
            if not eq or not dot or not pass_id or not opt:
                raise UsageError(f"--set {text!r}: expected PASS.OPTION=VALUE")
            if pass_id not in self.pass_ids():
                raise UsageError(f"--set {text!r}: pipeline has no pass {pass_id!r}")
            self.set_options(pass_id, **{opt: value})
        return self

    def text(self, expand: bool = False) -> str:
        """The pipeline text on one line; with ``expand`` groups such as
        ``core::canonicalize`` are written out as the passes they stand for."""
        return ",".join(it.text(expand) for it in self.items)

    def __str__(self) -> str:
        """The pipeline text, one pass per line (``Pipeline.parse`` reads it back)."""
        return ",\n".join(it.text(pretty=True) for it in self.items)

    def __repr__(self) -> str:
        """``Pipeline.parse(\"\"\"...\"\"\")`` with one pass per line."""
        body = "\n".join(f"    {line}" for line in str(self).splitlines())
        return f'Pipeline.parse("""\n{body}\n""")' if self.items else "Pipeline()"

    def __len__(self) -> int:
        return len(self.items)

    # running --------------------------------------------------------------------
    def warm_up(self) -> bool:
        """Start loading what the passes will need before the graph is there: when a pass
        infers shapes (:attr:`Pass.infers_shapes`), TensorFlow's C library (0.15-0.25 s)
        loads in a background thread, e.g. while the model file is read. Returns whether
        it started anything. :meth:`run` calls it too."""
        if not any(get_pass(s.pass_id).infers_shapes for s in self.steps()):
            return False
        from .ir import tf_capi

        tf_capi.preload()
        return True

    def run(
        self,
        graph: Graph,
        *,
        verify_each: bool = True,
        verify_shapes: bool = False,
        keep_going: bool = False,
        instruments: Sequence[Instrument] = (),
        reproducer_dir: str | os.PathLike | None = None,
        source: str | os.PathLike | None = None,
        guard_edits: str = "plugins",
    ) -> PipelineResult:
        """Run every pass over ``graph`` in place and return what each did.

        On a failure a reproducer is written into ``reproducer_dir`` (when given). With
        ``source``, the file ``graph`` was loaded from (unchanged since), the reproducer is
        that file plus the text of every pass run up to the failing one, and no copy of
        the graph is kept per pass; without it, the graph is snapshotted before each pass
        (cheap: NodeDefs are shared until a pass replaces them, at which point the old
        ones stay alive until the pass ends). ``keep_going`` always snapshots, to restore.

        With ``verify_each``, a pass that edits a NodeDef in place instead of through its
        Rewriter fails ("pass X edited node 'n' without the Rewriter"; see
        :class:`~graphsurgery.verify.EditGuard`). ``guard_edits`` says which passes are
        watched: ``"plugins"`` (every pass not shipped with graphsurgery, the default: the
        built-in ones are tested never to do it), ``"all"`` or ``"off"``.
        """
        if guard_edits not in ("plugins", "all", "off"):
            raise UsageError(f"guard_edits={guard_edits!r} must be plugins, all or off")
        self.warm_up()
        runner = _Runner(self, graph, verify_each, verify_shapes, keep_going,
                         list(instruments), reproducer_dir, source, guard_edits)
        return runner.run()


class _Runner:
    def __init__(
        self,
        pipeline: Pipeline,
        graph: Graph,
        verify_each: bool,
        verify_shapes: bool,
        keep_going: bool,
        instruments: list[Instrument],
        reproducer_dir: str | os.PathLike | None,
        source: str | os.PathLike | None = None,
        guard_edits: str = "plugins",
    ) -> None:
        self.pipeline = pipeline
        self.source = Path(source) if source else None
        self.snapshot_each = keep_going or (reproducer_dir is not None and source is None)
        self.ran: list[str] = []  # texts of the steps run so far, fixpoint rounds unrolled
        self.graph = graph
        self.verify_each = verify_each
        self.verify_shapes = verify_shapes
        self.keep_going = keep_going
        self.instruments = instruments
        self.reproducer_dir = Path(reproducer_dir) if reproducer_dir else None
        # The interface the source file is run with (the passes may change the graph's).
        self.interface = _interface_args(graph) if self.source else None
        self.result = PipelineResult(graph, pipeline.text())
        self.done: list[str] = []
        self.guard_edits = guard_edits
        self.guard: EditGuard | None = None  # fingerprints after the last pass, if watched

    def run(self) -> PipelineResult:
        t0 = time.perf_counter()
        for item in self.pipeline.items:
            if isinstance(item, Fixpoint):
                self._fixpoint(item)
            else:
                self._step(item, None)
        self.result.seconds = time.perf_counter() - t0
        return self.result

    def _guarded(self, instance: Pass) -> bool:
        """Whether an :class:`EditGuard` watches this pass for NodeDefs edited in place."""
        if not self.verify_each or self.guard_edits == "off":
            return False
        module = type(instance).module or ""
        return self.guard_edits == "all" or not module.startswith(BUILTIN_MODULES)

    def _fixpoint(self, group: Fixpoint) -> None:
        for i in range(1, group.max_iter + 1):
            changed = False
            for step in group.steps:
                changed |= self._step(step, i)
            if not changed:
                log.debug("fixpoint %s converged after %d round(s)", group.text(), i)
                return
        msg = (
            f"fixpoint group {{{','.join(s.pass_id for s in group.steps)}}} did not converge "
            f"after {group.max_iter} iterations"
        )
        log.warning(msg)
        self.result.warnings.append(msg)

    def _step(self, step: Step, iteration: int | None) -> bool:
        graph = self.graph
        try:
            instance = step.instantiate()
        except SystemExit as exc:  # plugin code: its exit is its failure, never ours
            raise PassFailure(step.pass_id, list(self.done), _exit_reason(exc)) from None
        guard = None
        if self._guarded(instance):  # the last pass's fingerprints, when it was watched too
            guard = self.guard if self.guard is not None else EditGuard(graph)
        self.guard = guard
        before_ops = dict(graph.op_counts())
        nodes_before = len(graph)
        snapshot = graph.copy() if self.snapshot_each else None
        sig = None if instance.changes_interface else signature(graph)
        for ins in self.instruments:
            ins.before_pass(step.pass_id, graph)
        rw = Rewriter(graph, step.pass_id)
        t0 = time.perf_counter()
        error: str | None = None
        problems: list[str] = []
        rule_counts: Counter[str] = Counter()
        try:
            with counting_rules() as rule_counts:
                instance.run(graph, rw)
            rw.keep_output_names()  # declared outputs keep their names, whatever the pass did
            if rw.erased:
                rw.fix_colocation()
        except UsageError as exc:
            # A pass refusing its options for this graph (a resolution larger than the
            # graph's): the user's to fix, not a failure of the pass. Nothing to restore
            # for: the pipeline stops, and the input file is untouched.
            msg = str(exc)
            raise UsageError(msg if step.pass_id in msg else f"{step.pass_id}: {msg}") from exc
        except GraphSurgeryError as exc:
            error = str(exc)
        except Exception as exc:  # a bug in the pass: report it as its failure
            error = f"{type(exc).__name__}: {exc}"
            log.debug("pass %s raised", step.pass_id, exc_info=True)
        except SystemExit as exc:  # sys.exit() in a plugin pass must not end the run "ok"
            error = _exit_reason(exc)
        seconds = time.perf_counter() - t0
        edited = guard.edited(graph) if guard is not None else []
        if edited:
            # The NodeDefs were changed behind the Rewriter's back: the indexes learn of
            # it, and the whole graph is checked (the dangling input is reported too).
            graph._adopt_edits(edited)
            more = f" (and {len(edited) - 1} more)" if len(edited) > 1 else ""
            error = (f"pass {step.pass_id} edited node {edited[0]!r}{more} without the "
                     "Rewriter" + (f"; it also failed: {error}" if error else ""))
            problems = check_structure(graph)
        elif error is None and self.verify_each:
            problems = verify(graph, sig, shapes=self.verify_shapes, incremental=True)
        record = PassRecord(
            pass_id=step.pass_id,
            options=instance.options,
            seconds=seconds,
            changed=rw.changed,
            ops_before=before_ops,
            ops_after=dict(graph.op_counts()),
            nodes_before=nodes_before,
            nodes_after=len(graph),
            verification="skipped" if not self.verify_each else ("failed" if problems else "ok"),
            problems=problems,
            iteration=iteration,
            error=error,
            changes=rw.changes,
            rule_counts=dict(sorted(rule_counts.items())),
        )
        if error is not None or problems:
            self._fail(record, snapshot, step, restorable=not edited)
            return False
        self.result.records.append(record)
        self.done.append(step.pass_id)
        self.ran.append(step.text())
        for ins in self.instruments:
            ins.after_pass(record, graph)
        return record.changed

    def _fail(self, record: PassRecord, snapshot: Graph | None, step: Step,
              restorable: bool = True) -> None:
        reason = record.error or (
            "verification failed: " + record.problems[0]
            + (f" (and {len(record.problems) - 1} more)" if len(record.problems) > 1 else "")
        )
        if record.error and record.problems:  # edited in place: say what that broke
            reason += f"; {record.problems[0]}"
        record.verification = "failed"
        for ins in self.instruments:
            ins.on_failure(record, self.graph)
        repro = self._write_reproducer(snapshot, step)
        # A snapshot shares the NodeDefs with the graph: one edited in place cannot be
        # restored, so --keep-going stops there too.
        if self.keep_going and snapshot is not None and restorable:
            self.graph.restore(snapshot)
            self.guard = None
            record.changed = False
            self.result.failures.append(record)
            self.result.records.append(record)
            log.error(
                "pass %s FAILED after [%s]: %s; the graph was restored and the pipeline goes on "
                "(--keep-going)%s",
                record.pass_id, ", ".join(self.done), reason,
                f"; reproducer in {repro}" if repro else "",
            )
            return
        raise PassFailure(record.pass_id, list(self.done), reason, record.problems, repro)

    def _write_reproducer(self, snapshot: Graph | None, step: Step) -> str | None:
        """Write ``input.pb`` + ``pipeline.txt`` that reproduce the failure when run again."""
        if self.reproducer_dir is None:
            return None
        from .ir.io import save

        d = self.reproducer_dir / "reproducer"
        d.mkdir(parents=True, exist_ok=True)
        if snapshot is not None:  # the graph exactly as the failing pass received it
            save(snapshot, d / "input.pb")
            steps = [step.text()]
            ins, outs = _interface_args(snapshot)
        else:  # the original input, and every pass that ran before the failing one
            shutil.copyfile(self.source, d / "input.pb")
            steps = [*self.ran, step.text()]
            ins, outs = self.interface or _interface_args(self.graph)
        (d / "pipeline.txt").write_text(",".join(steps) + "\n")
        (d / "full_pipeline.txt").write_text(str(self.pipeline) + "\n")
        inputs, outputs = " ".join(map(shlex.quote, ins)), " ".join(map(shlex.quote, outs))
        plugins = "".join(f" --plugin {p}" for p in _plugins_of(self.pipeline))
        command = ("graphsurgery run input.pb -p @pipeline.txt --target none -o out"
                   + plugins + (f" --inputs {inputs}" if inputs else "")
                   + (f" --outputs {outputs}" if outputs else ""))
        (d / "README.md").write_text(
            f"Pass {step.pass_id} failed. To reproduce, run in this folder:\n\n"
            f"    {command}\n")
        (d / "interface.json").write_text(json.dumps({
            "inputs": ins,
            "outputs": outs,
            "failed_pass": step.pass_id,
            "passes_before": self.done,
        }, indent=2) + "\n")
        return str(d)


def _interface_args(graph: Graph) -> tuple[list[str], list[str]]:
    """``--inputs`` and ``--outputs`` arguments naming ``graph``'s interface; an input that
    is a Placeholder of known rank carries its shape (``x:1,512``, ``x:-1,4``, ``x:[4]``)."""
    ins = []
    for ref in graph.inputs:
        node = graph.node(ref.node) if ref.node in graph else None
        shape = graph.static_shape(ref) if node is not None and node.op == "Placeholder" \
            else None
        if shape is None or ref.port:
            ins.append(str(ref))
        elif len(shape) >= 2:
            ins.append(f"{ref.node}:{','.join(str(d) for d in shape)}")
        else:  # x:4 would read as port 4
            ins.append(f"{ref.node}:[{','.join(str(d) for d in shape)}]")
    return ins, [str(t) for t in graph.outputs]


def _plugins_of(pipeline: Pipeline) -> list[str]:
    """The ``--plugin`` arguments that register the pipeline's passes not built in."""
    import sys

    out: list[str] = []
    for step in pipeline.steps():
        name = get_pass(step.pass_id).module
        if not name or name.startswith(("graphsurgery.", "graphsurgery_builtin")):
            continue
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        plugin = origin if name.startswith("graphsurgery_plugin_") and origin else name
        if plugin not in out:
            out.append(plugin)
    return out


def _exit_reason(exc: SystemExit) -> str:
    """What a plugin's ``sys.exit()`` becomes: the failure of the pass that called it."""
    return f"called sys.exit({exc.code!r}) (SystemExit)"


def op_histogram(graph: Graph) -> dict[str, int]:
    return dict(sorted(Counter(graph.op_counts()).items()))
