"""Op-type pattern trees and the matcher shared by every kind of pattern.

A pattern is a small tree (or DAG) of :class:`P` nodes, one per graph node to match, with
:class:`Any` leaves that match any tensor::

    from graphsurgery.patterns import P, Any

    pat = P("Mul", P("Conv2D|MatMul", capture="conv"), P("Const", capture="k"),
            commutative=True)
    for m in pat.find(graph):
        print(m.root.name, m["conv"].name, m.value("k"))

The same pattern in the compact forms (no predicates there)::

    pat = parse_pattern("Mul(Conv2D|MatMul as conv, Const as k)")
    pat = as_pattern(("Mul", "Conv2D|MatMul as conv", "Const as k"))

Vocabulary:

* ``op``: an op type, ``"A|B"`` for alternatives or ``"*"`` for any op.
* A :class:`P` given input patterns must have exactly that many data inputs, matched in
  order (both orders with ``commutative=True``); a :class:`P` without input patterns is a
  *leaf*: its inputs are not looked at.
* ``capture="name"`` names what matched: ``match["name"]`` is the :class:`Node` for a
  :class:`P` and the :class:`TensorRef` for an :class:`Any`. A name used twice must match
  the same tensor both times (``P("Mul", Any("x"), Any("x"))`` is a square).
* Predicates: ``attrs={"data_format": "NCHW"}`` (a value, or a callable on the decoded
  value, ``None`` when the node lacks it), ``where=lambda node, graph: ...``, and
  ``const=lambda arr: arr.size == 1`` (implies a ``Const``).

Matches:

* The *root* is the node the pattern's top matches; the replacement takes over its output.
* Leaves (:class:`Any`, and :class:`P` without input patterns) are the match's *boundary*:
  matched but not owned, so other nodes may use them too.
* Every other matched node is *interior*, owned by the match: it may not be used outside the
  match (by a node that is not part of it, or as a graph output), so that replacing the
  root leaves it dead. :meth:`Matcher.find` returns matches that own disjoint nodes.

``matcher.explain(graph, "mul_3")`` and ``matcher.find(graph, debug=True)`` say why a
candidate did not match, e.g. ``node 'mul_3': input 1 is Placeholder 'x', pattern wants
Const`` or ``interior node 'mul_2' is used outside the match by 'add_7'``.
"""

from __future__ import annotations

import logging
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from ..ir.attrs import TensorDecodeError
from ..ir.graph import Graph, Node
from ..ir.names import TensorRef

log = logging.getLogger("graphsurgery.patterns")

NodePredicate = Callable[[Node, Graph], "bool | str | Verdict | None"]
TensorPredicate = Callable[[TensorRef, Graph], "bool | str | Verdict | None"]
ConstPredicate = Callable[[np.ndarray], bool]
PatternLike = typing.Union["Pattern", str, tuple]


# ---------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class Verdict:
    """What a ``where`` condition says: accepted, or rejected with a reason.

    A condition (a rule's ``where``, a pattern node's ``where``) may return a bool, a
    ``str`` (a rejection, the string being the reason) or a ``Verdict``, in the style of
    onnxscript's ``MatchResult.fail("reason")``; ``explain()`` shows the reason::

        def where(m, graph):
            if m.value("k").size != 1:
                return Verdict.fail(f"k has {m.value('k').size} values, wants 1")
            return Verdict.ok()
    """

    accepted: bool
    reason: str = ""

    @classmethod
    def ok(cls) -> Verdict:
        """The condition holds."""
        return cls(True)

    @classmethod
    def fail(cls, reason: str) -> Verdict:
        """The condition does not hold, because ``reason``."""
        return cls(False, reason)

    def __bool__(self) -> bool:
        return self.accepted


def rejection(result: typing.Any) -> str | None:
    """None when a condition's ``result`` accepts, else the reason ("" when none given):
    True and ``Verdict.ok()`` accept; False, None, a ``str`` and ``Verdict.fail`` reject."""
    if isinstance(result, Verdict):
        return None if result.accepted else result.reason
    if isinstance(result, str):
        return result
    return None if result else ""


