"""The numpy kernels (graphsurgery.kernels) against TensorFlow on CPU.

Each case builds the op in a TensorFlow graph on constant inputs, takes the NodeDef
TensorFlow made (so the kernel sees exactly the attributes TensorFlow runs with), evaluates
it with the kernel and compares with the session's result: bitwise (NaN as NaN) for
integer, shape, data-movement and basic float arithmetic, within a few ULPs for
transcendental functions, reductions and matrix products.
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import op_def_registry  # noqa: E402

from graphsurgery import kernels  # noqa: E402
from graphsurgery.ir import opdefs, proto  # noqa: E402
from graphsurgery.ir.attrs import python_to_attr  # noqa: E402
from graphsurgery.ir.dtypes import DType  # noqa: E402
from graphsurgery.ir.graph import Graph  # noqa: E402

RNG = np.random.default_rng(1234)
F32 = np.float32
I32 = np.int32


# ---------------------------------------------------------------------- harness
class Case:
    """``op`` applied to ``inputs`` (a list argument is given as a Python list)."""

    def __init__(self, op, inputs, tol=None, **attrs):
        self.op, self.inputs, self.tol, self.attrs = op, inputs, tol, attrs
        self.node = None
        self.fetch = None

    def __repr__(self):
        shapes = [
            [np.shape(v) for v in x] if isinstance(x, list) else np.shape(x) for x in self.inputs
        ]
        return f"{self.op}{shapes}{self.attrs or ''}"

    @property
    def flat_inputs(self):
        out = []
        for x in self.inputs:
            out.extend(x if isinstance(x, list) else [x])
        return [np.asarray(v) for v in out]


def _call_raw(op, inputs, attrs, feeds=None):
    """``tf.raw_ops.<op>`` with ``inputs`` bound to the op's input arguments in order.

    With ``feeds`` (graph mode) every input is a placeholder fed from that dict, so that
    the op's own kernel runs (Grappler would fold an op on constants itself).
    """
    fn = getattr(tf.raw_ops, op)
    n_in = len(op_def_registry.get(op).input_arg)
    names = list(inspect.signature(fn).parameters)[:n_in]

    def tensor(v):
        v = np.asarray(v)
        if feeds is None:
            return tf.constant(v)
        ph = tf.compat.v1.placeholder(tf.as_dtype(v.dtype), v.shape)
        feeds[ph] = v
        return ph

    kwargs = {}
    for name, x in zip(names, inputs):
        kwargs[name] = [tensor(v) for v in x] if isinstance(x, list) else tensor(x)
    return fn(**kwargs, **attrs)


def _our_node(tf_op):
    nd = proto.NodeDef.FromString(tf_op.node_def.SerializeToString())
    return Graph([nd], inputs=[], outputs=[]).node(nd.name)


def _run_cases(cases):
    """Build every case in one graph, run it in one session, compare with the kernels."""
    graph = tf.Graph()
    feeds = {}
    with graph.as_default():
        for c in cases:
            out = _call_raw(c.op, c.inputs, c.attrs, feeds)
            outs = list(out) if isinstance(out, list | tuple) else [out]
            c.node = _our_node(outs[0].op)
            c.fetch = outs
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        results = sess.run([c.fetch for c in cases], feeds)
    for c, expected in zip(cases, results):
        got = kernels.evaluate(c.node, c.flat_inputs)
        assert len(got) == len(expected), c
        for g, e in zip(got, expected):
            _compare(g, np.asarray(e), c.tol, c)


def _bits_equal(a, b):
    if a.dtype.kind == "f":
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(nan_a, nan_b):
            return False
        ints = np.dtype(f"i{a.dtype.itemsize}")
        return np.array_equal(a[~nan_a].view(ints), b[~nan_b].view(ints))
    return np.array_equal(a, b)


def ulp_distance(a, b):
    """Largest distance in units in the last place between float arrays (NaN == NaN)."""
    uints = np.dtype(f"u{a.dtype.itemsize}")
    top = np.uint64(1) << np.uint64(8 * a.dtype.itemsize - 1)

    def line(x):  # sign-magnitude bits onto a monotonic integer line
        u = x.astype(a.dtype).view(uints).astype(np.uint64)
        mag = (u & (top - np.uint64(1))).astype(np.int64)
        return np.where((u & top) != 0, -mag, mag)

    d = np.atleast_1d(np.abs(line(a) - line(b)))
    d[np.atleast_1d(np.isnan(a) & np.isnan(b))] = 0
    return int(d.max()) if d.size else 0


def _compare(got, expected, tol, case):
    assert got.dtype == expected.dtype, f"{case}: dtype {got.dtype} != {expected.dtype}"
    assert got.shape == expected.shape, f"{case}: shape {got.shape} != {expected.shape}"
    if tol is None:
        assert _bits_equal(got, expected), f"{case}: not bitwise equal\n{got}\n{expected}"
    else:
        ulps, rtol, atol = (*tol, 0.0) if len(tol) == 2 else tol
        dist = ulp_distance(got, expected)
        if dist > ulps:
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=repr(case))


def _node(op, **attrs):
    """A hand-made node for cases TensorFlow rejects while building the graph."""
    nd = proto.NodeDef(name="n", op=op)
    for k, v in attrs.items():
        nd.attr[k].CopyFrom(python_to_attr(v))
    return Graph([nd], inputs=[], outputs=[]).node("n")


def _tf_fails(op, inputs, attrs):
    try:
        out = _call_raw(op, inputs, attrs)
        if isinstance(out, list | tuple):
            [o.numpy() for o in out]
        else:
            out.numpy()
    except (tf.errors.InvalidArgumentError, ValueError):
        return True
    return False


def _floats(*shape, scale=1.0, dtype=F32):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def _ints(*shape, lo=-50, hi=50, dtype=I32):
    return RNG.integers(lo, hi, size=shape).astype(dtype)


SPECIAL = np.array(
    [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e30, -1e30, np.inf, -np.inf, np.nan, 1e-30, 7.25],
    F32,
)


# ---------------------------------------------------------------------- registry facts
def test_every_kernel_is_a_registered_pure_op():
    for op in kernels.KERNELS:
        assert opdefs.is_registered(op), op
        assert not opdefs.is_stateful(op), op


@pytest.mark.parametrize(
    "op", ["WriteFile", "ReadFile", "PrintV2", "RandomStandardNormal", "Assign", "VariableV2",
           "Print", "RandomUniform", "Switch", "Merge", "Placeholder", "Const", "NoOp"]
)
def test_no_kernel_for_io_random_or_stateful_ops(op):
    assert op not in kernels.KERNELS


# ---------------------------------------------------------------------- elementwise
BINARY_FLOAT = ["Add", "AddV2", "Sub", "Mul", "RealDiv", "Div", "FloorDiv", "FloorMod",
                "Maximum", "Minimum"]


def test_binary_float_ops_are_bitwise_equal():
    x, y = _floats(3, 1, 5, scale=4), _floats(4, 5, scale=4)
    sx = np.repeat(SPECIAL, len(SPECIAL))
    sy = np.tile(SPECIAL, len(SPECIAL))
    # +0/-0 ties in Maximum/Minimum are path-dependent inside TensorFlow itself
    tie = (sx == 0) & (sy == 0)
    cases = []
    for op in BINARY_FLOAT:
        cases.append(Case(op, [x, y]))
        cases.append(Case(op, [x, F32(0.3)]))
        a, b = (sx[~tie], sy[~tie]) if op in ("Maximum", "Minimum") else (sx, sy)
        cases.append(Case(op, [a, b]))
    for dt in (np.float64, np.float16):
        for op in BINARY_FLOAT:
            cases.append(Case(op, [x.astype(dt), y.astype(dt)]))
    _run_cases(cases)


def test_binary_integer_ops_are_exact():
    x, y = _ints(3, 4, 5), _ints(4, 5)
    y[y == 0] = 3
    edge_x = np.array([-(2**31), -(2**31), -(2**31), 7, -7, 2**31 - 1, 0, -1], I32)
    edge_y = np.array([3, -1, 2**31 - 1, -(2**31), -(2**31), -2, 5, 2], I32)
    cases = []
    for op in ["Add", "AddV2", "Sub", "Mul", "Div", "FloorDiv", "FloorMod", "Maximum",
               "Minimum"]:
        cases.append(Case(op, [x, y]))
        cases.append(Case(op, [edge_x, edge_y]))
        cases.append(Case(op, [x.astype(np.int64), y.astype(np.int64)]))
    cases.append(Case("Pow", [x, np.abs(y) % 5]))
    cases.append(Case("Pow", [_ints(20, lo=-9, hi=9), _ints(20, lo=0, hi=12)]))
    big = _ints(10, lo=-(2**31), hi=2**31 - 1)
    cases.append(Case("Mul", [big, big]))  # wraps around
    for op in ("Add", "Sub", "Mul", "Maximum", "FloorDiv", "FloorMod"):
        cases.append(Case(op, [_ints(6, lo=1, hi=255, dtype=np.uint8),
                               _ints(6, lo=1, hi=255, dtype=np.uint8)]))
    _run_cases(cases)


def test_integer_division_by_zero_into_an_empty_result_is_no_error():
    """TensorFlow checks divisors per output element: an empty result divides nothing
    (a zero-size Shape FloorMod 0 failed the whole fold with "Integer division by zero")."""
    empty, zero = np.zeros((0,), np.int64), np.int64(0)
    cases = []
    for op in ("FloorMod", "FloorDiv", "Div", "Pow"):
        cases += [Case(op, [empty, zero]), Case(op, [zero, empty]),
                  Case(op, [np.zeros((2, 0), I32), np.array([[0], [-1]], I32)])]
    _run_cases(cases)


def test_unary_float_ops():
    x = _floats(4, 6, scale=3)
    pos = np.abs(x) + F32(0.01)
    exact = ["Neg", "Abs", "Square", "Sqrt", "Floor", "Ceil", "Round", "Sign"]
    approx = ["Rsqrt", "Exp", "Log", "Tanh", "Sigmoid", "Reciprocal", "Inv"]
    cases = []
    for op in exact:
        cases.append(Case(op, [pos if op == "Sqrt" else x]))
        cases.append(Case(op, [SPECIAL]))
        cases.append(Case(op, [x.astype(np.float64)]))
    cases.append(Case("Round", [np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997], F32)]))
    for op in approx:
        arg = pos if op in ("Rsqrt", "Log") else x
        cases.append(Case(op, [arg], tol=(4, 1e-6)))
        cases.append(Case(op, [SPECIAL], tol=(4, 1e-6)))
        cases.append(Case(op, [arg.astype(np.float64)], tol=(4, 1e-12)))
    cases.append(Case("Sigmoid", [np.linspace(-30, 30, 241, dtype=F32)], tol=(4, 1e-6)))
    cases.append(Case("Tanh", [np.linspace(-12, 12, 241, dtype=F32)], tol=(4, 1e-6)))
    cases.append(Case("Pow", [pos, _floats(4, 6)], tol=(4, 1e-6)))
    cases.append(Case("Pow", [x, F32(2.0)], tol=(4, 1e-6)))
    for op in ("Neg", "Abs", "Square", "Sign"):
        cases.append(Case(op, [_ints(9)]))
    cases.append(Case("Abs", [np.array([-(2**31), -1, 0], I32)]))
    _run_cases(cases)


def test_denormals_are_flushed_like_tensorflow():
    d = np.array([1e-40, -1e-40, 1e-45, 1e-38, 2e-38, 0.0], F32)
    one = np.ones_like(d)
    _run_cases([
        Case("Mul", [d, one]),
        Case("Add", [d, d]),
        Case("Greater", [d, np.zeros_like(d)]),
        Case("Cast", [d], DstT=tf.bool),
        Case("Sign", [d]),
        Case("Sqrt", [np.abs(d)]),
        Case("Sum", [d, I32(0)]),
        Case("AddN", [[d, d, d]]),
        Case("Identity", [d]),  # copies are not flushed
        Case("Reshape", [d, np.array([2, 3], I32)]),
    ])
    # Eigen's approximations treat denormals their own way: not evaluated at all
    for op in ("Log", "Exp", "Rsqrt"):
        with pytest.raises(kernels.Unsupported):
            kernels.evaluate(_node(op, T=DType.float32), [np.abs(d)])


def test_integer_round_is_not_folded():
    # TensorFlow 2.21's CPU Round on int32 returns zeros; do not imitate it
    with pytest.raises(kernels.Unsupported):
        kernels.evaluate(_node("Round", T=DType.int32), [_ints(4)])


def test_comparisons_logical_and_select():
    x, y = _floats(3, 4), _floats(4)
    y[1] = x[0, 1]
    b1, b2 = RNG.random((3, 4)) > 0.5, RNG.random(4) > 0.5
    cases = []
    for op in ("Greater", "Less", "GreaterEqual", "LessEqual", "Equal", "NotEqual"):
        cases += [Case(op, [x, y]), Case(op, [_ints(5), _ints(5)]), Case(op, [SPECIAL, F32(1)])]
    cases += [
        Case("LogicalAnd", [b1, b2]),
        Case("LogicalOr", [b1, b2]),
        Case("LogicalNot", [b1]),
        Case("Select", [b1, x, -x]),
        Case("Select", [np.array([True, False, True]), x, -x]),
        Case("Select", [np.array(False), x, -x]),
        Case("SelectV2", [b2, x, F32(5.0)]),
        Case("SelectV2", [b1[:, :1], _ints(3, 4), _ints(4)]),
    ]
    _run_cases(cases)


def test_cast():
    f = _floats(20, scale=100)
    cases = []
    for dst in (tf.int32, tf.int64, tf.int8, tf.uint8, tf.float64, tf.float16, tf.bool):
        src = f if dst not in (tf.int8, tf.uint8) else np.clip(f, -100, 100)
        if dst == tf.uint8:
            src = np.abs(src)
        cases.append(Case("Cast", [src], DstT=dst))
    i = _ints(20, lo=-(2**31), hi=2**31 - 1)
    for dst in (tf.float32, tf.float64, tf.int8, tf.uint8, tf.int64, tf.bool, tf.float16):
        cases.append(Case("Cast", [i], DstT=dst))
    cases.append(Case("Cast", [RNG.random(7) > 0.5], DstT=tf.float32))
    cases.append(Case("Cast", [_floats(9).astype(np.float64) * 1e38], DstT=tf.float32))
    cases.append(Case("Cast", [SPECIAL], DstT=tf.float16))
    _run_cases(cases)


def test_cast_of_nan_or_out_of_range_to_int_is_not_folded():
    node = _node("Cast", SrcT=DType.float32, DstT=DType.int32)
    for bad in ([np.nan], [np.inf], [3e9], [-3e9]):
        with pytest.raises(kernels.Unsupported):
            kernels.evaluate(node, [np.array(bad, F32)])
    node = _node("Cast", SrcT=DType.float32, DstT=DType.uint8)
    with pytest.raises(kernels.Unsupported):
        kernels.evaluate(node, [np.array([-1.0], F32)])


# ---------------------------------------------------------------------- shapes and layout
def test_shape_and_layout_ops():
    x = _floats(2, 3, 4)
    xi = _ints(2, 3, 4)
    v = np.array
    cases = [
        Case("Identity", [x]),
        Case("Reshape", [x, v([4, -1], I32)]),
        Case("Reshape", [x, v([-1], I32)]),
        Case("Reshape", [x, v([2, 3, 2, 2], np.int64)]),
        Case("Reshape", [np.zeros((0, 3), F32), v([-1, 0], I32)]),
        Case("Reshape", [np.zeros((0, 3), F32), v([3, -1], I32)]),
        Case("Reshape", [F32(2), v([1, 1], I32)]),
        Case("Transpose", [x, v([2, 0, 1], I32)]),
        Case("Transpose", [xi, v([-1, 0, 1], I32)]),
        Case("ExpandDims", [x, I32(-1)]),
        Case("ExpandDims", [x, v([0], I32)]),
        Case("ExpandDims", [x, I32(3)]),
        Case("Squeeze", [x.reshape(2, 1, 3, 1, 4)]),
        Case("Squeeze", [x.reshape(2, 1, 3, 1, 4)], axis=[-2]),
        Case("Squeeze", [x.reshape(2, 1, 3, 1, 4)], axis=[1, 3]),
        Case("Pack", [[x, x + 1, x * 2]]),
        Case("Pack", [[x, x]], axis=-1),
        Case("Pack", [[F32(1), F32(2)]]),
        Case("Unpack", [x], num=3, axis=1),
        Case("Unpack", [x], num=4, axis=-1),
        Case("ConcatV2", [[x, x * 2], I32(1)]),
        Case("ConcatV2", [[xi, xi[:, :1]], I32(-2)]),
        Case("Concat", [I32(0), [x, x[:1]]]),
        Case("Split", [I32(2), x], num_split=2),
        Case("Split", [I32(-2), x], num_split=3),
        Case("SplitV", [x, v([1, -1, 1], I32), I32(2)], num_split=3),
        Case("SplitV", [x, v([3, 0], np.int64), I32(1)], num_split=2),
        Case("Slice", [x, v([1, 0, 1], I32), v([1, -1, 2], I32)]),
        Case("Slice", [x, v([0, 1, 0], np.int64), v([2, 0, 4], np.int64)]),
        Case("Tile", [x, v([1, 2, 3], I32)]),
        Case("Tile", [xi, v([2, 0, 1], np.int64)]),
        Case("Pad", [x, v([[1, 0], [0, 2], [1, 1]], I32)]),
        Case("PadV2", [xi, v([[0, 1], [2, 0], [0, 0]], np.int64), I32(-7)]),
        Case("MirrorPad", [x, v([[1, 1], [2, 0], [0, 3]], I32)], mode="REFLECT"),
        Case("MirrorPad", [x, v([[2, 1], [3, 0], [0, 4]], I32)], mode="SYMMETRIC"),
        Case("Fill", [v([2, 3], I32), F32(1.5)]),
        Case("Fill", [v([4], np.int64), I32(-3)]),
        Case("Fill", [v([0, 3], I32), F32(1.5)]),
        Case("Shape", [x]),
        Case("Shape", [x], out_type=tf.int64),
        Case("Shape", [F32(1)]),
        Case("Size", [x]),
        Case("Size", [x], out_type=tf.int64),
        Case("Rank", [x]),
        Case("ZerosLike", [x]),
        Case("OnesLike", [xi]),
        Case("ReverseV2", [x, v([0, 2], I32)]),
        Case("ReverseV2", [x, v([-1], np.int64)]),
        Case("ReverseV2", [x, np.zeros(0, I32)]),
        Case("GatherV2", [x, v([2, 0, 2], I32), I32(1)]),
        Case("GatherV2", [x, v([[1, 0], [0, 0]], np.int64), I32(0)]),
        Case("GatherV2", [x, I32(3), I32(-1)]),
        Case("BroadcastTo", [x[:, :1], v([5, 2, 3, 4], I32)]),
        Case("BroadcastTo", [F32(3), v([2, 2], np.int64)]),
    ]
    _run_cases(cases)


# Ops whose inputs or outputs cannot be 0-d (a Concat needs rank >= 1, a Shape or Range
# is a vector, a MatMul a matrix): every other kernel has a scalar case below.
_NO_SCALAR_CASE = {"Concat", "ConcatV2", "Split", "SplitV", "Shape", "Range", "MatMul",
                   "BatchMatMul", "BatchMatMulV2"}


def _scalar_cases():
    v, f, i = np.array, F32(2.5), I32(3)
    z = np.zeros(0, I32)
    cases = [
        Case("Transpose", [f, z]),  # tf.transpose(tf.constant(3.0), [])
        Case("Unpack", [v([4, 5, 6], I32)], num=3),  # b, h, w = tf.unstack(tf.shape(x))
        Case("Unpack", [v([[1.5, 2.0]], F32)], num=2, axis=1),
        Case("Unpack", [np.zeros((3, 0), F32)], num=3),
        Case("Slice", [f, z, z]),
        Case("StridedSlice", [v([4, 5, 6], I32), v([1], I32), v([2], I32), v([1], I32)],
             shrink_axis_mask=1),
        Case("StridedSlice", [f, z, z, z]),
        Case("Pad", [f, np.zeros((0, 2), I32)]),
        Case("PadV2", [f, np.zeros((0, 2), I32), F32(1)]),
        Case("MirrorPad", [f, np.zeros((0, 2), I32)], mode="REFLECT"),
        Case("ReverseV2", [f, z]),
        Case("Tile", [f, z]),
        Case("Reshape", [v([7.0], F32), z]),
        Case("Squeeze", [v([[7]], I32)]),
        Case("ExpandDims", [f, I32(0)]),
        Case("Pack", [[i, i]]),
        Case("GatherV2", [v([4, 5, 6], I32), I32(1), I32(0)]),
        Case("BroadcastTo", [f, z]),
        Case("Fill", [z, f]),
        Case("Identity", [f]),
        Case("ZerosLike", [f]),
        Case("OnesLike", [i]),
        Case("Size", [f]),
        Case("Rank", [f]),
        Case("Cast", [f], DstT=tf.int32),
        Case("AddN", [[f, f, f]]),
        Case("Select", [np.array(True), f, F32(1)]),
        Case("SelectV2", [np.array(False), i, I32(1)]),
        Case("LogicalNot", [np.array(True)]),
        Case("LogicalAnd", [np.array(True), np.array(False)]),
        Case("LogicalOr", [np.array(True), np.array(False)]),
        Case("Any", [np.array(True), z]),
        Case("All", [np.array(True), z]),
    ]
    for op in ("Sum", "Mean", "Prod", "Max", "Min"):
        cases.append(Case(op, [f, z]))
    approx = {"Exp", "Log", "Tanh", "Sigmoid", "Rsqrt", "Reciprocal", "Inv", "Pow"}
    for op in sorted(set(kernels.KERNELS) - {c.op for c in cases} - _NO_SCALAR_CASE):
        n_in = len(op_def_registry.get(op).input_arg)
        tol = (4, 1e-6) if op in approx else None
        cases.append(Case(op, [f] * n_in, tol=tol))
    return cases


def test_scalars_keep_rank_zero_in_every_kernel():
    """0-d inputs give 0-d outputs wherever TensorFlow's do (numpy's ascontiguousarray and
    a scalar's ``x[()]`` turn them into shape (1,)), and zero-size dimensions survive."""
    cases = _scalar_cases()
    assert {c.op for c in cases} | _NO_SCALAR_CASE == set(kernels.KERNELS)
    _run_cases(cases)


