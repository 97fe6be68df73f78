"""Tests of core::fold_constants."""

from __future__ import annotations

import logging

import graphsurgery.passes.core.fold_constants  # noqa: F401  (registers the pass)
import numpy as np
import pytest
import tensorflow as tf  # noqa: E402

import graphsurgery as gs
from graphsurgery.ir.graph import Graph
from graphsurgery.testing import assert_runs_alone, check_pass, run_pass, run_tf
from graphsurgery.tfcompat import control_flow_v1

v1 = tf.compat.v1
F32 = gs.DType.float32
I32 = gs.DType.int32
PASS = "core::fold_constants"
RNG = np.random.default_rng(5)


def _rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------------- graphs
def _upconv_graph() -> gs.Graph:
    """StyleGAN-like layers on an NHWC input x [?, 4, 4, 3] (NHWC so TF runs it on CPU):

    * the fused up-convolution weight of StyleGAN v1: ``w * coef`` (equalised learning
      rate), transpose to [k, k, out, in], pad by one, AddN of four shifted StridedSlices,
      then ``Conv2DBackpropInput`` whose output shape is built from ``Shape(x)`` (batch
      unknown: that part cannot fold);
    * a bias ``reshape(b * lrmul, [1, 1, 1, -1])``;
    * a scale factor from ``Shape`` of a constant, cast to float;
    * ``x * noise_strength`` depends on the placeholder: stays.
    """
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None, 4, 4, 3], name="x")
        w = tf.constant(_rand(3, 3, 3, 5, scale=1.0), name="weight")
        coef = tf.constant(np.float32(1 / np.sqrt(27)), name="coef")
        we = tf.multiply(w, coef, name="w_scaled")
        wt = tf.transpose(we, [0, 1, 3, 2], name="w_t")
        wp = tf.pad(wt, [[1, 1], [1, 1], [0, 0], [0, 0]], name="w_pad")
        wf = tf.add_n([wp[1:, 1:], wp[:-1, 1:], wp[1:, :-1], wp[:-1, :-1]], name="w_fused")
        os_ = tf.stack([tf.shape(x)[0], 8, 8, 5], name="out_shape")
        y = tf.nn.conv2d_transpose(x[..., :3], wf, os_, [1, 2, 2, 1], "SAME", name="upconv")
        b = tf.constant(_rand(5), name="bias")
        bias = tf.reshape(b * np.float32(0.01), [1, 1, 1, -1], name="bias_r")
        k = tf.cast(tf.raw_ops.Shape(input=tf.constant(np.zeros((2, 3), np.float32)))[1],
                    tf.float32)
        noisy = tf.multiply(x, np.float32(0.5), name="noisy")
        tf.identity(y + tf.multiply(bias, k, name="bias_k"), name="out")
        tf.identity(noisy, name="out2")
    return gs.load(g, inputs=["x"], outputs=["out", "out2"])


X = _rand(2, 4, 4, 3)


def _build(fn) -> Graph:
    """A graph from a Rewriter callback ``fn(rw) -> outputs`` (inputs: its Placeholders)."""
    g = Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    outs = fn(rw)
    rw.set_graph_inputs([n.output() for n in g.nodes("Placeholder")])
    rw.set_outputs(outs)
    g.provenance.clear()
    return g


# ---------------------------------------------------------------------- folding
def test_folds_stylegan_weight_arithmetic_and_keeps_runtime_math():
    g = _upconv_graph()
    after = check_pass(
        g, PASS, feeds={"x": X},
        before={"AddN": 1, "Pad": 1, "Transpose": 1, "StridedSlice": 7, "Mul": 4,
                "Reshape": 1, "Shape": 2, "Cast": 1},
        # left: the batch size of x (Shape, StridedSlice, Pack) and the x-dependent math
        after={"AddN": 0, "Pad": 0, "Transpose": 0, "StridedSlice": 2, "Mul": 1,
               "Reshape": 0, "Shape": 1, "Cast": 0, "Pack": 1},
    )
    # folded single-output nodes keep their names; their inputs are gone
    assert after.node("w_fused").op == "Const"
    assert after.node("bias_k").op == "Const"
    for gone in ("weight", "coef", "w_scaled", "w_t", "w_pad", "bias", "bias_r"):
        assert gone not in after
    assert after.node("noisy").op == "Mul"
    assert after.node("upconv").input_node(1).name == "w_fused"
    # the fused weight equals a numpy reference computed independently
    w = g.const_value("weight") * g.const_value("coef")
    wp = np.pad(w.transpose(0, 1, 3, 2), [(1, 1), (1, 1), (0, 0), (0, 0)])
    ref = ((wp[1:, 1:] + wp[:-1, 1:]) + wp[1:, :-1]) + wp[:-1, :-1]
    np.testing.assert_array_equal(after.const_value("w_fused"), ref)
    assert after.const_value("w_fused").dtype == np.float32


