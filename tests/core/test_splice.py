"""splice_tf: a subgraph written with TensorFlow copied into a graph through a Rewriter."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import graphsurgery as gs
from graphsurgery.splice import splice_tf
from graphsurgery.testing import run_tf

from .graphs import F32, chain


def test_spliced_maths_replaces_a_node():
    g = chain()
    rw = gs.Rewriter(g, "test::splice")
    (y,) = splice_tf(rw, lambda a, b: tf.nn.leaky_relu(a * b, 0.2), ["id1", "c"],
                     scope="lrelu")
    rw.replace_uses(gs.TensorRef("mul"), y)
    rw.erase("mul")
    new = set(g.names) - set(chain().names)
    assert y.node.startswith("lrelu/") and new and all(n.startswith("lrelu/") for n in new)
    assert not any(n.op == "Placeholder" and n.name != "x" for n in g)  # inputs rewired
    x = np.array([[-1, 2, -3, 4]], np.float32)
    (got,) = run_tf(g, {"x": x})
    want = x * np.arange(4, dtype=np.float32)
    np.testing.assert_allclose(got, np.where(want > 0, want, 0.2 * want))


def test_scope_is_made_unique_and_inputs_can_pass_through():
    g = chain()
    rw = gs.Rewriter(g, "test::splice")
    a, b = splice_tf(rw, lambda t: (t + 1.0, t), ["x"], scope="mul")  # "mul" is taken
    assert a.node.startswith("mul_1/") and b == gs.TensorRef("x")


def test_bad_inputs_are_graph_errors():
    g = chain()
    rw = gs.Rewriter(g, "test::splice")
    with pytest.raises(gs.GraphError, match="input ghost:0 does not exist"):
        splice_tf(rw, lambda t: t, ["ghost"], scope="s")
    with pytest.raises(gs.GraphError, match="1 inputs but 2 input_specs"):
        splice_tf(rw, lambda t: t, ["x"], scope="s", input_specs=[(F32, [1, 4])] * 2)
