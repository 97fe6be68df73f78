"""``core::simplify_arith``: algebraic identities with constant zeros and ones.

The rules, tried in this order at each node (``Z`` is a ``Const`` of zeros, ``1`` a
``Const`` of ones, both of any broadcastable shape):

* ``add_zero``: ``x + Z``, ``Z + x`` -> ``x`` (``AddV2``/``Add``);
* ``bias_add_zero``: ``BiasAdd(x, Z)`` -> ``x``;
* ``add_zero_product``: ``a + y * Z`` -> ``a`` (the noise term of StyleGAN with zero noise,
  the ``(b - a) * 0`` of a lerp with a zero coefficient), without materialising zeros;
* ``lerp_full``: ``a + (b - a)`` -> ``b`` (a lerp with coefficient 1, once ``* 1`` is gone);
* ``sub_zero``: ``x - Z`` -> ``x``;
* ``sub_zero_product``: ``a - y * Z`` -> ``a``;
* ``zero_sub``: ``Z - x`` -> ``Neg(x)``;
* ``mul_one``: ``x * 1``, ``1 * x`` -> ``x``;
* ``div_one``: ``x / 1`` -> ``x`` (``RealDiv``/``Div``);
* ``mul_zero``: ``x * Z`` -> a ``Const`` of zeros with the output's static shape, when that
  shape is fully known and holds at most :data:`MAX_ZEROS` elements (larger products are
  left to ``add_zero_product``, which removes them without a constant).

Shape and type safety: an operand replaces the op only when it provably already has the
op's output shape, i.e. broadcasting it with every operand that disappears leaves its
static shape unchanged (a scalar constant always does; otherwise the static shapes from
``Const``/``Placeholder`` nodes or TensorFlow's shape inference must show it). The dtype
is the op's ``T`` for every operand of these ops. Rewrites assume finite values, as every
inference-time simplifier does: ``x * 0`` is taken to be ``0`` even though it is ``nan``
for an infinite ``x``, and ``a + (b - a)`` is ``b`` up to rounding.
"""

from __future__ import annotations

import inspect
import logging
from contextvars import ContextVar

import numpy as np

from graphsurgery.ir.graph import Graph
from graphsurgery.ir.names import TensorRef
from graphsurgery.patterns import Any, Builder, Match, P, Rule, RuleSet, shape_of
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

log = logging.getLogger("graphsurgery.rules.arith")

#: Largest constant of zeros (elements) that ``mul_zero`` creates.
MAX_ZEROS = 1 << 16

_NUMERIC = "iufc"  # numpy kinds these identities hold for (no bool, no strings)


# ---------------------------------------------------------------------- helpers
def _numeric(arr: np.ndarray) -> bool:
    return arr.dtype.kind in _NUMERIC


def _is_zero(arr: np.ndarray) -> bool:
    return _numeric(arr) and not arr.any()


def _is_one(arr: np.ndarray) -> bool:
    return _numeric(arr) and bool((arr == 1).all())


# (graph, whether it has v1 control flow) while the pass runs.
_CONTROL_FLOW: ContextVar[tuple[Graph, bool] | None] = ContextVar("arith_cf", default=None)
_SWITCHES = ("Switch", "RefSwitch")


def absorbs(x: tuple[int, ...] | None, other: tuple[int, ...] | None) -> bool:
    """True when broadcasting shape ``x`` with ``other`` provably gives ``x`` again."""
    if other is not None and all(d == 1 for d in other) and (
        len(other) == 0 or (x is not None and len(other) <= len(x))
    ):
        return True
    if x is None or other is None or len(other) > len(x):
        return False
    for a, b in zip(reversed(x), reversed(other)):
        if b == 1:
            continue
        if a < 0 or b < 0 or a != b:
            return False
    return True