def test_intermediate_values_are_not_written_as_consts():
    def fn(rw):
        x = rw.placeholder("x", F32, [2, 3])
        c = rw.const(np.arange(6, dtype=np.float32), name="c")
        r = rw.add_node("Reshape", [c, rw.const(np.array([3, 2], np.int32))], {"T": F32},
                        name="r")
        t = rw.add_node("Transpose", [r, rw.const(np.array([1, 0], np.int32))], {"T": F32},
                        name="t")
        m = rw.add_node("Mul", [t, rw.const(np.float32(3))], {"T": F32}, name="m")
        return [rw.add_node("AddV2", [x, m], {"T": F32}, name="y")]

    g = _build(fn)
    after = check_pass(g, PASS, feeds={"x": _rand(2, 3)},
                       before={"Reshape": 1, "Transpose": 1, "Mul": 1, "Const": 4},
                       after={"Reshape": 0, "Transpose": 0, "Mul": 0, "Const": 1})
    assert after.node("m").op == "Const" and "r" not in after and "t" not in after
    np.testing.assert_array_equal(after.const_value("m"), np.arange(6).reshape(3, 2).T * 3)


def test_shape_of_constants_and_of_fully_known_placeholders():
    def fn(rw):
        known = rw.placeholder("known", F32, [2, 3])
        batch = rw.placeholder("batch", F32, [None, 3])
        big = rw.const(np.ones((4, 5, 6), np.float32), name="big")
        s_const = rw.add_node("Shape", [big], {"T": F32, "out_type": I32}, name="s_const")
        s_known = rw.add_node("Shape", [known], {"T": F32, "out_type": I32}, name="s_known")
        s_batch = rw.add_node("Shape", [batch], {"T": F32, "out_type": I32}, name="s_batch")
        rank = rw.add_node("Rank", [batch], {"T": F32}, name="rank")
        size = rw.add_node("Size", [known], {"T": F32, "out_type": I32}, name="size")
        zeros = rw.add_node("ZerosLike", [known], {"T": F32}, name="zeros")
        return [s_const, s_known, s_batch, rank, size, rw.add_node(
            "AddV2", [zeros, known], {"T": F32}, name="y")]

    g = _build(fn)
    feeds = {"known": _rand(2, 3), "batch": _rand(5, 3)}
    after = check_pass(g, PASS, feeds=feeds, before={"Shape": 3, "Rank": 1, "Size": 1},
                       after={"Shape": 1, "Rank": 0, "Size": 0, "ZerosLike": 0})
    assert after.node("s_batch").op == "Shape"
    np.testing.assert_array_equal(after.const_value("s_const"), [4, 5, 6])
    np.testing.assert_array_equal(after.const_value("s_known"), [2, 3])
    assert after.const_value("rank") == 2 and after.const_value("size") == 6
    assert "big" not in after and "known" in after


def test_shape_ops_do_not_decode_their_input(monkeypatch):
    decoded = []
    original = Graph.const_value

    def spy(self, tensor):
        decoded.append(str(tensor))
        return original(self, tensor)

    def fn(rw):
        big = rw.const(np.ones((64, 64), np.float32), name="big")
        return [rw.add_node("Shape", [big], {"T": F32, "out_type": I32}, name="s")]

    g = _build(fn)
    monkeypatch.setattr(Graph, "const_value", spy)
    run_pass(g, PASS)
    assert not any(d.startswith("big") for d in decoded)
    assert g.node("s").op == "Const"


