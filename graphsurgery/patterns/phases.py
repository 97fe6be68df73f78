"""Interleave per-phase outputs into one image, as the phase rewrites emit it.

A rewrite that computes an up-sampled (or tiled) output as ``f*f`` lower-resolution
phases, in the order ``(dy, dx)`` row-major, joins them with one channel ``ConcatV2``
and one ``DepthToSpace(f)`` (NHWC channel ``(dy*f + dx)*C + c``)::

    phases [N, h, w, C] x f*f -> ConcatV2(axis 3) -> DepthToSpace(f) -> [N, h*f, w*f, C]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ir.dtypes import DType
from ..ir.names import TensorRef
from ..rewriter import Rewriter


def interleave_phases(rw: Rewriter, phases: Sequence[TensorRef], block: int, dtype: DType,
                      scope: str) -> TensorRef:
    """``DepthToSpace(block)`` of ``phases`` concatenated on the channels; the nodes are
    ``{scope}/concat_axis``, ``{scope}/phases`` and ``{scope}/interleave``."""
    axis = rw.const(np.int32(3), name=f"{scope}/concat_axis")
    cat = rw.add_node("ConcatV2", [*phases, axis],
                      {"T": dtype, "N": len(phases), "Tidx": DType.int32},
                      name=f"{scope}/phases")
    return rw.add_node("DepthToSpace", [cat.output()],
                       {"T": dtype, "block_size": block, "data_format": "NHWC"},
                       name=f"{scope}/interleave").output()
