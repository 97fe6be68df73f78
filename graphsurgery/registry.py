"""Passes: the registry, typed options, and the base class.

A pass is registered under a namespaced id (``core::dce``, ``stylegan::fold_noise``)
and instantiated afresh for every run. It may be a class::

    @gs.register_pass("my::drop_checks")
    class DropChecks(gs.Pass):
        '''Remove CheckNumerics nodes.

        Before::  x -> CheckNumerics -> y
        After::   x -> y
        '''
        op = gs.Option(str, "CheckNumerics", "op type to remove")

        def run(self, graph, rw):
            for node in graph.nodes(self.op):
                rw.replace_node(node, node.input_node(0))
                rw.erase(node)

or a function whose keyword-only parameters are its options::

    @gs.register_pass("my::prune")
    def prune(graph: gs.Graph, rw: gs.Rewriter, *, size: int = 256) -> None: ...

Option values from the command line or pipeline text arrive as strings and are converted
to the declared type; an unknown option or a value of the wrong type is a UsageError.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, get_type_hints

from .errors import UsageError
from .ir.graph import Graph
from .rewriter import Rewriter

_MISSING = object()


@dataclass
class Option:
    """A typed pass option: ``type`` is bool, int, float, str or a tuple of allowed strings."""

    type: Any
    default: Any = _MISSING
    help: str = ""
    name: str = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The allowed strings of a choice option, else None."""
        return self.type if isinstance(self.type, tuple) else None

    @property
    def type_name(self) -> str:
        """The type for messages and listings: ``int``, ``const|input|zero``."""
        if self.choices:
            return "|".join(self.choices)
        return getattr(self.type, "__name__", str(self.type))

    def convert(self, value: Any, where: str) -> Any:
        """Convert and validate ``value`` (strings are parsed), or raise UsageError."""
        choices = self.choices
        if choices:
            if value not in choices:
                raise UsageError(
                    f"{where}: option {self.name}={value!r} must be one of {', '.join(choices)}"
                )
            return value
        t = self.type
        if isinstance(value, str) and t is not str:
            try:
                if t is bool:
                    low = value.lower()
                    if low not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                        raise ValueError(value)
                    return low in ("true", "1", "yes", "on")
                return t(value)
            except (TypeError, ValueError):
                raise UsageError(
                    f"{where}: option {self.name}={value!r} is not a valid {self.type_name}"
                ) from None
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            raise UsageError(
                f"{where}: option {self.name}={value!r} is not a valid {self.type_name}"
            )
        return value

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        return instance._options[self.name]


class Pass:
    """Base class of all passes. Subclasses set :meth:`run` and declare :class:`Option` s."""

    id: ClassVar[str] = ""
    module: ClassVar[str] = ""
    #: True for a pass that changes the declared outputs' dtype or shape on purpose (a layout
    #: or output-format change); the pass manager then skips its interface check. A pass may
    #: make it a property that depends on its options.
    changes_interface: ClassVar[bool] = False
    #: True for a pass that asks for shape inference (:meth:`Graph.infer`): a pipeline that
    #: holds one starts loading TensorFlow's C library in the background before it needs
    #: it (:meth:`Pipeline.warm_up`). Only a hint: a pass that infers without it still works.
    infers_shapes: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        specs = self.option_specs()
        where = f"pass {self.id}"
        unknown = sorted(set(options) - set(specs))
        if unknown:
            known = ", ".join(specs) or "none"
            hint = did_you_mean(unknown[0], specs)
            raise UsageError(f"{where}: unknown option {unknown[0]!r}{hint} (options: {known})")
        self._options: dict[str, Any] = {}
        for name, spec in specs.items():
            if name in options:
                self._options[name] = spec.convert(options[name], where)
            elif spec.default is _MISSING:
                raise UsageError(f"{where}: option {name!r} is required")
            else:
                self._options[name] = spec.default

    @classmethod
    def option_specs(cls) -> dict[str, Option]:
        """Every :class:`Option` the pass declares (base classes' first), by name."""
        specs: dict[str, Option] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Option):
                    specs[name] = value
        return specs

    @property
    def options(self) -> dict[str, Any]:
        """This instance's option values, converted and defaulted."""
        return dict(self._options)

    @classmethod
    def summary(cls) -> str:
        """The docstring's first sentence (its first paragraph, joined into one line),
        reStructuredText markup (````x````, ``:class:`x```) removed."""
        return one_line_doc(inspect.getdoc(cls) or "")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        """Rewrite ``graph`` in place; every change goes through ``rw``."""
        raise NotImplementedError(f"pass {self.id} does not implement run()")


_PASSES: dict[str, type[Pass]] = {}

# Rule applications of the pass running now (see count_rule); None outside a pipeline.
_RULE_COUNTS: ContextVar[Counter[str] | None] = ContextVar("rule_counts", default=None)


def count_rule(rule: str, n: int = 1) -> None:
    """Note that ``rule`` rewrote the graph ``n`` times in the pass running now.

    :class:`~graphsurgery.patterns.RuleSet` calls it for every rule it applies; a
    hand-written pass may call it for its own named rewrites. The pipeline records the
    counts per pass (``PassRecord.rule_counts``, ``rule_counts`` in summary.json, ``-v``).
    Outside :func:`counting_rules` it does nothing.
    """
    counts = _RULE_COUNTS.get()
    if counts is not None:
        counts[rule] += n