def test_multi_output_ops_get_one_const_per_used_output():
    def fn(rw):
        x = rw.placeholder("x", F32, [3])
        c = rw.const(_rand(4, 3), name="c")
        un = rw.add_node("Unpack", [c], {"T": F32, "num": 4, "axis": 0}, name="un")
        sp = rw.add_node("Split", [rw.const(np.int32(0)), c], {"T": F32, "num_split": 2},
                         name="sp")
        a = rw.add_node("AddV2", [x, un.output(1)], {"T": F32}, name="a")
        b = rw.add_node("Mul", [a, un.output(3)], {"T": F32}, name="b")
        s = rw.add_node("Sum", [sp.output(1), rw.const(np.int32(0))], {"T": F32, "Tidx": I32},
                        name="s")
        return [b, rw.add_node("AddV2", [b, s], {"T": F32}, name="y")]

    g = _build(fn)
    after = check_pass(g, PASS, feeds={"x": _rand(3)},
                       before={"Unpack": 1, "Split": 1, "Sum": 1},
                       after={"Unpack": 0, "Split": 0, "Sum": 0})
    assert {"un/out_1", "un/out_3"} <= set(after.names) and "un/out_0" not in after
    assert "sp/out_1" not in after  # only folded nodes used it
    np.testing.assert_array_equal(after.const_value("un/out_3"), g.const_value("c")[3])


def test_declared_output_keeps_its_name():
    def fn(rw):
        c = rw.const(np.arange(4, dtype=np.float32), name="c")
        return [rw.add_node("Neg", [c], {"T": F32}, name="out")]

    g = _build(fn)
    after = check_pass(g, PASS, feeds={}, before={"Neg": 1}, after={"Neg": 0, "Const": 1})
    assert after.outputs == [gs.TensorRef("out")]
    np.testing.assert_array_equal(after.const_value("out"), -np.arange(4))


def test_nothing_to_fold_reports_no_change():
    def fn(rw):
        x = rw.placeholder("x", F32, [2])
        return [rw.add_node("Mul", [x, rw.const(np.float32(2))], {"T": F32}, name="y")]

    check_pass(_build(fn), PASS, feeds={"x": _rand(2)}, before={"Mul": 1}, after={"Mul": 1},
               expect_change=False)


def test_second_run_changes_nothing():
    g = _upconv_graph()
    run_pass(g, PASS)
    check_pass(g, PASS, feeds={"x": X}, expect_change=False)


# ---------------------------------------------------------------------- options
def _tiles() -> Graph:
    def fn(rw):
        x = rw.placeholder("x", F32, [1])
        c = rw.const(_rand(1, 4), name="c")
        small = rw.add_node("Tile", [c, rw.const(np.array([2, 1], np.int32))],
                            {"T": F32, "Tmultiples": I32}, name="small")
        big = rw.add_node("Tile", [c, rw.const(np.array([512, 1], np.int32))],
                          {"T": F32, "Tmultiples": I32}, name="big")
        r = rw.add_node("Reshape", [c, rw.const(np.array([-1], np.int32))],
                        {"T": F32, "Tshape": I32}, name="r")
        s1 = rw.add_node("Mul", [small, x], {"T": F32}, name="s1")
        s2 = rw.add_node("Mul", [big, x], {"T": F32}, name="s2")
        return [s1, s2, rw.add_node("Mul", [r, x], {"T": F32}, name="s3")]

    return _build(fn)


def test_max_bytes_caps_folded_outputs():
    g = _tiles()  # small: 2x4 floats = 32 bytes; big: 512x4 floats = 8 KiB
    after = check_pass(g, PASS, feeds={"x": _rand(1)}, options={"max_bytes": 1024},
                       before={"Tile": 2}, after={"Tile": 1, "Reshape": 0})
    assert after.node("big").op == "Tile" and after.node("small").op == "Const"
    check_pass(g, PASS, feeds={"x": _rand(1)}, options={"max_bytes": 8192},
               after={"Tile": 0})


def test_ops_option_restricts_the_allow_list():
    after = check_pass(_tiles(), PASS, feeds={"x": _rand(1)}, options={"ops": "Reshape"},
                       before={"Tile": 2, "Reshape": 1}, after={"Tile": 2, "Reshape": 0})
    assert after.node("r").op == "Const"


def test_unknown_op_in_ops_option_is_a_usage_error():
    with pytest.raises(gs.UsageError, match="no kernel for WriteFile"):
        gs.get_pass(PASS)(ops="Mul,WriteFile")
    with pytest.raises(gs.UsageError, match="max_bytes"):
        gs.get_pass(PASS)(max_bytes=-1)


def _bad_reshape() -> Graph:
    def fn(rw):
        x = rw.placeholder("x", F32, [6])
        c = rw.const(np.arange(6, dtype=np.float32), name="c")
        bad = rw.add_node("Reshape", [c, rw.const(np.array([4, -1], np.int32))],
                          {"T": F32, "Tshape": I32}, name="bad")
        ok = rw.add_node("Neg", [c], {"T": F32}, name="ok")
        return [bad, rw.add_node("Mul", [ok, x], {"T": F32}, name="y")]

    return _build(fn)


