"""``run --verify --quantize MODE``: the rewritten GraphDef is held to the float32 tolerance,
the quantized ``.tflite`` to what its mode can reach (metrics.quantized_criterion), an
explicit ``--tolerance`` holds both to it; summary.json and the printed lines say which
criterion applied and why."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery import zoo
from graphsurgery.cli import main
from graphsurgery.export import tflite as export_tflite
from graphsurgery.metrics import (
    DEFAULT_TOLERANCE,
    FLOAT16_TOLERANCE,
    Comparison,
    Criterion,
    quantized_criterion,
    verdict,
)

OUT = "images_out:0"


@pytest.fixture(scope="module")
def sg2_tiny(tmp_path_factory):
    """The zoo's tiny StyleGAN2 (16 px) as a frozen .pb."""
    return gs.save(zoo.load("sg2-tiny"), tmp_path_factory.mktemp("sg2") / "sg2-tiny.pb")


def _run(capsys, model, outdir, *args):
    code = main(["run", str(model), "-p", "stylegan-to-tflite", "-o", str(outdir), "-q",
                 "--verify", *args])
    printed = capsys.readouterr().out
    summary = json.loads((outdir / "summary.json").read_text())["verification"]
    return code, summary, printed


def _line(printed, key):
    (line,) = [x for x in printed.splitlines() if x.startswith(f"  verified {key}: ")]
    return line


# ---------------------------------------------------------------------- criteria alone
def test_the_criterion_of_each_mode():
    assert quantized_criterion("tflite", "fp32") is None
    assert quantized_criterion("tflite", None) is None
    fp16 = quantized_criterion("tflite", "fp16")
    assert fp16.tolerance == FLOAT16_TOLERANCE and fp16.min_psnr is None
    weights = [quantized_criterion("tflite", m) for m in ("dynamic", "mobile")]
    weights.append(quantized_criterion("coreml", "int8"))  # 8-bit weights only
    assert {(c.name, c.min_psnr, c.min_ssim, c.tolerance) for c in weights} == {
        ("quantized", 30.0, 0.95, None)}
    full = quantized_criterion("tflite", "int8")
    assert (full.min_psnr, full.min_ssim, full.tolerance) == (25.0, 0.9, None)
    assert full.to_json() == {"name": "quantized", "min_psnr": 25.0, "min_ssim": 0.9,
                              "target": "tflite", "quantize": "int8", "reason": full.reason}


def test_floors_judge_psnr_and_ssim_and_skip_ssim_where_there_is_none():
    floors = Criterion("quantized", "why", min_psnr=30.0, min_ssim=0.95)
    good = Comparison(0.3, 0.01, 2.0, 41.0, 0.99)  # max abs 15% of the range: not judged
    assert floors.accepts(good) and floors.describe() == "PSNR >= 30 dB, SSIM >= 0.95"
    assert floors.failures(Comparison(0.3, 0.01, 2.0, 21.3, 0.72)) == [
        "PSNR 21.3 dB < 30 dB", "SSIM 0.7200 < 0.95"]
    assert floors.accepts(Comparison(0.3, 0.01, 2.0, 41.0, None))  # not an image: PSNR only
    assert floors.failures(Comparison(0.3, 0.01, 2.0, None, None)) == ["PSNR n/a < 30 dB"]
    assert floors.accepts(Comparison(0.0, 0.0, 2.0, float("inf"), 1.0))  # identical
    tol = Criterion("max_abs", "why", tolerance=DEFAULT_TOLERANCE)
    assert tol.failures(good) == ["max abs error 0.15 of range > 0.001"]
    assert not tol.accepts(Comparison(float("nan"), 0.0, 2.0, None, None))  # NaN fails


def test_the_printed_verdict():
    crit = quantized_criterion("tflite", "dynamic").to_json()
    assert verdict({"ok": True, "criterion": crit}) == (
        "ok (tflite --quantize dynamic: PSNR >= 30 dB, SSIM >= 0.95)")
    assert verdict({"ok": False, "criterion": crit, "missed": ["PSNR 12.1 dB < 30 dB"]}) == (
        "FAILED: PSNR 12.1 dB < 30 dB (tflite --quantize dynamic)")
    plain = Criterion("max_abs", "why", tolerance=1e-3).to_json()
    assert verdict({"ok": True, "criterion": plain}) == "ok (max abs error <= 0.001 of range)"
    assert verdict({"max_abs": 0.0}) == ""  # an entry from before criteria were recorded


