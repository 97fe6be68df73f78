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


def _sole_user(graph: Graph, t: TensorRef) -> Node | None:
    """The one node reading ``t`` (once), when nothing else reads ``t.node``."""
    if t.port != 0 or graph.is_output(t.node):
        return None
    users = graph.users(t.node)
    cons = graph.consumers(t)
    if len(users) != 1 or len(cons) != 1:
        return None
    return cons[0][0]


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


def match_upfirdn_ref(graph: Graph, conv: Node, shape: ShapeFn) -> UpFirDnMatch | None:
    """Match the reference ``upfirdn2d`` chain around ``conv``, or None."""
    k = _conv_kernel(graph, conv, shape)
    if k is None:
        return None
    kh, kw = k.shape
    nodes = [conv.name]
    transposes = 0

    # ---------------------------------------------------------------- backwards
    cur = conv.data_inputs[0]
    cs = shape(cur)
    nchw, c = True, 1  # cur is [M, C, H, W] (nchw) or [M, H, W, C]
    crop = [0, 0, 0, 0]  # px0 px1 py0 py1 removed by slices
    pads = [0, 0, 0, 0]
    up = (1, 1)
    while True:
        if cur.port != 0 or _sole_user(graph, cur) is None:
            break
        n = graph.node(cur.node)
        if not n.data_inputs:
            break
        src = n.data_inputs[0]
        ss = shape(src)
        if ss is None or any(d <= 0 for d in ss):
            break
        if nchw:
            if n.op == "Reshape" and len(ss) == 4:
                if ss[2:] == cs[2:] and ss[0] * ss[1] == cs[0] * cs[1]:
                    c = ss[1]
                elif c == 1 and cs[1] == 1 and ss[1:3] == cs[2:] and ss[3] == 1 \
                        and ss[0] == cs[0]:
                    nchw = False
                else:
                    break
            elif _perm(graph, n) == [0, 3, 1, 2]:
                nchw, c = False, ss[3]
                transposes += 1
            else:
                break
        else:
            if n.op == "StridedSlice":
                spec = _slice_spec(graph, n, ss)
                if spec is None or any(st != 1 for _, _, st in spec):
                    break
                if spec[0] != (0, ss[0], 1) or spec[3] != (0, ss[3], 1):
                    break
                cut = [spec[2][0], ss[2] - spec[2][1], spec[1][0], ss[1] - spec[1][1]]
                if any(cut) and any(pads):
                    break  # a crop before a pad: not upfirdn2d's order
                crop = [a + b for a, b in zip(crop, cut)]
            elif n.op in ("Pad", "PadV2"):
                p = _pad_spec(graph, n)
                if p is None or len(p) != 4 or p[0] != [0, 0] or p[3] != [0, 0]:
                    break
                if min(v for row in p for v in row) < 0:
                    break
                pads = [pads[0] + p[2][0], pads[1] + p[2][1], pads[2] + p[1][0],
                        pads[3] + p[1][1]]
            elif n.op == "Reshape" and ss == cs:
                pass  # no-op reshape
            elif n.op == "Reshape" and len(ss) == 6:
                found = _zero_insertion(graph, n, shape)
                if found is None:
                    break
                up, chain, start = found
                nodes += [n.name, *chain]
                cur, cs = start, shape(start)
                break
            else:
                break
        nodes.append(n.name)
        cur, cs = src, ss
    start, start_nchw = cur, nchw
    if nchw and c != 1:
        return None
    if start_nchw:
        major, minor, in_h, in_w = cs[0], 1, cs[2], cs[3]
    else:
        major, in_h, in_w, minor = cs
    if c != minor and not start_nchw:
        return None

    # ---------------------------------------------------------------- forwards
    cur = conv.output()
    cs = shape(cur)
    if cs is None or len(cs) != 4 or any(d <= 0 for d in cs):
        return None
    nchw, c_out = True, 1
    down = (1, 1)
    while True:
        u = _sole_user(graph, cur)
        if u is None or not u.data_inputs or u.data_inputs[0] != cur:
            break
        us = shape(u.output())
        if us is None or any(d <= 0 for d in us):
            break
        if nchw:
            if u.op == "Reshape" and len(us) == 4:
                if us[2:] == cs[2:] and us[0] * us[1] == cs[0] * cs[1]:
                    c_out = us[1]
                elif c_out == 1 and cs[1] == 1 and us[1:3] == cs[2:] and us[3] == 1:
                    nchw = False
                else:
                    break
            elif _perm(graph, u) == [0, 2, 3, 1]:
                nchw = False
                transposes += 1
            else:
                break
        else:
            if u.op == "StridedSlice":
                spec = _slice_spec(graph, u, cs)
                if spec is None or spec[0] != (0, cs[0], 1) or spec[3] != (0, cs[3], 1):
                    break
                if spec[1][:2] != (0, cs[1]) or spec[2][:2] != (0, cs[2]):
                    break
                step = (spec[2][2], spec[1][2])
                if step != (1, 1):
                    if down != (1, 1):
                        break
                    down = step
            elif u.op == "Reshape" and us == cs:
                pass
            else:
                break
        nodes.append(u.name)
        cur, cs = u.output(), us
    end, end_nchw = cur, nchw
    if end_nchw and c_out != 1:
        return None
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


def _zero_insertion(graph: Graph, r2: Node, shape: ShapeFn) -> tuple | None:
    """``Reshape(Pad(Reshape(x, [M,H,1,W,1,C]), zeros), [M,H*uy,W*ux,C])``: ``(up, nodes, x)``."""
    p1_out = r2.data_inputs[0]
    if _sole_user(graph, p1_out) is None:
        return None
    p1 = graph.node(p1_out.node)
    pads = _pad_spec(graph, p1)
    if pads is None or len(pads) != 6 or not p1.data_inputs:
        return None
    r1_out = p1.data_inputs[0]
    if _sole_user(graph, r1_out) is None:
        return None
    r1 = graph.node(r1_out.node)
    if r1.op != "Reshape":
        return None
    x = r1.data_inputs[0]
    xs, s6, s4 = shape(x), shape(r1_out), shape(r2.output())
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
    return (ux, uy), [p1.name, r1.name], x



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
        matches = []
        for conv in convs:
            m = match_upfirdn_ref(graph, conv, shape)
            if m is not None:
                matches.append(m)
        dead: list[str] = []
        for m in matches:
            dead += raise_match(graph, rw, m, shape, lower=self.lower)
        if dead:
            rw.erase_dead(dead)
