"""``stylegan::lower_upfirdn2d``: the ``UpFirDn2D`` custom op as builtin ops of rank <= 4.

``UpFirDn2D(x, k)`` (StyleGAN2's CUDA op) takes ``x`` as ``[major, H, W, minor]``: it
inserts ``up - 1`` zeros after every pixel, pads (or crops, for negative pads), convolves
every ``(major, minor)`` plane with the 2-D FIR kernel ``k`` and keeps every ``down``-th
pixel. Every plane is filtered on its own, so the op is a *depthwise* convolution:

* **zero insertion** (``up > 1``): ``Pad`` the channel axis with ``(up*up - 1) * C`` zero
  channels, then ``DepthToSpace(up)``: the input lands on phase ``(0, 0)`` of every
  ``up x up`` block and the other phases are zero. No transposed convolution, no
  ``C x C`` filter, no tensor above rank 4. (Unequal ``upx != upy``, which StyleGAN2 never
  uses, falls back to a ``Conv2DBackpropInput`` with a ``1 x 1`` identity filter.)
* **pad / crop**: one 4x2 ``Pad`` of the spatial axes, then a ``StridedSlice`` when a pad is
  negative;
* **FIR + down-sampling**: one ``DepthwiseConv2dNative`` (``VALID``, depth multiplier 1)
  with the flipped kernel as a constant ``[kh, kw, C, 1]`` filter and ``strides = down``
  (a strided VALID convolution keeps exactly the pixels ``[::down]`` would; unequal
  ``downx != downy`` use stride 1 and a ``StridedSlice``).

StyleGAN2 wraps the op in ``Reshape(x_nchw, [-1, H, W, 1])`` ... ``Reshape(y, [-1, C, H',
W'])``. When the input is such a reshape of a 4-D tensor, the lowering works on that NCHW
tensor itself (``C`` channels, ``data_format: NCHW`` on ``DepthToSpace`` and
``DepthwiseConv2dNative``), and ``Reshape`` consumers of the op read the NCHW result
directly (the two layouts hold the same elements in the same order). Otherwise ``x`` is
taken as NHWC with ``C = minor``.

What the NCHW -> NHWC layout pass must then support: ``Pad`` with a 4x2 paddings constant
(rows permuted), ``DepthToSpace``/``DepthwiseConv2dNative`` with ``data_format: NCHW``
(switch the attribute, permute ``strides``), ``StridedSlice`` on 4-D with constant
begin/end/strides (permuted, masks on the batch/channel bits), and, only for ``upx !=
upy``, ``Conv2DBackpropInput`` NCHW.

:func:`lower_upfirdn` builds the op sequence for any tensor and is shared with
``stylegan::raise_upfirdn2d_ref``; :func:`lower_upfirdn_node` lowers one node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphsurgery.errors import UsageError
from graphsurgery.ir.attrs import make_node_def
from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.registry import Pass, register_pass
from graphsurgery.rewriter import Rewriter

#: ``UpFirDn2D`` attributes with the defaults of the original ``REGISTER_OP``.
UPFIRDN_DEFAULTS: dict[str, int] = {
    "upx": 1, "upy": 1, "downx": 1, "downy": 1,
    "padx0": 0, "padx1": 0, "pady0": 0, "pady1": 0,
}

ShapeFn = Callable[[TensorRef], "tuple[int, ...] | None"]


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    """``n`` -> ``(n, n)``; ``(x, y)`` -> ``(x, y)``."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    vals = tuple(int(v) for v in value)
    if len(vals) != 2:
        raise UsageError(f"upfirdn2d: {what} must be an int or an (x, y) pair, got {value!r}")
    return vals  # type: ignore[return-value]


def _pads(value: Sequence[int]) -> tuple[int, int, int, int]:
    """``(p0, p1)`` -> same on both axes; ``(padx0, padx1, pady0, pady1)`` as is."""
    vals = tuple(int(v) for v in value)
    if len(vals) == 2:
        return vals[0], vals[1], vals[0], vals[1]
    if len(vals) == 4:
        return vals  # type: ignore[return-value]
    raise UsageError(f"upfirdn2d: pad must be (p0, p1) or (px0, px1, py0, py1), got {value!r}")


