"""The replacement Builder, Rule/RuleSet, and rules registered as passes."""

from __future__ import annotations

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.patterns import Any, Builder, P, Rule, RuleSet, register_rules
from graphsurgery.registry import unregister_pass
from graphsurgery.testing import check_pass, run_tf

F32 = gs.DType.float32


def new_graph() -> tuple[gs.Graph, gs.Rewriter, Builder]:
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    return g, rw, Builder(rw)


# ---------------------------------------------------------------------- builder
def test_builder_infers_type_attrs_and_makes_constants():
    g, rw, b = new_graph()
    x = rw.placeholder("x", F32, [2, 3]).output()
    y = b.mul(x, 2.0)                        # T from x; 2.0 -> float32 Const
    z = b.add(y, np.float32(1))
    r = b.reshape(z, [3, 2])                 # Tshape int32
    t = b.transpose(r, [1, 0])
    c = b.op("ConcatV2", t, t, 0)            # N=2, T, Tidx inferred
    s = b.op("AddN", c, c)
    out = b.cast(s, "float16", name="out")
    rw.set_graph_inputs([x])
    rw.set_outputs([out])

    mul = g.node(y.node)
    assert mul.attr("T") == F32 and g.node(mul.data_inputs[1].node).attr("dtype") == F32
    reshape = g.node(r.node)
    assert reshape.attr("Tshape") == gs.DType.int32 and reshape.attr("T") == F32
    concat = g.node(c.node)
    assert (concat.attr("N"), concat.attr("T"), concat.attr("Tidx")) == (2, F32, gs.DType.int32)
    assert g.node(s.node).attr("N") == 2
    assert g.node("out").attr("DstT") == gs.DType.float16
    assert set(b.created) == set(g.names) - {"x"}

    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    (got,) = run_tf(g, {"x": xv})
    want = np.concatenate([(xv * 2 + 1).reshape(3, 2).T] * 2, axis=0) * 2
    np.testing.assert_allclose(got, want.astype(np.float16))


def test_builder_scope_names_and_custom_ops():
    g, rw, _ = new_graph()
    x = rw.placeholder("x", F32, [2]).output()
    b = Builder(rw, scope="blk/fold")
    k = b.const(np.float32(3), name="k")
    y = b.mul(x, k)
    custom = b.op("MyCustomOp", y, gain=2.0)  # unknown op: T taken from the first input
    assert k.node == "blk/fold/k" and y.node == "blk/fold/Mul"
    assert g.node(custom.node).attr("T") == F32 and g.node(custom.node).attr("gain") == 2.0
    y2 = b.mul(x, k)
    assert y2.node == "blk/fold/Mul_1"


# ---------------------------------------------------------------------- rules
def _scale_graph() -> gs.Graph:
    """x -> Mul(x, 1) -> Relu -> Mul(2, .) -> out."""
    g, rw, b = new_graph()
    x = rw.placeholder("x", F32, [2, 3]).output()
    one = b.mul(x, b.const(np.float32(1), name="one"), name="m_one")
    r = b.op("Relu", one, name="relu")
    out = b.mul(b.const(np.float32(2), name="two"), r, name="out")
    rw.set_graph_inputs([x])
    rw.set_outputs([out])
    g.provenance.clear()
    return g


ONE = P("Const", const=lambda a: bool((a == 1).all()), capture="one")
MUL_ONE = Rule("mul_one", P("Mul", Any("x"), ONE, commutative=True), lambda b, m: m["x"])
TWICE = Rule(
    "double_to_add",
    P("Mul", P("Const", const=lambda a: bool((a == 2).all())), Any("x"), commutative=True),
    lambda b, m: b.add(m["x"], m["x"]),
)


def test_ruleset_rewrites_and_journals():
    g = _scale_graph()
    rw = gs.Rewriter(g, "test::rules")
    rs = RuleSet([MUL_ONE, TWICE])
    assert rs.apply(g, rw) == 2
    assert rs.converged and rs.rounds == 2 and rs.counts == {"mul_one": 1, "double_to_add": 1}
    assert g.op_counts()["Mul"] == 0 and g.op_counts()["AddV2"] == 1
    assert "m_one" not in g and "one" not in g and "two" not in g  # erased when dead
    assert g.node("relu").data_inputs == [gs.TensorRef("x")]
    # the declared output keeps its name: the new AddV2 took it over
    assert g.outputs == [gs.TensorRef("out")] and g.node("out").op == "AddV2"
    assert g.provenance["out"].rule == "double_to_add"
    rules_seen = {e.rule for e in rw.journal}
    assert rules_seen == {"mul_one", "double_to_add"}
    assert rs.explain(g, "relu") == (
        "mul_one: node 'relu' is Relu, pattern wants Mul\n"
        "double_to_add: node 'relu' is Relu, pattern wants Mul"
    )


def test_where_and_declining_replacement_leave_no_trace():
    g = _scale_graph()
    rw = gs.Rewriter(g, "test::rules")
    never = Rule("never", MUL_ONE.pattern, lambda b, m: m["x"], where=lambda m, graph: False)
    assert never.explain(g, "m_one") == (
        "node 'm_one': the pattern matches but the rule's where rejects it"
    )

    def build_then_decline(b, m):
        b.mul(m["x"], 3.0)
        return None

    declines = Rule("declines", MUL_ONE.pattern, build_then_decline)
    assert RuleSet([never, declines]).apply(g, rw) == 0
    assert not rw.changed


