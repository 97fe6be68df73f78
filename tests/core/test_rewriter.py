import numpy as np
import pytest

import graphsurgery as gs

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
