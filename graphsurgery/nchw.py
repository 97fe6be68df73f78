"""Running NCHW ops on the CPU: each one in NHWC between two transposes.

TensorFlow's CPU kernels of ``Conv2D``, ``DepthwiseConv2dNative``, ``Conv2DBackpropInput``,
``BiasAdd``, ``MaxPool``, ``AvgPool``, ``MaxPoolV2``, ``FusedBatchNorm*``, ``DepthToSpace`` and
``SpaceToDepth`` take NHWC only. :func:`wrap_nchw_ops` rewrites every such op with
``data_format: NCHW`` into the same op in NHWC between two transposes, computing exactly what
the original defines: strides, dilations, ksize and explicit paddings are permuted, as are
4-vectors given as inputs (the ``input_sizes`` of ``Conv2DBackpropInput``,
``ksize``/``strides`` of ``MaxPoolV2``). Grouped ``Conv2D`` (input depth a multiple of the
filter's) runs natively in NHWC on the CPU. A grouped ``Conv2DBackpropInput`` does not
(without oneDNN: "Gradients for grouped convolutions are not supported on CPU"), so a
transposed convolution that is not provably ungrouped becomes a grouped ``Conv2D`` of the
zero-upsampled input with the flipped, regrouped filter.

Every rewritten node ``X`` keeps its name and meaning: it becomes the ``Transpose`` back to
NCHW (or an ``IdentityN`` of the outputs), and the new nodes live under ``X/...``. Used by
the exact reference (:mod:`graphsurgery.reference`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import GraphError
from .ir import proto
from .ir.attrs import python_to_attr
from .ir.dtypes import DType
from .ir.graph import Node
from .ir.names import TensorRef
from .rewriter import Rewriter
from .splice import splice_tf

# op -> indices of data inputs in NCHW layout
_NCHW_OPS: dict[str, tuple[int, ...]] = {
    "Conv2D": (0,),
    "DepthwiseConv2dNative": (0,),
    "Conv2DBackpropInput": (2,),
    "BiasAdd": (0,),
    "MaxPool": (0,),
    "AvgPool": (0,),
    "MaxPoolV2": (0,),
    "FusedBatchNorm": (0,),
    "FusedBatchNormV2": (0,),
    "FusedBatchNormV3": (0,),
    "DepthToSpace": (0,),
    "SpaceToDepth": (0,),
}
# op -> indices of data inputs that are 4-vectors in NCHW order
_NCHW_VECTORS: dict[str, tuple[int, ...]] = {"Conv2DBackpropInput": (0,), "MaxPoolV2": (1, 2)}
_LIST_ATTRS = ("strides", "dilations", "ksize")


def wrap_nchw_ops(rw: Rewriter, info: Mapping[TensorRef, Any], changes: dict[str, str]) -> None:
    """Run every NCHW op of ``rw.graph`` in NHWC between transposes (see the module
    documentation); ``info`` holds the graph's shapes, ``changes`` gets one line per node."""
    _NHWC(rw, info, changes).run()


def node_def(name: str, op: str, inputs: Sequence[str], attrs: Mapping[str, Any]) -> Any:
    """A NodeDef ``name = op(inputs)`` with ``attrs`` given as Python values."""
    nd = proto.NodeDef(name=name, op=op)
    nd.input.extend(inputs)
    for key, value in attrs.items():
        nd.attr[key].CopyFrom(python_to_attr(value))
    return nd


def replace_keeping_name(
    rw: Rewriter, node: Node, outs: Sequence[TensorRef], info: Mapping[TensorRef, Any],
    control: Sequence[str] = (),
) -> None:
    """Make ``node`` an Identity (one output) or IdentityN of ``outs``, keeping its name."""
    g = rw.graph
    ctrl = [f"^{c}" for c in control]
    dtypes = []
    for port, out in enumerate(outs):
        ti = info.get(TensorRef(node.name, port))
        dt = ti.dtype if ti is not None and ti.dtype is not None else g.dtype_hint(out)
        dtypes.append(dt or DType.float32)
    if len(outs) == 1:
        nd = node_def(node.name, "Identity", [outs[0].input_string, *ctrl], {"T": dtypes[0]})
    else:
        nd = node_def(node.name, "IdentityN", [o.input_string for o in outs] + ctrl,
                       {"T": dtypes})
    rw.replace_node_def(nd)


def _perm_to_last(rank: int) -> list[int]:
    """NCHW-like -> NHWC-like permutation (channels from axis 1 to the end)."""
    return [0, *range(2, rank), 1]


