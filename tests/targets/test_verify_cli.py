"""``graphsurgery verify MODEL --reference GRAPH``: the audit, then the model against the
reference graph. Core ML on Linux: the audit and a one-line "needs macOS" (exit 4); the
comparison logic with a fake Core ML predictor standing in for macOS (exact: exit 0;
perturbed: the metrics of metrics.compare, exit 3); ONNX runs for real (layout=nhwc undone
through the model's metadata); bad input is one line."""

import json
import sys

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery import zoo
from graphsurgery.cli import main
from graphsurgery.metrics import compare
from graphsurgery.runners import ReferenceRunner

ct = pytest.importorskip("coremltools")


@pytest.fixture(scope="module")
def coreml_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("cm") / "o"
    result = gs.convert(zoo.load("sg2-tiny"), "stylegan-to-coreml", target="coreml", outdir=out)
    assert result.status == 0
    return out


def test_on_linux_the_audit_runs_and_one_line_says_predictions_need_macos(
        coreml_out, capsys, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    code = main(["verify", str(coreml_out / "model.mlpackage"), "--reference",
                 str(coreml_out / "model.pb")])
    cap = capsys.readouterr()
    assert code == 4
    assert "model.mlpackage" in cap.out and "audit clean" in cap.out
    assert cap.err.count("\n") == 1 and "Core ML predictions need macOS" in cap.err


class _FakeMLModel:
    """coremltools.models.MLModel as on macOS: predict() runs the rewritten graph (what
    the package was converted from) in the reference runner, plus ``offset``."""

    offset = 0.0
    graph = None

    def __init__(self, path):
        self._spec = ct.utils.load_spec(path)

    def get_spec(self):
        return self._spec

    def predict(self, feeds):
        assert set(feeds) == {f.name for f in self._spec.description.input}
        with ReferenceRunner(self.graph) as ref:
            outs = ref.run({f"{k}:0": v for k, v in feeds.items()})
        names = [f.name for f in self._spec.description.output]
        return {n: y + self.offset for n, y in zip(names, outs)}


@pytest.mark.parametrize("offset", [0.0, 0.01])
def test_the_comparison_with_a_fake_macos_predictor(offset, coreml_out, capsys, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    fake = type("Fake", (_FakeMLModel,), {"offset": offset,
                                          "graph": gs.load(coreml_out / "model.pb")})
    monkeypatch.setattr(ct.models, "MLModel", fake)
    code = main(["verify", str(coreml_out / "model.mlpackage"), "--reference",
                 str(coreml_out / "model.pb"), "--json"])
    report = json.loads(capsys.readouterr().out)
    cmp = report["verification"]["coreml:images_out:0"]
    if offset == 0:
        assert code == 0 and report["verification"]["ok"] and cmp["max_abs"] == 0
        return
    assert code == 3 and not report["verification"]["ok"]
    # the figures are metrics.compare's on the same arrays
    graph = gs.load(coreml_out / "model.pb")
    feeds = gs.driver.random_feeds(graph, seed=0)
    with ReferenceRunner(graph, noise="seeded", seed=0) as ref:
        expected = ref.run(feeds)[0]
    want = compare(expected, expected + np.float32(offset)).to_json()
    assert cmp["max_abs"] == pytest.approx(want["max_abs"], rel=1e-5)
    assert cmp["psnr"] == pytest.approx(want["psnr"], rel=1e-4)
    assert cmp["ssim"] == pytest.approx(want["ssim"], rel=1e-4)
    capsys.readouterr()
    main(["verify", str(coreml_out / "model.mlpackage"), "--reference",
          str(coreml_out / "model.pb")])
    out = capsys.readouterr().out
    assert "verified coreml:images_out:0: max abs error 0.01, PSNR" in out and "SSIM" in out
    assert "verification FAILED (tolerance 0.001)" in out


def test_an_onnx_model_runs_against_the_original_graph(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    model = gs.save(zoo.load("sg2-tiny"), tmp_path / "g.pb")
    gs.convert(str(model), "stylegan-to-onnx", target="onnx", outdir=tmp_path / "o",
               target_options={"layout": "nhwc"})
    code = main(["verify", str(tmp_path / "o" / "model.onnx"), "--reference", str(model)])
    out = capsys.readouterr().out
    assert code == 0, out
    psnr = float(out.split("verified onnx:images_out:0:")[1].split("PSNR ")[1].split(" dB")[0])
    assert psnr >= 60


@pytest.mark.parametrize("what, says", [
    ("not-a-model", "not a converted model"),
    ("no-reference", "--reference"),
    ("missing", "no such file"),
])
def test_bad_input_is_one_line(what, says, tmp_path, capsys, coreml_out):
    pkg, ref = str(coreml_out / "model.mlpackage"), str(coreml_out / "model.pb")
    argv = {"not-a-model": [ref, "--reference", ref],
            "no-reference": [pkg, "--reference", str(tmp_path / "nope.pb")],
            "missing": [str(tmp_path / "x.onnx"), "--reference", ref]}[what]
    code = main(["verify", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and says in err, err


@pytest.mark.parametrize("mode", ["fp32", "fp16", "dynamic", "int8"])
def test_tflite_quantization_is_read_off_the_tensors(tmp_path, mode):
    """``verify`` holds a quantized .tflite to its mode's floors (as ``run --verify`` does),
    the mode read off the file's tensors; an explicit --tolerance still decides."""
    from graphsurgery.verify_cli import tflite_quantization

    out = tmp_path / "out"
    model = gs.save(zoo.load("sg2-tiny"), tmp_path / "g.pb")
    code = main(["run", str(model), "-p", "stylegan-to-tflite", "-o", str(out),
                 "--quantize", mode, "-q"])
    assert code == 0
    model = out / "model.tflite"
    assert tflite_quantization(model) == (None if mode == "fp32" else mode)
    args = ["verify", str(model), "--reference", str(out / "model.pb")]
    code = main(args)
    assert code == 0
    if mode in ("dynamic", "int8"):  # 8-bit: far above 1e-3 of the range
        assert main([*args, "--tolerance", "1e-3"]) == 3
