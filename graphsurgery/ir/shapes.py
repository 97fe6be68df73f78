"""dtype and static shape of every tensor, from TensorFlow's own shape inference.

:func:`infer_shapes` imports a *shadow* of the graph into a fresh TensorFlow graph and
reads ``dtype``/``shape`` off every output. The graph is a ``TF_Graph`` of TensorFlow's C
library, loaded through ctypes (:mod:`graphsurgery.ir.tf_capi`, about 0.2 s, where
``import tensorflow`` takes 2+ s), or a ``tf.Graph`` when the library cannot be loaded that
way; both run the same C++ shape functions. The shadow differs from the graph where TensorFlow
could not, or should not, see the real node:

* a ``Const`` larger than :data:`BIG_CONST_BYTES` becomes a ``Placeholder`` with its dtype
  and shape, so a 120 MB generator's weights are never copied into TensorFlow; small
  constants stay, because shape functions read values such as ``Reshape`` targets;
* control inputs and colocation attributes are dropped (they never change a shape);
* *opaque* nodes become ``Placeholder`` s whose dtype and shape are computed here: custom
  ops TensorFlow does not know, with the shape function a plugin declared
  (:func:`graphsurgery.ir.customops.register_custom_op`) when there is one; ref-typed
  leftovers of variables (``Assign`` on a frozen ``Const``, ``RefSwitch``...); and any
  node whose import fails.
* every node that acts on the host (:func:`graphsurgery.ir.opdefs.side_effects`:
  ``ReadFile``, ``ImmutableConst``, ``MatchingFiles``, ``PyFunc``, calls of functions
  holding one...) is opaque too: TensorFlow's shape refiner *evaluates* small constant
  subgraphs (a ``ReadFile`` feeding a ``Reshape`` target would be read), and none may
  touch the host. Their outputs keep the dtype and, where the attributes say it
  (``ImmutableConst``), the shape; what depends on their values stays unknown.

An opaque node's output shapes depend on its inputs' shapes, which are known only once its
producers are imported, so the graph is imported in waves: everything not downstream of
an unresolved opaque node, then the opaque nodes whose inputs are now known, and so on.
Each wave imports only new nodes into the same ``tf.Graph`` (earlier tensors are wired in
through ``input_map``), so the total work stays linear in the graph size.

When an import fails, the node the error names is made opaque and the wave retried;
errors that are not explained by custom ops or ref leftovers are the graph's *shape
conflicts* (:func:`shape_conflicts`), e.g. a ``[N, 8]`` tensor fed to a ``MatMul`` that
expects ``[N, 4]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import customops, opdefs, proto
from .attrs import make_shape
from .dtypes import DType
from .names import TensorRef

if TYPE_CHECKING:  # graph.py imports this module (Graph.infer): no import back at run time
    from .graph import Graph, Node

#: Constants larger than this many bytes are fed to TensorFlow as Placeholders.
BIG_CONST_BYTES = 4096
#: At most this many failed imports are retried before the rest is given up as unknown.
MAX_RETRIES = 200
#: At most this many waves (imports of newly resolvable nodes).
MAX_WAVES = 10_000


@dataclass(frozen=True)
class TensorInfo:
    """dtype and static shape of a tensor: -1 for an unknown dim, ``shape=None`` for an
    unknown rank, ``dtype=None`` when not even the dtype is known."""

    dtype: DType | None
    shape: tuple[int, ...] | None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def fully_defined(self) -> bool:
        return self.shape is not None and all(d >= 0 for d in self.shape)


UNKNOWN = TensorInfo(None, None)

ShapeFn = Callable[["Node", list[TensorInfo]], list[TensorInfo]]
# Stand-ins for registered ops that are never imported (they act on the host).
_STAND_INS: dict[str, ShapeFn] = {}


def register_shape_fn(op: str, fn: ShapeFn | None = None) -> Any:
    """Register ``fn(node, input_infos) -> output infos`` for the custom op ``op``.

    Usable as a decorator (``@register_shape_fn("MyOp")``). The function is called for
    nodes TensorFlow cannot import; ``input_infos`` holds one :class:`TensorInfo` per data
    input (possibly unknown). A later registration replaces an earlier one. The same as
    ``register_custom_op(op, shape=fn)`` (:mod:`graphsurgery.ir.customops`).
    """
    if fn is None:

        def deco(f: ShapeFn) -> ShapeFn:
            customops.register_custom_op(op, shape=f)
            return f

        return deco
    customops.register_custom_op(op, shape=fn)
    return fn


def shape_fn(op: str) -> ShapeFn | None:
    """The shape function of ``op`` (a custom op's, or a host op's stand-in), if any."""
    fn = _STAND_INS.get(op)
    if fn is None and not opdefs.is_registered(op):
        fn = customops.custom_shape_fn(op)
    return fn


class ShapeMap(dict):
    """``dict[TensorRef, TensorInfo]`` returned by :func:`infer_shapes`.

    ``conflicts`` lists the shape conflicts found on the way (see :func:`shape_conflicts`);
    ``opaque`` maps every node TensorFlow did not import to why (``custom``, ``ref``,
    ``dangling``, ``host``: it acts on the host, ``conflict``, ``failed``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conflicts: list[str] = []
        self.opaque: dict[str, str] = {}
        self.incremental = False


def infer_shapes(graph: Graph, known: dict[str, list[TensorInfo]] | None = None) -> ShapeMap:
    """dtype and static shape of every output of every node of ``graph``.

    Never raises for custom ops, ref leftovers, v1 control flow or broken nodes: what
    TensorFlow cannot say is reported as unknown (shape None, dtype from attributes).
    Prefer :meth:`Graph.infer`, which caches the result per graph version and, after a
    rewrite, infers again only what changed (:func:`update_shapes`).

    ``known`` gives the output infos of nodes that are not imported again (see
    :func:`update_shapes`); the result then has ``incremental`` set and its ``conflicts``
    cover only what was imported.
    """
    return _Inference(graph, known).run()


def _node_infos(result: ShapeMap, name: str) -> list[TensorInfo]:
    """The infos of ``name``'s outputs in ``result``, port by port."""
    out = []
    while TensorRef(name, len(out)) in result:
        out.append(result[TensorRef(name, len(out))])
    return out


def update_shapes(graph: Graph, before: dict[str, int], result: ShapeMap) -> ShapeMap:
    """:func:`infer_shapes` of ``graph`` given ``result``, inferred when its node stamps
    were ``before`` (:meth:`Graph.stamps`).

    NodeDefs are replaced, never edited, so a node whose stamp is unchanged keeps its old
    infos unless an input's info changed. Only the other nodes are imported,
    with the kept nodes that feed them standing in as Placeholders of the old dtype and
    shape; kept constants and kept nodes of non-float tensors (shape arithmetic, whose
    values shape functions read) are imported with them. When a re-imported node that
    existed before now has different infos, or has non-float outputs (their values may
    have changed with the same dtype and shape: ``Shape(x)`` once ``x``'s batch is fixed),
    everything downstream of it is imported again in the next round, until nothing
    changes.
    """
    nodes = graph._nodes
    stamps = graph._stamps
    known = {n: _node_infos(result, n) for n in nodes if before.get(n) == stamps.get(n)}
    while True:
        try:
            new = infer_shapes(graph, known)
        except _StaleKnowledge:
            # A kept node's old shape no longer fits the node that reads it (a producer
            # upstream changed layout, say): start over rather than blame node by node.
            return infer_shapes(graph)
        stale: set[str] = set()
        for name in nodes:
            if name in known:
                continue
            infos = _node_infos(new, name)
            # Non-float outputs are shape arithmetic: their values (which shape functions
            # read: Tile multiples, Reshape targets) may differ with the same dtype and
            # shape, e.g. Shape(x) once x's batch is fixed.
            values = any(i.dtype is None or not i.dtype.is_floating for i in infos)
            if values or infos != _node_infos(result, name):
                stale.update(u for u in graph._users.get(name, ()) if u in known)
        if not stale:
            return new
        # A changed shape usually travels all the way down (a batch fixed, a layout
        # changed): take everything downstream now rather than one level per round.
        todo = list(stale)
        while todo:
            for u in graph._users.get(todo.pop(), ()):
                if u in known and u not in stale:
                    stale.add(u)
                    todo.append(u)
        for name in stale:
            del known[name]


def shape_conflicts(graph: Graph) -> list[str]:
    """Problems TensorFlow's shape inference finds in ``graph``, one line each.

    Each is ``node 'X': <first line of TensorFlow's message>``; custom ops, ref leftovers
    and dangling inputs (reported by :func:`~graphsurgery.ir.structure.check_structure`) are not
    conflicts. Empty when the graph is consistent.
    """
    result = graph.infer()
    conflicts = getattr(result, "conflicts", None)
    if conflicts is None or getattr(result, "incremental", False):
        # a cache filled by something else, or an update that saw only what changed
        result = infer_shapes(graph)
        graph._infer_cache = (graph.version, result)
        conflicts = result.conflicts
    return list(conflicts)


# ---------------------------------------------------------------------------- shape functions
def attr_dtype(node: Node) -> DType | None:
    """A node's dtype read from its ``T`` or ``dtype`` attribute (for shape functions)."""
    for key in ("T", "dtype"):
        value = node.attr(key)
        if isinstance(value, DType):
            return value
    return None


def _immutable_const(node: Node, inputs: list[TensorInfo]) -> list[TensorInfo]:
    """``ImmutableConst`` (never imported: it maps a file): its ``dtype`` and ``shape``."""
    shape = node.attr("shape")  # a tuple (None dims unknown), or None for an unknown rank
    dims = getattr(shape, "dims", shape)
    return [TensorInfo(attr_dtype(node), None if dims is None else tuple(dims))]


def _string_of_rank(rank: int) -> ShapeFn:
    def fn(node: Node, inputs: list[TensorInfo]) -> list[TensorInfo]:
        return [TensorInfo(DType.string, (-1,) * rank)]

    return fn


# Ops that act on the host stand in as Placeholders: what their shape functions would say.
_STAND_INS.update({
    "ImmutableConst": _immutable_const,
    "ReadFile": _string_of_rank(0),
    "MatchingFiles": _string_of_rank(1),
})


# ---------------------------------------------------------------------------- the inference
# In the shadow graph node i is called ``gsn<i>`` (an opaque node's port p > 0 is the
# Placeholder ``gsn<i>_p<p>``): TensorFlow renames an imported node whose name is already
# the scope of an earlier imported one (``a`` after ``a/shape``), and such short unrelated
# names keep every wave's import free of clashes and make error messages easy to map back.
_MANGLED = re.compile(r"gsn(\d+)(?:_p(\d+))?")
_BLAME = (
    re.compile(r"\{\{node (gsn\d+)\}\}"),
    re.compile(r"of node (gsn\d+)\b"),
    re.compile(r"[Nn]ode '(gsn\d+)'"),
    re.compile(r"\b(gsn\d+)\b"),
)
_UNREGISTERED = re.compile(r"Op type not registered '([^']+)'")
# Reasons for opaque nodes that are not shape conflicts.
_TOLERATED = {"custom", "ref", "dangling", "host"}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if not value:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _ref_arg_indices(op: str) -> list[int]:
    """Data input indices of ``op`` that take a reference (``Assign``'s input 0...)."""
    spec = opdefs._table().get(op)
    out = []
    for i, arg in enumerate(spec["in"] if spec else []):
        if arg[0] != "one":
            break
        if arg[2]:
            out.append(i)
    return out


def _makes_ref(op: str, port: int) -> bool:
    """True when output ``port`` of ``op`` is a reference (variables, ``RefSwitch``...)."""
    spec = opdefs._table().get(op)
    if not spec:
        return False
    for i, arg in enumerate(spec["out"]):
        if arg[0] != "one":
            return False
        if i == port:
            return bool(arg[2])
    return False


def _is_ref_op(op: str) -> bool:
    return opdefs.has_ref_input(op) or _makes_ref(op, 0)


class _StaleKnowledge(Exception):
    """An incremental import failed: some kept infos are out of date."""


class _Inference:
    """One run of :func:`infer_shapes` (see the module docstring for the waves)."""

    def __init__(self, graph: Graph, known: dict[str, list[TensorInfo]] | None = None) -> None:
        self.tfg = _tf_graph()
        self.op_registered = self.tfg.registered
        self.graph = graph
        self.nodes: dict[str, Any] = graph._nodes
        self.names = list(self.nodes)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.data_in: dict[str, list[TensorRef]] = {}
        self.data_users: dict[str, list[str]] = {}
        for name, nd in self.nodes.items():
            refs = [TensorRef.parse(s) for s in nd.input if not s.startswith("^")]
            self.data_in[name] = refs
            for r in refs:
                self.data_users.setdefault(r.node, []).append(name)
        self.ops: dict[str, Any] = {}  # imported node -> tf.Operation
        self.opaque: dict[str, str] = {}  # node -> reason
        self.opaque_infos: dict[str, list[TensorInfo]] = {}
        self.opaque_tensors: dict[TensorRef, Any] = {}
        self.guessed: set[str] = set()  # opaque nodes whose dtype is a guess
        self.done: set[str] = set()
        self.conflicts: list[str] = []
        self.retries = 0
        self.known = known or {}
        self.incremental = False

    def _mangle(self, ref: TensorRef) -> str:
        """The shadow graph's name of tensor ``ref`` (``gsn3``, ``gsn3:1``, ``gsn4_p1``)."""
        base = f"gsn{self.index[ref.node]}"
        if ref.port == 0:
            return base
        if ref.node in self.opaque_infos:
            return f"{base}_p{ref.port}"
        return f"{base}:{ref.port}"

    def _demangle(self, text: str) -> str:
        def sub(m: re.Match) -> str:
            i = int(m.group(1))
            if i >= len(self.names):
                return m.group(0)
            return self.names[i] if m.group(2) is None else f"{self.names[i]}:{m.group(2)}"

        return _MANGLED.sub(sub, text)

    # ------------------------------------------------------------------ driver
    def run(self) -> ShapeMap:
        self._premark()
        self._import_library()
        remaining = dict.fromkeys(self._preset() if self.known else self.nodes)
        waves = 0
        while remaining and waves < MAX_WAVES and self.retries <= MAX_RETRIES:
            waves += 1
            pending = [n for n in remaining if n in self.opaque]
            ready = [n for n in pending if self._inputs_done(n)]
            self._resolve(ready)
            for n in ready:
                del remaining[n]
            pending = [n for n in pending if n in remaining]
            blocked = self._downstream(pending, remaining)
            batch = [n for n in remaining if n not in self.opaque and n not in blocked]
            if batch:
                if self._import(batch):
                    for n in batch:
                        del remaining[n]
            elif not ready:
                # Opaque nodes waiting on each other (a loop through a custom op): give
                # them what is known and go on.
                self._resolve(pending)
                for n in pending:
                    del remaining[n]
        return self._collect(remaining)

    def _preset(self) -> list[str]:
        """Take the known nodes' infos; the nodes to import (graph order)."""
        known = dict(self.known)
        todo = [n for n in self.nodes if n not in known]
        subset = set(todo)
        while todo:
            name = todo.pop()
            for r in self.data_in[name]:
                infos = known.get(r.node)
                if infos is None:
                    continue
                info = infos[r.port] if r.port < len(infos) else None
                if info is not None and r.node in self.opaque:
                    continue  # a custom op: only ever known by its infos
                if (
                    info is None
                    or self.nodes[r.node].op == "Const"
                    or info.dtype is None
                    or not info.dtype.is_floating
                ):
                    del known[r.node]
                    subset.add(r.node)
                    todo.append(r.node)
        boundary = set()
        for name in subset:
            boundary.update(r.node for r in self.data_in[name] if r.node in known)
        for name, infos in known.items():
            self.opaque_infos[name] = infos
            self.done.add(name)
        if boundary:
            self._stand_ins([n for n in self.nodes if n in boundary])
        self.incremental = True
        return [n for n in self.nodes if n in subset]

    def _inputs_done(self, name: str) -> bool:
        return all(r.node in self.done or r.node not in self.nodes for r in self.data_in[name])

    def _downstream(self, roots: Iterable[str], remaining: dict[str, None]) -> set[str]:
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            n = stack.pop()
            for u in self.data_users.get(n, ()):
                if u not in seen and u in remaining:
                    seen.add(u)
                    stack.append(u)
        return seen

    # ------------------------------------------------------------------ opaque nodes
    def _premark(self) -> None:
        """Make opaque, before any import, the nodes TensorFlow is known to refuse."""
        registered: dict[str, bool] = {}
        ref_nodes = []
        host = {e.node for e in opdefs.side_effects(self.graph)}
        for name, nd in self.nodes.items():
            op = nd.op
            if op not in registered:
                registered[op] = self.op_registered(op)
            if name in host:
                self.opaque[name] = "host"  # never evaluated by the shape refiner
            elif not registered[op]:
                self.opaque[name] = "custom"
            elif any(r.node not in self.nodes for r in self.data_in[name]):
                self.opaque[name] = "dangling"
            elif opdefs.has_ref_input(op):
                ref_nodes.append(name)
        # A ref input must come from a node that still makes a ref (a variable, RefSwitch
        # on a variable...): `Assign` on a frozen Const does not import. Import errors
        # catch what this misses, one retry each.
        changed = True
        while changed:
            changed = False
            for name in ref_nodes:
                if name in self.opaque:
                    continue
                refs = self.data_in[name]
                for i in _ref_arg_indices(self.nodes[name].op):
                    if i >= len(refs):
                        continue
                    src = refs[i]
                    if src.node in self.opaque or not _makes_ref(self.nodes[src.node].op, src.port):
                        self.opaque[name] = "ref"
                        changed = True
                        break

    def _resolve(self, names: list[str]) -> None:
        """Compute the outputs of opaque nodes and stand Placeholders in for them."""
        if not names:
            return
        for name in names:
            self.opaque_infos[name] = self._opaque_outputs(name)
        self._stand_ins(names)
        self.done.update(names)

    def _stand_ins(self, names: list[str]) -> None:
        """Placeholders with the ``opaque_infos`` of ``names``."""
        try:
            self._placeholders(names, safe=False)
        except Exception:  # a dtype TF refuses in a Placeholder: float32, unknown shape
            self._placeholders(names, safe=True)

    def _placeholders(self, names: list[str], safe: bool) -> None:
        chunks, refs = [], []
        for name in names:
            for port, info in enumerate(self.opaque_infos[name]):
                ref = TensorRef(name, port)
                dtype = info.dtype if info.dtype not in (None, DType.invalid) else DType.float32
                nd = proto.NodeDef(name=self._mangle(ref), op="Placeholder")
                nd.attr["dtype"].type = int(DType.float32 if safe else dtype)
                nd.attr["shape"].shape.CopyFrom(make_shape(None if safe else info.shape))
                chunks.append(_field(1, nd.SerializeToString()))
                refs.append(ref)
        if not chunks:
            return
        ops = self._tf_import(b"".join(chunks), {}, [self._mangle(r) for r in refs])
        self.opaque_tensors.update((r, (op, 0)) for r, op in zip(refs, ops))

    def _opaque_outputs(self, name: str) -> list[TensorInfo]:
        nd = self.nodes[name]
        node = self.graph.node(name)
        infos: list[TensorInfo] = []
        fn = shape_fn(nd.op)
        if fn is not None:
            inputs = [self._info(r) for r in self.data_in[name]]
            try:
                infos = [_clean(i) for i in fn(node, inputs)]
            except Exception:  # a user shape function must not break inference
                infos = []
        count = opdefs.num_outputs(nd)
        if count is None:
            count = 1 if self.opaque[name] == "custom" else 0
        count = max(count, self.graph.num_outputs_used(name), len(infos))
        for port in range(len(infos), count):
            dtype = opdefs.output_dtype(nd, port)
            if dtype is None and (port == 0 or not opdefs.is_registered(nd.op)):
                dtype = attr_dtype(node)
            if dtype is None:
                dtype = DType.float32
                self.guessed.add(name)
            infos.append(TensorInfo(dtype, None))
        if any(i.dtype is None for i in infos):
            self.guessed.add(name)
        return infos

    # ------------------------------------------------------------------ importing
    def _import_library(self) -> None:
        if not self.graph.library:
            return
        try:
            self._tf_import(_field(2, bytes(self.graph.library)), {}, [])
        except Exception:  # function call nodes then fail one by one and turn opaque
            pass

    def _shadow(self, name: str) -> bytes:
        nd = self.nodes[name]
        if nd.op == "Const" and self.graph.const_nbytes(name) > BIG_CONST_BYTES:
            tp = nd.attr["value"].tensor
            out = proto.NodeDef(name=f"gsn{self.index[name]}", op="Placeholder")
            out.attr["dtype"].type = tp.dtype
            out.attr["shape"].shape.CopyFrom(tp.tensor_shape)
            return out.SerializeToString()
        out = proto.NodeDef(name=f"gsn{self.index[name]}", op=nd.op)
        out.input.extend(self._mangle(r) for r in self.data_in[name])
        for key, value in nd.attr.items():
            if key != "_class":  # colocation with nodes that may not be there
                out.attr[key].CopyFrom(value)
        return out.SerializeToString()

    def _import(self, batch: list[str]) -> bool:
        """Import ``batch``; on failure make the guilty node opaque and return False."""
        members = set(batch)
        chunks = []
        input_map: dict[str, Any] = {}
        for name in batch:
            chunks.append(_field(1, self._shadow(name)))
            for r in self.data_in[name]:
                if r.node in members:
                    continue
                key = self._mangle(r)
                if key in input_map:
                    continue
                tensor = self._tensor(r)
                if tensor is None:
                    self._blame_node(name, f"input {r} does not exist", "conflict")
                    return False
                input_map[key] = tensor
        try:
            ops = self._tf_import(
                b"".join(chunks), input_map, [f"gsn{self.index[n]}" for n in batch]
            )
        except Exception as e:  # TF raises ValueError, NotFoundError, InvalidArgumentError...
            self._blame(e, batch)
            return False
        self.ops.update(zip(batch, ops))
        self.done.update(batch)
        return True

    def _tf_import(self, node_bytes: bytes, input_map: dict[str, Any], names: list[str]) -> list:
        gd = node_bytes + _field(4, self.graph.versions.SerializeToString())
        return self.tfg.import_(gd, input_map, names)

    def _tensor(self, ref: TensorRef) -> Any:
        """``(operation, port)`` of ``ref`` in the shadow graph, or None."""
        if ref.node in self.opaque_infos:
            return self.opaque_tensors.get(ref)
        op = self.ops.get(ref.node)
        if op is None or ref.port >= self.tfg.num_outputs(op):
            return None
        return (op, ref.port)

    def _blame(self, error: Exception, batch: list[str]) -> None:
        if self.incremental:
            raise _StaleKnowledge(str(error))
        self.retries += 1
        msg = str(error).strip() or type(error).__name__
        first = self._demangle(msg.splitlines()[0])
        m = _UNREGISTERED.search(msg)
        if m:
            hit = [n for n in batch if self.nodes[n].op == m.group(1)]
            for n in hit:
                self.opaque[n] = "custom"
            if hit:
                return
        members = set(batch)
        for pattern in _BLAME:
            for cand in pattern.findall(msg):
                i = int(cand[3:])
                if i < len(self.names) and self.names[i] in members:
                    self._blame_node(self.names[i], first, None)
                    return
        # Nobody to blame: give up on this batch rather than guess.
        self.conflicts.append(f"import failed: {first}")
        for n in batch:
            self.opaque[n] = "failed"

    def _blame_node(self, name: str, first_line: str, reason: str | None) -> None:
        nd = self.nodes[name]
        if reason is None:
            tolerated = (
                "_ref" in first_line
                or _is_ref_op(nd.op)
                or not opdefs.is_registered(nd.op)
                or any(r.node in self.guessed for r in self.data_in[name])
            )
            reason = "ref" if tolerated else "conflict"
        self.opaque[name] = reason
        if reason not in _TOLERATED:
            self.conflicts.append(f"node {name!r}: {first_line}")

    # ------------------------------------------------------------------ results
    def _info(self, ref: TensorRef) -> TensorInfo:
        infos = self.opaque_infos.get(ref.node)
        if infos is not None:
            return infos[ref.port] if ref.port < len(infos) else UNKNOWN
        tensor = self._tensor(ref)
        return UNKNOWN if tensor is None else self._tensor_info(*tensor)

    def _collect(self, remaining: dict[str, None]) -> ShapeMap:
        result = ShapeMap()
        for name, nd in self.nodes.items():
            infos = self.opaque_infos.get(name)
            if infos is not None:
                for port, info in enumerate(infos):
                    result[TensorRef(name, port)] = info
                continue
            op = self.ops.get(name)
            if op is not None:
                for port in range(self.tfg.num_outputs(op)):
                    result[TensorRef(name, port)] = self._tensor_info(op, port)
                continue
            # Given up on (too many failed imports): what the attributes say.
            node = self.graph.node(name)
            count = max(opdefs.num_outputs(nd) or 0, self.graph.num_outputs_used(name))
            for port in range(count):
                dtype = opdefs.output_dtype(nd, port)
                if dtype is None and port == 0:
                    dtype = attr_dtype(node)
                result[TensorRef(name, port)] = TensorInfo(dtype, None)
        result.conflicts = self.conflicts
        result.opaque = dict(self.opaque)
        result.incremental = self.incremental
        return result


    def _tensor_info(self, op: Any, port: int) -> TensorInfo:
        try:
            dtype: DType | None = DType.of(self.tfg.dtype(op, port))
        except ValueError:
            dtype = None
        return TensorInfo(dtype, self.tfg.shape(op, port))


# ---------------------------------------------------------------------------- TF backends
class _PyGraph:
    """The shadow graph in a ``tf.Graph`` (the ``tensorflow`` package): the fallback when
    TensorFlow's C library cannot be used directly (:mod:`graphsurgery.ir.tf_capi`)."""

    def __init__(self) -> None:
        import tensorflow as tf
        from tensorflow.python.framework import op_def_registry

        self.tf = tf
        self.graph = tf.Graph()
        self.registered = lambda op: op_def_registry.get(op) is not None

    def import_(self, graph_def: bytes, input_map: dict[str, Any], names: list[str]) -> list:
        gd = self.tf.compat.v1.GraphDef.FromString(graph_def)
        imap = {k: op.outputs[port] for k, (op, port) in input_map.items()}
        with self.graph.as_default():
            return self.tf.graph_util.import_graph_def(
                gd, input_map=imap or None, return_elements=names, name="")

    @staticmethod
    def num_outputs(op: Any) -> int:
        return len(op.outputs)

    @staticmethod
    def dtype(op: Any, port: int) -> int:
        return op.outputs[port].dtype.as_datatype_enum

    @staticmethod
    def shape(op: Any, port: int) -> tuple[int, ...] | None:
        shape = op.outputs[port].shape
        if shape.rank is None:
            return None
        return tuple(-1 if d is None else int(d) for d in shape.as_list())


def _tf_graph() -> Any:
    """A fresh shadow graph: TensorFlow's C library through ctypes when it loads (about
    0.2 s, once; :meth:`Pipeline.warm_up` starts it early), else a ``tf.Graph`` (``import
    tensorflow``, 2+ s). Setting ``GRAPHSURGERY_SHAPES=python`` forces the latter."""
    from . import tf_capi

    if os.environ.get("GRAPHSURGERY_SHAPES") != "python" and tf_capi.load() is not None:
        return tf_capi.CGraph()
    return _PyGraph()


def _clean(info: Any) -> TensorInfo:
    """Accept what a user shape function returns: a TensorInfo or (dtype, shape)."""
    if isinstance(info, TensorInfo):
        dtype, shape = info.dtype, info.shape
    else:
        dtype, shape = info
    dtype = None if dtype is None else DType.of(dtype)
    if shape is not None:
        shape = tuple(-1 if d is None or int(d) < 0 else int(d) for d in shape)
    return TensorInfo(dtype, shape)
