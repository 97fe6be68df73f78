"""Audit a ``.tflite`` model against the TFLite-clean rules (see targets.md).

The flatbuffer is read directly with the generated TFLite schema (LiteRT's
``schema_py_generated``, the same file TensorFlow bundles; TensorFlow's is used when LiteRT's
is missing), so every rule is checked here rather than trusted to a tool. The rules are
the TFLite target's (:data:`graphsurgery.targets.tflite.lint.RULES`, shared with ``check``
and the report); each is one function of :data:`AUDIT_RULES` over what the flatbuffer
holds, and each broken one is a ``violations`` line ``"<rule id>: <detail>"``:

* ``builtins-only``: no Flex (Select TF) ops and no custom ops.
* ``one-subgraph``: exactly one subgraph (no ``IF``/``WHILE`` bodies).
* ``no-random``: no ``RANDOM_*``/``MULTINOMIAL`` ops.
* ``rank<=4``: no tensor of rank above 4.
* ``no-inner-transpose``: no ``TRANSPOSE`` inside the network. With ``allow_boundary_transpose``
  each model input and output may have one TRANSPOSE next to it (its input is a model input
  or its output a model output); without it every TRANSPOSE counts.
* ``constant-weights``: the filter and bias of every ``CONV_2D``, ``DEPTHWISE_CONV_2D``,
  ``TRANSPOSE_CONV`` and ``FULLY_CONNECTED`` are constant buffers (a ``DEQUANTIZE`` of a
  constant, as fp16 models have, counts as constant; an absent bias is fine).
* ``runs-in-litert``: LiteRT's ``Interpreter`` (default delegates, XNNPACK on CPU) allocates
  and invokes the model on random inputs (skipped with ``run=False``). The inputs are the
  ones ``--verify`` feeds for the same ``seed`` (standard-normal floats drawn in input order,
  zeros otherwise), and the run is kept in ``Audit.litert_run`` (not in the JSON), so
  verification can use its outputs instead of running the model again when its feeds are
  the same (:class:`graphsurgery.runners.TFLiteRunner` ``recorded=``).

GPU-delegate friendliness (``PAD`` paddings 4x2, ``STRIDED_SLICE`` on 3-D/4-D without
shrink/new-axis/ellipsis masks, ``DEPTHWISE_CONV_2D`` depth multiplier 1, reductions with
constant int32 axes) is reported in ``gpu_warnings`` and does not make a model unclean;
the warnings of TFLite's own analyzer (``gpu_compatibility=True``) are in
``analyzer_gpu_warnings`` (it is known to miss Flex ops and 6-D tensors).
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from ._schema import _enum_names, _schema
from .tflite import capture_output

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED")
RANDOM_OPS = (
    "RANDOM_STANDARD_NORMAL", "RANDOM_UNIFORM", "MULTINOMIAL", "STABLEHLO_RNG_BIT_GENERATOR",
)  # fmt: skip
REDUCE_OPS = (
    "MEAN", "SUM", "REDUCE_PROD", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_ANY", "REDUCE_ALL",
)  # fmt: skip
PAD_OPS = ("PAD", "PADV2", "MIRROR_PAD")
# (filter input index, bias input index) per weighted op.
_WEIGHT_INPUTS = {
    "CONV_2D": (1, 2),
    "DEPTHWISE_CONV_2D": (1, 2),
    "TRANSPOSE_CONV": (1, 3),
    "FULLY_CONNECTED": (1, 2),
}


@dataclass
class LiteRTRun:
    """The audit's run of the model in LiteRT: what it was fed and what came out.

    ``input_details``/``output_details`` are the interpreter's, ``feeds`` the arrays in its
    input order, ``outputs`` in its output order; ``file`` identifies the file that ran
    (:func:`file_identity`; None for bytes)."""

    input_details: list[dict[str, Any]]
    output_details: list[dict[str, Any]]
    feeds: list[np.ndarray]
    outputs: list[np.ndarray]
    num_threads: int
    file: tuple[int, ...] | None = None


def file_identity(path: str | os.PathLike) -> tuple[int, ...]:
    """Device, inode, size and modification time of ``path``: changes when it is rewritten."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class Audit:
    """The result of :func:`audit_tflite`. ``to_json()`` gives a JSON-ready dict."""

    #: The run that made ``runs`` True (None when not run or it failed); not in the JSON.
    litert_run: ClassVar[LiteRTRun | None] = None

    path: str | None
    size: int
    subgraphs: int
    num_ops: int
    num_tensors: int
    ops: dict[str, int]  # op histogram, most frequent first (custom ops by custom code)
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    max_rank: int
    high_rank_tensors: list[dict[str, Any]]  # rank > 4: name, shape, subgraph
    transpose_count: int
    boundary_transposes: list[str]  # output tensor names of TRANSPOSEs at the boundary
    flex_count: int
    custom_count: int  # custom ops other than Flex
    flex_ops: dict[str, int]
    custom_ops: dict[str, int]
    random_count: int
    nonconst_weights: list[dict[str, Any]]  # op, tensor (op output), operand, input tensor
    gpu_warnings: list[str]
    analyzer_gpu_warnings: list[str]
    analyzer_gpu_compatible: bool | None
    runs: bool | None  # None: not tried (run=False)
    run_error: str | None
    run_seconds: float | None
    violations: list[str] = field(default_factory=list)
    clean: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: clean or the number of violations, and the main counts."""
        head = "clean" if self.clean else f"{len(self.violations)} violation(s)"
        return (
            f"{head}; {self.num_ops} ops in {self.subgraphs} subgraph(s), "
            f"max rank {self.max_rank}, {self.transpose_count} TRANSPOSE, "
            f"{self.flex_count} Flex, {self.random_count} RANDOM"
        )


class _Model:
    """Thin helpers over the flatbuffer ``Model``."""

    def __init__(self, buf: bytes) -> None:
        schema = _schema()
        self.schema = schema
        self.buf = buf
        if len(buf) < 8 or buf[4:8] != b"TFL3":
            raise InputError("not a TFLite flatbuffer (no 'TFL3' file identifier)")
        self.model = schema.Model.GetRootAs(buf, 0)
        self.op_names, self.type_names = _enum_names()
        self.opcodes = []
        for i in range(self.model.OperatorCodesLength()):
            oc = self.model.OperatorCodes(i)
            code = max(int(oc.DeprecatedBuiltinCode()), int(oc.BuiltinCode()))
            name = self.op_names.get(code, f"BUILTIN_{code}")
            custom = oc.CustomCode()
            if name == "CUSTOM" and custom is not None:
                name = custom.decode("utf-8", "replace")
                self.opcodes.append((name, True))
            else:
                self.opcodes.append((name, False))

    def has_data(self, buffer_index: int) -> bool:
        if buffer_index <= 0 or buffer_index >= self.model.BuffersLength():
            return False
        b = self.model.Buffers(buffer_index)
        return b.DataLength() > 0 or (b.Offset() > 1 and b.Size() > 0)


def _tensor_name(t: Any) -> str:
    name = t.Name()
    return name.decode("utf-8", "replace") if name is not None else "?"


def _shape(t: Any) -> list[int]:
    return [int(t.Shape(j)) for j in range(t.ShapeLength())]


_CONVERSIONS = frozenset({"QUANTIZE", "DEQUANTIZE", "CAST"})


def _through_conversions(ti: int, links: dict[int, Any], m: Any, *, backward: bool) -> int:
    """Follow ``ti`` through single type-conversion ops (towards the inputs when
    ``backward``, else towards the outputs) and return the tensor reached."""
    for _ in range(4):
        nxt = links.get(ti)
        if nxt is None:
            return ti
        if not backward:
            if len(nxt) != 1:
                return ti
            nxt = nxt[0]
        if m.opcodes[nxt.OpcodeIndex()][0] not in _CONVERSIONS:
            return ti
        ti = int(nxt.Inputs(0)) if backward else int(nxt.Outputs(0))
    return ti


@dataclass
class _Facts:
    """What the rules read: the offending ops and tensors found while walking the model."""

    subgraphs: int
    custom: list[tuple[str, str]]  # (op name, output tensor); Flex ops start with "Flex"
    random: list[tuple[str, str]]
    high_rank: list[dict[str, Any]]
    interior_transposes: list[str]
    nonconst: list[dict[str, Any]]
    runs: bool | None
    run_error: str | None


def builtins_only(f: _Facts) -> list[str]:
    return [f"{'Flex' if name.startswith('Flex') else 'custom'} op {name} -> {label!r}"
            for name, label in f.custom]


def one_subgraph(f: _Facts) -> list[str]:
    return [] if f.subgraphs == 1 else [f"the model has {f.subgraphs} subgraphs"]


def no_random(f: _Facts) -> list[str]:
    return [f"{name} -> {label!r}" for name, label in f.random]


def rank_le_4(f: _Facts) -> list[str]:
    return [f"tensor {t['name']!r} has shape {t['shape']}" for t in f.high_rank]


def no_inner_transpose(f: _Facts) -> list[str]:
    return [f"TRANSPOSE inside the network -> {label!r}" for label in f.interior_transposes]


def constant_weights(f: _Facts) -> list[str]:
    return [f"{w['op']} -> {w['tensor']!r} has a run-time {w['operand']} {w['input']!r}"
            for w in f.nonconst]


def runs_in_litert(f: _Facts) -> list[str]:
    return [str(f.run_error)] if f.runs is False else []


#: The audit's rules, by id (the TFLite target's rule ids), in the order violations are listed.
AUDIT_RULES: tuple[tuple[str, Callable[[_Facts], list[str]]], ...] = (
    ("one-subgraph", one_subgraph),
    ("builtins-only", builtins_only),
    ("no-random", no_random),
    ("rank<=4", rank_le_4),
    ("no-inner-transpose", no_inner_transpose),
    ("constant-weights", constant_weights),
    ("runs-in-litert", runs_in_litert),
)


def audit_tflite(
    model: str | os.PathLike | bytes,
    *,
    allow_boundary_transpose: bool = True,
    run: bool = True,
    analyzer: bool = True,
    seed: int = 0,
) -> Audit:
    """Audit a ``.tflite`` file or flatbuffer bytes; see the module docstring for the rules."""
    path: str | None = None
    identity: tuple[int, ...] | None = None
    if isinstance(model, bytes | bytearray | memoryview):
        buf = bytes(model)
    else:
        path = str(model)
        try:
            identity = file_identity(model)
            buf = Path(model).read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    m = _Model(buf)
    schema = m.schema
    op_hist: Counter[str] = Counter()
    flex: Counter[str] = Counter()
    custom: Counter[str] = Counter()
    high_rank: list[dict[str, Any]] = []
    nonconst: list[dict[str, Any]] = []
    gpu: list[str] = []
    customs: list[tuple[str, str]] = []
    randoms: list[tuple[str, str]] = []
    boundary: list[str] = []
    interior: list[str] = []
    edges: dict[str, str] = {}
    max_rank = 0
    num_ops = num_tensors = 0
    io: dict[str, list[dict[str, Any]]] = {"inputs": [], "outputs": []}

    for si in range(m.model.SubgraphsLength()):
        sg = m.model.Subgraphs(si)
        tensors = [sg.Tensors(i) for i in range(sg.TensorsLength())]
        num_tensors += len(tensors)
        sg_inputs_list = [int(sg.Inputs(i)) for i in range(sg.InputsLength())]
        sg_outputs_list = [int(sg.Outputs(i)) for i in range(sg.OutputsLength())]
        sg_inputs, sg_outputs = set(sg_inputs_list), set(sg_outputs_list)
        if si == 0:
            for key, idxs in (("inputs", sg_inputs_list), ("outputs", sg_outputs_list)):
                for ti in idxs:
                    t = tensors[ti]
                    io[key].append({
                        "name": _tensor_name(t),
                        "shape": _shape(t),
                        "dtype": m.type_names.get(t.Type(), str(t.Type())),
                    })  # fmt: skip
        for t in tensors:
            shape = _shape(t)
            max_rank = max(max_rank, len(shape))
            if len(shape) > 4:
                high_rank.append({"name": _tensor_name(t), "shape": shape, "subgraph": si})
        # which op produces each tensor (for DEQUANTIZE-of-constant weights)
        producer: dict[int, Any] = {}
        ops = [sg.Operators(i) for i in range(sg.OperatorsLength())]
        num_ops += len(ops)
        consumers: dict[int, list[Any]] = {}
        for op in ops:
            for j in range(op.OutputsLength()):
                producer[int(op.Outputs(j))] = op
            for j in range(op.InputsLength()):
                consumers.setdefault(int(op.Inputs(j)), []).append(op)

        def is_const(ti: int, producer: dict[int, Any] = producer, tensors: list = tensors) -> bool:
            if ti < 0:
                return True  # optional operand left out
            if m.has_data(tensors[ti].Buffer()):
                return True
            src = producer.get(ti)
            if src is not None and m.opcodes[src.OpcodeIndex()][0] in ("DEQUANTIZE", "DENSIFY"):
                return src.InputsLength() > 0 and m.has_data(tensors[src.Inputs(0)].Buffer())
            return False

        for op in ops:
            name, is_custom = m.opcodes[op.OpcodeIndex()]
            op_hist[name] += 1
            ins = [int(op.Inputs(j)) for j in range(op.InputsLength())]
            outs = [int(op.Outputs(j)) for j in range(op.OutputsLength())]
            label = _tensor_name(tensors[outs[0]]) if outs else f"op in subgraph {si}"
            if is_custom:
                (flex if name.startswith("Flex") else custom)[name] += 1
                customs.append((name, label))
            if name in RANDOM_OPS:
                randoms.append((name, label))
            if name == "TRANSPOSE":
                # A boundary TRANSPOSE reads a model input or writes a model output; one is
                # allowed per such tensor.
                # Type conversions the converter adds at the edges (QUANTIZE/DEQUANTIZE of
                # an int8 model, CAST) do not move a TRANSPOSE inside the network.
                edge = None
                src = _through_conversions(ins[0], producer, m, backward=True) if ins else None
                dst = {_through_conversions(o, consumers, m, backward=False) for o in outs}
                if si == 0 and src in sg_inputs:
                    edge = f"in:{src}"
                elif si == 0 and dst & sg_outputs:
                    edge = f"out:{min(dst & sg_outputs)}"
                if allow_boundary_transpose and edge is not None and edge not in edges:
                    edges[edge] = label
                    boundary.append(label)
                else:
                    interior.append(label)
            if name in _WEIGHT_INPUTS:
                for operand, idx in zip(("filter", "bias"), _WEIGHT_INPUTS[name]):
                    if idx < len(ins) and not is_const(ins[idx]):
                        nonconst.append({
                            "op": name, "tensor": label, "operand": operand,
                            "input": _tensor_name(tensors[ins[idx]]),
                        })  # fmt: skip
            gpu.extend(_gpu_checks(m, schema, name, op, ins, tensors, label, is_const))

    analyzer_warnings: list[str] = []
    compatible: bool | None = None
    if analyzer:
        analyzer_warnings, compatible = _analyzer_gpu(buf)

    runs: bool | None = None
    run_error: str | None = None
    run_seconds: float | None = None
    litert_run: LiteRTRun | None = None
    if run:
        runs, run_error, run_seconds, litert_run = _try_run(buf, seed)
        if litert_run is not None:
            litert_run.file = identity
    facts = _Facts(int(m.model.SubgraphsLength()), customs, randoms, high_rank, interior,
                   nonconst, runs, run_error)
    violations = [f"{rule_id}: {detail}" for rule_id, rule in AUDIT_RULES for detail in rule(facts)]

    random_count = sum(op_hist[r] for r in RANDOM_OPS)
    audit = Audit(
        path=path,
        size=len(buf),
        subgraphs=int(m.model.SubgraphsLength()),
        num_ops=num_ops,
        num_tensors=num_tensors,
        ops=dict(op_hist.most_common()),
        inputs=io["inputs"],
        outputs=io["outputs"],
        max_rank=max_rank,
        high_rank_tensors=high_rank,
        transpose_count=op_hist["TRANSPOSE"],
        boundary_transposes=boundary,
        flex_count=sum(flex.values()),
        custom_count=sum(custom.values()),
        flex_ops=dict(flex.most_common()),
        custom_ops=dict(custom.most_common()),
        random_count=random_count,
        nonconst_weights=nonconst,
        gpu_warnings=gpu,
        analyzer_gpu_warnings=analyzer_warnings,
        analyzer_gpu_compatible=compatible,
        runs=runs,
        run_error=run_error,
        run_seconds=run_seconds,
        violations=violations,
        clean=not violations,
    )
    audit.litert_run = litert_run
    return audit


def _gpu_checks(
    m: _Model, schema: Any, name: str, op: Any, ins: list[int], tensors: list, label: str,
    is_const: Any,
) -> list[str]:  # fmt: skip
    """GPU-delegate friendliness warnings for one op (see targets.md)."""
    out: list[str] = []
    if name in PAD_OPS and len(ins) > 1:
        pads = _shape(tensors[ins[1]])
        if pads != [4, 2]:
            out.append(f"{name} -> {label!r}: paddings shape {pads}, the GPU delegate wants 4x2")
        if not is_const(ins[1]):
            out.append(f"{name} -> {label!r}: paddings are computed at run time")
    elif name == "STRIDED_SLICE" and ins:
        rank = len(_shape(tensors[ins[0]]))
        if rank not in (3, 4):
            out.append(f"STRIDED_SLICE -> {label!r}: input rank {rank}, the GPU delegate wants 3-4")
        table = op.BuiltinOptions()
        kind = op.BuiltinOptionsType()
        if table is not None and kind == schema.BuiltinOptions.StridedSliceOptions:
            opts = schema.StridedSliceOptions()
            opts.Init(table.Bytes, table.Pos)
            masks = {
                "shrink_axis_mask": opts.ShrinkAxisMask(),
                "new_axis_mask": opts.NewAxisMask(),
                "ellipsis_mask": opts.EllipsisMask(),
            }
            bad = [f"{k}={v}" for k, v in masks.items() if v]
            if bad:
                out.append(f"STRIDED_SLICE -> {label!r}: {', '.join(bad)}")
    elif name == "DEPTHWISE_CONV_2D" and len(ins) > 1:
        mult = None
        table = op.BuiltinOptions()
        if table is not None and (
            op.BuiltinOptionsType() == schema.BuiltinOptions.DepthwiseConv2DOptions
        ):
            opts = schema.DepthwiseConv2DOptions()
            opts.Init(table.Bytes, table.Pos)
            mult = int(opts.DepthMultiplier())
        x, w = _shape(tensors[ins[0]]), _shape(tensors[ins[1]])
        if len(x) == 4 and len(w) == 4 and x[3] > 0 and w[3] % x[3] == 0:
            mult = w[3] // x[3]
        if mult is not None and mult != 1:
            out.append(f"DEPTHWISE_CONV_2D -> {label!r}: depth multiplier {mult}, GPU wants 1")
    elif name in REDUCE_OPS and len(ins) > 1:
        axes = tensors[ins[1]]
        if not is_const(ins[1]):
            out.append(f"{name} -> {label!r}: reduction axes are computed at run time")
        elif axes.Type() != schema.TensorType.INT32:
            out.append(
                f"{name} -> {label!r}: reduction axes are "
                f"{m.type_names.get(axes.Type(), axes.Type())}, GPU wants INT32"
            )
    return out


_GPU_WARNING = re.compile(r"GPU COMPATIBILITY WARNING[:\s]*(.*)")


def analyzer_report(buf: bytes, gpu_compatibility: bool = True) -> str:
    """The text of TFLite's model analyzer (what ``Analyzer.analyze`` prints)."""
    try:
        from ai_edge_litert import _pywrap_analyzer_wrapper as wrapper
    except ImportError:  # pragma: no cover - fall back to TensorFlow's copy
        from .tflite import import_tensorflow

        import_tensorflow()
        from tensorflow.lite.python.analyzer_wrapper import (  # type: ignore[import-not-found]
            _pywrap_analyzer_wrapper as wrapper,
        )
    with capture_output() as captured:
        text = wrapper.ModelAnalyzer(buf, False, gpu_compatibility)
    return text if isinstance(text, str) and text else "".join(captured)


