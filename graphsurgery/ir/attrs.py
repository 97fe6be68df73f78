"""Converting ``AttrValue``/``TensorProto`` to Python values and back, without TensorFlow.

Constants are decoded only when asked for: :func:`tensor_to_numpy` is called by
:meth:`Graph.const_value`, never when a graph is loaded or copied. Loading checks every
tensor with :func:`tensor_problem`, which reads sizes only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GraphError
from . import proto
from .dtypes import DType

# Which repeated TensorProto field holds values of each dtype.
_VAL_FIELD = {
    DType.float32: "float_val",
    DType.float64: "double_val",
    DType.int32: "int_val",
    DType.uint8: "int_val",
    DType.int16: "int_val",
    DType.int8: "int_val",
    DType.uint16: "int_val",
    DType.int64: "int64_val",
    DType.bool: "bool_val",
    DType.float16: "half_val",
    DType.uint32: "uint32_val",
    DType.uint64: "uint64_val",
    DType.string: "string_val",
    DType.complex64: "scomplex_val",
    DType.complex128: "dcomplex_val",
}


class TensorDecodeError(GraphError, ValueError):
    """A constant that cannot be decoded (malformed, unsupported or too large), naming its
    node. Also a ValueError, which is what decoding raised before it named the node."""


# Integer dtypes without a numpy type whose values live in ``int_val``.
_INT_VAL_ONLY = (DType.qint8, DType.quint8, DType.qint16, DType.quint16, DType.qint32)
# Decoding a constant whose declared shape is filled from fewer stored values never
# materialises more than this by default (see :func:`tensor_to_numpy`).
DECODE_LIMIT = 1 << 30


def shape_of(shape_proto: Any) -> tuple[int, ...] | None:
    """A ``TensorShapeProto`` as a tuple (-1 for an unknown dimension), None for unknown rank."""
    if shape_proto.unknown_rank:
        return None
    return tuple(int(d.size) for d in shape_proto.dim)


def make_shape(shape: Sequence[int | None] | None) -> Any:
    sp = proto.TensorShapeProto()
    if shape is None:
        sp.unknown_rank = True
        return sp
    for d in shape:
        sp.dim.add(size=-1 if d is None else int(d))
    return sp


def tensor_shape(tp: Any) -> tuple[int, ...]:
    """Static shape of a TensorProto, without decoding its values."""
    return tuple(int(d.size) for d in tp.tensor_shape.dim)


def _num_values(tp: Any, dtype: DType) -> int:
    """How many values the dtype's repeated ``*_val`` field stores."""
    field = _VAL_FIELD.get(dtype, "int_val" if dtype in _INT_VAL_ONLY else None)
    if field is None:
        return 0
    n = len(getattr(tp, field))
    return n // 2 if dtype in (DType.complex64, DType.complex128) else n


def _pretty_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def tensor_problem(tp: Any) -> str | None:
    """Why a TensorProto is malformed, or None when TensorFlow would accept it.

    Checks what :func:`tensor_to_numpy` relies on: a known dtype, no negative or unknown
    dimension, ``tensor_content`` of exactly ``elements * itemsize`` bytes and not mixed with
    ``*_val`` values. Reads sizes only, so it is cheap on any tensor (the payload is not
    copied; a declared shape larger than the payload, TensorFlow's fill-with-the-last-value
    convention, is legal and left to the bound of :func:`tensor_to_numpy`).
    """
    try:
        dtype = DType.of(tp.dtype)
    except ValueError:
        return f"unknown dtype {tp.dtype}"
    if tp.tensor_shape.unknown_rank:
        return "a constant of unknown rank"
    dims = [int(d.size) for d in tp.tensor_shape.dim]
    if any(d < 0 for d in dims):
        return f"negative dimension in shape {dims}"
    count = math.prod(dims)
    if count >= 1 << 63:
        return f"shape {dims} has more than 2**63 elements"
    itemsize = dtype.itemsize
    content = len(tp.tensor_content) if itemsize is not None else 0
    if content:
        values = _num_values(tp, dtype)
        if values:
            field = _VAL_FIELD.get(dtype, "int_val")
            return f"both tensor_content and {field} ({values} values) are set"
        if content != count * itemsize:
            return (
                f"{content} bytes of tensor_content for shape {dims} {dtype.name} "
                f"(needs {count * itemsize})"
            )
    return None