# ---------------------------------------------------------------------- pattern nodes
class Pattern:
    """Base class of patterns: :class:`P`, :class:`Any`, and traced patterns."""

    def compiled(self) -> P:
        """The root :class:`P` of the pattern DAG the matcher walks."""
        raise NotImplementedError

    def matcher(self) -> Matcher:
        """A :class:`Matcher` for this pattern (cached)."""
        m = self.__dict__.get("_matcher")
        if m is None:
            m = Matcher(self)
            self.__dict__["_matcher"] = m
        return m

    def find(self, graph: Graph, *, debug: bool = False) -> list[Match]:
        """Non-overlapping matches in topological order (see :meth:`Matcher.find`)."""
        return self.matcher().find(graph, debug=debug)

    def match(self, graph: Graph, node: str | Node) -> Match | None:
        """The match rooted at ``node``, or None."""
        return self.matcher().match(graph, node)

    def explain(self, graph: Graph, node: str | Node) -> str:
        """Why the pattern does (or does not) match at ``node``, in one line."""
        return self.matcher().explain(graph, node)


class P(Pattern):
    """A pattern node matching one graph node.

    Args:
        op: op type, ``"A|B"`` alternatives, or ``"*"`` for any op (default; ``"Const"``
            when ``const`` is given).
        *inputs: patterns for the data inputs, in order (each a :class:`P`, :class:`Any`,
            or a compact string/tuple form). None given: a leaf, inputs not checked.
        capture: name under which the matched node is reported (``match[capture]``).
        attrs: required attribute values, or callables on the decoded value.
        where: ``where(node, graph)``, any further condition: a bool, or a ``str`` /
            :class:`Verdict` saying why it rejects the node.
        const: ``const(array) -> bool`` on the node's constant value (the node must be a
            ``Const``).
        commutative: also try the two inputs of a binary op swapped.
        port: which output of the node the parent must consume (0; None: any).
        users: for the root only, a :class:`Path` walked down from its output (the chain
            of sole consumers the match also takes; the replacement takes over its end).

    Example::

        P("Mul", Any("x"), P("Const", const=lambda a: a.size == 1, capture="k"),
          commutative=True)
    """

    def __init__(
        self,
        op: str | None = None,
        *inputs: PatternLike,
        capture: str | None = None,
        attrs: Mapping[str, typing.Any] | None = None,
        where: NodePredicate | None = None,
        const: ConstPredicate | None = None,
        commutative: bool = False,
        port: int | None = 0,
        users: Path | None = None,
    ) -> None:
        if op is None:
            op = "Const" if const is not None else "*"
        self.op = op
        self.ops: frozenset[str] | None = (
            None if op == "*" else frozenset(o.strip() for o in op.split("|"))
        )
        if self.ops is not None and const is not None and self.ops != {"Const"}:
            raise UsageError(f"pattern {op!r}: a const= predicate needs op 'Const'")
        self.inputs: tuple[Pattern, ...] | None = (
            tuple(as_pattern(i) for i in inputs) if inputs else None
        )
        if self.inputs is not None:
            for i in self.inputs:
                if not isinstance(i, P | Any | Path):
                    raise UsageError(f"pattern input {i!r} must be a P, Any or Path node")
        if commutative and (self.inputs is None or len(self.inputs) != 2):
            raise UsageError(f"pattern {op!r}: commutative=True needs exactly two inputs")
        self.capture = capture
        self.attrs = dict(attrs or {})
        self.where = where
        self.const = const
        self.commutative = commutative
        self.port = port
        self.users = users
        # Expected output port of each input, set by traced patterns (None: use input.port).
        self.in_ports: tuple[int | None, ...] | None = None
        self.label = ""  # where the pattern node came from (traced node name)

    @property
    def is_leaf(self) -> bool:
        """True when no input patterns were given (the node's inputs are not looked at)."""
        return self.inputs is None

    def compiled(self) -> P:
        """The pattern itself: a :class:`P` is its own root."""
        return self

    def accepts(self, op: str) -> bool:
        """Whether a node of type ``op`` fits this pattern node's op types."""
        return self.ops is None or op in self.ops

    @property
    def wants(self) -> str:
        """The op types it wants, for messages (``"Conv2D|MatMul"``, ``"any op"``)."""
        return "any op" if self.ops is None else self.op

    def __repr__(self) -> str:
        return _render(self, set())


class Any(Pattern):
    """A leaf matching any tensor (a graph input, a constant, any node's output).

    ``Any("x")`` captures the tensor as ``match["x"]`` (a :class:`TensorRef`);
    ``where(tensor, graph) -> bool`` restricts it.
    """

    def __init__(self, capture: str | None = None, *, where: TensorPredicate | None = None):
        self.capture = capture
        self.where = where

    is_leaf = True

    def compiled(self) -> P:
        """Refused: a pattern's root must be a :class:`P`."""
        raise UsageError("a pattern cannot be a bare Any(): its root must be a P node")

    def __repr__(self) -> str:
        return f"${self.capture}" if self.capture else "?"