def test_range():
    v = np.array
    cases = [
        Case("Range", [I32(0), I32(10), I32(3)]),
        Case("Range", [I32(10), I32(0), I32(-3)]),
        Case("Range", [I32(5), I32(5), I32(1)]),
        Case("Range", [np.int64(-7), np.int64(20), np.int64(4)]),
        Case("Range", [F32(0.1), F32(10.0), F32(0.7)]),
        Case("Range", [F32(3.0), F32(-2.0), F32(-0.3)]),
        Case("Range", [F32(0.0), F32(1.0), F32(1 / 3)]),
        Case("Range", [np.float64(0.1), np.float64(2.0), np.float64(0.1)]),
    ]
    del v
    _run_cases(cases)


# ---------------------------------------------------------------------- reductions
def test_reductions():
    x = _floats(3, 4, 5)
    xi = _ints(3, 4, 5, lo=-9, hi=9)
    b = RNG.random((3, 4)) > 0.3
    v = np.array
    cases = []
    for op in ("Sum", "Mean", "Prod", "Max", "Min"):
        # sums of terms ~1 that cancel: the error is relative to the terms, not the result
        approx = (8, 1e-6, 1e-6) if op in ("Sum", "Mean", "Prod") else None
        for axis in (v([1], I32), v([0, 2], I32), v([-1, 0], np.int64), I32(2),
                     v([0, 1, 2], I32), np.zeros(0, I32)):
            for keep in (False, True):
                cases.append(Case(op, [x, axis], tol=approx, keep_dims=keep))
        cases.append(Case(op, [xi, v([1, 2], I32)]))
        cases.append(Case(op, [xi, I32(0)], keep_dims=True))
    cases.append(Case("Mean", [v([-7, 0, 0], I32), I32(0)]))  # truncating integer mean
    cases.append(Case("Sum", [_ints(50, lo=2**28, hi=2**30), I32(0)]))  # wraps around
    cases.append(Case("Max", [np.zeros((0, 3), F32), I32(0)]))
    cases.append(Case("Min", [np.zeros((0, 3), I32), I32(0)]))
    cases.append(Case("Sum", [np.zeros((0, 3), F32), I32(0)]))
    cases.append(Case("Max", [v([1.0, np.nan, 2.0], F32), I32(0)]))
    cases.append(Case("Any", [b, I32(1)]))
    cases.append(Case("All", [b, v([0, 1], I32)], keep_dims=True))
    # a long float32 sum: the ULP-level difference of summation orders stays small
    cases.append(Case("Sum", [_floats(4096), I32(0)], tol=(64, 1e-5, 1e-5)))
    cases.append(Case("Mean", [_floats(64, 512), v([0], I32)], tol=(16, 1e-6, 1e-6)))
    _run_cases(cases)


