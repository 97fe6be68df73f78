"""The ``mobile`` quantization recipe: per-channel int8 weights, fp16 bottleneck denses.

``convert_tflite(graph, path, quantize="mobile")`` converts in fp32 and then rewrites the
weights of the flatbuffer with :func:`quantize_mobile`:

* every ``CONV_2D`` and ``FULLY_CONNECTED`` filter with at least ``min_elements`` (1024)
  values is stored as symmetric int8 with one scale per output channel (quantized
  dimension 0). LiteRT runs such ops as dynamic-range ("hybrid") kernels, which XNNPACK
  delegates: float activations, quantized on the fly, int8 weights kept in int8;
* a ``FULLY_CONNECTED`` that *dominates* the outputs from some model input (every path
  from that input to an output goes through it: StyleGAN's mapping network, which feeds
  every style dense) keeps fp16 weights behind a ``DEQUANTIZE``, as ``--quantize fp16``
  stores them: an error there reaches every layer;
* the rest stays as converted: small filters (StyleGAN's per-channel noise weights and the
  1x1 ToRGB), biases, depthwise (FIR) filters and constant activations (frozen noise).

Before and after, on a mapping (``FC -> FC``) feeding a style dense and a convolution::

    latents -> FC[f32 512x512] -> FC[f32 512x512] -> w -> FC[f32 1024x512] -> s
    x -> CONV_2D[f32 512x3x3x512] * s -> ...
  becomes
    latents -> FC[DEQUANTIZE(f16)] -> FC[DEQUANTIZE(f16)] -> w -> FC[i8, 1024 scales] -> s
    x -> CONV_2D[i8, 512 scales] * s -> ...

Why this recipe (measured on StyleGAN v1 and StyleGAN2 config-f cut from 1024 to 256 px,
random weights, SSIM against the fp32 ``.tflite`` over 16 latents; ``benchmarks/mobile.py``
prints the table): int8 everywhere gives SSIM 0.954 (v1) and 0.988 (v2), as TensorFlow's
own ``dynamic`` does; a sensitivity analysis (one group of layers at a time in int4, the
rest int8) put the mapping first (int4 mapping: SSIM 0.63), the convolutions and style
denses of the early layers next (one 512-channel convolution in int4: 0.95 -> 0.82-0.89),
the 128 and 256 px layers last (< 0.01 each); keeping the mapping in fp16 lifts v1 to
0.972 and v2 to 0.991 for 2 MB. LiteRT runs per-channel int4 convolution weights outside
XNNPACK (StyleGAN2: 2-3x the time of int8) and they cost v1 0.22 SSIM when every
convolution has them, so the recipe uses none.

``--quantize mobile-int4`` (:data:`MOBILE_INT4`) is the smaller point: XNNPACK runs
``FULLY_CONNECTED`` with *block-wise* int4 filters (TFLite's ``BlockwiseQuantization``, one
fp16 scale per 32 input values; not ``CONV_2D``), so every convolution with at most 32x32
outputs (v1's 512-channel layers, most of its weights, small activations) becomes im2col +
``FULLY_CONNECTED`` with such a filter, rounded by GPTQ against 32 seeded runs of the fp32
model (:mod:`graphsurgery.export._gptq`), and the mapping goes to int8. v1 cut to 256 px
with 3x3 convolutions kept: 19.4 MB, SSIM 0.910 (worst 0.880) over 16 held-out latents;
nearest rounding instead of GPTQ gives 0.82; minutes of calibration at 256 px.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, UsageError

#: Filters smaller than this stay float (TensorFlow's dynamic-range quantizer uses 1024 too).
MIN_ELEMENTS = 1024

#: Block-wise int4: input values per fp16 scale (XNNPACK's qb4w kernels take multiples of 32).
BLOCK_SIZE = 32
#: Convolutions rewritten as im2col + FULLY_CONNECTED have at most this many output positions
#: (the im2col copy is kh * kw times the input: 18 MB for a 3x3, 512-channel layer at 32x32).
CONV_MAX_PIXELS = 32 * 32

#: ``--quantize mobile-int4``: the recipe's smaller point (v1 at 256 px: 19.4 MB, SSIM 0.91):
#: convolutions with at most 32x32 outputs in block-wise int4 rounded by GPTQ against 32
#: seeded runs, every other filter (the mapping too) per-channel int8.
MOBILE_INT4: dict[str, Any] = {"int4_blocks": ("convs",), "bottleneck_fp16": False,
                               "calibration": 32}

_QUANTIZED_OPS = ("CONV_2D", "FULLY_CONNECTED")
_VIRTUAL_OUT = -1


@dataclass
class MobileReport:
    """What :func:`quantize_mobile` did: weights per storage type, and the fp16 denses."""

    int8: int = 0  # filters stored as per-channel int8
    int4: int = 0  # filters stored as per-channel int4 (only with int4_convs)
    int4_blocks: int = 0  # filters stored as block-wise int4 (only with int4_blocks)
    convs_as_fc: int = 0  # of those, convolutions rewritten as im2col + FULLY_CONNECTED
    fp16: int = 0  # bottleneck dense filters stored as fp16
    kept: int = 0  # weighted ops left as converted (small, shared or not constant)
    fp16_ops: list[str] = field(default_factory=list)  # output tensor names

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"int8": self.int8, "fp16": self.fp16, "kept": self.kept,
                               "fp16_ops": list(self.fp16_ops)}
        if self.int4:
            out["int4"] = self.int4
        if self.int4_blocks:
            out["int4_blocks"] = self.int4_blocks
            out["convs_as_fc"] = self.convs_as_fc
        return out


def quantize_mobile(
    model: bytes,
    *,
    min_elements: int = MIN_ELEMENTS,
    bottleneck_fp16: bool = True,
    int4_convs: int = 0,
    int4_blocks: Collection[str] = (),
    block_size: int = BLOCK_SIZE,
    conv_max_pixels: int = CONV_MAX_PIXELS,
    calibration: int = 0,
    quiet: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> tuple[bytes, MobileReport]:
    """Apply the mobile recipe to an fp32 ``.tflite`` (bytes); return the new model and what
    was done. Raises InputError when ``model`` is not a single-subgraph flatbuffer.

    The other points of the measured frontier (``benchmarks/mobile.py``), not the recipe:
    ``bottleneck_fp16=False`` stores the bottleneck denses in int8 too; ``int4_convs=N``
    stores the filters of the last N quantized convolutions (nearest the output, the least
    sensitive) as int4 with one scale per output channel, which LiteRT runs outside XNNPACK.
    ``int4_blocks`` stores filters as block-wise int4 (one fp16 scale per ``block_size``
    input values of an output channel; XNNPACK runs them with its ``qb4w`` kernels, for
    ``FULLY_CONNECTED`` only): ``"denses"`` every quantized dense but the bottlenecks (fp16,
    or int8 with ``bottleneck_fp16=False``),
    ``"convs"`` every quantized stride-1 convolution with at most ``conv_max_pixels`` output
    positions, rewritten as im2col (``PAD``, one ``SLICE`` per tap, ``CONCATENATION``) and a
    ``FULLY_CONNECTED`` of the same filter, the same arithmetic. With ``calibration=N``
    those filters are rounded by GPTQ against N seeded runs of the fp32 model
    (:mod:`graphsurgery.export._gptq`); with 0, to the nearest level. ``quiet`` wraps
    those runs (the TFLite target passes its capture of LiteRT's native log lines).
    """
    from ._schema import _enum_names, _schema

    schema = _schema()
    if len(model) < 8 or model[4:8] != b"TFL3":
        raise InputError("not a TFLite flatbuffer (no 'TFL3' file identifier)")
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    if len(m.subgraphs or []) != 1:
        raise InputError(f"the mobile recipe needs one subgraph, the model has {len(m.subgraphs)}")
    op_names, _ = _enum_names()
    g = m.subgraphs[0]
    ops = list(g.operators or [])
    kinds = [op_names.get(max(m.operatorCodes[o.opcodeIndex].builtinCode,
                              m.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode), "")
             for o in ops]
    tensor_users = Counter(t for o in ops for t in _ints(o.inputs) if t >= 0)
    buffer_users = Counter(int(t.buffer) for t in g.tensors)
    bottlenecks = set(_bottlenecks(g, ops, kinds))
    fp16_ops = bottlenecks if bottleneck_fp16 else set()
    report = MobileReport()
    chosen: list[tuple[int, Any, str, list[int], Any, np.ndarray]] = []
    for i, (op, kind) in enumerate(zip(ops, kinds)):
        inputs = _ints(op.inputs)
        if kind not in _QUANTIZED_OPS or len(inputs) < 2:
            continue
        t = g.tensors[inputs[1]] if inputs[1] >= 0 else None
        data = _float_data(m, t)
        if (data is None or data.size < min_elements or tensor_users[inputs[1]] != 1
                or buffer_users[int(t.buffer)] != 1
                or getattr(op.builtinOptions, "weightsFormat", 0)):  # shuffled FC weights
            report.kept += 1
            continue
        chosen.append((i, op, kind, inputs, t, data.reshape(_ints(t.shape))))
    convs = [c[0] for c in chosen if c[2] == "CONV_2D"]
    int4 = set(convs[len(convs) - min(int4_convs, len(convs)):])
    unknown = set(int4_blocks) - {"denses", "convs"}
    if unknown:
        raise UsageError(f"int4_blocks: unknown group(s) {sorted(unknown)} "
                         "(expected 'denses', 'convs')")
    if block_size < 32 or block_size % 32:
        raise UsageError(f"block_size must be a multiple of 32, got {block_size}")
    dequantize: list[Any] = []
    blockwise: list[tuple[int, Any, str, list[int], Any, np.ndarray]] = []
    for i, op, kind, inputs, t, w in chosen:
        ti = inputs[1]
        if i not in bottlenecks and i not in int4 and _blockwise_ok(
                g, op, kind, w, set(int4_blocks), block_size, conv_max_pixels):
            blockwise.append((i, op, kind, inputs, t, w))
            continue
        if kind == "FULLY_CONNECTED" and i in fp16_ops:
            t.type = schema.TensorType.FLOAT16
            m.buffers[t.buffer].data = np.frombuffer(w.astype("<f2").tobytes(), np.uint8)
            out = schema.TensorT()
            out.shape, out.type, out.buffer = _ints(t.shape), schema.TensorType.FLOAT32, 0
            out.name = (t.name or b"") + b"/dequantize"
            g.tensors.append(out)
            op.inputs = [inputs[0], len(g.tensors) - 1, *inputs[2:]]
            dequantize.append((ti, len(g.tensors) - 1))
            report.fp16 += 1
            report.fp16_ops.append(_name(g.tensors[_ints(op.outputs)[0]]))
            continue
        bits = 4 if i in int4 else 8
        q, scale = _per_channel(w, bits)
        qp = schema.QuantizationParametersT()
        qp.scale = [float(s) for s in scale]
        qp.zeroPoint = [0] * len(qp.scale)
        qp.quantizedDimension = 0
        t.quantization = qp
        if bits == 8:
            t.type = schema.TensorType.INT8
            m.buffers[t.buffer].data = np.frombuffer(q.tobytes(), np.uint8)
            report.int8 += 1
        else:
            t.type = schema.TensorType.INT4
            m.buffers[t.buffer].data = _pack_int4(q.reshape(-1))
            report.int4 += 1
    replaced = _rewrite_blockwise(m, g, blockwise, block_size, calibration, model, report,
                                      quiet)
    if dequantize:
        code = _opcode(m, schema, schema.BuiltinOperator.DEQUANTIZE, version=3)
        new_ops = []
        for src, dst in dequantize:
            d = schema.OperatorT()
            d.opcodeIndex, d.inputs, d.outputs = code, [src], [dst]
            new_ops.append(d)
        g.operators = new_ops + ops  # constant conversions first, as the converter orders them
    if replaced:
        index = {id(o): i for i, o in enumerate(ops)}
        g.operators = [x for o in g.operators for x in replaced.get(index.get(id(o), -1), [o])]
    return _pack(m, schema), report


def _rewrite_blockwise(m: Any, g: Any, chosen: list[Any], block: int, calibration: int,
                       model: bytes, report: MobileReport,
                       quiet: Callable[[], AbstractContextManager[Any]],
                       ) -> dict[int, list[Any]]:
    """Store the ``chosen`` filters as block-wise int4 (GPTQ with ``calibration`` runs of
    ``model``, else nearest); return the ops that replace each rewritten convolution."""
    from ._schema import _schema

    schema = _schema()
    hess: dict[int, np.ndarray] = {}
    if calibration and chosen:
        from ._gptq import LayerInput, input_hessians

        layers = {}
        for i, op, kind, inputs, _t, w in chosen:
            if kind == "CONV_2D":
                out = _ints(g.tensors[_ints(op.outputs)[0]].shape)
                layers[i] = LayerInput(inputs[0], (w.shape[1], w.shape[2]), (out[1], out[2]))
            else:
                layers[i] = LayerInput(inputs[0])
        hess = input_hessians(model, layers, calibration, _pack, quiet)
    replaced: dict[int, list[Any]] = {}
    for i, op, kind, _inputs, t, w in chosen:
        if kind == "CONV_2D":
            replaced[i] = _conv_as_fc(m, g, op, t, w, schema)
            report.convs_as_fc += 1
        w2 = w.reshape(w.shape[0], -1)
        from ._gptq import gptq_blockwise, nearest_blockwise

        if i in hess:
            q, scales = gptq_blockwise(w2, hess[i], block)
        else:
            q, scales = nearest_blockwise(w2, block)
        _set_blockwise_int4(m, g, t, q, scales, block, schema)
        report.int4_blocks += 1
    return replaced


def _blockwise_ok(g: Any, op: Any, kind: str, w: np.ndarray, groups: set[str], block: int,
                  max_pixels: int) -> bool:
    """Whether the filter ``w`` of ``op`` goes to block-wise int4 under ``groups``."""
    if kind == "FULLY_CONNECTED":
        return "denses" in groups and w.ndim == 2 and w.shape[1] % block == 0
    o = op.builtinOptions
    out = _ints(g.tensors[_ints(op.outputs)[0]].shape)
    x = _ints(g.tensors[_ints(op.inputs)[0]].shape)
    return ("convs" in groups and w.ndim == 4 and w.shape[3] % block == 0 and len(out) == 4
            and len(x) == 4 and x[0] == 1 and min(x) > 0 and out[1] * out[2] <= max_pixels
            and (o.strideH, o.strideW, o.dilationHFactor, o.dilationWFactor) == (1, 1, 1, 1))


def _set_blockwise_int4(m: Any, g: Any, t: Any, q: np.ndarray, scales: np.ndarray, block: int,
                        schema: Any) -> None:
    """Store filter tensor ``t`` as INT4 levels ``q`` [O, K] with TFLite's
    ``BlockwiseQuantization``: a new FLOAT16 tensor [O, K / block] holds ``scales``."""
    t.type, t.shape = schema.TensorType.INT4, list(q.shape)
    m.buffers[t.buffer].data = _pack_int4(q.reshape(-1))
    st = _const(m, g, schema, scales.astype("<f2"), schema.TensorType.FLOAT16,
                (t.name or b"") + b"/scales")
    qp = schema.QuantizationParametersT()
    qp.detailsType = schema.QuantizationDetails.BlockwiseQuantization
    qp.details = schema.BlockwiseQuantizationT()
    qp.details.scales, qp.details.zeroPoints, qp.details.blockSize = st, -1, block
    t.quantization = qp


def _const(m: Any, g: Any, schema: Any, value: np.ndarray, ttype: int, name: bytes) -> int:
    """Append a constant tensor (and its buffer); return its index."""
    b = schema.BufferT()
    b.data = np.frombuffer(np.ascontiguousarray(value).tobytes(), np.uint8)
    m.buffers.append(b)
    t = schema.TensorT()
    t.shape, t.type, t.buffer, t.name = list(value.shape), ttype, len(m.buffers) - 1, name
    g.tensors.append(t)
    return len(g.tensors) - 1


def _activation(g: Any, schema: Any, like: int, shape: list[int], name: bytes) -> int:
    t = schema.TensorT()
    t.shape, t.type, t.buffer, t.name = shape, g.tensors[like].type, 0, name
    g.tensors.append(t)
    return len(g.tensors) - 1


def _conv_as_fc(m: Any, g: Any, op: Any, t: Any, w: np.ndarray, schema: Any) -> list[Any]:
    """The ops that compute stride-1 ``CONV_2D`` ``op`` (filter ``t`` = ``w`` [O, kh, kw, C])
    as im2col and a ``FULLY_CONNECTED`` of the filter read as [O, kh * kw * C] (the order of
    the concatenated taps), the same sums. Before and after::

        x[1,H,W,C] -> CONV_2D[O,kh,kw,C](SAME) -> y[1,H,W,O]
      becomes
        x -> PAD -> SLICE (one per tap) -> CONCATENATION[1,H,W,kh*kw*C]
          -> FULLY_CONNECTED[O, kh*kw*C](keep_num_dims) -> y
    """
    x, _, *bias = _ints(op.inputs)
    y = _ints(op.outputs)[0]
    o_ch, kh, kw, c = w.shape
    _, h, wd, _ = _ints(g.tensors[x].shape)
    _, oh, ow, _ = _ints(g.tensors[y].shape)
    name = _name(g.tensors[y]).encode()
    new: list[Any] = []

    def add(builtin: int, inputs: list[int], outputs: list[int], opt_type: int = 0,
            opt: Any = None, version: int = 1) -> None:
        o = schema.OperatorT()
        o.opcodeIndex = _opcode(m, schema, builtin, version)
        o.inputs, o.outputs = inputs, outputs
        o.builtinOptionsType, o.builtinOptions = opt_type, opt
        new.append(o)

    op_ = schema.BuiltinOperator
    src = x
    ph, pw = oh + kh - 1 - h, ow + kw - 1 - wd  # SAME: total padding; VALID: 0
    if ph or pw:
        pads = np.array([[0, 0], [ph // 2, ph - ph // 2], [pw // 2, pw - pw // 2], [0, 0]],
                        np.int32)
        src = _activation(g, schema, x, [1, h + ph, wd + pw, c], name + b"/im2col_pad")
        add(op_.PAD, [x, _const(m, g, schema, pads, schema.TensorType.INT32,
                                name + b"/im2col_paddings")], [src],
            schema.BuiltinOptions.PadOptions, schema.PadOptionsT())
    taps = [x] if kh == kw == 1 else []
    size = None if taps else _const(m, g, schema, np.array([1, oh, ow, c], np.int32),
                                    schema.TensorType.INT32, name + b"/im2col_size")
    for i in range(kh if size is not None else 0):
        for j in range(kw):
            tap = _activation(g, schema, x, [1, oh, ow, c], name + f"/im2col_{i}{j}".encode())
            begin = _const(m, g, schema, np.array([0, i, j, 0], np.int32),
                           schema.TensorType.INT32, name + f"/im2col_begin_{i}{j}".encode())
            add(op_.SLICE, [src, begin, size], [tap], schema.BuiltinOptions.SliceOptions,
                schema.SliceOptionsT())
            taps.append(tap)

    def concat(parts: list[int], label: bytes) -> int:
        # XNNPACK delegates CONCATENATION of at most 5 inputs: one per filter row, then rows
        if len(parts) == 1:
            return parts[0]
        out = _activation(g, schema, x, [1, oh, ow, len(parts) * c], name + label)
        cat = schema.ConcatenationOptionsT()
        cat.axis = 3
        add(op_.CONCATENATION, parts, [out], schema.BuiltinOptions.ConcatenationOptions, cat)
        return out

    rows = [concat(taps[r * kw:(r + 1) * kw], f"/im2col_row{r}".encode())
            for r in range(len(taps) // kw)] if len(taps) > 1 else taps
    col = concat(rows, b"/im2col")
    fc = schema.FullyConnectedOptionsT()
    fc.fusedActivationFunction = op.builtinOptions.fusedActivationFunction
    fc.keepNumDims = True
    add(op_.FULLY_CONNECTED, [col, _ints(op.inputs)[1], *(bias or [-1])], [y],
        schema.BuiltinOptions.FullyConnectedOptions, fc, version=1)
    return new


def _bottlenecks(g: Any, ops: list[Any], kinds: list[str]) -> list[int]:
    """Indices of the FULLY_CONNECTED ops that dominate the outputs from some model input."""
    import networkx as nx

    producer = {t: i for i, o in enumerate(ops) for t in _ints(o.outputs)}
    dg = nx.DiGraph()
    dg.add_nodes_from(range(len(ops)))
    dg.add_node(_VIRTUAL_OUT)
    for i, o in enumerate(ops):
        for t in _ints(o.inputs):
            if t in producer:
                dg.add_edge(producer[t], i)
    for t in _ints(g.outputs):
        if t in producer:
            dg.add_edge(producer[t], _VIRTUAL_OUT)
    found: set[int] = set()
    for inp in _ints(g.inputs):
        src = ("input", inp)
        dg.add_node(src)
        for i, o in enumerate(ops):
            if inp in _ints(o.inputs):
                dg.add_edge(src, i)
        reach = nx.descendants(dg, src)
        if _VIRTUAL_OUT in reach:
            idom = nx.immediate_dominators(dg.subgraph(reach | {src}), src)
            node = idom[_VIRTUAL_OUT]
            while node != src:
                if kinds[node] == "FULLY_CONNECTED":
                    found.add(node)
                node = idom[node]
        dg.remove_node(src)
    return sorted(found)


def _per_channel(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric quantization of ``w`` with one scale per index of axis 0 (levels
    -(2^(bits-1) - 1) .. 2^(bits-1) - 1; an all-zero channel gets scale 1)."""
    top = 2 ** (bits - 1) - 1
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    amax = np.abs(flat).max(axis=1)
    scale = np.where(amax > 0, amax / top, 1.0).astype(np.float32)
    q = np.clip(np.rint(flat / scale.astype(np.float64)[:, None]), -top, top).astype(np.int8)
    return q.reshape(w.shape), scale


def _pack_int4(q: np.ndarray) -> np.ndarray:
    """Two int4 values per byte, the first in the low nibble (TFLite's packed INT4)."""
    v = (q.astype(np.int16) & 0xF).astype(np.uint8)
    if v.size % 2:
        v = np.append(v, np.uint8(0))
    return (v[0::2] | (v[1::2] << 4)).astype(np.uint8)


def _ints(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def _float_data(m: Any, t: Any) -> np.ndarray | None:
    """The float32 values of constant tensor ``t``, or None."""
    from ._schema import _schema

    if t is None or t.type != _schema().TensorType.FLOAT32 or not t.buffer:
        return None
    data = m.buffers[t.buffer].data
    if data is None or len(data) == 0 or t.quantization is not None and t.quantization.scale:
        return None
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), "<f4")


