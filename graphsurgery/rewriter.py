"""The Rewriter: the one object through which every change to a graph is made.

Each mutation (create a node, redirect uses, change an input or attribute, erase) is
recorded in a journal with the pass and rule responsible, so that the pass manager can
report what changed, the diff renderer can colour it, and provenance (which pass and rule
made each node) is known without writing anything into the exported NodeDefs.

Change detection is honest: :attr:`Rewriter.changed` compares the touched nodes with
what they were before, so a pass that removes and re-adds the same node, or sets an
attribute to the value it already had, reports no change.

Example::

    rw = gs.Rewriter(graph, pass_id="my::fold_mul")
    k = rw.const(np.float32(2.0), name="two")
    y = rw.add_node("Mul", [x, k], {"T": gs.DType.float32}, name="scaled")
    rw.replace_uses(old_tensor, y.output())
    rw.erase_dead()
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import GraphError
from .ir import opdefs, proto
from .ir.attrs import numpy_to_tensor, python_to_attr
from .ir.dtypes import DType
from .ir.graph import Graph, Node, Provenance
from .ir.names import Input, TensorRef, is_valid_node_name

InputLike = str | TensorRef | Node | Input
_LOC = b"loc:@"
# Nodes larger than this are remembered by digest in the change journal.
_DIGEST_BYTES = 1 << 20


@dataclass(frozen=True)
class _Digest:
    """Stands in for a large NodeDef: equal digests mean equal content."""

    size: int
    digest: bytes

    @classmethod
    def of(cls, node_def: Any) -> _Digest:
        data = node_def.SerializeToString(deterministic=True)
        return cls(len(data), hashlib.blake2b(data, digest_size=20).digest())


@dataclass(frozen=True)
class Event:
    """One journal entry: ``kind`` is add, erase, inputs, attr, op or interface."""

    kind: str
    node: str
    pass_id: str
    rule: str | None
    detail: str = ""


class Rewriter:
    """Journaled mutations of ``graph`` on behalf of ``pass_id``."""

    def __init__(self, graph: Graph, pass_id: str = "<user>") -> None:
        self.graph = graph
        self.pass_id = pass_id
        self.rule: str | None = None
        self.journal: list[Event] = []
        self._before: dict[str, Any] = {}
        self._interface = (list(graph.inputs), list(graph.outputs))
        # For keep_output_names(): output slots given a new tensor with set_outputs (None:
        # all of them), and the dtype of each slot's tensor when a replace_uses moved it.
        self._chosen: set[int] | None = set()
        self._moved_dtype: dict[int, DType | None] = {}

    # ------------------------------------------------------------------ bookkeeping
    @contextlib.contextmanager
    def rule_scope(self, rule: str) -> Iterator[Rewriter]:
        """Attribute the changes made inside the block to ``rule``."""
        prev, self.rule = self.rule, rule
        try:
            yield self
        finally:
            self.rule = prev

    def _record(self, kind: str, name: str, detail: str = "") -> None:
        self.journal.append(Event(kind, name, self.pass_id, self.rule, detail))

    def _touch(self, name: str, erasing: bool = False) -> None:
        if name not in self._before:
            nd = self.graph._nodes.get(name)
            # A large node (a weight) is remembered by digest, so that replacing every
            # weight of a 120 MB graph does not keep the old ones alive until the pass ends.
            # An erased one needs no digest: its absence is the change (should a node of
            # that name come back, it counts as changed, which errs on the safe side).
            # Only a Const's value gets that large; its size is read from its shape, since
            # ByteSize() serialises the whole message to count it.
            if (nd is not None and nd.op == "Const" and "value" in nd.attr
                    and self.graph.const_nbytes(name) > _DIGEST_BYTES):
                nd = _Digest(0, b"") if erasing else _Digest.of(nd)
            self._before[name] = nd

    def _mark(self, name: str, action: str) -> None:
        prev = self.graph.provenance.get(name)
        if action == "modified" and prev is not None and prev.action == "created":
            if prev.pass_id == self.pass_id:
                return  # still "created by this pass"
        self.graph.provenance[name] = Provenance(self.pass_id, self.rule, action)

    def _commit(self, nd: Any, kind: str, detail: str = "") -> Node:
        self._touch(nd.name)
        existed = nd.name in self.graph._nodes
        self.graph._put(nd)
        self._mark(nd.name, "modified" if existed else "created")
        self._record(kind, nd.name, detail)
        return Node(self.graph, nd)

    def _copy(self, node: str | Node) -> Any:
        name = node.name if isinstance(node, Node) else node
        if name not in self.graph._nodes:
            raise GraphError(f"no node named {name!r}")
        nd = proto.NodeDef()
        nd.CopyFrom(self.graph._nodes[name])
        return nd

    @property
    def touched(self) -> set[str]:
        return set(self._before)

    @property
    def changes(self) -> dict[str, str]:
        """Net changes so far: node name -> ``added`` | ``removed`` | ``changed``."""
        out = {}
        for name, before in self._before.items():
            after = self.graph._nodes.get(name)
            if before is None and after is not None:
                out[name] = "added"
            elif before is not None and after is None:
                out[name] = "removed"
            elif before is not None and after is not None and before is not after:
                if isinstance(before, _Digest):
                    if not before.digest or _Digest.of(after) != before:
                        out[name] = "changed"
                elif before != after:
                    out[name] = "changed"
        return out

    @property
    def changed(self) -> bool:
        """True when the graph differs from what it was when this rewriter was made."""
        if (list(self.graph.inputs), list(self.graph.outputs)) != self._interface:
            return True
        return bool(self.changes)

    # ------------------------------------------------------------------ creation
    def add_node(
        self,
        op: str,
        inputs: Sequence[InputLike] = (),
        attrs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        control_inputs: Iterable[str | Node] = (),
        device: str = "",
    ) -> Node:
        """Create a node; ``name`` defaults to a fresh name derived from ``op``.

        A given ``name`` that is taken is made unique (``name_1``); check ``node.name``.
        """
        nd = proto.NodeDef(op=op, device=device)
        nd.name = self.graph.unique_name(name or op)
        if not is_valid_node_name(nd.name):
            raise GraphError(f"invalid node name {nd.name!r}")
        data = [_input_string(i) for i in inputs]
        ctrl = [f"^{c.name if isinstance(c, Node) else c}" for c in control_inputs]
        for s in data + ctrl:
            if Input.parse(s).node not in self.graph._nodes:
                raise GraphError(f"input {s!r} of new node {nd.name!r} does not exist")
        nd.input.extend(data + ctrl)
        for key, value in (attrs or {}).items():
            nd.attr[key].CopyFrom(python_to_attr(value))
        return self._commit(nd, "add", op)

    def const(self, value: Any, *, name: str | None = None, dtype: DType | None = None) -> Node:
        """Create a ``Const`` holding ``value`` (Python floats become float32)."""
        tp = numpy_to_tensor(value, dtype)
        nd = proto.NodeDef(op="Const")
        nd.name = self.graph.unique_name(name or "Const")
        nd.attr["dtype"].type = tp.dtype
        nd.attr["value"].tensor.CopyFrom(tp)
        return self._commit(nd, "add", "Const")

    def placeholder(
        self, name: str, dtype: DType, shape: Sequence[int | None] | None
    ) -> Node:
        """Create a ``Placeholder`` (does not declare it as a graph input)."""
        from .ir.attrs import Shape

        return self.add_node(
            "Placeholder", [], {"dtype": DType.of(dtype), "shape": Shape(_dims(shape))}, name=name
        )

    # ------------------------------------------------------------------ edits
    def set_inputs(self, node: str | Node, inputs: Sequence[InputLike]) -> Node:
        """Replace a node's data inputs, keeping its control inputs."""
        nd = self._copy(node)
        ctrl = [s for s in nd.input if s.startswith("^")]
        data = [_input_string(i) for i in inputs]
        for s in data:
            if Input.parse(s).node not in self.graph._nodes:
                raise GraphError(f"input {s!r} of {nd.name!r} does not exist")
        if list(nd.input) == data + ctrl:
            return self.graph.node(nd.name)
        del nd.input[:]
        nd.input.extend(data + ctrl)
        return self._commit(nd, "inputs", ",".join(data))

    def set_input(self, node: str | Node, index: int, tensor: InputLike) -> Node:
        """Replace data input ``index`` of ``node``."""
        data = list(_data_inputs(self.graph.node(_name(node))))
        data[index] = _input_string(tensor)
        return self.set_inputs(node, data)

    def add_control_input(self, node: str | Node, dep: str | Node) -> Node:
        dep_name = _name(dep)
        nd = self._copy(node)
        key = f"^{dep_name}"
        if key in nd.input:
            return self.graph.node(nd.name)
        nd.input.append(key)
        return self._commit(nd, "inputs", key)

    def remove_control_input(self, node: str | Node, dep: str | Node) -> Node:
        nd = self._copy(node)
        key = f"^{_name(dep)}"
        kept = [s for s in nd.input if s != key]
        if len(kept) == len(nd.input):
            return self.graph.node(nd.name)
        del nd.input[:]
        nd.input.extend(kept)
        return self._commit(nd, "inputs", f"-{key}")

    def set_attr(self, node: str | Node, key: str, value: Any) -> Node:
        nd = self._copy(node)
        av = python_to_attr(value)
        if key in nd.attr and nd.attr[key] == av:
            return self.graph.node(nd.name)
        nd.attr[key].CopyFrom(av)
        return self._commit(nd, "attr", key)

    def del_attr(self, node: str | Node, key: str) -> Node:
        nd = self._copy(node)
        if key not in nd.attr:
            return self.graph.node(nd.name)
        del nd.attr[key]
        return self._commit(nd, "attr", f"-{key}")

    def set_op(self, node: str | Node, op: str) -> Node:
        nd = self._copy(node)
        if nd.op == op:
            return self.graph.node(nd.name)
        nd.op = op
        return self._commit(nd, "op", op)

    def replace_node_def(self, node_def: Any) -> Node:
        """Put a whole NodeDef (ours or TensorFlow's) in place of the node with its name."""
        nd = node_def if isinstance(node_def, proto.NodeDef) else (
            proto.NodeDef.FromString(node_def.SerializeToString())
        )
        if nd.name in self.graph._nodes and self.graph._nodes[nd.name] == nd:
            return self.graph.node(nd.name)
        return self._commit(nd, "replace", nd.op)

    def replace_uses(
        self, old: InputLike, new: InputLike, *, outputs: bool = True, exclude: Iterable[str] = ()
    ) -> int:
        """Redirect every data use of tensor ``old`` to ``new``; returns the number redirected.

        Nodes named in ``exclude`` keep their input (useful when ``new`` consumes ``old``).
        With ``outputs`` the graph's declared outputs follow too.
        """
        old_ref, new_ref = _tensor(old), _tensor(new)
        if old_ref == new_ref:
            return 0
        skip = set(exclude)
        count = 0
        for user, _ in _group_consumers(self.graph, old_ref):
            if user in skip:
                continue
            nd = self._copy(user)
            for i, s in enumerate(nd.input):
                if not s.startswith("^") and TensorRef.parse(s) == old_ref:
                    nd.input[i] = new_ref.input_string
                    count += 1
            self._commit(nd, "inputs", f"{old_ref}->{new_ref}")
        if outputs and old_ref in self.graph.outputs:
            for slot, t in enumerate(self.graph.outputs):
                if t == old_ref and slot not in self._moved_dtype:
                    self._moved_dtype[slot] = self._dtype(old_ref)
            self.graph.outputs = [new_ref if t == old_ref else t for t in self.graph.outputs]
            self._record("interface", new_ref.node, f"output {old_ref}->{new_ref}")
            count += 1
        return count

    def replace_node(self, old: str | Node, new: str | Node, *, control: bool = True) -> int:
        """Redirect every output port of ``old`` to the same port of ``new``, and (with
        ``control``) move control dependencies on ``old`` to ``new``."""
        old_name, new_name = _name(old), _name(new)
        count = 0
        for port in range(max(self.graph.num_outputs_used(old_name), 1)):
            count += self.replace_uses(TensorRef(old_name, port), TensorRef(new_name, port))
        if control:
            for user in self.graph.control_users(old_name):
                if user.name == new_name:
                    continue
                self.remove_control_input(user, old_name)
                self.add_control_input(user, new_name)
                count += 1
        return count

    def set_outputs(self, outputs: Sequence[InputLike]) -> None:
        refs = [_tensor(t) for t in outputs]
        for r in refs:
            if r.node not in self.graph._nodes:
                raise GraphError(f"output {r} does not exist")
        base = self._interface[1]
        if self._chosen is not None and len(refs) == len(base):
            self._chosen.update(i for i, (r, b) in enumerate(zip(refs, base)) if r != b)
        else:
            self._chosen = None  # the caller chose the interface, names included
        if refs != self.graph.outputs:
            self.graph.outputs = refs
            self._record("interface", refs[0].node if refs else "", "outputs")

    def set_graph_inputs(self, inputs: Sequence[InputLike]) -> None:
        refs = [_tensor(t) for t in inputs]
        if refs != self.graph.inputs:
            self.graph.inputs = refs
            self._record("interface", refs[0].node if refs else "", "inputs")

    # ------------------------------------------------------------------ output names
    def keep_output_names(self) -> int:
        """Give declared outputs the names they had when this rewriter was made.

        Callers fetch outputs by name, so when a pass replaces a declared output (a folded
        ``cond/Merge`` becomes ``cond/mul``, a duplicate merges into its twin) the output
        must still be called ``cond/Merge``. For each such name, a replacement that this
        rewriter created and nothing else uses is renamed; otherwise an ``Identity`` of
        that name reads the replacement (an ``IdentityN`` when the output was port
        ``p > 0``: its port ``p`` is the replacement, its other ports what the old node's
        ports became). A node still holding the name (the replaced node survived, say for
        a control dependency) moves to ``<name>/replaced`` first. Outputs chosen with
        :meth:`set_outputs` are left as chosen. The pass manager calls this after every
        pass; returns the number of names given back.
        """
        graph = self.graph
        base = self._interface[1]
        if self._chosen is None or len(graph.outputs) != len(base):
            return 0
        groups: dict[str, dict[int, TensorRef]] = {}
        for slot, (old, cur) in enumerate(zip(base, graph.outputs)):
            if old != cur and slot not in self._chosen:
                groups.setdefault(old.node, {})[slot] = old
        inputs = {t.node for t in graph.inputs}
        restored = 0
        for name, slots in groups.items():
            if name in inputs:
                continue  # a declared input keeps being what is fed
            want: dict[int, tuple[TensorRef, DType | None]] = {}
            for slot, old in slots.items():
                want.setdefault(old.port, (graph.outputs[slot], self._moved_dtype.get(slot)))
            top = max(want)
            if name in graph._nodes:  # the old node survived: serve its other ports too
                survivor = self._move_away(name)
                ports = {t.port for t in graph.outputs if t.node == name}
                for port in sorted(ports | set(range(top + 1))):
                    if port not in want:
                        ref = TensorRef(survivor, port)
                        want[port] = (ref, self._dtype(ref))
                top = max(want)
            refs = [want.get(p, want[top]) for p in range(top + 1)]
            if not self._take_name(name, refs, inputs):
                continue
            outputs = list(graph.outputs)
            for slot, old in slots.items():
                outputs[slot] = old
            graph.outputs = outputs
            self._record("interface", name, "output name kept")
            restored += 1
        return restored

    def _take_name(
        self, name: str, refs: list[tuple[TensorRef, DType | None]], inputs: set[str]
    ) -> bool:
        """Make node ``name`` whose port ``i`` gives ``refs[i]``; False when impossible."""
        graph = self.graph
        first = refs[0][0]
        fresh = first.node in self._before and self._before[first.node] is None
        if (len(refs) == 1 and first.port == 0 and fresh and first.node not in inputs
                and not graph._users.get(first.node)
                and sum(t.node == first.node for t in graph.outputs) <= 1):
            nd = self._copy(first.node)
            nd.name = name
            self.erase(first.node, force=True)
            self._commit(nd, "add", f"renamed from {first.node}")
            return True
        dtypes = [dt or graph.dtype(ref) for ref, dt in refs]
        if any(dt is None for dt in dtypes):
            return False
        if len(refs) == 1:
            node = self.add_node("Identity", [first], {"T": dtypes[0]}, name=name)
        else:
            node = self.add_node("IdentityN", [ref for ref, _ in refs], {"T": dtypes}, name=name)
        return node.name == name

    def _move_away(self, name: str) -> str:
        """Rename node ``name`` to ``<name>/replaced``, its users following; the new name."""
        nd = self._copy(name)
        nd.name = self.graph.unique_name(f"{name}/replaced")
        self._commit(nd, "add", nd.op)
        for port in range(max(self.graph.num_outputs_used(name), 1)):
            self.replace_uses(TensorRef(name, port), TensorRef(nd.name, port), outputs=False)
        for user in self.graph.control_users(name):
            self.remove_control_input(user, name)
            self.add_control_input(user, nd.name)
        self.erase(name, force=True)
        return nd.name

    def _dtype(self, ref: TensorRef) -> DType | None:
        """The dtype of ``ref`` from its op's spec and attributes (no shape inference)."""
        nd = self.graph._nodes.get(ref.node)
        if nd is None:
            return None
        dtype = opdefs.output_dtype(nd, ref.port)
        if dtype is None or dtype == DType.invalid:
            dtype = self.graph.dtype_hint(ref)
        return dtype

    # ------------------------------------------------------------------ colocation
    def fix_colocation(self, renamed: Mapping[str, str] | None = None) -> int:
        """Repair ``_class: loc:@X`` attributes that name nodes which no longer exist.

        TensorFlow refuses to import a node colocated with a missing node ("Node 'c'
        expects to be colocated with unknown node 'X'"). An entry ``loc:@old`` becomes
        ``loc:@new`` when ``renamed`` maps ``old`` (possibly through a chain) to an existing
        node, else it is dropped; an emptied ``_class`` is deleted. The pass manager calls
        this after every pass that erased nodes. Returns the number of nodes changed.
        """
        renamed = renamed or {}
        graph = self.graph
        changed = 0
        for name in graph.names:
            nd = graph._nodes[name]
            if "_class" not in nd.attr:
                continue
            old = list(nd.attr["_class"].list.s)
            new: list[bytes] = []
            for entry in old:
                if entry.startswith(_LOC):
                    target = entry[len(_LOC):].decode(errors="replace")
                    seen = set()
                    while target not in graph and target in renamed and target not in seen:
                        seen.add(target)
                        target = renamed[target]
                    if target not in graph or target == name:
                        continue
                    entry = _LOC + target.encode()
                if entry not in new:
                    new.append(entry)
            if new == old:
                continue
            if new:
                self.set_attr(name, "_class", new)
            else:
                self.del_attr(name, "_class")
            changed += 1
        return changed

    @property
    def erased(self) -> bool:
        """True when this rewriter erased any node."""
        return any(e.kind == "erase" for e in self.journal)

    # ------------------------------------------------------------------ erasure
    def erase(self, node: str | Node, *, force: bool = False) -> None:
        """Remove a node. Refuses while anything still uses it, unless ``force``."""
        name = _name(node)
        if name not in self.graph._nodes:
            raise GraphError(f"no node named {name!r}")
        if not force and self.graph.has_outside_uses(name):
            users = [u.name for u in self.graph.users(name)]
            raise GraphError(f"cannot erase {name!r}: still used by {users or 'the outputs'}")
        self._touch(name, erasing=True)
        self.graph._drop(name)
        self._record("erase", name)

    def erase_dead(self, candidates: Iterable[str] | None = None) -> int:
        """Erase nodes nothing uses (and, transitively, what only they used).

        Only ``candidates`` and their inputs are considered when given; graph inputs and
        outputs are never erased. Returns the number erased.
        """
        keep = {t.node for t in self.graph.outputs} | {t.node for t in self.graph.inputs}
        pending = list(self.graph.names if candidates is None else candidates)
        erased = 0
        while pending:
            name = pending.pop()
            if name in keep or name not in self.graph._nodes:
                continue
            if self.graph._users.get(name):
                continue
            producers = [Input.parse(s).node for s in self.graph._nodes[name].input]
            self.erase(name)
            erased += 1
            pending.extend(producers)
        return erased