# ---------------------------------------------------------------------- run --verify
@pytest.mark.parametrize("mode", ["fp16", "dynamic", "int8", "mobile"])
def test_each_quantized_mode_passes_verify_by_its_criterion(sg2_tiny, tmp_path, capsys, mode):
    code, ver, printed = _run(capsys, sg2_tiny, tmp_path / mode, "--quantize", mode)
    graphdef, tfl = ver[f"graphdef:{OUT}"], ver[f"tflite:{OUT}"]
    assert code == 0 and ver["ok"] and graphdef["ok"] and tfl["ok"], printed
    # the rewritten GraphDef: still the float32 tolerance
    assert ver["tolerance"] == DEFAULT_TOLERANCE
    assert graphdef["criterion"]["name"] == "max_abs"
    assert graphdef["criterion"]["tolerance"] == DEFAULT_TOLERANCE
    assert graphdef["rel_max_abs"] < 1e-5
    assert "ok (max abs error <= 0.001 of range)" in _line(printed, f"graphdef:{OUT}")
    # the .tflite: its mode's criterion, recorded with the reason
    assert tfl["criterion"] == quantized_criterion("tflite", mode).to_json()
    assert tfl["criterion"]["quantize"] == mode and mode in tfl["criterion"]["reason"]
    assert f": ok (tflite --quantize {mode}: " in _line(printed, f"tflite:{OUT}")
    if mode == "fp16":
        assert tfl["psnr"] > 65
    else:  # what failed before: no 8-bit model meets 1e-3 of the range
        assert tfl["rel_max_abs"] > 5 * DEFAULT_TOLERANCE
        assert tfl["psnr"] >= tfl["criterion"]["min_psnr"] + 3
        assert tfl["ssim"] >= tfl["criterion"]["min_ssim"]


def _zero_largest_weight(path):
    """Zero, in place, the largest constant buffer of a .tflite (a convolution filter)."""
    from graphsurgery.export._schema import _schema

    data = bytearray(path.read_bytes())
    model = _schema().Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    sizes = {}
    for i in range(graph.TensorsLength()):
        buf = graph.Tensors(i).Buffer()
        sizes[buf] = model.Buffers(buf).DataLength()
    weights = model.Buffers(max(sizes, key=sizes.get)).DataAsNumpy()  # a view into `data`
    assert weights.size > 1000 and np.any(weights)
    weights[:] = 0
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("mode", ["fp16", "mobile", "int8"])
def test_a_broken_quantized_model_still_fails(sg2_tiny, tmp_path, capsys, monkeypatch, mode):
    real = export_tflite.convert_tflite

    def broken(graph, out_path, **options):
        converted = real(graph, out_path, **options)
        _zero_largest_weight(out_path)
        return converted

    monkeypatch.setattr(export_tflite, "convert_tflite", broken)
    code, ver, printed = _run(capsys, sg2_tiny, tmp_path / mode, "--quantize", mode)
    tfl = ver[f"tflite:{OUT}"]
    assert code == 3 and not ver["ok"] and not tfl["ok"]
    assert ver[f"graphdef:{OUT}"]["ok"]  # the GraphDef is right: only the .tflite is broken
    assert tfl["criterion"]["quantize"] == mode
    if mode == "fp16":
        assert tfl["missed"][0].startswith("max abs error ")
    else:
        assert any(m.startswith("PSNR ") for m in tfl["missed"]), tfl
    assert f": FAILED: {tfl['missed'][0]}" in _line(printed, f"tflite:{OUT}")
    assert f"  verification FAILED: tflite:{OUT}" in printed.splitlines()


def test_an_explicit_tolerance_is_honoured(sg2_tiny, tmp_path, capsys):
    code, ver, printed = _run(capsys, sg2_tiny, tmp_path / "strict", "--quantize", "dynamic",
                              "--tolerance", "1e-3")
    tfl = ver[f"tflite:{OUT}"]
    assert code == 3 and not tfl["ok"] and ver[f"graphdef:{OUT}"]["ok"]
    assert tfl["criterion"] == {"name": "max_abs", "tolerance": 1e-3,
                                "reason": "--tolerance 0.001 (given)"}
    assert tfl["missed"] == [f"max abs error {tfl['rel_max_abs']:.3g} of range > 0.001"]
    # a loose one from Python: both results held to it, the .tflite passes by max abs error
    result = gs.convert(str(sg2_tiny), "stylegan-to-tflite", outdir=tmp_path / "loose",
                        verify=True, quantize="dynamic", tolerance=0.05)
    for key in (f"graphdef:{OUT}", f"tflite:{OUT}"):
        entry = result.verification[key]
        assert entry["ok"] and entry["criterion"]["tolerance"] == 0.05, entry
    assert result.status == 0 and result.verification["tolerance"] == 0.05
