"""Verification: structure, the declared interface, and what a pipeline does with them."""

from __future__ import annotations

import graphsurgery as gs
from graphsurgery.ir.attrs import make_node_def
from graphsurgery.verify import check_interface, signature, verify

from .graphs import F32, chain


def test_a_clean_graph_verifies():
    assert verify(chain()) == []


def test_dangling_input_is_named():
    g = chain()
    gs.Rewriter(g, "t").erase("c", force=True)
    (problem,) = verify(g)
    assert "mul" in problem and "'c'" in problem


def test_interface_dtype_and_shape_changes_are_reported():
    g = chain()
    before = signature(g)
    rw = gs.Rewriter(g, "t")
    cast = rw.add_node("Cast", ["mul"], {"SrcT": F32, "DstT": gs.DType.int32}, name="cast")
    rw.replace_uses(gs.TensorRef("mul"), cast.output(), outputs=False)
    rw.set_attr(g.node("y"), "T", gs.DType.int32)
    assert check_interface(before, g) == ["output y:0 changed dtype from float32 to int32"]


def test_missing_output_is_reported():
    g = chain()
    before = signature(g)
    g.outputs = []
    assert check_interface(before, g) == ["the graph had 1 outputs and now has 0"]


def test_pipeline_stops_on_a_pass_that_breaks_the_interface(tmp_path):
    @gs.register_pass("t_verify::to_int")
    def to_int(graph, rw):
        """Change the output dtype.

        Before:: y: float32   After:: y: int32
        """
        cast = rw.add_node("Cast", ["mul"], {"SrcT": F32, "DstT": gs.DType.int32})
        rw.replace_node_def(make_node_def(
            "y", "Identity", [cast.output().input_string], {"T": gs.DType.int32}))

    try:
        g = chain()
        try:
            gs.Pipeline.parse("t_verify::to_int").run(g, reproducer_dir=tmp_path)
        except gs.PassFailure as exc:
            assert "changed dtype from float32 to int32" in str(exc)
            assert (tmp_path / "reproducer" / "pipeline.txt").read_text() == "t_verify::to_int\n"
        else:
            raise AssertionError("the interface change was not caught")
        assert len(g.nodes("Cast")) == 1  # the graph as the pass left it
    finally:
        gs.registry.unregister_pass("t_verify::to_int")
