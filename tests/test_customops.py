"""graphsurgery.ir.customops: a plugin declares a custom op once (shape function, reference
maths, lowering pass) and shape inference and the reference runner both use it."""

from __future__ import annotations

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.ir import customops
from graphsurgery.ir.customops import (
    get_custom_op,
    register_custom_op,
    registered_custom_ops,
    unregister_custom_op,
)
from graphsurgery.ir.shapes import TensorInfo, infer_shapes
from graphsurgery.reference import make_reference

F32 = gs.DType.float32


@pytest.fixture
def triple():
    """``TestTriple(x)``: ``[x, x, x]`` stacked on a new last axis (an op TF does not know)."""

    def shape(node, ins):
        x = ins[0]
        return [TensorInfo(x.dtype, None if x.shape is None else (*x.shape, 3))]

    def reference(node, ins):
        import tensorflow as tf

        return tf.stack([ins[0]] * 3, axis=-1)

    register_custom_op("TestTriple", reference, shape=shape, lowered_by="test::lower_triple")
    yield
    unregister_custom_op("TestTriple")


def _graph() -> gs.Graph:
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [None, 2])
    t = rw.add_node("TestTriple", [x], {"T": F32}, name="t")
    y = rw.add_node("Neg", [t], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    return g


def test_one_declaration_serves_shapes_and_the_reference(triple):
    g = _graph()
    info = infer_shapes(g)
    assert info[gs.TensorRef("t")] == TensorInfo(F32, (-1, 2, 3))
    assert info[gs.TensorRef("y")] == TensorInfo(F32, (-1, 2, 3))  # downstream of it too
    xv = np.arange(4, dtype=np.float32).reshape(2, 2)
    (got,) = make_reference(g).run({"x": xv})
    np.testing.assert_array_equal(got, -np.stack([xv] * 3, axis=-1))
    op = get_custom_op("TestTriple")
    assert op.lowered_by == "test::lower_triple" and op.module == __name__
    assert "TestTriple" in registered_custom_ops()


def test_registering_again_keeps_the_fields_not_given(triple):
    before = get_custom_op("TestTriple")
    register_custom_op("TestTriple", lowered_by="test::other")
    after = get_custom_op("TestTriple")
    assert (after.shape, after.reference) == (before.shape, before.reference)
    assert after.lowered_by == "test::other"


def test_decorator_registers_the_reference():
    @register_custom_op("TestDeco")
    def deco(node, ins):
        return ins[0]

    try:
        assert get_custom_op("TestDeco").reference is deco
        assert get_custom_op("TestDeco").shape is None
    finally:
        unregister_custom_op("TestDeco")


def test_an_unknown_op_loads_the_plugins_once(monkeypatch):
    calls = []
    monkeypatch.setattr(customops, "_DISCOVERERS", [lambda: calls.append(1)])
    monkeypatch.setattr(customops, "_discovered", False)
    assert get_custom_op("TestNobodyDeclaresThis") is None
    assert get_custom_op("TestNorThis") is None
    assert calls == [1]


def test_a_plugin_failing_to_load_is_an_error_and_is_tried_again(monkeypatch):
    def broken():
        raise gs.UsageError("plugin broken (x.y) failed to import: ValueError: no")

    monkeypatch.setattr(customops, "_DISCOVERERS", [broken])
    monkeypatch.setattr(customops, "_discovered", False)
    for _ in range(2):
        with pytest.raises(gs.UsageError, match="plugin broken"):
            get_custom_op("TestNobodyDeclaresThis")


def test_graphsurgery_loads_plugins_for_unknown_ops():
    """The plugin loader is a discoverer as soon as graphsurgery is imported."""
    from graphsurgery.plugins import load_entry_points

    assert load_entry_points in customops._DISCOVERERS


def test_a_bad_op_name_is_refused():
    with pytest.raises(TypeError, match="op name"):
        register_custom_op("", shape=lambda node, ins: ins)
