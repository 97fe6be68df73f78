"""NumPy kernels with TensorFlow's semantics, for constant folding without TensorFlow.

``KERNELS`` maps an op type to ``kernel(node, inputs) -> outputs``: ``node`` is the
:class:`~graphsurgery.ir.graph.Node` (for its attributes), ``inputs`` its data inputs as
numpy arrays, and the result one array per output, each with the dtype TensorFlow gives
that output. Only pure ops are here: nothing that reads files, draws random numbers or
touches variables can be evaluated, whatever a graph asks.

A kernel signals two kinds of failure:

* :class:`KernelError`: the inputs are invalid for the op (a reshape to the wrong size, an
  index out of range, an integer division by zero): TensorFlow would fail at run time too.
* :class:`Unsupported`: the op is valid but this module does not reproduce TensorFlow's
  result exactly: an unsupported dtype (strings, complex, bfloat16), a float to int cast
  of NaN or of an out-of-range value (left to the hardware in TensorFlow), a transcendental
  function of a denormal, integer ``Round`` (TensorFlow 2.21's CPU kernel returns zeros).
  Callers leave such nodes alone.

TensorFlow runs its CPU kernels with denormals flushed to zero (FTZ and DAZ set in the
thread's MXCSR), so ``1e-40 * 1`` is ``0`` there; the arithmetic kernels here flush float32
and float64 denormals in their inputs and results the same way. Data movement (reshape,
transpose, slices, concat, pad, select) copies values unchanged, as TensorFlow does.

Exactness against TensorFlow 2.21 on CPU (``tests/test_kernels.py`` runs every kernel
against the TensorFlow kernel of the same NodeDef):

* bitwise equal (NaN compared as NaN): every integer, boolean, shape and data-movement op;
  float ``Add AddV2 Sub Mul RealDiv Div FloorDiv FloorMod Maximum Minimum``,
  ``Neg Abs Square Sqrt Floor Ceil Round Sign``, comparisons, ``Select``, ``Cast``,
  ``Range`` (``start + T(i) * delta``), ``Max``/``Min`` reductions, and ``AddN``, whose
  grouping is TensorFlow's: the first 2 to 9 inputs left to right, then
  ``out += (x[i] + ... + x[i+7])`` per further group of eight.
* within a few ULPs: ``Exp Log Tanh Sigmoid Rsqrt Reciprocal Pow`` (computed in float64 and
  rounded once, so these are correctly rounded, while Eigen's float32 approximations are
  off by 1 to 5 ULPs), ``Sum Mean Prod`` and ``MatMul``/``BatchMatMul*`` on floats
  (accumulated in float64 and rounded once; TensorFlow accumulates in float32 in a
  blocked order, so results that cancel differ by ULPs of the summed terms, not of the
  result).
* ``Maximum``/``Minimum`` of ``+0`` and ``-0`` may return either zero: TensorFlow itself
  answers differently in its vectorised and scalar code paths; numpy's choice matches the
  vectorised one. float16 arithmetic is not flushed (it is done through float32 there).

Example::

    from graphsurgery.kernels import evaluate
    outputs = evaluate(graph.node("mul"), [w, coef])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .ir.dtypes import DType
from .ir.graph import Node

Kernel = Callable[[Node, list[np.ndarray]], list[np.ndarray]]

KERNELS: dict[str, Kernel] = {}

# dtypes the kernels handle (no strings, complex numbers, bfloat16 or quantized types).
SUPPORTED_DTYPES = frozenset(
    {
        DType.bool,
        DType.int8,
        DType.int16,
        DType.int32,
        DType.int64,
        DType.uint8,
        DType.uint16,
        DType.uint32,
        DType.uint64,
        DType.float16,
        DType.float32,
        DType.float64,
    }
)


class KernelError(ValueError):
    """The inputs are invalid for the op; TensorFlow would fail at run time as well."""


class Unsupported(Exception):
    """The kernel cannot reproduce TensorFlow's result exactly; leave the node unevaluated."""


def kernel(*ops: str) -> Callable[[Kernel], Kernel]:
    """Register the decorated function as the kernel of ``ops``."""

    def deco(fn: Kernel) -> Kernel:
        for op in ops:
            KERNELS[op] = fn
        return fn

    return deco