def test_add_n_follows_tensorflows_order_bitwise():
    cases = []
    for n in (1, 2, 3, 4, 7, 8, 9, 10, 16, 17, 18, 25):
        xs = [_floats(3, 5, scale=10.0 ** RNG.integers(-3, 4)) for _ in range(n)]
        cases.append(Case("AddN", [xs]))
    cases.append(Case("AddN", [[_ints(4), _ints(4), _ints(4)]]))
    _run_cases(cases)


def test_matmul():
    a, b = _floats(5, 7), _floats(7, 3)
    cases = [
        Case("MatMul", [a, b], tol=(8, 1e-6, 1e-6)),
        Case("MatMul", [a.T.copy(), b], tol=(8, 1e-6, 1e-6), transpose_a=True),
        Case("MatMul", [a, b.T.copy()], tol=(8, 1e-6, 1e-6), transpose_b=True),
        Case("MatMul", [_floats(4, 512), _floats(512, 6)], tol=(64, 1e-5, 1e-5)),
        Case("MatMul", [_ints(3, 4), _ints(4, 2)]),
        Case("MatMul", [a.astype(np.float64), b.astype(np.float64)], tol=(8, 1e-12)),
        Case("BatchMatMulV2", [_floats(2, 1, 3, 4), _floats(5, 4, 2)], tol=(8, 1e-6, 1e-6)),
        Case("BatchMatMulV2", [_floats(2, 4, 3), _floats(2, 2, 4)], tol=(8, 1e-6, 1e-6),
             adj_x=True, adj_y=True),
        Case("BatchMatMul", [_floats(3, 2, 4), _floats(3, 4, 5)], tol=(8, 1e-6, 1e-6)),
    ]
    _run_cases(cases)