def _perm_to_first(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


class _NHWC:
    """Wrap every NCHW op in NCHW -> NHWC -> NCHW transposes."""

    def __init__(self, rw: Rewriter, info: Mapping[TensorRef, Any],
                 changes: dict[str, str]) -> None:
        self.rw = rw
        self.g = rw.graph
        self.info = info
        self.changes = changes
        self._perms: dict[tuple[int, ...], str] = {}
        self._transposed: dict[tuple[TensorRef, int], TensorRef] = {}

    def run(self) -> None:
        for node in self.g.nodes(*_NCHW_OPS):
            if node.attr("data_format") != "NCHW":
                continue
            if node.op == "Conv2DBackpropInput" and not self._ungrouped(node):
                self._lower_conv_transpose(node)
            else:
                self._wrap(node)

    # ------------------------------------------------------------------ helpers
    def _shape(self, ref: TensorRef) -> tuple[int, ...] | None:
        ti = self.info.get(ref)
        if ti is not None and ti.shape is not None:
            return tuple(ti.shape)
        return self.g.static_shape(ref)

    def _dtype(self, ref: TensorRef) -> DType:
        ti = self.info.get(ref)
        if ti is not None and ti.dtype is not None:
            return ti.dtype
        return self.g.dtype_hint(ref) or DType.float32

    def _perm(self, perm: Sequence[int]) -> str:
        key = tuple(perm)
        if key not in self._perms:
            suffix = "".join(str(p) for p in key)
            node = self.rw.const(np.array(key, dtype=np.int32), name=f"reference/perm_{suffix}")
            self._perms[key] = node.name
        return self._perms[key]

    def _transpose(self, ref: TensorRef, perm: Sequence[int], name: str) -> TensorRef:
        node = self.rw.add_node(
            "Transpose", [ref, self._perm(perm)],
            {"T": self._dtype(ref), "Tperm": DType.int32}, name=name,
        )
        return node.output()

    def _to_nhwc(self, ref: TensorRef, rank: int, owner: str) -> TensorRef:
        key = (ref, rank)
        if key not in self._transposed:
            self._transposed[key] = self._transpose(ref, _perm_to_last(rank), f"{owner}/to_nhwc")
        return self._transposed[key]

    def _permuted_vector(self, ref: TensorRef, owner: str) -> TensorRef:
        """A 4-vector input (NCHW order) in NHWC order."""
        g = self.g
        if g.is_const(ref):
            value = np.asarray(g.const_value(ref))
            if value.shape == (4,):
                return self.rw.const(value[[0, 2, 3, 1]], name=f"{owner}/nhwc_vector").output()
            return ref  # a 2-vector (spatial only) is layout-independent
        shape = self._shape(ref)
        if shape is not None and shape != (4,) and -1 not in shape:
            return ref
        indices = self.rw.const(np.array([0, 2, 3, 1], dtype=np.int32),
                                name=f"{owner}/nhwc_indices")
        axis = self.rw.const(np.int32(0), name=f"{owner}/nhwc_axis")
        node = self.rw.add_node(
            "GatherV2", [ref, indices, axis],
            {"Tparams": self._dtype(ref), "Tindices": DType.int32, "Taxis": DType.int32,
             "batch_dims": 0},
            name=f"{owner}/nhwc_vector",
        )
        return node.output()

    def _rank(self, node: Node) -> int:
        if node.op in ("BiasAdd",):
            shape = self._shape(node.data_inputs[0])
            if shape is not None:
                return len(shape)
        return 4

    # ------------------------------------------------------------------ wrapping
    def _wrap(self, node: Node) -> None:
        rw, g = self.rw, self.g
        name = node.name
        rank = self._rank(node)
        data = list(node.data_inputs)
        new_data: list[TensorRef] = list(data)
        for i in _NCHW_OPS[node.op]:
            new_data[i] = self._to_nhwc(data[i], rank, name)
        for i in _NCHW_VECTORS.get(node.op, ()):
            new_data[i] = self._permuted_vector(data[i], name)

        nd = proto.NodeDef()
        nd.CopyFrom(node.proto)
        nd.name = g.unique_name(f"{name}/nhwc")
        del nd.input[:]
        nd.input.extend([r.input_string for r in new_data] +
                        [f"^{c}" for c in node.control_inputs])
        nd.attr["data_format"].CopyFrom(python_to_attr("NHWC"))
        for key in _LIST_ATTRS:
            value = node.attr(key)
            if isinstance(value, list) and len(value) == 4:
                nd.attr[key].CopyFrom(python_to_attr([value[p] for p in (0, 2, 3, 1)]))
        pads = node.attr("explicit_paddings")
        if isinstance(pads, list) and len(pads) == 8:
            pairs = [pads[2 * d: 2 * d + 2] for d in (0, 2, 3, 1)]
            nd.attr["explicit_paddings"].CopyFrom(python_to_attr([p for pr in pairs for p in pr]))
        if "_output_shapes" in nd.attr:
            del nd.attr["_output_shapes"]
        new = rw.replace_node_def(nd)

        used = max(g.num_outputs_used(name), 1)
        back = _perm_to_first(rank)
        if used == 1:  # X becomes the transpose back to NCHW
            rw.replace_node_def(node_def(
                name, "Transpose", [new.name, self._perm(back)],
                {"T": self._dtype(node.output()), "Tperm": DType.int32},
            ))
        else:  # X becomes IdentityN(transpose(y), the other outputs...)
            out0 = self._transpose(new.output(0), back, f"{name}/to_nchw")
            outs = [out0] + [new.output(p) for p in range(1, used)]
            replace_keeping_name(rw, node, outs, self.info)
        self.changes[name] = f"{node.op}: NCHW run as NHWC between transposes"

    # ------------------------------------------------------------------ transposed conv
    def _ungrouped(self, node: Node) -> bool:
        """True when the transposed conv's output depth provably equals the filter's."""
        filt = self._shape(node.data_inputs[1])
        out = self._shape(node.output())
        if filt is None or out is None or len(filt) != 4 or len(out) != 4:
            return False
        return filt[2] >= 0 and filt[2] == out[1]

    def _lower_conv_transpose(self, node: Node) -> None:
        """Grouped (or possibly grouped) NCHW ``Conv2DBackpropInput`` as a grouped Conv2D.

        ``dx = conv2d(pad(upsample_zeros(dy, stride)), F')`` with
        ``F'[p, q, b, g*A + a] = F[kh-1-p, kw-1-q, a, g*Bg + b]``: the transposed conv of
        group ``g`` is the plain convolution of the zero-upsampled input with the flipped,
        transposed filter of that group.
        """
        name = node.name
        sizes, filt, dy = node.data_inputs
        fshape = self._shape(filt)
        oshape = self._shape(node.output())
        dshape = self._shape(dy)
        strides = node.attr("strides") or [1, 1, 1, 1]
        dilations = node.attr("dilations") or [1, 1, 1, 1]
        padding = node.attr("padding")

        def static(shape: tuple[int, ...] | None, idx: Sequence[int], what: str) -> list[int]:
            if shape is None or len(shape) != 4 or any(shape[i] < 0 for i in idx):
                raise GraphError(
                    f"{name}: grouped Conv2DBackpropInput needs a static {what} "
                    f"(got {shape}) to be lowered for the CPU"
                )
            return [shape[i] for i in idx]

        kh, kw = static(fshape, (0, 1), "filter size")
        out_h, out_w = static(oshape, (2, 3), "output size")
        in_h, in_w = static(dshape, (2, 3), "input size")
        if any(int(d) != 1 for d in dilations):
            raise GraphError(f"{name}: dilated grouped Conv2DBackpropInput is not supported")
        sh, sw = int(strides[2]), int(strides[3])

        def pad_before(size: int, in_size: int, k: int, s: int, axis: int) -> int:
            if padding == "VALID":
                return 0
            if padding == "SAME":
                return max((in_size - 1) * s + k - size, 0) // 2
            pads = node.attr("explicit_paddings") or [0] * 8
            return int(pads[2 * axis])

        top = kh - 1 - pad_before(out_h, in_h, kh, sh, 2)
        left = kw - 1 - pad_before(out_w, in_w, kw, sw, 3)
        up_h, up_w = (in_h - 1) * sh + 1, (in_w - 1) * sw + 1
        bottom = out_h + kh - 1 - top - up_h
        right = out_w + kw - 1 - left - up_w

        def body(sizes_t: Any, filt_t: Any, dy_t: Any) -> Any:
            import tensorflow as tf

            x = tf.transpose(dy_t, [0, 2, 3, 1])  # [N, Hi, Wi, G*Bg]
            n, b = tf.shape(x)[0], tf.shape(x)[3]
            a = tf.shape(filt_t)[2]
            c = tf.cast(sizes_t[1], tf.int32)  # G*A output channels
            groups = c // a
            f = tf.reshape(filt_t, [kh, kw, a, groups, -1])  # [kh, kw, A, G, Bg]
            f = tf.transpose(f, [0, 1, 4, 3, 2])  # [kh, kw, Bg, G, A]
            f = tf.reverse(tf.reshape(f, [kh, kw, -1, c]), [0, 1])
            if sh > 1 or sw > 1:
                x = tf.reshape(x, [n, in_h, 1, in_w, 1, b])
                x = tf.pad(x, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])
                x = tf.reshape(x, [n, in_h * sh, in_w * sw, b])[:, :up_h, :up_w, :]
            x = tf.pad(x, [[0, 0], [max(top, 0), max(bottom, 0)],
                           [max(left, 0), max(right, 0)], [0, 0]])
            if min(top, bottom, left, right) < 0:
                h = up_h + max(top, 0) + max(bottom, 0)
                w = up_w + max(left, 0) + max(right, 0)
                x = x[:, max(-top, 0):h - max(-bottom, 0), max(-left, 0):w - max(-right, 0), :]
            y = tf.nn.conv2d(x, f, strides=[1, 1, 1, 1], padding="VALID", data_format="NHWC")
            return tf.transpose(y, [0, 3, 1, 2])

        specs = [(self._dtype(r), self._shape(r)) for r in (sizes, filt, dy)]
        (out,) = splice_tf(self.rw, body, [sizes, filt, dy], scope=f"{name}/grouped",
                           input_specs=specs)
        replace_keeping_name(self.rw, node, [out], self.info, control=node.control_inputs)
        self.changes[name] = (
            "Conv2DBackpropInput: (possibly) grouped transposed conv lowered to a grouped "
            "NHWC Conv2D of the zero-upsampled input"
        )