@dataclass
class Step:
    """One segment of a :class:`Path`: ``link`` repeated ``min`` to ``max`` times.

    Args:
        link: a leaf :class:`P` (op, attrs, ``where``, ``const``; no input patterns) for
            one node, or a tuple of them for a compound link of consecutive nodes (taken
            all or nothing, e.g. ``Reshape <- Pad <- Reshape``).
        min: fewest repetitions; a segment that gets fewer ends the path there.
        max: most repetitions (None: no limit).
        accept: ``accept(nodes, graph)`` on this segment's nodes so far, the new link's
            node(s) last; a rejection (False, a ``str``, a failed :class:`Verdict`) stops the
            segment before that link, as if it had not matched.
        capture: ``match[capture]`` is the tuple of this segment's nodes, in walk order.
    """

    link: P | tuple[P, ...]
    min: int = 0
    max: int | None = None
    accept: Callable[[list[Node], Graph], typing.Any] | None = None
    capture: str | None = None

    def links(self) -> tuple[P, ...]:
        """The link's pattern nodes in walk order (validated: leaves only)."""
        links = self.link if isinstance(self.link, tuple) else (self.link,)
        for p in links:
            if not isinstance(p, P) or not p.is_leaf:
                raise UsageError(f"path link {p!r} must be a P without input patterns")
        return links


class Path(Pattern):
    """A linear chain of nodes joined through data input 0, walked one :class:`Step` after
    the other, then ``then`` (a pattern for the tensor where the walk stopped).

    As an input pattern it walks *up* (producers): each node taken must be read only by
    the node before it (its one consumer, once, not a graph output), so the walk never
    takes a node that something outside the chain uses. As the ``users=`` of the root
    :class:`P` it walks *down* from the root's output through sole consumers that read it
    at input 0, and the match's :attr:`Match.output` becomes the last node's output.

    The walk is greedy and never backtracks: a segment takes as many links as it can (its
    ``accept`` may stop it), and a segment that gets fewer than its ``min`` ends the whole
    walk there. Every node taken is owned by the match. This is the shape of hand-written
    chain matchers ("follow reshapes, then one transpose, then pads and slices")::

        Path(Step(P("Reshape"), capture="reshapes"),
             Step(P("Transpose", where=is_nhwc_to_nchw), min=1, max=1, capture="t"),
             then=Any("x"))
    """

    def __init__(self, *steps: Step, then: PatternLike | None = None) -> None:
        if not steps:
            raise UsageError("a Path needs at least one Step")
        for step in steps:
            step.links()
        self.steps = steps
        self.then = as_pattern(then) if then is not None else Any()
        if not isinstance(self.then, P | Any):
            raise UsageError(f"path then={self.then!r} must be a P or Any node")

    is_leaf = False
    capture = None

    def compiled(self) -> P:
        """Refused: a pattern's root must be a :class:`P`."""
        raise UsageError("a pattern cannot be a bare Path: its root must be a P node")

    def __repr__(self) -> str:
        parts = []
        for step in self.steps:
            text = "+".join(p.op for p in step.links())
            text = f"({text})" if len(step.links()) > 1 else text
            most = "" if step.max is None else step.max
            text += {(0, None): "*", (1, None): "+", (0, 1): "?", (1, 1): ""}.get(
                (step.min, step.max), f"{{{step.min},{most}}}")
            if step.capture:
                text += f" as {step.capture}"
            parts.append(text)
        return "path[" + " <- ".join(parts) + f" <- {self.then!r}]"


def _render(p: Pattern, seen: set[int]) -> str:
    if isinstance(p, Any | Path):
        return repr(p)
    assert isinstance(p, P)
    if id(p) in seen:
        return f"<{p.label or p.op}>"
    seen.add(id(p))
    text = p.op
    if p.const is not None:
        text += f"[{getattr(p.const, 'label', 'const=...')}]"
    if p.commutative:
        text += "~"
    if p.inputs is not None:
        text += "(" + ", ".join(_render(i, seen) for i in p.inputs) + ")"
    if p.capture:
        text += f" as {p.capture}"
    return text


