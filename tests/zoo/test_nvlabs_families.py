"""NVlabs pickles of every zoo family, written by ``graphsurgery.zoo.nvlabs_write``.

A snapshot written from a zoo preset's weights must import (without running anything) to the
preset's own graph: the same nodes and, numerically, PSNR >= 100 dB. Snapshots name their build
functions short, as official ones do (``G_main`` for StyleGAN2 and StyleGAN2-ADA alike, told
apart by the synthesis component or by data; ``G_paper``, ``G_style``); the dotted names
(``training.networks.G_main``) still import. Mismatched variables and unknown kwargs are refused
with one line naming them (exit 2).
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.ir.pickle import PickleOptions, load_pickle, read_pickle
from graphsurgery.testing import assert_equivalent
from graphsurgery.zoo import ada, nvlabs_write, progan, stylegan1, stylegan2

IO = {"inputs": ["latents_in", "labels_in"], "outputs": ["images_out"]}
CONFIGS = {
    "ada-tiny-const-noise": (ada.PRESETS, ada.build_ada),
    "ada-tiny-cond": (ada.PRESETS, ada.build_ada),
    "ada-tiny-fused": (ada.PRESETS, ada.build_ada),
    "progan-tiny": (progan.PRESETS, progan.build_progan),
    "progan-tiny-linear": (progan.PRESETS, progan.build_progan),
    "progan-tiny-nonfused": (progan.PRESETS, progan.build_progan),
    "sg2-tiny-const-noise": (stylegan2.PRESETS, stylegan2.build_gs),
    "sg1-tiny-const-noise": (stylegan1.PRESETS, stylegan1.build_stylegan1),
}


def _zoo_model(name: str):
    """The preset built as a snapshot imports it: stored (constant) noise."""
    presets, build = CONFIGS[name]
    cfg = presets[name]
    if getattr(cfg, "randomize_noise", False):
        cfg = replace(cfg, randomize_noise=False)
    return cfg, build(cfg)


def _nodes(graph: gs.Graph) -> list[tuple[str, str, tuple[str, ...]]]:
    return sorted((n.name, n.op, tuple(n.input)) for n in graph.to_graph_def().node)


def _psnr_at_least_100(a: gs.Graph, b: gs.Graph) -> None:
    for cmp in assert_equivalent(a, b, max_rel=1e-5):
        assert cmp.psnr is None or cmp.psnr >= 100, cmp


# family -> (module, G, synthesis component, D) as the original network.py stores them
NAMES = {"ada": ("training.networks", "G_main", "G_synthesis", "D_main"),
         "progan": ("training.networks_progan", "G_paper", None, "D_paper"),
         "sg2": ("training.networks_stylegan2", "G_main", "G_synthesis_stylegan2", "D_stylegan2"),
         "sg1": ("training.networks_stylegan", "G_style", "G_synthesis", "D_basic")}


def _assert_names(path: Path, family: str, dotted: bool = False) -> None:
    module, g_func, synthesis, d_func = NAMES[family]
    full = (lambda f: f"{module}.{f}") if dotted else (lambda f: f)
    g, d, gs_net = read_pickle(path)
    assert g.build_func_name == gs_net.build_func_name == full(g_func)
    assert d.build_func_name == full(d_func)
    if synthesis is not None:
        assert gs_net.components["synthesis"].build_func_name == full(synthesis)
        assert gs_net.components["mapping"].build_func_name == full("G_mapping")


@pytest.mark.parametrize("name,dotted", [
    ("ada-tiny-const-noise", False), ("ada-tiny-cond", False), ("ada-tiny-fused", False),
    ("progan-tiny", False), ("progan-tiny-linear", False), ("progan-tiny-nonfused", False),
    ("ada-tiny-cond", True), ("progan-tiny", True)])
def test_snapshot_imports_to_the_zoo_graph(tmp_path, name, dotted):
    cfg, model = _zoo_model(name)
    path = nvlabs_write.write_snapshot(model, tmp_path / f"{name}.pkl", dotted=dotted)
    _assert_names(path, name.split("-")[0], dotted)
    graph = gs.load(path)
    zoo_graph = gs.load(model.graph_def, **IO)
    assert _nodes(graph) == _nodes(zoo_graph)
    _psnr_at_least_100(graph, zoo_graph)


def test_v1_v2_snapshots_compute_the_zoo_graph(tmp_path):
    _, v2 = _zoo_model("sg2-tiny-const-noise")
    path = nvlabs_write.write_snapshot(v2, tmp_path / "v2.pkl")
    _assert_names(path, "sg2")
    graph = gs.load(path)
    zoo_graph = gs.load(v2.graph_def, **IO)
    assert _nodes(graph) == _nodes(zoo_graph)
    _psnr_at_least_100(graph, zoo_graph)
    # v1: the zoo applies the mapping gain as an explicit Mul; G_style folds it into the
    # weight scale. The writer scales the mapping biases so the numbers agree all the same.
    _, v1 = _zoo_model("sg1-tiny-const-noise")
    path = nvlabs_write.write_snapshot(v1, tmp_path / "v1.pkl", protocol=2, numpy1=True)
    assert b"numpy.core.multiarray" in path.read_bytes()
    _assert_names(path, "sg1")
    graph = gs.load(path)
    zoo_graph = gs.load(v1.graph_def, **IO)
    ops = Counter(op for _, op, _ in _nodes(graph))
    zoo_ops = Counter(op for _, op, _ in _nodes(zoo_graph))
    gains = v1.meta["config"]["mapping_layers"]  # one Mul and its Const per mapping layer
    assert zoo_ops - ops == Counter({"Mul": gains, "Const": gains}) and not ops - zoo_ops
    _psnr_at_least_100(graph, zoo_graph)


def test_ada_components_and_options(tmp_path):
    cfg, model = _zoo_model("ada-tiny-const-noise")
    path = nvlabs_write.write_snapshot(model, tmp_path / "ada.pkl")
    synthesis = load_pickle(path, PickleOptions(network="synthesis"))
    assert synthesis.inputs == ["G_synthesis/dlatents_in:0"]
    assert not any(n.name.startswith("G_mapping") for n in synthesis.graph_def.node)
    rnd = load_pickle(path, PickleOptions(noise="random", psi=0.7))
    ops = [n.op for n in rnd.graph_def.node]
    assert ops.count("RandomStandardNormal") == cfg.num_layers - 1
    assert rnd.meta["truncation_psi"] == 0.7


def test_ada_pickle_to_clean_tflite(tmp_path, capsys):
    _, model = _zoo_model("ada-tiny-const-noise")
    path = nvlabs_write.write_snapshot(model, tmp_path / "ada.pkl")
    code = main(["run", str(path), "-p", "stylegan-to-tflite", "-o", str(tmp_path / "out"),
                 "--verify"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["audit"]["clean"], summary["audit"]["violations"]
    checked = [v for v in summary["verification"].values() if isinstance(v, dict)]
    assert checked and all(v["psnr"] >= 60 for v in checked), checked


def test_zoo_build_writes_a_snapshot(tmp_path, capsys):
    out = tmp_path / "p.pkl"
    assert main(["zoo", "build", "progan-tiny", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["import", str(out), "-o", str(tmp_path / "p.pb")]) == 0
    assert "Gs (G_paper, ProGAN, network Gs" in capsys.readouterr().out
    assert main(["zoo", "build", "tf2-port-tiny", "-o", str(tmp_path / "t.pkl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no NVlabs pickle form" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.pb", "p.pkl"]


# ------------------------------------------------------------------ mismatches
def _expect_error(path: Path, capsys, *match: str, argv: tuple[str, ...] = ()) -> None:
    out = path.with_suffix(".pb")
    assert main(["import", str(path), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(m in err for m in match), err
    assert not out.exists()


def _parts(name: str):
    cfg, model = _zoo_model(name)
    kind = model.meta["kind"]
    return kind, nvlabs_write.snapshot_values(model), nvlabs_write.static_kwargs(kind, cfg)


def test_ada_mismatches_name_the_variable_or_kwarg(tmp_path, capsys):
    kind, values, kw = _parts("ada-tiny-const-noise")

    def write(name: str, vals: dict, kwargs: dict) -> Path:
        return nvlabs_write.write(tmp_path / name, nvlabs_write.generator(vals, kind, kwargs))

    var = "G_synthesis/16x16/Conv1/noise_strength"
    _expect_error(write("a.pkl", {k: v for k, v in values.items() if k != var}, kw), capsys,
                  f"lacks variable {var}")
    extra = {**values, "lod": np.zeros([], np.float32)}  # ADA's G_main has no lod
    _expect_error(write("b.pkl", extra, kw), capsys, "variable lod is not used")
    shaped = {**values, "G_mapping/Dense1/weight": np.zeros([16, 8], np.float32)}
    _expect_error(write("c.pkl", shaped, kw), capsys,
                  "variable G_mapping/Dense1/weight: shape [16, 8]")
    _expect_error(write("d.pkl", values, {**kw, "use_spectral_norm": True}), capsys,
                  "unknown kwarg use_spectral_norm=True; supported:", "num_fp16_res",
                  "conv_clamp")
    _expect_error(write("e.pkl", values, {**kw, "architecture": "resnet"}), capsys,
                  "architecture='resnet' is not supported")
    # the ADA defaults apply where a kwarg is absent: 8 mapping layers, so Dense2 is missing
    _expect_error(write("f.pkl", values, {k: v for k, v in kw.items()
                                          if k != "mapping_layers"}), capsys,
                  "lacks variable G_mapping/Dense2/weight")


def test_progan_mismatches_and_options(tmp_path, capsys):
    kind, values, kw = _parts("progan-tiny")

    def write(name: str, vals: dict, kwargs: dict) -> Path:
        return nvlabs_write.write(tmp_path / name, nvlabs_write.generator(vals, kind, kwargs))

    _expect_error(write("a.pkl", {k: v for k, v in values.items() if k != "lod"}, kw), capsys,
                  "lacks variable lod")
    extra = {**values, "ToRGB_lod9/weight": np.zeros([1, 1, 16, 3], np.float32)}
    _expect_error(write("b.pkl", extra, kw), capsys, "variable ToRGB_lod9/weight is not used")
    _expect_error(write("c.pkl", values, {**kw, "use_pixelnorm": False}), capsys,
                  "use_pixelnorm=False is not supported")
    _expect_error(write("d.pkl", values, {**kw, "mbstd_group_size": 4}), capsys,
                  "unknown kwarg mbstd_group_size=4; supported:", "fused_scale")
    _expect_error(write("e.pkl", values, {k: v for k, v in kw.items()
                                          if k != "num_channels"}), capsys,
                  "variable ToRGB_lod", "shape [1, 1, 16, 3], the network needs [1, 1, 16, 1]")
    good = write("g.pkl", values, kw)
    _expect_error(good, capsys, "ProGAN's G_paper has no truncation", argv=("--psi", "0.5"))
    # the stored lod selects the level of detail, as in the original
    lod1 = write("h.pkl", {**values, "lod": np.array(1.0, np.float32)}, kw)
    with pytest.raises(AssertionError):
        assert_equivalent(gs.load(lod1), gs.load(good), max_rel=1e-3)


# ------------------------------------------------------------------ G_main: StyleGAN2 or ADA
def _g_main(tmp_path: Path, name: str, file: str, synthesis: str, *, src: str | None = None,
            drop: tuple[str, ...] = (), **extra) -> Path:
    """A snapshot of preset ``name`` whose synthesis component is built by ``synthesis``
    (``""``: no name), ``build_module_src`` ``src``, without the variables ``drop``."""
    kind, values, kw = _parts(name)
    net = nvlabs_write.generator({k: v for k, v in values.items() if k not in drop}, kind,
                                 {**kw, **extra})
    net.state["components"]["synthesis"].state["build_func_name"] = synthesis
    if src is not None:
        for n in (net, *net.state["components"].values()):
            n.state["build_module_src"] = src
    return nvlabs_write.write(tmp_path / file, net)


def test_g_main_with_another_synthesis_component_is_refused(tmp_path, capsys):
    for i, func in enumerate(("G_synthesis_biggan", "training.networks_stylegan.G_synthesis")):
        _expect_error(_g_main(tmp_path, "sg2-tiny-const-noise", f"{i}.pkl", func), capsys,
                      f"(G_main): component synthesis is built by {func}, neither StyleGAN2's "
                      "G_synthesis_stylegan2 nor StyleGAN2-ADA's G_synthesis")


def test_g_main_without_a_synthesis_name_is_told_apart_by_data(tmp_path, capsys):
    # StyleGAN2's own lod variable; ADA's num_fp16_res/conv_clamp kwargs
    for name, file in (("sg2-tiny-const-noise", "v2.pkl"), ("ada-tiny-const-noise", "ada.pkl")):
        graph = gs.load(_g_main(tmp_path, name, file, ""))
        _psnr_at_least_100(graph, gs.load(_zoo_model(name)[1].graph_def, **IO))
    # the module source, read as text (never run: it would raise)
    src = "def G_synthesis_stylegan2(dlatents_in, **_kwargs):\n    raise SystemExit(1)\n"
    path = _g_main(tmp_path, "sg2-tiny-const-noise", "src.pkl", "", src=src, drop=("lod",))
    assert load_pickle(path).meta["pickle_family"] == "StyleGAN2"
    _expect_error(_g_main(tmp_path, "sg2-tiny-const-noise", "none.pkl", "", drop=("lod",)),
                  capsys, "cannot tell StyleGAN2's G_main from StyleGAN2-ADA's: it has no "
                  "synthesis component build function, and no data tells them apart")
    _expect_error(_g_main(tmp_path, "sg2-tiny-const-noise", "both.pkl", "", num_fp16_res=0),
                  capsys, "its data points both ways: StyleGAN2 (variable lod), StyleGAN2-ADA "
                  "(kwarg num_fp16_res)")
    # a hostile, unhashable synthesis_func is data like any other: one line, exit 2
    _expect_error(_g_main(tmp_path, "sg2-tiny-const-noise", "odd.pkl", "", drop=("lod",),
                          synthesis_func=["G_synthesis"]), capsys, "no data tells them apart")


# ------------------------------------------------------------------ verification, file modes
def test_progan_run_verify_feeds_the_zero_size_labels(tmp_path, capsys):
    # G_paper reads its [?, 0] labels_in (concatenated to the latents); the passes drop it,
    # and the reference run of the input graph must still be fed it
    _, model = _zoo_model("progan-tiny")
    path = nvlabs_write.write_snapshot(model, tmp_path / "progan.pkl")
    code = main(["run", str(path), "-p", "stylegan", "-o", str(tmp_path / "out"), "--verify"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["inputs"] == ["latents_in:0"]  # labels_in was dropped
    checked = [v for v in summary["verification"].values() if isinstance(v, dict)]
    assert checked and all(v["psnr"] >= 60 for v in checked), checked


def test_written_snapshots_and_graphs_follow_the_umask(tmp_path, capsys):
    pkl, pb = tmp_path / "p.pkl", tmp_path / "p.pb"
    old = os.umask(0o027)
    try:
        for out in (pkl, pb):
            assert main(["zoo", "build", "progan-tiny", "-o", str(out)]) == 0
        assert stat.S_IMODE(pkl.stat().st_mode) == stat.S_IMODE(pb.stat().st_mode) == 0o640
        os.chmod(pkl, 0o604)  # a file written over keeps its mode
        nvlabs_write.write_snapshot("progan-tiny", pkl)
        assert stat.S_IMODE(pkl.stat().st_mode) == 0o604
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.pb", "p.pkl"]  # no temp files