def test_kernel_errors_name_the_node():
    with pytest.raises(gs.PassFailure, match=r"Reshape node 'bad'.*6 values"):
        run_pass(_bad_reshape(), PASS)


def test_ignore_errors_leaves_the_node_and_logs(caplog):
    g = _bad_reshape()
    with caplog.at_level(logging.WARNING, logger="graphsurgery"):
        record = run_pass(g, PASS, ignore_errors=True)
    assert record.changed
    assert g.node("bad").op == "Reshape" and g.node("ok").op == "Const"
    assert g.node("bad").input_node(0).name == "c"
    assert any("'bad'" in r.getMessage() for r in caplog.records)


def test_errors_of_nodes_tensorflow_never_runs_do_not_fail_the_pass():
    """A failing constant computation that no output needs, or that sits in a cond branch
    whose predicate is only known at run time, is never run by TensorFlow: the graph is
    valid and the pass must not fail on it (both failed the generic pipeline)."""
    with control_flow_v1():
        g = tf.Graph()
        with g.as_default():
            x = v1.placeholder(tf.int32, [2], name="x")
            p = v1.placeholder(tf.bool, [], name="p")
            tf.math.floormod(tf.constant(3), tf.constant(0), name="unused")
            y = v1.cond(p, lambda: x + 1, lambda: x + tf.math.floordiv(5, tf.constant(0)))
            tf.identity(y, name="y")
    graph = gs.load(g, inputs=["x", "p"], outputs=["y"])
    feeds = {"x": np.array([1, 2], np.int32), "p": np.array(True)}
    after = check_pass(graph, PASS, feeds=feeds, expect_change=False)
    assert after.node("unused").op == "FloorMod"
    with pytest.raises(gs.PassFailure, match="'bad'"):  # one every run needs still fails
        run_pass(_bad_reshape(), PASS)


# ---------------------------------------------------------------------- what must not run
def _io_graph(path) -> Graph:
    """WriteFile/ReadFile/PrintV2 on constant inputs next to foldable arithmetic.

    ``kept`` = Identity(Const) with a control dependency on the WriteFile, so folding it
    must keep ``^write``.
    """

    def fn(rw):
        x = rw.placeholder("x", F32, [2])
        fname = rw.const(np.array(str(path).encode(), dtype=object), name="fname")
        text = rw.const(np.array(b"side effect", dtype=object), name="text")
        write = rw.add_node("WriteFile", [fname, text], name="write")
        read = rw.add_node("ReadFile", [fname], name="read")
        rw.add_node("PrintV2", [text], {"output_stream": "stderr", "end": "\n"},
                    name="print", control_inputs=[read])
        c = rw.const(np.array([1.5, -2.0], np.float32), name="c")
        m = rw.add_node("Mul", [c, rw.const(np.float32(4))], {"T": F32}, name="m")
        kept = rw.add_node("Identity", [c], {"T": F32}, name="kept", control_inputs=[write])
        return [rw.add_node("AddV2", [x, m], {"T": F32}, name="y"), kept]

    return _build(fn)


def test_io_and_stateful_ops_are_never_executed(tmp_path):
    target = tmp_path / "written_by_the_graph.txt"
    g = _io_graph(target)
    g.outputs.append(gs.TensorRef("read"))
    g.outputs.append(gs.TensorRef("print"))
    record = run_pass(g, PASS)
    assert record.changed
    assert not target.exists()
    for name, op in (("write", "WriteFile"), ("read", "ReadFile"), ("print", "PrintV2")):
        assert g.node(name).op == op
    assert g.node("m").op == "Const" and g.node("kept").op == "Const"
    assert g.node("kept").control_inputs == ["write"]
    np.testing.assert_array_equal(g.const_value("m"), [6.0, -8.0])


def test_folding_around_io_ops_keeps_their_effects(tmp_path):
    target = tmp_path / "out.txt"
    after = check_pass(_io_graph(target), PASS, feeds={"x": _rand(2)},
                       before={"Mul": 1, "Identity": 1, "WriteFile": 1},
                       after={"Mul": 0, "Identity": 0, "WriteFile": 1, "ReadFile": 1,
                              "PrintV2": 1})
    # check_pass ran both graphs: fetching `kept` ran the WriteFile through ^write
    assert target.read_bytes() == b"side effect"
    assert after.node("kept").control_inputs == ["write"]


