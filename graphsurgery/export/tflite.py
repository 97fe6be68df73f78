"""Convert a graph to a ``.tflite`` flatbuffer with TFLite builtin ops only.

The conversion runs in-process with TensorFlow's TF1 converter
(``tf.compat.v1.lite.TFLiteConverter.from_session``): the GraphDef is imported into a
``tf.Graph``, its input placeholders are given fully static shapes (an unknown batch becomes
1), and the converter is restricted to ``TFLITE_BUILTINS`` with custom ops off, so a graph
that needs Select TF (Flex) ops or custom ops fails here instead of producing a model the
plain interpreter cannot run::

    result = convert_tflite(graph, "out/model.tflite", quantize="fp16")
    print(result.size, result.seconds)

``quantize="mobile"`` converts in fp32 and then applies the recipe of
:mod:`graphsurgery.export.mobile` to the flatbuffer (per-channel int8 weights, fp16 for the
dense layers every output depends on; measured against the other modes in
``benchmarks/mobile.py``).

A failed conversion raises :class:`~graphsurgery.errors.VerificationError` whose message is
one line naming the first offending op and node (all of them are in ``problems``).
TensorFlow's and the MLIR converter's logging is captured, not printed; it is kept in
``ConversionResult.log`` and, on failure, used to explain the error.

The converter evaluates constant subgraphs: a graph holding an op that acts on the host
(:func:`graphsurgery.ir.opdefs.side_effects`: ``ImmutableConst`` would bake a file of this
machine into the model, ``MatchingFiles`` lists a directory, ``ReadFile``, ``PyFunc``...) is
refused before TensorFlow sees it, with the same kind of error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError, VerificationError
from ..ir import opdefs
from ..ir.graph import Graph
from ..ir.names import TensorRef

QUANTIZE_MODES = ("fp32", "fp16", "dynamic", "int8", "mobile", "mobile-int4")

log = logging.getLogger("graphsurgery.export")


@dataclass
class ConversionResult:
    """What :func:`convert_tflite` wrote."""

    path: Path
    size: int  # bytes
    seconds: float  # converter wall time (TensorFlow import not included)
    quantize: str
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    log: str = ""  # what TensorFlow and the converter printed, captured
    weights: dict[str, Any] = field(default_factory=dict)  # mobile: how weights are stored

    def to_json(self) -> dict[str, Any]:
        out = {
            "path": str(self.path),
            "size": self.size,
            "seconds": self.seconds,
            "quantize": self.quantize,
            "input_shapes": self.input_shapes,
        }
        if self.weights:
            out["weights"] = self.weights
        return out


# --------------------------------------------------------------------------- quiet TF
@contextlib.contextmanager
def capture_output(stdout: bool = True) -> Iterator[list[str]]:
    """Redirect the process's stderr (and stdout) file descriptors into a buffer.

    Native code (TensorFlow's C++ logging, the MLIR converter's diagnostics, LiteRT's
    "Created XNNPACK delegate") writes straight to the file descriptors, so Python-level
    redirection is not enough. The captured text is appended to the yielded list on exit.

    Holds :data:`graphsurgery._quiet.FD2_LOCK` throughout, like every other redirection of
    fd 2 (the quiet TensorFlow import, the shape library's quiet load in its thread): two
    interleaved redirections would restore each other's copies and leave fd 2 on a pipe
    whose reader then waits forever.
    """
    from .._quiet import FD2_LOCK

    with FD2_LOCK:
        with _redirected([2] + ([1] if stdout else [])) as out:
            yield out


@contextlib.contextmanager
def _redirected(fds: list[int]) -> Iterator[list[str]]:
    out: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(fd) for fd in fds]
    except OSError:  # no real file descriptors (embedded interpreter): do nothing
        yield out
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            for fd in fds:
                os.dup2(tmp.fileno(), fd)
            yield out
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, s in zip(fds, saved):
                os.dup2(s, fd)
                os.close(s)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def import_tensorflow() -> Any:
    """Import TensorFlow with its start-up logging silenced."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with capture_output(stdout=False):
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    return tf


# --------------------------------------------------------------------------- conversion
def convert_tflite(
    graph: Graph,
    out_path: str | os.PathLike,
    *,
    quantize: str = "fp32",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    representative_dataset: Callable[[], Iterable[Any]] | None = None,
) -> ConversionResult:
    """Convert ``graph`` (inputs ``graph.inputs``, outputs ``graph.outputs``) to ``out_path``.

    ``quantize``: ``"fp32"`` (none), ``"fp16"`` (float16 weights), ``"dynamic"`` (int8
    weights, dynamic-range activations), ``"int8"`` (full integer with builtin int8
    kernels, calibrated with ``representative_dataset``, a callable yielding lists of input
    arrays in ``graph.inputs`` order, by default 8 standard-normal samples (right for
    latents, not for images); the model keeps float inputs and outputs) or ``"mobile"``
    (the recipe of :mod:`graphsurgery.export.mobile`: per-channel int8 convolution and
    dense weights run by dynamic-range kernels, fp16 weights for the dense layers every
    output depends on, such as StyleGAN's mapping network; ``weights`` says what it did)
    or ``"mobile-int4"`` (its smaller point, ``mobile.MOBILE_INT4``: block-wise int4
    convolutions up to 32x32 outputs rounded by GPTQ on 32 seeded runs, minutes at 256 px).
    ``input_shapes`` maps input names (``"x"`` or ``"x:0"``) to full shapes; otherwise each
    input's declared shape is used with an unknown batch dimension set to 1.
    The file is written atomically. Raises VerificationError when the converter fails or
    the graph holds an op that acts on the host (never handed to the converter).
    """
    if quantize not in QUANTIZE_MODES:
        raise UsageError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, not {quantize!r}")
    if not graph.outputs:
        raise UsageError("the graph declares no outputs")
    host = opdefs.side_effects(graph)
    if host:
        more = f" (+{len(host) - 1} more)" if len(host) > 1 else ""
        raise VerificationError(
            f"{host[0]}{more}: not converted (the converter would run it); remove it first",
            [str(e) for e in host],
        )
    shapes = _resolve_input_shapes(graph, input_shapes)
    if quantize == "int8" and representative_dataset is None:
        log.warning("int8: no representative_dataset; calibrating on standard-normal inputs")
        representative_dataset = _normal_samples(graph, shapes)
    out_path = Path(out_path)
    tf = import_tensorflow()

    tf_gd = graph.to_tf_graph_def()
    for node in tf_gd.node:  # fix placeholder shapes before import so they propagate
        ref = TensorRef(node.name)
        if node.op == "Placeholder" and str(ref) in shapes:
            node.attr["shape"].shape.Clear()
            for d in shapes[str(ref)]:
                node.attr["shape"].shape.dim.add(size=d)
            if "_output_shapes" in node.attr:
                del node.attr["_output_shapes"]

    error: Exception | None = None
    t0 = time.perf_counter()
    model = b""
    tf_graph = tf.Graph()
    with capture_output(stdout=False) as captured:
        try:
            with tf_graph.as_default():
                tf.graph_util.import_graph_def(tf_gd, name="")
        except Exception as exc:  # ValueError, NotFoundError, InvalidArgumentError...
            error = exc
    if error is not None:
        msg = _first_sentence(str(error))
        raise VerificationError(
            f"TFLite conversion failed: the graph does not import into TensorFlow: {msg}", [msg]
        )
    with capture_output(stdout=False) as captured:
        try:
            ins = [tf_graph.get_tensor_by_name(str(r)) for r in graph.inputs]
            for t, r in zip(ins, graph.inputs):
                t.set_shape(shapes[str(r)])
            outs = [tf_graph.get_tensor_by_name(str(r)) for r in graph.outputs]
            with tf.compat.v1.Session(graph=tf_graph) as sess:
                conv = converter_from_session(tf, sess, ins, outs)
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
                conv.allow_custom_ops = False
                if quantize not in ("fp32", "mobile", "mobile-int4"):  # fp32, then a recipe
                    conv.optimizations = [tf.lite.Optimize.DEFAULT]
                if quantize == "fp16":
                    conv.target_spec.supported_types = [tf.float16]
                elif quantize == "int8":
                    conv.representative_dataset = representative_dataset
                    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                model = conv.convert()
        except Exception as exc:  # the converter raises several unrelated types
            error = exc
    seconds = time.perf_counter() - t0
    text = "".join(captured)
    if error is not None:
        summary, problems = explain_converter_error(error, text)
        raise VerificationError(f"TFLite conversion (builtins only) failed: {summary}", problems)

    weights: dict[str, Any] = {}
    if quantize in ("mobile", "mobile-int4"):
        from .mobile import MOBILE_INT4, quantize_mobile

        model, report = quantize_mobile(model, quiet=capture_output,
                                        **(MOBILE_INT4 if quantize != "mobile" else {}))
        weights = report.to_json()
        seconds = time.perf_counter() - t0
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("wrote %s (%d bytes, %s) in %.2fs", out_path, len(model), quantize, seconds)
    return ConversionResult(
        path=out_path,
        size=len(model),
        seconds=seconds,
        quantize=quantize,
        input_shapes={k: list(v) for k, v in shapes.items()},
        log=text,
        weights=weights,
    )



def converter_from_session(tf: Any, sess: Any, ins: Sequence[Any], outs: Sequence[Any]) -> Any:
    """``TFLiteConverter.from_session(sess, ins, outs)`` without its wasted work.

    ``from_session`` runs a Grappler pass over the whole GraphDef (seconds on a 100 MB
    graph) and then, for a graph without variables or OpHints (every graph we convert),
    throws the result away and converts ``sess.graph_def``. For such a graph this builds
    the same converter directly: the same GraphDef, debug info and model type, so the
    same flatbuffer. ``convert()`` then runs Grappler's function inlining over the graph
    (seconds again): with no function library there is nothing to inline, so that step
    hands the GraphDef on as it is (the same flatbuffer, byte for byte, on StyleGAN2 at
    1024 px). Otherwise (or if TensorFlow's internals moved) it calls ``from_session``.
    """
    cls = tf.compat.v1.lite.TFLiteConverter
    try:
        from tensorflow.lite.python import lite as tflite_lite
        from tensorflow.lite.python import util as tflite_util

        graph_def = None
        frozen = tflite_util.is_frozen_graph(sess)
        if frozen:  # one copy of the GraphDef (a 143 MB serialization) for both uses
            graph_def = sess.graph_def
            frozen = not tflite_util.find_all_hinted_output_nodes(graph_def=graph_def)
        set_type = tflite_lite.TFLiteConverterBase._set_original_model_type
        session_type = tflite_lite.conversion_metadata_fb.ModelType.TF_SESSION
        debug_info = tflite_lite._build_debug_info_func
    except (ImportError, AttributeError):
        frozen = False
    if not frozen:
        return cls.from_session(sess, ins, outs)
    set_type(session_type)
    conv = cls(graph_def, ins, outs, experimental_debug_info_func=debug_info(sess.graph))
    if not graph_def.library.function and hasattr(conv, "_optimize_tf_model"):
        conv._optimize_tf_model = _nothing_to_inline
    _finish_in_one_pass(conv)
    return conv


def _finish_in_one_pass(conv: Any) -> None:
    """Make ``conv.convert()`` unpack and repack the flatbuffer once, not twice.

    After the MLIR conversion the converter deduplicates the constant buffers (unpack the
    flatbuffer into Python objects, pack it again) and then adds its conversion metadata
    (unpack and pack again); each pack copies the whole model through a builder that grows
    by doubling (about a second each on a 143 MB model). Here both steps are skipped inside
    ``convert()`` and done after it on one unpacked object, packed once into a builder
    sized for the model: the same buffers shared, the same metadata, the same bytes.
    Left alone if TensorFlow's converter no longer has the attributes this relies on.
    """
    needed = ("_optimize_tflite_model", "_experimental_use_buffer_offset",
              "exclude_conversion_metadata", "_metadata", "convert")
    if not all(hasattr(conv, a) for a in needed) or conv.exclude_conversion_metadata:
        return
    optimize, convert = conv._optimize_tflite_model, conv.convert

    def optimize_without_dedup(*args: Any, **kwargs: Any) -> Any:
        # the flag only decides here whether to deduplicate (the MLIR flags were set before)
        conv._experimental_use_buffer_offset = True
        try:
            return optimize(*args, **kwargs)
        finally:
            conv._experimental_use_buffer_offset = False

    def convert_then_finish() -> bytes:
        conv._optimize_tflite_model = optimize_without_dedup
        conv.exclude_conversion_metadata = True
        try:
            model = convert()
        finally:
            conv._optimize_tflite_model = optimize
            conv.exclude_conversion_metadata = False
        return finish_flatbuffer(model, conv._metadata)

    conv.convert = convert_then_finish


def finish_flatbuffer(model: bytes, metadata: Any) -> bytes:
    """The converter's two last steps on ``model`` (what ``convert()`` returns), in one
    unpack and one pack: constant buffers with the same bytes shared
    (:func:`dedup_readonly_buffers`), then the ``CONVERSION_METADATA`` entry (``metadata``,
    a ``ConversionMetadataT``, given the model's hash and sparsity modes)."""
    import flatbuffers
    from tensorflow.lite.python import util as tflite_util
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(model)
    if any(m.name == b"buffer_location" for m in obj.metadata or []):
        return model  # buffers stored after the flatbuffer: the converter leaves it as it is
    try:
        dedup_readonly_buffers(obj)
    except Exception:  # the converter skips deduplication when it fails, and so do we
        log.warning("buffer deduplication skipped")
        obj = flatbuffer_utils.convert_bytearray_to_object(model)
    metadata.options.modelOptimizationModes.extend(tflite_util.get_sparsity_modes(obj))
    metadata.environment.modelHash = tflite_util.get_model_hash(obj)
    obj = tflite_util.populate_conversion_metadata(obj, metadata)
    builder = flatbuffers.Builder(len(model) + (1 << 20))  # no doubling copies
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(memoryview(builder.Bytes)[builder.Head():])  # Output() copies twice


def dedup_readonly_buffers(model: Any) -> dict[int, int]:
    """Let constant tensors whose buffers hold the same bytes share one buffer.

    ``model`` is an unpacked ``ModelT``, changed in place; returns {dropped buffer: kept
    buffer}. The same choice as TensorFlow's converter (``deduplicate_readonly_buffers``):
    the buffers read by operators, other than variables, op outputs and subgraph inputs or
    outputs, are ordered by (size, MD5) descending; within each run of equal ones the first
    is kept, the others are emptied and their tensors point at the kept one.
    """
    import hashlib
    from collections import Counter

    import numpy as np

    readonly: set[int] = set()
    for sg in model.subgraphs:
        tensors: set[int] = set()  # built as the converter builds it: same iteration order
        for op in sg.operators:
            mutating = op.mutatingVariableInputs
            for i, ti in enumerate(op.inputs if op.inputs is not None else ()):
                if mutating is not None and i < len(mutating) and mutating[i]:
                    continue
                if sg.tensors[ti].isVariable:
                    continue
                tensors.add(ti)
        for op in sg.operators:
            for ti in op.outputs if op.outputs is not None else ():
                tensors.discard(ti)
            for ti in op.intermediates if op.intermediates is not None else ():
                tensors.discard(ti)
        for ti in list(sg.inputs if sg.inputs is not None else ()) + list(
                sg.outputs if sg.outputs is not None else ()):
            tensors.discard(ti)
        for ti in tensors:
            readonly.add(sg.tensors[ti].buffer)
    for bi in readonly.copy():
        data = model.buffers[bi].data if bi >= 0 else None
        if data is None or isinstance(data, list) or data.size == 0:
            readonly.discard(bi)
    # Equal buffers have the same size and the same bytes at any positions: only buffers
    # sharing their size and a sample of 320 bytes can be equal, and only those are
    # digested (MD5 of every buffer: 0.2-0.3 s on StyleGAN2 at 1024 px). The others get a
    # key of their own. Runs of equal (size, digest) keep the order, and so the choice,
    # that digesting every buffer gives.
    def sample(data: Any) -> tuple[int, bytes]:
        return data.size, bytes(data[:: max(1, data.size // 256)]) + bytes(data[-64:])

    samples = {bi: sample(model.buffers[bi].data) for bi in readonly}
    shared = Counter(samples.values())
    keyed = sorted(
        ((samples[bi][0], hashlib.md5(np.ascontiguousarray(model.buffers[bi].data)).hexdigest()
          if shared[samples[bi]] > 1 else f"unique {bi}", bi) for bi in readonly),
        key=lambda k: k[:2], reverse=True,
    )
    kept: dict[tuple[int, str], int] = {}
    dropped: dict[int, int] = {}
    for size, digest, bi in keyed:
        if (size, digest) in kept:
            dropped[bi] = kept[size, digest]
        else:
            kept[size, digest] = bi
    for sg in model.subgraphs:
        for op in sg.operators:
            for ti in op.inputs if op.inputs is not None else ():
                if sg.tensors[ti].buffer in dropped:
                    sg.tensors[ti].buffer = dropped[sg.tensors[ti].buffer]
    for bi in dropped:
        model.buffers[bi].data = None
    return dropped


def _nothing_to_inline(graph_def: Any, *args: Any, **kwargs: Any) -> Any:
    """The converter's Grappler function inlining, for a GraphDef without functions."""
    return graph_def


def _normal_samples(
    graph: Graph, shapes: Mapping[str, Sequence[int]], count: int = 8
) -> Callable[[], Iterable[Any]]:
    import numpy as np

    def samples() -> Iterator[list[Any]]:
        rng = np.random.default_rng(0)
        for _ in range(count):
            batch = []
            for ref in graph.inputs:
                dt = graph.dtype_hint(ref)
                npt = dt.numpy if dt is not None and dt.is_floating else np.float32
                if dt is not None and not dt.is_floating:
                    batch.append(np.zeros(shapes[str(ref)], dt.numpy))
                else:
                    batch.append(rng.standard_normal(shapes[str(ref)]).astype(npt))
            yield batch

    return samples


def _resolve_input_shapes(
    graph: Graph, given: Mapping[str, Sequence[int]] | None
) -> dict[str, list[int]]:
    """Fully static shape of every graph input, keyed ``"name:port"``."""
    given_refs = {str(TensorRef.parse(k)): [int(d) for d in v] for k, v in (given or {}).items()}
    known = {str(r) for r in graph.inputs}
    unknown = sorted(set(given_refs) - known)
    if unknown:
        raise UsageError(f"input_shapes names {unknown[0]}, which is not a graph input")
    shapes: dict[str, list[int]] = {}
    for ref in graph.inputs:
        key = str(ref)
        if key in given_refs:
            shape = given_refs[key]
        else:
            static = graph.static_shape(ref)
            if static is None:
                with contextlib.suppress(Exception):
                    static = graph.shape(ref)
            if static is None:
                raise UsageError(f"input {ref.node!r} has an unknown rank; pass input_shapes")
            shape = [1 if (i == 0 and d < 0) else int(d) for i, d in enumerate(static)]
        if any(d < 0 for d in shape):
            raise UsageError(
                f"input {ref.node!r} has shape {shape} with unknown dimensions beyond the "
                "batch; pass input_shapes"
            )
        shapes[key] = shape
    return shapes


# --------------------------------------------------------------------------- errors
_OP_ERROR = re.compile(r"'(tf\.[A-Za-z0-9_]+|tfl\.[A-Za-z0-9_]+)' op ([^\n]+)")
_LOC_NAME = re.compile(r'loc\((?:fused\[)?"([^"]+)"')
_SELECT_OPS = re.compile(r"(?:TF Select ops|Flex ops|Custom ops): ([^\n]+)")
_DETAILS = re.compile(r"^\s*(tf\.[A-Za-z0-9_]+)\((.*?)\) -> .*?: \{(.*)\}\s*$", re.M)


def explain_converter_error(error: BaseException, log_text: str = "") -> tuple[str, list[str]]:
    """A one-line summary of a converter failure and the list of distinct problems.

    Uses the structured ``ConverterError.errors`` when present (op name and node location),
    else the first ``'tf.Op' op ...`` line of the message or the captured converter log.
    """
    problems: list[str] = []
    for data in getattr(error, "errors", None) or []:
        op = getattr(getattr(data, "operator", None), "name", "") or ""
        node = _location_name(getattr(data, "location", None))
        msg = (getattr(data, "error_message", "") or "").splitlines()
        first = msg[0].strip() if msg else ""
        if op and not first:
            first = f"'{op}' op failed"
        if not first:
            continue
        line = first + (f" (node {node!r})" if node else "")
        if line not in problems:
            problems.append(line)
    text = f"{error}\n{log_text}"
    if not problems:
        for m in _OP_ERROR.finditer(text):
            line = f"'{m.group(1)}' op {m.group(2).strip()}"
            node = _nearby_loc(text, m.start())
            line += f" (node {node!r})" if node else ""
            if line not in problems:
                problems.append(line)
    if not problems:
        problems.append(_first_sentence(str(error)) or type(error).__name__)
    summary = problems[0]
    # The converter's "Details" show why an op fell to Select TF ops (NCHW, 6-D operands).
    details = {op: (operands, attrs) for op, operands, attrs in _DETAILS.findall(text)}
    op_m = re.match(r"'(tf\.[A-Za-z0-9_]+)'", summary)
    if op_m and op_m.group(1) in details:
        operands, attrs = details[op_m.group(1)]
        fmt = re.search(r'data_format = "(\w+)"', attrs)
        if fmt:
            summary += f" [data_format={fmt.group(1)}]"
        operands = operands.strip()
        summary += f" [operands {operands[:117] + '...' if len(operands) > 120 else operands}]"
    if len(problems) > 1:
        summary += f" (+{len(problems) - 1} more)"
    select = _SELECT_OPS.search(text)
    if select:
        problems.append(f"{select.group(0).split(':')[0]} needed: {select.group(1).strip()}")
    return summary, problems


def _first_sentence(text: str, limit: int = 200) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), text.strip())
    if len(line) > limit:
        cut = line.find(". ")
        line = line[: cut + 1] if 0 < cut < limit else line[: limit - 3] + "..."
    return line


def _location_name(loc: Any) -> str:
    """The node name in a converter error location (NameLoc or the first CallSite)."""
    if loc is None:
        return ""
    name = getattr(loc, "name", "") or ""
    if name:
        return name
    for call in getattr(loc, "call", []) or []:
        if getattr(call, "name", ""):
            return call.name
    return ""


def _nearby_loc(text: str, pos: int) -> str:
    """The ``loc("node")`` closest before ``pos`` on the same line, if any."""
    start = text.rfind("\n", 0, pos) + 1
    m = _LOC_NAME.search(text, start, pos)
    if not m:
        return ""
    return m.group(1).rstrip(":")
