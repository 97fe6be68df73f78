"""Running an ``.mlpackage`` with Core ML (macOS only), behind graphsurgery's Runner interface.

Core ML predictions need macOS: coremltools on Linux loads and converts models but
``MLModel.predict`` raises. :func:`prediction_unavailable` says so in one line on other
systems, and ``graphsurgery verify model.mlpackage --reference model.pb`` (and ``run
--verify``) then stop at the structural audit. On macOS::

    with CoreMLRunner("out/model.mlpackage") as lite:
        images, = lite.run({"latents_in": z})
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...graph_runner import Runner, TensorSpec

#: One line saying why predictions cannot run here (shown by ``verify`` on Linux).
NEEDS_MACOS = "Core ML predictions need macOS (coremltools cannot run a model on {system})"


def prediction_unavailable() -> str | None:
    """Why Core ML cannot run predictions on this system, or None on macOS."""
    if sys.platform == "darwin":
        return None
    return NEEDS_MACOS.format(system=sys.platform)


def _dtype(code: int) -> np.dtype:
    from coremltools.proto import FeatureTypes_pb2 as ft

    kinds = ft.ArrayFeatureType
    table = {kinds.FLOAT32: np.float32, kinds.FLOAT16: np.float16, kinds.DOUBLE: np.float64,
             kinds.INT32: np.int32}
    return np.dtype(table.get(code, np.float32))


class CoreMLRunner(Runner):
    """An ``.mlpackage`` in Core ML (``coremltools.models.MLModel(path).predict``)."""

    def __init__(self, model: str | os.PathLike) -> None:
        from . import require

        ct = require()
        self._model: Any = ct.models.MLModel(str(Path(model)))
        desc = self._model.get_spec().description
        self.inputs = [self._spec(f) for f in desc.input]
        self.outputs = [self._spec(f) for f in desc.output]

    @staticmethod
    def _spec(feature: Any) -> TensorSpec:
        arr = feature.type.multiArrayType
        shape = tuple(int(d) for d in arr.shape) or None
        return TensorSpec(feature.name, shape, _dtype(arr.dataType))

    def run(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        arrays = self._ordered_feeds(feeds)
        out = self._model.predict({s.name: x for s, x in zip(self.inputs, arrays)})
        return [np.asarray(out[s.name]) for s in self.outputs]

    def close(self) -> None:
        self._model = None


__all__ = ["CoreMLRunner", "prediction_unavailable"]
