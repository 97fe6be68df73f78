"""Tests of graphsurgery.ir.shapes: TensorFlow shape inference on a shadow of the graph."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery.ir import shapes
from graphsurgery.ir.customops import unregister_custom_op
from graphsurgery.ir.shapes import TensorInfo, infer_shapes, register_shape_fn, shape_conflicts
from graphsurgery.tfcompat import control_flow_v1
from graphsurgery.verify import check_shapes

F32, I32, BOOL = gs.DType.float32, gs.DType.int32, gs.DType.bool
T = gs.TensorRef


def _empty() -> tuple[gs.Graph, gs.Rewriter]:
    graph = gs.Graph([], inputs=[], outputs=[])
    return graph, gs.Rewriter(graph, "test")


def _conv_net(weights: int = 10) -> gs.Graph:
    """x[None,8,8,3] -> conv NHWC -> reshape [-1, 256] -> matmul [256, weights] -> top_k."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        w = tf.constant(np.ones([3, 3, 3, 4], np.float32), name="w")
        c = tf.nn.conv2d(x, w, strides=1, padding="SAME", data_format="NHWC", name="conv")
        r = tf.reshape(c, [-1, 8 * 8 * 4], name="flat")
        m = tf.constant(np.ones([256, weights], np.float32), name="m")
        y = tf.matmul(r, m, name="mm")
        tf.nn.top_k(y, 3, name="topk")
    return gs.load(g, outputs=["topk:0", "topk:1"])


# ---------------------------------------------------------------------------- plain graphs
def test_conv_reshape_matmul_every_tensor():
    graph = _conv_net()
    res = infer_shapes(graph)
    expected = {
        T("x"): TensorInfo(F32, (-1, 8, 8, 3)),
        T("w"): TensorInfo(F32, (3, 3, 3, 4)),
        T("conv"): TensorInfo(F32, (-1, 8, 8, 4)),
        T("flat/shape"): TensorInfo(I32, (2,)),
        T("flat"): TensorInfo(F32, (-1, 256)),
        T("m"): TensorInfo(F32, (256, 10)),
        T("mm"): TensorInfo(F32, (-1, 10)),
        T("topk/k"): TensorInfo(I32, ()),
        T("topk", 0): TensorInfo(F32, (-1, 3)),
        T("topk", 1): TensorInfo(I32, (-1, 3)),
    }
    assert dict(res) == expected
    assert res.conflicts == [] and res.opaque == {}
    assert res[T("flat")].rank == 2 and not res[T("flat")].fully_defined


def test_graph_methods_use_inference_and_cache_per_version():
    graph = _conv_net()
    first = graph.infer()
    assert graph.infer() is first  # cached
    assert graph.shape("mm") == (-1, 10)
    assert graph.shape("x") == (-1, 8, 8, 3)
    assert graph.dtype("topk:1") == I32  # not the T attribute (float32)
    assert graph.dtype("mm") == F32
    rw = gs.Rewriter(graph, "test")
    rw.add_node("Neg", ["mm"], {"T": F32}, name="neg")
    second = graph.infer()
    assert second is not first
    assert second[T("neg")] == TensorInfo(F32, (-1, 10))


def test_big_const_becomes_placeholder_in_shadow(monkeypatch):
    graph = _conv_net(weights=64)  # m is 256 x 64 float32 = 64 KiB
    assert graph.const_nbytes("m") > shapes.BIG_CONST_BYTES
    seen: dict[str, str] = {}
    real = shapes._Inference._tf_import

    def spy(self, node_bytes, input_map, names):
        gd = tf.compat.v1.GraphDef.FromString(node_bytes)
        for nd in gd.node:
            seen[self._demangle(nd.name)] = nd.op
        return real(self, node_bytes, input_map, names)

    monkeypatch.setattr(shapes._Inference, "_tf_import", spy)
    res = infer_shapes(graph)
    assert seen["m"] == "Placeholder"
    assert seen["w"] == "Const" and seen["flat/shape"] == "Const"  # small ones stay
    assert res[T("m")] == TensorInfo(F32, (256, 64))
    assert res[T("mm")] == TensorInfo(F32, (-1, 64))
    assert res[T("topk", 1)] == TensorInfo(I32, (-1, 3))