def _keeps(m: Match, keep: str, *gone: str) -> bool:
    """Capture ``keep`` has the root's output shape once the ``gone`` captures are dropped."""
    g = m.graph
    xs = shape_of(g, m.tensor(keep))
    return all(absorbs(xs, shape_of(g, m.tensor(name))) for name in gone)


def _typed(m: Match, g: Graph) -> bool:
    """The root's ``T`` is a numeric type (identities with 0 and 1 hold)."""
    t = m.root.attr("T")
    if t is None:
        return False
    try:
        return np.dtype(t.numpy).kind in _NUMERIC
    except (TypeError, ValueError):  # bfloat16, quantised types
        return False


def _plain(m: Match, g: Graph) -> bool:
    """Numeric ``T`` and no control inputs on the nodes the rewrite removes (they would be
    lost: ordering, or deadness inside an unfolded ``tf.cond``)."""
    if not _typed(m, g):
        return False
    return all(not g.node(n).control_inputs for n in m.owned)


def _control_flow(g: Graph) -> bool:
    """The graph has v1 control flow (so a new constant must inherit deadness)."""
    ctx = _CONTROL_FLOW.get()
    if ctx is not None and ctx[0] is g:
        return ctx[1]
    return bool(g.nodes(*_SWITCHES))


def _identity(name: str, pattern: P, keep: str, *gone: str, doc: str) -> Rule:
    """Rule ``name``: ``pattern`` -> its capture ``keep`` itself, when ``keep`` has the root's
    shape once the ``gone`` captures are dropped (and :func:`_plain` holds)."""

    def replace(b: Builder, m: Match) -> TensorRef | None:
        return m.tensor(keep) if _keeps(m, keep, *gone) else None

    return Rule(name, pattern, replace, where=_plain, doc=doc)


_X = Any("x")
_ZERO = P("Const", const=_is_zero, capture="zero")
_ONE = P("Const", const=_is_one, capture="one")


# ---------------------------------------------------------------------- additions
ADD_ZERO = _identity(
    "add_zero", P("AddV2|Add", _X, _ZERO, commutative=True),
    "x", "zero", doc="x + 0 -> x, 0 + x -> x",
)
BIAS_ADD_ZERO = Rule(
    "bias_add_zero",
    P("BiasAdd|BiasAddV1", _X, _ZERO),
    lambda b, m: m.tensor("x"),  # a bias never changes x's shape
    where=_plain,
    doc="BiasAdd(x, 0) -> x",
)
_ZERO_PRODUCT = P("Mul", Any("y"), _ZERO, commutative=True, capture="product")
ADD_ZERO_PRODUCT = _identity(
    "add_zero_product", P("AddV2|Add", Any("a"), _ZERO_PRODUCT, commutative=True),
    "a", "y", "zero", doc="a + y * 0 -> a",
)
LERP_FULL = _identity(
    "lerp_full", P("AddV2|Add", Any("a"), P("Sub", Any("b"), Any("a")), commutative=True),
    "b", "a", doc="a + (b - a) -> b",
)

# ---------------------------------------------------------------------- subtractions
SUB_ZERO = _identity(
    "sub_zero", P("Sub", _X, _ZERO),
    "x", "zero", doc="x - 0 -> x",
)
SUB_ZERO_PRODUCT = _identity(
    "sub_zero_product", P("Sub", Any("a"), _ZERO_PRODUCT),
    "a", "y", "zero", doc="a - y * 0 -> a",
)


def _negate(b: Builder, m: Match) -> TensorRef | None:
    if not _keeps(m, "x", "zero"):
        return None
    return b.op("Neg", m.tensor("x"), T=m.root.attr("T"), name="neg")


ZERO_SUB = Rule(
    "zero_sub",
    P("Sub", _ZERO, _X),
    _negate,
    where=_plain,
    doc="0 - x -> Neg(x)",
)