def tensor_to_numpy(tp: Any, max_bytes: int | None = None) -> np.ndarray:
    """Decode a TensorProto to a new, read-only numpy array.

    A malformed tensor (see :func:`tensor_problem`) raises ValueError. A tensor whose shape
    is filled from fewer stored values (TensorFlow repeats the last one; none stored means
    zeros) is expanded only up to ``max_bytes`` (default :data:`DECODE_LIMIT`): a few bytes
    of file must not become gigabytes of memory. Callers name the node in their error.
    """
    problem = tensor_problem(tp)
    if problem is not None:
        raise ValueError(problem)
    dtype = DType.of(tp.dtype)
    shape = tensor_shape(tp)
    count = math.prod(shape)
    if dtype == DType.bfloat16:
        raise ValueError("bfloat16 constants are not supported")
    npt = dtype.numpy
    limit = DECODE_LIMIT if max_bytes is None else max_bytes
    nbytes = count * npt.itemsize
    if nbytes > limit and _num_values(tp, dtype) < count and not tp.tensor_content:
        raise ValueError(
            f"declares shape {list(shape)} {dtype.name} ({_pretty_bytes(nbytes)}) from "
            f"{_num_values(tp, dtype)} stored value(s); decoding it would exceed the "
            f"{_pretty_bytes(limit)} limit"
        )
    content = tp.tensor_content  # a fresh bytes object: reading the field copies it
    if content and dtype != DType.string:
        arr = np.frombuffer(content, dtype=npt)  # read-only, owns nothing else
    else:
        values = getattr(tp, _VAL_FIELD[dtype])
        if dtype == DType.string:
            arr = np.array(list(values), dtype=object)
        elif dtype == DType.float16:
            arr = np.array(values, dtype=np.uint16).view(np.float16)
        elif dtype in (DType.complex64, DType.complex128):
            flat = np.array(values, dtype=np.float32 if dtype == DType.complex64 else np.float64)
            arr = flat[0::2] + 1j * flat[1::2]
            arr = arr.astype(npt)
        else:
            arr = np.array(values, dtype=npt)
        if arr.size == 0 and count:
            arr = np.zeros(count, dtype=npt)
        elif arr.size > count:
            arr = arr[:count]  # TensorFlow ignores values beyond the shape
        elif arr.size != count and arr.size:
            # TensorFlow repeats the last value to fill the shape.
            fill = np.full(count, arr[-1], dtype=npt)
            fill[: arr.size] = arr
            arr = fill
    arr = arr.reshape(shape)
    arr.setflags(write=False)
    return arr


def numpy_to_tensor(value: Any, dtype: DType | None = None) -> Any:
    """Encode a numpy array (or anything ``np.asarray`` accepts) as a TensorProto."""
    if dtype is not None:
        arr = np.asarray(value, dtype=DType.of(dtype).numpy)
    else:
        arr = np.asarray(value)
        if arr.dtype == np.float64 and not isinstance(value, np.ndarray):
            arr = arr.astype(np.float32)  # Python floats become float32, as in TF
        elif arr.dtype == np.int64 and not isinstance(value, np.ndarray):
            arr = arr.astype(np.int32)
    dt = DType.of(arr.dtype) if arr.dtype != object else DType.string
    tp = proto.TensorProto(dtype=int(dt))
    tp.tensor_shape.CopyFrom(make_shape(arr.shape))
    if dt == DType.string:
        tp.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel())
    else:
        tp.tensor_content = np.ascontiguousarray(arr).tobytes()
    return tp


@dataclass(frozen=True)
class FuncAttr:
    """A ``func`` attribute: a function name and its attributes."""

    name: str
    attrs: dict[str, Any]


