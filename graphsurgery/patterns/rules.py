"""Declarative rewrite rules: a pattern, a replacement, an optional condition.

::

    from graphsurgery.patterns import P, Any, Rule, register_rules

    def drop_mul_one(b, m):
        return m["x"]                       # the replacement takes over the root's output

    MUL_ONE = Rule(
        "mul_one",
        P("Mul", Any("x"), P("Const", const=lambda a: (a == 1).all()), commutative=True),
        drop_mul_one,
        where=lambda m, graph: m.root.attr("T").is_floating,  # optional
    )
    register_rules("my::simplify", [MUL_ONE], doc='''Drop multiplications by one.

    Before::

        x -> Mul(x, 1) -> y

    After::

        x -> y
    ''')

A replacement is a function ``(builder, match) -> TensorRef`` (or a sequence, one per
output port of the root; or None to decline after all), or a
:class:`~graphsurgery.patterns.traced.Template`; the pattern is a :class:`P`, a compact
form, or a plain function of TF ops (traced). For every match the rule set builds the
replacement with a :class:`Builder` scoped under the root's name, redirects the root's
uses to it and erases what became dead, all inside ``rw.rule_scope(rule.name)`` so the
journal and provenance name the rule. A declared graph output keeps its name: the new
node that replaces it takes the old name (or, when the replacement is an existing tensor,
an ``Identity`` does).

Rules are applied greedily: nodes are visited in topological order and the first rule
that matches at a node is applied at once, so matches never overlap and later nodes see
the rewritten graph; rounds repeat until one applies nothing (at most ``max_rounds``).
"""

from __future__ import annotations

import inspect
import logging
import sys
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from ..errors import UsageError
from ..ir import proto
from ..ir.attrs import TensorDecodeError
from ..ir.graph import Graph, Node
from ..ir.names import TensorRef
from ..registry import Option, Pass, count_rule, register_pass
from ..rewriter import Rewriter
from .builder import Builder
from .optree import Match, Matcher, Pattern, Verdict, as_pattern, rejection

log = logging.getLogger("graphsurgery.patterns")

Replacement = Callable[[Builder, Match], typing.Any]
Condition = Callable[[Match, Graph], "bool | str | Verdict | None"]


