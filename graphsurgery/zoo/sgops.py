"""StyleGAN2 op maths as TensorFlow graph-mode functions.

Shared by the StyleGAN2 ``Gs`` builder (:mod:`graphsurgery.zoo.stylegan2`) and by reference
runners that replace the custom-op nodes of a frozen graph with standard-op subgraphs. The
functions follow the maths of the original TF1 code (see
``shared/reference/stylegan-graphs.md``) and spell out the same op structure: NCHW
convolutions, the 6-D ``Pad`` of the reference ``upfirdn2d``, ``LeakyRelu`` then ``* gain``.

Two implementations exist for the two primitive ops, selected by ``impl``:

* ``"ref"``: standard TensorFlow ops only (:func:`upfirdn2d_ref`, :func:`fused_bias_act_ref`).
* ``"cuda"``: the original's custom ops ``UpFirDn2D`` and ``FusedBiasAct``. TensorFlow cannot
  create unregistered ops in a ``Graph``, so a ``Placeholder`` stand-in with the right dtype
  and static shape is emitted (wrapped in the ``IdentityN`` a ``tf.custom_gradient`` leaves)
  and recorded in the graph collection :data:`CUSTOM_OPS_COLLECTION`. After freezing,
  :func:`materialize_custom_ops` turns every stand-in into the real custom ``NodeDef``.

Layout conventions: ``upfirdn2d*`` take the custom op's layout ``[majorDim, H, W, minorDim]``;
everything else is NCHW. Convolution weights are ``[kh, kw, Cin, Cout]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphsurgery.zoo._lazy import tf

SQRT2 = float(np.sqrt(2.0))

#: Graph collection holding one :class:`CustomOpStandIn` per emitted custom op.
CUSTOM_OPS_COLLECTION = "graphsurgery_sg2_custom_op_standins"

Impl = str  # "ref" | "cuda"


# --------------------------------------------------------------------------------------------
# Activation table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActSpec:
    """One activation of ``fused_bias_act``: reference function, defaults and custom-op code."""

    func: Callable[[tf.Tensor, float | None], tf.Tensor]
    def_alpha: float | None
    def_gain: float
    code: int


ACTIVATIONS: dict[str, ActSpec] = {
    "linear": ActSpec(lambda x, _a: x, None, 1.0, 1),
    "relu": ActSpec(lambda x, _a: tf.nn.relu(x), None, SQRT2, 2),
    "lrelu": ActSpec(lambda x, a: tf.nn.leaky_relu(x, alpha=a), 0.2, SQRT2, 3),
    "tanh": ActSpec(lambda x, _a: tf.nn.tanh(x), None, 1.0, 4),
    "sigmoid": ActSpec(lambda x, _a: tf.nn.sigmoid(x), None, 1.0, 5),
    "elu": ActSpec(lambda x, _a: tf.nn.elu(x), None, 1.0, 6),
    "selu": ActSpec(lambda x, _a: tf.nn.selu(x), None, 1.0, 7),
    "softplus": ActSpec(lambda x, _a: tf.nn.softplus(x), None, 1.0, 8),
    "swish": ActSpec(lambda x, _a: tf.nn.sigmoid(x) * x, None, SQRT2, 9),
}

#: ``act`` attribute values of the ``FusedBiasAct`` custom op.
ACT_CODES: dict[str, int] = {name: spec.code for name, spec in ACTIVATIONS.items()}
#: Inverse of :data:`ACT_CODES`.
ACT_NAMES: dict[int, str] = {code: name for name, code in ACT_CODES.items()}

UPFIRDN_ATTRS = ("upx", "upy", "downx", "downy", "padx0", "padx1", "pady0", "pady1")
FUSED_BIAS_ACT_ATTRS = ("axis", "act", "alpha", "gain", "grad")


def act_defaults(act: str, alpha: float | None = None, gain: float | None = None) -> tuple:
    """Resolve ``(alpha, gain)`` for ``act`` the way the original does (``None`` -> default)."""
    spec = ACTIVATIONS[act]
    return (spec.def_alpha if alpha is None else alpha), (spec.def_gain if gain is None else gain)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _dim(x: tf.Tensor, i: int) -> Any:
    """Static size of dimension ``i`` if known, else a scalar ``tf.shape(x)[i]``."""
    d = x.shape[i]
    return int(d) if d is not None else tf.shape(x)[i]


def setup_kernel(k: Sequence | np.ndarray) -> np.ndarray:
    """FIR kernel as the original sets it up: 1-D -> outer product, normalised to sum 1."""
    k = np.asarray(k, dtype=np.float32)
    if k.ndim == 1:
        k = np.outer(k, k)
    k /= np.sum(k)
    assert k.ndim == 2 and k.shape[0] == k.shape[1]
    return k


def _static_kernel(k: Any) -> np.ndarray | None:
    if isinstance(k, tf.Tensor):
        v = tf.get_static_value(k)
        return None if v is None else np.asarray(v, dtype=np.float32)
    return np.asarray(k, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Custom-op stand-ins
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomOpStandIn:
    """A ``Placeholder`` standing in for a custom op until :func:`materialize_custom_ops`."""

    name: str  # node name of the Placeholder (and of the custom op afterwards)
    op: str  # "FusedBiasAct" | "UpFirDn2D"
    inputs: tuple[str, ...]  # tensor names of the custom op's inputs
    attrs: dict[str, Any] = field(default_factory=dict)  # int/float attrs, plus T (a DType)


def _emit_standin(op: str, inputs: Sequence[tf.Tensor], attrs: dict[str, Any],
                  shape: Sequence[int | None]) -> tf.Tensor:
    dtype = inputs[0].dtype
    y = tf.compat.v1.placeholder(dtype, shape=shape, name=op)
    rec = CustomOpStandIn(y.op.name, op, tuple(t.name for t in inputs), {**attrs, "T": dtype})
    y.graph.add_to_collection(CUSTOM_OPS_COLLECTION, rec)
    return y


def custom_op_standins(graph: tf.Graph) -> list[CustomOpStandIn]:
    """The stand-ins recorded in ``graph``."""
    return list(graph.get_collection(CUSTOM_OPS_COLLECTION))


def freeze(graph: tf.Graph, params: Any, keep: list[str]) -> tuple[Any, list[CustomOpStandIn]]:
    """Freeze a built generator ``graph`` to the nodes ``keep`` needs, with its custom-op
    stand-ins turned into the custom ops; returns the GraphDef and the stand-ins.

    ``params`` holds the variables: given values (``params.given``, e.g. from a pickle) are
    frozen without a session into graphsurgery's GraphDef
    (:func:`graphsurgery.zoo.freeze_given`); random ones are loaded into a session and
    frozen with ``convert_variables_to_constants`` (a TensorFlow GraphDef).
    """
    from graphsurgery.zoo import freeze_given
    from graphsurgery.zoo._lazy import v1

    standins = custom_op_standins(graph)
    if params.given is not None:
        gd = graph.as_graph_def()
        if standins:
            gd = materialize_custom_ops(gd, standins)
        return freeze_given(gd, {v.op.name: x for v, x in params.values}, keep), standins
    with v1.Session(graph=graph) as sess:
        params.load(sess)
        frozen = v1.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), keep + standin_keep_nodes(standins))
    if standins:
        frozen = materialize_custom_ops(frozen, standins)
    return v1.graph_util.extract_sub_graph(frozen, keep), standins


def node_name(tensor_name: str) -> str:
    """``"a/b:0"`` -> ``"a/b"``; ``"a/b:1"`` -> ``"a/b"``; ``"^a"`` -> ``"a"``."""
    name = tensor_name.lstrip("^")
    return name.rsplit(":", 1)[0] if ":" in name else name


def _input_ref(tensor_name: str) -> str:
    node, _, port = tensor_name.partition(":")
    return node if port in ("", "0") else f"{node}:{port}"


def standin_keep_nodes(standins: Iterable[CustomOpStandIn]) -> list[str]:
    """Node names the stand-ins consume; keep them alive through freezing's pruning."""
    names: list[str] = []
    for rec in standins:
        for t in rec.inputs:
            n = node_name(t)
            if n not in names:
                names.append(n)
    return names


