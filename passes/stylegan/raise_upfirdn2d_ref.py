"""``stylegan::raise_upfirdn2d_ref``: recognise StyleGAN2's reference ``upfirdn2d`` chain.

The reference implementation of ``upfirdn2d`` (used when a StyleGAN2 graph is built with
``impl='ref'``) spells the op out with a 6-D reshape and pad for the zero insertion and
two transposes around a one-channel convolution::

    x [M, H, W, C]
    Reshape [M, H, 1, W, 1, C] -> Pad [[0,0],[0,0],[0,uy-1],[0,0],[0,ux-1],[0,0]]
      -> Reshape [M, H*uy, W*ux, C]                                  (zero insertion)
    Pad [[0,0],[py0,py1],[px0,px1],[0,0]] -> StridedSlice (crop)     (pad / crop)
    Transpose [0,3,1,2] -> Reshape [M*C, 1, H', W']
    Conv2D(NCHW, VALID, Const flip(k) [kh,kw,1,1])                    (FIR)
    Reshape [M, C, Ho, Wo] -> Transpose [0,2,3,1]
    StridedSlice [:, ::dy, ::dx, :]                                   (down-sampling)

The chain is found from its ``Conv2D`` by structure (op types, constant paddings, perms,
slices and inferred shapes; names are never read) and replaced by one canonical
``UpFirDn2D`` node, which (option ``lower``, default on) is lowered at once exactly as
``stylegan::lower_upfirdn2d`` lowers the custom op, so the ref and custom-op forms of a
generator end up with the same ops. Optional links (a no-op pad, an identity slice,
transposes already reduced to reshapes) may be missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphsurgery.ir.attrs import make_node_def
from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.patterns import Any, Matcher, P, Path, Step
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

from .lower_upfirdn2d import ShapeFn, lower_upfirdn_node, shape_lookup

Shape = tuple[int, ...]


@dataclass
class UpFirDnMatch:
    """One reference ``upfirdn2d`` chain: geometry, kernel and where it starts and ends."""

    conv: str
    start: TensorRef  # the chain's input
    start_nchw: bool  # start is [M, 1, H, W] (needs a reshape to [M, H, W, 1])
    end: TensorRef  # the chain's output
    end_nchw: bool  # end is [M, 1, Ho, Wo]
    major: int
    height: int
    width: int
    minor: int
    up: tuple[int, int] = (1, 1)  # (x, y)
    pad: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # px0 px1 py0 py1
    down: tuple[int, int] = (1, 1)  # (x, y)
    kernel: np.ndarray | None = None
    nodes: list[str] = field(default_factory=list)
    end_shape: Shape = ()


def _const_list(graph: Graph, t: TensorRef) -> list | None:
    if not graph.is_const(t):
        return None
    return np.asarray(graph.const_value(t)).tolist()


def _slice_spec(graph: Graph, node: Node, in_shape: Shape | None) -> list | None:
    """``[(start, stop, step)]`` per dim of a plain StridedSlice, normalised."""
    if in_shape is None or any(d < 0 for d in in_shape):
        return None
    if any(int(node.attr(m, 0) or 0) for m in
           ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask")):
        return None
    vals = [_const_list(graph, t) for t in node.data_inputs[1:4]]
    if len(vals) != 3 or any(v is None or len(v) != len(in_shape) for v in vals):
        return None
    begin, end, strides = vals
    bmask, emask = int(node.attr("begin_mask", 0) or 0), int(node.attr("end_mask", 0) or 0)
    spec = []
    for i, n in enumerate(in_shape):
        if strides[i] <= 0:
            return None
        b = None if bmask >> i & 1 else begin[i]
        e = None if emask >> i & 1 else end[i]
        spec.append(slice(b, e, strides[i]).indices(n))
    return spec


def _pad_spec(graph: Graph, node: Node) -> list | None:
    """Paddings of a constant-zero ``Pad``/``PadV2``."""
    if node.op == "PadV2":
        cv = _const_list(graph, node.data_inputs[2]) if len(node.data_inputs) > 2 else None
        if cv is None or cv != 0:
            return None
    elif node.op != "Pad":
        return None
    return _const_list(graph, node.data_inputs[1])


def _perm(graph: Graph, node: Node) -> list | None:
    return _const_list(graph, node.data_inputs[1]) if node.op == "Transpose" else None


def _one_channel_filter(graph: Graph, conv: Node) -> bool:
    """Cheap pre-check: a constant ``[kh, kw, 1, 1]`` filter (no decoding, no inference)."""
    data = conv.data_inputs
    if len(data) != 2 or not graph.is_const(data[1]):
        return False
    shape = graph.const_shape(data[1].node)
    return len(shape) == 4 and tuple(shape[2:]) == (1, 1)


def _conv_kernel(graph: Graph, conv: Node, shape: ShapeFn) -> np.ndarray | None:
    """The FIR kernel ``k`` of a one-channel VALID NCHW Conv2D (its filter is ``flip(k)``)."""
    if conv.op != "Conv2D" or len(conv.data_inputs) != 2:
        return None
    fmt = conv.attr("data_format", "NHWC")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt != "NCHW" or conv.attr("padding") not in ("VALID", b"VALID"):
        return None
    if list(conv.attr("strides") or [1] * 4) != [1] * 4:
        return None
    if list(conv.attr("dilations") or [1] * 4) != [1] * 4:
        return None
    f = conv.data_inputs[1]
    if not graph.is_const(f):
        return None
    w = np.asarray(graph.const_value(f))
    if w.ndim != 4 or w.shape[2:] != (1, 1):
        return None
    xs = shape(conv.data_inputs[0])
    if xs is None or len(xs) != 4 or xs[1] != 1 or any(d <= 0 for d in xs):
        return None
    return np.ascontiguousarray(w[::-1, ::-1, 0, 0])


def _io(shape: ShapeFn, node: Node) -> tuple[Shape, Shape] | None:
    """Shapes of ``node``'s input 0 and output 0, when both are known and positive."""
    ss, cs = shape(node.data_inputs[0]), shape(node.output())
    if ss is None or cs is None or any(d <= 0 for d in (*ss, *cs)):
        return None
    return ss, cs