def attr_to_python(av: Any) -> Any:
    """Decode an AttrValue: ints, floats, bools, str, DType, shape tuples, arrays, lists."""
    kind = av.WhichOneof("value")
    if kind is None:
        return None
    if kind == "s":
        try:
            return av.s.decode()
        except UnicodeDecodeError:
            return av.s
    if kind in ("i", "f", "b"):
        return getattr(av, kind)
    if kind == "type":
        return DType.of(av.type)
    if kind == "shape":
        return shape_of(av.shape)
    if kind == "tensor":
        return tensor_to_numpy(av.tensor)
    if kind == "placeholder":
        return av.placeholder
    if kind == "func":
        return FuncAttr(av.func.name, {k: attr_to_python(v) for k, v in av.func.attr.items()})
    lv = av.list
    for field in ("s", "i", "f", "b", "type", "shape", "tensor", "func"):
        items = getattr(lv, field)
        if len(items):
            if field == "s":
                return [x.decode(errors="replace") for x in items]
            if field == "type":
                return [DType.of(x) for x in items]
            if field == "shape":
                return [shape_of(x) for x in items]
            if field == "tensor":
                return [tensor_to_numpy(x) for x in items]
            if field == "func":
                return [FuncAttr(x.name, {}) for x in items]
            return list(items)
    return []


def python_to_attr(value: Any) -> Any:
    """Encode a Python value as an AttrValue (the inverse of :func:`attr_to_python`).

    ``DType`` -> type, bool -> b, int -> i, float -> f, str/bytes -> s, numpy array -> tensor,
    ``tuple`` of ints -> shape only when wrapped in :class:`Shape`, list -> list of the
    element kind.
    """
    av = proto.AttrValue()
    if isinstance(value, proto.AttrValue):
        av.CopyFrom(value)
    elif isinstance(value, Shape):
        av.shape.CopyFrom(make_shape(value.dims))
    elif isinstance(value, DType):
        av.type = int(value)
    elif isinstance(value, bool | np.bool_):
        av.b = bool(value)
    elif isinstance(value, int | np.integer):
        av.i = int(value)
    elif isinstance(value, float | np.floating):
        av.f = float(value)
    elif isinstance(value, str):
        av.s = value.encode()
    elif isinstance(value, bytes):
        av.s = value
    elif isinstance(value, np.ndarray):
        av.tensor.CopyFrom(numpy_to_tensor(value))
    elif isinstance(value, FuncAttr):
        av.func.name = value.name
        for k, v in value.attrs.items():
            av.func.attr[k].CopyFrom(python_to_attr(v))
    elif isinstance(value, list | tuple):
        lv = av.list
        av.list.SetInParent()
        for item in value:
            if isinstance(item, DType):
                lv.type.append(int(item))
            elif isinstance(item, bool | np.bool_):
                lv.b.append(bool(item))
            elif isinstance(item, int | np.integer):
                lv.i.append(int(item))
            elif isinstance(item, float | np.floating):
                lv.f.append(float(item))
            elif isinstance(item, str | bytes):
                lv.s.append(item.encode() if isinstance(item, str) else item)
            elif isinstance(item, Shape):
                lv.shape.add().CopyFrom(make_shape(item.dims))
            else:
                raise TypeError(f"cannot encode list item {item!r} as an attribute")
    else:
        raise TypeError(f"cannot encode {value!r} as an attribute")
    return av


def make_node_def(name: str, op: str, inputs: Sequence[str], attrs: dict[str, Any]) -> Any:
    """A new NodeDef, for writing a node under a name that exists already (through
    :meth:`graphsurgery.Rewriter.replace_node_def`; ``add_node`` always picks a fresh name)."""
    nd = proto.NodeDef(name=name, op=op)
    nd.input.extend(inputs)
    for key, value in attrs.items():
        nd.attr[key].CopyFrom(python_to_attr(value))
    return nd


@dataclass(frozen=True)
class Shape:
    """Marks a tuple as a shape attribute (``None``/-1 for unknown dims; dims=None: unknown)."""

    dims: tuple[int | None, ...] | None
