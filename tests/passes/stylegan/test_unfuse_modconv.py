"""stylegan::unfuse_modconv: fused modulated convs -> x * s, conv(const W), * d.

Op counts before and after, every convolution filter constant, no rank-5 tensor left, and
numerics against the reference runner on the original (unprepared) zoo graph."""

import functools

import graphsurgery.passes.stylegan.unfuse_modconv  # noqa: F401
import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery import zoo
from graphsurgery.testing import assert_equivalent, random_feeds, run_pass

from .prep import PREP, prepared

PASS = "stylegan::unfuse_modconv"
F32 = gs.DType.float32
I32 = gs.DType.int32
CONVS = ("Conv2D", "Conv2DBackpropInput")


def runtime_filter_convs(g):
    return [c.name for c in g.nodes(*CONVS) if not g.is_const(c.data_inputs[1])]


def rank5(g):
    return [t for t, info in g.infer().items() if info.shape is not None and len(info.shape) == 5]


def counts(g, *ops):
    c = g.op_counts()
    return {op: c.get(op, 0) for op in ops}


# name: (convs with a run-time filter, demodulated layers, Transpose before -> after)
ZOO = {
    "sg2-tiny": (8, 5, 18, 8),
    "sg2-tiny-orig": (6, 5, 12, 4),
    "sg2-tiny-resnet": (6, 5, 16, 8),
    "sg2-tiny-nonfused": (0, 5, 8, 8),
    "sg2-tiny-cuda": (8, 5, 10, 0),
    "tf2-tiny-savedmodel": (3, 3, 9, 1),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_constant_filters_and_numerics(name):
    original, g = prepared(name)
    k, demods, tr_before, tr_after = ZOO[name]
    before = g.copy()
    assert len(runtime_filter_convs(g)) == k
    assert rank5(g)  # the 5-D modulated weights
    c0 = counts(g, "Conv2D", "Conv2DBackpropInput", "Sum", "Transpose", "MatMul", "Rsqrt")
    assert c0["Sum"] == demods and c0["Transpose"] == tr_before

    record = run_pass(g, PASS)
    assert record.changed

    assert runtime_filter_convs(g) == []
    assert all(g.is_const(c.data_inputs[1]) for c in g.nodes(*CONVS))
    assert rank5(g) == []
    c1 = counts(g, "Conv2D", "Conv2DBackpropInput", "Sum", "Transpose", "MatMul", "Rsqrt")
    assert c1 == {**c0, "Sum": 0, "Transpose": tr_after, "MatMul": c0["MatMul"] + demods}
    assert len(g) < len(before)
    (cmp,) = assert_equivalent(original, g, max_rel=1e-4)
    assert cmp.psnr > 100, cmp
    assert not run_pass(g, PASS).changed  # idempotent


def _producer(g, t):
    return g.node(t.node)


def test_emitted_layer_structure():
    """Conv1 at 8x8: Mul(x, Reshape(s)) -> Conv2D(const) -> Mul(Reshape(Rsqrt(AddV2(
    MatMul(Square(s), const W2), eps))))."""
    original, g = prepared("sg2-tiny")
    run_pass(g, PASS)
    convs = [c for c in g.nodes("Conv2D") if c.name.startswith("G_synthesis/8x8/Conv1/")]
    (conv,) = convs
    w = g.const_value(conv.data_inputs[1])
    assert w.shape == (3, 3, 16, 16)
    assert conv.attr("data_format") in ("NCHW", b"NCHW")
    mod = _producer(g, conv.data_inputs[0])
    assert mod.op == "Mul"
    s4 = _producer(g, mod.data_inputs[1])
    assert s4.op == "Reshape" and list(g.const_value(s4.data_inputs[1])) == [1, 16, 1, 1]
    s = s4.data_inputs[0]
    assert g.shape(s) == (1, 16)
    ((demod, _),) = g.consumers(conv.output())
    assert demod.op == "Mul"
    d4 = _producer(g, demod.data_inputs[1])
    rsqrt = _producer(g, d4.data_inputs[0])
    add = _producer(g, rsqrt.data_inputs[0])
    mm = _producer(g, add.data_inputs[0])
    sq = _producer(g, mm.data_inputs[0])
    assert [d4.op, rsqrt.op, add.op, mm.op, sq.op] == [
        "Reshape", "Rsqrt", "AddV2", "MatMul", "Square"]
    assert sq.data_inputs[0] == s
    w2 = g.const_value(mm.data_inputs[1])
    np.testing.assert_allclose(w2, np.sum(w.astype(np.float64) ** 2, axis=(0, 1)), rtol=1e-6)
    assert float(g.const_value(add.data_inputs[1])) == pytest.approx(1e-8)


def test_up_conv_output_feeding_fir_is_unchanged():
    """The tensor that feeds the FIR step of the up-sampling layer is the same as before."""
    _, g = prepared("sg2-tiny")
    before = g.copy()
    (up,) = [c for c in g.nodes("Conv2DBackpropInput") if "/8x8/Conv0_up/" in c.name]
    fir_in = [n.output().input_string for n, _ in g.consumers(up.output())]
    run_pass(g, PASS)
    ups = [c for c in g.nodes("Conv2DBackpropInput") if "/8x8/Conv0_up/" in c.name]
    assert len(ups) == 1 and g.const_shape(ups[0].data_inputs[1].node) == (3, 3, 16, 16)
    assert_equivalent(before, g, fetches=(fir_in, fir_in), max_rel=1e-5)


@functools.cache
def _prepared_batch2(name):
    g = zoo.load(name)
    for pass_id in PREP:
        run_pass(g, pass_id, **({"size": 2} if pass_id == "core::set_batch" else {}))
    return g


@pytest.mark.parametrize("name", ["sg2-tiny", "tf2-tiny-savedmodel"])
def test_batch2(name):
    g = _prepared_batch2(name).copy()
    before = g.copy()
    assert runtime_filter_convs(g)
    run_pass(g, PASS)
    assert runtime_filter_convs(g) == [] and rank5(g) == []
    assert counts(g, "Sum")["Sum"] == 0
    feeds = random_feeds(before, seed=1, batch=2)
    assert feeds[before.inputs[0].node].shape[0] == 2
    (cmp,) = assert_equivalent(before, g, feeds=feeds, max_rel=1e-4)
    assert cmp.psnr > 100


def test_batch2_fir_after_the_up_conv_reads_the_per_sample_tensor():
    """Batch 2, with the FIR filter already lowered (Pad, depthwise conv on the batch-folded
    [1, 2*C, H, W] tensor, Reshape back to [2, C, H, W]): the pass rebuilds the FIR on the
    per-sample conv output, so no Reshape folds the batch into the channels any more."""
    g = zoo.load("sg2-tiny")
    for pass_id in (*PREP, "stylegan::raise_upfirdn2d_ref", "stylegan::lower_upfirdn2d"):
        run_pass(g, pass_id, **({"size": 2} if pass_id == "core::set_batch" else {}))
    before = g.copy()

    def folded(graph):  # 4-D tensors with a batch of 1 (the batch-folded ones)
        return sorted(t.node for t, info in graph.infer().items()
                      if info.shape is not None and len(info.shape) == 4 and info.shape[0] == 1
                      and graph.node(t.node).op != "Const")

    fir = [d for d in g.nodes("DepthwiseConv2dNative") if "Conv0_up" in d.name]
    widths = [g.shape(d.data_inputs[0])[1] for d in fir]
    assert len(fir) == 2 and all(g.shape(d.data_inputs[0])[0] == 1 for d in fir)
    assert folded(g)
    run_pass(g, PASS)
    fir = [d for d in g.nodes("DepthwiseConv2dNative") if "Conv0_up" in d.name]
    assert [g.shape(d.data_inputs[0])[:2] for d in fir] == [(2, c // 2) for c in widths]
    assert [g.const_shape(d.data_inputs[1].node)[2] for d in fir] == [c // 2 for c in widths]
    assert folded(g) == []
    feeds = random_feeds(before, seed=1, batch=2)
    (cmp,) = assert_equivalent(before, g, feeds=feeds, max_rel=1e-4)
    assert cmp.psnr > 100


def test_single_channel_output():
    """A grayscale generator (num_channels=1): ToRGB's modulated 1x1 conv has one output
    channel, so its weight product is [N, 1, 1, Cin, 1]; it is unfused like the others."""
    from dataclasses import replace

    from graphsurgery.ir.io import load
    from graphsurgery.zoo import stylegan2

    model = stylegan2.build_gs(replace(stylegan2.TINY, num_channels=1))
    original = load(model.graph_def, inputs=model.inputs, outputs=model.outputs)
    g = original.copy()
    for pass_id in PREP:
        run_pass(g, pass_id)
    torgb = [c.name for c in g.nodes("Conv2D") if "/ToRGB/" in c.name]
    assert len(torgb) == 3 and set(runtime_filter_convs(g)) >= set(torgb)
    run_pass(g, PASS)
    assert runtime_filter_convs(g) == [] and rank5(g) == []
    (cmp,) = assert_equivalent(original, g, max_rel=1e-4)
    assert cmp.psnr > 100


def test_up_conv_filter_read_off_the_chain_equals_the_traced_one(monkeypatch):
    """Batch 1 up-convs: the filter read off the chain's permutations and flips (the fast
    path) is element for element the one found by tracing every element index."""
    from graphsurgery.passes.stylegan import _modconv as mc

    _, g = prepared("sg2-tiny")
    infos = g.infer()
    ups = list(g.nodes("Conv2DBackpropInput"))
    assert len(ups) == 2
    for conv in ups:
        m = mc.match_modconv(g, infos, conv)
        assert m is not None
        root, chain = mc.views_back(g, infos, conv.data_inputs[1])[-1]
        moves = mc.axis_map(g, infos, chain)
        assert moves == [(1, True), (2, True), (4, False), (3, False)]  # w[::-1, ::-1], Cin<->Cout
        shape = mc.shape_of(g, infos, conv.data_inputs[1])
        traced = mc._traced_filter(g, chain, m.product, shape, m.x_in_shape[1], transposed=True)
        assert traced is not None and np.array_equal(m.wc, traced)
        # a chain that also reversed a channel axis is not read off (it is not grouped)
        flipped = [(a, not rev) if a == 4 else (a, rev) for a, rev in moves]
        monkeypatch.setattr(mc, "axis_map", lambda *args, moves=flipped: moves)
        assert mc._transposed_filter(g, infos, chain, m.product, shape) is None
        monkeypatch.undo()


# ------------------------------------------------------------------ hand-built graphs
def _modconv_graph(n, cin, cout, k, perm=(1, 2, 3, 0, 4), demod=True):
    """Fused modconv (Conv2D, NCHW) built with a Rewriter; ``perm`` regroups the weight."""
    rng = np.random.default_rng(0)
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g)
    x = rw.placeholder("x", F32, (n, cin, 5, 5))
    s = rw.placeholder("s", F32, (n, cin))

    def c(v, name, dt=None):
        return rw.const(np.asarray(v, dt), name=name).output()

    def node(op, ins, name, **attrs):
        return rw.add_node(op, ins, {"T": F32, **attrs}, name=name).output()

    def reshape(t, shape, name):
        return node("Reshape", [t, c(shape, name + "/s", np.int32)], name, Tshape=I32)

    w = c(rng.standard_normal((1, k, k, cin, cout)).astype(np.float32), "w")
    s5 = reshape(s, [n, 1, 1, cin, 1], "s5")
    ww = node("Mul", [w, s5], "ww")
    if demod:
        sq = node("Square", [ww], "sq")
        sm = node("Sum", [sq, c([1, 2, 3], "axes", np.int32)], "sum", Tidx=I32,
                  keep_dims=False)
        d = node("Rsqrt", [node("AddV2", [sm, c(np.float32(1e-8), "eps")], "add")], "rsqrt")
        ww = node("Mul", [ww, reshape(d, [n, 1, 1, 1, cout], "d5")], "wwd")
    wt = node("Transpose", [ww, c(list(perm), "perm", np.int32)], "wt", Tperm=I32)
    f = reshape(wt, [k, k, cin, -1], "f")
    xf = reshape(x, [1, -1, 5, 5], "xf")
    y = node("Conv2D", [xf, f], "conv", strides=[1, 1, 1, 1], padding="SAME",
             data_format="NCHW")
    y = reshape(y, [-1, cout, 5, 5], "y")
    rw.set_graph_inputs([x.output(), s.output()])
    rw.set_outputs([y])
    return g


@pytest.mark.parametrize("n,demod", [(1, True), (2, True), (3, False)])
def test_hand_built(n, demod):
    g = _modconv_graph(n, 4, 6, 3, demod=demod)
    before = g.copy()
    assert counts(g, "Transpose", "Sum", "Conv2D") == {
        "Transpose": 1, "Sum": int(demod), "Conv2D": 1}
    run_pass(g, PASS)
    assert counts(g, "Transpose", "Sum", "Conv2D", "MatMul") == {
        "Transpose": 0, "Sum": 0, "Conv2D": 1, "MatMul": int(demod)}
    assert runtime_filter_convs(g) == [] and rank5(g) == []
    feeds = random_feeds(before, seed=3)
    (cmp,) = assert_equivalent(before, g, feeds=feeds, max_rel=1e-5)
    assert cmp.psnr > 100


def test_wrong_regrouping_is_left_alone():
    """Same shapes, but the weight is regrouped with Cin and Cout swapped: not a modconv."""
    g = _modconv_graph(1, 4, 4, 3, perm=(1, 2, 4, 0, 3))
    before = g.copy()
    assert not run_pass(g, PASS, nonfused=False).changed
    # By default only the (valid) demodulation gets the MatMul form; the conv keeps its filter.
    run_pass(g, PASS)
    assert runtime_filter_convs(g) == ["conv"]
    assert counts(g, "Sum", "MatMul", "Transpose") == {"Sum": 0, "MatMul": 1, "Transpose": 1}
    assert_equivalent(before, g, feeds=random_feeds(before, seed=3), max_rel=1e-5)


def test_runtime_filter_that_is_not_modulated_is_left_alone():
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g)
    x = rw.placeholder("x", F32, (1, 5, 5, 2))
    a = rw.placeholder("a", F32, ())
    w = rw.const(np.ones((3, 3, 2, 2), np.float32), name="w")
    f = rw.add_node("Mul", [w, a], {"T": F32}, name="f")
    y = rw.add_node("Conv2D", [x, f], {"T": F32, "strides": [1, 1, 1, 1], "padding": "SAME"},
                    name="y")
    rw.set_graph_inputs([x.output(), a.output()])
    rw.set_outputs([y.output()])
    assert not run_pass(g, PASS).changed
    assert runtime_filter_convs(g) == ["y"]


def test_nonfused_option_off():
    _, g = prepared("sg2-tiny-nonfused")
    assert not run_pass(g, PASS, nonfused=False).changed
    assert counts(g, "Sum")["Sum"] == 5
