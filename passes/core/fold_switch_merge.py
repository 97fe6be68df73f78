"""``core::fold_switch_merge``: fold v1 ``Switch``/``Merge`` with constant predicates.

The pass mirrors TensorFlow's executor semantics for dead tensors. Every node and tensor
gets one of three states, computed in one topological sweep:

* ``DEAD``: never produced (the untaken output of a Switch, and everything downstream);
* ``LIVE``: always produced when the graph runs;
* ``UNKNOWN``: depends on a predicate only known at run time.

A non-Merge node is dead when any data or control input is dead; a ``Merge`` is dead when
all its data inputs are (it ignores dead control inputs). A Switch whose predicate is a
live constant is *folded*: the taken port is replaced by the data input, the other port is
dead. A Merge with a single input that is not dead is folded to that input. Nodes that are
constant-valued and downstream of a folded Switch (the ``switch_t``/``switch_f`` pivots of
``tf.cond``) are *substitutable*: a control dependency on one is replaced by the control
dependencies its value actually rests on, which for a ``tf.cond`` on a frozen ``lod`` is
nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from graphsurgery import kernels
from graphsurgery.errors import GraphError
from graphsurgery.ir.graph import Graph
from graphsurgery.ir.names import Input, TensorRef
from graphsurgery.registry import Pass, register_pass
from graphsurgery.rewriter import Rewriter

from ._util import BACK_EDGE_OPS, SWITCH_OPS, add_controls

DEAD, LIVE, UNKNOWN = 0, 1, 2

_FOLDABLE_SWITCHES = frozenset({"Switch", "RefSwitch"})
_MERGES = frozenset({"Merge", "RefMerge"})
# Constants larger than this are never decoded to evaluate a predicate.
_MAX_ELEMENTS = 16
_MAX_ROUNDS = 20

# Ops a constant predicate may be computed with (evaluated by graphsurgery.kernels).
_COMPUTED = frozenset({
    "Greater", "Less", "GreaterEqual", "LessEqual", "Equal", "NotEqual", "LogicalAnd",
    "LogicalOr", "LogicalNot", "Add", "AddV2", "Sub", "Mul", "Neg", "Cast",
})
_PASS_THROUGH = frozenset({"Identity", "Snapshot", "StopGradient", "PreventGradient"})

# A dependency item: a node name (a control dependency to keep) or a tensor (depend on the
# node producing it; resolved through folded Switch/Merge nodes when rewriting).
Item = str | TensorRef


@register_pass("core::fold_switch_merge")
class FoldSwitchMerge(Pass):
    """Fold Switch/Merge control flow (frozen ``tf.cond``) whose predicate is constant.

    A predicate is constant when it is a ``Const`` or computed from small constants by
    comparisons (``Greater``, ``Less``, ``GreaterEqual``, ``LessEqual``, ``Equal``,
    ``NotEqual``), logical ops, ``Cast``, identities and scalar ``Add``/``Sub``/``Mul``/``Neg``,
    evaluated with TensorFlow's semantics (:mod:`graphsurgery.kernels`: denormals flushed).
    ``Switch(data, pred)`` has port 0 = output_false and port 1 = output_true: uses of the
    taken port read ``data``, the other port is dead, and dead-ness propagates to every
    consumer except a ``Merge``, which takes its one live input (its ``value_index`` port
    becomes an int32 ``Const``). Dead nodes are erased, control dependencies on them are
    dropped, and control dependencies on live pivots are replaced by what the pivots
    depended on. Nested conds fold fully in one run.

    Before::

        lod = Const 0.0
        p = Greater(lod, 0.5)
        s = Switch(x, p)
        t = Mul(s:1, 2.0)                     (taken when p)
        f = Sub(s:0, 1.0)
        m = Merge(f, t)
        y = Identity(m)                       (declared output)

    After::

        f = Sub(x, 1.0)
        y = Identity(f)
    """

    def run(self, graph: Graph, rw: Rewriter) -> None:
        if not graph.nodes(*_FOLDABLE_SWITCHES):
            return  # without a Switch nothing is dead and no Merge has a single live input
        for _ in range(_MAX_ROUNDS):
            analysis = _Analysis(graph)
            if not analysis.has_work():
                break
            version = graph.version
            _Rewrite(graph, rw, analysis).apply()
            if graph.version == version:
                break


class _Analysis:
    """One topological sweep: states, constant values, folds and dependency sets."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.order = graph.toposort()
        self.state: dict[str, int] = {}
        self.inputs: dict[str, list[TensorRef]] = {}
        self.controls: dict[str, list[str]] = {}
        self.live_port: dict[str, int] = {}  # folded Switch -> taken port
        self.pick: dict[str, int] = {}  # folded Merge -> index of its one live input
        self.partial: dict[str, list[int]] = {}  # Merge with dead and several live inputs
        self.values: dict[TensorRef, np.ndarray] = {}
        self.touched: set[str] = set()  # data-downstream of a folded Switch/Merge
        self.deps: dict[str, frozenset[Item]] = {}
        for name in self.order:
            self._visit(name)
        self.substitutable = set(self.live_port) | set(self.pick) | {
            n for n in self.touched if n in self.deps and self.state[n] == LIVE
        }

    # ------------------------------------------------------------------ queries
    def tstate(self, t: TensorRef) -> int:
        st = self.state.get(t.node)
        if st is None:  # a loop back edge, not visited yet
            return UNKNOWN
        if t.node in self.live_port:
            return st if t.port == self.live_port[t.node] else DEAD
        if self.graph.node_def(t.node).op in SWITCH_OPS:
            return DEAD if st == DEAD else UNKNOWN
        return st

    def has_work(self) -> bool:
        return bool(
            self.live_port or self.pick or self.partial or DEAD in self.state.values()
        )

    def _tensor_deps(self, t: TensorRef) -> frozenset[Item]:
        if t in self.values and self.tstate(t) == LIVE and t.node in self.deps:
            return self.deps[t.node]
        return frozenset([t])

    def control_deps(self, c: str) -> frozenset[Item]:
        """What a control dependency on ``c`` must become when ``c`` is bypassed."""
        return self.deps.get(c, frozenset([c]))

    # ------------------------------------------------------------------ the sweep
    def _visit(self, name: str) -> None:
        nd = self.graph.node_def(name)
        data = [TensorRef.parse(s) for s in nd.input if not s.startswith("^")]
        ctrl = [s[1:] for s in nd.input if s.startswith("^")]
        self.inputs[name], self.controls[name] = data, ctrl
        if nd.op in _MERGES:
            self._visit_merge(name, data, ctrl)
        else:
            self._visit_node(name, nd.op, data, ctrl)
        self._mark_touched(name, data)
        if self.state[name] == DEAD:
            return
        # What a control dependency on this node rests on, for folded nodes and live
        # constant-valued ones (the only nodes a control dependency may bypass).
        if name in self.pick:
            used = [data[self.pick[name]]]
            ctrl = [c for c in ctrl if self.state.get(c) != DEAD]
        elif name in self.live_port or (
            self.state[name] == LIVE
            and any(TensorRef(name, p) in self.values for p in range(2))
        ):
            used = data
        else:
            return
        items: set[Item] = set()
        for t in used:
            items |= self._tensor_deps(t)
        for c in ctrl:
            items |= self.control_deps(c)
        self.deps[name] = frozenset(items)

    def _visit_node(self, name: str, op: str, data: list[TensorRef], ctrl: list[str]) -> None:
        states = [self.tstate(t) for t in data] + [self.state.get(c, UNKNOWN) for c in ctrl]
        st = DEAD if DEAD in states else (LIVE if all(s == LIVE for s in states) else UNKNOWN)
        self.state[name] = st
        if st == DEAD:
            return
        if op in _FOLDABLE_SWITCHES and len(data) == 2:
            pred = data[1]
            value = self.values.get(pred)
            if value is not None and self.tstate(pred) == LIVE and value.size == 1:
                port = int(bool(value.reshape(-1)[0]))
                self.live_port[name] = port
                if data[0] in self.values:
                    self.values[TensorRef(name, port)] = self.values[data[0]]
        elif op not in SWITCH_OPS:
            for port, value in _evaluate(self.graph, name, op, data, self.values).items():
                self.values[TensorRef(name, port)] = value

    def _visit_merge(self, name: str, data: list[TensorRef], ctrl: list[str]) -> None:
        graph = self.graph
        forward = [
            (i, t) for i, t in enumerate(data) if graph.node_def(t.node).op not in BACK_EDGE_OPS
        ]
        alive = [(i, t, self.tstate(t)) for i, t in forward]
        alive = [a for a in alive if a[2] != DEAD]
        if not alive:
            self.state[name] = DEAD
        elif len(forward) < len(data):  # a loop merge: never folded
            self.state[name] = UNKNOWN
        elif len(alive) == 1:
            i, t, st = alive[0]
            self.state[name] = st
            ctrl_unknown = any(self.state.get(c, UNKNOWN) == UNKNOWN for c in ctrl)
            if not ctrl_unknown and (st == LIVE or graph.num_outputs_used(name) < 2):
                self.pick[name] = i
                if t in self.values:
                    self.values[TensorRef(name, 0)] = self.values[t]
                    self.values[TensorRef(name, 1)] = np.array(i, dtype=np.int32)
        else:
            self.state[name] = LIVE if any(a[2] == LIVE for a in alive) else UNKNOWN
            if len(alive) < len(data):
                self.partial[name] = [a[0] for a in alive]

    def _mark_touched(self, name: str, data: list[TensorRef]) -> None:
        for t in data:
            if t.node in self.touched or t.node in self.pick or (
                self.live_port.get(t.node) == t.port
            ):
                self.touched.add(name)
                return