def materialize_custom_ops(graph_def: Any, standins: Iterable[CustomOpStandIn]) -> Any:
    """Copy of ``graph_def`` with each stand-in ``Placeholder`` turned into its custom op.

    The result holds ``FusedBiasAct``/``UpFirDn2D`` nodes and therefore no longer imports
    into TensorFlow ("Op type not registered"), exactly like a graph frozen from the released
    pickles.
    """
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    by_name = {rec.name: rec for rec in standins}
    done = set()
    for node in out.node:
        rec = by_name.get(node.name)
        if rec is None:
            continue
        if node.op != "Placeholder":
            raise ValueError(f"stand-in {node.name} is a {node.op}, expected a Placeholder")
        node.op = rec.op
        del node.input[:]
        node.input.extend(_input_ref(t) for t in rec.inputs)
        node.ClearField("attr")
        for key, value in rec.attrs.items():
            if key == "T":
                node.attr[key].type = tf.as_dtype(value).as_datatype_enum
            elif isinstance(value, float):
                node.attr[key].f = value
            else:
                node.attr[key].i = int(value)
        done.add(node.name)
    missing = set(by_name) - done
    if missing:
        raise ValueError(f"custom-op stand-ins missing from the graph: {sorted(missing)[:5]}")
    return out


# --------------------------------------------------------------------------------------------
# fused_bias_act
# --------------------------------------------------------------------------------------------