def _opcode(m: Any, schema: Any, builtin: int, version: int) -> int:
    for i, oc in enumerate(m.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
            oc.version = max(oc.version, version)
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = version
    m.operatorCodes.append(oc)
    return len(m.operatorCodes) - 1


def _name(t: Any) -> str:
    return t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name)


def _pack(m: Any, schema: Any) -> bytes:
    """Serialise ``m`` with every buffer 16-byte aligned (as TensorFlow's converter writes
    them, so runtimes can map weights in place)."""
    import flatbuffers

    for b in m.buffers:
        b.__class__ = _AlignedBuffer
    size = sum(len(b.data) for b in m.buffers if b.data is not None)
    builder = flatbuffers.Builder(size + (1 << 20))
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _aligned_vector(builder: Any, data: Any) -> int:
    payload = np.asarray(data, np.uint8).tobytes()
    builder.StartVector(1, len(payload), 16)
    builder.head = builder.head - len(payload)
    builder.Bytes[builder.head:builder.head + len(payload)] = payload
    builder.vectorNumElems = len(payload)
    return builder.EndVector()


def _buffer_base() -> type:
    from ._schema import _schema

    return _schema().BufferT


class _AlignedBuffer(_buffer_base()):  # type: ignore[misc]
    def Pack(self, builder: Any) -> int:  # noqa: N802 - flatbuffers' method name
        from ._schema import _schema

        s = _schema()
        data = _aligned_vector(builder, self.data) if self.data is not None else None
        s.BufferStart(builder)
        if data is not None:
            s.BufferAddData(builder, data)
        s.BufferAddOffset(builder, self.offset)
        s.BufferAddSize(builder, self.size)
        return s.BufferEnd(builder)
