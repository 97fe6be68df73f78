"""What a diff drawing shows: the changed neighbourhood, collapsed scopes, annotations.

A 3,000-node generator cannot be laid out as it is, and would be unreadable if it could.
:func:`build_view` turns a :class:`~graphsurgery.diff.DiffResult` into a :class:`DiffView`
of at most ``max_nodes`` drawn items:

* the *changed* nodes (added, removed, changed) and ``context`` hops of unchanged
  neighbours around them are drawn as nodes, coloured by status, labelled with op, dtype,
  static shape and provenance (which pass and rule made them);
* constants and very-high-degree nodes (a latent broadcast to 27 layers) are not drawn as
  nodes with edges: they are listed as small annotation rows inside the nodes that read
  them, coloured when the edge itself was added or removed (a CSE merge reads
  ``- shape_3  + shape`` in the consumer);
* every other node is collapsed into one box per name scope, with its node count and main
  ops (``64x64 · 309 nodes``); scopes that hold drawn nodes become nested clusters, so
  repeated blocks (``8x8``, ``16x16``, ...) show as clusters of the same shape labelled by
  scope;
* a removed node is linked to the node its users now read (``replaced by``);
* above ``max_nodes``, sibling blocks whose changes are identical (same relative names,
  ops and statuses; ``Dense0``...``Dense7``, ``8x8``...``1024x1024``) are folded into one
  box (``same 14 changes as 8x8``), then the context is dropped, then the deepest scopes
  are collapsed into boxes that count their changes. :attr:`DiffView.notes` says which of
  these happened.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..diff import DiffResult
from ..ir.dtypes import DType
from ..ir.graph import Graph
from ..ir.names import Input

log = logging.getLogger("graphsurgery")

# Nodes read by more than this many others are annotations, not nodes with edges.
HUB_DEGREE = 8
# Annotation rows shown per node; the rest are counted.
MAX_ANNOTATIONS = 4
# ``shapes="auto"`` runs TensorFlow's shape inference only on graphs up to this size, and
# only when TensorFlow is already loaded (importing it takes seconds).
AUTO_INFER_NODES = 600

_SHORT_DTYPES = {
    "float32": "f32", "float16": "f16", "float64": "f64", "bfloat16": "bf16", "int32": "i32",
    "int64": "i64", "int16": "i16", "int8": "i8", "uint8": "u8", "uint16": "u16", "bool": "bool",
    "string": "str", "resource": "res", "variant": "var",
}  # fmt: skip


@dataclass
class Annotation:
    """A constant or high-degree input shown as a row inside the node that reads it."""

    text: str
    status: str  # colour: added | removed | changed | unchanged
    kind: str  # const | hub


@dataclass
class DrawNode:
    key: str  # the SVG id: "n:<node name>"
    name: str
    op: str
    status: str  # added | removed | changed | unchanged
    scope: str  # the cluster it is drawn in ("" at top level)
    type_text: str = ""  # "f32[1,16,16,8]"
    detail: str = ""  # what changed, replaced by, ...
    provenance: str = ""
    annotations: list[Annotation] = field(default_factory=list)
    more_annotations: int = 0


@dataclass
class DrawBox:
    """A collapsed group of nodes: a whole scope, the rest of a scope, or folded repeats."""

    key: str  # the SVG id: "box:<scope>", "rest:<scope>", "repeat:<scope>"
    kind: str  # scope | rest | repeat
    scope: str  # the cluster it is drawn in
    title: str
    count: int
    statuses: dict[str, int] = field(default_factory=dict)  # nodes per status
    ops: list[tuple[str, int]] = field(default_factory=list)  # main ops
    note: str = ""

    @property
    def status(self) -> str:
        """``unchanged``, or ``mixed`` when the box hides changes."""
        changes = sum(v for k, v in self.statuses.items() if k != "unchanged")
        return "repeat" if self.kind == "repeat" else ("mixed" if changes else "unchanged")


@dataclass
class DrawEdge:
    src: str
    dst: str
    status: str  # same | added | removed | mixed | replaced
    count: int = 1
    control: bool = False


@dataclass
class DiffView:
    title: str
    nodes: list[DrawNode]
    boxes: list[DrawBox]
    edges: list[DrawEdge]
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)
    clusters: bool = True

    @property
    def size(self) -> int:
        """Drawn items: nodes plus boxes."""
        return len(self.nodes) + len(self.boxes)


def scope_of(name: str) -> str:
    return name.rpartition("/")[0]


def _prefixes(scope: str) -> Iterable[str]:
    """``a``, ``a/b``, ``a/b/c`` for scope ``a/b/c``."""
    if not scope:
        return
    parts = scope.split("/")
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def _natural(text: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


_DIGITS = re.compile(r"\d+")


class _Union:
    """Both graphs as one: every node of either, with edge statuses."""

    def __init__(self, before: Graph, after: Graph, diff: DiffResult) -> None:
        self.before, self.after, self.diff = before, after, diff
        self.status: dict[str, str] = {}
        for name in after._nodes:
            self.status[name] = "unchanged"
        for name in diff.changed:
            self.status[name] = "changed"
        for name in diff.added:
            self.status[name] = "added"
        for name in diff.removed:
            self.status[name] = "removed"
        self.order = list(after._nodes) + [n for n in diff.removed]
        self._scopes: dict[str, str] = {}
        # (src, dst, control) -> status
        self.edges: dict[tuple[str, str, bool], str] = {}
        self.preds: dict[str, list[str]] = defaultdict(list)
        self.succs: dict[str, list[str]] = defaultdict(list)
        for name in self.order:
            st = self.status[name]
            keys_after = self._inputs(after._nodes.get(name)) if st != "removed" else set()
            keys_before = (self._inputs(before._nodes.get(name))
                           if st in ("removed", "changed") else set())
            for key in keys_after | keys_before:
                src, control = key
                if st == "added":
                    es = "added"
                elif st == "removed":
                    es = "removed"
                elif st == "changed":
                    es = ("same" if key in keys_after and key in keys_before
                          else "added" if key in keys_after else "removed")
                else:
                    es = "same"
                if src not in self.status:
                    continue  # a dangling input
                self.edges[(src, name, control)] = es
                self.preds[name].append(src)
                self.succs[src].append(name)

    @staticmethod
    def _inputs(nd: Any) -> set[tuple[str, bool]]:
        if nd is None:
            return set()
        out = set()
        for s in nd.input:
            inp = Input.parse(s)
            out.add((inp.node, inp.control))
        return out

    def scope(self, name: str) -> str:
        """The cluster of ``name``: its name scope, skipping scopes that are node names
        (``conv/weight/read`` sits with ``conv/weight`` in ``conv``)."""
        hit = self._scopes.get(name)
        if hit is None:
            s = scope_of(name)
            while s and s in self.status:
                s = scope_of(s)
            hit = self._scopes[name] = s
        return hit

    def node_def(self, name: str) -> Any:
        nd = self.after._nodes.get(name)
        return nd if nd is not None else self.before._nodes[name]

    def graph_of(self, name: str) -> Graph:
        return self.before if self.status[name] == "removed" else self.after

    def op(self, name: str) -> str:
        return self.node_def(name).op


class _Shapes:
    """dtype and static shape text of a node's first output, inference run once per graph."""

    def __init__(self, mode: str, graphs: Iterable[Graph]) -> None:
        self.inferred: dict[int, dict] = {}
        if mode not in ("auto", "static", "infer"):
            raise ValueError(f"shapes must be auto, static or infer, not {mode!r}")
        for g in graphs:
            if id(g) in self.inferred:
                continue
            cheap = len(g) <= AUTO_INFER_NODES and "tensorflow" in sys.modules
            if mode == "infer" or (mode == "auto" and cheap):
                try:
                    self.inferred[id(g)] = g.infer()
                except Exception as exc:  # shapes are a nicety in a drawing
                    log.debug("shape inference failed for the diff drawing: %s", exc)

    def text(self, graph: Graph, name: str) -> str:
        from ..ir.names import TensorRef

        ref = TensorRef(name, 0)
        dtype = graph.dtype_hint(ref)
        shape = graph.static_shape(ref)
        info = self.inferred.get(id(graph), {}).get(ref)
        if info is not None:
            dtype = dtype or info.dtype
            shape = shape if shape is not None else info.shape
        dt = ""
        if isinstance(dtype, DType) and dtype != DType.invalid:
            dt = _SHORT_DTYPES.get(dtype.name, dtype.name)
        if shape is None:
            return dt
        dims = ",".join("?" if d is None or d < 0 else str(d) for d in shape)
        return f"{dt}[{dims}]"