def fused_bias_act_ref(x: tf.Tensor, b: tf.Tensor | None = None, axis: int = 1,
                       act: str = "lrelu", alpha: float | None = None,
                       gain: float | None = None, clamp: float | None = None) -> tf.Tensor:
    """Bias + activation + gain with standard ops: ``act(x + reshape(b)) * gain``, then
    (StyleGAN2-ADA's ``clamp``) ``clip_by_value(x, -clamp, clamp)``."""
    x = tf.convert_to_tensor(x)
    spec = ACTIVATIONS[act]
    alpha, gain = act_defaults(act, alpha, gain)
    if b is not None:
        b = tf.convert_to_tensor(b, dtype=x.dtype)
        if b.shape[0] != 0:
            x += tf.reshape(b, [-1 if i == axis else 1 for i in range(x.shape.rank)])
    x = spec.func(x, alpha)
    if gain != 1:
        x *= gain
    if clamp is not None and clamp >= 0:
        x = tf.clip_by_value(x, -clamp, clamp)
    return x


def fused_bias_act_cuda(x: tf.Tensor, b: tf.Tensor | None = None, axis: int = 1,
                        act: str = "lrelu", alpha: float | None = None,
                        gain: float | None = None, clamp: float | None = None) -> tf.Tensor:
    """Custom-op form: ``FusedBiasAct(x, b, ref)`` (via a stand-in) inside a custom gradient."""
    x = tf.convert_to_tensor(x)
    empty = tf.constant([], dtype=x.dtype)
    b = tf.convert_to_tensor(b, dtype=x.dtype) if b is not None else empty
    spec = ACTIVATIONS[act]
    alpha, gain = act_defaults(act, alpha, gain)
    attrs = {"axis": int(axis), "act": spec.code, "alpha": float(alpha or 0.0),
             "gain": float(gain), "grad": 0}
    if clamp is not None:  # StyleGAN2-ADA's op has a clamp attribute
        attrs["clamp"] = float(clamp)

    @tf.custom_gradient
    def func(x: tf.Tensor, b: tf.Tensor) -> tuple:
        y = _emit_standin("FusedBiasAct", [x, b, empty], attrs, x.shape.as_list())

        def grad(dy: tf.Tensor) -> tuple:  # never called: inference graphs only
            raise NotImplementedError("gradients of the FusedBiasAct stand-in")

        return y, grad

    y = func(x, b)
    y.set_shape(x.shape)
    return y


def fused_bias_act(x: tf.Tensor, b: tf.Tensor | None = None, axis: int = 1,
                   act: str = "linear", alpha: float | None = None, gain: float | None = None,
                   impl: Impl = "ref", clamp: float | None = None) -> tf.Tensor:
    """Dispatch to :func:`fused_bias_act_ref` or :func:`fused_bias_act_cuda`."""
    fn = {"ref": fused_bias_act_ref, "cuda": fused_bias_act_cuda}[impl]
    return fn(x, b, axis=axis, act=act, alpha=alpha, gain=gain, clamp=clamp)


# --------------------------------------------------------------------------------------------
# upfirdn2d
# --------------------------------------------------------------------------------------------


def _check_updown(*vals: int) -> None:
    for v in vals:
        if not isinstance(v, (int, np.integer)):
            raise TypeError(f"upfirdn2d factors and pads must be ints, got {v!r}")


