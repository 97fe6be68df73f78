"""No side effects, ever: nothing graphsurgery does to an untrusted graph touches the host.

Shape inference (``check``, ``--verify-shapes``), conversion and verification must never
open, map, list or write a file named by the graph, nor run its Python callbacks. A FIFO
detects an open: a thread here blocks opening its write end until someone opens the read
end, and is released at the end of the test.
"""

import json
import os
import re
import threading
import time

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.errors import InputError, VerificationError
from graphsurgery.ir import opdefs, proto
from graphsurgery.ir.attrs import Shape
from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.shapes import TensorInfo

F32, I32, U8, STR = DType.float32, DType.int32, DType.uint8, DType.string


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


class OpenDetector:
    """A FIFO at ``path`` that counts how often anything opened it for reading.

    A thread opens the write end again and again (each open blocks until a reader opens
    the other end), so a reader never hangs; :meth:`release` stops it.
    """

    def __init__(self, path):
        self.path = path
        os.mkfifo(path)
        self.opens = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            fd = os.open(self.path, os.O_WRONLY)  # blocks until a reader opens the FIFO
            if self._stop:
                os.close(fd)
                return
            self.opens += 1
            try:
                os.write(fd, np.array([2, 2], np.int32).tobytes())
            except OSError:  # the reader is gone already
                pass
            os.close(fd)

    def release(self):
        """Whether anything opened the FIFO; stops the thread."""
        if not self._thread.is_alive():
            return self.opens > 0
        time.sleep(0.2)  # an open that happened is counted by now
        opened = self.opens > 0
        self._stop = True
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # releases the pending open
        self._thread.join(5)
        os.close(fd)
        return opened


@pytest.fixture
def fifo(tmp_path):
    det = OpenDetector(tmp_path / "shape.bin")
    yield det
    det.release()