def _crop(graph: Graph, node: Node, ss: Shape) -> list[int] | None:
    """``[px0, px1, py0, py1]`` a plain NHWC crop removes, or None."""
    spec = _slice_spec(graph, node, ss)
    if spec is None or any(st != 1 for _, _, st in spec):
        return None
    if spec[0] != (0, ss[0], 1) or spec[3] != (0, ss[3], 1):
        return None
    return [spec[2][0], ss[2] - spec[2][1], spec[1][0], ss[1] - spec[1][1]]


def _spatial_pad(graph: Graph, node: Node) -> list[int] | None:
    """``[px0, px1, py0, py1]`` of a constant-zero, non-negative NHWC pad, or None."""
    p = _pad_spec(graph, node)
    if p is None or len(p) != 4 or p[0] != [0, 0] or p[3] != [0, 0]:
        return None
    if min(v for row in p for v in row) < 0:
        return None
    return [p[2][0], p[2][1], p[1][0], p[1][1]]


def _down_step(graph: Graph, node: Node, cs: Shape) -> tuple[int, int] | None:
    """``(dx, dy)`` of an NHWC StridedSlice that only subsamples H and W, or None."""
    spec = _slice_spec(graph, node, cs)
    if spec is None or spec[0] != (0, cs[0], 1) or spec[3] != (0, cs[3], 1):
        return None
    if spec[1][:2] != (0, cs[1]) or spec[2][:2] != (0, cs[2]):
        return None
    return spec[2][2], spec[1][2]