def upfirdn2d_ref(x: tf.Tensor, k: Any, upx: int = 1, upy: int = 1, downx: int = 1,
                  downy: int = 1, padx0: int = 0, padx1: int = 0, pady0: int = 0,
                  pady1: int = 0) -> tf.Tensor:
    """Upsample (zeros), pad/crop, FIR-filter, downsample ``x`` [major, H, W, minor].

    The reference form of the ``UpFirDn2D`` custom op: 6-D reshape and ``Pad`` to insert
    zeros, ``Pad`` + ``StridedSlice`` crop, transpose to ``[-1, 1, H', W']``, a VALID NCHW
    ``Conv2D`` with the flipped kernel, and a strided slice for down-sampling. ``k`` is a 2-D
    kernel (array, or a tensor; its value need not be static when its shape is).
    """
    x = tf.convert_to_tensor(x)
    _check_updown(upx, upy, downx, downy, padx0, padx1, pady0, pady1)
    if x.shape.rank != 4:
        raise ValueError(f"upfirdn2d_ref expects [major, H, W, minor], got {x.shape}")
    kv = _static_kernel(k)
    if kv is not None:
        kernel_h, kernel_w = kv.shape
        w = tf.constant(kv[::-1, ::-1, np.newaxis, np.newaxis], dtype=x.dtype)
    else:
        k = tf.convert_to_tensor(k, dtype=x.dtype)
        kernel_h, kernel_w = (int(d) for d in k.shape)
        w = tf.reverse(k, [0, 1])[:, :, tf.newaxis, tf.newaxis]
    in_h, in_w, minor = _dim(x, 1), _dim(x, 2), _dim(x, 3)

    # Upsample (insert zeros).
    x = tf.reshape(x, [-1, in_h, 1, in_w, 1, minor])
    x = tf.pad(x, [[0, 0], [0, 0], [0, upy - 1], [0, 0], [0, upx - 1], [0, 0]])
    x = tf.reshape(x, [-1, in_h * upy, in_w * upx, minor])

    # Pad (crop if negative).
    x = tf.pad(x, [[0, 0], [max(pady0, 0), max(pady1, 0)], [max(padx0, 0), max(padx1, 0)],
                   [0, 0]])
    x = x[:, max(-pady0, 0):_dim(x, 1) - max(-pady1, 0),
          max(-padx0, 0):_dim(x, 2) - max(-padx1, 0), :]

    # Convolve with the filter (one channel, NCHW as in the original).
    x = tf.transpose(x, [0, 3, 1, 2])
    x = tf.reshape(x, [-1, 1, in_h * upy + pady0 + pady1, in_w * upx + padx0 + padx1])
    x = tf.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="VALID", data_format="NCHW")
    x = tf.reshape(x, [-1, minor, in_h * upy + pady0 + pady1 - kernel_h + 1,
                       in_w * upx + padx0 + padx1 - kernel_w + 1])
    x = tf.transpose(x, [0, 2, 3, 1])

    # Downsample (throw away pixels).
    return x[:, ::downy, ::downx, :]


def upfirdn2d_cuda(x: tf.Tensor, k: Any, upx: int = 1, upy: int = 1, downx: int = 1,
                   downy: int = 1, padx0: int = 0, padx1: int = 0, pady0: int = 0,
                   pady1: int = 0) -> tf.Tensor:
    """Custom-op form: ``UpFirDn2D(x, k)`` (via a stand-in) inside a custom gradient."""
    x = tf.convert_to_tensor(x)
    _check_updown(upx, upy, downx, downy, padx0, padx1, pady0, pady1)
    kv = _static_kernel(k)
    if kv is None:
        raise ValueError("upfirdn2d_cuda needs a constant kernel")
    major, in_h, in_w, minor = x.shape.as_list()
    kernel_h, kernel_w = kv.shape
    if in_h is None or in_w is None:
        raise ValueError("upfirdn2d_cuda needs static H and W")
    out_w = (in_w * upx + padx0 + padx1 - kernel_w) // downx + 1
    out_h = (in_h * upy + pady0 + pady1 - kernel_h) // downy + 1
    if out_w < 1 or out_h < 1:
        raise ValueError("upfirdn2d output would be empty")
    kc = tf.constant(kv, dtype=x.dtype)
    attrs = {"upx": upx, "upy": upy, "downx": downx, "downy": downy,
             "padx0": padx0, "padx1": padx1, "pady0": pady0, "pady1": pady1}

    @tf.custom_gradient
    def func(x: tf.Tensor) -> tuple:
        y = _emit_standin("UpFirDn2D", [x, kc], attrs, [major, out_h, out_w, minor])

        def grad(dy: tf.Tensor) -> tf.Tensor:  # never called: inference graphs only
            raise NotImplementedError("gradients of the UpFirDn2D stand-in")

        return y, grad

    y = func(x)
    y.set_shape([major, out_h, out_w, minor])
    return y