def _name(node: str | Node | TensorRef) -> str:
    if isinstance(node, Node):
        return node.name
    if isinstance(node, TensorRef):
        return node.node
    return node


def _tensor(x: InputLike) -> TensorRef:
    if isinstance(x, TensorRef):
        return x
    if isinstance(x, Node):
        return x.output(0)
    if isinstance(x, Input):
        return x.tensor
    return TensorRef.parse(x)


def _input_string(x: InputLike) -> str:
    if isinstance(x, Input):
        return str(x)
    return _tensor(x).input_string


def _data_inputs(node: Node) -> list[str]:
    return [s for s in node.proto.input if not s.startswith("^")]


def _group_consumers(graph: Graph, ref: TensorRef) -> list[tuple[str, int]]:
    seen: dict[str, int] = {}
    for n, i in graph.consumers(ref):
        seen.setdefault(n.name, i)
    return list(seen.items())


def _dims(shape: Sequence[int | None] | None) -> tuple[int | None, ...] | None:
    return None if shape is None else tuple(shape)


def as_array(value: Any) -> np.ndarray:
    """Helper for passes: a Python scalar or sequence as a float32/int32 numpy array."""
    arr = np.asarray(value)
    if arr.dtype == np.float64:
        return arr.astype(np.float32)
    if arr.dtype == np.int64:
        return arr.astype(np.int32)
    return arr
