"""Shape inference through TensorFlow's C library (ctypes) against the tensorflow package."""

from __future__ import annotations

import pytest

import graphsurgery as gs
from graphsurgery import zoo
from graphsurgery.ir import tf_capi
from graphsurgery.ir.shapes import infer_shapes
from graphsurgery.testing import assert_runs_alone

pytestmark = pytest.mark.skipif(tf_capi.load() is None, reason="no TensorFlow C library")


@pytest.mark.parametrize("name", ["sg1-tiny", "sg2-tiny-cuda", "tf2-tiny-savedmodel"])
def test_c_library_and_python_package_infer_the_same(monkeypatch, name):
    # sg1: ref leftovers of variables and v1 control flow; sg2-cuda: custom ops.
    graph = zoo.load(name)
    via_c = infer_shapes(graph)
    monkeypatch.setenv("GRAPHSURGERY_SHAPES", "python")
    via_python = infer_shapes(graph)
    assert dict(via_c) == dict(via_python)
    assert via_c.opaque == via_python.opaque
    assert via_c.conflicts == via_python.conflicts


def test_registered_ops_are_the_registry():
    ops = tf_capi.registered_ops()
    assert {"Conv2D", "Conv2DBackpropInput", "RandomStandardNormal", "Switch"} <= ops
    assert "UpFirDn2D" not in ops and len(ops) > 1000


def test_an_import_error_carries_tensorflows_message():
    g = tf_capi.CGraph()
    bad = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(bad, "test")
    x = rw.placeholder("x", gs.DType.float32, [2, 3])
    rw.add_node("MatMul", [x, x], {"T": gs.DType.float32}, name="mm")
    with pytest.raises(ValueError, match="mm"):
        g.import_(bad.to_graph_def().SerializeToString(), {}, ["mm"])


def test_the_stylegan_preset_runs_without_the_tensorflow_package(tmp_path):
    path = zoo.cached("sg2-tiny")
    code = (
        "import sys, graphsurgery as gs\n"
        f"g = gs.load({str(path)!r})\n"
        "assert gs.Pipeline.preset('stylegan-to-tflite').run(g).ok\n"
        "assert 'tensorflow' not in sys.modules, 'imported tensorflow'\n"
        "assert g.op_counts().get('Conv2DBackpropInput', 0) == 0\n"
    )
    assert_runs_alone(code)