def upfirdn2d(x: tf.Tensor, k: Any, upx: int = 1, upy: int = 1, downx: int = 1,
              downy: int = 1, padx0: int = 0, padx1: int = 0, pady0: int = 0, pady1: int = 0,
              impl: Impl = "ref") -> tf.Tensor:
    """Dispatch to :func:`upfirdn2d_ref` or :func:`upfirdn2d_cuda`."""
    fn = {"ref": upfirdn2d_ref, "cuda": upfirdn2d_cuda}[impl]
    return fn(x, k, upx=upx, upy=upy, downx=downx, downy=downy, padx0=padx0, padx1=padx1,
              pady0=pady0, pady1=pady1)


def upfirdn2d_nchw(x: tf.Tensor, k: Any, up: int = 1, down: int = 1,
                   pad: tuple[int, int] = (0, 0), impl: Impl = "ref") -> tf.Tensor:
    """upfirdn2d on NCHW ``x``: reshape to ``[N*C, H, W, 1]``, filter, reshape back."""
    x = tf.convert_to_tensor(x)
    pad0, pad1 = pad
    y = tf.reshape(x, [-1, _dim(x, 2), _dim(x, 3), 1])
    y = upfirdn2d(y, k, upx=up, upy=up, downx=down, downy=down, padx0=pad0, padx1=pad1,
                  pady0=pad0, pady1=pad1, impl=impl)
    return tf.reshape(y, [-1, _dim(x, 1), _dim(y, 1), _dim(y, 2)])


def upsample_2d(x: tf.Tensor, k: Sequence = (1, 3, 3, 1), factor: int = 2, gain: float = 1,
                impl: Impl = "ref") -> tf.Tensor:
    """Upsample NCHW ``x`` by ``factor`` with FIR filter ``k`` (output ``factor`` x larger)."""
    kk = setup_kernel(k) * (gain * factor**2)
    p = kk.shape[0] - factor
    return upfirdn2d_nchw(x, kk, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2), impl=impl)


