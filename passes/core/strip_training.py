"""``core::strip_training``: remove variable updates, checkpoint I/O and reference types."""

from __future__ import annotations

import numpy as np

from graphsurgery.errors import UsageError
from graphsurgery.ir import opdefs, proto
from graphsurgery.ir.attrs import python_to_attr
from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import Input, TensorRef
from graphsurgery.registry import Pass, register_pass
from graphsurgery.rewriter import Rewriter

# Ops that only update state, initialise it or save/restore it.
_TRAINING_OPS = frozenset({
    "Assign", "AssignAdd", "AssignSub",
    "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
    "StridedSliceAssign", "ResourceStridedSliceAssign",
    "CountUpTo", "ResourceCountUpTo",
    "IsVariableInitialized", "VarIsInitializedOp",
    "DestroyTemporaryVariable", "DestroyResourceOp",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
    "MergeV2Checkpoints",
})
# Optimizer updates and scatters: the ref-taking forms (``ScatterNd`` itself is pure) and
# every resource form.
_REF_PREFIXES = ("Apply", "SparseApply", "Scatter")
_RESOURCE_PREFIXES = ("ResourceApply", "ResourceSparseApply", "ResourceScatter")
# Reference-forwarding control-flow ops and their value counterparts.
_REF_TO_VALUE = opdefs.REF_OPS
# What is left of an unfrozen variable.
_VARIABLE_OPS = frozenset({"VariableV2", "Variable", "TemporaryVariable", "VarHandleOp"})
_REF_OFFSET = 100


def is_training_op(op: str) -> bool:
    """True for ops that update, initialise, check or checkpoint variables."""
    if op in _TRAINING_OPS or op.startswith(_RESOURCE_PREFIXES):
        return True
    return op.startswith(_REF_PREFIXES) and opdefs.has_ref_input(op)


@register_pass("core::strip_training")
class StripTraining(Pass):
    """Strip training-only ops so that a frozen graph imports again.

    A frozen graph that still holds ``Assign`` nodes fails to import with "Input 0 of
    node .../Assign was passed float from ...:0 incompatible with expected float_ref".
    This pass removes variable updates (``Assign``, ``AssignAdd``, ``AssignSub``, resource
    assigns, scatters, optimizer ``Apply*``), initialisation checks, and checkpoint
    save/restore ops. Control dependencies on them are dropped. A data use of an update
    reads what the update returned: ``Assign`` -> its value input, ``AssignAdd`` /
    ``AssignSub`` -> ``AddV2`` / ``Sub`` of the (frozen) variable and the value,
    ``CountUpTo`` -> the variable, ``IsVariableInitialized`` -> ``True``. Reference
    control-flow ops become their value forms (``RefSwitch`` -> ``Switch``,
    ``RefIdentity`` -> ``Identity``, ...), ``*_ref`` dtypes in attributes become their base
    dtypes, and inputs only the removed ops used are erased. A variable that something
    still reads (the graph was not frozen) is a usage error naming both nodes.

    Before::

        lod = Const 0.0
        v = Const 1.0
        a = Assign(lod, v)
        w = Const
        y = Mul(x, w, ^a)                     (declared output)

    After::

        w = Const
        y = Mul(x, w)
    """

    def run(self, graph: Graph, rw: Rewriter) -> None:
        outputs = {t.node for t in graph.outputs}
        doomed = [n for n in graph.toposort() if is_training_op(graph.node_def(n).op)]
        removed: list[str] = []
        valueless: list[str] = []
        for name in doomed:
            outcome = _replace_value(graph, rw, graph.node(name))
            if outcome != "kept":
                removed.append(name)
            if outcome == "valueless":
                if name in outputs:
                    raise UsageError(
                        f"core::strip_training: declared output {name!r} is a training op "
                        f"({graph.node_def(name).op}); declare the inference outputs instead"
                    )
                valueless.append(name)
        removed += _valueless_consumers(graph, valueless, set(removed))
        gone = set(removed)
        candidates: set[str] = set()
        for name in removed:
            for user in graph.control_users(name):
                if user.name not in gone:
                    rw.remove_control_input(user, name)
                    candidates.add(user.name)
            candidates.update(Input.parse(s).node for s in graph.node_def(name).input)
        for name in doomed:  # the ones kept in place lost their control users too
            if name not in gone:
                for user in graph.control_users(name):
                    rw.remove_control_input(user, name)
        for name in removed:
            rw.erase(name, force=True)  # every remaining user was removed as well
        rw.erase_dead(candidates - gone)

        for node in graph.nodes(*_REF_TO_VALUE):
            rw.set_op(node, _REF_TO_VALUE[node.op])

        # Unfrozen variables: unused ones (and their unused reads) go; a used one is an error.
        for node in graph.nodes(*_VARIABLE_OPS):
            rw.erase_dead([node.name] + [u.name for u in graph.users(node.name)])
            if node.name not in graph:
                continue
            users = [u.name for u in graph.users(node.name)]
            if users or node.name in outputs:
                who = f"node {users[0]!r}" if users else "a declared output"
                raise UsageError(
                    f"core::strip_training: {who} still uses variable {node.name!r} "
                    f"({node.op}); freeze the graph first (convert_variables_to_constants)"
                )

        for node in graph.nodes():
            _strip_ref_dtypes(rw, node)