# ---------------------------------------------------------------------- compact forms
_TOKENS = re.compile(r"\s*(?:([A-Za-z_*][A-Za-z0-9_|*]*)|(\$[A-Za-z_][A-Za-z0-9_]*)|(\S))")


def parse_pattern(text: str) -> P:
    """Parse the compact form: ``"Mul~(Mul($x, Const as c1), Const as c2)"``.

    ``Op(inputs...)``, ``A|B`` and ``*`` for op types, ``as name`` captures, ``$x`` an
    :class:`Any` capture, ``?`` an anonymous :class:`Any`, a ``~`` after the op type makes
    it commutative. Predicates need the :class:`P` constructor.
    """
    tokens = [m.group(0).strip() for m in _TOKENS.finditer(text) if m.group(0).strip()]
    pos = 0

    def peek() -> str:
        return tokens[pos] if pos < len(tokens) else ""

    def take(expected: str | None = None) -> str:
        nonlocal pos
        tok = peek()
        if not tok or (expected is not None and tok != expected):
            raise UsageError(
                f"pattern {text!r}: expected {expected or 'more'!r}, found {tok or 'end'!r}"
            )
        pos += 1
        return tok

    def node() -> Pattern:
        tok = take()
        if tok == "?":
            return Any()
        if tok.startswith("$"):
            return Any(tok[1:])
        if not re.fullmatch(r"[A-Za-z_*][A-Za-z0-9_|*]*", tok):
            raise UsageError(f"pattern {text!r}: unexpected {tok!r}")
        commutative = False
        if peek() == "~":
            take()
            commutative = True
        inputs: list[Pattern] = []
        if peek() == "(":
            take("(")
            if peek() != ")":
                inputs.append(node())
                while peek() == ",":
                    take(",")
                    inputs.append(node())
            take(")")
        capture = None
        if peek() == "as":
            take()
            capture = take()
        return P(tok, *inputs, capture=capture, commutative=commutative)

    root = node()
    if pos != len(tokens):
        raise UsageError(f"pattern {text!r}: unexpected {tokens[pos]!r}")
    if not isinstance(root, P):
        raise UsageError(f"pattern {text!r}: the root must be an op, not {root!r}")
    return root


def as_pattern(obj: PatternLike) -> Pattern:
    """A :class:`Pattern` from a pattern, compact text, or a tuple ``(op, *inputs)``."""
    if isinstance(obj, Pattern):
        return obj
    if isinstance(obj, str):
        return parse_pattern(obj) if not obj.startswith(("$", "?")) else _any_text(obj)
    if isinstance(obj, tuple) and obj and isinstance(obj[0], str):
        head = parse_pattern(obj[0])
        if head.inputs is not None:
            raise UsageError(f"tuple pattern {obj!r}: give inputs as tuple items")
        return P(head.op, *obj[1:], capture=head.capture, commutative=head.commutative)
    raise UsageError(f"cannot make a pattern from {obj!r}")


def _any_text(text: str) -> Any:
    text = text.strip()
    return Any() if text == "?" else Any(text[1:])


# ---------------------------------------------------------------------- matches
@dataclass
class Match:
    """One match of a pattern in a graph.

    ``root``: the node the pattern's top matched; ``nodes``: names of the interior nodes
    (owned by the match, excluding the root and the boundary leaves); ``captures``: capture
    name -> :class:`Node` (for a :class:`P`) or :class:`TensorRef` (for an :class:`Any`).
    """

    graph: Graph
    pattern: Pattern
    root: Node
    nodes: tuple[str, ...]
    captures: dict[str, Node | TensorRef | tuple[Node, ...]]
    boundary: tuple[str, ...] = ()
    tensors: dict[str, TensorRef] = field(default_factory=dict, repr=False)
    root_port: int = 0
    end: TensorRef | None = None

    @property
    def owned(self) -> tuple[str, ...]:
        """The root and the interior nodes: what replacing the root makes dead."""
        return (self.root.name, *self.nodes)

    @property
    def output(self) -> TensorRef:
        """The tensor a replacement takes over: the root's, or the end of the root's
        ``users=`` path."""
        return self.end if self.end is not None else self.root.output(self.root_port)

    def __getitem__(self, name: str) -> typing.Any:
        """The capture ``name``: a :class:`Node` (a :class:`P`), a :class:`TensorRef` (an
        :class:`Any`) or a tuple of nodes (a :class:`Step` of a :class:`Path`)."""
        try:
            return self.captures[name]
        except KeyError:
            raise KeyError(f"no capture {name!r} (captures: {sorted(self.captures)})") from None

    def __contains__(self, name: str) -> bool:
        return name in self.captures

    def tensor(self, name: str) -> TensorRef:
        """The tensor a capture matched (for a :class:`P`, the output its parent consumed)."""
        self[name]
        return self.tensors[name]

    def value(self, name: str) -> np.ndarray:
        """The constant value of a capture that matched a ``Const``."""
        return self.graph.const_value(self.tensor(name))

    def __repr__(self) -> str:
        def text(v: Node | TensorRef | tuple[Node, ...]) -> str:
            if isinstance(v, tuple):
                return "[" + ", ".join(n.name for n in v) + "]"
            return v.name if isinstance(v, Node) else str(v)

        caps = ", ".join(f"{k}={text(v)}" for k, v in self.captures.items())
        return f"Match(root={self.root.name!r}, nodes={list(self.nodes)}, captures={{{caps}}})"