def downsample_2d(x: tf.Tensor, k: Sequence = (1, 3, 3, 1), factor: int = 2, gain: float = 1,
                  impl: Impl = "ref") -> tf.Tensor:
    """FIR-filter then downsample NCHW ``x`` by ``factor``."""
    kk = setup_kernel(k) * gain
    p = kk.shape[0] - factor
    return upfirdn2d_nchw(x, kk, down=factor, pad=((p + 1) // 2, p // 2), impl=impl)


def conv2d(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """Stride-1 SAME NCHW ``Conv2D`` (grouped when x's depth is a multiple of w's Cin)."""
    return tf.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME", data_format="NCHW")


def upsample_conv_2d(x: tf.Tensor, w: tf.Tensor, k: Sequence = (1, 3, 3, 1), factor: int = 2,
                     gain: float = 1, impl: Impl = "ref") -> tf.Tensor:
    """Fused 2x upsample + conv: ``Conv2DBackpropInput`` (stride 2, VALID, NCHW) + FIR.

    ``w`` is ``[k, k, Cin, Cout]`` (``Cout`` may be ``N*Cout`` for the grouped fused form,
    where the number of groups is the input depth divided by ``Cin``); it is flipped and
    regrouped at run time, then the result is FIR-filtered with ``k``.
    """
    return _upsample_conv_2d(x, w, k, factor, gain, impl)[1]


def _upsample_conv_2d(x: tf.Tensor, w: tf.Tensor, k: Sequence, factor: int, gain: float,
                      impl: Impl) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`upsample_conv_2d` returning ``(transposed-conv output, filtered output)``."""
    w = tf.convert_to_tensor(w)
    if w.shape.rank != 4:
        raise ValueError(f"weight must be 4-D, got {w.shape}")
    conv_h, conv_w = int(w.shape[0]), int(w.shape[1])
    in_c, out_c = _dim(w, 2), _dim(w, 3)
    kk = setup_kernel(k) * (gain * factor**2)
    p = (kk.shape[0] - factor) - (conv_w - 1)

    stride = [1, 1, factor, factor]
    output_shape = [_dim(x, 0), out_c, (_dim(x, 2) - 1) * factor + conv_h,
                    (_dim(x, 3) - 1) * factor + conv_w]
    num_groups = _dim(x, 1) // in_c

    # Flip and regroup the weight: [kh, kw, Cin, G*Cout] -> [kh, kw, Cout, G*Cin].
    w = tf.reshape(w, [conv_h, conv_w, in_c, num_groups, -1])
    w = tf.transpose(w[::-1, ::-1], [0, 1, 4, 3, 2])
    w = tf.reshape(w, [conv_h, conv_w, -1, num_groups * in_c])

    x = tf.nn.conv2d_transpose(x, w, output_shape=output_shape, strides=stride,
                               padding="VALID", data_format="NCHW")
    y = upfirdn2d_nchw(x, kk, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), impl=impl)
    return x, y


# --------------------------------------------------------------------------------------------
# Modulated convolution
# --------------------------------------------------------------------------------------------


@dataclass
class ModConvParts:
    """Tensors of one modulated convolution, for callers that record node names."""

    ww: tf.Tensor | None = None  # 5-D modulated (and demodulated) weight [N, k, k, Cin, Cout]
    d: tf.Tensor | None = None  # demodulation coefficients [N, Cout]
    weight: tf.Tensor | None = None  # the weight the conv consumes
    conv: tf.Tensor | None = None  # output of the Conv2D / Conv2DBackpropInput node
    out: tf.Tensor | None = None


def modulated_conv2d(x: tf.Tensor, w: tf.Tensor, s: tf.Tensor, demodulate: bool = True,
                     fused: bool = True, up: bool = False,
                     resample_kernel: Sequence = (1, 3, 3, 1), impl: Impl = "ref",
                     parts: ModConvParts | None = None) -> tf.Tensor:
    """StyleGAN2 modulated convolution of NCHW ``x`` with weight ``w`` and styles ``s``.

    ``w`` is the effective weight ``[k, k, Cin, Cout]`` (already multiplied by its run-time
    coefficient), ``s`` the styles ``[N, Cin]``. ``fused=True`` folds the batch into channels
    and runs one grouped convolution with a run-time weight; ``fused=False`` computes
    ``x * s -> conv(w) -> x * d``. ``up=True`` fuses a 2x FIR upsampling.
    """
    parts = parts if parts is not None else ModConvParts()
    fmaps = int(w.shape[3])
    ww = w[tf.newaxis]  # [BkkIO]
    ww *= s[:, tf.newaxis, tf.newaxis, :, tf.newaxis]
    d = None
    if demodulate:
        d = tf.math.rsqrt(tf.reduce_sum(tf.square(ww), axis=[1, 2, 3]) + 1e-8)  # [BO]
        ww *= d[:, tf.newaxis, tf.newaxis, tf.newaxis, :]
    parts.ww, parts.d = ww, d

    if fused:
        x = tf.reshape(x, [1, -1, x.shape[2], x.shape[3]])
        w = tf.reshape(tf.transpose(ww, [1, 2, 3, 0, 4]),
                       [ww.shape[1], ww.shape[2], ww.shape[3], -1])
    else:
        x *= s[:, :, tf.newaxis, tf.newaxis]
    parts.weight = w

    if up:
        parts.conv, x = _upsample_conv_2d(x, w, resample_kernel, 2, 1, impl)
    else:
        x = parts.conv = conv2d(x, w)

    if fused:
        x = tf.reshape(x, [-1, fmaps, x.shape[2], x.shape[3]])
    elif demodulate:
        x *= d[:, :, tf.newaxis, tf.newaxis]
    parts.out = x
    return x


def pixel_norm(x: tf.Tensor, epsilon: float = 1e-8) -> tf.Tensor:
    """``x * rsqrt(mean(square(x), axis=1, keepdims) + eps)``."""
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=1, keepdims=True) + epsilon)


def lerp(a: Any, b: Any, t: Any) -> tf.Tensor:
    """``a + (b - a) * t``."""
    return a + (b - a) * t