def _replace_value(graph: Graph, rw: Rewriter, node: Node) -> str:
    """Give the data uses of training op ``node`` the value it returned.

    Returns ``"kept"`` when ``node`` was turned in place into the op computing that value,
    ``"removed"`` when nothing reads it any more, and ``"valueless"`` when something still
    reads an output that has no value without the training op (checked by the caller).
    """
    name = node.name
    used = graph.num_outputs_used(name) > 0
    if not used:
        return "removed"
    data = node.data_inputs
    op = node.op
    if op == "Assign":
        rw.replace_uses(TensorRef(name, 0), data[1])
        return "removed"
    if op == "CountUpTo":
        rw.replace_uses(TensorRef(name, 0), data[0])
        return "removed"
    if op in ("AssignAdd", "AssignSub"):
        t = node.attr("T")  # decoded without the reference bit
        _rebuild(rw, node, "AddV2" if op == "AssignAdd" else "Sub", [data[0], data[1]],
                 {"T": t if t is not None else DType.float32})
        return "kept"
    if op in ("IsVariableInitialized", "VarIsInitializedOp"):
        nd = proto.NodeDef(name=name, op="Const", device=node.device)
        nd.attr["dtype"].CopyFrom(python_to_attr(DType.bool))
        nd.attr["value"].CopyFrom(python_to_attr(np.array(True)))
        rw.replace_node_def(nd)
        return "kept"
    return "valueless"


def _valueless_consumers(graph: Graph, valueless: list[str], removed: set[str]) -> list[str]:
    """Nodes computed from outputs that no longer have a value (``save/Identity`` reading
    ``RestoreV2``). They go too, unless a declared output needs their data."""
    found: list[str] = []
    seen = set(removed)
    stack = [(u.name, src) for src in valueless for u in graph.users(src)]
    needed = graph.ancestors({t.node for t in graph.outputs}, control=False)
    while stack:
        name, src = stack.pop()
        if name in seen or not any(t.node == src for t in graph.node(name).data_inputs):
            continue  # a control dependency only: dropped with the training op
        if name in needed:
            raise UsageError(
                f"core::strip_training: node {name!r} needs the output of "
                f"{graph.node_def(src).op} node {src!r}, which has no value once training "
                "ops are stripped"
            )
        seen.add(name)
        found.append(name)
        stack.extend((u.name, name) for u in graph.users(name))
    return found


def _rebuild(rw: Rewriter, node: Node, op: str, inputs: list[TensorRef], attrs: dict) -> None:
    nd = proto.NodeDef(name=node.name, op=op, device=node.device)
    nd.input.extend([t.input_string for t in inputs] + [f"^{c}" for c in node.control_inputs])
    for key, value in attrs.items():
        nd.attr[key].CopyFrom(python_to_attr(value))
    rw.replace_node_def(nd)


def _strip_ref_dtypes(rw: Rewriter, node: Node) -> None:
    for key in node.attr_names:
        av = node.proto.attr[key]
        kind = av.WhichOneof("value")
        if kind == "type" and av.type > _REF_OFFSET:
            rw.set_attr(node, key, DType.of(av.type - _REF_OFFSET))
        elif kind == "list" and any(t > _REF_OFFSET for t in av.list.type):
            types = [DType.of(t - _REF_OFFSET if t > _REF_OFFSET else t) for t in av.list.type]
            rw.set_attr(node, key, types)