class _RoundShapes:
    """Shape inference for one round of a rule set, run when a rule first asks."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._info: dict | None = None

    def get(self) -> dict:
        if self._info is None:
            try:
                self._info = self.graph.infer()
            except Exception as exc:  # best effort (custom ops, odd graphs)
                log.debug("shape inference failed: %s", exc)
                self._info = {}
        return self._info


# The graph a RuleSet round is working on, with its shapes: rewrites keep the static shape
# of every tensor that survives them, so one inference serves the whole round.
_ROUND: ContextVar[tuple[Graph, _RoundShapes] | None] = ContextVar("round", default=None)


def shape_of(graph: Graph, tensor: TensorRef) -> tuple[int, ...] | None:
    """Static shape of ``tensor`` (-1: unknown dim; None: unknown rank) for rule conditions
    and replacements: from the attributes, else from shape inference, which runs at most
    once per round of a :class:`RuleSet` (tensors created during the round are unknown)."""
    shape = graph.static_shape(tensor)
    if shape is None:
        ctx = _ROUND.get()
        if ctx is not None and ctx[0] is graph:
            info = ctx[1].get()
        else:
            info = _RoundShapes(graph).get()
        ti = info.get(tensor)
        shape = None if ti is None else ti.shape
    return None if shape is None else tuple(int(d) for d in shape)


@dataclass
class Rule:
    """``pattern`` -> ``replacement`` where ``where(match, graph)`` holds.

    Args:
        name: the rule's name in the journal and in provenance.
        pattern: a :class:`P`, a compact form (``"Mul($x, Const as k)"``), a traced
            pattern, or a plain function of TF ops (traced on first use).
        replacement: ``(builder, match) -> TensorRef | [TensorRef, ...] | None``.
        where: extra condition on the match: ``where(match, graph)`` returns a bool, or a
            ``str`` / :class:`Verdict` that says why it rejects (shown by :meth:`explain`).
        doc: one line for the pass documentation.
    """

    name: str
    pattern: typing.Any
    replacement: Replacement
    where: Condition | None = None
    doc: str = ""
    matcher: Matcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, Pattern | str | tuple) and callable(self.pattern):
            from .traced import Traced

            self.pattern = Traced(self.pattern)
        self.pattern = as_pattern(self.pattern)
        self.matcher = Matcher(self.pattern)

    def match(self, graph: Graph, node: str | Node) -> Match | None:
        """The match at ``node`` that also satisfies ``where``, or None.

        A constant too large (or too malformed) to decode is no match: a rule looks at
        values, and a legal one-value Const of shape [32768, 32768] must not stop a pass.
        """
        try:
            m = self.matcher.match(graph, node)
            if m is None or self.rejects(m, graph) is not None:
                return None
        except TensorDecodeError:
            return None
        return m

    def rejects(self, m: Match, graph: Graph) -> str | None:
        """None when ``where`` accepts the match, else its reason ("" when it gave none)."""
        return None if self.where is None else rejection(self.where(m, graph))

    def explain(self, graph: Graph, node: str | Node) -> str:
        """Why the rule does (or does not) apply at ``node``, with the reason a ``where``
        that returned a ``str`` or :class:`Verdict` gave."""
        m = self.matcher.match(graph, node)
        if m is None:
            return self.matcher.explain(graph, node)
        try:
            reason = self.rejects(m, graph)
        except TensorDecodeError as exc:
            reason = str(exc)
        if reason is not None:
            return (f"node {m.root.name!r}: the pattern matches but the rule's where rejects it"
                    + (f": {reason}" if reason else ""))
        return self.matcher.explain(graph, node)

    def apply(self, graph: Graph, rw: Rewriter, node: str | Node) -> bool:
        """Rewrite at ``node`` if the rule matches there; True when the graph changed."""
        m = self.match(graph, node)
        if m is None:
            return False
        with rw.rule_scope(self.name):
            return _rewrite(self, m, rw)


def _rewrite(rule: Rule, m: Match, rw: Rewriter) -> bool:
    b = Builder(rw, scope=m.root.name)
    try:
        result = rule.replacement(b, m)
    except TensorDecodeError:  # a value too large to decode: leave the match alone
        result = None
    if result is None:
        rw.erase_dead(b.created)
        return False
    if isinstance(result, TensorRef | Node | str):
        pairs = [(m.output, _ref(result))]
    elif isinstance(result, Sequence):
        pairs = [(m.root.output(i), _ref(r)) for i, r in enumerate(result) if r is not None]
    else:
        raise UsageError(
            f"rule {rule.name}: replacement returned {type(result).__name__}, expected a "
            "TensorRef, a sequence of them, or None"
        )
    pairs = [(old, new) for old, new in pairs if old != new]
    graph = rw.graph
    for old, new in pairs:
        rw.replace_uses(old, new, outputs=False, exclude=b.created)
    moved = dict(pairs)
    slots = [(i, t) for i, t in enumerate(graph.outputs) if t in moved]
    if slots:
        rw.set_outputs([moved.get(t, t) for t in graph.outputs])
    rw.erase_dead([*m.owned, *b.created])
    for i, old in slots:
        _keep_output_name(b, i, old, moved[old])
    return bool(pairs)


def _keep_output_name(b: Builder, slot: int, old: TensorRef, new: TensorRef) -> None:
    """Keep the name of declared output ``slot`` (the graph's interface) after a rewrite.

    A node the replacement created takes the old name; an existing tensor gets an
    ``Identity`` under it. Nothing is done when the old node survives (control users) or
    the output was not port 0.
    """
    rw, graph = b.rw, b.graph
    if old.port != 0 or old.node in graph or new.node not in graph:
        return
    if new.node in b.created and new.port == 0:
        nd = proto.NodeDef()
        nd.CopyFrom(graph.node_def(new.node))
        nd.name = old.node
        rw.replace_node_def(nd)
        rw.replace_node(new.node, old.node)
        rw.erase(new.node)
        return
    dtype = b.dtype(new)
    if dtype is None:
        return
    ident = rw.add_node("Identity", [new], {"T": dtype}, name=old.node)
    outputs = list(graph.outputs)
    outputs[slot] = ident.output()
    rw.set_outputs(outputs)


def _ref(x: TensorRef | Node | str) -> TensorRef:
    if isinstance(x, TensorRef):
        return x
    if isinstance(x, Node):
        return x.output()
    return TensorRef.parse(x)


class RuleSet:
    """An ordered set of rules applied greedily (see the module docstring).

    Example::

        rs = RuleSet([FOLD_CONSTS, MUL_MUL])
        n = rs.apply(graph, rw)          # rewrites applied; rs.counts per rule
        # (inside a pipeline the counts also reach PassRecord.rule_counts)
        print(rs.explain(graph, "mul_3"))
    """

    def __init__(self, rules: Iterable[Rule], *, max_rounds: int = 10) -> None:
        self.rules = list(rules)
        names = [r.name for r in self.rules]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise UsageError(f"rule set has two rules named {dup!r}")
        self.max_rounds = max_rounds
        self.counts: Counter[str] = Counter()
        self.rounds = 0
        self.converged = True

    def apply_once(self, graph: Graph, rw: Rewriter) -> int:
        """One round over the nodes in topological order; returns the rewrites applied."""
        applied = 0
        token = _ROUND.set((graph, _RoundShapes(graph)))
        try:
            for name in graph.toposort():
                nd = graph._nodes.get(name)
                if nd is None:
                    continue
                for rule in self.rules:
                    if rule.matcher.could_match(nd.op) and rule.apply(graph, rw, name):
                        self.counts[rule.name] += 1
                        count_rule(rule.name)
                        applied += 1
                        break
        finally:
            _ROUND.reset(token)
        return applied

    def apply(self, graph: Graph, rw: Rewriter, *, max_rounds: int | None = None) -> int:
        """Rounds until one applies nothing (at most ``max_rounds``); returns the total."""
        limit = self.max_rounds if max_rounds is None else max_rounds
        total = 0
        self.converged = False
        self.rounds = 0
        while self.rounds < limit:
            self.rounds += 1
            n = self.apply_once(graph, rw)
            total += n
            if n == 0:
                self.converged = True
                break
        return total

    def explain(self, graph: Graph, node: str | Node) -> str:
        """One line per rule: whether and why it applies at ``node``."""
        return "\n".join(f"{r.name}: {r.explain(graph, node)}" for r in self.rules)


def register_rules(
    pass_id: str,
    rules: Iterable[Rule],
    *,
    doc: str,
    max_rounds: int = 10,
    infers_shapes: bool = False,
) -> type[Pass]:
    """Register ``rules`` as the pass ``pass_id``; returns the pass class.

    The pass applies the rules until a round matches nothing, at most ``max_rounds``
    rounds (an option of the pass), and warns when it stops before that. ``doc`` is the
    pass documentation (summary line, ``Before::``/``After::`` blocks); the rule list is
    appended to it. ``infers_shapes`` marks a rule set whose rules usually ask for shapes
    (:attr:`Pass.infers_shapes`).
    """
    rules = tuple(rules)
    RuleSet(rules)  # validates the names
    if not doc.strip():
        raise UsageError(f"pass {pass_id}: rules need a doc (summary, Before::, After::)")
    lines = [f"    {r.name}: {r.doc or repr(r.pattern)}" for r in rules]
    full_doc = inspect.cleandoc(doc) + "\n\nRules::\n\n" + "\n".join(lines) + "\n"
    module = sys._getframe(1).f_globals.get("__name__", __name__)

    def run(self: Pass, graph: Graph, rw: Rewriter) -> None:
        rs = RuleSet(type(self).rules, max_rounds=self.max_rounds)
        rs.apply(graph, rw)
        if not rs.converged:
            log.warning("%s: rules still matched after %d rounds (max_rounds)",
                        pass_id, rs.rounds)

    cls = type(
        pass_id.split("::")[-1],
        (Pass,),
        {
            "__doc__": full_doc,
            "__module__": module,
            "rules": rules,
            "infers_shapes": infers_shapes,
            "max_rounds": Option(int, max_rounds, "most rounds over the graph"),
            "run": run,
        },
    )
    register_pass(pass_id)(cls)
    return cls