def _zero_insertion(graph: Graph, nodes: list[Node], shape: ShapeFn) -> tuple[int, int] | None:
    """``(ux, uy)`` of ``Reshape(Pad(Reshape(x, [M,H,1,W,1,C]), zeros), [M,H*uy,W*ux,C])``
    (``nodes``: the outer Reshape, the Pad, the inner Reshape), or None."""
    r2, p1, r1 = nodes
    ss = shape(r2.data_inputs[0])
    if ss is None or any(d <= 0 for d in ss) or len(ss) != 6:
        return None
    pads = _pad_spec(graph, p1)
    if pads is None or len(pads) != 6:
        return None
    xs, s6, s4 = shape(r1.data_inputs[0]), shape(r1.output()), shape(r2.output())
    if xs is None or s6 is None or s4 is None or len(xs) != 4 or len(s6) != 6:
        return None
    m, h, w, c = xs
    if s6 != (m, h, 1, w, 1, c):
        return None
    zero = [0, 0]
    if [pads[0], pads[1], pads[3], pads[5]] != [zero] * 4 or pads[2][0] or pads[4][0]:
        return None
    uy, ux = pads[2][1] + 1, pads[4][1] + 1
    if s4 != (m, h * uy, w * ux, c):
        return None
    return ux, uy


def upfirdn_ref_pattern(shape: ShapeFn) -> P:
    """The reference ``upfirdn2d`` chain as a pattern rooted at its one-channel ``Conv2D``.

    Up from the convolution's input: NCHW reshapes (batch and channels merged), the switch
    to NHWC (``Transpose [0,3,1,2]`` or a reshape), crops / pads / no-op reshapes, then the
    6-D zero insertion; down from its output: NCHW reshapes, the switch back (``Transpose
    [0,2,3,1]`` or a reshape), down-sampling slices / no-op reshapes. Each walk stops where
    the chain does; :func:`match_upfirdn_ref` checks the geometry of what was taken.
    ``shape`` gives static shapes (:func:`~.lower_upfirdn2d.shape_lookup`).
    """

    def merge_up(node: Node, graph: Graph) -> bool | str:
        io = _io(shape, node)
        if io is None or len(io[0]) != 4:
            return "not a known 4-D reshape"
        ss, cs = io
        return ss[2:] == cs[2:] and ss[0] * ss[1] == cs[0] * cs[1]

    def to_nchw(node: Node, graph: Graph) -> bool | str:
        io = _io(shape, node)
        if io is None:
            return "shapes unknown"
        ss, cs = io
        if node.op == "Transpose":
            return _perm(graph, node) == [0, 3, 1, 2]
        return (len(ss) == 4 and cs[1] == 1 and ss[1:3] == cs[2:] and ss[3] == 1
                and ss[0] == cs[0])

    def nhwc_up(node: Node, graph: Graph) -> bool | str:
        io = _io(shape, node)
        if io is None:
            return "shapes unknown"
        ss, cs = io
        if node.op == "StridedSlice":
            return _crop(graph, node, ss) is not None
        if node.op in ("Pad", "PadV2"):
            return _spatial_pad(graph, node) is not None
        return ss == cs  # a no-op Reshape

    def pad_before_crop(nodes: list[Node], graph: Graph) -> bool | str:
        padded = False
        for node in nodes:
            if node.op in ("Pad", "PadV2"):
                padded = padded or any(_spatial_pad(graph, node) or ())
            elif node.op == "StridedSlice":
                cut = _crop(graph, node, shape(node.data_inputs[0]) or ())
                if cut is not None and any(cut) and padded:
                    return "a crop before a pad: not upfirdn2d's order"
        return True

    def zero_insertion(nodes: list[Node], graph: Graph) -> bool | str:
        return _zero_insertion(graph, nodes, shape) is not None or "not a zero insertion"

    def merge_down(node: Node, graph: Graph) -> bool | str:
        io = _io(shape, node)
        if io is None or len(io[1]) != 4:
            return "not a known 4-D reshape"
        cs, us = io
        return us[2:] == cs[2:] and us[0] * us[1] == cs[0] * cs[1]

    def to_nhwc(node: Node, graph: Graph) -> bool | str:
        io = _io(shape, node)
        if io is None:
            return "shapes unknown"
        cs, us = io
        if node.op == "Transpose":
            return _perm(graph, node) == [0, 2, 3, 1]
        return len(us) == 4 and cs[1] == 1 and us[1:3] == cs[2:] and us[3] == 1

    def nhwc_down(node: Node, graph: Graph) -> bool | str:
        io = _io(shape, node)
        if io is None:
            return "shapes unknown"
        cs, us = io
        if node.op == "StridedSlice":
            return _down_step(graph, node, cs) is not None
        return us == cs

    def down_once(nodes: list[Node], graph: Graph) -> bool | str:
        steps = [_down_step(graph, n, shape(n.data_inputs[0]) or ())
                 for n in nodes if n.op == "StridedSlice"]
        return sum(1 for st in steps if st != (1, 1)) <= 1 or "a second down-sampling"

    def conv_ok(node: Node, graph: Graph) -> bool | str:
        if _conv_kernel(graph, node, shape) is None:
            return "not a one-channel VALID NCHW Conv2D with a constant filter"
        cs = shape(node.output())
        return cs is not None and len(cs) == 4 and all(d > 0 for d in cs)

    source = Path(
        Step(P("Reshape", where=merge_up), capture="nchw"),
        Step(P("Transpose|Reshape", where=to_nchw), min=1, max=1, capture="to_nchw"),
        Step(P("StridedSlice|Pad|PadV2|Reshape", where=nhwc_up), accept=pad_before_crop,
             capture="nhwc"),
        Step((P("Reshape"), P("Pad|PadV2"), P("Reshape")), max=1, accept=zero_insertion,
             capture="zero_insertion"),
        then=Any("start"),
    )
    sink = Path(
        Step(P("Reshape", where=merge_down), capture="out_nchw"),
        Step(P("Transpose|Reshape", where=to_nhwc), min=1, max=1, capture="to_nhwc"),
        Step(P("StridedSlice|Reshape", where=nhwc_down), accept=down_once, capture="out_nhwc"),
    )
    return P("Conv2D", source, Any(), where=conv_ok, users=sink, capture="conv")


