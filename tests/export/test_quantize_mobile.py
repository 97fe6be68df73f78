"""``--quantize mobile``: per-channel int8 filters, fp16 for the denses every output needs."""

from __future__ import annotations

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.export.audit import audit_tflite
from graphsurgery.export.mobile import quantize_mobile
from graphsurgery.export.tflite import convert_tflite
from graphsurgery.metrics import compare
from graphsurgery.runners import run_tflite

from . import build, weights


def tiny_generator(t, x, z):
    """A StyleGAN in miniature: a two-layer mapping (z -> w, 64x64 denses) feeds one style
    dense per layer; two 3x3 convolutions (16 -> 32 -> 16) are modulated by the styles and a
    1x1 convolution (48 weights) makes the RGB image."""
    w = z
    for i in range(2):
        w = t.nn.leaky_relu(t.matmul(w, t.constant(weights(64, 64, seed=10 + i)) * 0.3,
                                     name=f"mapping{i}")
                            + t.constant(weights(64, seed=20 + i)), 0.2)
    h = x
    for i, (cin, cout) in enumerate(((16, 32), (32, 16))):
        s = t.matmul(w, t.constant(weights(64, cout, seed=30 + i)), name=f"style{i}") + 1.0
        h = t.nn.conv2d(h, t.constant(weights(3, 3, cin, cout, seed=40 + i) * 2.0), 1, "SAME")
        h = t.nn.leaky_relu(h * t.reshape(s, [-1, 1, 1, cout]), 0.2, name=f"layer{i}")
    return t.nn.conv2d(h, t.constant(weights(1, 1, 16, 3, seed=50)), 1, "SAME", name="out")


@pytest.fixture(scope="module")
def generator():
    return build(tiny_generator, shape=(None, 16, 16, 16), extra_inputs=[("z", (None, 64))])


@pytest.fixture(scope="module")
def models(generator, tmp_path_factory):
    d = tmp_path_factory.mktemp("mobile")
    return (convert_tflite(generator, d / "fp32.tflite"),
            convert_tflite(generator, d / "mobile.tflite", quantize="mobile"))