# ---------------------------------------------------------------------- products
MUL_ONE = _identity(
    "mul_one", P("Mul", _X, _ONE, commutative=True),
    "x", "one", doc="x * 1 -> x, 1 * x -> x",
)
DIV_ONE = _identity(
    "div_one", P("RealDiv|Div", _X, _ONE),
    "x", "one", doc="x / 1 -> x",
)


def _zeros(b: Builder, m: Match) -> TensorRef | None:
    g = m.graph
    xs, zs = shape_of(g, m.tensor("x")), shape_of(g, m.tensor("zero"))
    if xs is None or zs is None or any(d < 0 for d in xs):
        return None
    try:
        out = np.broadcast_shapes(xs, zs)
    except ValueError:
        return None
    if int(np.prod(out, dtype=np.int64)) > MAX_ZEROS:
        return None
    # Inside an unfolded tf.cond the zeros must be dead when the Mul would be: a constant
    # in a branch carries the branch's ^pivot, else depend on x's node itself.
    controls = list(m["zero"].control_inputs)
    x = m.tensor("x")
    if not controls and _control_flow(g) and not g.is_const(x):
        if g.node(x.node).op in _SWITCHES:
            return None
        controls.append(x.node)
    t = m.root.attr("T")
    zeros = b.const(np.zeros(out, dtype=t.numpy), dtype=t, name="zeros")
    for c in dict.fromkeys(controls):
        b.rw.add_control_input(zeros.node, c)
    return zeros


MUL_ZERO = Rule(
    "mul_zero",
    P("Mul", _X, _ZERO, commutative=True),
    _zeros,
    where=_plain,
    doc=f"x * 0 -> Const zeros (static output shape, at most {MAX_ZEROS} elements)",
)

RULES = [
    ADD_ZERO,
    BIAS_ADD_ZERO,
    ADD_ZERO_PRODUCT,
    LERP_FULL,
    SUB_ZERO,
    SUB_ZERO_PRODUCT,
    ZERO_SUB,
    MUL_ONE,
    DIV_ONE,
    MUL_ZERO,
]



@register_pass("core::simplify_arith")
class SimplifyArith(Pass):
    """Remove additions of zero, multiplications by one and zero, and full lerps.

    Generic and TensorFlow-free; shape-safe (an operand replaces an op only when it
    already has the op's output shape). With StyleGAN it removes the noise term
    ``x + noise * w`` once the noise is zeros (``stylegan::noise(mode=zero)``), the
    ``random_normal`` ``+ mean(0)``, and the ``lerp(a, b, t) = a + (b - a) * t`` of the
    linear progressive-growing structure once ``t`` is a constant 0 or 1
    (``stylegan::set_lod`` then constant folding). The rules are applied greedily in
    topological order, in rounds until one changes nothing (see
    :class:`graphsurgery.patterns.RuleSet`); static shapes are inferred once per round.

    Before::

        y  = AddV2(x, Mul(noise_zeros[1,1,8,8], w[1,16,1,1]))   # x: [1,16,8,8]
        t  = Const 0.0
        img = AddV2(a, Mul(Sub(b, a), t))
        one = Const 1.0
        img2 = AddV2(a, Mul(Sub(b, a), one))

    After::

        y    -> x
        img  -> a
        img2 -> b
    """

    rules = tuple(RULES)
    max_rounds = Option(int, 10, "most rounds over the graph")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        rs = RuleSet(self.rules)
        for _ in range(self.max_rounds):
            token = _CONTROL_FLOW.set((graph, bool(graph.nodes(*_SWITCHES))))
            try:
                applied = rs.apply_once(graph, rw)
            finally:
                _CONTROL_FLOW.reset(token)
            if not applied:
                return
        log.warning("%s: rules still matched after %d rounds (max_rounds)",
                    self.id, self.max_rounds)


SimplifyArith.__doc__ = (
    inspect.cleandoc(SimplifyArith.__doc__ or "") + "\n\nRules::\n\n"
    + "\n".join(f"    {r.name}: {r.doc}" for r in RULES) + "\n"
)