def match_upfirdn_ref(graph: Graph, conv: Node, shape: ShapeFn,
                      matcher: Matcher | None = None) -> UpFirDnMatch | None:
    """Match the reference ``upfirdn2d`` chain around ``conv``, or None.

    The chain is :func:`upfirdn_ref_pattern` (pass ``matcher``, a :class:`Matcher` of it,
    to reuse one for many convolutions); this function reads its geometry.
    """
    if matcher is None:
        matcher = Matcher(upfirdn_ref_pattern(shape))
    m = matcher.match(graph, conv)
    if m is None:
        return None
    k = _conv_kernel(graph, conv, shape)
    if k is None:
        return None
    kh, kw = k.shape

    def taken(name: str) -> tuple[Node, ...]:
        return m.captures.get(name, ())

    backward = [*taken("nchw"), *taken("to_nchw"), *taken("nhwc"), *taken("zero_insertion")]
    forward = [*taken("out_nchw"), *taken("to_nhwc"), *taken("out_nhwc")]
    nodes = [conv.name, *(n.name for n in backward), *(n.name for n in forward)]
    transposes = sum(1 for n in (*taken("to_nchw"), *taken("to_nhwc")) if n.op == "Transpose")

    # ---------------------------------------------------------------- the input side
    start = m["start"]
    cs = shape(start)
    start_nchw = not taken("to_nchw")
    if start_nchw:
        c = cs[1]
    else:
        (switch,) = taken("to_nchw")
        c = shape(switch.data_inputs[0])[3] if switch.op == "Transpose" else 1
    crop = [0, 0, 0, 0]  # px0 px1 py0 py1 removed by slices
    pads = [0, 0, 0, 0]
    for n in taken("nhwc"):
        if n.op == "StridedSlice":
            crop = [a + b for a, b in zip(crop, _crop(graph, n, shape(n.data_inputs[0])))]
        elif n.op in ("Pad", "PadV2"):
            pads = [a + b for a, b in zip(pads, _spatial_pad(graph, n))]
    zi = taken("zero_insertion")
    up = _zero_insertion(graph, list(zi), shape) if zi else (1, 1)
    if start_nchw and c != 1:
        return None
    if start_nchw:
        major, minor, in_h, in_w = cs[0], 1, cs[2], cs[3]
    else:
        major, in_h, in_w, minor = cs
    if c != minor and not start_nchw:
        return None

    # ---------------------------------------------------------------- the output side
    end = m.output
    cs = shape(end)
    end_nchw = not taken("to_nhwc")
    if end_nchw and cs[1] != 1:
        return None
    down = next((st for st in (_down_step(graph, n, shape(n.data_inputs[0]))
                               for n in taken("out_nhwc") if n.op == "StridedSlice")
                 if st != (1, 1)), (1, 1))
    out_c = 1 if end_nchw else cs[3]
    if (out_c if not end_nchw else 1) != (minor if not start_nchw else 1):
        return None
    if end_nchw != start_nchw and minor != 1:
        return None
    if transposes == 0 and up == (1, 1):
        return None  # a plain one-channel convolution, not an upfirdn2d chain

    # ---------------------------------------------------------------- geometry
    pad = [p - q for p, q in zip(pads, crop)]
    hp = in_h * up[1] + pad[2] + pad[3]
    wp = in_w * up[0] + pad[0] + pad[1]
    conv_in = shape(conv.data_inputs[0])
    if conv_in[2:] != (hp, wp):
        return None
    out_h = (hp - kh) // down[1] + 1
    out_w = (wp - kw) // down[0] + 1
    end_hw = cs[2:] if end_nchw else cs[1:3]
    if tuple(end_hw) != (out_h, out_w) or cs[0] != major:
        return None
    return UpFirDnMatch(conv.name, start, start_nchw, end, end_nchw, major, in_h, in_w, minor,
                        up, pad, down, k, nodes, tuple(cs))