def lower_upfirdn(
    rw: Rewriter,
    x: TensorRef,
    k: np.ndarray,
    *,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    pad: Sequence[int] = (0, 0),
    layout: str = "NCHW",
    channels: int,
    spatial: tuple[int, int] | None = None,
    dtype: DType = DType.float32,
    name: str = "upfirdn2d",
) -> TensorRef:
    """Emit upfirdn2d of the 4-D tensor ``x`` as builtin ops; returns the result tensor.

    ``x`` is ``[N, C, H, W]`` (``layout="NCHW"``) or ``[N, H, W, C]`` (``"NHWC"``) with
    ``channels = C`` known statically; ``spatial = (H, W)`` is checked when given and
    needed only for unequal up-sampling factors. ``k`` is the 2-D FIR kernel
    exactly as the ``UpFirDn2D`` op takes it (true convolution: the emitted depthwise
    convolution uses it flipped). ``up``/``down`` are ints or ``(x, y)`` pairs, ``pad``
    ``(p0, p1)`` for both axes or ``(padx0, padx1, pady0, pady1)``. Every plane is filtered
    independently; the result has the same layout. Op sequence::

        [Pad(channels) -> DepthToSpace(up)]   when up > 1
        [Pad(H, W)] [StridedSlice(crop)]       when pads are non-zero / negative
        DepthwiseConv2dNative(flip(k), strides=down, VALID)
        [StridedSlice(::down)]                 only when downx != downy
    """
    if layout not in ("NCHW", "NHWC"):
        raise UsageError(f"upfirdn2d: layout must be NCHW or NHWC, got {layout!r}")
    k = np.asarray(k)
    if k.ndim != 2 or k.size == 0:
        raise UsageError(f"{name}: upfirdn2d kernel must be 2-D, got shape {k.shape}")
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    padx0, padx1, pady0, pady1 = _pads(pad)
    if min(upx, upy, downx, downy) < 1:
        raise UsageError(f"{name}: up/down factors must be >= 1")
    c = int(channels)
    if c <= 0:
        raise UsageError(f"{name}: upfirdn2d needs a static channel count (got {channels})")
    kh, kw = k.shape
    h = w = -1
    if spatial is not None:
        h, w = (int(d) for d in spatial)
        out_h = (h * upy + pady0 + pady1 - kh) // downy + 1
        out_w = (w * upx + padx0 + padx1 - kw) // downx + 1
        if out_h < 1 or out_w < 1:
            raise UsageError(f"{name}: upfirdn2d output would be empty ({out_h}x{out_w})")

    nchw = layout == "NCHW"
    c_axis, h_axis, w_axis = (1, 2, 3) if nchw else (3, 1, 2)

    def spatial4(hv: Any, wv: Any, other: Any) -> list[Any]:
        vec = [other] * 4
        vec[h_axis], vec[w_axis] = hv, wv
        return vec

    def pad_node(t: TensorRef, paddings: list[list[int]], suffix: str) -> TensorRef:
        pc = rw.const(np.asarray(paddings, dtype=np.int32), name=f"{name}/{suffix}/paddings")
        return rw.add_node("Pad", [t, pc], {"T": dtype, "Tpaddings": DType.int32},
                           name=f"{name}/{suffix}").output()

    def slice_node(t: TensorRef, begin: list[int], end: list[int], strides: list[int],
                   suffix: str) -> TensorRef:
        """Spatial slice; an end of 0 means "to the end" (end_mask), batch/channels whole."""
        bmask = (1 << 0) | (1 << c_axis)
        emask = bmask | sum(1 << a for a in (h_axis, w_axis) if end[a] == 0)
        consts = [rw.const(np.asarray(v, dtype=np.int32), name=f"{name}/{suffix}/{n}")
                  for n, v in (("begin", begin), ("end", end), ("strides", strides))]
        return rw.add_node(
            "StridedSlice", [t, *consts],
            {"T": dtype, "Index": DType.int32, "begin_mask": bmask, "end_mask": emask,
             "ellipsis_mask": 0, "new_axis_mask": 0, "shrink_axis_mask": 0},
            name=f"{name}/{suffix}",
        ).output()

    y = x
    # 1. Zero insertion.
    if upx > 1 or upy > 1:
        if upx == upy:
            paddings = [[0, 0]] * 4
            paddings[c_axis] = [0, (upx * upy - 1) * c]
            y = pad_node(y, paddings, "zeros")
            y = rw.add_node("DepthToSpace", [y],
                            {"T": dtype, "block_size": upx, "data_format": layout},
                            name=f"{name}/upsample").output()
        else:
            if spatial is None:
                raise UsageError(f"{name}: upfirdn2d with upx != upy needs the spatial size")
            y = _zero_insert_transposed_conv(rw, y, c, h, w, upx, upy, nchw, dtype, name)
    # 2. Pad, then crop negative pads.
    if any(p > 0 for p in (padx0, padx1, pady0, pady1)):
        paddings = [[0, 0]] * 4
        paddings[h_axis] = [max(pady0, 0), max(pady1, 0)]
        paddings[w_axis] = [max(padx0, 0), max(padx1, 0)]
        y = pad_node(y, paddings, "pad")
    if any(p < 0 for p in (padx0, padx1, pady0, pady1)):
        begin = spatial4(max(-pady0, 0), max(-padx0, 0), 0)
        end = spatial4(-max(-pady1, 0), -max(-padx1, 0), 0)  # 0: to the end
        y = slice_node(y, begin, end, [1] * 4, "crop")
    # 3. FIR filter (+ down-sampling by the stride).
    same_down = downx == downy
    stride = spatial4(downy, downx, 1) if same_down else [1] * 4
    filt = np.ascontiguousarray(np.tile(k[::-1, ::-1, None, None], (1, 1, c, 1)))
    fc = rw.const(filt.astype(dtype.numpy), name=f"{name}/filter")
    y = rw.add_node(
        "DepthwiseConv2dNative", [y, fc],
        {"T": dtype, "strides": stride, "padding": "VALID", "data_format": layout,
         "dilations": [1, 1, 1, 1], "explicit_paddings": []},
        name=f"{name}/filter_fir",
    ).output()
    # 4. Unequal down-sampling factors: a strided slice.
    if not same_down:
        y = slice_node(y, [0] * 4, [0] * 4, spatial4(downy, downx, 1), "downsample")
    return y


