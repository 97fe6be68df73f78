"""Path patterns: linear chains walked up from an input or down from the root."""

from __future__ import annotations

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.patterns import Any, Builder, P, Path, Rule, RuleSet, Step, Verdict
from graphsurgery.testing import run_tf

F32 = gs.DType.float32


def chain_graph(extra_user: str | None = None) -> gs.Graph:
    """x -> Neg n0 -> Relu r1 -> Relu r2 -> Abs a3 -> Square (root) -> Relu d1 -> Neg d2 -> y."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    b = Builder(rw)
    x = rw.placeholder("x", F32, [2]).output()
    t = b.op("Neg", x, name="n0")
    t = b.op("Relu", t, name="r1")
    t = b.op("Relu", t, name="r2")
    t = b.op("Abs", t, name="a3")
    t = b.op("Square", t, name="sq")
    t = b.op("Relu", t, name="d1")
    y = b.op("Neg", t, name="d2")
    outputs = [y]
    if extra_user is not None:
        outputs.append(b.op("Sign", gs.TensorRef(extra_user), name="other"))
    rw.set_graph_inputs([x])
    rw.set_outputs(outputs)
    return g


UP = Path(
    Step(P("Abs"), max=1, capture="abs"),
    Step(P("Relu"), capture="relus"),
    Step(P("Neg"), min=1, max=1, capture="neg"),
    then=Any("x"),
)
DOWN = Path(Step(P("Relu|Neg"), capture="tail"))
PATTERN = P("Square", UP, users=DOWN)


def names(nodes):
    return [n.name for n in nodes]


def test_walks_up_and_down_and_owns_the_chain():
    g = chain_graph()
    m = PATTERN.match(g, "sq")
    assert names(m["abs"]) == ["a3"] and names(m["relus"]) == ["r2", "r1"]
    assert names(m["neg"]) == ["n0"] and m["x"] == gs.TensorRef("x")
    assert names(m["tail"]) == ["d1", "d2"] and m.output == gs.TensorRef("d2")
    assert set(m.owned) == {"sq", "a3", "r2", "r1", "n0", "d1", "d2"}
    assert "tail=[d1, d2]" in repr(m)


def test_a_node_used_outside_ends_the_walk_before_it():
    g = chain_graph(extra_user="r1")  # r1 also feeds "other"
    m = PATTERN.match(g, "sq")
    # the Relu step stops before r1; the Neg step (min=1) then fails there: x is r1
    assert names(m["relus"]) == ["r2"] and "neg" not in m and m["x"] == gs.TensorRef("r1")
    g = chain_graph(extra_user="d1")
    m = PATTERN.match(g, "sq")
    assert names(m["tail"]) == ["d1"] and m.output == gs.TensorRef("d1")


def test_accept_stops_a_step_and_then_may_reject():
    one_relu = Path(Step(P("Abs"), max=1), Step(
        P("Relu"), accept=lambda nodes, g: len(nodes) <= 1 or Verdict.fail("one is enough"),
        capture="relus"), then=P("Relu", capture="rest"))
    m = P("Square", one_relu).match(chain_graph(), "sq")
    assert names(m["relus"]) == ["r2"] and m["rest"].name == "r1"
    strict = P("Square", Path(Step(P("Abs")), then=P("Neg")))
    assert strict.match(chain_graph(), "sq") is None
    assert "is Relu 'r2', pattern wants Neg" in strict.explain(chain_graph(), "sq")


def test_a_rule_replaces_the_end_of_the_users_path():
    g = chain_graph()
    rule = Rule("collapse", PATTERN, lambda b, m: b.mul(m["x"], m["x"]))
    assert RuleSet([rule]).apply(g, gs.Rewriter(g, "test::rules")) == 1
    assert sorted(g.op_counts().elements()) == ["Mul", "Placeholder"]
    assert g.outputs == [gs.TensorRef("d2")] and g.node("d2").op == "Mul"
    x = np.array([-3, 2], np.float32)
    (got,) = run_tf(g, {"x": x})
    np.testing.assert_array_equal(got, x * x)


def test_path_misuse_is_a_usage_error():
    with pytest.raises(gs.UsageError, match="must be a P without input patterns"):
        Path(Step(P("Relu", Any())))
    with pytest.raises(gs.UsageError, match="at least one Step"):
        Path()
    assert repr(UP) == "path[Abs? as abs <- Relu* as relus <- Neg as neg <- $x]"
