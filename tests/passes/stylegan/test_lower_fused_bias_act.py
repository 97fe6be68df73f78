"""stylegan::lower_fused_bias_act: FusedBiasAct -> bias add, activation, gain (builtin ops).

Op counts before and after; numerics against a numpy transcription of the CUDA kernel and
against the reference runner (sgops' fused_bias_act_ref)."""

import math

import graphsurgery.passes.stylegan.lower_fused_bias_act  # noqa: F401
import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.testing import assert_equivalent, run_pass, run_tf

from .prep import prepared_and_run

PASS = "stylegan::lower_fused_bias_act"
F32 = gs.DType.float32
SQRT2 = math.sqrt(2.0)
SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


def np_fused_bias_act(x, b, axis=1, act=0, alpha=0.0, gain=1.0, clamp=-1.0):
    """The CUDA kernel's forward maths (grad=0)."""
    x = x.astype(np.float64)
    if b is not None and b.size:
        shape = [1] * x.ndim
        shape[axis] = -1
        x = x + b.reshape(shape)
    y = {
        2: lambda v: np.maximum(v, 0),
        3: lambda v: np.where(v > 0, v, v * alpha),
        4: np.tanh,
        5: lambda v: 1 / (1 + np.exp(-v)),
        6: lambda v: np.where(v >= 0, v, np.expm1(np.minimum(v, 0))),
        7: lambda v: np.where(v >= 0, SELU_SCALE * v,
                              SELU_SCALE * SELU_ALPHA * np.expm1(np.minimum(v, 0))),
        8: lambda v: np.logaddexp(v, 0),
        9: lambda v: v / (1 + np.exp(-v)),
    }.get(act, lambda v: v)(x)
    y = y * gain
    if clamp >= 0:
        y = np.clip(y, -clamp, clamp)
    return y.astype(np.float32)


def fba_graph(x_shape, bias, attrs, extra_inputs=1):
    """``y = FusedBiasAct(x, Const b, Const [] ...)`` with the given attributes."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g)
    x = rw.placeholder("x", F32, x_shape)
    b = rw.const(np.asarray(bias, np.float32), name="b")
    empty = rw.const(np.zeros([0], np.float32), name="empty")
    y = rw.add_node("FusedBiasAct", [x, b] + [empty] * extra_inputs, {"T": F32, **attrs},
                    name="fba")
    rw.set_graph_inputs([x.output()])
    rw.set_outputs([y.output()])
    return g


X = np.random.default_rng(1).standard_normal((1, 4, 3, 5)).astype(np.float32) * 3
BIAS = np.array([0.5, -1.0, 0.25, 2.0], np.float32)
ACT_CASES = [
    # act code, alpha, gain, ops after
    (1, 0.0, 1.0, {"AddV2": 1}),
    (2, 0.0, SQRT2, {"AddV2": 1, "Relu": 1, "Mul": 1}),
    (3, 0.2, SQRT2, {"AddV2": 1, "LeakyRelu": 1, "Mul": 1}),
    (4, 0.0, 1.0, {"AddV2": 1, "Tanh": 1}),
    (5, 0.0, 1.0, {"AddV2": 1, "Sigmoid": 1}),
    (6, 0.0, 1.0, {"AddV2": 1, "Elu": 1}),
    (7, 0.0, 1.0, {"AddV2": 1, "Selu": 1}),
    (8, 0.0, 1.0, {"AddV2": 3, "Maximum": 1, "Exp": 1, "Log": 1}),
    (9, 0.0, SQRT2, {"AddV2": 1, "Sigmoid": 1, "Mul": 2}),
]


@pytest.mark.parametrize(("act", "alpha", "gain", "after"), ACT_CASES,
                         ids=[str(c[0]) for c in ACT_CASES])
def test_every_activation(act, alpha, gain, after):
    g = fba_graph(X.shape, BIAS, {"axis": 1, "act": act, "alpha": alpha, "gain": gain,
                                  "grad": 0})
    assert g.op_counts()["FusedBiasAct"] == 1
    run_pass(g, PASS)
    counts = g.op_counts()
    assert counts["FusedBiasAct"] == 0 and counts["Reshape"] == 0
    for op, n in after.items():
        assert counts.get(op, 0) == n, (op, dict(counts))
    # The constant bias is pre-shaped [1, C, 1, 1]; the last op keeps the node's name.
    assert g.const_value("fba/bias").shape == (1, 4, 1, 1)
    assert g.outputs == [gs.TensorRef("fba")]
    got = run_tf(g, {"x": X})[0]  # elementwise ops only: plain TensorFlow runs it
    want = np_fused_bias_act(X, BIAS, 1, act, alpha, gain)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_reference_runner_agrees():
    """One graph with every activation, checked against the reference runner."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g)
    x = rw.placeholder("x", F32, X.shape)
    b = rw.const(BIAS, name="b")
    empty = rw.const(np.zeros([0], np.float32), name="empty")
    outs = []
    for act, alpha, gain, _ in ACT_CASES:
        outs.append(rw.add_node("FusedBiasAct", [x, b, empty],
                                {"T": F32, "axis": 1, "act": act, "alpha": alpha, "gain": gain,
                                 "grad": 0}, name=f"fba{act}").output())
    rw.set_graph_inputs([x.output()])
    rw.set_outputs(outs)
    before = g.copy()
    run_pass(g, PASS)
    assert before.op_counts()["FusedBiasAct"] == 9 and g.op_counts()["FusedBiasAct"] == 0
    assert_equivalent(before, g, feeds={"x": X}, max_rel=1e-5)


