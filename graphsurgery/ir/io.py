"""Loading and saving graphs.

``load`` accepts a frozen GraphDef ``.pb``, a ``.pbtxt``, a TF2 SavedModel directory
(frozen through its serving signature), a ``tf.Graph``, or a GraphDef object. Binary
files are parsed one node at a time, so a deleted constant frees its memory and no
second copy of the file is kept; saving streams nodes to a temporary file that is
renamed into place only when complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf import message as pb_message
from google.protobuf import text_format

from ..errors import GraphError, InputError, UsageError
from . import proto
from .graph import Graph
from .names import TensorRef

Progress = Callable[[int, int], None]

_PICKLE_SUFFIXES = (".pkl", ".pickle")


def load(
    source: Any,
    *,
    inputs: Iterable[str] | None = None,
    outputs: Iterable[str] | None = None,
    progress: Progress | None = None,
    signature: str = "serving_default",
    validate: bool = True,
) -> Graph:
    """Load a graph from a path or an in-memory TensorFlow object.

    ``inputs``/``outputs`` declare the graph's interface (``"name"`` or ``"name:port"``);
    by default inputs are the Placeholders and outputs the nodes nothing consumes.
    ``progress(done_bytes, total_bytes)`` is called while a large file is read.
    The loaded graph is checked structurally (:func:`graphsurgery.verify.check_structure`)
    unless ``validate`` is False; problems raise :class:`~graphsurgery.errors.GraphError`.
    """
    kwargs: dict[str, Any] = {"inputs": inputs, "outputs": outputs}
    if isinstance(source, Graph):
        graph = source.copy()
        if inputs is not None or outputs is not None:
            graph = Graph(
                graph._nodes.values(),
                inputs=inputs if inputs is not None else graph.inputs,
                outputs=outputs if outputs is not None else graph.outputs,
                versions=graph.versions,
                library=graph.library,
                source=graph.source,
            )
    elif isinstance(source, str | os.PathLike):
        graph = _load_path(Path(source), kwargs, progress, signature)
    elif isinstance(source, proto.GraphDef):
        graph = Graph.from_graph_def(source, **kwargs)
    elif hasattr(source, "as_graph_def"):  # tf.Graph
        graph = Graph.from_graph_def(source.as_graph_def(), **kwargs)
    elif hasattr(source, "node") and hasattr(source, "SerializeToString"):  # tf GraphDef
        graph = Graph.from_graph_def(proto.from_tf(source), **kwargs)
    else:
        raise UsageError(f"cannot load a graph from {type(source).__name__}")
    if validate:
        from ..verify import check_structure

        problems = check_structure(graph)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise GraphError(f"{graph.source}: {problems[0]}{more}")
        for what, refs in (("input", graph.inputs), ("output", graph.outputs)):
            for ref in refs:
                if ref.node not in graph:
                    raise GraphError(f"{graph.source}: {what} {ref} names no node in the graph")
    return graph


def _load_path(path: Path, kwargs: dict[str, Any], progress: Progress | None, sig: str) -> Graph:
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return _load_saved_model(path, kwargs, sig)
        raise InputError(f"{path}: a directory that is not a SavedModel (no saved_model.pb)")
    if path.suffix in _PICKLE_SUFFIXES:
        raise InputError(
            f"{path}: pickles can execute code when loaded; graphsurgery does not unpickle "
            "models. Freeze the network to a GraphDef .pb in its own environment first"
        )
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file")
    if path.suffix in (".pbtxt", ".txt"):
        return _load_pbtxt(path, kwargs)
    try:
        with open(path, "rb") as fh:
            nodes, rest = _parse_stream(fh, size, progress)
    except (pb_message.DecodeError, _WireError) as exc:
        raise InputError(
            f"{path}: not a GraphDef (truncated or corrupt protobuf: {exc})"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if not nodes:
        raise InputError(f"{path}: not a GraphDef (no nodes found)")
    for nd in nodes:
        if not nd.name or not nd.op:
            raise InputError(f"{path}: not a GraphDef (a node without a name or op)")
    return Graph(
        nodes, versions=rest.versions, library=rest.library, source=str(path), **kwargs
    )


class _WireError(Exception):
    pass


def _read_varint(fh: Any) -> int | None:
    shift = result = 0
    while True:
        b = fh.read(1)
        if not b:
            if shift == 0:
                return None
            raise _WireError("file ends inside a varint")
        byte = b[0]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise _WireError("varint too long")


def _parse_stream(fh: Any, size: int, progress: Progress | None) -> tuple[list[Any], Any]:
    """Parse a GraphDef from a file one top-level field at a time."""
    nodes: list[Any] = []
    rest = bytearray()
    done = 0
    step = max(size // 50, 1 << 20)
    next_report = step
    while True:
        key = _read_varint(fh)
        if key is None:
            break
        field, wire = key >> 3, key & 7
        if wire == 2:
            length = _read_varint(fh)
            if length is None or length > size:
                raise _WireError(f"field {field} claims {length} bytes")
            data = fh.read(length)
            if len(data) != length:
                raise _WireError(f"file ends inside field {field}")
            if field == 1:
                nodes.append(proto.NodeDef.FromString(data))
            else:
                rest += _encode_varint(key) + _encode_varint(length) + data
        elif wire == 0:
            value = _read_varint(fh)
            if value is None:
                raise _WireError("file ends inside a varint")
            rest += _encode_varint(key) + _encode_varint(value)
        else:
            raise _WireError(f"unexpected wire type {wire} for field {field}")
        done = fh.tell()
        if progress is not None and done >= next_report:
            progress(done, size)
            next_report += step
    if progress is not None:
        progress(size, size)
    return nodes, proto.GraphDef.FromString(bytes(rest))


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _load_pbtxt(path: Path, kwargs: dict[str, Any]) -> Graph:
    text = path.read_text(errors="replace")
    gd = proto.GraphDef()
    try:
        text_format.Parse(text, gd)
    except text_format.ParseError as exc:
        # The function library and debug info are opaque bytes in our schema; a text
        # file that spells them out is parsed with TensorFlow's own messages.
        if any(f in str(exc) for f in ("library", "debug_info", "experimental")):
            from tensorflow.core.framework import graph_pb2

            tf_gd = graph_pb2.GraphDef()
            try:
                text_format.Parse(text, tf_gd)
            except text_format.ParseError as exc2:
                raise InputError(f"{path}: pbtxt syntax error: {exc2}") from None
            gd = proto.from_tf(tf_gd)
        else:
            raise InputError(f"{path}: pbtxt syntax error: {exc}") from None
    if not gd.node:
        raise InputError(f"{path}: not a GraphDef (no nodes found)")
    return Graph.from_graph_def(gd, source=str(path), **kwargs)


def _load_saved_model(path: Path, kwargs: dict[str, Any], signature: str) -> Graph:
    """Freeze a TF2 SavedModel through one of its signatures."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TensorFlow raises many types for a bad SavedModel
        raise InputError(f"{path}: cannot load SavedModel: {str(exc).splitlines()[0]}") from None
    sigs = getattr(loaded, "signatures", {})
    if signature not in sigs:
        raise InputError(
            f"{path}: SavedModel has no signature {signature!r} (has: {sorted(sigs)})"
        )
    fn = sigs[signature]
    frozen = convert_variables_to_constants_v2(fn)
    gd = frozen.graph.as_graph_def()
    # Name the interface after the signature's own input and output names.
    ins = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outs = [t.name for t in frozen.outputs]
    if kwargs.get("inputs") is None:
        kwargs["inputs"] = ins
    if kwargs.get("outputs") is None:
        kwargs["outputs"] = outs
    return Graph.from_graph_def(gd, source=str(path), **kwargs)


