"""Shape inference through TensorFlow's C library (ctypes) against the tensorflow package."""

from __future__ import annotations

import subprocess
import sys

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


def test_quiet_loading_does_not_import_the_tensorflow_package():
    """The CLI's quiet mode puts a finder on the meta path that imports all of tensorflow
    (2+ s) when asked for it; locating the library must not ask it."""
    code = (
        "import sys\n"
        "from graphsurgery import _quiet\n"
        "from graphsurgery.ir import tf_capi\n"
        "_quiet.install()\n"
        "assert tf_capi.load() is not None\n"
        "assert 'tensorflow' not in sys.modules, 'imported tensorflow'\n"
    )
    assert_runs_alone(code)


def test_quiet_loading_in_the_background_drops_only_the_librarys_lines():
    """While the library loads in a thread with stderr captured, what the main thread
    writes (an error, progress) still reaches stderr, after the load; the library's
    absl-style lines do not."""
    code = (
        "import os, sys, threading, time\n"
        "from graphsurgery import _quiet\n"
        "from graphsurgery.ir import tf_capi\n"
        "_quiet.install()\n"
        "def library():\n"
        "    os.write(2, b'I0000 00:00:1796527899.119670    3399 port.cc:153] oneDNN on\\n')\n"
        "    time.sleep(0.3)\n"
        "started = threading.Thread(target=tf_capi._quietly, args=(library,))\n"
        "started.start()\n"
        "time.sleep(0.1)\n"
        "print('main: still here', file=sys.stderr)\n"
        "started.join()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "main: still here\n"


def test_a_quiet_tensorflow_import_during_the_background_load_does_not_hang():
    """The quiet ``import tensorflow`` (``graphsurgery run x.pkl`` rebuilds with TensorFlow)
    and the library's quiet load in its thread both point fd 2 elsewhere; interleaved, the
    import restored fd 2 to a copy of the load's pipe and the load waited for that pipe's
    end forever. Here the import starts while the load holds fd 2 and lasts past it."""
    code = (
        "import importlib.abc, importlib.machinery, sys, threading\n"
        "from graphsurgery import _quiet\n"
        "from graphsurgery.ir import tf_capi\n"
        "_quiet.ACTIVE = True\n"
        "a_in, importing, a_done = threading.Event(), threading.Event(), threading.Event()\n"
        "class SlowTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'tensorflow':\n"
        "            return importlib.machinery.ModuleSpec(name, self)\n"
        "    def create_module(self, spec):\n"
        "        return None\n"
        "    def exec_module(self, module):\n"
        "        importing.set()\n"
        "        a_done.wait(2)\n"
        "def load():\n"
        "    tf_capi._quietly(lambda: (a_in.set(), importing.wait(0.5)))\n"
        "    a_done.set()\n"
        "sys.meta_path.append(SlowTensorFlow())\n"
        "t = threading.Thread(target=load, daemon=True)\n"
        "t.start()\n"
        "a_in.wait(5)\n"
        "_quiet.install()\n"
        "import tensorflow\n"
        "t.join(5)\n"
        "print('hung' if t.is_alive() else 'ok', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout == "ok\n", (done.stdout, done.stderr)


def test_bad_input_during_the_background_load_still_gets_its_error(tmp_path):
    """``graphsurgery run`` starts loading the library while it reads the file; a corrupt
    file's one-line error is not swallowed by the quiet load, and nothing else is written."""
    bad = tmp_path / "bad.pb"
    bad.write_bytes(bytes(range(256)) * 4)
    done = subprocess.run([sys.executable, "-m", "graphsurgery", "run", str(bad), "-p",
                           "stylegan-to-tflite", "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphsurgery: error: ") and "bad.pb" in lines[0]
    assert not (tmp_path / "out").exists()