def test_dense_input_bias_and_no_bias():
    """[N, C] with axis 1: the bias vector is added as it is; an empty bias adds nothing."""
    x2 = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    g = fba_graph(x2.shape, BIAS, {"axis": 1, "act": 3, "alpha": 0.2, "gain": SQRT2})
    run_pass(g, PASS)
    assert g.const_value("fba/bias").shape == (4,)
    np.testing.assert_allclose(run_tf(g, {"x": x2})[0],
                               np_fused_bias_act(x2, BIAS, 1, 3, 0.2, SQRT2), rtol=1e-6)
    g = fba_graph(x2.shape, np.zeros([0]), {"axis": 1, "act": 2, "gain": 2.0})
    run_pass(g, PASS)
    assert dict(g.op_counts()) == {"Placeholder": 1, "Const": 1, "Relu": 1, "Mul": 1}
    np.testing.assert_allclose(run_tf(g, {"x": x2})[0], np.maximum(x2, 0) * 2, rtol=1e-6)


def test_linear_without_bias_disappears():
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g)
    x = rw.placeholder("x", F32, (1, 4))
    empty = rw.const(np.zeros([0], np.float32), name="empty")
    y = rw.add_node("FusedBiasAct", [x, empty, empty], {"T": F32, "act": 1, "gain": 1.0},
                    name="fba")
    z = rw.add_node("Neg", [y], {"T": F32}, name="z")
    rw.set_graph_inputs([x.output()])
    rw.set_outputs([z.output()])
    run_pass(g, PASS)
    assert dict(g.op_counts()) == {"Placeholder": 1, "Neg": 1}
    assert g.node("z").data_inputs == [gs.TensorRef("x")]


def test_ada_form_with_clamp():
    """StyleGAN2-ADA: FusedBiasAct(x, b, xref, yref) with clamp: Maximum/Minimum after gain."""
    attrs = {"axis": 1, "act": 3, "alpha": 0.2, "gain": SQRT2, "clamp": 1.5, "grad": 0}
    g = fba_graph(X.shape, BIAS, attrs, extra_inputs=2)
    run_pass(g, PASS)
    counts = g.op_counts()
    assert counts["FusedBiasAct"] == 0 and counts["Maximum"] == 1 and counts["Minimum"] == 1
    np.testing.assert_allclose(run_tf(g, {"x": X})[0],
                               np_fused_bias_act(X, BIAS, 1, 3, 0.2, SQRT2, clamp=1.5),
                               rtol=1e-6)


def test_missing_attributes():
    """Absent attributes: the op's registered defaults (as TensorFlow fills them in; the
    reference runner reads them the same way), or with missing_attrs=act the Python
    wrapper's per-activation defaults."""
    g = fba_graph(X.shape, BIAS, {"act": 3})
    op_defaults = g.copy()
    run_pass(op_defaults, PASS)
    assert op_defaults.node("fba").op == "LeakyRelu"  # gain 1: no Mul
    assert op_defaults.node("fba").attr("alpha") == 0.0
    np.testing.assert_allclose(run_tf(op_defaults, {"x": X})[0],
                               np_fused_bias_act(X, BIAS, 1, 3, 0.0, 1.0), rtol=1e-6)
    assert_equivalent(g, op_defaults, feeds={"x": X}, max_rel=1e-5)
    act_defaults = g.copy()
    run_pass(act_defaults, PASS, missing_attrs="act")
    np.testing.assert_allclose(run_tf(act_defaults, {"x": X})[0],
                               np_fused_bias_act(X, BIAS, 1, 3, 0.2, SQRT2), rtol=1e-6)


@pytest.mark.parametrize(("attrs", "message"), [
    ({"act": 12}, "fba: unknown FusedBiasAct activation code act=12"),
    ({"act": 3, "grad": 1}, "fba: FusedBiasAct with grad=1"),
])
def test_errors_name_the_node(attrs, message):
    g = fba_graph(X.shape, BIAS, attrs)
    with pytest.raises(gs.UsageError, match=message):
        run_pass(g, PASS)


def test_sg2_tiny_cuda():
    before, g, counts, after = prepared_and_run("sg2-tiny-cuda", PASS)
    assert counts["FusedBiasAct"] == 18 and counts["LeakyRelu"] == 0
    assert after["FusedBiasAct"] == 0
    assert after["LeakyRelu"] == 7  # 2 mapping layers + 5 synthesis layers (act=3)
    assert after["AddV2"] == counts["AddV2"] + 18  # every node has a bias
    assert after["Mul"] == counts["Mul"] + 7  # gain sqrt(2) on the lrelu layers only
    assert after["UpFirDn2D"] == counts["UpFirDn2D"]
    assert_equivalent(before, g, max_rel=1e-4)
