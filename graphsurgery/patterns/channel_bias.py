"""The per-channel constant bias that alone reads a convolution's output.

Passes that rewrite a convolution into several (phases, Winograd planes) move such a bias
onto one of the new convolutions, where the TFLite converter fuses it::

    bias = channel_bias(graph, conv.output())
    if bias is not None:
        ...  # add bias.value (shape [C]) inside the rewrite
        rw.replace_uses(bias.add.output(), new_output)
        rw.erase(bias.add)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.names import TensorRef

_ADDS = ("Add", "AddV2", "BiasAdd")


class ChannelBias(NamedTuple):
    """``add`` (``BiasAdd``, ``Add`` or ``AddV2``) reads ``out`` and the constant ``ref``,
    whose ``value`` is ``[C]`` (flattened)."""

    add: Node
    ref: TensorRef
    value: np.ndarray


def channel_bias(graph: Graph, out: TensorRef, dtype: type | None = None) -> ChannelBias | None:
    """The NHWC constant add of one value per channel that is the only reader of ``out``
    (not a graph output) and keeps its shape, else None; with ``dtype``, only a bias of
    that dtype."""
    readers = graph.consumers(out)
    if len(readers) != 1 or out in graph.outputs:
        return None
    add = readers[0][0]
    if add.op not in _ADDS or len(add.data_inputs) != 2 \
            or add.attr("data_format", "NHWC") != "NHWC":
        return None
    x, b = add.data_inputs
    if add.op != "BiasAdd" and x != out:
        x, b = b, x
    if x != out or b == out or not graph.is_const(b):
        return None
    co = graph.shape(out)[3]
    bias = np.asarray(graph.const_value(b))
    if bias.ndim > 4 or bias.size != co or bias.shape[-1] != co \
            or (dtype is not None and bias.dtype != dtype) \
            or graph.shape(add.output()) != graph.shape(out):
        return None
    return ChannelBias(add, b, bias.reshape(-1))