def _evaluate(
    graph: Graph, name: str, op: str, data: list[TensorRef], values: dict[TensorRef, np.ndarray]
) -> dict[int, np.ndarray]:
    """Values of the outputs of a small constant computation (empty when not one)."""
    if op == "Const":
        shape = graph.const_shape(name)
        if int(np.prod(shape, dtype=np.int64)) > _MAX_ELEMENTS:
            return {}
        try:
            return {0: np.asarray(graph.const_value(name))}
        except (ValueError, KeyError, GraphError):
            return {}
    args = [values.get(t) for t in data]
    if not args or any(a is None for a in args):
        return {}
    if op in _PASS_THROUGH:
        out = {0: args[0]}
    elif op == "IdentityN":
        out = dict(enumerate(args))
    elif op in _COMPUTED:
        # TensorFlow's semantics (denormals flushed, integer wrap-around, casts): the
        # branch picked must be the one TensorFlow takes.
        try:
            out = dict(enumerate(kernels.evaluate(graph.node(name), args)))
        except (kernels.KernelError, kernels.Unsupported):
            return {}
    else:
        return {}
    if any(v.size > _MAX_ELEMENTS for v in out.values()):
        return {}
    return out


class _Rewrite:
    """Applies one analysis: reroute folded ports, drop dead nodes, substitute pivots."""

    def __init__(self, graph: Graph, rw: Rewriter, analysis: _Analysis) -> None:
        self.graph = graph
        self.rw = rw
        self.a = analysis
        self.dead = {n for n, s in analysis.state.items() if s == DEAD}
        self.pivots: dict[TensorRef, str] = {}

    def apply(self) -> None:
        graph, rw, a = self.graph, self.rw, self.a
        self._check_interface()
        for name in a.order:
            if name in self.dead:
                continue
            if name in a.live_port:
                self._fold_switch(name)
            elif name in a.pick:
                self._fold_merge(name)
            elif name in a.partial and graph.num_outputs_used(name) < 2:
                cur = graph.node(name).data_inputs
                kept = [cur[i] for i in a.partial[name]]
                rw.set_inputs(name, kept)
                rw.set_attr(name, "N", len(kept))
        for name in a.order:
            if name in self.dead or name not in graph:
                continue
            for c in graph.node(name).control_inputs:
                if c in self.dead:
                    rw.remove_control_input(name, c)
                elif c in a.substitutable:
                    rw.remove_control_input(name, c)
                    add_controls(graph, rw, name, self._names(a.deps[c]))
        keep = self._still_referenced()
        producers: set[str] = set()
        for name in a.order:
            if name in self.dead and name not in keep:
                producers.update(t.node for t in a.inputs[name])
                producers.update(a.controls[name])
                rw.erase(name, force=True)
        folded = set(a.live_port) | set(a.pick) | a.substitutable
        for name in folded:
            producers.update(t.node for t in a.inputs[name])
        rw.erase_dead(folded | producers)

    def _check_interface(self) -> None:
        for t in self.graph.outputs:
            if self.a.tstate(t) == DEAD:
                raise GraphError(
                    f"core::fold_switch_merge: declared output {t} is only computed on a "
                    "branch that the constant predicates never take"
                )
        for t in self.graph.inputs:
            if t.node in self.dead:
                raise GraphError(
                    f"core::fold_switch_merge: declared input {t} depends on an untaken branch"
                )

    def _fold_switch(self, name: str) -> None:
        graph, rw = self.graph, self.rw
        ref = TensorRef(name, self.a.live_port[name])
        data = graph.node(name).data_inputs[0]
        users = {u.name for u, _ in graph.consumers(ref) if u.name not in self.dead}
        rw.replace_uses(ref, data, exclude=self.dead)
        self._forward(users, self.a.controls[name])

    def _fold_merge(self, name: str) -> None:
        graph, rw = self.graph, self.rw
        index = self.a.pick[name]
        data = graph.node(name).data_inputs[index]
        users = {u.name for u, _ in graph.consumers(TensorRef(name, 0)) if u.name not in self.dead}
        rw.replace_uses(TensorRef(name, 0), data, exclude=self.dead)
        if graph.num_outputs_used(name) >= 2:
            idx_ref = TensorRef(name, 1)
            users |= {u.name for u, _ in graph.consumers(idx_ref) if u.name not in self.dead}
            const = rw.const(np.array(index, dtype=np.int32), name=f"{name}/value_index")
            rw.replace_uses(idx_ref, const.output(), exclude=self.dead)
        live_ctrl = [c for c in self.a.controls[name] if c not in self.dead]
        self._forward(users, live_ctrl)

    def _forward(self, users: Iterable[str], controls: list[str]) -> None:
        items: set[Item] = set()
        for c in controls:
            items |= self.a.control_deps(c)
        if not items:
            return
        names = self._names(items)
        for user in users:
            add_controls(self.graph, self.rw, user, names)

    def _names(self, items: Iterable[Item]) -> list[str]:
        out = []
        for item in items:
            name = self._handle(item) if isinstance(item, TensorRef) else item
            if name not in out:
                out.append(name)
        return sorted(out)

    def _handle(self, t: TensorRef) -> str:
        """A node whose (node-level) dead-ness is that of tensor ``t``."""
        a = self.a
        while True:
            if t.node in a.live_port and t.port == a.live_port[t.node]:
                t = a.inputs[t.node][0]
            elif t.node in a.pick and t.port == 0:
                t = a.inputs[t.node][a.pick[t.node]]
            else:
                break
        nd = self.graph.node_def(t.node)
        if nd.op not in SWITCH_OPS:
            return t.node
        if t not in self.pivots:
            attrs: dict[str, Any] = {"T": self.graph.node(t.node).attr("T")}
            node = self.rw.add_node("Identity", [t], attrs, name=f"{t.node}/pivot_{t.port}")
            self.pivots[t] = node.name
        return self.pivots[t]

    def _still_referenced(self) -> set[str]:
        """Dead nodes a kept node still reads (a partial Merge whose value_index is used),
        with the dead nodes they read: these are not erased."""
        graph = self.graph
        stack = []
        for name in graph.names:
            if name in self.dead:
                continue
            for t in graph.node(name).data_inputs:
                if t.node in self.dead:
                    stack.append(t.node)
        keep: set[str] = set()
        while stack:
            n = stack.pop()
            if n in keep:
                continue
            keep.add(n)
            for s in graph.node_def(n).input:
                src = Input.parse(s).node
                if src in self.dead:
                    stack.append(src)
        return keep