def evaluate(node: Node, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the kernel of ``node.op`` on ``inputs``; raises KeyError for ops without one."""
    fn = KERNELS[node.op]
    arrays = [np.asarray(x) for x in inputs]
    for x in arrays:
        if x.dtype.kind not in "biuf":
            raise Unsupported(f"dtype {x.dtype} is not supported")
    with np.errstate(all="ignore"):
        try:
            outs = fn(node, arrays)
        except (KernelError, Unsupported):
            raise
        except (ValueError, IndexError, TypeError) as exc:  # numpy rejected the arguments
            raise KernelError(str(exc)) from None
    return [np.asarray(o) for o in outs]


# ---------------------------------------------------------------------- helpers
def _np_dtype(node: Node, key: str = "T") -> np.dtype:
    dt = node.attr(key)
    if not isinstance(dt, DType):
        raise Unsupported(f"attribute {key!r} is missing")
    if dt not in SUPPORTED_DTYPES:
        raise Unsupported(f"dtype {dt.name} is not supported")
    return dt.numpy


def _arr(x: Any, dtype: np.dtype) -> np.ndarray:
    """``x`` as an ndarray (never a numpy scalar) of ``dtype``."""
    return np.asarray(x).astype(dtype, copy=False)


def _contiguous(x: Any) -> np.ndarray:
    """``x`` as a C-contiguous array of the same shape. ``np.ascontiguousarray`` is not
    that: it turns a 0-d array into shape (1,), and ``x[()]`` of a 0-d array is a numpy
    scalar, so both would change the rank of a scalar result."""
    arr = np.asarray(x)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _ints(x: np.ndarray, what: str) -> list[int]:
    if x.dtype.kind not in "iu":
        raise KernelError(f"{what} must be integers, got {x.dtype}")
    return [int(v) for v in np.ravel(x)]


def _vector(x: np.ndarray, what: str) -> list[int]:
    if x.ndim != 1:
        raise KernelError(f"{what} must be a vector, got shape {list(x.shape)}")
    return _ints(x, what)


def _scalar(x: np.ndarray, what: str) -> Any:
    if x.size != 1:
        raise KernelError(f"{what} must be a scalar, got shape {list(x.shape)}")
    return x.reshape(()).item()


def _axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise KernelError(f"{what} {axis} is out of range for a tensor of rank {rank}")
    return axis + rank if axis < 0 else axis


def _is_float(dt: np.dtype) -> bool:
    return dt.kind == "f"


def _same_shape(node: Node, arrays: Sequence[np.ndarray]) -> None:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise KernelError(f"{node.op} inputs must have the same shape, got {sorted(shapes)}")


_CHUNK = 1 << 16  # elements scanned at a time: no temporary as large as the tensor


def _has_denormals(x: np.ndarray) -> bool:
    """True when a float array holds a denormal (subnormal) value."""
    if x.dtype.kind != "f" or x.size == 0:
        return False
    tiny = np.finfo(x.dtype).tiny
    flat = x.reshape(-1) if x.flags.c_contiguous else np.ravel(x)
    for i in range(0, flat.size, _CHUNK):
        a = np.abs(flat[i : i + _CHUNK])
        if np.any((a < tiny) & (a > 0)):
            return True
    return False


def _flush(x: np.ndarray) -> np.ndarray:
    """Denormal float32/float64 values replaced by zeros of the same sign (FTZ/DAZ)."""
    if x.dtype.itemsize < 4 or not _has_denormals(x):
        return x
    tiny = np.finfo(x.dtype).tiny
    return np.where(np.abs(x) < tiny, x * 0, x).astype(x.dtype, copy=False)


def _broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise KernelError(f"incompatible shapes: {[list(s) for s in shapes]}") from None


# ---------------------------------------------------------------------- elementwise
def _binary(
    fn: Callable[[np.ndarray, np.ndarray, np.dtype], Any], kinds: str = "biuf", flush: bool = True
) -> Kernel:
    def run(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
        dt = _np_dtype(node)
        if dt.kind not in kinds:
            raise Unsupported(f"{node.op} on {dt} is not supported")
        x, y = (_arr(v, dt) for v in xs)
        if flush:
            x, y = _flush(x), _flush(y)
        _broadcast_shape(x.shape, y.shape)
        return [_flush(_arr(fn(x, y, dt), dt))]

    return run


def _unary(
    fn: Callable[[np.ndarray, np.dtype], Any], kinds: str = "iuf", flush: bool = True
) -> Kernel:
    def run(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
        dt = _np_dtype(node)
        if dt.kind not in kinds:
            raise Unsupported(f"{node.op} on {dt} is not supported")
        x = _arr(xs[0], dt)
        return [_flush(_arr(fn(_flush(x) if flush else x, dt), dt))]

    return run


def _via_float64(fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray, np.dtype], Any]:
    """Evaluate in float64 and round once to the node's dtype (float16/32 inputs).

    Eigen's approximations treat denormal inputs in their own ways (its float32 ``log``
    of any denormal is ``log(2**-150)``), so denormal inputs are not evaluated.
    """

    def run(x: np.ndarray, dt: np.dtype) -> Any:
        if _has_denormals(x):
            raise Unsupported("denormal inputs to a transcendental function")
        return fn(x.astype(np.float64)).astype(dt) if dt.itemsize < 8 else fn(x)

    return run


def _check_nonzero(x: np.ndarray, y: np.ndarray) -> None:
    """TensorFlow's check, made per output element: an empty result divides nothing."""
    if _count(_broadcast_shape(x.shape, y.shape)) and np.any(y == 0):
        raise KernelError("Integer division by zero")


def _trunc_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """C integer division (rounds toward zero)."""
    _check_nonzero(x, y)
    q = np.floor_divide(x, y)
    fix = (np.remainder(x, y) != 0) & ((x < 0) != (y < 0))
    return q + fix.astype(q.dtype)


def _div(x: np.ndarray, y: np.ndarray, dt: np.dtype) -> Any:
    return np.true_divide(x, y) if _is_float(dt) else _trunc_div(x, y)


def _floor_div(x: np.ndarray, y: np.ndarray, dt: np.dtype) -> Any:
    if _is_float(dt):
        return np.floor(np.true_divide(x, y))  # TensorFlow: floor(x / y)
    _check_nonzero(x, y)
    return np.floor_divide(x, y)


def _floor_mod(x: np.ndarray, y: np.ndarray, dt: np.dtype) -> Any:
    if not _is_float(dt):
        _check_nonzero(x, y)
        return np.remainder(x, y)
    # TensorFlow: m = fmod(x, y); m + y if m != 0 and sign(m) != sign(y) else m
    m = np.fmod(x, y)
    return np.where((m != 0) & ((y < 0) != (m < 0)), m + y, m)


def _pow(x: np.ndarray, y: np.ndarray, dt: np.dtype) -> Any:
    if _is_float(dt):
        if _has_denormals(y):
            raise Unsupported("denormal inputs to a transcendental function")
        return _via_float64(lambda a: np.power(a, y.astype(a.dtype)))(x, dt)
    if _count(_broadcast_shape(x.shape, y.shape)) and np.any(y < 0):
        raise KernelError("Integers to negative integer powers are not allowed")
    return np.power(x, y)


def _real_div(x: np.ndarray, y: np.ndarray, dt: np.dtype) -> Any:
    return np.true_divide(x, y)