def test_random_ops_are_not_folded():
    def fn(rw):
        shape = rw.const(np.array([2, 2], np.int32), name="shape")
        noise = rw.add_node("RandomStandardNormal", [shape],
                            {"T": I32, "dtype": F32, "seed": 1, "seed2": 2}, name="noise")
        return [rw.add_node("Mul", [noise, rw.const(np.float32(2))], {"T": F32}, name="y")]

    g = _build(fn)
    check_pass(g, PASS, before={"RandomStandardNormal": 1},
               after={"RandomStandardNormal": 1, "Mul": 1}, expect_change=False)


def test_fed_consts_are_not_constants():
    def fn(rw):
        c = rw.const(np.arange(3, dtype=np.float32), name="c")
        return [rw.add_node("Neg", [c], {"T": F32}, name="y")]

    g = _build(fn)
    g.inputs = [gs.TensorRef("c")]
    check_pass(g, PASS, feeds={"c": _rand(3)}, after={"Neg": 1}, expect_change=False)


# ---------------------------------------------------------------------- control dependencies
def _cond_graph():
    p = v1.placeholder(tf.bool, [], name="p")
    x = v1.placeholder(tf.float32, [2], name="x")
    y = v1.cond(p, lambda: x + tf.constant([1.0, 2.0]) * 3.0,
                lambda: x - tf.constant([4.0, 5.0]) * 2.0)
    tf.identity(y, name="out")


def test_consts_under_a_cond_pivot_keep_their_control_dependency():
    """Consts inside a tf.cond branch carry ^switch_t; the folded Const must keep it, or
    the branch output would be live even when the branch is not taken."""
    g = tf.Graph()
    with control_flow_v1(), g.as_default():  # v1 Switch/Merge, as in TF1 graphs
        _cond_graph()
    graph = gs.load(g, inputs=["p", "x"], outputs=["out"])
    muls = [n.name for n in graph.nodes("Mul")]
    for pv in (True, False):
        after = check_pass(graph, PASS, feeds={"p": pv, "x": _rand(2)},
                           before={"Mul": 2}, after={"Mul": 0, "Switch": 3, "Merge": 1})
    for name in muls:
        assert after.node(name).op == "Const"
        (dep,) = after.node(name).control_inputs
        assert after.node(dep).op == "Identity"  # the switch_t / switch_f pivot


def test_control_users_of_erased_folded_nodes_are_rewired():
    def fn(rw):
        x = rw.placeholder("x", F32, [2])
        guard = rw.add_node("NoOp", [], name="guard")
        c = rw.const(np.ones(2, np.float32), name="c", )
        a = rw.add_node("Neg", [c], {"T": F32}, name="a", control_inputs=[guard])
        b = rw.add_node("Neg", [a], {"T": F32}, name="b")  # folded and materialised
        # `user` waits for `a`, which disappears: it must then wait for `guard`
        user = rw.add_node("Relu", [x], {"T": F32}, name="user", control_inputs=[a])
        return [rw.add_node("AddV2", [user, b], {"T": F32}, name="y")]

    after = check_pass(_build(fn), PASS, feeds={"x": _rand(2)}, before={"Neg": 2},
                       after={"Neg": 0})
    assert "a" not in after
    assert after.node("user").control_inputs == ["guard"]
    assert after.node("b").control_inputs == ["guard"]


def test_colocation_with_an_erased_const_is_dropped():
    def fn(rw):
        x = rw.placeholder("x", F32, [2])
        w = rw.const(np.ones(2, np.float32), name="w")
        r = rw.add_node("Identity", [w], {"T": F32, "_class": ["loc:@w"]}, name="w/read")
        m = rw.add_node("Mul", [r, rw.const(np.float32(3))], {"T": F32}, name="m")
        return [rw.add_node("Mul", [x, m], {"T": F32, "_class": ["loc:@w"]}, name="y")]

    after = check_pass(_build(fn), PASS, feeds={"x": _rand(2)},
                       before={"Identity": 1, "Mul": 2}, after={"Identity": 0, "Mul": 1})
    assert "w" not in after and after.node("y").attr("_class") is None