# ---------------------------------------------------------------------- the matcher
@dataclass(frozen=True)
class _State:
    """Bindings so far; copied on every binding (patterns are tiny)."""

    bound: dict[int, TensorRef]
    owners: dict[str, int]
    leaves: frozenset[str]
    captures: dict[str, TensorRef]
    nodes: dict[str, str]  # capture name -> node name, for P captures
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)  # Step captures

    def take(self, pat: Pattern, names: list[str], capture: str | None) -> _State:
        """Own the nodes a path step took (and capture them)."""
        owners = {**self.owners, **{n: id(pat) for n in names}}
        chains = {**self.chains, capture: tuple(names)} if capture else self.chains
        return _State(self.bound, owners, self.leaves, self.captures, self.nodes, chains)

    def bind(self, pat: Pattern, t: TensorRef, leaf: bool) -> _State:
        bound = {**self.bound, id(pat): t}
        owners = self.owners if leaf else {**self.owners, t.node: id(pat)}
        leaves = self.leaves | {t.node} if leaf and isinstance(pat, P) else self.leaves
        captures, nodes = self.captures, self.nodes
        cap = getattr(pat, "capture", None)
        if cap:
            captures = {**captures, cap: t}
            if isinstance(pat, P):
                nodes = {**nodes, cap: t.node}
        return _State(bound, owners, leaves, captures, nodes, self.chains)


_EMPTY = _State({}, {}, frozenset(), {}, {}, {})


