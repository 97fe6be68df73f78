import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.verify import check_structure

from .graphs import F32, chain


def test_journal_and_provenance_stay_outside_nodedefs():
    g = chain()
    rw = gs.Rewriter(g, "test::scale")
    with rw.rule_scope("double"):
        two = rw.const(np.float32(2), name="two")
        m2 = rw.add_node("Mul", ["mul", two], {"T": F32}, name="mul2")
        rw.replace_uses("mul", m2, exclude=[m2.name])
    assert g.node("y").data_inputs[0].node == "mul2"
    assert g.provenance["mul2"] == gs.Provenance("test::scale", "double", "created")
    assert g.provenance["y"].action == "modified"
    assert [e.kind for e in rw.journal] == ["add", "add", "inputs"]
    assert all(e.rule == "double" for e in rw.journal)
    assert "_provenance" not in str(gs.serialize(g))
    assert rw.changes == {"two": "added", "mul2": "added", "y": "changed"}


def test_change_detection_is_honest():
    g = chain()
    rw = gs.Rewriter(g, "t::noop")
    rw.set_attr("mul", "T", F32)  # same value
    rw.set_inputs("mul", ["id1", "c"])  # same inputs
    assert not rw.changed and rw.journal == []
    # remove and re-add an identical node: no net change
    nd = g.node_def("unused")
    rw.erase("unused")
    rw.replace_node_def(nd)
    assert not rw.changed


def test_erase_refuses_used_nodes_and_erase_dead_is_transitive():
    g = chain()
    rw = gs.Rewriter(g, "t::x")
    with pytest.raises(gs.GraphError, match="still used"):
        rw.erase("id0")
    rw.replace_uses("id1", "x")
    assert rw.erase_dead() == 3  # id1, id0 and unused
    assert g.names == ["x", "c", "mul", "y"]


def test_replace_node_moves_control_dependencies():
    g = chain()
    rw = gs.Rewriter(g, "t::x")
    rw.add_control_input("y", "unused")
    n = rw.add_node("Relu", ["x"], {"T": F32}, name="relu2")
    rw.replace_node("unused", n)
    assert g.node("y").control_inputs == ["relu2"]
    assert list(g.node("y").proto.input) == ["mul", "^relu2"]  # data inputs first


def test_replace_uses_follows_declared_outputs():
    g = chain()
    rw = gs.Rewriter(g, "t::x")
    rw.replace_uses("y", "mul")
    assert g.outputs == [gs.TensorRef("mul")]
    assert rw.changed


def test_new_inputs_must_exist():
    g = chain()
    rw = gs.Rewriter(g, "t::x")
    with pytest.raises(gs.GraphError, match="does not exist"):
        rw.add_node("Relu", ["nope"], {"T": F32})


def test_large_constants_are_remembered_by_digest():
    """A weight over 1 MB is journaled by digest, not kept alive; change detection still
    tells a rewritten-but-equal weight from a changed one."""
    g = chain()
    big = np.arange(1 << 19, dtype=np.float32)  # 2 MB
    gs.Rewriter(g, "t::setup").const(big, name="w")
    rw = gs.Rewriter(g, "t::same")
    original = gs.Rewriter(g, "t::peek")._copy("w")
    changed = gs.Rewriter(g, "t::peek")._copy("w")
    changed.attr["value"].tensor.tensor_content = (big + 1).tobytes()
    rw.replace_node_def(changed)
    assert rw.changes == {"w": "changed"}
    assert not isinstance(rw._before["w"], type(original))  # a digest, not the old NodeDef
    rw.replace_node_def(original)  # back to the same content
    assert not rw.changed


# ---------------------------------------------------------------------- output names
def test_a_replaced_declared_output_keeps_its_name():
    """Replacing and erasing the output node (what folding a Merge or removing an output
    Identity does) leaves an Identity of the old name reading the replacement."""
    g = chain()
    rw = gs.Rewriter(g, "t::x")
    rw.replace_uses("y", "mul")
    rw.erase("y")
    assert g.outputs == [gs.TensorRef("mul")]  # followed, for the rest of the pass
    assert rw.keep_output_names() == 1
    assert g.outputs == [gs.TensorRef("y")]
    assert g.node("y").op == "Identity" and g.node("y").data_inputs == [gs.TensorRef("mul")]
    assert g.node("y").attr("T") == F32
    assert not check_structure(g)


def test_a_replacement_made_by_the_pass_takes_the_name():
    g = chain()
    rw = gs.Rewriter(g, "t::x")
    neg = rw.add_node("Neg", ["mul"], {"T": F32}, name="neg")
    rw.replace_uses("y", neg)
    rw.erase("y")
    rw.keep_output_names()
    assert g.outputs == [gs.TensorRef("y")] and g.node("y").op == "Neg" and "neg" not in g


def test_a_surviving_replaced_output_moves_away_from_its_name():
    g = chain()
    rw = gs.Rewriter(g, "t::x")
    rw.add_control_input("unused", "y")  # keeps y alive
    rw.replace_uses("y", "mul")
    rw.keep_output_names()
    assert g.outputs == [gs.TensorRef("y")] and g.node("y").data_inputs == [gs.TensorRef("mul")]
    assert g.node("unused").control_inputs == ["y/replaced"]
    assert not check_structure(g)


def test_an_output_port_above_zero_keeps_its_name_and_port():
    g = chain()
    rw = gs.Rewriter(g, "t::build")
    un = rw.add_node("Unpack", ["c"], {"T": F32, "num": 4, "axis": 0}, name="un")
    rw.set_outputs(["y", un.output(2)])
    rw = gs.Rewriter(g, "t::fold")
    k = rw.const(np.float32(2), name="k")
    rw.replace_uses(un.output(2), k)
    rw.erase("un")
    rw.keep_output_names()
    assert g.outputs == [gs.TensorRef("y"), gs.TensorRef("un", 2)]
    assert g.node("un").op == "IdentityN" and g.node("un").data_inputs[2] == gs.TensorRef("k")
    assert not check_structure(g)


def test_outputs_chosen_with_set_outputs_are_left_as_chosen():
    g = chain()
    rw = gs.Rewriter(g, "t::x")
    rw.replace_uses("y", "mul")
    rw.set_outputs(["mul"])
    rw.erase("y")
    assert rw.keep_output_names() == 0 and g.outputs == [gs.TensorRef("mul")]


def test_every_pass_of_a_pipeline_keeps_output_names():
    """The pass manager gives the names back after each pass, whatever the pass did."""

    @gs.register_pass("t::bypass_output")
    def bypass(graph, rw):
        rw.replace_uses("y", "mul")
        rw.erase("y")

    g = chain()
    gs.Pipeline.parse("t::bypass_output").run(g)
    assert g.outputs == [gs.TensorRef("y")] and g.node("y").op == "Identity"


def test_a_rule_that_renames_its_replacement_keeps_the_output_name():
    """patterns.rules sets the output to its new node, then gives that node the old name:
    the name at the start of the pass is what counts, not the one in between."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "t::build")
    x = rw.placeholder("x", F32, [2])
    m1 = rw.add_node("Mul", [x, rw.const(np.float32(3), name="a")], {"T": F32}, name="m1")
    m2 = rw.add_node("Mul", [m1, rw.const(np.float32(2), name="b")], {"T": F32}, name="m2")
    rw.set_graph_inputs([x])
    rw.set_outputs([m2])
    gs.Pipeline.parse("core::fold_scalings").run(g)
    assert g.outputs == [gs.TensorRef("m2")] and g.node("m2").op == "Mul"
    assert g.op_counts()["Mul"] == 1 and g.op_counts()["Identity"] == 0
