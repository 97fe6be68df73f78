"""Tests of core::cse."""

from __future__ import annotations

import numpy as np
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery.ir import proto
from graphsurgery.testing import check_pass, run_pass

v1 = tf.compat.v1
F32 = gs.DType.float32
X = np.array([[-1.0, 0.5, 2.0]], np.float32)


def _start() -> tuple[gs.Graph, gs.Rewriter, gs.Node]:
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 3])
    rw.set_graph_inputs([x])
    return g, rw, x


def _float_val_const(rw: gs.Rewriter, name: str, value: float) -> gs.Node:
    """A scalar float Const encoded with ``float_val`` (rw.const uses tensor_content)."""
    nd = proto.NodeDef(name=name, op="Const")
    nd.attr["dtype"].type = int(F32)
    nd.attr["value"].tensor.dtype = int(F32)
    nd.attr["value"].tensor.float_val.append(value)
    return rw.replace_node_def(nd)


def test_duplicate_chains_collapse_in_one_run():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [1, 3], name="x")
        a = tf.nn.relu(x * tf.constant(2.0, name="c1"))
        b = tf.nn.relu(x * tf.constant(2.0, name="c2"))
        c = tf.nn.relu(x * tf.constant(3.0, name="c3"))
        tf.identity(a + b + c, name="out")
    graph = gs.load(g, inputs=["x"], outputs=["out"])
    after = check_pass(
        graph, "core::cse", feeds={"x": X},
        before={"Const": 3, "Mul": 3, "Relu": 3}, after={"Const": 2, "Mul": 2, "Relu": 2},
    )
    add = after.node("out").input_node(0).input_node(0)
    assert add.data_inputs[0] == add.data_inputs[1]


def test_constants_compare_by_content_not_encoding():
    g, rw, x = _start()
    consts = [
        rw.const(np.float32(2.0), name="packed"),
        _float_val_const(rw, "unpacked", 2.0),
        rw.const(np.float32(-0.0), name="neg_zero"),
        rw.const(np.float32(0.0), name="zero"),
        rw.const(np.array(2.0, np.float64), name="double"),
        rw.const(np.full([1], 2.0, np.float32), name="vector"),
    ]
    outs = []
    for c in consts:
        cast = rw.add_node("Cast", [c], {"SrcT": c.dtype, "DstT": F32, "Truncate": False})
        outs.append(rw.add_node("Mul", [x, cast], {"T": F32}, name=f"out_{c.name}"))
    rw.set_outputs(outs)
    after = check_pass(g, "core::cse", feeds={"x": X},
                       before={"Const": 6, "Cast": 6}, after={"Const": 5, "Cast": 5})
    assert "packed" in after and "unpacked" not in after
    assert {"neg_zero", "zero", "double", "vector"} <= set(after.names)


def test_control_inputs_compare_as_a_set():
    g, rw, x = _start()
    a = rw.const(np.float32(1.0), name="a")
    b = rw.const(np.float32(2.0), name="b")
    n1 = rw.add_node("Neg", [x], {"T": F32}, name="n1", control_inputs=[a, b])
    n2 = rw.add_node("Neg", [x], {"T": F32}, name="n2", control_inputs=[b, a])
    n3 = rw.add_node("Neg", [x], {"T": F32}, name="n3", control_inputs=[a])
    y = rw.add_node("AddN", [n1, n2, n3], {"T": F32, "N": 3}, name="y")
    rw.set_outputs([y])
    after = check_pass(g, "core::cse", feeds={"x": X}, before={"Neg": 3}, after={"Neg": 2})
    assert [t.node for t in after.node("y").data_inputs] == ["n1", "n1", "n3"]


