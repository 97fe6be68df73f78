"""``--trust-pickle-code``: a pickle's own code runs (in a subprocess) only when asked.

A fake NVlabs repository is written into ``tmp_path``: ``dnnlib/tflib/network.py`` whose
``Network.__setstate__`` execs ``build_module_src`` into a new module and builds the network
with ``tf.compat.v1`` variables, like the original. The pickle's code leaves a mark (a file)
when it runs, so the tests can tell whether it ran.
"""

from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.ir.pickle import PickleOptions
from graphsurgery.testing import run_tf
from graphsurgery.zoo import nvlabs_write as nw

FUNC = "training.networks_tiny.G_tiny"  # no rebuilder knows it

_DNNLIB = {
    "dnnlib/__init__.py": "from .util import EasyDict\n",
    "dnnlib/util.py": """
        class EasyDict(dict):
            def __getattr__(self, name):
                return self[name]
        """,
    "dnnlib/tflib/__init__.py": """
        from . import network
        from .network import Network
        from .tfutil import init_tf
        """,
    "dnnlib/tflib/tfutil.py": """
        import tensorflow as tf
        import tensorflow.contrib  # like the original's (TF 1.x)
        tf.contrib = tensorflow.contrib

        def init_tf():
            if tf.get_default_session() is None:
                tf.Session().__enter__()
        """,
    # Like the original: exec the pickle's build_module_src, build a template graph whose
    # placeholders get their shapes from the build function, set the stored variables.
    "dnnlib/tflib/network.py": """
        import inspect, types, uuid
        import tensorflow as tf
        from ..util import EasyDict

        _import_handlers = []

        class Network:
            def __setstate__(self, state):
                for handler in _import_handlers:
                    state = handler(state)
                self.name = state["name"]
                self.static_kwargs = EasyDict(state["static_kwargs"])
                self.components = EasyDict(state["components"])
                self._build_func_name = state["build_func_name"]
                module = types.ModuleType("_imported_module_" + uuid.uuid4().hex)
                exec(state["build_module_src"], module.__dict__)
                self._build_func = getattr(module, self._build_func_name.split(".")[-1])
                params = inspect.signature(self._build_func).parameters.values()
                self.input_names = [p.name for p in params if p.default is p.empty
                                    and p.kind is p.POSITIONAL_OR_KEYWORD]
                self.scope = self.name
                with tf.variable_scope(self.scope):
                    self.input_templates = [tf.placeholder(tf.float32, name=n)
                                            for n in self.input_names]
                    out = self._build_func(*self.input_templates, **self.static_kwargs)
                self.input_shapes = [t.shape.as_list() for t in self.input_templates]
                self.output_names = [out.name.split("/")[-1].split(":")[0]]
                own = {v.name[len(self.scope) + 1:].split(":")[0]: v
                       for v in tf.global_variables(self.scope + "/")}
                sess = tf.get_default_session()
                for name, value in state["variables"]:
                    sess.run(tf.assign(own[name], value))

            def get_output_for(self, *inputs, **dynamic_kwargs):
                kwargs = dict(self.static_kwargs, **dynamic_kwargs)
                with tf.variable_scope(self.scope, reuse=True):
                    return self._build_func(*inputs, **kwargs)
        """,
}

# The pickle's code: it leaves MARK when it runs; G_main-like truncation with
# is_validation=True (psi from truncation_psi_val), a leaky-ReLU dense layer, NCHW images.
_SRC = """
import tensorflow as tf

open({mark!r}, "a").write("ran\\n")

def G_tiny(latents_in, labels_in, latent_size=4, resolution=2, truncation_psi=0.5,
           truncation_psi_val=None, is_validation=False, randomize_noise=True, fail=False,
           gain=1.0, **_kwargs):
    if fail:
        raise RuntimeError("the tiny build function fails on purpose")
    latents_in.set_shape([None, latent_size])
    labels_in.set_shape([None, 0])
    n = 3 * resolution * resolution
    w = tf.get_variable("weight", shape=[latent_size, n])
    b = tf.get_variable("bias", shape=[n])
    avg = tf.get_variable("dlatent_avg", shape=[latent_size], trainable=False)
    psi = truncation_psi_val if is_validation else truncation_psi
    x = latents_in if psi is None else avg + (latents_in - avg) * psi
    y = tf.nn.leaky_relu(tf.matmul(x, w) + b, alpha=0.2) * gain
    return tf.identity(tf.reshape(y, [-1, 3, resolution, resolution]), name="images_out")

def D_tiny(images_in, labels_in, **_kwargs):
    images_in.set_shape([None, 3, 2, 2])
    labels_in.set_shape([None, 0])
    return tf.identity(tf.reduce_sum(images_in, axis=[1, 2, 3]), name="scores_out")
"""


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "stylegan2"
    for rel, text in _DNNLIB.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(textwrap.dedent(text))
    return repo


