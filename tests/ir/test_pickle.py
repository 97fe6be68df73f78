"""NVlabs pickles: read as data by a restricted unpickler, the generator rebuilt from weights.

Fixtures are NVlabs-format pickles written from zoo graphs' weights (``nvlabs_fixtures``);
the imported graph must equal the zoo graph built with the same weights, node for node and
numerically. Hostile pickles must be refused with one line, exit 2, nothing run or written.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.ir.pickle import PickleOptions, load_pickle, read_pickle
from graphsurgery.testing import assert_equivalent
from graphsurgery.zoo import stylegan1, stylegan2

from . import nvlabs_fixtures as fx

V2_KW = dict(resolution=16, fmap_base=64, fmap_max=16, latent_size=16, dlatent_size=16,
             mapping_layers=2, mapping_fmaps=16, num_channels=3, label_size=0)
V1_KW = dict(resolution=32, fmap_base=64, fmap_max=16, latent_size=16, dlatent_size=16,
             mapping_layers=3, mapping_fmaps=16, num_channels=3, label_size=0)


def _v2(preset: str) -> tuple[stylegan2.StyleGAN2Config, dict, dict]:
    cfg = replace(stylegan2.PRESETS[preset], randomize_noise=False)
    model = stylegan2.build_gs(cfg)
    values = fx.frozen_values(model.graph_def, model.meta["variables"])
    values["lod"] = np.zeros([], np.float32)  # G_main's own lod, as in real pickles
    kw = {**V2_KW, "architecture": cfg.architecture, "truncation_psi_val": cfg.truncation_psi,
          "truncation_cutoff_val": cfg.truncation_cutoff}
    return cfg, values, kw


def _write_v2(tmp_path: Path, preset: str = "sg2-tiny", protocol: int = 4,
              dotted: bool = False, **extra):
    cfg, values, kw = _v2(preset)
    kw.update(extra)
    gs_net = fx.generator(values, "v2", kw, "Gs", dotted)
    g_net = fx.generator({k: v * 2 for k, v in values.items()}, "v2", kw, "G", dotted)
    path = fx.write(tmp_path / ("dotted.pkl" if dotted else "snapshot.pkl"),
                    (g_net, fx.discriminator("v2", dotted), gs_net), protocol=protocol)
    return path, cfg, values


def _same_graph(a: gs.Graph, b: gs.Graph) -> None:
    """Same nodes (names, ops, inputs) and the same outputs, PSNR >= 100 dB."""
    sig = lambda g: sorted((n.name, n.op, tuple(n.input)) for n in g.to_graph_def().node)  # noqa: E731
    assert sig(a) == sig(b)
    for cmp in assert_equivalent(a, b, max_rel=1e-6):
        assert cmp.psnr is None or cmp.psnr >= 100, cmp


@pytest.mark.parametrize("preset,protocol", [("sg2-tiny", 4), ("sg2-tiny-orig", 5),
                                             ("sg2-tiny-resnet", 3)])
def test_v2_pickle_imports_to_the_zoo_graph(tmp_path, preset, protocol):
    path, cfg, values = _write_v2(tmp_path, preset, protocol)
    graph = gs.load(path)
    assert [r.node for r in graph.inputs] == ["latents_in", "labels_in"]
    zoo_graph = gs.load(stylegan2.build_gs(cfg, values).graph_def,
                        inputs=["latents_in", "labels_in"], outputs=["images_out"])
    _same_graph(graph, zoo_graph)
    # and it is the zoo preset's own graph (built from its random weights, not from ours)
    preset_graph = gs.load(stylegan2.build_gs(cfg).graph_def,
                           inputs=["latents_in", "labels_in"], outputs=["images_out"])
    _same_graph(graph, preset_graph)


def _write_v1(tmp_path: Path, dotted: bool = False):
    cfg = replace(stylegan1.PRESETS["sg1-tiny-const-noise"], explicit_mapping_gain=False)
    model = stylegan1.build_stylegan1(cfg)
    values = fx.frozen_values(model.graph_def, model.meta["variables"])
    kw = {**V1_KW, "truncation_psi_val": 0.7, "truncation_cutoff_val": 8}
    net = fx.generator(values, "v1", kw, "Gs", dotted)
    path = fx.write(tmp_path / ("v1-dotted.pkl" if dotted else "v1.pkl"),
                    (fx.generator(values, "v1", kw, "G", dotted), fx.discriminator("v1", dotted),
                     net), protocol=2, numpy1=True)
    return path, cfg, model


def test_v1_pickle_numpy1_protocol2_imports_to_the_zoo_graph(tmp_path):
    path, cfg, model = _write_v1(tmp_path)
    assert b"numpy.core.multiarray" in path.read_bytes()
    gs_net = read_pickle(path)[2]  # short build function names, as official snapshots store
    assert (gs_net.build_func_name, gs_net.components["synthesis"].build_func_name,
            gs_net.components["mapping"].build_func_name) == ("G_style", "G_synthesis",
                                                              "G_mapping")
    graph = gs.load(path)
    zoo_graph = gs.load(model.graph_def, inputs=["latents_in", "labels_in"],
                        outputs=["images_out"])
    _same_graph(graph, zoo_graph)
    # The original G_style applies the mapping gain inside the weight scale: without it
    # (the zoo's default explicit gain) the graph differs, so the test can tell them apart.
    other = stylegan1.build_stylegan1(replace(cfg, explicit_mapping_gain=True))
    assert len(other.graph_def.node) != len(model.graph_def.node)


def test_options_network_truncation_noise_components(tmp_path):
    path, cfg, values = _write_v2(tmp_path)
    gs_model = load_pickle(path)
    g_model = load_pickle(path, PickleOptions(network="G"))
    assert gs_model.meta["pickle_network"] == "Gs" and g_model.meta["pickle_network"] == "G"
    assert gs_model.meta["truncation_psi"] == 0.5 and gs_model.meta["truncation_cutoff"] == 4
    psi = load_pickle(path, PickleOptions(psi=0.7)).meta
    assert (psi["truncation_psi"], psi["truncation_cutoff"]) == (0.7, None)
    rnd = load_pickle(path, PickleOptions(noise="random"))
    ops = [n.op for n in rnd.graph_def.node]
    assert ops.count("RandomStandardNormal") == cfg.num_layers - 1
    mapping = load_pickle(path, PickleOptions(network="mapping"))
    assert mapping.outputs == ["G_mapping/dlatents_out:0"]
    assert not any(n.name.startswith("G_synthesis") for n in mapping.graph_def.node)
    synthesis = load_pickle(path, PickleOptions(network="synthesis"))
    assert synthesis.inputs == ["G_synthesis/dlatents_in:0"]
    assert not any(n.name.startswith("G_mapping") for n in synthesis.graph_def.node)
    # numbers: G's weights are twice Gs's, so its images differ
    a = gs.load(path)
    with pytest.raises(AssertionError):
        assert_equivalent(a, gs.load(g_model.graph_def, inputs=["latents_in", "labels_in"],
                                     outputs=["images_out"]), max_rel=1e-3)


def test_import_command_writes_the_frozen_graph(tmp_path, capsys):
    path, cfg, values = _write_v2(tmp_path)
    out = tmp_path / "frozen.pb"
    assert main(["import", str(path), "-o", str(out), "--psi", "0.5", "--cutoff", "4"]) == 0
    assert "Gs (G_main, StyleGAN2, network Gs" in capsys.readouterr().out
    _same_graph(gs.load(out, outputs=["images_out"]), gs.load(path))
    assert main(["import", str(path), "-o", str(out), "--trust-pickle-code"]) == 2
    assert "no dnnlib to import" in capsys.readouterr().err  # opt-in: tests/ir/test_pickle_trusted


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_pickle_to_clean_tflite(tmp_path, capsys, kind):
    path = (_write_v1 if kind == "v1" else _write_v2)(tmp_path)[0]
    code = main(["run", str(path), "-p", "stylegan-to-tflite", "-o", str(tmp_path / "out"),
                 "--verify"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["audit"]["clean"], summary["audit"]["violations"]
    checked = [v for v in summary["verification"].values() if isinstance(v, dict)]
    assert checked and all(v["psnr"] >= 60 for v in checked), checked


# ------------------------------------------------------------------ mismatches
def _expect_error(path: Path, capsys, match: str) -> str:
    assert main(["import", str(path), "-o", str(path.with_suffix(".pb"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err
    assert not path.with_suffix(".pb").exists()
    return err


def test_variable_mismatches_name_the_variable(tmp_path, capsys):
    cfg, values, kw = _v2("sg2-tiny")
    missing = {k: v for k, v in values.items() if k != "G_synthesis/8x8/Conv1/mod_bias"}
    fx.write(tmp_path / "a.pkl", fx.generator(missing, "v2", kw))
    _expect_error(tmp_path / "a.pkl", capsys, "lacks variable G_synthesis/8x8/Conv1/mod_bias")
    extra = {**values, "G_synthesis/32x32/Conv1/weight": np.zeros([3, 3, 4, 4], np.float32)}
    fx.write(tmp_path / "b.pkl", fx.generator(extra, "v2", kw))
    _expect_error(tmp_path / "b.pkl", capsys, "variable G_synthesis/32x32/Conv1/weight is not used")
    shaped = {**values, "G_mapping/Dense1/bias": np.zeros([7], np.float32)}
    fx.write(tmp_path / "c.pkl", fx.generator(shaped, "v2", kw))
    _expect_error(tmp_path / "c.pkl", capsys, "variable G_mapping/Dense1/bias: shape [7]")
    fx.write(tmp_path / "d.pkl", fx.generator(values, "v2", {**kw, "num_fp16_res": 4}))
    err = _expect_error(tmp_path / "d.pkl", capsys, "unknown kwarg num_fp16_res=4; supported:")
    assert "fmap_base" in err
    fx.write(tmp_path / "e.pkl", fx.generator(values, "v2", {**kw, "label_size": 10}))
    _expect_error(tmp_path / "e.pkl", capsys, "label_size=10 is not supported")


def test_dotted_build_function_names_still_import(tmp_path):
    short, _, _ = _write_v2(tmp_path)
    dotted, _, _ = _write_v2(tmp_path, dotted=True)
    assert read_pickle(dotted)[2].build_func_name == "training.networks_stylegan2.G_main"
    assert read_pickle(short)[2].build_func_name == "G_main"
    _same_graph(gs.load(dotted), gs.load(short))
    v1_path, _, v1 = _write_v1(tmp_path, dotted=True)
    assert read_pickle(v1_path)[2].build_func_name == "training.networks_stylegan.G_style"
    _same_graph(gs.load(v1_path), gs.load(v1.graph_def, inputs=["latents_in", "labels_in"],
                                          outputs=["images_out"]))


def test_unknown_build_function_lists_the_supported_ones(tmp_path, capsys):
    net = fx.network("Gs", "training.networks_biggan.G_main", {}, {})
    fx.write(tmp_path / "p.pkl", net)
    err = _expect_error(tmp_path / "p.pkl", capsys, "training.networks_biggan.G_main")
    assert "--trust-pickle-code" in err
    # the short form real pickles store, with the families they stand for
    assert ("supported: G_main (StyleGAN2 or StyleGAN2-ADA), G_paper (ProGAN), "
            "G_style (StyleGAN));") in err, err
    assert "training.networks_stylegan" not in err and "training.networks." not in err
    fx.write(tmp_path / "q.pkl", fx.network("Gs", "G_biggan", {}, {}))
    _expect_error(tmp_path / "q.pkl", capsys, "is built by G_biggan, which graphsurgery cannot")


# ------------------------------------------------------------------ hostile pickles
class _System:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        import os

        return (os.system, (self.cmd,))


class _Write:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class Unknown:
    pass


def _hostile(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    flag = tmp_path / "pwned"
    objs = {
        "system": (fx.network("Gs", fx.V2 + ".G_main", {"x": _System(f"touch {flag}")}, {}),
                   "refuses global posix.system: graphsurgery never runs code from a pickle"),
        "write": ([_Write(str(flag))], "refuses global io.open"),
        "unknown": ((Unknown(),), f"refuses global {Unknown.__module__}.Unknown:"),
        "object-array": (np.array([1, "a"], dtype=object), "refuses a numpy object array"),
    }
    out = {}
    for key, (obj, msg) in objs.items():
        with fx.nvlabs_modules():
            out[key] = (pickle.dumps(obj, protocol=4), msg)
    good = pickle.dumps(np.zeros(1000, np.float32), protocol=4)
    out["truncated"] = (good[: len(good) // 2], "not a readable pickle (truncated or corrupt")
    out["not-a-pickle"] = (b"PK\x03\x04 a zip file", "not a pickle of protocol 2 to 5")
    out["empty"] = (b"", "not a pickle of protocol 2 to 5")
    return out


@pytest.mark.parametrize("case", ["system", "write", "unknown", "object-array", "truncated",
                                  "not-a-pickle", "empty"])
def test_hostile_pickles_are_refused_and_nothing_runs(tmp_path, capsys, case):
    data, msg = _hostile(tmp_path)[case]
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv in (["import", str(path), "-o", str(tmp_path / "x.pb")],
                 ["run", str(path), "-p", "stylegan-to-tflite", "-o", str(tmp_path / "o")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err and "Traceback" not in err, err
    with pytest.raises(gs.InputError, match="evil.pkl: "):
        gs.load(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing run, nothing written


def test_build_on_a_stand_in_cannot_set_attributes(tmp_path):
    # GLOBAL numpy.ndarray, then BUILD with a slot-state dict: would set an attribute
    data = (b"\x80\x04\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94N}\x94\x8c\x01a\x94K\x01s"
            b"\x86\x94b.")
    path = tmp_path / "b.pkl"
    path.write_bytes(data)
    with pytest.raises(gs.InputError, match="refuses setting attribute 'a'"):
        read_pickle(path)
