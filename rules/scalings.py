"""``core::fold_scalings``: fold chains of constant scalings into one constant.

The rules, in the order they are tried at each node:

* ``const_product``: ``Mul``/``RealDiv`` of two constants -> one constant. This is the
  equalised-learning-rate weight ``Mul(Const weight, Const coef)`` of StyleGAN graphs,
  which otherwise rescales every parameter on every inference.
* ``mul_mul``: ``(x * c1) * c2`` -> ``x * (c1 * c2)``, in any operand order.
* ``div_div``: ``(x / c1) / c2`` -> ``x / (c1 * c2)``.
* ``div_mul``: ``(x / c1) * c2`` -> ``x * (c2 / c1)``.
* ``mul_div``: ``(x * c1) / c2`` -> ``x * (c1 / c2)``.
* ``mul_one``/``div_one``: ``x * 1`` and ``x / 1`` -> ``x`` when that keeps ``x``'s shape.

A rule applies only when the result is the same tensor: the folded constant keeps the
dtype, is no larger than the larger constant it replaces (broadcasting is associative, so
the output shape stays the same; where ``x``'s static shape is known it is checked), and
has no new infinities, NaNs or zeros. Chains other than with ``x`` first are reordered
(``c * x``); multiplication is commutative, so the values do not change beyond rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from graphsurgery.ir.graph import Graph
from graphsurgery.ir.names import TensorRef
from graphsurgery.patterns import Any, Builder, Match, P, Rule, register_rules

_NUMERIC = "biuf"  # numpy kinds folded for Mul; RealDiv chains fold floats only


def _const(name: str) -> P:
    return P("Const", capture=name)


def _dtype_ok(m: Match, *names: str, floats: bool = False) -> bool | str:
    """The root's ``T`` is numeric (floating with ``floats``) and every constant has it;
    else the reason, for ``explain()``."""
    t = m.root.attr("T")
    if t is None:
        return "the node has no T attribute"
    try:
        want = t.numpy
    except ValueError:  # bfloat16, quantised types
        return f"T is {t.name}, which numpy does not fold"
    kinds = "f" if floats else _NUMERIC
    if want.kind not in kinds or want.kind == "b":
        return f"T is {t.name}, not {'a floating type' if floats else 'numeric'}"
    other = next((n for n in names if m.value(n).dtype != want), None)
    return other is None or f"constant {other!r} is {m.value(other).dtype}, T is {t.name}"


def _no_larger(*parts: np.ndarray) -> bool:
    """Combining ``parts`` gives no more elements than the largest of them; checked before
    computing, since a noise map times a per-channel weight would broadcast to a full
    activation-sized constant only to be thrown away."""
    try:
        shape = np.broadcast_shapes(*(p.shape for p in parts))
    except ValueError:
        return False
    return int(np.prod(shape, dtype=np.int64)) <= max(p.size for p in parts)


def _folded(values: np.ndarray, *parts: np.ndarray) -> bool:
    """The folded constant is safe: nothing became inf, nan or 0 (its size was checked
    before it was computed, by :func:`_no_larger`)."""
    if values.dtype.kind == "f":
        finite = all(np.isfinite(p).all() for p in parts)
        if finite and not np.isfinite(values).all():
            return False
        nonzero = all((p != 0).all() for p in parts)
        if nonzero and not (values != 0).all():
            return False
    return True


def _same_shape(graph: Graph, x: TensorRef, old: list[tuple[int, ...]], new: tuple[int, ...]
                ) -> bool:
    """``x`` broadcast with ``old`` shapes in turn == ``x`` broadcast with ``new``."""
    xs = graph.static_shape(x)
    if xs is None or any(d < 0 for d in xs):
        return True  # broadcasting is associative; nothing more to check without a shape
    try:
        before = tuple(xs)
        for s in old:
            before = np.broadcast_shapes(before, s)
        return before == np.broadcast_shapes(tuple(xs), new)
    except ValueError:
        return False


# ---------------------------------------------------------------------- constant * constant
def _fold_consts(b: Builder, m: Match) -> TensorRef | None:
    a, c = m.value("a"), m.value("b")
    if (m.root.op == "RealDiv" and a.dtype.kind != "f") or not _no_larger(a, c):
        return None
    with np.errstate(all="ignore"):
        value = a * c if m.root.op == "Mul" else a / c
    value = np.asarray(value)
    if value.dtype != a.dtype:
        return None
    return b.const(value, dtype=m.root.attr("T"), name="folded")


CONST_PRODUCT = Rule(
    "const_product",
    P("Mul|RealDiv", _const("a"), _const("b")),
    _fold_consts,
    where=lambda m, g: _dtype_ok(m, "a", "b"),
    doc="Mul/RealDiv(Const, Const) -> Const",
)


# ---------------------------------------------------------------------- chains
def _chain(combine: str, op: str) -> Callable[[Builder, Match], TensorRef | None]:
    """Replacement ``x <op> (c1 <combine> c2)``; ``combine`` is ``*``, ``c2/c1`` or
    ``c1/c2``."""

    def replace(b: Builder, m: Match) -> TensorRef | None:
        c1, c2 = m.value("c1"), m.value("c2")
        if not _no_larger(c1, c2):
            return None
        with np.errstate(all="ignore"):
            if combine == "*":
                k = c1 * c2
            elif combine == "c2/c1":
                k = c2 / c1
            else:
                k = c1 / c2
        k = np.asarray(k)
        if k.dtype != c1.dtype or not _folded(k, c1, c2):
            return None
        x = m.tensor("x")
        if not _same_shape(b.graph, x, [c1.shape, c2.shape], k.shape):
            return None
        return b.op(op, x, b.const(k, dtype=m.root.attr("T"), name="scale"))

    return replace


_X = Any("x")

MUL_MUL = Rule(
    "mul_mul",
    P("Mul", P("Mul", _X, _const("c1"), commutative=True), _const("c2"), commutative=True),
    _chain("*", "Mul"),
    where=lambda m, g: _dtype_ok(m, "c1", "c2"),
    doc="(x * c1) * c2 -> x * (c1 * c2)",
)
DIV_DIV = Rule(
    "div_div",
    P("RealDiv", P("RealDiv", _X, _const("c1")), _const("c2")),
    _chain("*", "RealDiv"),
    where=lambda m, g: _dtype_ok(m, "c1", "c2", floats=True),
    doc="(x / c1) / c2 -> x / (c1 * c2)",
)
DIV_MUL = Rule(
    "div_mul",
    P("Mul", P("RealDiv", _X, _const("c1")), _const("c2"), commutative=True),
    _chain("c2/c1", "Mul"),
    where=lambda m, g: _dtype_ok(m, "c1", "c2", floats=True),
    doc="(x / c1) * c2 -> x * (c2 / c1)",
)
MUL_DIV = Rule(
    "mul_div",
    P("RealDiv", P("Mul", _X, _const("c1"), commutative=True), _const("c2")),
    _chain("c1/c2", "Mul"),
    where=lambda m, g: _dtype_ok(m, "c1", "c2", floats=True),
    doc="(x * c1) / c2 -> x * (c1 / c2)",
)


# ---------------------------------------------------------------------- identities
def _all_ones(arr: np.ndarray) -> bool:
    return arr.dtype.kind in _NUMERIC and arr.dtype.kind != "b" and bool((arr == 1).all())


def _drop_one(b: Builder, m: Match) -> TensorRef | None:
    x, one = m.tensor("x"), m.value("one")
    if one.ndim == 0:
        return x
    xs = b.graph.static_shape(x)
    if xs is None or any(d < 0 for d in xs):
        return None
    try:
        return x if np.broadcast_shapes(tuple(xs), one.shape) == tuple(xs) else None
    except ValueError:
        return None


def _same_dtype(m: Match, g: Graph) -> bool | str:
    t = m.root.attr("T")
    if t is None:
        return "the node has no T attribute"
    one = m.value("one").dtype
    return one == t.numpy or f"the constant one is {one}, T is {t.name}"


MUL_ONE = Rule(
    "mul_one",
    P("Mul", _X, P("Const", const=_all_ones, capture="one"), commutative=True),
    _drop_one,
    where=_same_dtype,
    doc="x * 1 -> x (when x keeps its shape)",
)
DIV_ONE = Rule(
    "div_one",
    P("RealDiv", _X, P("Const", const=_all_ones, capture="one")),
    _drop_one,
    where=_same_dtype,
    doc="x / 1 -> x (when x keeps its shape)",
)

RULES = [CONST_PRODUCT, MUL_ONE, DIV_ONE, MUL_MUL, DIV_DIV, DIV_MUL, MUL_DIV]

FoldScalings = register_rules(
    "core::fold_scalings",
    RULES,
    doc="""Fold chains of constant scalings (``Mul``/``RealDiv`` by constants) into one.

    The equalised-learning-rate weights of StyleGAN become a single constant, and chains
    like ``x * 2 * 3`` a single ``Mul``. Folds keep the dtype and the output shape.

    Before::

        w = Const[512,512]  coef = Const 0.0442
        y = MatMul(x, Mul(w, coef))
        z = Mul(Mul(x, Const 2), Const 3)

    After::

        y = MatMul(x, Const[512,512])        # w * coef, folded
        z = Mul(x, Const 6)
    """,
)