# ---------------------------------------------------------------------- StridedSlice
def _random_strided_slice(rng, shape):
    n = int(rng.integers(1, len(shape) + 3))
    begin = rng.integers(-6, 7, n)
    end = rng.integers(-6, 7, n)
    strides = rng.choice([-3, -2, -1, 1, 1, 1, 2, 3], n)
    masks = {}
    for key, p in (("begin_mask", 0.3), ("end_mask", 0.3), ("new_axis_mask", 0.12),
                   ("shrink_axis_mask", 0.15)):
        masks[key] = int(sum(1 << i for i in range(n) if rng.random() < p))
    if rng.random() < 0.35:
        masks["ellipsis_mask"] = 1 << int(rng.integers(0, n))
    if rng.random() < 0.05:
        masks["ellipsis_mask"] = 0b11  # two ellipses: an error
    # a shrink axis needs a stride-1 in-range index most of the time
    for i in range(n):
        if (masks["shrink_axis_mask"] >> i) & 1 and rng.random() < 0.8:
            strides[i] = 1
    return (np.asarray(begin, I32), np.asarray(end, I32), np.asarray(strides, I32)), masks


def test_strided_slice_against_tensorflow():
    rng = np.random.default_rng(7)
    x = np.arange(4 * 5 * 3 * 6, dtype=F32).reshape(4, 5, 3, 6)
    valid, errors = [], []
    for _ in range(400):
        shape = tuple(rng.integers(1, 6, int(rng.integers(1, 5))))
        data = x[tuple(slice(0, d) for d in shape)].copy() if len(shape) <= 4 else None
        (b, e, s), masks = _random_strided_slice(rng, shape)
        node = _node("StridedSlice", T=DType.float32, Index=DType.int32, **masks)
        try:
            kernels.evaluate(node, [data, b, e, s])
        except kernels.KernelError:
            errors.append((data, b, e, s, masks))
            continue
        valid.append(Case("StridedSlice", [data, b, e, s], **masks))
    assert len(valid) > 250, len(valid)
    _run_cases(valid)
    for data, b, e, s, masks in errors:
        assert _tf_fails("StridedSlice", [data, b, e, s], masks), (data.shape, b, e, s, masks)