def _zero_insert_transposed_conv(rw: Rewriter, x: TensorRef, c: int, h: int, w: int, upx: int,
                                 upy: int, nchw: bool, dtype: DType, name: str) -> TensorRef:
    """Zero insertion with unequal factors: a stride ``(upy, upx)`` transposed conv with a
    ``1 x 1`` identity filter, then a pad with the trailing zeros."""
    n_sizes = [1, c, (h - 1) * upy + 1, (w - 1) * upx + 1] if nchw else \
        [1, (h - 1) * upy + 1, (w - 1) * upx + 1, c]
    # The batch is taken from x at run time only if unknown; StyleGAN graphs have it fixed.
    sizes = rw.const(np.asarray(n_sizes, dtype=np.int32), name=f"{name}/zeros/input_sizes")
    filt = rw.const(np.eye(c, dtype=dtype.numpy)[None, None], name=f"{name}/zeros/identity")
    strides = [1, 1, upy, upx] if nchw else [1, upy, upx, 1]
    y = rw.add_node(
        "Conv2DBackpropInput", [sizes, filt, x],
        {"T": dtype, "strides": strides, "padding": "VALID",
         "data_format": "NCHW" if nchw else "NHWC", "dilations": [1, 1, 1, 1],
         "explicit_paddings": [], "use_cudnn_on_gpu": True},
        name=f"{name}/zeros",
    ).output()
    paddings = [[0, 0], [0, 0], [0, upy - 1], [0, upx - 1]] if nchw else \
        [[0, 0], [0, upy - 1], [0, upx - 1], [0, 0]]
    pc = rw.const(np.asarray(paddings, dtype=np.int32), name=f"{name}/zeros/paddings")
    return rw.add_node("Pad", [y, pc], {"T": dtype, "Tpaddings": DType.int32},
                       name=f"{name}/zeros/tail").output()