def raise_match(graph: Graph, rw: Rewriter, m: UpFirDnMatch, shape: ShapeFn,
                lower: bool = True) -> list[str]:
    """Replace a matched chain by ``UpFirDn2D`` (lowered when ``lower``); returns candidates
    for :meth:`Rewriter.erase_dead`."""
    conv = graph.node(m.conv)
    dtype = conv.attr("T") or DType.float32
    scope = m.conv.rsplit("/", 1)[0] if "/" in m.conv else ""
    base = f"{scope}/UpFirDn2D" if scope else "UpFirDn2D"
    known: dict[TensorRef, Shape] = {}
    x = m.start
    if m.start_nchw:
        sc = rw.const(np.asarray([m.major, m.height, m.width, 1], dtype=np.int32),
                      name=f"{base}/input_shape")
        x = rw.add_node("Reshape", [x, sc], {"T": dtype, "Tshape": DType.int32},
                        name=f"{base}/input").output()
        known[x] = (m.major, m.height, m.width, 1)
    kc = rw.const(np.asarray(m.kernel, dtype=dtype.numpy), name=f"{base}/k")
    attrs = {"T": dtype, "upx": m.up[0], "upy": m.up[1], "downx": m.down[0],
             "downy": m.down[1], "padx0": m.pad[0], "padx1": m.pad[1], "pady0": m.pad[2],
             "pady1": m.pad[3]}
    node = rw.add_node("UpFirDn2D", [x, kc], attrs, name=base)
    y = node.output()
    out_h, out_w = (m.end_shape[2:] if m.end_nchw else m.end_shape[1:3])
    known[y] = (m.major, out_h, out_w, m.minor)
    if m.end_nchw:
        sc = rw.const(np.asarray(m.end_shape, dtype=np.int32), name=f"{base}/output_shape")
        y = rw.add_node("Reshape", [y, sc], {"T": dtype, "Tshape": DType.int32},
                        name=f"{base}/output").output()
        known[y] = m.end_shape
    rw.replace_uses(m.end, y, outputs=False)
    if graph.has_outside_uses(m.end.node):  # a declared output: keep its name
        rw.replace_node_def(make_node_def(m.end.node, "Identity", [y.input_string],
                                          {"T": dtype}))
    dead = list(m.nodes)
    if lower:

        def overlay(t: TensorRef) -> Shape | None:
            return known[t] if t in known else shape(t)

        dead += lower_upfirdn_node(graph, rw, graph.node(node.name), overlay)
    return dead


