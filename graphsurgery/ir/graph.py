"""The graph IR: a mutable, indexed view of a GraphDef.

A :class:`Graph` keeps one ``NodeDef`` message per node, keyed by name (in a GraphDef the
name *is* the identity). NodeDefs are treated as immutable values: a change replaces the
whole message (copy-on-write), so a snapshot of the graph is a shallow copy of the name
table, and constants stay encoded until a pass asks for one with :meth:`Graph.const_value`.

Reading is done on the graph; every change goes through a :class:`~graphsurgery.Rewriter`,
which keeps the consumer index, provenance and the change journal in step.

Example::

    g = gs.load("generator.pb")
    for node in g.nodes("Transpose"):
        print(node.name, g.consumers(node.output()))
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from ..errors import GraphError
from . import opdefs, proto
from .attrs import TensorDecodeError, attr_to_python, shape_of, tensor_shape, tensor_to_numpy
from .dtypes import DType
from .names import Input, NameGenerator, TensorRef, source_node

# Attributes that name the dtype of a node's first output, in order of preference.
_DTYPE_ATTRS = ("dtype", "T", "out_type", "DstT", "output_type", "Tout", "Tidx")
# Ops whose output feeds a loop ``Merge`` backwards (the only legal cycles in a GraphDef).
BACK_EDGE_OPS = frozenset({"NextIteration", "RefNextIteration"})
# Constants up to this many bytes stay decoded in the cache.
_CACHE_BYTES = 1 << 20


@dataclass(frozen=True)
class Provenance:
    """Which pass (and rule, if any) created or last changed a node."""

    pass_id: str
    rule: str | None = None
    action: str = "created"


class Node:
    """A live, read-only view of the node called ``name``. Change nodes through a Rewriter.

    The view always reflects the current NodeDef of that name, so a list of nodes taken
    before a rewrite stays correct after it.
    """

    __slots__ = ("_graph", "name")

    def __init__(self, graph: Graph, node_def: Any) -> None:
        self._graph = graph
        self.name: str = node_def.name

    @property
    def proto(self) -> Any:
        """The current NodeDef (treat as read-only)."""
        try:
            return self._graph._nodes[self.name]
        except KeyError:
            raise GraphError(f"node {self.name!r} was erased") from None

    @property
    def alive(self) -> bool:
        return self.name in self._graph._nodes

    @property
    def op(self) -> str:
        return self.proto.op

    @property
    def device(self) -> str:
        return self.proto.device

    @property
    def inputs(self) -> list[Input]:
        """All inputs, data inputs first, then control inputs."""
        return [Input.parse(s) for s in self.proto.input]

    @property
    def data_inputs(self) -> list[TensorRef]:
        return [TensorRef.parse(s) for s in self.proto.input if not s.startswith("^")]

    @property
    def control_inputs(self) -> list[str]:
        return [s[1:] for s in self.proto.input if s.startswith("^")]

    def input_node(self, index: int) -> Node:
        """The node producing data input ``index``."""
        return self._graph.node(self.data_inputs[index].node)

    def attr(self, key: str, default: Any = None) -> Any:
        """Decoded attribute value (see :func:`~graphsurgery.ir.attrs.attr_to_python`)."""
        if key not in self.proto.attr:
            return default
        av = self.proto.attr[key]
        if av.WhichOneof("value") != "tensor":
            return attr_to_python(av)
        try:
            return attr_to_python(av)
        except ValueError as exc:  # a malformed tensor, or one too large to decode
            raise TensorDecodeError(f"node {self.name!r} attr {key!r}: {exc}") from None

    @property
    def attr_names(self) -> list[str]:
        return sorted(self.proto.attr.keys())

    def output(self, port: int = 0) -> TensorRef:
        return TensorRef(self.name, port)

    @property
    def dtype(self) -> DType | None:
        """Best static guess of the first output's dtype from the node's attributes."""
        return self._graph.dtype_hint(self.output())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and other._graph is self._graph and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"Node({self.name!r}, op={self.op!r}, inputs={list(self.proto.input)})"


class Graph:
    """A GraphDef with a name table, a consumer index and declared inputs/outputs.

    ``inputs`` and ``outputs`` are the graph's interface (tensor references); when not
    given, inputs are the ``Placeholder`` nodes and outputs the nodes nothing consumes.
    """

    def __init__(
        self,
        nodes: Iterable[Any] = (),
        *,
        inputs: Iterable[str | TensorRef] | None = None,
        outputs: Iterable[str | TensorRef] | None = None,
        versions: Any = None,
        library: bytes = b"",
        source: str = "<memory>",
    ) -> None:
        self.source = source
        self._nodes: dict[str, Any] = {}
        self._users: dict[str, set[str]] = {}
        self._const_cache: dict[str, tuple[Any, np.ndarray]] = {}
        self.provenance: dict[str, Provenance] = {}
        self.versions = versions if versions is not None else proto.VersionDef(producer=1994)
        self.library = library
        self.version = 0  # bumped by every change; caches key on it
        self._stamps: dict[str, int] = {}
        for nd in nodes:
            if nd.name in self._nodes:
                raise GraphError(f"{source}: duplicate node name {nd.name!r}")
            self._nodes[nd.name] = nd
            self._stamps[nd.name] = next(_STAMPS)
        self._rebuild_users()
        self._names = NameGenerator(set(self._nodes))
        self.inputs: list[TensorRef] = (
            [_ref(t) for t in inputs]
            if inputs is not None
            else [TensorRef(n.name) for n in self.nodes("Placeholder")]
        )
        self.outputs: list[TensorRef] = (
            [_ref(t) for t in outputs] if outputs is not None else self._default_outputs()
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_graph_def(cls, graph_def: Any, **kwargs: Any) -> Graph:
        """Wrap a GraphDef (ours or TensorFlow's; TensorFlow's is converted once)."""
        if not isinstance(graph_def, proto.GraphDef):
            graph_def = proto.from_tf(graph_def)
        return cls(
            list(graph_def.node),
            versions=graph_def.versions,
            library=graph_def.library,
            **kwargs,
        )

    def to_graph_def(self) -> Any:
        """A new GraphDef holding copies of the nodes (use :func:`graphsurgery.save` for files)."""
        gd = proto.GraphDef()
        gd.node.extend(self._nodes.values())
        gd.versions.CopyFrom(self.versions)
        if self.library:
            gd.library = self.library
        return gd

    def to_tf_graph_def(self) -> Any:
        """The graph as a ``tf.compat.v1.GraphDef`` (imports TensorFlow)."""
        return proto.to_tf(self.to_graph_def())

    def copy(self, stand_ins: Mapping[str, Any] | None = None) -> Graph:
        """An independent graph sharing the (immutable) NodeDefs: cheap, no constant is copied.

        ``stand_ins`` maps node names to NodeDefs that take their place in the copy (same
        name, op and inputs; a Const without its data for a view that only draws or diffs
        the graph); the copy then starts with no decoded constants.
        """
        g = Graph.__new__(Graph)
        g.source = self.source
        g._nodes = dict(self._nodes)
        g._stamps = dict(self._stamps)
        g._users = {k: set(v) for k, v in self._users.items()}
        g._const_cache = dict(self._const_cache)
        if stand_ins is not None:
            g._nodes.update(stand_ins)
            g._const_cache = {}
        g.provenance = dict(self.provenance)
        g.versions = self.versions
        g.library = self.library
        g.version = self.version
        g._names = NameGenerator(set(self._nodes))
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        return g

    def restore(self, snapshot: Graph) -> None:
        """Make this graph equal to ``snapshot`` (an earlier :meth:`copy`)."""
        other = snapshot.copy()
        for attr in ("_nodes", "_stamps", "_users", "_const_cache", "provenance", "_names"):
            setattr(self, attr, getattr(other, attr))
        self.inputs, self.outputs = other.inputs, other.outputs
        self.version += 1

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        """``<Graph 'model.pb': 702 nodes, 31 op types, inputs [x], outputs [y, z:1]>``."""

        def names(refs: list[TensorRef]) -> str:
            shown = [t.input_string for t in refs[:4]]
            if len(refs) > 4:
                shown.append(f"... {len(refs) - 4} more")
            return "[" + ", ".join(shown) + "]"

        ops = len({nd.op for nd in self._nodes.values()})
        return (f"<Graph {self.source!r}: {len(self._nodes)} nodes, {ops} op types, "
                f"inputs {names(self.inputs)}, outputs {names(self.outputs)}>")

    def __contains__(self, name: object) -> bool:
        if isinstance(name, TensorRef):
            name = name.node
        return name in self._nodes

    def __iter__(self) -> Iterator[Node]:
        return (Node(self, nd) for nd in list(self._nodes.values()))

    def nodes(self, *ops: str) -> list[Node]:
        """All nodes, or those whose op is one of ``ops``."""
        if not ops:
            return [Node(self, nd) for nd in self._nodes.values()]
        wanted = set(ops)
        return [Node(self, nd) for nd in self._nodes.values() if nd.op in wanted]

    def node(self, name: str | TensorRef) -> Node:
        if isinstance(name, TensorRef):
            name = name.node
        try:
            return Node(self, self._nodes[name])
        except KeyError:
            raise GraphError(f"no node named {name!r}") from None

    def get(self, name: str) -> Node | None:
        nd = self._nodes.get(name)
        return None if nd is None else Node(self, nd)

    def stamps(self) -> dict[str, int]:
        """Node name -> a stamp that changes whenever the node's NodeDef is replaced.

        Stamps are unique across all graphs of the process, so comparing two of these maps
        tells which nodes were added or rewritten in between, without keeping the old
        NodeDefs (and their weights) alive. Caches of per-node work key on them.
        """
        return dict(self._stamps)

    def stamp(self, name: str) -> int | None:
        return self._stamps.get(name)

    def node_def(self, name: str) -> Any:
        """The NodeDef message of ``name``. Treat it as read-only."""
        return self._nodes[name]

    @property
    def names(self) -> list[str]:
        return list(self._nodes)

    def op_counts(self) -> Counter[str]:
        return Counter(nd.op for nd in self._nodes.values())

    def users(self, name: str) -> list[Node]:
        """Nodes with any input (data or control) from node ``name``."""
        return [Node(self, self._nodes[u]) for u in sorted(self._users.get(name, ()))]

    def consumers(self, tensor: str | TensorRef) -> list[tuple[Node, int]]:
        """``(node, input index)`` for every data use of ``tensor`` (``"x"``, ``"x:1"``)."""
        ref = _ref(tensor)
        out = []
        for u in sorted(self._users.get(ref.node, ())):
            nd = self._nodes[u]
            for i, s in enumerate(nd.input):
                if s.startswith("^"):
                    break
                if TensorRef.parse(s) == ref:
                    out.append((Node(self, nd), i))
        return out

    def control_users(self, name: str) -> list[Node]:
        """Nodes with a control dependency on ``name``."""
        key = f"^{name}"
        return [n for n in self.users(name) if key in n.proto.input]

    def is_output(self, name: str) -> bool:
        return any(t.node == name for t in self.outputs)

    def has_outside_uses(self, name: str) -> bool:
        """True when ``name`` feeds another node or a declared output."""
        return bool(self._users.get(name)) or self.is_output(name)

    def num_outputs_used(self, name: str) -> int:
        """1 + the highest output port of ``name`` that anything uses."""
        ports = [t.port for t in self.outputs if t.node == name]
        for u in self._users.get(name, ()):
            for s in self._nodes[u].input:
                inp = Input.parse(s)
                if inp.node == name and not inp.control:
                    ports.append(inp.port)
        return max(ports) + 1 if ports else 0

    # ------------------------------------------------------------------ constants
    def is_const(self, tensor: str | TensorRef) -> bool:
        ref = _ref(tensor)
        nd = self._nodes.get(ref.node)
        return nd is not None and nd.op == "Const" and ref.port == 0

    def const_value(self, tensor: str | TensorRef, max_bytes: int | None = None) -> np.ndarray:
        """Decode a ``Const`` node's value (read-only array); cached for small constants.

        A malformed value, or one whose declared shape would expand beyond ``max_bytes``
        (see :func:`~graphsurgery.ir.attrs.tensor_to_numpy`), raises a GraphError naming the
        node (:class:`~graphsurgery.ir.attrs.TensorDecodeError`, also a ValueError).
        """
        ref = _ref(tensor)
        nd = self._nodes.get(ref.node)
        if nd is None or nd.op != "Const":
            raise GraphError(f"{ref.node!r} is not a Const node")
        hit = self._const_cache.get(ref.node)
        if hit is not None and hit[0] is nd:
            return hit[1]
        try:
            arr = tensor_to_numpy(nd.attr["value"].tensor, max_bytes)
        except ValueError as exc:
            raise TensorDecodeError(f"{self.source}: Const {ref.node!r}: {exc}") from None
        if arr.nbytes <= _CACHE_BYTES:
            self._const_cache[ref.node] = (nd, arr)
        return arr

    def const_shape(self, name: str) -> tuple[int, ...]:
        """Shape of a Const without decoding it."""
        return tensor_shape(self._nodes[name].attr["value"].tensor)

    def const_nbytes(self, name: str) -> int:
        """Size of a Const's value in bytes (strings count 8 each), read from its shape:
        touching ``tensor_content`` would copy the whole weight."""
        tp = self._nodes[name].attr["value"].tensor
        dt = DType.of(tp.dtype)
        return int(np.prod(tensor_shape(tp), dtype=np.int64)) * (
            dt.numpy.itemsize if dt != DType.string else 8
        )

    # ------------------------------------------------------------------ types and shapes
    def dtype_hint(self, tensor: str | TensorRef) -> DType | None:
        """The dtype of ``tensor`` read from attributes, without shape inference.

        Exact for the usual single-output ops; use :meth:`infer` for everything else.
        """
        ref = _ref(tensor)
        nd = self._nodes.get(ref.node)
        if nd is None:
            return None
        exact = opdefs.output_dtype(nd, ref.port)  # the op's spec: Any/All give bool, not Tidx
        if exact is not None and exact != DType.invalid:
            return exact
        if nd.op in ("Shape", "Size", "Rank") and "out_type" in nd.attr:
            return DType.of(nd.attr["out_type"].type)
        if nd.op in ("Greater", "Less", "Equal", "NotEqual", "GreaterEqual", "LessEqual"):
            return DType.bool
        if nd.op == "Rank":  # int32 whatever its input type T
            return DType.int32
        if nd.op == "Cast":
            return DType.of(nd.attr["DstT"].type)
        if nd.op == "IdentityN" and "T" in nd.attr:
            types = nd.attr["T"].list.type
            return DType.of(types[ref.port]) if ref.port < len(types) else None
        for key in _DTYPE_ATTRS:
            if key in nd.attr and nd.attr[key].WhichOneof("value") == "type":
                return DType.of(nd.attr[key].type)
        return None

    def static_shape(self, tensor: str | TensorRef) -> tuple[int, ...] | None:
        """Shape known without inference: Const, Placeholder, or (on an unmodified graph)
        an ``_output_shapes`` attribute."""
        ref = _ref(tensor)
        nd = self._nodes.get(ref.node)
        if nd is None:
            return None
        if nd.op == "Const":
            return tensor_shape(nd.attr["value"].tensor)
        if nd.op == "Placeholder" and "shape" in nd.attr:
            return shape_of(nd.attr["shape"].shape)
        # Recorded shapes describe the graph as it was exported; after any change they
        # may be stale, so they are trusted only while the graph is unmodified.
        if self.version == 0 and "_output_shapes" in nd.attr:
            shapes = nd.attr["_output_shapes"].list.shape
            if ref.port < len(shapes):
                return shape_of(shapes[ref.port])
        return None

    def infer(self) -> dict[TensorRef, Any]:
        """dtype and static shape of every tensor (TensorFlow's shape inference; cached)."""
        from .shapes import infer_shapes, update_shapes

        cached = getattr(self, "_infer_cache", None)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        base = getattr(self, "_infer_base", None)
        result = infer_shapes(self) if base is None else update_shapes(self, *base)
        self._infer_cache = (self.version, result)
        self._infer_base = (self.stamps(), result)
        return result

    def shape(self, tensor: str | TensorRef) -> tuple[int, ...] | None:
        """Static shape (-1 for unknown dims), None when unknown; runs inference if needed."""
        ref = _ref(tensor)
        known = self.static_shape(ref)
        if known is not None:
            return known
        info = self.infer().get(ref)
        return None if info is None else info.shape

    def dtype(self, tensor: str | TensorRef) -> DType | None:
        """dtype of ``tensor``: from the op's spec and attributes, else from inference."""
        ref = _ref(tensor)
        nd = self._nodes.get(ref.node)
        exact = opdefs.output_dtype(nd, ref.port) if nd is not None else None
        if exact is not None and exact != DType.invalid:
            return exact  # dtype_hint alone is wrong for e.g. TopKV2:1 (int32, not T)
        hint = self.dtype_hint(ref)
        if hint is not None:
            return hint
        info = self.infer().get(ref)
        return None if info is None else info.dtype

    # ------------------------------------------------------------------ algorithms
    def to_networkx(self, control: bool = True) -> nx.MultiDiGraph:
        """Nodes and edges (``port``/``index``/``control`` on each edge) as a networkx graph."""
        g = nx.MultiDiGraph()
        for name, nd in self._nodes.items():
            g.add_node(name, op=nd.op)
        for name, nd in self._nodes.items():
            for i, s in enumerate(nd.input):
                inp = Input.parse(s)
                if inp.control and not control:
                    continue
                if inp.node in self._nodes:
                    g.add_edge(inp.node, name, port=inp.port, index=i, control=inp.control)
        return g

    def toposort(self) -> list[str]:
        """Node names in a topological order (stable: ties keep GraphDef order).

        Edges out of ``NextIteration`` nodes, the back edges of v1 while loops and the only
        cycles TensorFlow allows, are ignored; any other cycle is a :class:`GraphError`.
        """
        cached = getattr(self, "_topo_cache", None)
        if cached is not None and cached[0] == self.version:
            return list(cached[1])
        names = list(self._nodes)
        index = {n: i for i, n in enumerate(names)}
        indegree = dict.fromkeys(names, 0)
        users: dict[str, list[str]] = {n: [] for n in names}
        nodes = self._nodes
        for n, nd in nodes.items():
            srcs = set()
            for s in nd.input:
                src = source_node(s)
                if src in index and nodes[src].op not in BACK_EDGE_OPS:
                    srcs.add(src)
            indegree[n] = len(srcs)
            for src in srcs:
                users[src].append(n)
        ready = [index[n] for n in names if indegree[n] == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            n = names[heapq.heappop(ready)]
            order.append(n)
            for u in users[n]:
                indegree[u] -= 1
                if indegree[u] == 0:
                    heapq.heappush(ready, index[u])
        if len(order) != len(names):
            stuck = {n for n in names if indegree[n] > 0}
            raise GraphError(f"{self.source}: graph has a cycle: {' -> '.join(self._cycle(stuck))}")
        self._topo_cache = (self.version, order)
        return list(order)

    def _cycle(self, among: set[str]) -> list[str]:
        g = nx.DiGraph()
        for n in among:
            for s in self._nodes[n].input:
                src = Input.parse(s).node
                if src in among and self._nodes[src].op not in BACK_EDGE_OPS:
                    g.add_edge(src, n)
        cycle = nx.find_cycle(g)
        return [a for a, _ in cycle] + [cycle[0][0]]

    def ancestors(self, names: Iterable[str], control: bool = True) -> set[str]:
        """Every node that ``names`` depend on, including ``names`` themselves."""
        seen: set[str] = set()
        stack = [n for n in names if n in self._nodes]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            for s in self._nodes[n].input:
                if s.startswith("^") and not control:
                    continue
                src = Input.parse(s).node
                if src in self._nodes and src not in seen:
                    stack.append(src)
        return seen

    def unique_name(self, base: str) -> str:
        """A node name not used in this graph (``base``, ``base_1``, ...), reserved at once."""
        return self._names(base)

    # ------------------------------------------------------------------ internals (Rewriter)
    def _rebuild_users(self) -> None:
        users: dict[str, set[str]] = {}
        for name, nd in self._nodes.items():
            for s in nd.input:
                users.setdefault(Input.parse(s).node, set()).add(name)
        self._users = users

    def _link(self, nd: Any) -> None:
        for s in nd.input:
            self._users.setdefault(Input.parse(s).node, set()).add(nd.name)

    def _unlink(self, nd: Any) -> None:
        for s in nd.input:
            users = self._users.get(Input.parse(s).node)
            if users is not None:
                users.discard(nd.name)

    def _put(self, nd: Any) -> None:
        """Insert or replace a node (copy-on-write: ``nd`` must be a fresh message)."""
        old = self._nodes.get(nd.name)
        if old is not None:
            self._unlink(old)
        self._nodes[nd.name] = nd
        self._stamps[nd.name] = next(_STAMPS)
        self._link(nd)
        self._names._taken.add(nd.name)
        self._const_cache.pop(nd.name, None)
        self.version += 1

    def _adopt_edits(self, names: Iterable[str]) -> None:
        """Bring the indexes in step with NodeDefs changed in place, behind the Rewriter's
        back (found by :class:`graphsurgery.verify.EditGuard`): they get new stamps, so
        every cache keyed on stamps or on :attr:`version` sees them as changed."""
        for name in names:
            if name in self._nodes:
                self._stamps[name] = next(_STAMPS)
                self._const_cache.pop(name, None)
            else:
                self._stamps.pop(name, None)
        self._rebuild_users()
        self._names._taken.update(self._nodes)
        self.version += 1

    def _drop(self, name: str) -> Any:
        nd = self._nodes.pop(name)
        self._stamps.pop(name, None)
        self._unlink(nd)
        self._const_cache.pop(name, None)
        self.provenance.pop(name, None)
        self._names.release(name)
        self.version += 1
        return nd

    def _default_outputs(self) -> list[TensorRef]:
        # Sinks that are not results: side effects, constants, and inputs nothing reads
        # (StyleGAN's labels_in [N, 0]).
        skip = {"NoOp", "Assign", "AssignAdd", "AssignSub", "SaveV2", "RestoreV2", "Const",
                "Placeholder", "PlaceholderWithDefault"}
        return [
            TensorRef(name)
            for name, nd in self._nodes.items()
            if not self._users.get(name) and nd.op not in skip and not nd.op.startswith("Assign")
        ]


_STAMPS = itertools.count(1)


def _ref(tensor: str | TensorRef) -> TensorRef:
    return tensor if isinstance(tensor, TensorRef) else TensorRef.parse(tensor)