# ------------------------------------------------------------------------------ one node
def upfirdn_attrs(node: Node) -> dict[str, int]:
    """The node's int attributes, absent ones at the op's registered defaults."""
    return {key: int(node.attr(key, default)) for key, default in UPFIRDN_DEFAULTS.items()}



def lower_upfirdn_node(graph: Graph, rw: Rewriter, node: Node, shape: ShapeFn) -> list[str]:
    """Replace the ``UpFirDn2D`` node ``node`` by :func:`lower_upfirdn`'s ops.

    ``shape(tensor)`` gives static shapes (-1 unknown) of the node's input, of the tensor
    a ``Reshape`` input reads, and of the node's ``Reshape`` consumers. The node keeps its
    name as the final ``Reshape`` back to ``[major, H', W', minor]`` (NCHW path) or as an
    ``Identity`` while something still uses it (a declared output, a control edge).
    Returns the names that may have become dead (for :meth:`Rewriter.erase_dead`).
    """
    name = node.name
    data = node.data_inputs
    if len(data) != 2:
        raise UsageError(f"{name}: UpFirDn2D must have 2 inputs (x, k), has {len(data)}")
    x, kref = data
    if not graph.is_const(kref):
        raise UsageError(f"{name}: UpFirDn2D kernel {kref} is not a constant; fold constants "
                         "first (core::fold_constants)")
    k = np.asarray(graph.const_value(kref), dtype=np.float64)
    if k.ndim != 2:
        raise UsageError(f"{name}: UpFirDn2D kernel must be 2-D, got shape {k.shape}")
    attrs = upfirdn_attrs(node)
    dtype = node.attr("T") or graph.dtype_hint(x) or DType.float32
    xs = shape(x)
    if xs is None or len(xs) != 4:
        raise UsageError(f"{name}: UpFirDn2D input {x} must be 4-D [major, H, W, minor], "
                         f"got shape {xs}")
    major, in_h, in_w, minor = xs
    kh, kw = k.shape
    out_h = (in_h * attrs["upy"] + attrs["pady0"] + attrs["pady1"] - kh) // attrs["downy"] + 1
    out_w = (in_w * attrs["upx"] + attrs["padx0"] + attrs["padx1"] - kw) // attrs["downx"] + 1

    # NCHW path: x = Reshape(x4 [N, C, H, W], [-1, H, W, 1]).
    src = graph.node(x.node)
    nchw_src = None
    if src.op == "Reshape" and minor == 1 and x.port == 0:
        cand = src.data_inputs[0]
        cs = shape(cand)
        if cs is not None and len(cs) == 4 and cs[1] > 0 and cs[2:] == (in_h, in_w) \
                and in_h > 0 and in_w > 0:
            nchw_src = (cand, cs)
    kwargs = dict(up=(attrs["upx"], attrs["upy"]), down=(attrs["downx"], attrs["downy"]),
                  pad=(attrs["padx0"], attrs["padx1"], attrs["pady0"], attrs["pady1"]),
                  dtype=dtype, name=name)
    ctrl = [f"^{c}" for c in node.control_inputs]
    dead = [name, x.node, kref.node]

    def keep_order(y: TensorRef) -> None:
        for c in node.control_inputs:
            rw.add_control_input(y.node, c)

    if nchw_src is not None:
        cand, cs = nchw_src
        y = lower_upfirdn(rw, cand, k, layout="NCHW", channels=cs[1],
                          spatial=(in_h, in_w), **kwargs)
        keep_order(y)
        y_shape = (cs[0], cs[1], out_h, out_w)
        # Reshape consumers read y directly (same elements, same order).
        for user, idx in graph.consumers(node.output()):
            if user.op != "Reshape" or idx != 0:
                continue
            us = shape(user.output())
            if us == y_shape and -1 not in us and not graph.is_output(user.name):
                rw.replace_uses(user.output(), y, outputs=False)
                dead.append(user.name)
            else:
                rw.set_input(user, 0, y)
        if graph.has_outside_uses(name):
            back = rw.const(np.asarray([major if major > 0 else -1, out_h, out_w, 1],
                                       dtype=np.int32), name=f"{name}/shape")
            rw.replace_node_def(make_node_def(name, "Reshape", [y.input_string, back.name, *ctrl],
                                              {"T": dtype, "Tshape": DType.int32}))
        return dead

    # NHWC path: x itself, C = minor.
    if minor <= 0 or in_h <= 0 or in_w <= 0:
        raise UsageError(f"{name}: UpFirDn2D input {x} needs static H, W and minor dims "
                         f"(got {xs}); run core::set_batch and core::fold_shapes first")
    y = lower_upfirdn(rw, x, k, layout="NHWC", channels=minor, spatial=(in_h, in_w), **kwargs)
    keep_order(y)
    rw.replace_uses(node.output(), y, outputs=False)
    if graph.has_outside_uses(name):
        rw.replace_node_def(make_node_def(name, "Identity", [y.input_string, *ctrl], {"T": dtype}))
    return dead


