"""TensorFlow ``DataType`` enum values and their numpy equivalents (no TensorFlow import)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class DType(IntEnum):
    """Values of ``tensorflow.DataType``; ``*_ref`` types are the value plus 100."""

    invalid = 0
    float32 = 1
    float64 = 2
    int32 = 3
    uint8 = 4
    int16 = 5
    int8 = 6
    string = 7
    complex64 = 8
    int64 = 9
    bool = 10
    qint8 = 11
    quint8 = 12
    qint32 = 13
    bfloat16 = 14
    qint16 = 15
    quint16 = 16
    uint16 = 17
    complex128 = 18
    float16 = 19
    resource = 20
    variant = 21
    uint32 = 22
    uint64 = 23

    @classmethod
    def of(cls, value: int | str | np.dtype | type | DType) -> DType:
        """Coerce an enum value, a name (``"float32"``, ``"float"``) or a numpy dtype."""
        if isinstance(value, DType):
            return value
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            v = int(value)
            return cls(v - 100 if v > 100 else v)
        if isinstance(value, str):
            alias = {"float": "float32", "double": "float64", "half": "float16"}
            return cls[alias.get(value, value)]
        np_dtype = np.dtype(value)
        for dt, npt in _NUMPY.items():
            if npt == np_dtype:
                return dt
        raise ValueError(f"no TensorFlow dtype for numpy {np_dtype}")

    @property
    def numpy(self) -> np.dtype:
        try:
            return _NUMPY[self]
        except KeyError:
            raise ValueError(f"dtype {self.name} has no numpy equivalent") from None

    @property
    def itemsize(self) -> int | None:
        """Bytes per element; None for strings, resources, variants and unknown sizes."""
        if self == DType.string:
            return None
        npt = _NUMPY.get(self)
        return npt.itemsize if npt is not None else _OTHER_ITEMSIZE.get(self)

    @property
    def is_floating(self) -> bool:
        return self in (DType.float16, DType.bfloat16, DType.float32, DType.float64)


_NUMPY: dict[DType, np.dtype] = {
    DType.float32: np.dtype(np.float32),
    DType.float64: np.dtype(np.float64),
    DType.int32: np.dtype(np.int32),
    DType.uint8: np.dtype(np.uint8),
    DType.int16: np.dtype(np.int16),
    DType.int8: np.dtype(np.int8),
    DType.string: np.dtype(object),
    DType.complex64: np.dtype(np.complex64),
    DType.int64: np.dtype(np.int64),
    DType.bool: np.dtype(np.bool_),
    DType.uint16: np.dtype(np.uint16),
    DType.complex128: np.dtype(np.complex128),
    DType.float16: np.dtype(np.float16),
    DType.uint32: np.dtype(np.uint32),
    DType.uint64: np.dtype(np.uint64),
}

_OTHER_ITEMSIZE: dict[DType, int] = {
    DType.bfloat16: 2,
    DType.qint8: 1,
    DType.quint8: 1,
    DType.qint16: 2,
    DType.quint16: 2,
    DType.qint32: 4,
}


def is_ref(value: int) -> bool:
    """True for reference dtypes (``float_ref`` and friends) left by variables."""
    return int(value) > 100
