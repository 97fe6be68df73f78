"""``core::unwrap_nhwc``: an NHWC op between NCHW<->NHWC transposes becomes the NCHW op."""

from __future__ import annotations

import numpy as np

from graphsurgery.ir.graph import Graph, Node
from graphsurgery.registry import Pass, register_pass
from graphsurgery.rewriter import Rewriter

TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]
#: Ops with ``data_format``: the index of their data input and of a 4-vector input holding
#: a shape in the data layout (``Conv2DBackpropInput``'s ``input_sizes``).
OPS: dict[str, tuple[int, int | None]] = {
    "Conv2D": (0, None),
    "DepthwiseConv2dNative": (0, None),
    "Conv2DBackpropInput": (2, 0),
    "BiasAdd": (0, None),
    "MaxPool": (0, None),
    "AvgPool": (0, None),
}
_LIST_ATTRS = ("strides", "dilations", "ksize")


@register_pass("core::unwrap_nhwc")
class UnwrapNHWC(Pass):
    """Turn ``Transpose(op_NHWC(Transpose(x, [0,2,3,1])), [0,3,1,2])`` into ``op_NCHW(x)``.

    TF2 ports of NCHW networks run every convolution NHWC on CPU by transposing the NCHW
    tensor in and out around it (TensorFlow's CPU kernels refuse NCHW convolutions). Written
    back as the NCHW op, such a graph has the structure of the original code, so the passes
    that recognise it (``stylegan::raise_upfirdn2d_ref``'s one-channel FIR convolution, the
    6-D zero insertion on the ToRGB skip path) see it, and ``core::to_nhwc`` converts the
    whole graph with no transpose inside. Strides, dilations, kernel sizes and a constant
    ``input_sizes`` are permuted; an op whose output is read by anything but the transpose
    back, or whose ``input_sizes`` is not constant, is left alone.

    Before::

        t = Transpose(x, [0, 2, 3, 1])                           x: [N, C, H, W]
        c = Conv2D(t, w, data_format=NHWC, strides=[1, 2, 2, 1])
        y = Transpose(c, [0, 3, 1, 2])
        z = Relu(y)

    After::

        c = Conv2D(x, w, data_format=NCHW, strides=[1, 1, 2, 2])
        z = Relu(c)
    """

    def run(self, graph: Graph, rw: Rewriter) -> None:
        for node in graph.nodes(*OPS):
            _unwrap(graph, rw, node)


def _perm_of(graph: Graph, node: Node | None) -> list[int] | None:
    if node is None or node.op != "Transpose" or not graph.is_const(node.data_inputs[1]):
        return None
    return [int(v) for v in np.asarray(graph.const_value(node.data_inputs[1])).ravel()]


def _to_nchw(values: list) -> list:
    """An NHWC-ordered 4-list in NCHW order."""
    return [values[0], values[3], values[1], values[2]]


def _unwrap(graph: Graph, rw: Rewriter, node: Node) -> None:
    fmt = node.attr("data_format", "NHWC")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt != "NHWC" or graph.is_output(node.name):
        return
    data, sizes = OPS[node.op]
    inputs = node.data_inputs
    if len(inputs) <= data:
        return
    wrap_in = graph.get(inputs[data].node)
    if inputs[data].port != 0 or _perm_of(graph, wrap_in) != TO_NHWC:
        return
    users = graph.consumers(node.output())
    if not users or graph.control_users(node.name) or any(
            _perm_of(graph, u) != TO_NCHW or i != 0 for u, i in users):
        return
    new_inputs = list(inputs)
    new_inputs[data] = wrap_in.data_inputs[0]
    if sizes is not None:
        if not graph.is_const(inputs[sizes]):
            return
        shape = np.asarray(graph.const_value(inputs[sizes]))
        if shape.shape != (4,):
            return
        new_inputs[sizes] = rw.const(np.asarray(_to_nchw(list(shape)), shape.dtype),
                                     name=f"{node.name}/input_sizes_nchw").output()
    for key in _LIST_ATTRS:
        value = node.attr(key)
        if isinstance(value, list) and len(value) == 4:
            rw.set_attr(node, key, _to_nchw(value))
    pads = node.attr("explicit_paddings")
    if isinstance(pads, list) and len(pads) == 8:
        pairs = _to_nchw([pads[2 * i: 2 * i + 2] for i in range(4)])
        rw.set_attr(node, "explicit_paddings", [v for p in pairs for v in p])
    rw.set_attr(node, "data_format", "NCHW")
    rw.set_inputs(node, new_inputs)
    for user, _ in users:
        rw.replace_uses(user.output(), node.output())
        rw.erase(user.name)
    if not graph.consumers(wrap_in.output()) and not graph.control_users(wrap_in.name) \
            and not graph.is_output(wrap_in.name):
        rw.erase(wrap_in.name)  # now unused: gone before anything counts its users