for _op, _fn, _kinds, _flush_in in (
    ("Add", lambda x, y, dt: np.add(x, y), "iuf", True),
    ("AddV2", lambda x, y, dt: np.add(x, y), "iuf", True),
    ("Sub", lambda x, y, dt: np.subtract(x, y), "iuf", True),
    ("Mul", lambda x, y, dt: np.multiply(x, y), "iuf", True),
    ("RealDiv", _real_div, "f", True),
    ("Div", _div, "iuf", True),
    ("FloorDiv", _floor_div, "iuf", True),
    ("FloorMod", _floor_mod, "iuf", True),
    ("Maximum", lambda x, y, dt: np.maximum(x, y), "iuf", True),
    ("Minimum", lambda x, y, dt: np.minimum(x, y), "iuf", True),
    ("Pow", _pow, "iuf", False),
):
    KERNELS[_op] = _binary(_fn, _kinds, _flush_in)


def _sign(x: np.ndarray, dt: np.dtype) -> Any:
    s = np.sign(x)
    return s + 0 if _is_float(dt) else s  # TensorFlow's sign(-0.0) is +0.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


for _op, _fn, _kinds, _flush_in in (
    ("Neg", lambda x, dt: np.negative(x), "iuf", True),
    ("Abs", lambda x, dt: np.abs(x), "iuf", True),
    ("Square", lambda x, dt: np.multiply(x, x), "iuf", True),
    ("Sqrt", lambda x, dt: np.sqrt(x), "f", True),
    ("Rsqrt", _via_float64(lambda x: 1.0 / np.sqrt(x)), "f", False),
    ("Exp", _via_float64(np.exp), "f", False),
    ("Log", _via_float64(np.log), "f", False),
    ("Tanh", _via_float64(np.tanh), "f", False),
    ("Sigmoid", _via_float64(_sigmoid), "f", False),
    ("Reciprocal", _via_float64(lambda x: 1.0 / x), "f", False),
    ("Inv", _via_float64(lambda x: 1.0 / x), "f", False),
    ("Floor", lambda x, dt: np.floor(x), "f", True),
    ("Ceil", lambda x, dt: np.ceil(x), "f", True),
    ("Round", lambda x, dt: np.round(x), "f", True),  # half to even
    ("Sign", _sign, "iuf", True),
):
    KERNELS[_op] = _unary(_fn, _kinds, _flush_in)


