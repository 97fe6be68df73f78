"""How convert_tflite calls TensorFlow's converter: ``converter_from_session`` builds the
converter ``from_session`` would, without its Grappler pass whose result it throws away on
a frozen graph, so the flatbuffer is byte for byte the same."""

from __future__ import annotations

from graphsurgery.export import tflite as export_tflite
from graphsurgery.export.tflite import convert_tflite, converter_from_session

from . import build, conv_bias_relu, tf, weights


def _convert(graph, make):
    t = tf()
    tfg = t.Graph()
    with tfg.as_default():
        t.graph_util.import_graph_def(graph.to_tf_graph_def(), name="")
    x = tfg.get_tensor_by_name("x:0")
    x.set_shape([1, 8, 8, 16])
    out = tfg.get_tensor_by_name("out:0")
    with t.compat.v1.Session(graph=tfg) as sess:
        return make(t, sess, [x], [out]).convert()


def test_the_same_flatbuffer_as_from_session():
    graph = build(conv_bias_relu)
    want = _convert(graph, lambda t, s, i, o: t.compat.v1.lite.TFLiteConverter.from_session(
        s, i, o))
    got = _convert(graph, converter_from_session)
    assert len(got) > 1000 and got == want


def test_no_grappler_pass_on_a_frozen_graph(monkeypatch, tmp_path):
    from tensorflow.lite.python import util

    calls = []
    real = util.run_graph_optimizations

    def counting(*a, **kw):
        calls.append(kw.get("config"))
        return real(*a, **kw)

    monkeypatch.setattr(util, "run_graph_optimizations", counting)
    graph = build(conv_bias_relu)
    convert_tflite(graph, tmp_path / "a.tflite")
    ours = len(calls)
    calls.clear()
    monkeypatch.setattr(export_tflite, "converter_from_session",
                        lambda t, s, i, o: t.compat.v1.lite.TFLiteConverter.from_session(s, i, o))
    convert_tflite(graph, tmp_path / "b.tflite")
    assert len(calls) == ours + 1  # from_session's own "function" pass, thrown away
    assert (tmp_path / "a.tflite").read_bytes() == (tmp_path / "b.tflite").read_bytes()


def test_a_graph_with_variables_goes_through_from_session():
    t = tf()
    tfg = t.Graph()
    with tfg.as_default():
        x = t.compat.v1.placeholder(t.float32, [1, 4], name="x")
        v = t.compat.v1.Variable(t.ones([4]), name="v")
        out = t.identity(x * v, name="out")
    seen = []

    class Spy:
        @classmethod
        def from_session(cls, sess, ins, outs):
            seen.append("from_session")
            return "converter"

    class FakeTF:
        class compat:  # noqa: N801 - mirrors tf.compat.v1.lite
            class v1:  # noqa: N801
                class lite:  # noqa: N801
                    TFLiteConverter = Spy

    with t.compat.v1.Session(graph=tfg) as sess:
        assert converter_from_session(FakeTF, sess, [x], [out]) == "converter"
    assert seen == ["from_session"]


def test_function_inlining_is_skipped_only_without_functions():
    t = tf()
    graph = build(conv_bias_relu)
    _convert(graph, lambda *a: _checked(converter_from_session(*a), skipped=True))
    tfg = t.Graph()
    with tfg.as_default():
        x = t.compat.v1.placeholder(t.float32, [1, 4], name="x")
        out = t.function(lambda v: v * 2.0)(x)
        out = t.identity(out, name="out")
    with t.compat.v1.Session(graph=tfg) as sess:
        assert sess.graph_def.library.function  # a graph with a function library
        conv = converter_from_session(t, sess, [x], [out])
        _checked(conv, skipped=False)
        assert len(conv.convert()) > 100


def _checked(conv, skipped):
    assert ("_optimize_tf_model" in vars(conv)) is skipped
    return conv


def _twice_the_same_weights(t, x):
    """The same 16 numbers as a convolution's bias and, in another shape, as a multiplier
    after the ReLU: two constant tensors, one buffer once the converter deduplicates."""
    b = weights(16, seed=1)
    y = t.nn.conv2d(x, t.constant(weights(3, 3, 16, 16)), 1, "SAME", name="c1") + t.constant(b)
    y = t.nn.relu(y) * t.constant(b.reshape(1, 1, 1, 16))
    return t.identity(y, name="out")


def test_one_pack_gives_the_same_deduplicated_flatbuffer(monkeypatch):
    """The converter's buffer deduplication and metadata, done on one unpacked model and
    packed once: byte for byte what ``from_session`` gives, buffers shared, and TensorFlow's
    own packing (a copy of the whole model each time) never called."""
    from tensorflow.lite.python import lite
    from tensorflow.lite.tools import flatbuffer_utils

    from graphsurgery.export._schema import _schema

    graph = build(_twice_the_same_weights)
    want = _convert(graph, lambda t, s, i, o: t.compat.v1.lite.TFLiteConverter.from_session(
        s, i, o))
    packs = []
    real = flatbuffer_utils.convert_object_to_bytearray

    def counting(*a, **kw):
        packs.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(flatbuffer_utils, "convert_object_to_bytearray", counting)
    monkeypatch.setattr(lite.flatbuffer_utils, "convert_object_to_bytearray", counting)
    got = _convert(graph, converter_from_session)
    assert got == want and packs == []
    model = _schema().Model.GetRootAs(got, 0)
    sg = model.Subgraphs(0)
    const = [sg.Tensors(i) for i in range(sg.TensorsLength())
             if model.Buffers(sg.Tensors(i).Buffer()).DataLength() > 0]
    shapes = {tuple(t.ShapeAsNumpy()) for t in const}
    assert {(16,), (1, 1, 1, 16)} <= shapes
    assert len({t.Buffer() for t in const}) == len(const) - 1  # bias and multiplier share


def _same_sizes(t, x):
    """Three 16-float constants, two of them equal, and a 3x3 filter of a size of its own:
    only the two buffers that may be equal (same size, same sampled bytes) are digested,
    and the choice is the converter's."""
    b, c = weights(16, seed=1), weights(16, seed=2)
    y = t.nn.conv2d(x, t.constant(weights(3, 3, 16, 16)), 1, "SAME", name="c1") + t.constant(b)
    y = t.nn.relu(y) * t.constant(c.reshape(1, 1, 1, 16)) + t.constant(b.reshape(1, 1, 1, 16))
    return t.identity(y, name="out")


def test_deduplication_digests_only_buffers_that_may_be_equal():
    import hashlib

    from graphsurgery.export._schema import _schema

    graph = build(_same_sizes)
    want = _convert(graph, lambda t, s, i, o: t.compat.v1.lite.TFLiteConverter.from_session(
        s, i, o))
    real, digested = hashlib.md5, []

    def md5(data, *a, **kw):
        digested.append(len(memoryview(data).cast("B")))
        return real(data, *a, **kw)

    hashlib.md5 = md5
    try:
        got = _convert(graph, converter_from_session)
    finally:
        hashlib.md5 = real
    assert got == want
    assert digested == [64, 64]  # the two equal vectors: not the third, not the filter
    model = _schema().Model.GetRootAs(got, 0)
    sg = model.Subgraphs(0)
    const = [sg.Tensors(i) for i in range(sg.TensorsLength())
             if model.Buffers(sg.Tensors(i).Buffer()).DataLength() == 64]
    assert len(const) == 3 and len({t.Buffer() for t in const}) == 2