def test_strided_slice_named_cases():
    x = np.arange(2 * 3 * 4 * 5, dtype=F32).reshape(2, 3, 4, 5)
    v = lambda *a: np.array(a, I32)  # noqa: E731
    cases = [
        # x[:, 0] (StyleGAN's style[:, 0]); x[..., 1:3]; x[::-1]; x[1, ..., ::2, tf.newaxis]
        Case("StridedSlice", [x, v(0, 0), v(0, 1), v(1, 1)], begin_mask=1, end_mask=1,
             shrink_axis_mask=2),
        Case("StridedSlice", [x, v(0, 1), v(0, 3), v(1, 1)], ellipsis_mask=1),
        Case("StridedSlice", [x, v(0), v(0), v(-1)], begin_mask=1, end_mask=1),
        Case("StridedSlice", [x, v(1, 0, 0, 0), v(2, 0, 0, 0), v(1, 1, 2, 1)],
             ellipsis_mask=2, shrink_axis_mask=1, new_axis_mask=8, begin_mask=4, end_mask=4),
        Case("StridedSlice", [x, v(-1, -2), v(-3, -5), v(-1, -2)]),
        Case("StridedSlice", [x, v(0, 0, 0), v(0, 0, 0), v(1, 1, 1)], new_axis_mask=0b101,
             begin_mask=0b010, end_mask=0b010),
        Case("StridedSlice", [x, v(0, -1), v(0, 0), v(1, 1)], ellipsis_mask=1,
             shrink_axis_mask=2),
        Case("StridedSlice", [x, v(10, -10), v(-10, 10), v(-1, 1)]),
        Case("StridedSlice", [x, v(0), v(0), v(1)], ellipsis_mask=1, new_axis_mask=1),
    ]
    _run_cases(cases)


