"""Loading untrusted models: nothing of the model runs, malformed constants are input errors
naming the node, a constant's declared size cannot make decoding explode, and text GraphDefs
are read and written the way TensorFlow writes them."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.ir import proto
from graphsurgery.ir.dtypes import DType

F32 = int(DType.float32)


def _const_graph(tensor: object, name: str = "w") -> bytes:
    """x [2] -> Mul(x, <name>) -> y, with <name> a Const holding ``tensor``."""
    gd = proto.GraphDef()
    x = gd.node.add(name="x", op="Placeholder")
    x.attr["dtype"].type = F32
    c = gd.node.add(name=name, op="Const")
    c.attr["dtype"].type = F32
    c.attr["value"].tensor.CopyFrom(tensor)
    m = gd.node.add(name="y", op="Mul", input=["x", name])
    m.attr["T"].type = F32
    return gd.SerializeToString()


def _tensor(dims, *, dtype=F32, content=b"", floats=()):
    tp = proto.TensorProto(dtype=dtype)
    for d in dims:
        tp.tensor_shape.dim.add(size=d)
    tp.tensor_content = content
    tp.float_val.extend(floats)
    return tp


MALFORMED = {
    "short tensor_content": (_tensor([4], content=b"\0" * 12), "12 bytes of tensor_content"),
    "dtype 999": (_tensor([2], dtype=999, floats=[1.0]), "dtype 999"),
    "negative dim": (_tensor([-3], floats=[1.0]), "negative dimension"),
    "content and values": (_tensor([2], content=b"\0" * 8, floats=[1.0]),
                           "both tensor_content and float_val"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_const_is_an_input_error_naming_the_node(tmp_path, case):
    tensor, message = MALFORMED[case]
    path = tmp_path / "bad.pb"
    path.write_bytes(_const_graph(tensor, name="weights/w"))
    with pytest.raises(gs.InputError, match=f"bad.pb: Const 'weights/w': .*{message}"):
        gs.load(path)


def test_malformed_const_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.pb"
    path.write_bytes(_const_graph(MALFORMED["short tensor_content"][0]))
    code = main(["run", str(path), "-p", "generic", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "'w'" in lines[0] and "Traceback" not in err


def test_broadcast_const_loads_cheaply_and_decoding_is_bounded(tmp_path):
    """One float_val for [32768, 32768] is legal TensorFlow (the last value repeats): the
    file is a few hundred bytes, loading it stays cheap, decoding 4 GiB is refused."""
    path = tmp_path / "bomb.pb"
    path.write_bytes(_const_graph(_tensor([32768, 32768], floats=[1.5]), name="bomb"))
    assert path.stat().st_size < 300
    g = gs.load(path)
    assert g.const_nbytes("bomb") == 4 << 30
    with pytest.raises(gs.GraphError, match=r"Const 'bomb'.*\[32768, 32768\].*limit"):
        g.const_value("bomb")
    small = gs.load(_write(tmp_path / "ok.pb", _const_graph(_tensor([3, 2], floats=[1.5]))))
    np.testing.assert_array_equal(small.const_value("w"), np.full((3, 2), 1.5, np.float32))


def _write(path, data):
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- text format


def test_pbtxt_written_by_tensorflow_loads(tmp_path):
    import tensorflow as tf
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        c = tf.constant(np.arange(3, dtype=np.float32), name="c")
        tf.cast(tf.identity(x * c, name="y"), tf.int64, name="z")
    tf.io.write_graph(graph, str(tmp_path), "g.pbtxt", as_text=True)
    g = gs.load(tmp_path / "g.pbtxt", outputs=["z"])
    assert g.node("x").attr("dtype") == DType.float32
    assert g.node("z").attr("DstT") == DType.int64
    np.testing.assert_array_equal(g.const_value("c"), np.arange(3, dtype=np.float32))


def test_saved_pbtxt_is_what_tensorflow_writes(tmp_path):
    import tensorflow as tf
    from google.protobuf import text_format

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        tf.identity(x * 2.0, name="y")
    tf_gd = graph.as_graph_def()
    path = gs.save(gs.load(tf_gd, outputs=["y"]), tmp_path / "g.pbtxt")
    text = path.read_text()
    assert "DT_FLOAT" in text
    assert text_format.Parse(text, tf.compat.v1.GraphDef()) == tf_gd
    assert text == text_format.MessageToString(tf_gd)


def _weights_pbtxt(tmp_path, content: bytes):
    from google.protobuf import text_format

    gd = proto.GraphDef.FromString(
        _const_graph(_tensor([len(content) // 4], content=content))
    )
    path = tmp_path / "w.pbtxt"
    path.write_text(text_format.MessageToString(gd))
    return gd, path


def test_long_tensor_content_in_pbtxt_is_exact():
    """Every byte value and escape, odd backslash runs, quotes and a \\u lookalike survive."""
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(3)
    tricky = bytes(range(256)) + b'\\u00e9 \\\\" \'\\' + b"\\N{x}\\U0001"
    content = tricky * 40 + rng.integers(0, 256, 1 << 16, dtype=np.uint8).tobytes()
    content += b"\0" * (-len(content) % 4)
    with tempfile.TemporaryDirectory() as tmp:
        gd, path = _weights_pbtxt(Path(tmp), content)
        g = gs.load(path)
        assert list(g.to_graph_def().node) == list(gd.node)
        assert g.node("w").proto.attr["value"].tensor.tensor_content == content


def test_large_pbtxt_loads_in_bounded_memory(tmp_path):
    """A 1 MiB weight is ~3.5 MB of escaped text; text_format's tokenizer needed ~100 bytes
    per character of such a string (a 300 MB .pbtxt took over 6 GB)."""
    import tracemalloc

    content = np.random.default_rng(0).standard_normal(1 << 18).astype(np.float32).tobytes()
    gd, path = _weights_pbtxt(tmp_path, content)
    tracemalloc.start()
    try:
        g = gs.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert list(g.to_graph_def().node) == list(gd.node)
    assert peak < 16 * len(content), f"peak {peak / 2**20:.0f} MiB for a 1 MiB weight"


# ---------------------------------------------------------------- SavedModels


def _saved_model_with_side_effect(tf, export_dir, target, *, serve_uses_resource):
    """A tf.Module holding a TrackableResource whose initializer writes ``target``."""

    class Writer(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

        def _initialize(self):
            tf.io.write_file(target, "the model ran")
            tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=2.0)

    class M(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.full((3,), 3.0, np.float32))
            self.res = Writer()
            assert self.res.resource_handle is not None  # create it now: serve captures it

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            y = x * self.w
            if serve_uses_resource:
                y = y * tf.raw_ops.ReadVariableOp(resource=self.res.resource_handle,
                                                  dtype=tf.float32)
            return {"y": y}

    m = M()
    tf.saved_model.save(m, str(export_dir), signatures=m.serve)
    if os.path.exists(target):  # created while saving; loading must not recreate it
        os.remove(target)


def test_savedmodel_initializers_are_reported_not_run(tmp_path, caplog, monkeypatch):
    import tensorflow as tf
    target = str(tmp_path / "written_by_model")
    _saved_model_with_side_effect(tf, tmp_path / "sm", target, serve_uses_resource=False)

    def no_load(*args, **kwargs):
        raise AssertionError("tf.saved_model.load runs the model's code")

    monkeypatch.setattr(tf.saved_model, "load", no_load)
    with caplog.at_level(logging.WARNING, logger="graphsurgery"):
        g = gs.load(tmp_path / "sm")
    assert not os.path.exists(target)
    assert any("not run" in r.getMessage() and "res" in r.getMessage() for r in caplog.records)
    from graphsurgery.testing import run_tf

    (y,) = run_tf(g, {str(g.inputs[0]): np.ones((2, 3), np.float32)})
    np.testing.assert_array_equal(y, np.full((2, 3), 3.0, np.float32))


def test_savedmodel_needing_an_initializer_is_refused(tmp_path):
    import tensorflow as tf
    target = str(tmp_path / "written_by_model")
    _saved_model_with_side_effect(tf, tmp_path / "sm", target, serve_uses_resource=True)
    with pytest.raises(gs.InputError, match=r"sm: .*resource 'res'.*not a variable"):
        gs.load(tmp_path / "sm")
    assert not os.path.exists(target)


def test_savedmodel_nested_functions_and_captures_match_tensorflow(tmp_path):
    import tensorflow as tf

    class Inner(tf.Module):
        def __init__(self):
            self.k = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2))

        @tf.function
        def __call__(self, x):
            return tf.nn.relu(tf.matmul(x, self.k)), tf.reduce_sum(x, axis=1)

    class Outer(tf.Module):
        def __init__(self):
            self.inner = Inner()
            self.b = tf.Variable(np.float32(0.5))
            self.table = tf.constant(np.array([1.0, -2.0], np.float32))  # a captured constant

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            a, s = self.inner(x)
            return {"a": a * self.table + self.b, "s": s - self.b}

    m = Outer()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures=m.serve)
    feed = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    want = m.serve(tf.constant(feed))
    g = gs.load(tmp_path / "sm")
    assert [t.node for t in g.inputs] == ["x"]
    ops = g.op_counts()
    assert not {"ReadVariableOp", "VarHandleOp", "StatefulPartitionedCall",
                "PartitionedCall"} & set(ops)
    from graphsurgery.testing import run_tf

    got = run_tf(g, {"x": feed})
    outs = sorted(want)  # the signature's outputs in key order
    for key, value in zip(outs, got, strict=True):
        np.testing.assert_array_equal(value, want[key].numpy())


def test_savedmodel_cond_reading_variables_is_lowered(tmp_path):
    """tf.cond whose branches read variables: the If is lowered to Switch/Merge (as freezing
    with TensorFlow did) and the variables become constants; a while_loop stays functional."""
    import tensorflow as tf

    class C(tf.Module):
        def __init__(self):
            self.w = tf.Variable(2.0)
            self.v = tf.Variable(np.arange(3, dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            y = tf.cond(tf.reduce_sum(x) > 0, lambda: x * self.w, lambda: x + self.v)
            _, z = tf.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * 1.5), [0, y])
            return {"z": z}

    m = C()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures=m.serve)
    g = gs.load(tmp_path / "sm")
    ops = g.op_counts()
    assert ops["Switch"] and ops["Merge"] and not {"If", "ReadVariableOp"} & set(ops)
    from graphsurgery.testing import run_tf

    for sign in (1.0, -1.0):
        feed = np.full((2, 3), sign, np.float32)
        (got,) = run_tf(g, {"x": feed})
        np.testing.assert_array_equal(got, m.serve(tf.constant(feed))["z"].numpy())


def test_savedmodel_gather_and_shape_of_variables(tmp_path):
    import tensorflow as tf

    class E(tf.Module):
        def __init__(self):
            self.emb = tf.Variable(np.arange(20, dtype=np.float32).reshape(10, 2))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="ids")])
        def serve(self, ids):
            rows = tf.raw_ops.VariableShape(input=self.emb.handle)[0]
            return {"e": tf.gather(self.emb, ids) * tf.cast(rows, tf.float32)}

    m = E()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures=m.serve)
    g = gs.load(tmp_path / "sm")
    assert {"GatherV2", "Shape"} <= set(g.op_counts())
    from graphsurgery.testing import run_tf

    ids = np.array([3, 1, 9], np.int32)
    (got,) = run_tf(g, {"ids": ids})
    np.testing.assert_array_equal(got, m.serve(tf.constant(ids))["e"].numpy())
