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

NodePredicate = Callable[[Node, Graph], bool]
TensorPredicate = Callable[[TensorRef, Graph], bool]
ConstPredicate = Callable[[np.ndarray], bool]
PatternLike = typing.Union["Pattern", str, tuple]


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
        where: ``where(node, graph) -> bool``, any further condition.
        const: ``const(array) -> bool`` on the node's constant value (the node must be a
            ``Const``).
        commutative: also try the two inputs of a binary op swapped.
        port: which output of the node the parent must consume (0; None: any).

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
                if not isinstance(i, P | Any):
                    raise UsageError(f"pattern input {i!r} must be a P or Any node")
        if commutative and (self.inputs is None or len(self.inputs) != 2):
            raise UsageError(f"pattern {op!r}: commutative=True needs exactly two inputs")
        self.capture = capture
        self.attrs = dict(attrs or {})
        self.where = where
        self.const = const
        self.commutative = commutative
        self.port = port
        # Expected output port of each input, set by traced patterns (None: use input.port).
        self.in_ports: tuple[int | None, ...] | None = None
        self.label = ""  # where the pattern node came from (traced node name)

    @property
    def is_leaf(self) -> bool:
        return self.inputs is None

    def compiled(self) -> P:
        return self

    def accepts(self, op: str) -> bool:
        return self.ops is None or op in self.ops

    @property
    def wants(self) -> str:
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
        raise UsageError("a pattern cannot be a bare Any(): its root must be a P node")

    def __repr__(self) -> str:
        return f"${self.capture}" if self.capture else "?"


def _render(p: Pattern, seen: set[int]) -> str:
    if isinstance(p, Any):
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
    captures: dict[str, Node | TensorRef]
    boundary: tuple[str, ...] = ()
    tensors: dict[str, TensorRef] = field(default_factory=dict, repr=False)
    root_port: int = 0

    @property
    def owned(self) -> tuple[str, ...]:
        """The root and the interior nodes: what replacing the root makes dead."""
        return (self.root.name, *self.nodes)

    @property
    def output(self) -> TensorRef:
        """The root tensor a replacement takes over."""
        return self.root.output(self.root_port)

    def __getitem__(self, name: str) -> Node | TensorRef:
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
        caps = ", ".join(
            f"{k}={v.name if isinstance(v, Node) else str(v)}" for k, v in self.captures.items()
        )
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
        return _State(bound, owners, leaves, captures, nodes)


_EMPTY = _State({}, {}, frozenset(), {}, {})


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
            problem = _escape(graph, st, name)
            if problem is None:
                return self._build(graph, st, name, port)
            att.fail_at(len(st.bound) + 1, problem)
        return att.reason

    def _build(self, graph: Graph, st: _State, root: str, port: int) -> Match:
        captures: dict[str, Node | TensorRef] = {}
        for cap, t in st.captures.items():
            captures[cap] = graph.node(t.node) if cap in st.nodes else t
        interior = tuple(n for n in st.owners if n != root)
        boundary = tuple(sorted(n for n in st.leaves if n not in st.owners and n != root))
        return Match(
            graph, self.pattern, graph.node(root), interior, captures, boundary,
            dict(st.captures), port,
        )

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
            if pat.where is not None and not pat.where(t, graph):
                why = _pred_name(pat.where, "where")
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
        if pat.where is not None and not pat.where(node, graph):
            att.fail(st, f"node {nd.name!r} fails {_pred_name(pat.where, 'where')}")
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


def _escape(graph: Graph, st: _State, root: str) -> str | None:
    """Why the interior of a candidate is not self-contained, or None."""
    owned = set(st.owners)
    for name in st.owners:
        if name == root:
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