def test_strided_slice_errors():
    x = np.zeros((2, 3), F32)
    node = _node("StridedSlice", T=DType.float32, Index=DType.int32, shrink_axis_mask=1)
    with pytest.raises(kernels.KernelError, match="out of bounds"):
        kernels.evaluate(node, [x, np.array([5], I32), np.array([6], I32), np.array([1], I32)])
    node = _node("StridedSlice", T=DType.float32, Index=DType.int32)
    with pytest.raises(kernels.KernelError, match="non-zero"):
        kernels.evaluate(node, [x, np.array([0], I32), np.array([1], I32), np.array([0], I32)])


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "op,inputs,attrs,ours",
    [
        ("Reshape", [np.zeros((2, 3), F32), np.array([4, -1], I32)], {},
         {"T": DType.float32, "Tshape": DType.int32}),
        ("Reshape", [np.zeros((2, 3), F32), np.array([-1, -1], I32)], {},
         {"T": DType.float32, "Tshape": DType.int32}),
        ("Div", [np.array([1, 2], I32), np.array([1, 0], I32)], {}, {"T": DType.int32}),
        ("FloorMod", [np.array([1], I32), np.array([0], I32)], {}, {"T": DType.int32}),
        ("Pow", [np.array([2], I32), np.array([-1], I32)], {}, {"T": DType.int32}),
        ("GatherV2", [np.zeros(3, F32), np.array([3], I32), I32(0)], {},
         {"Tparams": DType.float32, "Tindices": DType.int32, "Taxis": DType.int32}),
        ("GatherV2", [np.zeros(3, F32), np.array([-1], I32), I32(0)], {},
         {"Tparams": DType.float32, "Tindices": DType.int32, "Taxis": DType.int32}),
        ("Squeeze", [np.zeros((2, 3), F32)], {"axis": [0]},
         {"T": DType.float32, "squeeze_dims": [0]}),
        ("Sum", [np.zeros((2, 3), F32), np.array([1, -1], I32)], {},
         {"T": DType.float32, "Tidx": DType.int32}),
        ("Sum", [np.zeros((2, 3), F32), np.array([2], I32)], {},
         {"T": DType.float32, "Tidx": DType.int32}),
        ("Slice", [np.zeros((2, 3), F32), np.array([1, 1], I32), np.array([2, 1], I32)], {},
         {"T": DType.float32, "Index": DType.int32}),
        ("Range", [I32(0), I32(5), I32(-1)], {}, {"Tidx": DType.int32}),
        ("Range", [I32(0), I32(5), I32(0)], {}, {"Tidx": DType.int32}),
        ("Tile", [np.zeros((2, 3), F32), np.array([2], I32)], {},
         {"T": DType.float32, "Tmultiples": DType.int32}),
        ("ConcatV2", [[np.zeros((2, 3), F32), np.zeros((3, 3), F32)], I32(1)], {},
         {"T": DType.float32, "Tidx": DType.int32, "N": 2}),
        ("Split", [I32(1), np.zeros((2, 3), F32)], {"num_split": 2},
         {"T": DType.float32, "num_split": 2}),
        ("MirrorPad", [np.zeros((2, 3), F32), np.array([[2, 0], [0, 0]], I32)],
         {"mode": "REFLECT"}, {"T": DType.float32, "Tpaddings": DType.int32, "mode": "REFLECT"}),
        ("BroadcastTo", [np.zeros((2, 3), F32), np.array([4, 3], I32)], {},
         {"T": DType.float32, "Tidx": DType.int32}),
        ("MatMul", [np.zeros((2, 3), F32), np.zeros((2, 3), F32)], {}, {"T": DType.float32}),
        ("Transpose", [np.zeros((2, 3), F32), np.array([0, 0], I32)], {},
         {"T": DType.float32, "Tperm": DType.int32}),
    ],
)
def test_invalid_arguments_fail_like_tensorflow(op, inputs, attrs, ours):
    assert _tf_fails(op, inputs, attrs)
    flat = []
    for x in inputs:
        flat.extend(x if isinstance(x, list) else [x])
    with pytest.raises(kernels.KernelError):
        kernels.evaluate(_node(op, **ours), [np.asarray(x) for x in flat])


def test_predicted_nbytes_bounds_growing_ops():
    fill = _node("Fill", T=DType.float32, index_type=DType.int32)
    assert kernels.predicted_nbytes(fill, [np.array([1000, 1000], I32), F32(0)]) == 4_000_000
    tile = _node("Tile", T=DType.float32, Tmultiples=DType.int32)
    x = np.zeros((2, 3), F32)
    assert kernels.predicted_nbytes(tile, [x, np.array([10, 10], I32)]) == x.nbytes * 100
    add = _node("AddV2", T=DType.float32)
    assert kernels.predicted_nbytes(add, [np.zeros((100, 1), F32), np.zeros(50, F32)]) == 20_000
    ident = _node("Identity", T=DType.float32)
    assert kernels.predicted_nbytes(ident, [x]) is None