def _filters(path):
    """(op, filter dtype, number of scales) of every conv and dense, in model order."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    out = []
    for op in it._get_ops_details():  # noqa: SLF001 - the interpreter's own op listing
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            t = tensors[op["inputs"][1]]
            scales = t["quantization_parameters"]["scales"]
            out.append((op["op_name"], np.dtype(t["dtype"]).name, len(scales)))
    return out


def test_mobile_stores_int8_and_fp16_filters_and_stays_close(models):
    fp32, mobile = models
    assert mobile.quantize == "mobile"
    assert mobile.weights["int8"] == 4 and mobile.weights["fp16"] == 2
    assert mobile.weights["kept"] == 1  # the 48-weight 1x1 convolution
    assert sorted(n.split(";")[0] for n in mobile.weights["fp16_ops"]) == ["mapping0", "mapping1"]
    assert mobile.size < 0.55 * fp32.size, (mobile.size, fp32.size)

    before, after = audit_tflite(fp32.path), audit_tflite(mobile.path)
    assert before.clean and after.clean, after.violations
    assert before.ops.get("DEQUANTIZE", 0) == 0 and after.ops["DEQUANTIZE"] == 2
    assert {k: v for k, v in after.ops.items() if k != "DEQUANTIZE"} == before.ops
    assert sorted(_filters(fp32.path)) == sorted(
        [("FULLY_CONNECTED", "float32", 0)] * 4 + [("CONV_2D", "float32", 0)] * 3)
    # the mapping's filters are DEQUANTIZE outputs (float32); the others int8, per channel
    assert sorted(_filters(mobile.path)) == sorted(
        [("FULLY_CONNECTED", "float32", 0)] * 2 + [("FULLY_CONNECTED", "int8", 32),
         ("FULLY_CONNECTED", "int8", 16), ("CONV_2D", "int8", 32), ("CONV_2D", "int8", 16),
         ("CONV_2D", "float32", 0)])

    rng = np.random.default_rng(3)
    ssim = []
    for _ in range(6):
        feeds = [rng.standard_normal((1, 16, 16, 16)).astype(np.float32),
                 rng.standard_normal((1, 64)).astype(np.float32)]
        (ref,) = run_tflite(fp32.path, feeds)
        (got,) = run_tflite(mobile.path, feeds)
        c = compare(ref, got)
        assert c.psnr is not None and c.psnr > 30, c
        ssim.append(c.ssim)
    assert min(ssim) > 0.95, ssim


def test_mobile_in_the_summary(generator, tmp_path):
    result = gs.convert(generator, "generic", target="tflite", outdir=tmp_path / "o",
                        quantize="mobile")
    export = result.to_json()["export"]
    assert export["quantize"] == "mobile"
    assert export["weights"]["int8"] == 4 and export["weights"]["fp16"] == 2


def test_not_a_flatbuffer_is_an_input_error():
    with pytest.raises(gs.InputError, match="TFL3"):
        quantize_mobile(b"not a model at all")


def test_int4_frontier_point_packs_two_weights_a_byte(models):
    fp32, mobile = models
    model, report = quantize_mobile(fp32.path.read_bytes(), int4_convs=1)
    assert (report.int8, report.int4, report.fp16) == (3, 1, 2)
    # the last 3x3 convolution (32 x 3 x 3 x 16 = 4,608 weights) now takes 2,304 bytes
    assert len(model) < mobile.size - 2000, (len(model), mobile.size)
    x = np.random.default_rng(4).standard_normal((1, 16, 16, 16)).astype(np.float32)
    z = np.random.default_rng(5).standard_normal((1, 64)).astype(np.float32)
    (ref,) = run_tflite(fp32.path, [x, z])
    (got,) = run_tflite(model, [x, z])
    assert compare(ref, got).psnr > 20  # runs, and int4 is coarser than the recipe


def test_int4_blocks_runs_denses_and_im2col_convs_in_xnnpack(models):
    """Block-wise int4: the style denses (64 inputs, 2 blocks of 32 per output) and the second
    3x3 convolution (32 input channels) become FULLY_CONNECTED with INT4 filters and fp16
    block scales; the convolution as PAD, 9 SLICEs, 4 CONCATENATIONs and a dense."""
    from ai_edge_litert.interpreter import Interpreter

    fp32, mobile = models
    model, report = quantize_mobile(fp32.path.read_bytes(), int4_blocks=("denses", "convs"))
    assert (report.int8, report.int4_blocks, report.convs_as_fc, report.fp16) == (1, 3, 1, 2)
    assert report.to_json()["int4_blocks"] == 3
    before, after = audit_tflite(mobile.path), audit_tflite(model)
    assert after.clean, after.violations
    assert (before.ops["CONV_2D"], after.ops["CONV_2D"]) == (3, 2)
    assert (before.ops["FULLY_CONNECTED"], after.ops["FULLY_CONNECTED"]) == (4, 5)
    assert (after.ops["PAD"], after.ops["SLICE"], after.ops["CONCATENATION"]) == (1, 9, 4)
    # 12,288 filter values: 6,912 bytes less, less the new ops' and tensors' metadata
    assert len(model) < mobile.size - 800, (len(model), mobile.size)

    it = Interpreter(model_content=model, num_threads=2)
    it.allocate_tensors()
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    filters = [tensors[op["inputs"][1]] for op in it._get_ops_details()  # noqa: SLF001
               if op["op_name"] == "FULLY_CONNECTED"]
    # LiteRT lists INT4 filters as int8, with their block scales (one per 32 values)
    blocks = sorted((tuple(t["shape"]), t["quantization_parameters"]["scales"].size)
                    for t in filters if np.dtype(t["dtype"]) == np.int8)
    assert blocks == [((16, 64), 32), ((16, 288), 144), ((32, 64), 64)]
    # XNNPACK takes every op: one delegate node runs the whole graph
    assert [op["op_name"] for op in it._get_ops_details()].count("DELEGATE") == 1  # noqa: SLF001

    rng = np.random.default_rng(7)
    for _ in range(3):
        feeds = [rng.standard_normal((1, 16, 16, 16)).astype(np.float32),
                 rng.standard_normal((1, 64)).astype(np.float32)]
        (ref,) = run_tflite(fp32.path, feeds)
        (got,) = run_tflite(model, feeds)
        assert compare(ref, got).psnr > 20  # 4-bit: coarser than int8, far from noise


def test_int4_blocks_rejects_unknown_groups(models):
    with pytest.raises(gs.UsageError, match="int4_blocks"):
        quantize_mobile(models[0].path.read_bytes(), int4_blocks=("mapping",))


def test_int4_blocks_calibrated_rounding_beats_nearest(models):
    """GPTQ against 16 seeded runs of the fp32 model: closer to it on other inputs than
    rounding every 4-bit weight to its nearest level (about 2 dB here)."""
    fp32 = models[0].path.read_bytes()
    groups = ("denses", "convs")
    nearest, _ = quantize_mobile(fp32, int4_blocks=groups)
    gptq, report = quantize_mobile(fp32, int4_blocks=groups, calibration=16)
    assert report.int4_blocks == 3 and len(gptq) == len(nearest)
    rng = np.random.default_rng(7)  # not the calibration seeds (10,000 on)
    gain = []
    for _ in range(4):
        feeds = [rng.standard_normal((1, 16, 16, 16)).astype(np.float32),
                 rng.standard_normal((1, 64)).astype(np.float32)]
        (ref,) = run_tflite(fp32, feeds)
        gain.append(compare(ref, run_tflite(gptq, feeds)[0]).psnr
                    - compare(ref, run_tflite(nearest, feeds)[0]).psnr)
    assert min(gain) > 0.5 and np.mean(gain) > 1.0, gain


def test_mobile_int4_mode_in_the_summary_and_verified(generator, tmp_path):
    """``--quantize mobile-int4``: the 32-channel 3x3 convolution (16x16 outputs) goes to
    block-wise int4 by GPTQ, every other filter (the mapping too) to int8; --verify holds
    it to the mode's image-quality floors."""
    result = gs.convert(generator, "generic", target="tflite", outdir=tmp_path / "o",
                        quantize="mobile-int4", verify=True)
    export = result.to_json()["export"]
    assert export["quantize"] == "mobile-int4"
    w = export["weights"]
    assert (w["int8"], w["fp16"], w["int4_blocks"], w["convs_as_fc"]) == (5, 0, 1, 1)
    check = result.verification["tflite:out:0"]
    assert result.verification["ok"] and check["criterion"]["quantize"] == "mobile-int4"
    assert check["psnr"] > 30 and check["ssim"] > 0.95, check