def _values(scale: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"weight": (rng.standard_normal([4, 12]) * scale).astype(np.float32),
            "bias": rng.standard_normal([12]).astype(np.float32),
            "dlatent_avg": rng.standard_normal([4]).astype(np.float32)}


def _pickle(tmp_path: Path, **static_kwargs) -> tuple[Path, Path]:
    """A ``(G, D, Gs)`` snapshot of G_tiny networks (G's weights are 3x Gs's); the mark."""
    mark = tmp_path / "code-ran"
    src = _SRC.format(mark=str(mark))
    kw = {"latent_size": 4, "resolution": 2, **static_kwargs}
    nets = (nw.network("G", FUNC, kw, _values(3.0), build_module_src=src),
            nw.network("D", "training.networks_tiny.D_tiny", {}, {}, build_module_src=src),
            nw.network("Gs", FUNC, kw, _values(1.0), build_module_src=src))
    return nw.write(tmp_path / "snapshot.pkl", nets), mark


def _expected(z: np.ndarray, scale: float, psi: float | None) -> np.ndarray:
    """What G_tiny computes with the weights ``_values(scale)``."""
    v = _values(scale)
    x = z if psi is None else v["dlatent_avg"] + (z - v["dlatent_avg"]) * psi
    y = x @ v["weight"] + v["bias"]
    return np.where(y > 0, y, 0.2 * y).reshape(-1, 3, 2, 2)