def test_identity_n_noop_and_zero_output_nodes():
    graph, rw = _empty()
    a = rw.placeholder("a", F32, [2, None])
    b = rw.placeholder("b", BOOL, [])
    idn = rw.add_node("IdentityN", [a, b], {"T": [F32, BOOL]}, name="idn")
    rw.add_node("NoOp", [], {}, name="noop", control_inputs=[idn])
    rw.add_node("Neg", ["idn:0"], {"T": F32}, name="neg", control_inputs=["noop"])
    res = infer_shapes(graph)
    assert res[T("idn", 0)] == TensorInfo(F32, (2, -1))
    assert res[T("idn", 1)] == TensorInfo(BOOL, ())
    assert res[T("neg")] == TensorInfo(F32, (2, -1))
    assert not any(ref.node == "noop" for ref in res)
    assert res.conflicts == []


# ---------------------------------------------------------------------------- custom ops
def _upfirdn_graph(op2: str = "FusedBiasAct") -> gs.Graph:
    graph, rw = _empty()
    x = rw.placeholder("x", F32, [None, 8, 8, 3])
    k = rw.const(np.ones([4, 4], np.float32), name="k")
    attrs = {"T": F32, "upx": 2, "upy": 2, "downx": 1, "downy": 1,
             "padx0": 2, "padx1": 1, "pady0": 1, "pady1": 1}
    up = rw.add_node("UpFirDn2D", [x, k], attrs, name="up")
    bias = rw.const(np.zeros([3], np.float32), name="bias")
    act = rw.add_node(op2, [up, bias], {"T": F32}, name="act")
    axes = rw.const(np.int32([1, 2]), name="axes")
    mean = rw.add_node("Mean", [act, axes], {"T": F32, "Tidx": I32}, name="mean")
    rw.set_outputs([mean])
    return graph


def test_unregistered_upfirdn2d_uses_registry_and_waves():
    graph = _upfirdn_graph()
    res = infer_shapes(graph)
    # H: (8*2 + 1 + 1 - 4) // 1 + 1 = 15, W: (8*2 + 2 + 1 - 4) // 1 + 1 = 16
    assert res[T("up")] == TensorInfo(F32, (-1, 15, 16, 3))
    assert res[T("act")] == TensorInfo(F32, (-1, 15, 16, 3))  # FusedBiasAct: like input 0
    assert res[T("mean")] == TensorInfo(F32, (-1, 3))  # imported after both custom ops
    assert res.opaque == {"up": "custom", "act": "custom"}
    assert shape_conflicts(graph) == []


def test_unknown_op_without_shape_fn_and_a_registered_one():
    graph = _upfirdn_graph(op2="MysteryAct")
    res = infer_shapes(graph)
    assert res[T("act")] == TensorInfo(F32, None)  # dtype from attr T, shape unknown
    assert res[T("mean")].dtype == F32 and res[T("mean")].shape is None

    register_shape_fn("MysteryAct", lambda node, ins: [(ins[0].dtype, ins[0].shape)])
    try:
        assert infer_shapes(graph)[T("mean")] == TensorInfo(F32, (-1, 3))
    finally:
        unregister_custom_op("MysteryAct")


def test_unknown_op_without_dtype_attr_and_broken_shape_fn():
    graph, rw = _empty()
    x = rw.placeholder("x", gs.DType.int32, [4])
    odd = rw.add_node("Oddity", [x], {}, name="odd")
    rw.add_node("Identity", ["odd:1"], {"T": F32}, name="second")

    def broken(node, ins):
        raise RuntimeError("bug in a plugin")

    register_shape_fn("Oddity", broken)
    try:
        res = infer_shapes(graph)
    finally:
        unregister_custom_op("Oddity")
    assert res[odd.output(0)] == TensorInfo(F32, None)  # no T/dtype: float32 guessed
    assert res[odd.output(1)] == TensorInfo(F32, None)
    assert res[T("second")] == TensorInfo(F32, None)
    assert res.conflicts == []