def test_int4_blocks_keep_the_bottleneck_denses_at_8_bits(models):
    """``denses`` never takes the mapping (the denses every output depends on): fp16 by
    default, int8 with bottleneck_fp16=False, as the mapping in 4 bits costs the most."""
    fp32 = models[0].path.read_bytes()
    _, report = quantize_mobile(fp32, int4_blocks=("denses",), bottleneck_fp16=False)
    assert (report.int4_blocks, report.int8, report.fp16, report.convs_as_fc) == (2, 4, 0, 0)


def test_mobile_modes_build_for_size_and_the_user_set_wins(tmp_path):
    """``--quantize mobile`` turns off the rewrites that store more weights for speed
    (:data:`graphsurgery.targets.tflite.SIZE_FIRST`); ``--set`` still wins."""
    from graphsurgery import zoo

    graph = zoo.load("sg1-tiny")

    def changed(**kw):
        res = gs.convert(graph, "stylegan-to-tflite", target="tflite",
                         outdir=tmp_path / str(len(list(tmp_path.iterdir()))), **kw)
        return res, {r.pass_id for r in res.records if r.changed}

    _, fast_changed = changed()
    small, small_changed = changed(quantize="mobile")
    assert "core::upsample_conv_phases" in fast_changed
    assert "core::upsample_conv_phases" not in small_changed
    assert "core::upsample_conv_phases(max_factor=1)" in small.pipeline
    _, forced = changed(quantize="mobile", overrides=["core::upsample_conv_phases.max_factor=2"])
    assert "core::upsample_conv_phases" in forced
