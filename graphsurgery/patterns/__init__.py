"""Patterns, replacement builders and declarative rewrite rules.

Three ways to write a pattern, all matched by the same engine::

    from graphsurgery.patterns import P, Any, parse_pattern, traced

    # an op-type tree (TF's OpTypePattern style), with captures and predicates
    scaled = P("Mul", P("Conv2D|MatMul", capture="conv"), P("Const", capture="k"),
               commutative=True)
    # the compact text form of the same tree
    scaled = parse_pattern("Mul~(Conv2D|MatMul as conv, Const as k)")

    # a plain function of TF ops, traced once
    @traced
    def lrelu(x):
        return tf.maximum(x, x * 0.2)

    matches = lrelu.find(graph)            # non-overlapping, topological order
    print(lrelu.explain(graph, "Maximum_3"))   # why (not)

A condition (``where``) may return a reason instead of False, which ``explain()`` shows:
``return Verdict.fail("k has 3 values")`` or simply ``return "k has 3 values"``.

and rules that rewrite what they match, registered as passes::

    from graphsurgery.patterns import Rule, register_rules

    def fold(b, m):                        # b: Builder, m: Match
        return b.mul(m["x"], m.value("c1") * m.value("c2"))

    register_rules("my::fold", [Rule("mul_mul", "Mul(Mul($x, Const as c1), Const as c2)",
                                     fold)], doc=...)

See :mod:`.optree` (matching rules and debug messages), :mod:`.traced`, :mod:`.builder`
and :mod:`.rules`.
"""

from __future__ import annotations

from .builder import Builder
from .optree import (
    Any,
    Match,
    Matcher,
    P,
    Path,
    Pattern,
    Step,
    Verdict,
    as_pattern,
    parse_pattern,
)
from .rules import Rule, RuleSet, register_rules, shape_of
from .traced import Template, Traced, template, trace_function, traced

__all__ = [
    "Any",
    "Builder",
    "Match",
    "Matcher",
    "P",
    "Path",
    "Pattern",
    "Rule",
    "RuleSet",
    "Step",
    "Template",
    "Traced",
    "Verdict",
    "as_pattern",
    "parse_pattern",
    "register_rules",
    "shape_of",
    "template",
    "trace_function",
    "traced",
]