class _Attempt:
    """One try at one root; keeps the failure that got furthest."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.best: tuple[int, str] | None = None

    def fail(self, st: _State, msg: str) -> None:
        self.fail_at(len(st.bound), msg)

    def fail_at(self, progress: int, msg: str) -> None:
        if self.best is None or progress > self.best[0]:
            self.best = (progress, msg)

    @property
    def reason(self) -> str:
        return self.best[1] if self.best else "no match"


class Matcher:
    """Finds matches of a pattern; see the module docstring for the rules.

    Example::

        m = Matcher(P("Mul", Any("x"), P("Const", capture="k"), commutative=True))
        matches = m.find(graph)
        print(m.explain(graph, "mul_3"))
    """

    def __init__(self, pattern: PatternLike) -> None:
        self.pattern = as_pattern(pattern)
        self._root: P | None = None
        self.rejections: dict[str, str] = {}

    @property
    def root(self) -> P:
        """The compiled root pattern node (a traced pattern is traced on first use)."""
        if self._root is None:
            root = self.pattern.compiled()
            if not isinstance(root, P):
                raise UsageError(f"pattern root must be a P node, not {root!r}")
            self._root = root
        return self._root

    def could_match(self, op: str) -> bool:
        """Cheap prefilter: can a node of type ``op`` be a root?"""
        return self.root.accepts(op)

    # public API ---------------------------------------------------------------------
    def match(self, graph: Graph, node: str | Node) -> Match | None:
        """The match rooted at ``node`` (interior-use rules included), or None."""
        result = self._try(graph, node)
        return result if isinstance(result, Match) else None

    def explain(self, graph: Graph, node: str | Node) -> str:
        """One line: ``node 'x' matches: ...`` or why it does not."""
        result = self._try(graph, node)
        name = node.name if isinstance(node, Node) else node
        if isinstance(result, Match):
            return f"node {name!r} matches: {result!r}"
        return result

    def find(self, graph: Graph, *, debug: bool = False) -> list[Match]:
        """Every match, greedily in topological order, owning disjoint nodes.

        A later match may still use an earlier match's root as a boundary input (a chain
        ``x*2*3*4*5`` gives two matches of ``Mul(Mul($x, Const), Const)``); to rewrite, use a
        :class:`~graphsurgery.patterns.RuleSet`, which re-matches after every rewrite.

        With ``debug`` the reason each candidate (a node whose op fits the root) was
        rejected is logged (logger ``graphsurgery.patterns``, INFO) and kept in
        :attr:`rejections` (root name -> reason).
        """
        self.rejections = {}
        claimed: dict[str, str] = {}
        out: list[Match] = []
        root = self.root
        for name in graph.toposort():
            nd = graph._nodes.get(name)
            if nd is None or not root.accepts(nd.op):
                continue
            result = self._try(graph, name)
            if isinstance(result, Match):
                clash = next((n for n in result.owned if n in claimed), None)
                if clash is None:
                    for n in result.owned:
                        claimed[n] = name
                    out.append(result)
                    continue
                result = (
                    f"node {name!r}: shares node {clash!r} with the match rooted at "
                    f"{claimed[clash]!r}"
                )
            if debug:
                self.rejections[name] = result
                log.info("pattern %r rejected %s", self.pattern, result)
        return out

    # engine -------------------------------------------------------------------------
    def _try(self, graph: Graph, node: str | Node) -> Match | str:
        name = node.name if isinstance(node, Node) else node
        if name not in graph:
            return f"no node named {name!r}"
        root = self.root
        att = _Attempt(graph)
        port = root.port or 0
        for st in self._match(att, root, TensorRef(name, port), _EMPTY, None, None, port):
            end = None
            if root.users is not None:
                st, end = self._path_down(graph, root.users, TensorRef(name, port), st)
            problem = _escape(graph, st, name, None if end is None else end.node)
            if problem is None:
                return self._build(graph, st, name, port, end)
            att.fail_at(len(st.bound) + 1, problem)
        return att.reason

    def _build(self, graph: Graph, st: _State, root: str, port: int,
               end: TensorRef | None = None) -> Match:
        captures: dict[str, Node | TensorRef | tuple[Node, ...]] = {}
        for cap, t in st.captures.items():
            captures[cap] = graph.node(t.node) if cap in st.nodes else t
        for cap, names in st.chains.items():
            captures[cap] = tuple(graph.node(n) for n in names)
        interior = tuple(n for n in st.owners if n != root)
        boundary = tuple(sorted(n for n in st.leaves if n not in st.owners and n != root))
        return Match(
            graph, self.pattern, graph.node(root), interior, captures, boundary,
            dict(st.captures), port, end,
        )

    # paths ------------------------------------------------------------------------
    def _path_up(
        self, att: _Attempt, pat: Path, t: TensorRef, st: _State, parent: str | None,
        index: int | None,
    ) -> Iterator[_State]:
        """Walk ``pat`` up from ``t`` (read by ``parent``), then match ``pat.then``."""
        graph = att.graph
        consumer = parent
        for step in pat.steps:
            links = step.links()
            taken: list[Node] = []
            count, t0, consumer0 = 0, t, consumer
            while step.max is None or count < step.max:
                nodes = _links_up(graph, links, t, consumer, st)
                if nodes is None or not _accepts(step, [*taken, *nodes], graph):
                    break
                taken += nodes
                count += 1
                consumer, t = nodes[-1].name, nodes[-1].data_inputs[0]
            if count < step.min:  # the walk ends before this step
                t, consumer = t0, consumer0
                break
            st = st.take(pat, [n.name for n in taken], step.capture)
        where_index = index if consumer == parent else 0
        yield from self._match(att, pat.then, t, st, consumer, where_index,
                               getattr(pat.then, "port", None))

    def _path_down(
        self, graph: Graph, pat: Path, t: TensorRef, st: _State
    ) -> tuple[_State, TensorRef]:
        """Walk ``pat`` down from the root's output ``t``; returns the state and the end."""
        for step in pat.steps:
            links = step.links()
            taken: list[Node] = []
            count, t0 = 0, t
            while step.max is None or count < step.max:
                nodes = _links_down(graph, links, t, st)
                if nodes is None or not _accepts(step, [*taken, *nodes], graph):
                    break
                taken += nodes
                count += 1
                t = nodes[-1].output()
            if count < step.min:
                t = t0
                break
            st = st.take(pat, [n.name for n in taken], step.capture)
        return st, t

    def _match(
        self,
        att: _Attempt,
        pat: Pattern,
        t: TensorRef,
        st: _State,
        parent: str | None,
        index: int | None,
        want_port: int | None,
    ) -> Iterator[_State]:
        graph = att.graph
        if isinstance(pat, Path):
            yield from self._path_up(att, pat, t, st, parent, index)
            return
        where = f"node {parent!r}: input {index}" if parent is not None else None
        if isinstance(pat, Any):
            prev = st.bound.get(id(pat))
            if prev is not None:  # the same Any used twice (DAG): the same tensor
                if prev == t:
                    yield st
                elif pat.capture:
                    att.fail(st, f"{where}: capture {pat.capture!r} is already {_tname(prev)!r}, "
                                 f"here it would be {_tname(t)!r}")
                else:
                    att.fail(st, f"{where} is {_tname(t)!r}, pattern wants the same tensor as "
                                 f"{_tname(prev)!r}")
                return
            if pat.where is not None:
                reason = rejection(pat.where(t, graph))
                if reason is not None:
                    why = _pred_name(pat.where, "where") + (f": {reason}" if reason else "")
                    att.fail(st, f"{where or 'root'} {_tname(t)!r} fails {why}")
                    return
            if not self._capture_ok(att, pat, t, st, where):
                return
            yield st.bind(pat, t, leaf=True)
            return
        assert isinstance(pat, P)
        prev = st.bound.get(id(pat))
        if prev is not None:  # a shared pattern node (DAG): must be the same node
            if prev.node == t.node and (want_port is None or t.port == want_port):
                yield st
            else:
                att.fail(st, f"{where} is {_tname(t)!r}, pattern wants the same node as "
                             f"{_tname(prev)!r}")
            return
        nd = graph._nodes.get(t.node)
        if nd is None:
            att.fail(st, f"{where or 'root'}: {t.input_string!r} names a missing node")
            return
        if not pat.accepts(nd.op):
            if where is None:
                att.fail(st, f"node {nd.name!r} is {nd.op}, pattern wants {pat.wants}")
            else:
                att.fail(st, f"{where} is {nd.op} {_tname(t)!r}, pattern wants {pat.wants}")
            return
        if want_port is not None and t.port != want_port:
            att.fail(st, f"{where or 'root'} is output {t.port} of {nd.name!r}, pattern "
                         f"wants output {want_port}")
            return
        if not pat.is_leaf:
            owner = st.owners.get(nd.name)
            if owner is not None and owner != id(pat):
                att.fail(st, f"node {nd.name!r} would match two different pattern nodes")
                return
        node = Node(graph, nd)
        for key, want in pat.attrs.items():
            have = node.attr(key)
            if not _attr_ok(have, want):
                att.fail(st, f"node {nd.name!r}: attr {key} is {have!r}, pattern wants "
                             f"{_wants(want)}")
                return
        if pat.const is not None:
            if nd.op != "Const" or t.port != 0:
                att.fail(st, f"node {nd.name!r} is {nd.op}, pattern wants a Const")
                return
            try:
                value = graph.const_value(t)
            except TensorDecodeError as exc:  # malformed, or too large to look at
                att.fail(st, str(exc))
                return
            if not pat.const(value):
                describe = getattr(pat.const, "describe", None)
                why = describe(value) if describe else f"fails {_pred_name(pat.const, 'const')}"
                att.fail(st, f"node {nd.name!r}: Const value {why}")
                return
        if pat.where is not None:
            reason = rejection(pat.where(node, graph))
            if reason is not None:
                why = _pred_name(pat.where, "where") + (f": {reason}" if reason else "")
                att.fail(st, f"node {nd.name!r} fails {why}")
                return
        if not self._capture_ok(att, pat, t, st, where or f"node {nd.name!r}"):
            return
        st = st.bind(pat, t, leaf=pat.is_leaf)
        if pat.inputs is None:
            yield st
            return
        data = node.data_inputs
        if len(data) != len(pat.inputs):
            att.fail(st, f"node {nd.name!r} has {len(data)} data inputs, pattern wants "
                         f"{len(pat.inputs)}")
            return
        orders = [tuple(range(len(data)))]
        if pat.commutative:
            orders.append((1, 0))
        for order in orders:
            yield from self._inputs(att, pat, nd.name, data, order, 0, st)

    def _inputs(
        self,
        att: _Attempt,
        pat: P,
        name: str,
        data: list[TensorRef],
        order: tuple[int, ...],
        k: int,
        st: _State,
    ) -> Iterator[_State]:
        if k == len(order):
            yield st
            return
        assert pat.inputs is not None
        sub = pat.inputs[k]
        port = pat.in_ports[k] if pat.in_ports is not None else getattr(sub, "port", None)
        for st2 in self._match(att, sub, data[order[k]], st, name, order[k], port):
            yield from self._inputs(att, pat, name, data, order, k + 1, st2)

    def _capture_ok(
        self, att: _Attempt, pat: Pattern, t: TensorRef, st: _State, where: str | None
    ) -> bool:
        cap = getattr(pat, "capture", None)
        if not cap or cap not in st.captures or st.captures[cap] == t:
            return True
        att.fail(st, f"{where or 'root'}: capture {cap!r} is already {_tname(st.captures[cap])!r}"
                     f", here it would be {_tname(t)!r}")
        return False


