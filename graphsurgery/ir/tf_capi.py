"""TensorFlow's C API through ctypes: GraphDef import and shape inference without the
``tensorflow`` Python package.

``import tensorflow`` takes 2+ s (it loads every Python wrapper); shape inference needs
only the op registry and the shape functions, which live in ``libtensorflow_cc``. Loading
that library takes 0.15-0.25 s; :func:`preload` does it in a background thread (started by
``Pipeline.warm_up`` when a pass will infer shapes, before the model is read).
:class:`CGraph` imports serialized nodes into a ``TF_Graph`` and reads back what
TensorFlow's shape inference found, the same C++ code ``tf.graph_util.import_graph_def``
runs. :func:`load` returns None when the library or a symbol is missing (another
TensorFlow layout); :mod:`graphsurgery.ir.shapes` then uses the Python package.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
import re
import sys
import threading
from ctypes import POINTER, c_char_p, c_int, c_int64, c_size_t, c_void_p
from pathlib import Path
from typing import Any

from . import proto


class _Output(ctypes.Structure):
    _fields_ = [("oper", c_void_p), ("index", c_int)]


class _Buffer(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("length", c_size_t), ("data_deallocator", c_void_p)]


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "TF_NewStatus": (c_void_p, []),
    "TF_DeleteStatus": (None, [c_void_p]),
    "TF_GetCode": (c_int, [c_void_p]),
    "TF_Message": (c_char_p, [c_void_p]),
    "TF_NewGraph": (c_void_p, []),
    "TF_DeleteGraph": (None, [c_void_p]),
    "TF_NewBufferFromString": (POINTER(_Buffer), [c_char_p, c_size_t]),
    "TF_DeleteBuffer": (None, [POINTER(_Buffer)]),
    "TF_NewImportGraphDefOptions": (c_void_p, []),
    "TF_DeleteImportGraphDefOptions": (None, [c_void_p]),
    "TF_ImportGraphDefOptionsAddInputMapping": (None, [c_void_p, c_char_p, c_int, _Output]),
    "TF_ImportGraphDefOptionsAddReturnOperation": (None, [c_void_p, c_char_p]),
    "TF_GraphImportGraphDefWithResults": (c_void_p, [c_void_p, POINTER(_Buffer), c_void_p,
                                                     c_void_p]),
    "TF_ImportGraphDefResultsReturnOperations": (None, [c_void_p, POINTER(c_int),
                                                        POINTER(POINTER(c_void_p))]),
    "TF_DeleteImportGraphDefResults": (None, [c_void_p]),
    "TF_OperationNumOutputs": (c_int, [c_void_p]),
    "TF_OperationOutputType": (c_int, [_Output]),
    "TF_GraphGetTensorNumDims": (c_int, [c_void_p, _Output, c_void_p]),
    "TF_GraphGetTensorShape": (None, [c_void_p, _Output, POINTER(c_int64), c_int, c_void_p]),
    "TF_GetAllOpList": (POINTER(_Buffer), []),
}

_LIB: Any = None
_TRIED = False
_OPS: frozenset[str] | None = None


#: Lines TensorFlow's C library writes to stderr while it loads (absl's prefix: severity
#: letter and date, time, thread, ``file:line]``), and absl's notice before them.
_LIBRARY_LINE = re.compile(rb"^(?:[IWEF]\d{4} [\d:.]+ +\d+ [\w.\-/]+:\d+\] |WARNING: All log "
                           rb"messages before absl::InitializeLog\(\))")


def _quietly(fn: Any) -> Any:
    """Run ``fn`` with the library's own stderr lines dropped when the command line is
    quiet (:mod:`graphsurgery._quiet`, not ``-vv``): the library logs while it loads
    ("oneDNN custom operations are on") before any log level applies.

    File descriptor 2 points at a pipe meanwhile; what else arrives there (this may run
    in a background thread, :func:`preload`, while the main thread reports progress or
    logs) is written to stderr afterwards, so nothing but the library's lines is lost.
    """
    from .. import _quiet

    if not _quiet.ACTIVE:
        return fn()
    with _quiet.FD2_LOCK:  # no other redirection of fd 2 may interleave with this one
        return _captured(fn)


def _captured(fn: Any) -> Any:
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    saved = os.dup(2)
    chunks: list[bytes] = []

    def drain() -> None:
        while data := os.read(read_end, 65536):
            chunks.append(data)

    reader = threading.Thread(target=drain, name="graphsurgery-stderr", daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        return fn()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the reader sees its end
        os.close(saved)
        reader.join()
        os.close(read_end)
        kept = [ln for ln in b"".join(chunks).splitlines(keepends=True)
                if not _LIBRARY_LINE.match(ln)]
        if kept:
            os.write(2, b"".join(kept))


def _open_lazily(path: Path) -> Any:
    """``dlopen(path, RTLD_LAZY | RTLD_GLOBAL)`` as a :class:`ctypes.CDLL`.

    ``ctypes.CDLL`` always adds ``RTLD_NOW``, which resolves every function symbol of the
    790 MB library before the first call: about a third of its 0.35 s load. Where libc's
    own ``dlopen`` cannot be reached, that is what happens.
    """
    try:
        dlopen = ctypes.CDLL(None).dlopen
    except (OSError, AttributeError):
        return ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    dlopen.restype, dlopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    handle = dlopen(os.fsencode(path), os.RTLD_LAZY | os.RTLD_GLOBAL)
    if not handle:
        raise OSError(f"cannot load {path}")
    return ctypes.CDLL(str(path), handle=handle)


_LOCK = threading.Lock()


def preload() -> None:
    """Start :func:`load` in a background thread, so that the library (about 0.2 s, most
    of it in ``dlopen``, which releases the GIL) loads while the caller reads a graph
    (:meth:`graphsurgery.Pipeline.warm_up`)."""
    if _TRIED or os.environ.get("GRAPHSURGERY_SHAPES") == "python":
        return
    # Not a daemon: the interpreter waits for it at exit rather than tear the process
    # down while the library's static initialisers run.
    threading.Thread(target=load, name="graphsurgery-tf-capi").start()


def load() -> Any:
    """The C library with its signatures set, or None (cached; waits for a
    :func:`preload` in progress)."""
    with _LOCK:
        return _load()


def _load() -> Any:
    global _LIB, _TRIED
    if _TRIED:
        return _LIB
    _TRIED = True
    # The path finder alone: it locates the package and runs nothing (the meta path may
    # hold graphsurgery._quiet's finder, which imports all of tensorflow when asked).
    spec = importlib.machinery.PathFinder.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        def open_libs() -> Any:
            _open_lazily(root / "libtensorflow_framework.so.2")
            return _open_lazily(root / "libtensorflow_cc.so.2")

        lib = _quietly(open_libs)
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
    except (OSError, AttributeError):
        return None
    _LIB = lib
    return lib


def registered_ops() -> frozenset[str]:
    """Names of the ops in the library's registry."""
    global _OPS
    if _OPS is None:
        buf = _LIB.TF_GetAllOpList()
        try:
            data = ctypes.string_at(buf.contents.data, buf.contents.length)
        finally:
            _LIB.TF_DeleteBuffer(buf)
        _OPS = frozenset(op.name for op in proto.OpList.FromString(data).op)
    return _OPS