def _read_file_graph(path) -> gs.Graph:
    """``Reshape(x, DecodeRaw(ReadFile(path)))``: the shape of ``y`` needs the file."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [4])
    fname = rw.const(np.array(str(path).encode(), dtype=object), name="fname")
    read = rw.add_node("ReadFile", [fname], name="read")
    dims = rw.add_node("DecodeRaw", [read], {"out_type": I32, "little_endian": True},
                       name="dims")
    y = rw.add_node("Reshape", [x, dims], {"T": F32, "Tshape": I32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    return g


def _immutable_const_graph(path) -> gs.Graph:
    """``Add(x, Cast(ImmutableConst(path)))``: the file's bytes would become the model's."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 4])
    ic = rw.add_node("ImmutableConst", [], {"dtype": U8, "shape": Shape((4,)),
                                            "memory_region_name": str(path)}, name="ic")
    cast = rw.add_node("Cast", [ic], {"SrcT": U8, "DstT": F32}, name="cast")
    y = rw.add_node("AddV2", [x, cast], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    return g


def _write_file_graph(target) -> gs.Graph:
    """``y = x * 2`` after ``^WriteFile(target)``: running ``y`` writes the file."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 2])
    fname = rw.const(np.array(str(target).encode(), dtype=object), name="fname")
    text = rw.const(np.array(b"side effect", dtype=object), name="text")
    write = rw.add_node("WriteFile", [fname, text], name="write")
    y = rw.add_node("Mul", [x, rw.const(np.float32(2), name="two")], {"T": F32}, name="y",
                    control_inputs=[write])
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    return g


# ---------------------------------------------------------------------------- the table
@pytest.mark.parametrize(("op", "cat", "reason"), [
    ("ImmutableConst", "file-io", "maps a file of this machine into the model"),
    ("ReadFile", "file-io", "reads a file"),
    ("WriteFile", "file-io", "writes a file"),
    ("MatchingFiles", "file-io", "lists"),
    ("RestoreV2", "file-io", "checkpoint"),
    ("MergeV2Checkpoints", "file-io", "checkpoint"),
    ("TFRecordReaderV2", "file-io", "reads"),
    ("TFRecordDataset", "file-io", "reads"),
    ("LoadAndRemapMatrix", "file-io", "checkpoint"),
    ("PyFunc", "python", "runs Python code"),
    ("PyFuncStateless", "python", "runs Python code"),
    ("EagerPyFunc", "python", "runs Python code"),
    ("PrintV2", "print", "prints"),
    ("Print", "print", "prints"),
])
def test_table_names_what_touches_the_host(op, cat, reason):
    assert opdefs.category(op) == cat
    assert reason in opdefs.side_effect(op)
    assert opdefs.is_stateful(op)  # so that folding and CSE never evaluate or merge it


@pytest.mark.parametrize(("op", "cat"), [
    ("RandomStandardNormal", "random"), ("TruncatedNormal", "random"),
    ("StatelessRandomUniformV2", "random"), ("Assert", "assert"),
    ("VarHandleOp", "variable"), ("VariableV2", "variable"), ("AssignVariableOp", "variable"),
    ("Add", None), ("Const", None), ("Reshape", None), ("UpFirDn2D", None),
])
def test_table_categories_without_host_effects(op, cat):
    assert opdefs.category(op) == cat
    assert opdefs.side_effect(op) is None


def test_decode_proto_reads_a_descriptor_file_unless_local():
    nd = proto.NodeDef(name="d", op="DecodeProtoV2")
    nd.attr["descriptor_source"].s = b"/etc/descriptors.bin"
    assert "reads a file" in opdefs.side_effect(nd)
    nd.attr["descriptor_source"].s = b"local://"
    assert opdefs.side_effect(nd) is None


def test_folding_kernels_have_no_side_effects():
    from graphsurgery import kernels

    assert not [op for op in kernels.KERNELS if opdefs.category(op) is not None]


def test_side_effects_of_a_graph_include_called_functions(tmp_path):
    g = _read_file_graph(tmp_path / "f")
    found = opdefs.side_effects(g)
    assert [(e.node, e.op) for e in found] == [("read", "ReadFile")]
    assert str(found[0]) == "ReadFile 'read' reads a file"


# ---------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("backend", ["capi", "python"])
def test_shape_inference_never_opens_a_file(fifo, monkeypatch, backend):
    if backend == "python":  # a tf.Graph instead of the C library through ctypes
        monkeypatch.setenv("GRAPHSURGERY_SHAPES", "python")
    g = _read_file_graph(fifo.path)
    info = g.infer()
    assert info[gs.TensorRef("y")].dtype == F32
    assert info[gs.TensorRef("read")].dtype == STR
    assert info.opaque == {"read": "host"} and not info.conflicts
    # after a rewrite, the incremental update imports what changed: still not the reader
    rw = gs.Rewriter(g, "test::edit")
    dims2 = rw.add_node("Identity", ["dims"], {"T": I32}, name="dims2")
    rw.set_input("y", 1, dims2)
    assert g.infer()[gs.TensorRef("y")].dtype == F32
    assert not fifo.release(), "shape inference opened the graph's file"


def _function_call_graph(path) -> gs.Graph:
    """``y = x + StringLength(inner(path))`` where ``inner`` (a library function, called by
    a PartitionedCall inside another function) reads the file."""
    import tensorflow as tf

    @tf.function(autograph=False)
    def inner(name):
        return tf.io.read_file(name)

    @tf.function(autograph=False)
    def middle(name):
        return inner(name)

    @tf.function(autograph=False)
    def outer(x):
        return x + tf.cast(tf.strings.length(middle(tf.constant(str(path)))), tf.float32)

    gd = outer.get_concrete_function(tf.TensorSpec([1], tf.float32)).graph.as_graph_def()
    g = gs.Graph.from_graph_def(gd)
    g.outputs = [gs.TensorRef(n.name) for n in g.nodes("Identity")]
    g.inputs = [gs.TensorRef(n.name) for n in g.nodes("Placeholder")]
    return g


def test_calls_of_functions_that_touch_the_host_count(tmp_path):
    from graphsurgery.export import convert_tflite

    g = _function_call_graph(tmp_path / "f")
    (found,) = opdefs.side_effects(g)
    assert found.op in ("PartitionedCall", "StatefulPartitionedCall")
    assert found.reason.startswith("calls function '__inference_middle")
    assert re.search(r": ReadFile '\w+' \(in function '__inference_inner_\d+'\) reads a file$",
                     found.reason), found.reason
    assert g.infer().opaque[found.node] == "host"
    with pytest.raises(VerificationError, match="calls function"):
        convert_tflite(g, tmp_path / "m.tflite")


def test_check_never_opens_a_file_and_lists_the_reader(capsys, tmp_path, fifo):
    model = gs.save(_read_file_graph(fifo.path), tmp_path / "m.pb")
    code, out, err = run_cli(capsys, "check", str(model))
    assert not fifo.release(), "graphsurgery check opened the graph's file"
    assert code == 3, err
    assert "read (ReadFile): reads a file" in out


def test_verify_shapes_never_opens_a_file(capsys, tmp_path, fifo):
    model = gs.save(_read_file_graph(fifo.path), tmp_path / "m.pb")
    code, _, err = run_cli(capsys, "run", str(model), "-p", "core::remove_identity",
                           "-o", tmp_path / "out", "--target", "none", "--verify-shapes")
    assert not fifo.release(), "--verify-shapes opened the graph's file"
    assert code == 0, err


def test_immutable_const_keeps_its_declared_shape(tmp_path):
    g = _immutable_const_graph(tmp_path / "nowhere")
    info = g.infer()
    assert info[gs.TensorRef("ic")] == TensorInfo(U8, (4,))
    assert info[gs.TensorRef("y")].shape == (1, 4)


# ---------------------------------------------------------------------------- conversion
def test_export_refuses_a_file_mapped_into_the_model(tmp_path):
    from graphsurgery.export import convert_tflite

    secret = tmp_path / "secret"
    secret.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(VerificationError) as exc:
        convert_tflite(_immutable_const_graph(secret), tmp_path / "m.tflite")
    assert "ImmutableConst 'ic' maps a file of this machine into the model" in str(exc.value)
    assert not (tmp_path / "m.tflite").exists()


def test_export_refuses_to_list_files(tmp_path):
    from graphsurgery.export import convert_tflite

    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1])
    pattern = rw.const(np.array(str(tmp_path / "*").encode(), dtype=object), name="pattern")
    files = rw.add_node("MatchingFiles", [pattern], name="mf")
    n = rw.add_node("Size", [files], {"T": STR, "out_type": I32}, name="n")
    nf = rw.add_node("Cast", [n], {"SrcT": I32, "DstT": F32}, name="nf")
    y = rw.add_node("AddV2", [x, nf], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    with pytest.raises(VerificationError, match="MatchingFiles 'mf' lists"):
        convert_tflite(g, tmp_path / "m.tflite")


def test_run_refuses_to_bake_a_host_file_into_tflite(capsys, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"\x01\x02\x03\x04")
    model = gs.save(_immutable_const_graph(secret), tmp_path / "m.pb")
    code, out, err = run_cli(capsys, "run", str(model), "-p", "generic", "-o", tmp_path / "out")
    assert code != 0
    assert "ImmutableConst 'ic' maps a file of this machine into the model" in err
    assert not (tmp_path / "out" / "model.tflite").exists()
    assert "clean" not in out
    code, out, _ = run_cli(capsys, "check", str(model))
    assert code == 3
    assert "error: ic (ImmutableConst): maps a file of this machine into the model" in out


# ---------------------------------------------------------------------------- verification
def test_verify_refuses_side_effects_unless_allowed(capsys, tmp_path):
    target = tmp_path / "written.txt"
    model = gs.save(_write_file_graph(target), tmp_path / "m.pb")
    code, _, err = run_cli(capsys, "run", str(model), "-p", "core::remove_identity",
                           "-o", tmp_path / "out", "--target", "none", "--verify")
    assert code == 3, err
    assert not target.exists()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "WriteFile 'write' writes a file" in lines[0]
    assert "--allow-side-effects" in lines[0]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verification"]["ok"] is False
    code, _, err = run_cli(capsys, "run", str(model), "-p", "core::remove_identity",
                           "-o", tmp_path / "out2", "--target", "none", "--verify",
                           "--allow-side-effects")
    assert code == 0, err
    assert target.read_bytes() == b"side effect"  # the user asked for it


def test_runners_refuse_side_effects_unless_allowed(tmp_path):
    from graphsurgery.runners import GraphDefRunner, ReferenceRunner

    target = tmp_path / "written.txt"
    g = _write_file_graph(target)
    feeds = {"x": np.ones((1, 2), np.float32)}
    for make in (GraphDefRunner, ReferenceRunner):
        with pytest.raises(InputError, match="WriteFile 'write' writes a file"):
            make(g).run(feeds)
    assert not target.exists()
    with ReferenceRunner(g, allow_side_effects=True) as ref:
        (y,) = ref.run(feeds)
    np.testing.assert_array_equal(y, [[2.0, 2.0]])
    assert target.exists()


def test_verify_still_feeds_seeded_noise_to_random_ops(capsys, tmp_path):
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 4])
    shape = rw.const(np.array([1, 4], np.int32), name="shape")
    noise = rw.add_node("RandomStandardNormal", [shape], {"T": I32, "dtype": F32},
                        name="noise")
    y = rw.add_node("AddV2", [x, noise], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    model = gs.save(g, tmp_path / "m.pb")
    code, _, err = run_cli(capsys, "run", str(model), "-p", "core::remove_identity",
                           "-o", tmp_path / "out", "--target", "none", "--verify")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verification"]["ok"] is True