def _analyzer_gpu(buf: bytes) -> tuple[list[str], bool | None]:
    try:
        text = analyzer_report(buf, gpu_compatibility=True)
    except Exception as exc:  # the analyzer is experimental; never fail the audit on it
        return [f"analyzer failed: {str(exc).splitlines()[0] if str(exc) else exc!r}"], None
    warnings: list[str] = []
    last_op = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Op#"):
            last_op = s.split("(")[0]
        m = _GPU_WARNING.search(s)
        if m:
            msg = m.group(1).strip()
            warnings.append(f"{last_op}: {msg}" if last_op and "Subgraph#" not in msg else msg)
    compatible = None
    if "looks compatible with GPU delegate" in text:
        compatible = True
    elif warnings:
        compatible = False
    return warnings, compatible


#: LiteRT threads of the audit's run: those of :class:`graphsurgery.runners.TFLiteRunner`,
#: so that verification may use the run's outputs as its own.
RUN_THREADS = 2


def _try_run(buf: bytes, seed: int
             ) -> tuple[bool, str | None, float | None, LiteRTRun | None]:
    """Allocate and invoke the model in LiteRT on random inputs (drawn as
    :func:`graphsurgery.driver.random_feeds` draws them for ``seed``)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - LiteRT is a dependency
        return False, f"LiteRT is not installed: {exc}", None, None
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    feeds: list[np.ndarray] = []
    with capture_output() as captured:
        try:
            interp = Interpreter(model_content=buf, num_threads=RUN_THREADS)
            interp.allocate_tensors()
            inputs = interp.get_input_details()
            for d in inputs:
                dtype = np.dtype(d["dtype"])
                # "shape" holds concrete sizes (unknown ones are in "shape_signature");
                # a zero-size dimension such as StyleGAN's labels_in [1, 0] stays zero.
                shape = [int(s) for s in d["shape"]]
                if dtype.kind == "f":
                    x = rng.standard_normal(shape).astype(dtype)
                else:
                    x = np.zeros(shape, dtype)
                interp.set_tensor(d["index"], x)
                feeds.append(x)
            interp.invoke()
            outputs = interp.get_output_details()
            run = LiteRTRun(inputs, outputs, feeds,
                            [np.array(interp.get_tensor(d["index"])) for d in outputs],
                            RUN_THREADS)
            error = None
        except Exception as exc:  # any failure means "does not run"
            error = exc
    seconds = time.perf_counter() - t0
    if error is None:
        return True, None, seconds, run
    text = str(error) or "".join(captured)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(error).__name__
    # LiteRT glues its sentences together; keep the part naming the failing node.
    node = re.search(r"Node number \d+ \([^)]*\) failed to \w+", text)
    if node:
        first = lines[0].split(".")[0] if lines else ""
        msg = f"{first}: {node.group(0)}" if first and first not in node.group(0) else node.group(0)
    return False, msg[:300], seconds, None
