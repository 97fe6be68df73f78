"""Loading and saving graphs.

``load`` accepts a frozen GraphDef ``.pb``, a ``.pbtxt``, a TF2 SavedModel directory
(frozen through its serving signature by reading its files as data: nothing of the model
runs), an NVlabs pickle ``.pkl`` (read by a restricted unpickler and rebuilt from its
weights, :mod:`graphsurgery.ir.pickle`: nothing of the file runs unless
``pickle_options`` opt in to running it), a ``tf.Graph``, or a
GraphDef object. Every tensor attribute is checked against its
declared dtype and shape when loaded (:func:`attrs.tensor_problem`), naming the node. Binary
files are parsed one node at a time, so a deleted constant frees its memory and no
second copy of the file is kept; saving streams nodes to a temporary file that is
renamed into place only when complete.
"""

from __future__ import annotations

import codecs
import os
import re
import secrets
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import message as pb_message
from google.protobuf import text_format

from ..errors import GraphError, InputError, UsageError
from . import proto
from .attrs import tensor_problem
from .graph import Graph
from .names import TensorRef
from .structure import check_structure

if TYPE_CHECKING:
    from .pickle import PickleOptions

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
    pickle_options: PickleOptions | None = None,
) -> Graph:
    """Load a graph from a path or an in-memory TensorFlow object.

    ``inputs``/``outputs`` declare the graph's interface (``"name"`` or ``"name:port"``);
    by default inputs are the Placeholders and outputs the nodes nothing consumes.
    ``progress(done_bytes, total_bytes)`` is called while a large file is read.
    The loaded graph is checked structurally (:func:`graphsurgery.ir.structure.check_structure`)
    unless ``validate`` is False; problems raise :class:`~graphsurgery.errors.GraphError`.
    ``pickle_options`` (a :class:`~graphsurgery.ir.pickle.PickleOptions`) says how a ``.pkl``
    is rebuilt; ``PickleOptions(trust_code=True, ...)`` RUNS the pickle's own code.
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
        graph = _load_path(Path(source), kwargs, progress, signature, pickle_options)
    elif isinstance(source, proto.GraphDef):
        graph = Graph.from_graph_def(source, **kwargs)
    elif hasattr(source, "as_graph_def"):  # tf.Graph
        graph = Graph.from_graph_def(source.as_graph_def(), **kwargs)
    elif hasattr(source, "node") and hasattr(source, "SerializeToString"):  # tf GraphDef
        graph = Graph.from_graph_def(proto.from_tf(source), **kwargs)
    else:
        raise UsageError(f"cannot load a graph from {type(source).__name__}")
    _check_tensors(graph)
    if validate:
        problems = check_structure(graph)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise GraphError(f"{graph.source}: {problems[0]}{more}")
        for what, refs in (("input", graph.inputs), ("output", graph.outputs)):
            for ref in refs:
                if ref.node not in graph:
                    raise GraphError(f"{graph.source}: {what} {ref} names no node in the graph")
    return graph


def _check_tensors(graph: Graph) -> None:
    """Refuse a malformed tensor attribute (a Const's value, mostly), naming its node.

    Reads sizes only: no constant is decoded or copied (see :func:`attrs.tensor_problem`).
    """
    for nd in graph._nodes.values():
        for key, av in nd.attr.items():
            kind = av.WhichOneof("value")
            if kind == "tensor":
                tensors = [av.tensor]
            elif kind == "list" and len(av.list.tensor):
                tensors = list(av.list.tensor)
            else:
                continue
            for tp in tensors:
                problem = tensor_problem(tp)
                if problem is not None:
                    where = (
                        f"Const {nd.name!r}" if nd.op == "Const" and key == "value"
                        else f"node {nd.name!r} ({nd.op}) attr {key!r}"
                    )
                    raise InputError(f"{graph.source}: {where}: {problem}")


def _load_path(path: Path, kwargs: dict[str, Any], progress: Progress | None, sig: str,
               pickle_options: PickleOptions | None = None) -> Graph:
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return _load_saved_model(path, kwargs, sig)
        raise InputError(f"{path}: a directory that is not a SavedModel (no saved_model.pb)")
    if path.suffix in _PICKLE_SUFFIXES:
        return _load_pickle(path, kwargs, pickle_options)
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


def _load_pickle(path: Path, kwargs: dict[str, Any],
                 options: PickleOptions | None = None) -> Graph:
    """An NVlabs pickle read as data and its generator rebuilt from the weights
    (:mod:`graphsurgery.ir.pickle`: nothing in the file runs; anything the restricted
    unpickler cannot prove to be plain data is refused)."""
    from .pickle import load_pickle

    model = load_pickle(path, options)
    return Graph.from_graph_def(
        model.graph_def, source=str(path),
        inputs=kwargs["inputs"] if kwargs["inputs"] is not None else model.inputs,
        outputs=kwargs["outputs"] if kwargs["outputs"] is not None else model.outputs,
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
    gd = proto.GraphDef()
    try:
        _parse_pbtxt(path, gd)
    except text_format.ParseError as exc:
        # The function library and debug info are opaque bytes in our schema; a text
        # file that spells them out is parsed with TensorFlow's own messages.
        if any(f in str(exc) for f in ("library", "debug_info", "experimental")):
            from tensorflow.core.framework import graph_pb2

            tf_gd = graph_pb2.GraphDef()
            try:
                text_format.Parse(path.read_text(errors="replace"), tf_gd)
            except text_format.ParseError as exc2:
                raise InputError(f"{path}: pbtxt syntax error: {exc2}") from None
            gd = proto.from_tf(tf_gd)
        else:
            raise InputError(f"{path}: pbtxt syntax error: {exc}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if not gd.node:
        raise InputError(f"{path}: not a GraphDef (no nodes found)")
    return Graph.from_graph_def(gd, source=str(path), **kwargs)


# A quoted tensor_content at least this long is unescaped here rather than by text_format's
# tokenizer, whose regular expression needs about 100 bytes per character of a string token.
_BLOB_MIN = 1 << 15
_BLOB_FIELD = re.compile(r'\s*tensor_content\s*:\s*"')
# \u, \U and \N{...} escapes (after an even run of backslashes), left to text_format.
_UNICODE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\[uUN]")


def _parse_pbtxt(path: Path, gd: Any) -> None:
    """Parse a text GraphDef into ``gd`` in bounded memory.

    The file is fed to the parser line by line (never held whole, nor split into a list),
    and each long ``tensor_content`` string is unescaped directly to bytes and swapped for a
    short tag, set back once the message is parsed. Anything unusual (an escape this fast
    path does not handle, a tag that cannot be placed back) falls back to the plain parse.
    """
    tag = f"graphsurgery-blob-{secrets.token_hex(8)}-"
    blobs: list[bytes | None] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        text_format.ParseLines(_pbtxt_lines(fh, blobs, tag), gd)
    if blobs and not _restore_blobs(gd, blobs, tag.encode()):
        gd.Clear()
        text_format.Parse(path.read_text(errors="replace"), gd)


def _pbtxt_lines(lines: Iterable[str], blobs: list[bytes | None], tag: str) -> Iterator[str]:
    for line in lines:
        if len(line) >= _BLOB_MIN:
            m = _BLOB_FIELD.match(line)
            end = _closing_quote(line, m.end()) if m else None
            if m and end is not None and not line[end + 1 :].strip():
                body = line[m.end() : end]
                blob = None if _UNICODE_ESCAPE.search(body) else _unescape(body)
                if blob is not None:
                    blobs.append(blob)
                    line = f'{m.group(0)}{tag}{len(blobs) - 1}"\n'
        yield line


def _unescape(body: str) -> bytes | None:
    """C-escaped text to bytes, as text_format reads it; None for an escape it rejects."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown escape ("\\q") is a warning in Python
        try:
            return codecs.escape_decode(body.encode())[0]  # type: ignore[attr-defined]
        except (ValueError, DeprecationWarning):
            return None


def _closing_quote(line: str, start: int) -> int | None:
    """Index of the ``"`` that ends the string starting at ``start`` (not escaped)."""
    pos = start
    while True:
        pos = line.find('"', pos)
        if pos < 0:
            return None
        slashes = 0
        while line[pos - 1 - slashes] == "\\":
            slashes += 1
        if not slashes % 2:
            return pos
        pos += 1


def _restore_blobs(gd: Any, blobs: list[bytes | None], tag: bytes) -> bool:
    """Put each unescaped tensor_content back in place of its tag; False if one is lost."""
    placed = 0

    def visit(av: Any) -> None:
        nonlocal placed
        kind = av.WhichOneof("value")
        tensors = [av.tensor] if kind == "tensor" else av.list.tensor if kind == "list" else []
        for tp in tensors:
            content = tp.tensor_content
            if content.startswith(tag):
                i = int(content[len(tag) :])
                tp.tensor_content = blobs[i]
                blobs[i] = None  # free each as soon as the message holds it
                placed += 1
        if kind == "func":
            for v in av.func.attr.values():
                visit(v)

    for nd in gd.node:
        for av in nd.attr.values():
            visit(av)
    return placed == len(blobs)


def _load_saved_model(path: Path, kwargs: dict[str, Any], signature: str) -> Graph:
    """Freeze a TF2 SavedModel through one of its signatures, reading it as data
    (:mod:`graphsurgery.ir.savedmodel`: nothing of the model runs)."""
    from .savedmodel import freeze

    gd, ins, outs = freeze(path, signature)
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
    from ..outdir import atomic_file

    try:
        with atomic_file(path) as fh:
            if text:
                gd = graph.to_graph_def()
                if graph.library:
                    gd = proto.to_tf(gd)  # print the library as messages, not bytes
                fh.write(text_format.MessageToString(gd).encode())
            else:
                for chunk in _serialize_chunks(graph, progress):
                    fh.write(chunk)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
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