def test_stateful_unregistered_inputs_and_outputs_are_not_merged():
    g, rw, x = _start()
    shape = rw.const(np.array([1, 3], np.int32), name="shape")
    rnd = [
        rw.add_node("RandomStandardNormal", [shape],
                    {"T": gs.DType.int32, "dtype": F32, "seed": 1, "seed2": 2}, name=f"r{i}")
        for i in range(2)
    ]
    ph = [rw.placeholder(f"p{i}", F32, [1, 3]) for i in range(2)]
    o1 = rw.add_node("Relu", [x], {"T": F32}, name="o1")
    o2 = rw.add_node("Relu", [x], {"T": F32}, name="o2")
    inner = rw.add_node("Relu", [x], {"T": F32}, name="inner")  # merged into o1
    total = rw.add_node("AddN", [*rnd, *ph, inner], {"T": F32, "N": 5}, name="total")
    rw.set_graph_inputs([x, *ph])
    rw.set_outputs([o1, o2, total])
    feeds = {"x": X, "p0": X, "p1": 2 * X}
    after = check_pass(g, "core::cse", feeds=feeds, before={"Relu": 3, "Placeholder": 3},
                       after={"Relu": 2, "RandomStandardNormal": 2, "Placeholder": 3})
    assert {"o1", "o2"} <= set(after.names) and "inner" not in after

    custom, _, cx = _start()
    crw = gs.Rewriter(custom, "test::build")
    c1 = crw.add_node("MyCustomOp", [cx], {"T": F32}, name="c1")
    c2 = crw.add_node("MyCustomOp", [cx], {"T": F32}, name="c2")
    crw.set_outputs([crw.add_node("AddV2", [c1, c2], {"T": F32}, name="y")])
    assert not run_pass(custom, "core::cse").changed
    assert custom.op_counts()["MyCustomOp"] == 2


def test_colocation_follows_the_survivor():
    g, rw, x = _start()
    a = rw.add_node("Neg", [x], {"T": F32}, name="a")
    b = rw.add_node("Neg", [x], {"T": F32}, name="b")
    c = rw.add_node("Relu", [b], {"T": F32, "_class": ["loc:@b"]}, name="c")
    rw.set_outputs([rw.add_node("AddV2", [a, c], {"T": F32}, name="y")])
    after = check_pass(g, "core::cse", feeds={"x": X}, before={"Neg": 2}, after={"Neg": 1})
    assert after.node("c").attr("_class") == ["loc:@a"]


def test_nothing_to_do_reports_no_change():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [1, 3], name="x")
        tf.identity(tf.nn.relu(x) * 2.0 + tf.sigmoid(x), name="out")
    graph = gs.load(g, inputs=["x"], outputs=["out"])
    check_pass(graph, "core::cse", feeds={"x": X}, expect_change=False,
               before={"Relu": 1}, after={"Relu": 1})


def test_duplicates_into_one_addn_rewrite_its_inputs_once(monkeypatch):
    # Each duplicate used to rewrite the AddN's whole input list: n^2 input strings
    # (5,000 duplicates took 52 s). Counted as input strings committed to the graph.
    n = 1000
    g, rw, x = _start()
    c = rw.const(np.float32(2.0), name="c")
    dups = [rw.add_node("Mul", [x, c], {"T": F32}, name=f"m{i}") for i in range(n)]
    s = rw.add_node("AddN", dups, {"T": F32, "N": n}, name="sum", control_inputs=dups[:3])
    rw.set_outputs([s])
    written: list[int] = []
    put = gs.Graph._put

    def counting_put(self: gs.Graph, nd: proto.NodeDef) -> None:
        written.append(len(nd.input))
        put(self, nd)

    monkeypatch.setattr(gs.Graph, "_put", counting_put)
    assert run_pass(g, "core::cse").changed
    assert g.op_counts()["Mul"] == 1
    assert list(g.node_def("sum").input) == ["m0"] * n + ["^m0"]
    assert sum(written) <= 2 * n


def test_duplicate_users_rewritten_through_chains_and_control_edges():
    g, rw, x = _start()
    a1 = rw.add_node("Neg", [x], {"T": F32}, name="a1")
    a2 = rw.add_node("Neg", [x], {"T": F32}, name="a2")
    b1 = rw.add_node("Relu", [a1], {"T": F32}, name="b1", control_inputs=[a2])
    b2 = rw.add_node("Relu", [a2], {"T": F32}, name="b2", control_inputs=[a1])
    y = rw.add_node("AddV2", [b1, b2], {"T": F32}, name="y", control_inputs=[a2, a1])
    rw.set_outputs([y])
    after = check_pass(g, "core::cse", feeds={"x": X}, before={"Neg": 2, "Relu": 2},
                       after={"Neg": 1, "Relu": 1})
    assert list(after.node_def("b1").input) == ["a1", "^a1"]
    assert list(after.node_def("y").input) == ["b1", "b1", "^a1"]
