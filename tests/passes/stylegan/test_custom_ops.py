"""stylegan custom_ops: FusedBiasAct/UpFirDn2D declared to graphsurgery by the plugin."""

from __future__ import annotations

import numpy as np
from graphsurgery.passes.stylegan.custom_ops import fused_bias_act_shape, upfirdn2d_shape

import graphsurgery as gs
from graphsurgery.ir.customops import get_custom_op
from graphsurgery.ir.shapes import TensorInfo, infer_shapes

F32 = gs.DType.float32


def test_each_op_declares_shape_reference_and_a_registered_lowering_pass():
    passes = gs.all_passes()
    for op, lowering in (("UpFirDn2D", "stylegan::lower_upfirdn2d"),
                         ("FusedBiasAct", "stylegan::lower_fused_bias_act")):
        declared = get_custom_op(op)
        assert declared.shape is not None and declared.reference is not None
        assert declared.lowered_by == lowering and lowering in passes
        assert declared.module == "graphsurgery.passes.stylegan.custom_ops"


def _node(op: str, **attrs) -> gs.Node:
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [None, 8, 8, 3])
    return rw.add_node(op, [x], {"T": F32, **attrs}, name="n")


def test_upfirdn2d_shape():
    node = _node("UpFirDn2D", upx=2, upy=2, padx0=2, padx1=1, pady0=1, pady1=1)
    x, k = TensorInfo(F32, (-1, 8, 8, 3)), TensorInfo(F32, (4, 4))
    # (8 * 2 + 1 + 1 - 4) // 1 + 1 = 15 rows, (8 * 2 + 2 + 1 - 4) + 1 = 16 columns
    assert upfirdn2d_shape(node, [x, k]) == [TensorInfo(F32, (-1, 15, 16, 3))]
    down = _node("UpFirDn2D", downx=2, downy=2)
    assert upfirdn2d_shape(down, [x, k]) == [TensorInfo(F32, (-1, 3, 3, 3))]
    assert upfirdn2d_shape(node, [TensorInfo(F32, None), k]) == [
        TensorInfo(F32, (-1, -1, -1, -1))]


def test_fused_bias_act_shape_is_its_input_shape():
    x = TensorInfo(F32, (2, 3, 4, 4))
    assert fused_bias_act_shape(_node("FusedBiasAct"), [x, TensorInfo(F32, (3,))]) == [x]


def test_shape_inference_sees_through_both_ops():
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [None, 8, 8, 3])
    k = rw.const(np.ones([3, 3], np.float32), name="k")
    up = rw.add_node("UpFirDn2D", [x, k], {"T": F32, "upx": 2, "upy": 2}, name="up")
    b = rw.const(np.zeros([3], np.float32), name="b")
    act = rw.add_node("FusedBiasAct", [up, b], {"T": F32, "axis": 3}, name="act")
    rw.set_outputs([act])
    info = infer_shapes(g)
    assert info[act.output()] == TensorInfo(F32, (-1, 14, 14, 3))