# ---------------------------------------------------------------------------- ref leftovers
def _assign_graph() -> gs.Graph:
    graph, rw = _empty()
    c = rw.const(np.ones([3], np.float32), name="c")
    v = rw.const(np.full([3], 2.0, np.float32), name="v")
    a = rw.add_node("Assign", [c, v], {"T": F32, "use_locking": True, "validate_shape": True},
                    name="assign")
    rw.add_node("Neg", [a], {"T": F32}, name="neg")
    p = rw.placeholder("p", BOOL, [])
    rw.add_node("RefSwitch", [c, p], {"T": F32}, name="rswitch")
    rw.add_node("Identity", ["rswitch:1"], {"T": F32}, name="after")
    var = rw.add_node("VariableV2", [], {"dtype": F32, "shape": gs.Shape((3,)),
                                         "container": "", "shared_name": ""}, name="var")
    rw.add_node("Assign", [var, v], {"T": F32, "use_locking": True, "validate_shape": True},
                name="assign_var")
    rw.add_node("Relu", [c], {"T": F32}, name="relu")
    return graph


def _check_assign_result(res: shapes.ShapeMap) -> None:
    assert res[T("assign")] == TensorInfo(F32, None)
    assert res[T("neg")] == TensorInfo(F32, None)
    assert res[T("rswitch", 1)] == TensorInfo(F32, None)
    assert res[T("after")] == TensorInfo(F32, None)
    assert res[T("var")] == TensorInfo(F32, (3,))  # a real variable still imports
    assert res[T("assign_var")] == TensorInfo(F32, (3,))
    assert res[T("relu")] == TensorInfo(F32, (3,))
    assert res.conflicts == []


def test_assign_on_const_and_ref_switch_do_not_raise():
    graph = _assign_graph()
    res = infer_shapes(graph)
    _check_assign_result(res)
    assert res.opaque == {"assign": "ref", "rswitch": "ref"}
    assert shape_conflicts(graph) == []


def test_ref_leftovers_found_by_import_errors_alone(monkeypatch):
    """Without the up-front ref check, import errors name the nodes and the wave retries."""
    monkeypatch.setattr(shapes._Inference, "_premark", lambda self: None)
    res = infer_shapes(_assign_graph())
    _check_assign_result(res)
    assert res.opaque == {"assign": "ref", "rswitch": "ref"}


# ---------------------------------------------------------------------------- control flow v1
def test_switch_merge_control_flow_v1():
    with control_flow_v1():
        g = tf.Graph()
        with g.as_default():
            x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
            pred = tf.compat.v1.placeholder(tf.bool, [], name="pred")
            y = tf.compat.v1.cond(pred, lambda: x * 2.0, lambda: tf.nn.relu(x), name="cond")
            tf.identity(y, name="y")
    graph = gs.load(g, outputs=["y"])
    assert graph.op_counts()["Switch"] >= 1 and graph.op_counts()["Merge"] == 1
    res = infer_shapes(graph)
    merge = graph.nodes("Merge")[0]
    switch = graph.node(merge.data_inputs[0].node).data_inputs[0].node
    assert res[merge.output(0)] == TensorInfo(F32, (-1, 4))
    assert res[merge.output(1)] == TensorInfo(I32, ())  # value_index
    assert res[T("y")] == TensorInfo(F32, (-1, 4))
    assert res[T(switch, 0)].dtype == F32 and res[T(switch, 1)].dtype == F32
    assert res.conflicts == []


# ---------------------------------------------------------------------------- conflicts
def _dense_graph() -> gs.Graph:
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8], name="x")
        w = tf.constant(np.ones([8, 3], np.float32), name="w")
        tf.constant(np.ones([4, 3], np.float32), name="w4")
        h = tf.nn.relu(tf.matmul(x, w, name="mm"), name="h")
        tf.identity(h, name="out")
    return gs.load(g, outputs=["out"])


def test_shape_conflicts_empty_for_a_good_graph():
    graph = _dense_graph()
    assert shape_conflicts(graph) == []
    assert check_shapes(graph) == []


def test_shape_conflicts_finds_a_broken_matmul():
    graph = _dense_graph()
    rw = gs.Rewriter(graph, "test::break")
    rw.set_input("mm", 1, "w4")  # [N, 8] x [4, 3]
    problems = shape_conflicts(graph)
    assert len(problems) == 1
    assert problems[0].startswith("node 'mm': Dimensions must be equal, but are 8 and 4")
    assert "gsn" not in problems[0]  # shadow names are mapped back
    assert check_shapes(graph) == problems
    res = graph.infer()
    assert res[T("mm")] == TensorInfo(F32, None)  # the broken node: unknown, not a crash
    assert res[T("out")] == TensorInfo(F32, None)
    assert res.opaque == {"mm": "conflict"}