@register_pass("stylegan::raise_upfirdn2d_ref")
class RaiseUpFirDn2DRef(Pass):
    """Replace StyleGAN2's reference upfirdn2d chains (6-D pad, transposes) by UpFirDn2D.

    Each chain ``Reshape -> 6-D Pad -> Reshape -> Pad -> StridedSlice -> Transpose ->
    Reshape -> Conv2D(Const [kh,kw,1,1]) -> Reshape -> Transpose -> StridedSlice`` is
    recognised by structure from its one-channel VALID NCHW ``Conv2D``; up/down factors,
    pads and the kernel are read from the constants. With ``lower`` (the default) the new
    ``UpFirDn2D`` is lowered at once like ``stylegan::lower_upfirdn2d`` does it, leaving no
    6-D tensor and no Transpose; without it the canonical custom op is left for that pass.

    Before::

        r  = Reshape(x [1,3,4,4], [-1,4,4,1])
        a  = Reshape(r, [-1,4,1,4,1,1]);  p = Pad(a, [[0,0],[0,0],[0,1],[0,0],[0,1],[0,0]])
        b  = Reshape(p, [-1,8,8,1]);      q = Pad(b, [[0,0],[2,1],[2,1],[0,0]])
        s  = StridedSlice(q);  t = Transpose(s, [0,3,1,2]);  c = Reshape(t, [-1,1,11,11])
        v  = Conv2D(c, Const [4,4,1,1], VALID, NCHW);  d = Reshape(v, [-1,1,8,8])
        e  = Transpose(d, [0,2,3,1]);  f = StridedSlice(e, ::1);  y = Reshape(f, [-1,3,8,8])

    After (``lower=false``)::

        r  = Reshape(x, [-1,4,4,1])
        u  = UpFirDn2D(r, Const k) upx=upy=2 padx0=pady0=2 padx1=pady1=1
        y  = Reshape(u, [-1,3,8,8])

    After (default): ``Pad -> DepthToSpace -> Pad -> DepthwiseConv2dNative`` on ``x``.
    """

    infers_shapes = True

    lower = Option(bool, True, "lower the recognised UpFirDn2D at once "
                   "(as stylegan::lower_upfirdn2d)")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        convs = [c for c in graph.nodes("Conv2D") if _one_channel_filter(graph, c)]
        if not convs:
            return  # nothing to match: skip shape inference
        shape = shape_lookup(graph)
        matcher = Matcher(upfirdn_ref_pattern(shape))
        matches = []
        for conv in convs:
            m = match_upfirdn_ref(graph, conv, shape, matcher)
            if m is not None:
                matches.append(m)
        dead: list[str] = []
        for m in matches:
            dead += raise_match(graph, rw, m, shape, lower=self.lower)
        if dead:
            rw.erase_dead(dead)