def test_dead_unrelated_nodes_are_left_for_dce():
    def fn(rw):
        x = rw.placeholder("x", F32, [2])
        rw.const(np.ones(2, np.float32), name="lonely")
        rw.add_node("Relu", [x], {"T": F32}, name="unused")
        return [rw.add_node("Neg", [x], {"T": F32}, name="y")]

    after = check_pass(_build(fn), PASS, feeds={"x": _rand(2)}, expect_change=False)
    assert {"lonely", "unused"} <= set(after.names)


def test_result_runs_in_tensorflow_with_the_same_values_as_numpy_reference():
    g = _upconv_graph()
    before = run_tf(g, {"x": X})
    run_pass(g, PASS)
    after = run_tf(g, {"x": X})
    for a, b in zip(before, after):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_truncation_and_mapping_constants_fold():
    """StyleGAN's truncation coefficients (Select on layer_idx < cutoff) and a mapping
    layer's run-time scaled weight fold; the latent-dependent math stays."""
    g = tf.Graph()
    with g.as_default():
        z = v1.placeholder(tf.float32, [None, 8], name="z")
        w = tf.constant(_rand(8, 8, scale=100.0), name="w")
        x = tf.matmul(z, w * np.float32(0.01 / np.sqrt(8)), name="dense")
        d = tf.tile(x[:, np.newaxis], [1, 4, 1], name="broadcast")
        layer_idx = np.arange(4)[np.newaxis, :, np.newaxis]
        ones = tf.ones(layer_idx.shape, dtype=tf.float32)
        coefs = tf.where(layer_idx < 2, 0.7 * ones, ones, name="coefs")
        avg = tf.constant(_rand(8), name="dlatent_avg")
        tf.identity(avg + (d - avg) * coefs, name="out")
    graph = gs.load(g, inputs=["z"], outputs=["out"])
    after = check_pass(graph, PASS, feeds={"z": _rand(3, 8)},
                       before={"SelectV2": 1, "Mul": 3, "MatMul": 1},
                       after={"SelectV2": 0, "Mul": 1, "MatMul": 1, "Tile": 1})
    assert after.node("coefs").op == "Const"
    np.testing.assert_allclose(after.const_value("coefs").ravel(), [0.7, 0.7, 1, 1])


def test_graphs_with_v1_while_loops_are_ordered_despite_back_edges():
    g = tf.Graph()
    with control_flow_v1(), g.as_default():
        x = v1.placeholder(tf.float32, [2], name="x")
        k = tf.multiply(tf.constant([1.0, 2.0]), 3.0, name="k")
        _, y = v1.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a + k), [0, x])
        tf.identity(y, name="out")
    graph = gs.load(g, inputs=["x"], outputs=["out"])
    assert graph.op_counts()["NextIteration"] == 2
    after = check_pass(graph, PASS, feeds={"x": _rand(2)}, after={"NextIteration": 2})
    assert after.node("k").op == "Const"