def test_replacement_may_consume_the_root():
    g = _scale_graph()
    rw = gs.Rewriter(g, "test::rules")
    wrap = Rule("wrap", P("Relu", Any()), lambda b, m: b.op("Identity", m.output))
    assert RuleSet([wrap]).apply_once(g, rw) == 1
    (ident,) = g.nodes("Identity")
    assert ident.data_inputs == [gs.TensorRef("relu")]
    assert g.node("out").data_inputs[1] == ident.output()


def test_rounds_are_bounded():
    g = _scale_graph()
    rw = gs.Rewriter(g, "test::rules")
    forever = Rule("forever", P("Relu", Any("x")), lambda b, m: b.op("Relu", m["x"]))
    rs = RuleSet([forever], max_rounds=3)
    assert rs.apply(g, rw) == 3
    assert not rs.converged and rs.rounds == 3
    assert g.op_counts()["Relu"] == 1


def test_declared_output_names_are_kept():
    g, rw, b = new_graph()
    x = rw.placeholder("x", F32, [2, 3]).output()
    relu = b.op("Relu", x, name="relu")
    out = b.mul(relu, b.const(np.float32(1), name="one"), name="out")
    rw.set_graph_inputs([x])
    rw.set_outputs([relu, out])
    xv = np.array([[1, -2, 3], [-4, 5, 6]], np.float32)
    before = run_tf(g, {"x": xv})
    rw = gs.Rewriter(g, "test::rules")
    assert RuleSet([MUL_ONE]).apply(g, rw) == 1
    # "out" is now an Identity of relu; the other output is untouched
    assert g.outputs == [gs.TensorRef("relu"), gs.TensorRef("out")]
    assert g.node("out").op == "Identity" and g.node("out").data_inputs == [gs.TensorRef("relu")]
    for a, c in zip(before, run_tf(g, {"x": xv})):
        np.testing.assert_array_equal(a, c)


def test_duplicate_rule_names_are_refused():
    with pytest.raises(gs.UsageError, match="two rules named 'mul_one'"):
        RuleSet([MUL_ONE, MUL_ONE])


def test_register_rules_as_pass():
    pass_id = "test_patterns::simplify"
    cls = register_rules(pass_id, [MUL_ONE, TWICE], doc="""Simplify scalings by 1 and 2.

    Before::

        y = Mul(x, 1) * 2

    After::

        y = x + x
    """)
    try:
        assert gs.get_pass(pass_id) is cls
        assert cls.summary() == "Simplify scalings by 1 and 2."
        assert "mul_one" in cls.__doc__ and "After::" in cls.__doc__
        assert cls().options == {"max_rounds": 10}
        x = np.array([[1, -2, 3], [-4, 5, 6]], np.float32)
        check_pass(_scale_graph(), pass_id, feeds={"x": x},
                   before={"Mul": 2, "AddV2": 0}, after={"Mul": 0, "AddV2": 1})
    finally:
        unregister_pass(pass_id)


# ---------------------------------------------------------------------- where with reasons
def test_where_may_say_why_it_rejects():
    from graphsurgery.patterns import Verdict

    g = _scale_graph()
    says = Rule("says", MUL_ONE.pattern, lambda b, m: m["x"],
                where=lambda m, graph: f"{m.root.name} is kept for the demo")
    assert says.match(g, "m_one") is None
    assert says.explain(g, "m_one") == (
        "node 'm_one': the pattern matches but the rule's where rejects it: "
        "m_one is kept for the demo"
    )
    verdict = Rule("verdict", MUL_ONE.pattern, lambda b, m: m["x"],
                   where=lambda m, graph: Verdict.fail("x is an input"))
    assert verdict.match(g, "m_one") is None
    assert verdict.explain(g, "m_one").endswith("where rejects it: x is an input")
    ok = Rule("ok", MUL_ONE.pattern, lambda b, m: m["x"], where=lambda m, graph: Verdict.ok())
    assert ok.match(g, "m_one") is not None
    rw = gs.Rewriter(g, "test::rules")
    assert RuleSet([says, verdict]).apply(g, rw) == 0 and not rw.changed
    assert RuleSet([says, ok]).apply(g, rw) == 1


def test_node_where_may_say_why():
    g = _scale_graph()
    pat = P("Mul", Any(), P("Const"), where=lambda n, graph: f"{n.name} is not wanted")
    assert pat.explain(g, "m_one") == "node 'm_one' fails the where predicate: m_one is not wanted"
    assert pat.match(g, "m_one") is None


def test_rule_counts_reach_the_pass_record(caplog):
    import logging

    pass_id = "test_patterns::counted"
    register_rules(pass_id, [MUL_ONE, TWICE], doc="""Count rules.

    Before::

        y = Mul(x, 1) * 2

    After::

        y = x + x
    """)
    try:
        g = _scale_graph()
        with caplog.at_level(logging.INFO, logger="graphsurgery"):
            result = gs.Pipeline.parse(pass_id).run(g, instruments=[gs.LogOpDeltas()])
        (record,) = result.records
        assert record.rule_counts == {"mul_one": 1, "double_to_add": 1}
        assert result.to_json()["passes"][0]["rule_counts"] == {"mul_one": 1, "double_to_add": 1}
        assert f"{pass_id}: rules double_to_add x1, mul_one x1" in caplog.text
        # a pass that ran no rules records none
        again = gs.Pipeline.parse(pass_id).run(g)
        assert again.records[0].rule_counts == {}
    finally:
        unregister_pass(pass_id)