def _sole_consumer(graph: Graph, t: TensorRef) -> Node | None:
    """The one node reading ``t`` (once, output 0), when nothing else uses ``t.node``."""
    if t.port != 0 or t.node not in graph or graph.is_output(t.node):
        return None
    if len(graph._users.get(t.node, ())) != 1:
        return None
    cons = graph.consumers(t)
    return cons[0][0] if len(cons) == 1 else None


def _link_ok(graph: Graph, pat: P, node: Node) -> bool:
    """Whether one node satisfies a leaf pattern's own conditions (op, attrs, const,
    where) and has a data input to continue a path through."""
    if not pat.accepts(node.op) or not node.data_inputs:
        return False
    if not all(_attr_ok(node.attr(k), want) for k, want in pat.attrs.items()):
        return False
    if pat.const is not None:
        return False  # a Const has no input to continue through
    return pat.where is None or rejection(pat.where(node, graph)) is None


def _links_up(graph: Graph, links: tuple[P, ...], t: TensorRef, consumer: str | None,
              st: _State) -> list[Node] | None:
    """The nodes of one (compound) link walked up from ``t``, or None."""
    out = []
    for pat in links:
        user = _sole_consumer(graph, t)
        if user is None or user.name != consumer or t.node in st.owners:
            return None
        node = graph.node(t.node)
        if not _link_ok(graph, pat, node):
            return None
        out.append(node)
        consumer, t = node.name, node.data_inputs[0]
    return out