def save(graph: Graph, path: str | os.PathLike, *, progress: Progress | None = None) -> Path:
    """Write ``graph`` to ``.pb`` (binary) or ``.pbtxt`` (text), atomically."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give a .pb or .pbtxt file name")
    text = path.suffix in (".pbtxt", ".txt")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if text:
                gd = graph.to_graph_def()
                if graph.library:
                    gd = proto.to_tf(gd)  # print the library as messages, not bytes
                fh.write(text_format.MessageToString(gd).encode())
            else:
                for chunk in _serialize_chunks(graph, progress):
                    fh.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def serialize(graph: Graph) -> bytes:
    """The binary GraphDef of ``graph``."""
    return b"".join(_serialize_chunks(graph, None))


def _serialize_chunks(graph: Graph, progress: Progress | None) -> Iterator[bytes]:
    total = len(graph)
    for i, nd in enumerate(graph._nodes.values()):
        data = nd.SerializeToString()
        yield b"\x0a" + _encode_varint(len(data)) + data
        if progress is not None and (i % 200 == 0 or i == total - 1):
            progress(i + 1, total)
    if graph.library:
        yield b"\x12" + _encode_varint(len(graph.library)) + graph.library
    versions = graph.versions.SerializeToString()
    yield b"\x22" + _encode_varint(len(versions)) + versions


def tensor_names(refs: Iterable[TensorRef]) -> list[str]:
    return [str(r) for r in refs]