def test_without_the_flag_nothing_runs_and_the_error_names_the_opt_in(tmp_path, capsys):
    path, mark = _pickle(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv in (["import", str(path), "-o", str(tmp_path / "x.pb")],
                 ["run", str(path), "-p", "generic", "--target", "none",
                  "-o", str(tmp_path / "out")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and FUNC in err and "--trust-pickle-code" in err, err
        assert "(supported: " in err and "G_main (StyleGAN2 or StyleGAN2-ADA)" in err
    with pytest.raises(gs.InputError, match="--trust-pickle-code"):
        gs.load(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not mark.exists()
    # the code path without the opt-in is refused, and still nothing runs
    assert main(["import", str(path), "-o", str(tmp_path / "x.pb"), "--pickle-code-path",
                 str(_repo(tmp_path))]) == 2
    assert "--pickle-code-path: only used with --trust-pickle-code" in capsys.readouterr().err
    assert main(["run", str(path), "-p", "generic", "-o", str(tmp_path / "out"),
                 "--pickle-code-kwarg", "impl=ref"]) == 2
    assert "--pickle-code-kwarg: only used with --trust-pickle-code" in capsys.readouterr().err
    assert main(["import", str(path), "-o", str(tmp_path / "x.pb"), "--trust-pickle-code",
                 "--pickle-code-kwarg", "impl"]) == 2
    assert "--pickle-code-kwarg impl: write KEY=VALUE" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "model.pb"), "-p", "generic", "-o",
                 str(tmp_path / "out"), "--trust-pickle-code"]) == 2
    assert "is not an NVlabs pickle (.pkl)" in capsys.readouterr().err
    assert not mark.exists() and not (tmp_path / "x.pb").exists()


def test_unknown_kwargs_name_the_opt_in(tmp_path, capsys):
    g, d, gs_net = nw.snapshot("sg2-tiny")
    gs_net.state["static_kwargs"] = {**gs_net.state["static_kwargs"], "num_fp16_res": 4}
    path = nw.write(tmp_path / "fp16.pkl", (g, d, gs_net))
    assert main(["import", str(path), "-o", str(tmp_path / "x.pb")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown kwarg num_fp16_res=4; supported: " in err, err
    assert err.rstrip().endswith("--trust-pickle-code --pickle-code-path NVLABS_REPO builds "
                                 "it by running the pickle's own code instead (only for a "
                                 "file you trust)"), err
    assert not (tmp_path / "x.pb").exists()


def _refuse(*args, **kwargs):
    raise AssertionError("the parent process unpickled with the real pickle module")


def test_trusted_import_freezes_what_the_code_computes(tmp_path, capsys, monkeypatch):
    path, mark = _pickle(tmp_path)
    for name in ("load", "loads", "_load", "_loads"):  # only the subprocess may unpickle
        monkeypatch.setattr(pickle, name, _refuse)
    out = tmp_path / "frozen.pb"
    code = main(["import", str(path), "-o", str(out), "--trust-pickle-code",
                 "--pickle-code-path", str(_repo(tmp_path)), "--network", "G", "--psi", "0.7"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "G (training.networks_tiny.G_tiny, network G" in printed
    assert "truncation psi 0.7" in printed and "RUNNING the pickle's code" in printed
    assert mark.read_text() == "ran\n" * 3  # G, D and Gs each exec'd the source once
    graph = gs.load(out)
    # frozen: the three variables are Consts (their reads Identities), no VariableV2, with
    # psi and gain; labels_in, which the network does not use, is pruned
    assert dict(graph.op_counts()) == {
        "Placeholder": 1, "Const": 6, "Identity": 5, "Sub": 1, "Mul": 2, "AddV2": 2,
        "MatMul": 1, "LeakyRelu": 1, "Reshape": 1}
    assert [str(r) for r in graph.inputs] == ["latents_in:0"]
    assert [str(r) for r in graph.outputs] == ["images_out:0"]
    z = np.random.default_rng(1).standard_normal([3, 4]).astype(np.float32)
    (images,) = run_tf(graph, {"latents_in": z})
    np.testing.assert_allclose(images, _expected(z, 3.0, 0.7), rtol=1e-5, atol=1e-5)


def test_run_records_that_the_code_ran(tmp_path, capsys):
    path, mark = _pickle(tmp_path)
    out = tmp_path / "out"
    code = main(["run", str(path), "-p", "generic", "--target", "none", "-o", str(out),
                 "--trust-pickle-code", "--pickle-code-path", str(_repo(tmp_path)), "--verify",
                 "--pickle-code-kwarg", "gain=2.5"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert any("RUNNING the pickle's own code" in w for w in summary["warnings"])
    assert summary["verification"]["ok"] and mark.exists()
    # Gs, no truncation (what get_output_for(is_validation=True) gives without a psi), with
    # the static kwarg gain=2.5 that --pickle-code-kwarg added through dnnlib's import handlers
    z = np.random.default_rng(2).standard_normal([2, 4]).astype(np.float32)
    (images,) = run_tf(gs.load(out / "model.pb"), {"latents_in": z})
    np.testing.assert_allclose(images, 2.5 * _expected(z, 1.0, None), rtol=1e-5, atol=1e-5)


def test_an_error_in_the_code_is_one_line_and_writes_nothing(tmp_path, capsys):
    path, mark = _pickle(tmp_path, fail=True)
    repo = _repo(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["import", str(path), "-o", str(tmp_path / "frozen.pb"), "--trust-pickle-code",
                 "--pickle-code-path", str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.rstrip().endswith(
        "failed: RuntimeError: the tiny build function fails on purpose"), err
    # nothing written but the mark: the source ran before the build function failed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, mark.name])


def test_a_missing_dnnlib_is_one_line(tmp_path, capsys):
    path, mark = _pickle(tmp_path)
    (tmp_path / "empty").mkdir()
    base = ["import", str(path), "-o", str(tmp_path / "x.pb"), "--trust-pickle-code"]
    assert main([*base, "--pickle-code-path", str(tmp_path / "empty")]) == 2
    assert "holds no dnnlib" in capsys.readouterr().err
    assert main(base) == 2  # nothing on sys.path: the subprocess says so
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no dnnlib to import" in err, err
    with pytest.raises(gs.InputError, match="failed: no dnnlib to import"):
        gs.load(path, pickle_options=PickleOptions(trust_code=True))
    assert not mark.exists() and not (tmp_path / "x.pb").exists()



def test_the_subprocess_is_stopped_at_the_timeout(tmp_path, capsys):
    path, mark = _pickle(tmp_path)
    opts = PickleOptions(trust_code=True, code_path=str(_repo(tmp_path)), code_timeout=0.5)
    with pytest.raises(gs.InputError, match=r"ran longer than 0.5 s \(--pickle-code-timeout\)"):
        gs.load(path, pickle_options=opts)
    assert main(["import", str(path), "-o", str(tmp_path / "x.pb"), "--trust-pickle-code",
                 "--pickle-code-timeout", "0"]) == 2
    assert "--pickle-code-timeout 0.0: give seconds > 0" in capsys.readouterr().err
    assert not (tmp_path / "x.pb").exists()