def build_view(
    before: Graph,
    after: Graph,
    diff: DiffResult,
    *,
    context: int = 1,
    expand: bool = False,
    max_nodes: int = 300,
    shapes: str = "auto",
    title: str = "",
    hub_degree: int = HUB_DEGREE,
) -> DiffView:
    """Choose what to draw for ``diff`` (see the module docstring).

    ``context``: hops of unchanged neighbours drawn around the changes. ``expand``: draw
    every node (still within ``max_nodes``; repeated blocks are never folded).
    ``shapes``: ``static`` (Const, Placeholder and recorded shapes only), ``infer``
    (TensorFlow's shape inference, once per graph) or ``auto`` (static, plus inference on
    graphs of at most 600 nodes when TensorFlow is already loaded).
    """
    u = _Union(before, after, diff)
    b = _Builder(u, context=context, expand=expand, max_nodes=max(max_nodes, 10),
                 hub_degree=hub_degree)
    b.choose()
    sh = _Shapes(shapes, [before, after])
    return b.view(sh, title)


class _Builder:
    def __init__(self, u: _Union, *, context: int, expand: bool, max_nodes: int,
                 hub_degree: int) -> None:
        self.u = u
        self.context = context
        self.expand = expand
        self.max_nodes = max_nodes
        self.notes: list[str] = []
        st = u.status
        # Constants (unless the change is the constant itself) and hubs are set aside.
        self.aside_const = {
            n for n in u.order
            if u.op(n) == "Const" and st[n] != "changed" and u.succs.get(n)
        }
        self.hubs = {
            n for n in u.order
            if n not in self.aside_const and len(set(u.succs.get(n, ()))) > hub_degree
        }
        self.core = [n for n in u.order if st[n] != "unchanged" and n not in self.aside_const]
        self.folded: dict[str, str] = {}  # node -> repeat box key
        self.repeats: dict[str, DrawBox] = {}
        self.closed: set[str] = set()  # scopes collapsed to make room

    # ------------------------------------------------------------------ selection
    def _walkable(self, n: str) -> bool:
        return n not in self.aside_const and n not in self.hubs

    def _with_context(self, hops: int) -> list[str]:
        chosen = dict.fromkeys(n for n in self.core if n not in self.folded)
        frontier = list(chosen)
        for _ in range(hops):
            nxt = []
            for n in frontier:
                if n in self.hubs:
                    continue
                for m in (*self.u.preds.get(n, ()), *self.u.succs.get(n, ())):
                    if m not in chosen and self._walkable(m) and m not in self.folded:
                        chosen[m] = None
                        nxt.append(m)
            frontier = nxt
            if not frontier:
                break
        return list(chosen)

    def choose(self) -> None:
        u = self.u
        if self.expand:
            drawn = [n for n in u.order if n not in self.aside_const and n not in self.hubs]
            drawn += [n for n in self.core if n in self.hubs]
            self.drawn = drawn
        else:
            self.drawn = self._with_context(self.context)
        if self._size() <= self.max_nodes:
            return
        if not self.expand and self._fold_repeats():
            self.drawn = self._with_context(self.context)
            if self._size() <= self.max_nodes:
                return
        if self.expand or self.context > 0:
            kept = set(self.core)
            self.drawn = [n for n in self.drawn if n in kept and n not in self.folded]
            self.notes.append("context dropped to fit")
        self._close_scopes()

    def _fold_repeats(self) -> bool:
        """Fold sibling scopes (``8x8``, ``16x16``: names equal but for digits) whose
        changes are the same or similar (75 % in common) into one box per family."""
        core = self.core
        by_scope: dict[str, list[str]] = defaultdict(list)
        for n in core:
            for p in _prefixes(self.u.scope(n)):
                by_scope[p].append(n)
        children: dict[str, list[str]] = defaultdict(list)
        for s in by_scope:
            children[scope_of(s)].append(s)
        folded_any = False

        def visit(parent: str) -> Iterator[str]:
            """Fold the families among ``parent``'s child scopes; yields the scopes to
            visit next (driven by a stack below: scopes may nest thousands deep)."""
            nonlocal folded_any
            groups: dict[str, list[str]] = defaultdict(list)
            for c in children.get(parent, ()):
                tail = c.rpartition("/")[2]
                groups[_DIGITS.sub("#", tail)].append(c)
            for pattern, members in groups.items():
                folded_here: set[str] = set()
                # A block is a scope, not a node with sub-scopes (``Reshape_4/shape``).
                members = [m for m in members if m not in self.u.status]
                if len(members) > 1 and "#" in pattern:
                    members.sort(key=_natural)
                    reps: list[tuple[str, Counter]] = []
                    fam: dict[str, list[str]] = defaultdict(list)
                    for m in members:
                        sig = self._signature(m, by_scope[m])
                        for first, rsig in reps:
                            if _similar(sig, rsig):
                                fam[first].append(m)
                                break
                        else:
                            reps.append((m, sig))
                    for first, rest in fam.items():
                        key = f"repeat:{rest[0]}"
                        nodes = [n for m in rest for n in self._all_under(m)]
                        statuses = Counter(self.u.status[n] for n in nodes)
                        per = [len(by_scope[m]) for m in rest]
                        same = min(per) == max(per) == len(by_scope[first])
                        tails = [m.rpartition("/")[2] for m in rest]
                        what = (f"{per[0]}" if min(per) == max(per) else f"{min(per)}-{max(per)}")
                        box = DrawBox(
                            key=key, kind="repeat", scope=parent,
                            title=_range_title(tails),
                            count=len(nodes), statuses=dict(statuses),
                            ops=Counter(self.u.op(n) for n in nodes).most_common(3),
                            note=f"{'same' if same else 'similar'} changes as "
                                 f"{first.rpartition('/')[2]} ({what} each, x{len(rest)})",
                        )
                        self.repeats[key] = box
                        for n in nodes:
                            self.folded[n] = key
                        folded_here.update(rest)
                        folded_any = True
                for m in members:
                    if m not in folded_here:
                        yield m

        stack = [visit("")]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
            else:
                stack.append(visit(child))
        if folded_any:
            self.notes.append(f"{len(self.repeats)} repeated block famil"
                              f"{'y' if len(self.repeats) == 1 else 'ies'} folded")
        return folded_any

    def _signature(self, scope: str, nodes: list[str]) -> Counter:
        cut = len(scope) + 1
        st, op = self.u.status, self.u.op
        return Counter((_DIGITS.sub("#", n[cut:]), op(n), st[n]) for n in nodes)

    def _all_under(self, scope: str) -> list[str]:
        pre = scope + "/"
        return [n for n in self.u.order if n.startswith(pre)]

    # ------------------------------------------------------------------ grouping
    def _groups(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        """Map every node that is neither drawn nor folded nor an annotation to a box key."""
        drawn = set(self.drawn)
        open_scopes: set[str] = set()
        for n in drawn:
            open_scopes.update(_prefixes(self.u.scope(n)))
        for box in self.repeats.values():
            open_scopes.update(_prefixes(box.scope))
        open_scopes -= self.closed
        annotated = {c for c in self.aside_const
                     if any(s in drawn for s in self.u.succs.get(c, ()))}
        box_of: dict[str, str] = {}
        members: dict[str, list[str]] = defaultdict(list)
        for n in self.u.order:
            if n in drawn or n in self.folded or n in annotated:
                continue
            key = None
            for p in _prefixes(self.u.scope(n)):
                if p not in open_scopes:
                    key = f"box:{p}"
                    break
            if key is None:
                key = f"rest:{self.u.scope(n)}"
            box_of[n] = key
            members[key].append(n)
        self.open_scopes = open_scopes
        return box_of, members

    def _size(self) -> int:
        _, members = self._groups()
        return len(self.drawn) + len(members) + len(self.repeats)

    def _close_scopes(self) -> None:
        """Collapse the deepest scopes that make the drawing fit; count what they hide."""
        for _ in range(10_000):
            size = self._size()
            excess = size - self.max_nodes
            if excess <= 0:
                return
            # items (drawn nodes, boxes) strictly inside each open scope
            inside: Counter[str] = Counter()
            box_of, members = self._groups()
            for n in self.drawn:
                for p in _prefixes(self.u.scope(n)):
                    inside[p] += 1
            for key in members:
                scope = key.partition(":")[2]
                if key.startswith("box:"):
                    scope = scope_of(scope)
                for p in _prefixes(scope):
                    inside[p] += 1
            for box in self.repeats.values():
                for p in _prefixes(box.scope):
                    inside[p] += 1
            cands = [(s, c) for s, c in inside.items() if c > 1 and s not in self.closed]
            if not cands:
                break
            # The largest scope that does not collapse more than needed, else the
            # smallest one that is enough: as much detail kept as the cap allows.
            fits = [(s, c) for s, c in cands if c - 1 <= excess]
            if fits:
                scope = max(fits, key=lambda sc: (sc[1], sc[0].count("/")))[0]
            else:
                scope = min(cands, key=lambda sc: (sc[1], -sc[0].count("/")))[0]
            self._close(scope)
        # Nothing left to close (a flat graph): keep the first changes in graph order.
        _, members = self._groups()
        room = max(self.max_nodes - len(members) - len(self.repeats) - 1, 1)
        if len(self.drawn) > room:
            self.notes.append(f"{len(self.drawn) - room} changed node(s) not drawn (cap)")
            self.drawn = self.drawn[:room]

    def _close(self, scope: str) -> None:
        pre = scope + "/"
        self.closed.add(scope)
        self.drawn = [n for n in self.drawn if not n.startswith(pre)]
        for key in [k for k, b in self.repeats.items() if (b.scope + "/").startswith(pre)]:
            del self.repeats[key]
            for n in [n for n, k in self.folded.items() if k == key]:
                del self.folded[n]

    # ------------------------------------------------------------------ the view
    def view(self, shapes: _Shapes, title: str) -> DiffView:
        u = self.u
        box_of, members = self._groups()
        drawn = list(dict.fromkeys(self.drawn))
        drawn_set = set(drawn)
        rep: dict[str, str] = {n: f"n:{n}" for n in drawn}
        rep.update(box_of)
        rep.update(self.folded)
        # A box of one or two nodes is drawn as those nodes, while the cap allows.
        room = self.max_nodes - len(drawn) - len(members) - len(self.repeats)
        for key in [k for k, v in members.items() if len(v) <= 2]:
            names = members[key]
            if len(names) - 1 > room or any(n in self.aside_const or n in self.hubs
                                            for n in names):
                continue
            room -= len(names) - 1
            for n in names:
                rep[n] = f"n:{n}"
                drawn.append(n)
                drawn_set.add(n)
            del members[key]

        nodes = []
        for n in drawn:
            nodes.append(self._node(n, drawn_set, shapes))
        boxes = [self._box(k, v) for k, v in members.items()]
        boxes += list(self.repeats.values())

        agg: dict[tuple[str, str, bool], Counter] = defaultdict(Counter)
        for (src, dst, control), es in u.edges.items():
            if src in self.aside_const or src in self.hubs:
                continue
            a, b = rep.get(src), rep.get(dst)
            if a is None or b is None or a == b:
                continue
            agg[(a, b, control)][es] += 1
        edges = []
        for (a, b, control), cnt in agg.items():
            status = next(iter(cnt)) if len(cnt) == 1 else "mixed"
            edges.append(DrawEdge(a, b, status, sum(cnt.values()), control))
        for old, new in u.diff.replaced.items():
            a, b = rep.get(old), rep.get(new)
            if a is not None and b is not None and a != b and old in drawn_set:
                edges.append(DrawEdge(a, b, "replaced"))
        counts = {
            "added": len(u.diff.added), "removed": len(u.diff.removed),
            "changed": len(u.diff.changed), "unchanged": len(u.diff.unchanged),
        }
        notes = list(self.notes)
        if self.closed:
            names = sorted(self.closed, key=_natural)
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4
                                            else "")
            notes.append(f"collapsed to fit: {shown}")
        hidden = sum(len(v) for v in members.values()) + len(self.folded)
        if hidden:
            notes.append(f"{hidden} node(s) collapsed into boxes")
        return DiffView(title, nodes, boxes, edges, counts, notes)

    def _node(self, n: str, drawn: set[str], shapes: _Shapes) -> DrawNode:
        u = self.u
        st = u.status[n]
        g = u.graph_of(n)
        detail = []
        if st == "changed":
            detail.append(", ".join(u.diff.changed.get(n, [])))
        if n in u.diff.replaced:
            detail.append(f"replaced by {u.diff.replaced[n]}")
        if n in self.hubs:
            detail.append(f"feeds {len(set(u.succs.get(n, ())))} nodes (edges not drawn)")
        node = DrawNode(
            key=f"n:{n}", name=n, op=u.op(n), status=st, scope=self.u.scope(n),
            type_text=shapes.text(g, n), detail="; ".join(d for d in detail if d),
            provenance=u.diff.provenance.get(n, ""),
        )
        annotations = []
        seen = set()
        for src in u.preds.get(n, ()):
            if src in seen or (src not in self.aside_const and src not in self.hubs):
                continue
            seen.add(src)
            es = u.edges.get((src, n, False)) or u.edges.get((src, n, True)) or "same"
            status = es if es in ("added", "removed") else (
                "unchanged" if u.status[src] == "unchanged" else u.status[src])
            if src in self.aside_const:
                where = _relative(src, u.scope(n))
                text = f"{where} {shapes.text(u.graph_of(src), src)}".rstrip()
                annotations.append(Annotation(text, status, "const"))
            else:
                annotations.append(Annotation(f"from {src}", status, "hub"))
        annotations.sort(key=lambda a: (a.status == "unchanged", a.kind))
        node.annotations = annotations[:MAX_ANNOTATIONS]
        node.more_annotations = len(annotations) - len(node.annotations)
        return node

    def _box(self, key: str, names: list[str]) -> DrawBox:
        kind, _, scope = key.partition(":")
        statuses = Counter(self.u.status[n] for n in names)
        ops = Counter(self.u.op(n) for n in names).most_common(3)
        if kind == "box":
            return DrawBox(key, "scope", scope_of(scope), scope.rpartition("/")[2] or scope,
                           len(names), dict(statuses), ops)
        title = "other nodes" if scope else "other top-level nodes"
        return DrawBox(key, "rest", scope, title, len(names), dict(statuses), ops)


def _relative(name: str, scope: str) -> str:
    """``name`` shortened against the scope of the node that reads it."""
    if scope and name.startswith(scope + "/"):
        return name[len(scope) + 1:]
    return name.rpartition("/")[2] if name.count("/") > 2 else name


def _similar(a: Counter, b: Counter, threshold: float = 0.75) -> bool:
    """Two change signatures share at least ``threshold`` of the larger one."""
    common = sum((a & b).values())
    return common >= threshold * max(sum(a.values()), sum(b.values()), 1)


def _range_title(tails: list[str]) -> str:
    if len(tails) <= 3:
        return ", ".join(tails)
    return f"{tails[0]}, {tails[1]} ... {tails[-1]}"
