"""NVlabs ``.pkl`` inputs with ``--target onnx`` and ``--target coreml``: a tiny v2 pickle
(written by the NVlabs fixture writer from sg2-tiny's weights) read as data and converted
to a clean model.onnx matching the reference, and to a clean model.mlpackage."""

import json
from dataclasses import replace

import numpy as np
import pytest
from ir import nvlabs_fixtures as fx  # tests/ir: the NVlabs pickle writer

from graphsurgery.cli import main
from graphsurgery.zoo import stylegan2

KW = dict(resolution=16, fmap_base=64, fmap_max=16, latent_size=16, dlatent_size=16,
          mapping_layers=2, mapping_fmaps=16, num_channels=3, label_size=0)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    cfg = replace(stylegan2.PRESETS["sg2-tiny"], randomize_noise=False)
    model = stylegan2.build_gs(cfg)
    values = fx.frozen_values(model.graph_def, model.meta["variables"])
    values["lod"] = np.zeros([], np.float32)
    kw = {**KW, "architecture": cfg.architecture, "truncation_psi_val": cfg.truncation_psi,
          "truncation_cutoff_val": cfg.truncation_cutoff}
    nets = (fx.generator(values, "v2", kw, "G"), fx.discriminator("v2"),
            fx.generator(values, "v2", kw, "Gs"))
    return fx.write(tmp_path_factory.mktemp("pkl") / "snapshot.pkl", nets)


def _run(snapshot, out, target, capsys, *extra):
    before = snapshot.read_bytes()
    code = main(["run", str(snapshot), "-p", f"stylegan-to-{target}", "--target", target,
                 "-o", str(out), *extra])
    assert code == 0, capsys.readouterr().err
    assert snapshot.read_bytes() == before  # the input is never modified
    return json.loads((out / "summary.json").read_text())


def test_pickle_to_clean_onnx_matching_the_reference(snapshot, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    summary = _run(snapshot, tmp_path / "o", "onnx", capsys, "--verify")
    audit = summary["audit"]
    assert audit["clean"], audit["violations"]
    assert "Transpose" not in audit["ops"] and audit["ops"]["Conv"] >= 1
    assert not {"FusedBiasAct", "UpFirDn2D"} & set(summary["ops_after"])
    cmp = summary["verification"]["onnx:images_out:0"]
    assert summary["verification"]["ok"] and cmp["psnr"] >= 60, cmp


def test_pickle_to_clean_mlpackage(snapshot, tmp_path, capsys):
    pytest.importorskip("coremltools")
    summary = _run(snapshot, tmp_path / "o", "coreml", capsys, "--verify")
    audit = summary["audit"]
    assert audit["clean"] and audit["model_type"] == "mlProgram", audit["violations"]
    assert audit["ops"]["conv"] >= 1 and not any(op.startswith("custom") for op in audit["ops"])
    assert summary["verification"]["ok"]  # the rewritten GraphDef against the pickle's graph
