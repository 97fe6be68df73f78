"""The stylegan-to-tflite preset on every zoo variant: TFLite-clean and faithful.

Each case runs the preset, converts with builtin ops only, audits the .tflite against every
rule of targets.md, runs it in LiteRT and compares it with the reference runner on the
original graph, fed the same latents and the same noise.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery import zoo
from graphsurgery.export import audit_tflite, convert_tflite
from graphsurgery.metrics import compare
from graphsurgery.reference import noise_index, with_seeded_noise
from graphsurgery.runners import ReferenceRunner, TFLiteRunner
from graphsurgery.testing import random_feeds

TINY = [
    "sg1-tiny", "sg1-tiny-linear", "sg1-tiny-const-noise", "sg1-tiny-fused",
    "sg2-tiny", "sg2-tiny-orig", "sg2-tiny-resnet", "sg2-tiny-nonfused", "sg2-tiny-cuda",
    "sg2-tiny-const-noise", "tf2-tiny-savedmodel",
]


@functools.cache
def _reference(name: str, batch: int = 1) -> tuple[dict, np.ndarray]:
    original = zoo.load(name)
    feeds = random_feeds(original, seed=1, batch=batch)
    with ReferenceRunner(original, noise="seeded", seed=0) as ref:
        return feeds, ref.run(feeds)[0]


def convert(name, tmp_path, *, noise="const", quantize="fp32", batch=1, **options):
    graph = zoo.load(name)
    ops_before = graph.op_counts()
    pipeline = gs.Pipeline.preset("stylegan-to-tflite")
    pipeline.set_options("stylegan::noise", mode=noise)
    pipeline.set_options("core::set_batch", size=batch)
    for pass_id, opts in options.items():
        pipeline.set_options(pass_id.replace("__", "::"), **opts)
    pipeline.run(graph)
    path = tmp_path / f"{name}-{noise}-{quantize}.tflite"
    convert_tflite(graph, path, quantize=quantize)
    feeds, reference = _reference(name, batch)
    with TFLiteRunner(path) as lite:
        (out,) = lite.run(with_seeded_noise(graph, feeds))
    return graph, ops_before, audit_tflite(path), reference, out


@pytest.mark.parametrize("noise", ["const", "input"])
@pytest.mark.parametrize("name", TINY)
def test_tiny_variants_are_clean_and_faithful(tmp_path, name, noise):
    graph, before, audit, reference, out = convert(name, tmp_path, noise=noise)
    assert audit.clean, audit.violations
    assert audit.subgraphs == 1 and audit.flex_count == 0 and audit.custom_count == 0
    assert audit.random_count == 0 and audit.max_rank <= 4
    assert audit.nonconst_weights == []
    assert audit.transpose_count <= 1  # the NCHW output boundary only
    # what the original graph had and the result does not
    after = graph.op_counts()
    for op in ("Switch", "Merge", "RandomStandardNormal", "Assign", "FusedBiasAct", "UpFirDn2D",
               "IdentityN"):
        assert after.get(op, 0) == 0, op
    assert sum(before.values()) > 2 * sum(after.values())
    if noise == "input":
        n_random = before.get("RandomStandardNormal", 0)
        assert sum(noise_index(t.node) is not None for t in graph.inputs) == n_random
    cmp = compare(reference, out)
    assert cmp.rel_max_abs <= 1e-3 and cmp.psnr >= 60, cmp


def test_nhwc_output_has_no_transpose_at_all(tmp_path):
    _, _, audit, reference, out = convert(
        "sg2-tiny", tmp_path, core__to_nhwc={"output_layout": "NHWC"})
    assert audit.clean and audit.transpose_count == 0
    cmp = compare(reference, np.transpose(out, (0, 3, 1, 2)))
    assert cmp.psnr >= 60, cmp


@pytest.mark.parametrize("name", ["sg2-tiny", "sg2-tiny-cuda"])
def test_batch_2_keeps_the_batch_out_of_the_channels(tmp_path, name):
    """With a batch of 2 the fused up-sampling conv folds the batch into its channels and
    its FIR filter runs on the folded tensor; in NHWC that fold would be a TRANSPOSE."""
    graph, _, audit, reference, out = convert(name, tmp_path, batch=2)
    assert audit.clean, audit.violations
    assert audit.transpose_count == 1  # the NCHW output boundary only
    assert {graph.shape(d.data_inputs[0])[0] for d in graph.nodes("DepthwiseConv2dNative")} == {2}
    assert reference.shape[0] == 2
    cmp = compare(reference, out)
    assert cmp.rel_max_abs <= 1e-3 and cmp.psnr >= 60, cmp


def test_uint8_output(tmp_path):
    _, _, audit, reference, out = convert(
        "sg1-tiny", tmp_path, core__output_format={"format": "uint8"})
    assert audit.clean and out.dtype == np.uint8
    expected = np.clip(np.floor(reference * 127.5 + 127.5 + 0.5), 0, 255)
    assert np.abs(out.astype(np.int32) - expected).max() <= 1


@pytest.mark.parametrize(("quantize", "metric", "bound"),
                         [("fp16", "psnr", 40.0), ("dynamic", "ssim", 0.95)])
@pytest.mark.parametrize("name", ["sg1-tiny", "sg2-tiny"])
def test_quantized_fidelity(tmp_path, name, quantize, metric, bound):
    _, _, audit, reference, out = convert(name, tmp_path, quantize=quantize)
    assert audit.clean, audit.violations
    assert getattr(compare(reference, out), metric) >= bound


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sg1-256", "sg2-256-cuda"])
def test_256px(tmp_path, name):
    _, _, audit, reference, out = convert(name, tmp_path)
    assert audit.clean, audit.violations
    cmp = compare(reference, out)
    assert cmp.rel_max_abs <= 1e-3 and cmp.psnr >= 60, cmp


def test_full_int8_keeps_the_boundary_transpose_at_the_boundary(tmp_path):
    """The converter wraps an int8 model's outputs in DEQUANTIZE; the NCHW boundary
    TRANSPOSE before it is still the last real op."""
    _, _, audit, reference, out = convert("sg2-tiny", tmp_path, quantize="int8")
    assert audit.clean, audit.violations
    assert audit.transpose_count == 1 and len(audit.boundary_transposes) == 1
    assert out.shape == reference.shape