def shape_lookup(graph: Graph) -> ShapeFn:
    """Static shapes from one ``graph.infer()`` taken now (valid for tensors that exist now)."""
    info = graph.infer()

    def shape(t: TensorRef) -> tuple[int, ...] | None:
        known = graph.static_shape(t)
        if known is not None:
            return tuple(known)
        ti = info.get(t)
        return None if ti is None or ti.shape is None else tuple(ti.shape)

    return shape


@register_pass("stylegan::lower_upfirdn2d")
class LowerUpFirDn2D(Pass):
    """Lower StyleGAN2's ``UpFirDn2D`` custom op to Pad / DepthToSpace / DepthwiseConv2dNative.

    Zero insertion (``up > 1``) is a channel ``Pad`` plus ``DepthToSpace(up)``; pads are one
    4x2 ``Pad`` (a ``StridedSlice`` crops negative pads); the FIR filter and the
    down-sampling are one VALID ``DepthwiseConv2dNative`` with the flipped kernel as a
    constant ``[kh, kw, C, 1]`` filter and ``strides = down``. Around StyleGAN2's
    ``Reshape(x, [-1, H, W, 1])`` ... ``Reshape(y, [-1, C, H', W'])`` the ops run on the
    NCHW tensor itself (``data_format: NCHW``), so no ``Transpose`` and no tensor above
    rank 4 appears. A node whose kernel is not a constant is an error.

    Before::

        x  = ...                                   [1, 3, 4, 4] (NCHW)
        r  = Reshape(x, [-1, 4, 4, 1])
        u  = UpFirDn2D(r, k[4x4]) upx=upy=2 padx0=pady0=2 padx1=pady1=1
        y  = Reshape(u, [-1, 3, 8, 8])

    After::

        x  = ...
        z  = Pad(x, [[0,0],[0,9],[0,0],[0,0]])                  [1, 12, 4, 4]
        d  = DepthToSpace(z, block_size=2, data_format=NCHW)    [1, 3, 8, 8]
        p  = Pad(d, [[0,0],[0,0],[2,1],[2,1]])                  [1, 3, 11, 11]
        y  = DepthwiseConv2dNative(p, Const flip(k)[4,4,3,1], VALID, NCHW)  [1, 3, 8, 8]
    """

    infers_shapes = True

    def run(self, graph: Graph, rw: Rewriter) -> None:
        nodes = graph.nodes("UpFirDn2D")
        if not nodes:
            return
        shape = shape_lookup(graph)
        dead: list[str] = []
        for node in nodes:
            dead += lower_upfirdn_node(graph, rw, node, shape)
        rw.erase_dead(dead)
