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
0.972 and v2 to 0.991 for 2 MB. LiteRT runs int4 convolution weights outside XNNPACK
(StyleGAN2: 2-3x the time of int8) and they cost v1 0.22 SSIM when every convolution has
them, so the recipe uses none: per-channel int4 is LiteRT's only 4-bit form for
``CONV_2D`` (no block-wise scales, no palettes), which is what keeps these models above
20 MB (``benchmarks/mobile.py`` prints the frontier).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

#: Filters smaller than this stay float (TensorFlow's dynamic-range quantizer uses 1024 too).
MIN_ELEMENTS = 1024

_QUANTIZED_OPS = ("CONV_2D", "FULLY_CONNECTED")
_VIRTUAL_OUT = -1


@dataclass
class MobileReport:
    """What :func:`quantize_mobile` did: weights per storage type, and the fp16 denses."""

    int8: int = 0  # filters stored as per-channel int8
    int4: int = 0  # filters stored as per-channel int4 (only with int4_convs)
    fp16: int = 0  # bottleneck dense filters stored as fp16
    kept: int = 0  # weighted ops left as converted (small, shared or not constant)
    fp16_ops: list[str] = field(default_factory=list)  # output tensor names

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"int8": self.int8, "fp16": self.fp16, "kept": self.kept,
                               "fp16_ops": list(self.fp16_ops)}
        if self.int4:
            out["int4"] = self.int4
        return out


def quantize_mobile(
    model: bytes,
    *,
    min_elements: int = MIN_ELEMENTS,
    bottleneck_fp16: bool = True,
    int4_convs: int = 0,
) -> tuple[bytes, MobileReport]:
    """Apply the mobile recipe to an fp32 ``.tflite`` (bytes); return the new model and what
    was done. Raises InputError when ``model`` is not a single-subgraph flatbuffer.

    The other points of the measured frontier (``benchmarks/mobile.py``), not the recipe:
    ``bottleneck_fp16=False`` stores the bottleneck denses in int8 too; ``int4_convs=N``
    stores the filters of the last N quantized convolutions (nearest the output, the least
    sensitive) as int4 with one scale per output channel, which LiteRT runs outside XNNPACK.
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
    fp16_ops = set(_bottlenecks(g, ops, kinds)) if bottleneck_fp16 else set()
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
    dequantize: list[Any] = []
    for i, op, kind, inputs, t, w in chosen:
        ti = inputs[1]
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
    if dequantize:
        code = _opcode(m, schema, schema.BuiltinOperator.DEQUANTIZE, version=3)
        new_ops = []
        for src, dst in dequantize:
            d = schema.OperatorT()
            d.opcodeIndex, d.inputs, d.outputs = code, [src], [dst]
            new_ops.append(d)
        g.operators = new_ops + ops  # constant conversions first, as the converter orders them
    return _pack(m, schema), report


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