def test_folding_does_not_import_tensorflow(tmp_path):
    """The load/fold/save path stays TensorFlow-free (TensorFlow costs ~600 MB of RSS)."""
    import textwrap

    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import graphsurgery as gs
        import graphsurgery.passes.core.fold_constants
        from graphsurgery.pipeline import Pipeline
        g = gs.Graph([], inputs=[], outputs=[])
        rw = gs.Rewriter(g, "build")
        x = rw.placeholder("x", gs.DType.float32, [2])
        c = rw.const(np.ones((2, 2), np.float32), name="c")
        t = rw.add_node("Transpose", [c, rw.const(np.array([1, 0], np.int32))],
                        {{"T": gs.DType.float32}}, name="t")
        s = rw.add_node("Sum", [t, rw.const(np.int32(0))], {{"T": gs.DType.float32}}, name="s")
        y = rw.add_node("Mul", [x, s], {{"T": gs.DType.float32}}, name="y")
        rw.set_graph_inputs([x]); rw.set_outputs([y])
        Pipeline.parse("core::fold_constants").run(g)
        gs.save(g, {str(tmp_path / "out.pb")!r})
        assert g.node("s").op == "Const", g.node("s")
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
    """)
    assert_runs_alone(script, timeout=120)


@pytest.mark.parametrize("name", ["sg1-tiny-fused", "sg2-tiny"])
def test_stylegan_zoo_constants_fold_bitwise_equal_to_tensorflow(name):
    """Every Const the pass writes for a StyleGAN graph (after Switch/Merge folding) equals,
    bit for bit, what TensorFlow computes for that tensor in the unfolded graph. (The
    graphs are NCHW, which TensorFlow cannot run on CPU, but their constant parts run.)"""
    from graphsurgery import zoo
    from graphsurgery.pipeline import Pipeline

    model = zoo.build(name)
    g = gs.load(model.graph_def, inputs=model.inputs, outputs=model.outputs)
    Pipeline.parse("core::strip_training,core::fold_switch_merge,core::dce").run(g)
    ref = g.copy()
    record = run_pass(g, PASS)
    written = sorted(n for n, kind in record.changes.items()
                     if kind in ("added", "changed") and g.get(n) is not None
                     and g.node(n).op == "Const")
    assert len(written) > 20
    assert g.op_counts()["AddN"] == 0 and g.op_counts()["Select"] == 0
    fetch = []
    for n in written:
        base, sep, port = n.rpartition("/out_")
        fetch.append(f"{base}:{port}" if sep and base in ref and n not in ref else f"{n}:0")
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        tf.graph_util.import_graph_def(ref.to_tf_graph_def(), name="")
    with v1.Session(graph=tf_graph) as sess:
        values = sess.run(fetch)
    for n, v in zip(written, values):
        ours = g.const_value(n)
        assert ours.dtype == v.dtype and ours.shape == v.shape, n
        np.testing.assert_array_equal(ours, v, err_msg=n)


def test_ops_option_in_pipeline_text():
    from graphsurgery.pipeline import Pipeline

    g = _tiles()
    Pipeline.parse("core::fold_constants(ops=Reshape+Mul)").run(g)
    assert g.node("r").op == "Const" and g.node("small").op == "Tile"


def test_broadcasts_that_would_grow_the_model_stay_unfolded():
    """noise[1,1,H,W] * weight[1,C,1,1] (StyleGAN v1) stays a run-time Mul."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", gs.DType.float32, [1, 64, 32, 32])
    noise = rw.const(np.ones((1, 1, 32, 32), np.float32), name="noise")
    weight = rw.const(np.full((1, 64, 1, 1), 0.5, np.float32), name="weight")
    prod = rw.add_node("Mul", [noise, weight], {"T": gs.DType.float32}, name="noise_w")
    small = rw.add_node("Mul", [weight, weight], {"T": gs.DType.float32}, name="small")
    y = rw.add_node("AddV2", [x, prod], {"T": gs.DType.float32}, name="y0")
    y = rw.add_node("Mul", [y, small], {"T": gs.DType.float32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 64, 32, 32)).astype(np.float32)}
    after = check_pass(g, "core::fold_constants", feeds=feeds, before={"Mul": 3},
                       after={"Mul": 2})
    assert after.node("noise_w").op == "Mul" and after.node("small").op == "Const"
    grown = check_pass(g, "core::fold_constants", feeds=feeds, options={"max_growth": 0.0},
                       after={"Mul": 1})
    assert grown.node("noise_w").op == "Const"


# ---------------------------------------------------------------------- scalars (issue 13)
def test_unstacked_shape_idiom_folds_to_a_vector():
    """``b, h, w = tf.unstack(tf.shape(x)); tf.reshape(x, tf.stack([b * h, w]))`` folded to a
    [2, 1] shape constant (Unpack's scalars became shape (1,)): TensorFlow refused it."""
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [2, 3, 4], name="x")
        b, h, w = tf.unstack(tf.raw_ops.Shape(input=x))
        tf.identity(tf.reshape(x, tf.stack([b * h, w])), name="y")
    graph = gs.load(g, inputs=["x"], outputs=["y"])
    after = check_pass(graph, PASS, feeds={"x": _rand(2, 3, 4)},
                       before={"Unpack": 1, "Pack": 1}, after={"Unpack": 0, "Pack": 0})
    shape = after.node("y").input_node(0).input_node(1)
    assert shape.op == "Const" and after.const_value(shape.name).tolist() == [6, 4]


def test_transpose_of_a_scalar_folds_to_a_scalar():
    g = tf.Graph()
    with g.as_default():
        tf.identity(tf.transpose(tf.constant(3.0), []), name="y")
    after = check_pass(gs.load(g, outputs=["y"]), PASS, feeds={}, before={"Transpose": 1},
                       after={"Transpose": 0})
    assert after.node("y").op == "Const" and after.const_value("y").shape == ()


