"""Transposes out of an ONNX graph: sink them through element-wise ops until pairs cancel.

tf2onnx wraps each NHWC convolution in ``Transpose`` pairs and its optimizer pushes them
away, but not through a multiply by a run-time ``[N, 1, 1, C]`` tensor (a StyleGAN2
modulation scale). Native-NHWC graphs (the TF2 Keras generators) keep one pair per
convolution::

    Conv -> Transpose(0,2,3,1) -> Mul(., s[1,1,1,C]) -> LeakyRelu -> Transpose(0,3,1,2) -> Conv

This sinks a ``Transpose`` below its only consumer (one copy per consumer when all are
element-wise) when that is an element-wise op whose
other operands can follow it (a constant: transposed; a run-time tensor whose permutation
moves only size-1 axes: a ``Reshape``), lifts one above an element-wise op of constants
and such tensors, and removes a ``Transpose`` of a ``Transpose`` whose
permutations compose to the identity::

    Conv -> Mul(., Reshape(s)[1,C,1,1]) -> LeakyRelu -> Conv

Works on an ``onnx_graphsurgeon.Graph`` (shapes from ONNX shape inference).
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNARY = frozenset({"LeakyRelu", "Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Sqrt", "Reciprocal",
                   "Exp", "Log", "Erf", "Elu", "Identity", "Cast"})
BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu"})


def _perm(node: Any) -> list[int] | None:
    perm = node.attrs.get("perm")
    return list(perm) if perm is not None else None


def _inverse(perm: list[int]) -> list[int]:
    return [int(i) for i in np.argsort(perm)]


def _follow(graph: Any, operand: Any, inv: list[int], rank: int, name: str) -> Any | None:
    """``operand`` in the layout before the transpose (permuted by ``inv``), or None."""
    import onnx_graphsurgeon as ogs

    shape = operand.shape
    if isinstance(operand, ogs.Constant):
        values = np.asarray(operand.values)
        if values.ndim > rank:
            return None
        values = values.reshape((1,) * (rank - values.ndim) + values.shape)
        return ogs.Constant(f"{name}_c", np.ascontiguousarray(values.transpose(inv)))
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    full = (1,) * (rank - len(shape)) + tuple(shape)
    moved = tuple(full[i] for i in inv)
    if [d for d in full if d != 1] != [d for d in moved if d != 1]:
        return None  # a real transpose: leave it
    target = ogs.Constant(f"{name}_shape", np.asarray(moved, dtype=np.int64))
    out = ogs.Variable(f"{name}_r", dtype=operand.dtype, shape=list(moved))
    graph.nodes.append(ogs.Node("Reshape", f"{name}_reshape", inputs=[operand, target],
                                outputs=[out]))
    return out


def _split(graph: Any, t: Any, counter: list[int]) -> bool:
    """One copy of ``t`` per consumer when every consumer is element-wise (so that each
    copy can sink on its own)."""
    import onnx_graphsurgeon as ogs

    y = t.outputs[0]
    users = list(y.outputs)
    if len(users) < 2 or y in graph.outputs or any(u.op not in UNARY | BINARY for u in users):
        return False
    for user in users[1:]:
        counter[0] += 1
        copy = ogs.Variable(f"{t.name}_split{counter[0]}", dtype=y.dtype, shape=y.shape)
        graph.nodes.append(ogs.Node("Transpose", f"{t.name}_split{counter[0]}",
                                    attrs=dict(t.attrs), inputs=[t.inputs[0]], outputs=[copy]))
        user.inputs = [copy if i is y else i for i in user.inputs]
    graph.toposort()
    return True


def _sink(graph: Any, t: Any, counter: list[int]) -> bool:
    import onnx_graphsurgeon as ogs

    perm, y = _perm(t), t.outputs[0]
    if perm is None or len(y.outputs) != 1 or y in graph.outputs:
        return False
    op = y.outputs[0]
    if op.op not in UNARY | BINARY or len(op.outputs) != 1:
        return False
    inv = _inverse(perm)
    counter[0] += 1
    name = f"{t.name}_sunk{counter[0]}"
    new_inputs = []
    for inp in op.inputs:
        if inp is y:
            new_inputs.append(t.inputs[0])
            continue
        moved = _follow(graph, inp, inv, len(perm), f"{name}_{len(new_inputs)}")
        if moved is None:
            return False
        new_inputs.append(moved)
    z = op.outputs[0]
    known = z.shape is not None and len(z.shape) == len(perm)
    shape = [z.shape[i] for i in inv] if known else None  # z = transpose(inner, perm)
    inner = ogs.Variable(f"{name}_out", dtype=z.dtype, shape=shape)
    op.inputs = new_inputs
    op.outputs = [inner]
    t.inputs, t.outputs = [inner], [z]
    # the transpose now follows the op: reorder so that the graph stays sorted
    graph.toposort()
    return True


def _hoist(graph: Any, t: Any, counter: list[int]) -> bool:
    """``Transpose(op(a, b))`` -> ``op(a', b')`` when ``op`` is element-wise, used only here,
    and every operand can follow (a constant, or a run-time tensor moving size-1 axes)."""
    perm, x = _perm(t), t.inputs[0]
    if perm is None or len(x.inputs) != 1 or len(x.outputs) != 1 or x in graph.outputs:
        return False
    op = x.inputs[0]
    if op.op not in UNARY | BINARY or len(op.outputs) != 1:
        return False
    counter[0] += 1
    name = f"{t.name}_hoist{counter[0]}"
    moved = [_follow(graph, inp, perm, len(perm), f"{name}_{k}") for k, inp in enumerate(op.inputs)]
    if any(m is None for m in moved):
        return False
    op.inputs = moved
    op.outputs = [t.outputs[0]]
    t.outputs = []
    graph.cleanup().toposort()
    return True


def _cancel(graph: Any, t: Any) -> bool:
    perm, src = _perm(t), t.inputs[0]
    if perm is None or len(src.inputs) != 1 or src.inputs[0].op != "Transpose":
        return False
    first = src.inputs[0]
    p0 = _perm(first)
    if p0 is None or [p0[i] for i in perm] != list(range(len(perm))):
        return False
    x, y = first.inputs[0], t.outputs[0]
    if y in graph.outputs:
        return False
    for consumer in list(y.outputs):
        consumer.inputs = [x if i is y else i for i in consumer.inputs]
    t.outputs = []
    return True


def remove_transposes(graph: Any) -> int:
    """Sink and cancel ``Transpose`` nodes of an onnx-graphsurgeon graph, then lift the ones
    left (each phase moves a transpose one way only, so nothing goes back and forth); how
    many went."""
    before = sum(n.op == "Transpose" for n in graph.nodes)
    counter = [0]
    phases = (lambda t: _split(graph, t, counter) or _sink(graph, t, counter),
              lambda t: _hoist(graph, t, counter))
    for move in phases:
        for _ in range(10 * max(1, before)):
            changed = False
            for t in [n for n in graph.nodes if n.op == "Transpose"]:
                if _cancel(graph, t):
                    graph.cleanup()
                    changed = True
                    break
                if move(t):
                    changed = True
                    break
            if not changed:
                break
    graph.cleanup().toposort()
    return before - sum(n.op == "Transpose" for n in graph.nodes)


__all__ = ["remove_transposes"]