@contextmanager
def counting_rules() -> Iterator[Counter[str]]:
    """Collect :func:`count_rule` calls made inside the block into the yielded Counter."""
    counts: Counter[str] = Counter()
    token = _RULE_COUNTS.set(counts)
    try:
        yield counts
    finally:
        _RULE_COUNTS.reset(token)


def register_pass(pass_id: str) -> Callable[[Any], Any]:
    """Register a Pass subclass or a function ``(graph, rw, *, options...)`` as ``pass_id``."""
    _check_id(pass_id)

    def deco(obj: Any) -> Any:
        cls = obj if isinstance(obj, type) else _function_pass(obj, pass_id)
        if not issubclass(cls, Pass):
            raise TypeError(f"{obj!r} is neither a Pass subclass nor a function")
        if pass_id in _PASSES and _PASSES[pass_id] is not cls:
            prev = _PASSES[pass_id].module
            raise UsageError(f"pass {pass_id} is registered twice (by {prev} and {obj.__module__})")
        cls.id = pass_id
        cls.module = obj.__module__
        _PASSES[pass_id] = cls
        return obj

    return deco


def _check_id(pass_id: str) -> None:
    ns, sep, name = pass_id.partition("::")
    if not sep or not ns.isidentifier() or not name.isidentifier():
        raise UsageError(f"pass id {pass_id!r} must look like 'namespace::name'")


_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def _function_pass(fn: Callable[..., None], pass_id: str) -> type[Pass]:
    sig = inspect.signature(fn)
    try:
        hints = get_type_hints(fn)
    except Exception:  # unresolvable annotations: fall back to the defaults' types
        hints = {}
    attrs: dict[str, Any] = {"__doc__": fn.__doc__, "__module__": fn.__module__}
    for p in sig.parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        t = hints.get(p.name)
        if isinstance(t, str):
            t = _TYPES.get(t)
        if t is None and p.default is not inspect.Parameter.empty:
            t = type(p.default)
        if t not in (bool, int, float, str):
            raise TypeError(f"pass {pass_id}: option {p.name!r} needs a bool/int/float/str type")
        default = _MISSING if p.default is inspect.Parameter.empty else p.default
        opt = Option(t, default, "")
        opt.name = p.name
        attrs[p.name] = opt

    def run(self: Pass, graph: Graph, rw: Rewriter) -> None:
        fn(graph, rw, **self._options)

    attrs["run"] = run
    return type(fn.__name__, (Pass,), attrs)


def get_pass(pass_id: str) -> type[Pass]:
    """The registered pass class for ``pass_id`` (loads plugins on first use)."""
    from .plugins import load_entry_points

    load_entry_points()
    try:
        return _PASSES[pass_id]
    except KeyError:
        close = [p for p in _PASSES if p.split("::")[-1] == pass_id.split("::")[-1]]
        hint = (f"; did you mean {close[0]}?" if close else did_you_mean(pass_id, _PASSES)
                or "; see `graphsurgery passes`")
        raise UsageError(f"unknown pass {pass_id!r}{hint}") from None


def one_line_doc(doc: str) -> str:
    """The first sentence of ``doc``'s first paragraph on one line, without rST backticks.

    A paragraph that wraps across lines is joined, so the line never stops mid-sentence.
    """
    import re

    para = doc.strip().split("\n\n")[0]
    text = " ".join(line.strip() for line in para.splitlines())
    # :class:`x.Y` -> x.Y, :class:`~x.Y` -> Y
    text = re.sub(r":[a-z]+:`(~?)([^`]+)`",
                  lambda m: m[2].rsplit(".", 1)[-1] if m[1] else m[2], text)
    text = text.replace("``", "").replace("`", "")
    match = re.search(r"(?<=[.!?])\s+(?=[A-Z])", text)  # the end of the first sentence
    return text[:match.start()] if match else text


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean X?"`` for the closest of ``choices`` (difflib), or ``""``."""
    import difflib

    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close and "::" in word:  # compare the names without their namespaces
        tails = {c.split("::")[-1]: c for c in choices}
        close = [tails[t] for t in difflib.get_close_matches(word.split("::")[-1], tails, n=1)]
    return f"; did you mean {close[0]}?" if close else ""


def all_passes() -> dict[str, type[Pass]]:
    """Every registered pass by id, sorted (plugins loaded)."""
    from .plugins import load_entry_points

    load_entry_points()
    return dict(sorted(_PASSES.items()))


def unregister_pass(pass_id: str) -> None:
    """Remove a registration (for tests and interactive sessions)."""
    _PASSES.pop(pass_id, None)


def describe_options(cls: type[Pass]) -> list[str]:
    """One line per option: ``name: type (default ...) help``."""
    out = []
    for name, spec in cls.option_specs().items():
        default = "required" if spec.default is _MISSING else f"default {spec.default!r}"
        line = f"{name}: {spec.type_name} ({default})"
        if spec.help:
            line += f" {spec.help}"
        out.append(line)
    return out


def option_json(cls: type[Pass]) -> list[dict[str, Any]]:
    """The pass's options as JSON: name, type, default (absent when required), help."""
    out = []
    for name, spec in cls.option_specs().items():
        entry: dict[str, Any] = {"name": name, "type": spec.type_name, "help": spec.help}
        if spec.default is _MISSING:
            entry["required"] = True
        else:
            entry["default"] = spec.default
        out.append(entry)
    return out


def passes_in_namespace(namespace: str) -> Sequence[str]:
    """The ids of the registered passes in ``namespace`` (``core``, ``stylegan``)."""
    return [p for p in all_passes() if p.startswith(namespace + "::")]