def test_a_folded_boolean_reduction_passes_verification():
    """Verification read ``Any``'s dtype from its ``Tidx`` attribute (int64), so folding it
    to its bool value failed with "output changed dtype from int64 to bool"."""
    g = tf.Graph()
    with g.as_default():
        tf.raw_ops.Any(input=tf.constant([[True, False]]), axis=tf.constant([1], tf.int64),
                       keep_dims=True, name="any")
    after = check_pass(gs.load(g, outputs=["any"]), PASS, feeds={}, after={"Any": 0})
    assert after.const_value("any").dtype == np.bool_


# ---------------------------------------------------------------------- resources (issue 13)
def _broadcast_const(rw, name, shape, value=1.0):
    """A Const of ``shape`` stored as one ``float_val`` (TensorFlow repeats it): a few bytes
    in the file, ``4 * prod(shape)`` bytes once decoded."""
    from graphsurgery.ir import proto
    from graphsurgery.ir.attrs import make_shape

    nd = proto.NodeDef(name=name, op="Const")
    nd.attr["dtype"].type = int(F32)
    tp = nd.attr["value"].tensor
    tp.dtype = int(F32)
    tp.tensor_shape.CopyFrom(make_shape(shape))
    tp.float_val.append(value)
    return rw.replace_node_def(nd)


def _peak_bytes(fn) -> int:
    """Peak bytes Python and numpy allocate while ``fn`` runs (after a warm-up run of the
    pass, so that one-time imports and tables do not count)."""
    import tracemalloc

    run_pass(_build(lambda rw: [rw.add_node("Neg", [rw.const(np.float32(1))], {"T": F32})]),
             PASS)
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_folding_never_materialises_beyond_max_bytes():
    """A 16 MB broadcast-value Const, Fill, BroadcastTo, Tile and a Concat growing past
    max_bytes (1 MB) are checked before anything is computed: the Const was decoded in
    full before its consumer's size was looked at, the Concat computed then thrown away."""
    def fn(rw):
        x = rw.placeholder("x", F32, [])
        big = _broadcast_const(rw, "big", [2048, 2048])
        neg = rw.add_node("Neg", [big], {"T": F32}, name="neg")
        one = rw.const(np.float32(1), name="one")
        fill = rw.add_node("Fill", [rw.const(np.array([2048, 2048], np.int32)), one],
                           {"T": F32, "index_type": I32}, name="fill")
        bcast = rw.add_node("BroadcastTo", [one, rw.const(np.array([2048, 2048], np.int32))],
                            {"T": F32, "Tidx": I32}, name="bcast")
        tile = rw.add_node("Tile", [rw.const(np.ones((1, 2048), np.float32)),
                                    rw.const(np.array([2048, 1], np.int32))],
                           {"T": F32, "Tmultiples": I32}, name="tile")
        part = rw.const(np.ones((256, 1024), np.float32), name="part")  # 1 MB
        cat = rw.add_node("ConcatV2", [part] * 8 + [rw.const(np.int32(0))],
                          {"T": F32, "N": 8, "Tidx": I32}, name="cat")
        return [rw.add_node("AddV2", [t, x], {"T": F32}, name=f"y_{t.name}")
                for t in (neg, fill, bcast, tile, cat)]

    g = _build(fn)
    record = None

    def fold():
        nonlocal record
        record = run_pass(g, PASS, max_bytes=1 << 20, max_growth=0.0)

    peak = _peak_bytes(fold)
    assert peak < 3 << 20, f"peak {peak / 2**20:.1f} MiB"
    assert not record.changed
    assert {g.node(n).op for n in ("neg", "fill", "bcast", "tile", "cat")} == {
        "Neg", "Fill", "BroadcastTo", "Tile", "ConcatV2"}


def test_a_constant_used_many_times_by_one_node_is_decoded_once(monkeypatch):
    """Pack of the same 2 MB weight eight times read its bytes eight times (a 48 MB
    constant in a Concat of 128 inputs took 6 GB)."""
    decoded = []
    frombuffer = np.frombuffer

    def spy(buffer, *args, **kwargs):
        if len(buffer) >= 2 << 20:
            decoded.append(len(buffer))
        return frombuffer(buffer, *args, **kwargs)

    def fn(rw):
        w = rw.const(np.ones((512, 1024), np.float32), name="w")  # 2 MB
        return [rw.add_node("Pack", [w] * 8, {"T": F32, "N": 8, "axis": 0}, name="packed")]

    g = _build(fn)
    monkeypatch.setattr(np, "frombuffer", spy)
    run_pass(g, PASS)
    assert g.node("packed").op == "Const" and g.const_shape("packed") == (8, 512, 1024)
    assert len(decoded) == 1, decoded