def _links_down(graph: Graph, links: tuple[P, ...], t: TensorRef, st: _State
                ) -> list[Node] | None:
    """The nodes of one (compound) link walked down from ``t``, or None."""
    out = []
    for pat in links:
        user = _sole_consumer(graph, t)
        if user is None or user.name in st.owners or user.data_inputs[0] != t:
            return None
        if not _link_ok(graph, pat, user):
            return None
        out.append(user)
        t = user.output()
    return out


def _accepts(step: Step, nodes: list[Node], graph: Graph) -> bool:
    return step.accept is None or rejection(step.accept(nodes, graph)) is None


def _escape(graph: Graph, st: _State, root: str, end: str | None = None) -> str | None:
    """Why the interior of a candidate is not self-contained, or None (``end``: the last
    node of the root's ``users=`` path, whose output the replacement takes over)."""
    owned = set(st.owners)
    for name in st.owners:
        if name == root or name == end:
            continue
        if graph.is_output(name):
            return f"interior node {name!r} is a graph output"
        for user in sorted(graph._users.get(name, ())):
            if user not in owned:
                return f"interior node {name!r} is used outside the match by {user!r}"
    return None


def _tname(t: TensorRef) -> str:
    return t.input_string


def _pred_name(fn: typing.Any, kind: str) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return f"the {kind} predicate" if name == "<lambda>" else f"the {kind} predicate {name}"


def _wants(want: typing.Any) -> str:
    if callable(want) and not isinstance(want, type):
        text = getattr(want, "wants", None)
        return text if text is not None else f"{_pred_name(want, 'attr')} to hold"
    return repr(want)


def _attr_ok(have: typing.Any, want: typing.Any) -> bool:
    if callable(want) and not isinstance(want, type):
        return bool(want(have))
    if isinstance(have, np.ndarray) or isinstance(want, np.ndarray):
        return have is not None and np.array_equal(np.asarray(have), np.asarray(want))
    if isinstance(have, bytes) and isinstance(want, str):
        return have == want.encode()
    if isinstance(have, list | tuple) and isinstance(want, list | tuple):
        return list(have) == list(want)
    return have == want