def _compare(fn: Callable[[np.ndarray, np.ndarray], Any]) -> Kernel:
    def run(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
        dt = _np_dtype(node)
        x, y = (_flush(_arr(v, dt)) for v in xs)
        _broadcast_shape(x.shape, y.shape)
        return [_arr(fn(x, y), np.dtype(bool))]

    return run


for _op, _cmp in (
    ("Greater", np.greater),
    ("Less", np.less),
    ("GreaterEqual", np.greater_equal),
    ("LessEqual", np.less_equal),
    ("Equal", np.equal),
    ("NotEqual", np.not_equal),
):
    KERNELS[_op] = _compare(_cmp)


@kernel("LogicalAnd", "LogicalOr")
def _logical(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, y = (_arr(v, np.dtype(bool)) for v in xs)
    _broadcast_shape(x.shape, y.shape)
    fn = np.logical_and if node.op == "LogicalAnd" else np.logical_or
    return [_arr(fn(x, y), np.dtype(bool))]


@kernel("LogicalNot")
def _logical_not(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [_arr(np.logical_not(xs[0].astype(bool)), np.dtype(bool))]


@kernel("Select")
def _select(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    cond, x, y = xs
    dt = _np_dtype(node)
    if x.shape != y.shape:
        raise KernelError(f"'then' and 'else' must have the same shape: {x.shape} vs {y.shape}")
    if cond.ndim == 0:
        c = cond
    elif cond.shape == x.shape:
        c = cond
    elif cond.ndim == 1 and x.ndim >= 1 and cond.shape[0] == x.shape[0]:
        c = cond.reshape((-1,) + (1,) * (x.ndim - 1))
    else:
        raise KernelError(
            f"condition shape {list(cond.shape)} must be a scalar, the shape of 'then' "
            f"{list(x.shape)} or a vector of its first dimension"
        )
    return [_arr(np.where(c.astype(bool), x, y), dt)]


@kernel("SelectV2")
def _select_v2(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    cond, x, y = xs
    dt = _np_dtype(node)
    _broadcast_shape(cond.shape, x.shape, y.shape)
    return [_arr(np.where(cond.astype(bool), x, y), dt)]


@kernel("Cast")
def _cast(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    src, dst = _np_dtype(node, "SrcT"), _np_dtype(node, "DstT")
    x = _flush(_arr(xs[0], src))
    if _is_float(src) and dst.kind in "iu":
        # Out-of-range and NaN conversions are undefined in C++; TensorFlow's result is
        # whatever the CPU instruction gives, so such values are not folded.
        info = np.iinfo(dst)
        xt = np.trunc(x.astype(np.float64))
        if x.size and (
            not np.all(np.isfinite(xt)) or xt.min() < float(info.min) or xt.max() > float(info.max)
        ):
            raise Unsupported(f"cast of NaN, infinite or out-of-range values to {dst}")
        # float64 holds every int32 exactly; for 64-bit targets compare exactly too
        if dst.itemsize == 8 and x.size and np.abs(x).max() >= 2.0**63:
            raise Unsupported(f"cast of out-of-range values to {dst}")
    if node.attr("Truncate", False) and _is_float(dst) and dst.itemsize < src.itemsize:
        raise Unsupported("Cast with Truncate=true")
    if dst == np.dtype(bool):
        return [_arr(x != 0, dst)]
    return [_flush(_arr(x.astype(dst), dst))]


@kernel("Identity")
def _identity(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [xs[0]]


# ---------------------------------------------------------------------- shapes and layout
@kernel("Shape")
def _shape(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    dt = _np_dtype(node, "out_type") if node.attr("out_type") is not None else np.dtype(np.int32)
    return [np.array(xs[0].shape, dtype=dt).reshape(-1)]


@kernel("Size")
def _size(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    dt = _np_dtype(node, "out_type") if node.attr("out_type") is not None else np.dtype(np.int32)
    return [np.array(xs[0].size, dtype=dt)]


@kernel("Rank")
def _rank(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.array(xs[0].ndim, dtype=np.int32)]


@kernel("ZerosLike", "OnesLike")
def _zeros_like(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    dt = _np_dtype(node)
    fill = np.zeros if node.op == "ZerosLike" else np.ones
    return [fill(xs[0].shape, dtype=dt)]


def _reshape_target(x: np.ndarray, sizes: list[int]) -> tuple[int, ...]:
    """TensorFlow's ``Reshape`` shape resolution, zero-sized dimensions and -1 included."""
    shape = []
    product, unknown, sizes_have_zero = 1, -1, False
    for d, size in enumerate(sizes):
        if size == -1:
            if unknown != -1:
                raise KernelError(f"Only one input size may be -1, not both {unknown} and {d}")
            unknown = d
            shape.append(1)
        elif size < 0:
            raise KernelError(f"Size {d} must be non-negative, not {size}")
        else:
            shape.append(size)
            if size == 0:
                sizes_have_zero = True
            else:
                product *= size
    if unknown != -1:
        num, input_has_zero = 1, False
        for d in x.shape:
            if d > 0 or not sizes_have_zero:
                num *= d
            else:
                input_has_zero = True
        missing = num // product
        if not input_has_zero and product * missing != num:
            raise KernelError(
                f"Input to reshape is a tensor with {x.size} values, but the requested shape "
                f"requires a multiple of {product}"
            )
        shape[unknown] = missing
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise KernelError(
            f"Input to reshape is a tensor with {x.size} values, but the requested shape "
            f"{shape} has {int(np.prod(shape, dtype=np.int64))}"
        )
    return tuple(shape)


@kernel("Reshape")
def _reshape(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, sizes = xs
    if sizes.ndim > 1:
        raise KernelError(f"shape must be a vector, not {list(sizes.shape)}")
    return [x.reshape(_reshape_target(x, _ints(sizes, "shape")))]


@kernel("Transpose")
def _transpose(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, perm = xs
    p = _vector(perm, "perm")
    if len(p) != x.ndim:
        raise KernelError(f"transpose expects a vector of size {x.ndim}, got {len(p)}")
    p = [_axis(v, x.ndim, "perm entry") for v in p]
    if sorted(p) != list(range(x.ndim)):
        raise KernelError(f"{_vector(perm, 'perm')} is not a permutation")
    return [_contiguous(np.transpose(x, p))]


@kernel("ExpandDims")
def _expand_dims(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, dim = xs
    axis = _axis(int(_scalar(dim, "dim")), x.ndim + 1, "dim")
    return [np.expand_dims(x, axis)]


@kernel("Squeeze")
def _squeeze(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    dims = node.attr("squeeze_dims") or node.attr("axis") or []
    if not dims:
        return [x.reshape([d for d in x.shape if d != 1])]
    axes = {_axis(int(d), x.ndim, "squeeze dim") for d in dims}
    for a in sorted(axes):
        if x.shape[a] != 1:
            raise KernelError(
                f"Can not squeeze dim[{a}], expected a dimension of 1, got {x.shape[a]}"
            )
    return [x.reshape([d for i, d in enumerate(x.shape) if i not in axes])]


@kernel("Pack")
def _pack(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    _same_shape(node, xs)
    axis = _axis(int(node.attr("axis", 0)), xs[0].ndim + 1)
    return [_arr(np.stack(xs, axis=axis), _np_dtype(node))]


@kernel("Unpack")
def _unpack(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    axis = _axis(int(node.attr("axis", 0)), x.ndim)
    num = int(node.attr("num"))
    if x.shape[axis] != num:
        raise KernelError(f"Input shape axis {axis} must equal {num}, got shape {list(x.shape)}")
    return [_contiguous(np.take(x, i, axis=axis)) for i in range(num)]


def _concat(node: Node, values: list[np.ndarray], axis_arr: np.ndarray) -> list[np.ndarray]:
    ref = values[0]
    if ref.ndim == 0:
        raise KernelError("Can't concatenate scalars (use tf.stack instead)")
    axis = _axis(int(_scalar(axis_arr, "axis")), ref.ndim)
    for v in values[1:]:
        if v.ndim != ref.ndim or any(
            a != b for i, (a, b) in enumerate(zip(v.shape, ref.shape)) if i != axis
        ):
            raise KernelError(
                f"ConcatOp : Dimension mismatch: {list(ref.shape)} vs {list(v.shape)}"
            )
    return [_arr(np.concatenate(values, axis=axis), _np_dtype(node))]


@kernel("ConcatV2")
def _concat_v2(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return _concat(node, xs[:-1], xs[-1])


@kernel("Concat")
def _concat_v1(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return _concat(node, xs[1:], xs[0])


@kernel("Split")
def _split(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    axis_arr, x = xs
    n = int(node.attr("num_split"))
    axis = _axis(int(_scalar(axis_arr, "axis")), x.ndim)
    if x.shape[axis] % n:
        raise KernelError(
            f"Number of ways to split should evenly divide the split dimension, but got "
            f"split_dim {axis} (size = {x.shape[axis]}) and num_split {n}"
        )
    return [_contiguous(p) for p in np.split(x, n, axis=axis)]


@kernel("SplitV")
def _split_v(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, sizes_arr, axis_arr = xs
    n = int(node.attr("num_split"))
    axis = _axis(int(_scalar(axis_arr, "axis")), x.ndim)
    sizes = _ints(sizes_arr, "size_splits")
    if len(sizes) != n:
        raise KernelError(f"size_splits has {len(sizes)} entries, expected {n}")
    unknown = [i for i, s in enumerate(sizes) if s == -1]
    if len(unknown) > 1:
        raise KernelError("There can only be one -1 in the input.")
    if unknown:
        sizes[unknown[0]] = x.shape[axis] - (sum(sizes) + 1)
    if any(s < 0 for s in sizes) or sum(sizes) != x.shape[axis]:
        raise KernelError(
            f"Determined shape must either match input shape along split_dim exactly if fully "
            f"specified, or be less than the size of the input along split_dim if not fully "
            f"specified. Got: {sum(sizes)}"
        )
    cuts = np.cumsum(sizes)[:-1]
    return [_contiguous(p) for p in np.split(x, cuts, axis=axis)]


@kernel("Slice")
def _slice(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, begin_arr, size_arr = xs
    begin, size = _ints(begin_arr, "begin"), _ints(size_arr, "size")
    if len(begin) != x.ndim or len(size) != x.ndim:
        raise KernelError(
            f"Expected begin and size arguments to be 1-D tensors of size {x.ndim}, but got "
            f"shapes {list(begin_arr.shape)} and {list(size_arr.shape)} instead."
        )
    index = []
    for i, (b, s, d) in enumerate(zip(begin, size, x.shape)):
        if s == -1:
            s = d - b
        if b < 0 or s < 0 or b + s > d:
            raise KernelError(
                f"Expected begin[{i}] in [0, {d}] and size[{i}] in [0, {d - b}], but got "
                f"{b} and {s}"
            )
        index.append(slice(b, b + s))
    return [_contiguous(x[tuple(index)])]


_NEW_AXIS, _SHRINK_AXIS = -1, -2


def strided_slice_spec(
    shape: Sequence[int],
    begin: Sequence[int],
    end: Sequence[int],
    strides: Sequence[int],
    *,
    begin_mask: int = 0,
    end_mask: int = 0,
    ellipsis_mask: int = 0,
    new_axis_mask: int = 0,
    shrink_axis_mask: int = 0,
) -> tuple[tuple[slice, ...], tuple[int, ...]]:
    """TensorFlow's ``StridedSlice`` arguments as numpy slices (one per input dimension,
    giving the "processing shape") and the final shape to reshape the sliced array to.

    A transcription of ``ValidateStridedSliceOp`` (tensorflow/core/util/strided_slice_op.cc):
    the sparse spec is expanded to one entry per input dimension (an ellipsis covers the
    dimensions the spec does not name; without one, an ellipsis is implied at the end),
    then every range is canonicalised with TensorFlow's clamping rules.
    """
    n = len(begin)
    if not len(end) == len(strides) == n:
        raise KernelError(
            "Expected begin, end, and strides to be 1D equal size tensors, but got shapes "
            f"[{n}], [{len(end)}], and [{len(strides)}] instead."
        )
    if n > 32:
        raise KernelError(f"Too many dimensions in the slice spec: {n}")
    if ellipsis_mask & (ellipsis_mask - 1):
        raise KernelError("Multiple ellipses in slice spec not allowed")
    # sparse spec -> dense spec
    ellipsis_seen = False
    add_after_ellipsis = 0
    for i in range(n):
        if ellipsis_seen and (new_axis_mask >> i) & 1:
            add_after_ellipsis += 1
        if (ellipsis_mask >> i) & 1:
            ellipsis_seen = True
    sparse_dims = n
    if not ellipsis_seen:
        ellipsis_mask |= 1 << n
        sparse_dims += 1
    rank = len(shape)
    d_begin, d_end, d_stride = [0] * rank, [0] * rank, [1] * rank
    d_begin_mask = d_end_mask = d_shrink = 0
    gather: list[int] = []  # final shape: a dense index, _NEW_AXIS or _SHRINK_AXIS
    full = 0
    for i in range(sparse_dims):
        if (ellipsis_mask >> i) & 1:
            nxt = min(rank - (sparse_dims - i) + 1 + add_after_ellipsis, rank)
            while full < nxt:
                d_begin[full], d_end[full], d_stride[full] = 0, 0, 1
                d_begin_mask |= 1 << full
                d_end_mask |= 1 << full
                gather.append(full)
                full += 1
        elif (new_axis_mask >> i) & 1:
            gather.append(_NEW_AXIS)
        else:
            if full == rank:
                if rank == 0:
                    raise KernelError("Attempting to slice scalar input.")
                raise KernelError(
                    f"Index out of range using input dim {full}; input has only {rank} dims"
                )
            d_begin[full], d_end[full], d_stride[full] = begin[i], end[i], strides[i]
            d_begin_mask |= ((begin_mask >> i) & 1) << full
            d_end_mask |= ((end_mask >> i) & 1) << full
            if (shrink_axis_mask >> i) & 1:
                gather.append(_SHRINK_AXIS)
                d_shrink |= 1 << full
            else:
                gather.append(full)
            full += 1
    # canonicalise each dense dimension
    slices: list[slice] = []
    sizes: list[int] = []
    for i in range(rank):
        b, e, s, dim = d_begin[i], d_end[i], d_stride[i], shape[i]
        if s == 0:
            raise KernelError(f"strides[{i}] must be non-zero")
        shrink = bool((d_shrink >> i) & 1)
        if shrink and s <= 0:
            raise KernelError("only stride 1 allowed on non-range indexing.")
        if shrink:
            x_fwd = dim + b if b < 0 else b
            if x_fwd < 0 or x_fwd >= dim:
                raise KernelError(f"slice index {b} of dimension {i} out of bounds.")
            b, e = x_fwd, x_fwd + 1
        else:
            b = _canonical(b, 0, s, dim, bool((d_begin_mask >> i) & 1))
            e = _canonical(e, 1, s, dim, bool((d_end_mask >> i) & 1))
        length = e - b
        if length == 0 or (length < 0) != (s < 0):
            size = 0
        else:
            size = -(-abs(length) // abs(s))  # ceil(|length| / |stride|)
        sizes.append(size)
        if size == 0:
            slices.append(slice(0, 0))
        else:
            stop = b + size * s
            slices.append(slice(b, None if stop < 0 else stop, s))
    final = []
    for g in gather:
        if g >= 0:
            final.append(sizes[g])
        elif g == _NEW_AXIS:
            final.append(1)
    return tuple(slices), tuple(final)


def _canonical(x: int, c: int, stride: int, dim: int, masked: bool) -> int:
    """TensorFlow's clamping of a begin (``c`` = 0) or end (``c`` = 1) index."""
    valid = (0, dim) if stride > 0 else (-1, dim - 1)
    if masked:
        return valid[c] if stride > 0 else valid[1 - c]
    x_fwd = dim + x if x < 0 else x
    return min(max(x_fwd, valid[0]), valid[1])


@kernel("StridedSlice")
def _strided_slice(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, begin, end, strides = xs
    for arr, what in ((begin, "begin"), (end, "end"), (strides, "strides")):
        if arr.ndim != 1:
            raise KernelError(f"{what} must be a vector, got shape {list(arr.shape)}")
    index, final = strided_slice_spec(
        x.shape,
        _ints(begin, "begin"),
        _ints(end, "end"),
        _ints(strides, "strides"),
        begin_mask=int(node.attr("begin_mask", 0)),
        end_mask=int(node.attr("end_mask", 0)),
        ellipsis_mask=int(node.attr("ellipsis_mask", 0)),
        new_axis_mask=int(node.attr("new_axis_mask", 0)),
        shrink_axis_mask=int(node.attr("shrink_axis_mask", 0)),
    )
    return [_contiguous(x[index]).reshape(final)]


@kernel("Tile")
def _tile(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, multiples = xs
    m = _vector(multiples, "multiples")
    if len(m) != x.ndim:
        raise KernelError(
            f"Expected multiples argument to be a vector of length {x.ndim} but got length "
            f"{len(m)}"
        )
    if any(v < 0 for v in m):
        raise KernelError(f"Expected multiples to be non-negative, got {m}")
    return [np.tile(x, m) if x.ndim else x.copy()]


def _paddings(x: np.ndarray, pads: np.ndarray) -> list[tuple[int, int]]:
    if pads.shape != (x.ndim, 2):
        raise KernelError(
            f"paddings must be a matrix with 2 columns and {x.ndim} rows: {list(pads.shape)}"
        )
    out = [(int(a), int(b)) for a, b in np.asarray(pads).reshape(-1, 2)]
    if any(a < 0 or b < 0 for a, b in out):
        raise KernelError(f"Paddings must be non-negative: {out}")
    return out


@kernel("Pad", "PadV2")
def _pad(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, pads = xs[0], xs[1]
    value = _scalar(xs[2], "constant_values") if node.op == "PadV2" else 0
    p = _paddings(x, pads)
    if x.ndim == 0:  # numpy's pad rejects a scalar; padding nothing copies it
        return [x.copy()]
    return [
        _arr(np.pad(x, p, mode="constant", constant_values=value), x.dtype)
    ]


@kernel("MirrorPad")
def _mirror_pad(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, pads = xs
    mode = str(node.attr("mode", "")).upper()
    if mode not in ("REFLECT", "SYMMETRIC"):
        raise Unsupported(f"MirrorPad mode {mode!r}")
    p = _paddings(x, pads)
    offset = 1 if mode == "REFLECT" else 0
    for i, ((a, b), d) in enumerate(zip(p, x.shape)):
        if a > d - offset or b > d - offset:
            raise KernelError(
                f"paddings must be no greater than the dimension size: {a}, {b} greater than "
                f"{d - offset} (dimension {i})"
            )
    if x.ndim == 0:
        return [x.copy()]
    return [np.pad(x, p, mode="reflect" if mode == "REFLECT" else "symmetric")]


@kernel("Fill")
def _fill(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    dims, value = xs
    shape = _vector(dims, "dims")
    if any(d < 0 for d in shape):
        raise KernelError(f"dims must be non-negative: {shape}")
    if value.ndim != 0:
        raise KernelError(f"value must be a scalar, got shape {list(value.shape)}")
    return [np.full(shape, value, dtype=_np_dtype(node))]


def _range_args(node: Node, xs: list[np.ndarray]) -> tuple[Any, Any, Any, np.dtype, int]:
    dt = _np_dtype(node, "Tidx")
    start, limit, delta = (_arr(_scalar(v, w), dt) for v, w in zip(xs, ("start", "limit", "delta")))
    if delta == 0:
        raise KernelError(f"Requires delta != 0: {delta}")
    if delta > 0 and start > limit:
        raise KernelError(f"Requires start <= limit when delta > 0: {start}/{limit}")
    if delta < 0 and start < limit:
        raise KernelError(f"Requires start >= limit when delta < 0: {start}/{limit}")
    if _is_float(dt):
        size_f = np.ceil(np.abs(np.true_divide(limit - start, delta)))  # in the node's dtype
        if not np.isfinite(size_f) or size_f > 2**62:
            raise KernelError("Requires ((limit - start) / delta) <= int64 max")
        size = int(size_f)
    else:
        span = abs(int(limit) - int(start))
        size = (span + abs(int(delta)) - 1) // abs(int(delta))
    return start, limit, delta, dt, size


@kernel("Range")
def _range(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    start, _, delta, dt, size = _range_args(node, xs)
    # TensorFlow: out[i] = start + T(i) * delta, in T
    return [_flush(_arr(start + np.arange(size).astype(dt) * delta, dt))]


# ---------------------------------------------------------------------- reductions
def _reduction_axes(x: np.ndarray, axis_arr: np.ndarray) -> tuple[int, ...]:
    if axis_arr.ndim > 1:
        raise KernelError(f"axis must be a scalar or a vector, got {list(axis_arr.shape)}")
    axes = []
    for a in _ints(axis_arr, "axis"):
        if not -x.ndim <= a < x.ndim:
            raise KernelError(
                f"Invalid reduction dimension ({a} for input with {x.ndim} dimension(s)"
            )
        a = a + x.ndim if a < 0 else a
        if a in axes:
            raise KernelError(
                f"Invalid reduction arguments: Axes contains duplicate dimension: {a}"
            )
        axes.append(a)
    return tuple(sorted(axes))


@kernel("Sum", "Mean", "Prod", "Max", "Min", "Any", "All")
def _reduce(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, axis_arr = xs
    if node.op in ("Any", "All"):
        dt = np.dtype(bool)
    else:
        dt = _np_dtype(node)
        if dt.kind == "b":
            raise Unsupported(f"{node.op} on bool")
    x = _flush(_arr(x, dt))
    axes = _reduction_axes(x, axis_arr)
    keep = bool(node.attr("keep_dims", False))
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    op = node.op
    if op in ("Any", "All"):
        out = (np.any if op == "Any" else np.all)(x, axis=axes, keepdims=keep)
    elif op in ("Max", "Min"):
        if count == 0:  # Eigen's identity elements
            if _is_float(dt):
                ident = -np.inf if op == "Max" else np.inf
            else:
                info = np.iinfo(dt)
                ident = info.min if op == "Max" else info.max
            shape = [1 if i in axes else d for i, d in enumerate(x.shape)]
            if not keep:
                shape = [d for i, d in enumerate(x.shape) if i not in axes]
            out = np.full(shape, ident, dtype=dt)
        else:
            out = (np.max if op == "Max" else np.min)(x, axis=axes, keepdims=keep)
    elif _is_float(dt):
        acc = np.float64 if dt.itemsize <= 8 else dt
        if op == "Prod":
            out = np.prod(x, axis=axes, dtype=acc, keepdims=keep).astype(dt)
        else:
            out = np.sum(x, axis=axes, dtype=acc, keepdims=keep).astype(dt)
            if op == "Mean":  # TensorFlow: sum / T(count)
                out = np.true_divide(out, dt.type(count)).astype(dt)
    else:  # integers wrap around, as in TensorFlow
        if op == "Prod":
            out = np.prod(x, axis=axes, dtype=dt, keepdims=keep)
        else:
            out = np.sum(x, axis=axes, dtype=dt, keepdims=keep)
            if op == "Mean":
                if count == 0:
                    raise Unsupported("integer Mean over an empty axis")
                out = _trunc_div(_arr(out, dt), _arr(count, dt))
    return [_flush(_arr(out, dt))]


@kernel("AddN")
def _add_n(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    dt = _np_dtype(node)
    _same_shape(node, xs)
    xs = [_flush(_arr(x, dt)) for x in xs]
    if len(xs) == 1:
        return [xs[0]]

    def fold(chunk: list[np.ndarray]) -> np.ndarray:
        acc = chunk[0].copy()
        for x in chunk[1:]:
            np.add(acc, x, out=acc)
            acc = _flush(acc)
        return acc

    # TensorFlow's order (aggregate_ops.cc): the first 2..9 inputs left to right, then
    # out += (x[i] + ... + x[i+7]) for each following group of eight.
    head = len(xs) % 8
    head = 8 if head == 0 else 9 if head == 1 else head
    out = fold(xs[:head])
    for i in range(head, len(xs), 8):
        out = _flush(np.add(out, fold(xs[i : i + 8])))
    return [out]


# ---------------------------------------------------------------------- linear algebra
def _matmul(a: np.ndarray, b: np.ndarray, dt: np.dtype) -> np.ndarray:
    a, b = _flush(a), _flush(b)
    if _is_float(dt) and dt.itemsize < 8:
        return _flush(np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(dt))
    if dt.kind == "b":
        raise Unsupported("MatMul on bool")
    return _flush(np.matmul(a, b).astype(dt, copy=False))


@kernel("MatMul")
def _mat_mul(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    dt = _np_dtype(node)
    a, b = (_arr(v, dt) for v in xs)
    if a.ndim != 2 or b.ndim != 2:
        raise KernelError(f"In[0] and In[1] must be matrices: {list(a.shape)}, {list(b.shape)}")
    if node.attr("transpose_a", False):
        a = a.T
    if node.attr("transpose_b", False):
        b = b.T
    if a.shape[1] != b.shape[0]:
        raise KernelError(
            f"Matrix size-incompatible: In[0]: {list(a.shape)}, In[1]: {list(b.shape)}"
        )
    return [_matmul(a, b, dt)]


@kernel("BatchMatMul", "BatchMatMulV2")
def _batch_mat_mul(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    dt = _np_dtype(node)
    a, b = (_arr(v, dt) for v in xs)
    if a.ndim < 2 or b.ndim < 2:
        raise KernelError(f"inputs must be at least rank 2: {list(a.shape)}, {list(b.shape)}")
    if node.attr("adj_x", False):
        a = np.swapaxes(a, -1, -2)
    if node.attr("adj_y", False):
        b = np.swapaxes(b, -1, -2)
    if node.op == "BatchMatMul" and (a.ndim != b.ndim or a.shape[:-2] != b.shape[:-2]):
        raise KernelError(f"batch dimensions differ: {list(a.shape)} vs {list(b.shape)}")
    _broadcast_shape(a.shape[:-2], b.shape[:-2])
    if a.shape[-1] != b.shape[-2]:
        raise KernelError(
            f"Matrix size-incompatible: In[0]: {list(a.shape)}, In[1]: {list(b.shape)}"
        )
    return [_matmul(a, b, dt)]


# ---------------------------------------------------------------------- gathers and copies
@kernel("ReverseV2")
def _reverse(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, axis_arr = xs
    axes = [_axis(a, x.ndim) for a in _ints(axis_arr, "axis")]
    if len(set(axes)) != len(axes):
        raise KernelError(f"axis {axes} specified more than once")
    return [_contiguous(np.flip(x, axis=tuple(axes))) if axes else x]


@kernel("GatherV2")
def _gather(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    params, indices, axis_arr = xs
    if int(node.attr("batch_dims", 0)) != 0:
        raise Unsupported("GatherV2 with batch_dims != 0")
    if params.ndim == 0:
        raise KernelError("params must be at least 1 dimensional")
    axis = _axis(int(_scalar(axis_arr, "axis")), params.ndim)
    if indices.dtype.kind not in "iu":
        raise KernelError(f"indices must be integers, got {indices.dtype}")
    limit = params.shape[axis]
    bad = (indices < 0) | (indices >= limit)
    if np.any(bad):
        first = int(np.ravel(indices)[np.argmax(np.ravel(bad))])
        raise KernelError(f"indices = {first} is not in [0, {limit})")
    return [np.take(params, indices, axis=axis)]


@kernel("BroadcastTo")
def _broadcast_to(node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, shape_arr = xs
    shape = tuple(_vector(shape_arr, "shape"))
    if len(shape) < x.ndim:
        raise KernelError(f"Rank of input ({x.ndim}) must be no greater than rank of output shape")
    if _broadcast_shape(x.shape, shape) != shape:
        raise KernelError(f"Unable to broadcast tensor of shape {list(x.shape)} to {list(shape)}")
    return [np.array(np.broadcast_to(x, shape))]


# ---------------------------------------------------------------------- output size bounds
def _count(shape: Sequence[int]) -> int:
    return int(np.prod([max(int(d), 0) for d in shape], dtype=np.float64))


def _out_itemsize(node: Node, default: np.ndarray) -> int:
    for key in ("T", "dtype", "Tidx", "DstT"):
        dt = node.attr(key)
        if isinstance(dt, DType) and dt in SUPPORTED_DTYPES:
            return dt.numpy.itemsize
    return default.dtype.itemsize


_ELEMENTWISE = frozenset(
    """Add AddV2 Sub Mul RealDiv Div FloorDiv FloorMod Maximum Minimum Pow Greater Less
    GreaterEqual LessEqual Equal NotEqual LogicalAnd LogicalOr Select SelectV2""".split()
)


def predicted_nbytes(node: Node, inputs: Sequence[np.ndarray]) -> int | None:
    """An upper bound of the bytes ``node``'s outputs will take, for the ops whose output
    can be larger than their largest input (broadcasts, tiles, pads, gathers, products,
    concatenations, widening casts); None when not predictable or not needed.

    Lets a caller refuse to evaluate a ``Fill`` of a billion elements before allocating it.
    """
    op = node.op
    xs = [np.asarray(x) for x in inputs]
    try:
        if op == "Fill":
            return _count(np.ravel(xs[0])) * xs[1].dtype.itemsize
        if op == "Tile":
            return xs[0].nbytes * _count(np.ravel(xs[1]))
        if op == "BroadcastTo":
            return _count(np.ravel(xs[1])) * xs[0].dtype.itemsize
        if op in ("Pad", "PadV2", "MirrorPad"):
            pads = np.asarray(xs[1]).reshape(-1, 2)
            dims = [d + int(a) + int(b) for d, (a, b) in zip(xs[0].shape, pads)]
            return _count(dims) * xs[0].dtype.itemsize
        if op == "Range":
            *_, dt, size = _range_args(node, xs)
            return size * dt.itemsize
        if op == "Pack":
            return sum(x.nbytes for x in xs)
        if op in ("ConcatV2", "Concat"):
            values = xs[:-1] if op == "ConcatV2" else xs[1:]
            return sum(x.nbytes for x in values)
        if op == "Cast":
            dst = node.attr("DstT")
            itemsize = dst.numpy.itemsize if isinstance(dst, DType) and dst in SUPPORTED_DTYPES \
                else xs[0].dtype.itemsize
            return xs[0].size * itemsize
        if op in ("ZerosLike", "OnesLike"):
            return xs[0].size * _out_itemsize(node, xs[0])
        if op == "GatherV2":
            params, indices = xs[0], xs[1]
            axis = _axis(int(_scalar(xs[2], "axis")), params.ndim)
            return int(params.size // max(params.shape[axis], 1)) * indices.size * (
                params.dtype.itemsize
            )
        if op == "MatMul":
            a, b = xs
            rows = a.shape[1] if node.attr("transpose_a", False) else a.shape[0]
            cols = b.shape[0] if node.attr("transpose_b", False) else b.shape[1]
            return rows * cols * a.dtype.itemsize
        if op in ("BatchMatMul", "BatchMatMulV2"):
            a, b = xs
            rows = a.shape[-1] if node.attr("adj_x", False) else a.shape[-2]
            cols = b.shape[-2] if node.attr("adj_y", False) else b.shape[-1]
            batch = _broadcast_shape(a.shape[:-2], b.shape[:-2])
            return _count(batch) * rows * cols * a.dtype.itemsize
        if op in _ELEMENTWISE:
            shape = _broadcast_shape(*(x.shape for x in xs))
            return _count(shape) * _out_itemsize(node, xs[-1])
    except (KernelError, Unsupported, ValueError, IndexError, TypeError):
        return None
    return None
