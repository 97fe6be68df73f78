import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.ir import proto
from graphsurgery.ir.names import Input, NameGenerator, TensorRef

from .graphs import chain, deep_chain


def test_names_parse_ports_and_control_inputs():
    assert TensorRef.parse("a/b:1") == TensorRef("a/b", 1)
    assert TensorRef.parse("a/b") == TensorRef("a/b", 0)
    assert TensorRef("x", 0).input_string == "x"
    assert TensorRef("x", 2).input_string == "x:2"
    assert Input.parse("^dep") == Input("dep", 0, True)
    assert str(Input.parse("x:1")) == "x:1"
    with pytest.raises(gs.GraphError):
        TensorRef.parse("^x")


def test_name_generator_never_repeats():
    gen = NameGenerator({"a", "a_1"})
    assert [gen("a"), gen("a"), gen("b"), gen("b")] == ["a_2", "a_3", "b", "b_1"]


def test_consumers_index_and_queries():
    g = chain()
    assert [(n.name, i) for n, i in g.consumers("x")] == [("id0", 0), ("unused", 0)]
    assert g.op_counts()["Identity"] == 3
    assert g.is_const("c") and not g.is_const("x")
    np.testing.assert_array_equal(g.const_value("c"), [0, 1, 2, 3])
    assert g.const_shape("c") == (4,)
    assert g.dtype_hint("mul") == gs.DType.float32
    assert g.static_shape("x") == (1, 4)
    order = g.toposort()
    assert order.index("x") < order.index("id0") < order.index("mul") < order.index("y")
    assert g.ancestors(["mul"]) == {"mul", "id1", "id0", "x", "c"}


def test_constants_stay_encoded_until_read():
    g = chain()
    assert g._const_cache == {}
    g.const_value("c")
    assert "c" in g._const_cache
    with pytest.raises(ValueError):
        g.const_value("c")[0] = 5  # read-only


def test_copy_shares_nodes_and_is_independent():
    g = chain()
    h = g.copy()
    assert h.node_def("mul") is g.node_def("mul")  # no NodeDef is copied
    rw = gs.Rewriter(h, "t::x")
    rw.replace_uses("id1", "x")
    rw.erase_dead()
    assert "id0" in g and "id0" not in h
    assert list(g.node("mul").proto.input) == ["id1", "c"]


def test_default_interface_is_placeholders_and_sinks():
    g = gs.Graph(chain().to_graph_def().node)
    assert g.inputs == [TensorRef("x")]
    assert sorted(t.node for t in g.outputs) == ["unused", "y"]


def test_unused_placeholders_are_not_default_outputs():
    g = chain()
    rw = gs.Rewriter(g, "t::x")
    rw.placeholder("labels_in", gs.DType.float32, [1, 0])
    h = gs.Graph(g.to_graph_def().node)
    assert sorted(t.node for t in h.outputs) == ["unused", "y"]
    assert sorted(t.node for t in h.inputs) == ["labels_in", "x"]


@pytest.mark.parametrize("kind", ["data", "control", "const_control"])
def test_traversals_of_deep_chains_are_iterative(kind):
    from graphsurgery.verify import check_structure

    g = deep_chain(5000, kind)
    order = g.toposort()
    assert order.index("n0") < order.index("n4999") < order.index("y")
    assert "n0" in g.ancestors(["y"])
    assert check_structure(g) == []
    assert g.to_networkx().number_of_nodes() == len(g)


def test_copy_with_stand_ins_leaves_the_original_alone():
    g = chain()
    c = next(n for n in g if n.op == "Const")
    g.const_value(c.name)  # decoded and cached in the original
    lite = proto.NodeDef()
    lite.CopyFrom(g.node_def(c.name))
    lite.attr["value"].tensor.ClearField("tensor_content")
    lite.attr["value"].tensor.ClearField("float_val")
    view = g.copy(stand_ins={c.name: lite})
    assert view.node_def(c.name) is lite and g.node_def(c.name) is not lite
    assert view._const_cache == {} and c.name in g._const_cache
    assert g.copy(stand_ins={}).node_def(c.name) is g.node_def(c.name)
