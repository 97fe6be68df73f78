"""``core::fuse_elementwise``: element-wise idioms as the single ops TFLite has for them.

The rules, in the order they are tried at each node:

* ``leaky_relu``: ``Maximum(x, x * a)`` (either operand order) with a scalar constant
  ``0 <= a <= 1`` -> ``LeakyRelu(x, alpha=a)``. StyleGAN writes its activation this way;
  as two ops it costs LiteRT two passes over the tensor (``MUL``, ``MAXIMUM``), as
  ``LEAKY_RELU`` one. For ``0 <= a <= 1``, ``max(x, a*x)`` is ``x`` for ``x >= 0`` and
  ``a*x`` otherwise, which is what ``LeakyRelu`` computes (the same product, bit for bit).
* ``squared_difference``: ``Square(x - y)`` -> ``SquaredDifference(x, y)``. Instance
  normalisation writes ``d = x - mean; d * rsqrt(mean(square(d)))``; once the square reads
  ``x`` and ``mean`` itself, ``d`` has one use left and ``core::fold_affine_chains`` can
  merge it with the scalings that follow. The same subtraction then squaring, bit for bit.
* ``noop_reshape``: a ``Reshape`` to its input's own (fully known) static shape -> the
  input; StyleGAN2 reshapes the FIR filter's output back to the shape it already has.
* ``bias_first``: ``(p + t) + c`` -> ``(p + c) + t`` when ``p`` is the only use of a
  ``Conv2D``/``DepthwiseConv2dNative``/``MatMul`` output, ``c`` a small constant (a bias)
  and ``t`` a full-size tensor computed at run time (StyleGAN's per-pixel noise term).
  Next to the convolution, the TFLite converter folds the bias into the convolution's own
  bias, and LiteRT makes one pass over the tensor fewer. Addition is reassociated: the
  same value up to rounding. ``bias_first_sub`` does the same for ``(p - t) + c``
  (StyleGAN2's noise term once its strength is folded into a negated constant).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from graphsurgery.ir.graph import Graph
from graphsurgery.ir.names import TensorRef
from graphsurgery.patterns import Any, Builder, Match, P, Rule, register_rules, shape_of


def _alpha(m: Match) -> float | None:
    a = np.asarray(m.value("a"))
    if a.size != 1 or a.dtype.kind != "f":
        return None
    value = float(a.reshape(()))
    return value if 0.0 <= value <= 1.0 else None


def _leaky_relu(b: Builder, m: Match) -> TensorRef | None:
    alpha = _alpha(m)
    if alpha is None:
        return None
    return b.op("LeakyRelu", m.tensor("x"), T=m.root.attr("T"), alpha=alpha)


_X = Any("x")

LEAKY_RELU = Rule(
    "leaky_relu",
    P("Maximum", _X, P("Mul", _X, P("Const", capture="a"), commutative=True),
      commutative=True),
    _leaky_relu,
    where=lambda m, g: m.root.attr("T") is not None and m.root.attr("T").is_floating,
    doc="Maximum(x, x * a) with a scalar 0 <= a <= 1 -> LeakyRelu(x, alpha=a)",
)

def _squared_difference(b: Builder, m: Match) -> TensorRef | None:
    # The Sub is a leaf of the pattern: it may have other readers, and it stays for them.
    sub = b.graph.node(m.tensor("d").node)
    x, y = sub.data_inputs
    return b.op("SquaredDifference", x, y, T=m.root.attr("T"))


SQUARED_DIFFERENCE = Rule(
    "squared_difference",
    P("Square", P("Sub", capture="d")),
    _squared_difference,
    where=lambda m, g: m.root.attr("T") is not None and m.root.attr("T").is_floating,
    doc="Square(x - y) -> SquaredDifference(x, y) (x - y stays for its other readers)",
)

_PRODUCERS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def _bias_first_ok(m: Match, graph: Graph) -> bool | str:
    """``p`` is a convolution's (or MatMul's) only use and gives the output its shape, ``c``
    is a constant at most 1/16 of it, ``t`` any operand that does not widen ``p``; else the
    reason, for ``explain()``."""
    t = m.root.attr("T")
    if t is None or not t.is_floating:
        return "T is not a floating type"
    out = shape_of(graph, m.root.output())
    p = shape_of(graph, m.tensor("p"))
    term = shape_of(graph, m.tensor("t"))
    if out is None or p is None or term is None or min(out, default=0) < 0:
        return "static shapes unknown"
    if tuple(p) != tuple(out) or len(term) > len(out):
        return f"p {list(p)} does not give the output its shape {list(out)}"
    producer = graph.node(m.tensor("p").node)
    if producer.op not in _PRODUCERS or len(graph.consumers(m.tensor("p"))) != 1:
        return f"p is {producer.op} {producer.name!r}, not the only use of a conv or MatMul"
    bias = graph.const_shape(m.tensor("c").node)
    size = int(np.prod(bias, dtype=np.int64))
    if graph.is_const(m.tensor("t")) and size >= int(np.prod(term, dtype=np.int64)):
        # two constants: only the smaller moves in (else they swap forever)
        return "t is a constant no larger than c"
    if len(bias) > len(out) or size * 16 > int(np.prod(out, dtype=np.int64)):
        return f"the constant c {list(bias)} is over 1/16 of the output {list(out)}"
    return True


def _bias_first(outer: str) -> Callable[[Builder, Match], TensorRef]:
    """``(p <outer> t) + c`` -> ``(p + c) <outer> t``."""

    def replace(b: Builder, m: Match) -> TensorRef:
        t = m.root.attr("T")
        inner = b.op("AddV2", m.tensor("p"), m.tensor("c"), T=t)
        return b.op(outer, inner, m.tensor("t"), T=t)

    return replace


BIAS_FIRST = Rule(
    "bias_first",
    P("Add|AddV2", P("Add|AddV2", Any("p"), Any("t"), commutative=True),
      P("Const", capture="c"), commutative=True),
    _bias_first("AddV2"),
    where=_bias_first_ok,
    doc="(conv(x) + t) + c -> (conv(x) + c) + t for a small constant c and a full-size t",
)


BIAS_FIRST_SUB = Rule(
    "bias_first_sub",
    P("Add|AddV2", P("Sub", Any("p"), Any("t")), P("Const", capture="c"), commutative=True),
    _bias_first("Sub"),
    where=_bias_first_ok,
    doc="(conv(x) - t) + c -> (conv(x) + c) - t (the noise term folded to a subtraction)",
)


def _same_shape_reshape(m: Match, graph: Graph) -> bool | str:
    before = shape_of(graph, m.tensor("x"))
    after = shape_of(graph, m.root.output())
    if before is None or after is None or min(before, default=0) < 0:
        return "static shapes unknown"
    return tuple(before) == tuple(after) or f"reshapes {list(before)} to {list(after)}"


NOOP_RESHAPE = Rule(
    "noop_reshape",
    P("Reshape", Any("x"), P("Const")),
    lambda b, m: m.tensor("x"),
    where=_same_shape_reshape,
    doc="Reshape(x) to x's own static shape -> x (it hides the producer from bias_first)",
)

RULES = [LEAKY_RELU, SQUARED_DIFFERENCE, NOOP_RESHAPE, BIAS_FIRST, BIAS_FIRST_SUB]

FuseElementwise = register_rules(
    "core::fuse_elementwise",
    RULES,
    infers_shapes=True,
    doc="""Rewrite element-wise idioms as the single TFLite ops that compute them.

    Each rule saves LiteRT one pass over a big tensor (it runs element-wise ops one pass
    over memory each, and at 1024 px a pass over a StyleGAN activation moves 64-128 MB).

    Before::

        y = Maximum(x, Mul(x, 0.2))
        v = Mean(Square(Sub(x, m)))

    After::

        y = LeakyRelu(x, alpha=0.2)
        v = Mean(SquaredDifference(x, m))

    and ``AddV2(AddV2(Conv2D(x, w), noise_term), bias)`` becomes
    ``AddV2(AddV2(Conv2D(x, w), bias), noise_term)``. The first two give the same values bit
    for bit, the last the same up to rounding.
    """,
)