def test_shape_conflicts_dtype_mismatch_and_bad_port():
    graph = _dense_graph()
    rw = gs.Rewriter(graph, "test::break")
    k = rw.const(np.int32(3), name="k")
    rw.set_input("h", 0, k)
    rw.add_node("Neg", ["w:1"], {"T": F32}, name="bad_port")
    problems = shape_conflicts(graph)
    assert any(p.startswith("node 'h': ") and "int32" in p for p in problems)
    assert any(p.startswith("node 'bad_port': ") for p in problems)


# ---------------------------------------------------------------------------- speed
def test_three_thousand_nodes_infer_quickly():
    graph, rw = _empty()
    x = rw.placeholder("x", F32, [None, 4])
    for i in range(1000):
        c = rw.const(np.full([4], i, np.float32), name=f"c{i}")
        m = rw.add_node("Mul", [x, c], {"T": F32}, name=f"m{i}")
        rw.add_node("AddV2", [m, c], {"T": F32}, name=f"a{i}")
    infer_shapes(gs.Graph([], inputs=[], outputs=[]))  # TensorFlow warm
    start = time.perf_counter()
    res = infer_shapes(graph)
    elapsed = time.perf_counter() - start
    assert len(res) == 3001 and res[T("a999")] == TensorInfo(F32, (-1, 4))
    assert elapsed < 10  # about 0.4 s; the bound only catches a quadratic blow-up


# ---------------------------------------------------------------------------- incremental
def test_update_after_a_rewrite_matches_a_full_inference():
    graph, rw = _empty()
    x = rw.placeholder("x", F32, [None, 4])
    shape = rw.add_node("Shape", [x], {"T": F32, "out_type": gs.DType.int32}, name="shape")
    begin, end, one = (rw.const(np.array([v], np.int32)) for v in (0, 1, 1))
    batch = rw.add_node("StridedSlice", [shape, begin, end, one],
                        {"T": gs.DType.int32, "Index": gs.DType.int32, "shrink_axis_mask": 1},
                        name="batch")
    dims = rw.add_node("Pack", [batch, rw.const(np.int32(4))],
                       {"T": gs.DType.int32, "N": 2}, name="dims")
    rw.add_node("Fill", [dims, rw.const(np.float32(1))], {"T": F32, "index_type":
                gs.DType.int32}, name="ones")
    assert graph.infer()[T("ones")] == TensorInfo(F32, (-1, 4))
    # Pinning the batch changes only the Placeholder: Shape keeps its dtype and shape, but
    # its value changes, and so does the Fill that reads it through the shape arithmetic.
    rw.set_attr("x", "shape", gs.Shape([1, 4]))
    res = graph.infer()
    assert res.incremental
    assert res[T("ones")] == TensorInfo(F32, (1, 4))
    assert dict(res) == dict(infer_shapes(graph))


@pytest.mark.parametrize(("name", "options"), [
    ("sg2-tiny", {"stylegan::prune_resolution": {"resolution": 8}}),
    ("sg1-tiny", {"stylegan::prune_resolution": {"resolution": 8}}),
    ("sg2-tiny-cuda", {"stylegan::noise": {"mode": "input"}}),
])
def test_every_update_in_the_stylegan_preset_matches_a_full_inference(monkeypatch, name,
                                                                      options):
    from graphsurgery import zoo

    updates = []
    original = gs.Graph.infer

    def checked(self):
        result = original(self)
        if result.incremental:
            assert dict(result) == dict(infer_shapes(self))
            updates.append(len(result))
        return result

    monkeypatch.setattr(gs.Graph, "infer", checked)
    graph = zoo.load(name)
    pipeline = gs.Pipeline.preset("stylegan-to-tflite")
    for pass_id, opts in options.items():
        pipeline.set_options(pass_id, **opts)
    pipeline.run(graph)
    assert updates  # the preset did infer again after rewrites