class CGraph:
    """A ``TF_Graph`` that nodes are imported into in batches (see ``shapes._Inference``).

    Operations are ``TF_Operation*`` handles (ints), tensors ``(op, port)`` pairs.
    """

    def __init__(self) -> None:
        self.lib = load()
        self.graph = self.lib.TF_NewGraph()
        self.status = self.lib.TF_NewStatus()

    def close(self) -> None:
        if self.graph:
            self.lib.TF_DeleteGraph(self.graph)
            self.lib.TF_DeleteStatus(self.status)
            self.graph = self.status = None

    def __del__(self) -> None:
        self.close()

    def _check(self) -> None:
        if self.lib.TF_GetCode(self.status) != 0:
            raise ValueError((self.lib.TF_Message(self.status) or b"").decode(errors="replace"))

    def import_(self, graph_def: bytes, input_map: dict[str, tuple[int, int]],
                names: list[str]) -> list[int]:
        """Import a serialized GraphDef; ``input_map`` maps ``name``/``name:i`` to tensors
        imported earlier; returns the operations called ``names``. Raises ValueError with
        TensorFlow's message when the import fails."""
        lib = self.lib
        opts = lib.TF_NewImportGraphDefOptions()
        buf = lib.TF_NewBufferFromString(graph_def, len(graph_def))
        try:
            for src, (op, port) in input_map.items():
                node, sep, idx = src.rpartition(":")
                if not (sep and idx.isdigit()):
                    node, idx = src, "0"
                lib.TF_ImportGraphDefOptionsAddInputMapping(opts, node.encode(), int(idx),
                                                            _Output(op, port))
            for name in names:
                lib.TF_ImportGraphDefOptionsAddReturnOperation(opts, name.encode())
            results = lib.TF_GraphImportGraphDefWithResults(self.graph, buf, opts, self.status)
            self._check()
            try:
                count = c_int()
                opers = POINTER(c_void_p)()
                lib.TF_ImportGraphDefResultsReturnOperations(results, ctypes.byref(count),
                                                             ctypes.byref(opers))
                return [opers[i] for i in range(count.value)]
            finally:
                lib.TF_DeleteImportGraphDefResults(results)
        finally:
            lib.TF_DeleteBuffer(buf)
            lib.TF_DeleteImportGraphDefOptions(opts)

    @staticmethod
    def registered(op: str) -> bool:
        return op in registered_ops()

    def num_outputs(self, op: int) -> int:
        return self.lib.TF_OperationNumOutputs(op)

    def dtype(self, op: int, port: int) -> int:
        return self.lib.TF_OperationOutputType(_Output(op, port))

    def shape(self, op: int, port: int) -> tuple[int, ...] | None:
        """Static shape (-1 for unknown dims), None for an unknown rank."""
        out = _Output(op, port)
        rank = self.lib.TF_GraphGetTensorNumDims(self.graph, out, self.status)
        self._check()
        if rank < 0:
            return None
        dims = (c_int64 * max(rank, 1))()
        self.lib.TF_GraphGetTensorShape(self.graph, out, dims, rank, self.status)
        self._check()
        return tuple(int(dims[i]) for i in range(rank))
