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


@pytest.mark.parametrize("name", ["sg2-tiny", "tf2-tiny-savedmodel"])
def test_nhwc_output_has_no_transpose_at_all(tmp_path, name):
    _, _, audit, reference, out = convert(
        name, tmp_path, core__to_nhwc={"output_layout": "NHWC"})
    assert audit.clean and audit.transpose_count == 0
    cmp = compare(reference, np.transpose(out, (0, 3, 1, 2)))
    assert cmp.psnr >= 60, cmp


def _variant(kind: str, **changes):
    """A zoo graph built from a tiny preset config with ``changes``."""
    from dataclasses import replace

    from graphsurgery.ir.io import load
    from graphsurgery.zoo import stylegan1, stylegan2

    if kind == "sg1":
        model = stylegan1.build_stylegan1(replace(stylegan1.PRESETS["sg1-tiny"], **changes))
    else:
        model = stylegan2.build_gs(replace(stylegan2.TINY, **changes))
    return load(model.graph_def, inputs=model.inputs, outputs=model.outputs)


def _prefixed(name: str, prefix: str):
    """Zoo graph ``name`` with every node renamed under ``prefix`` (as the original code's
    ``Network.get_output_for`` scopes a graph built twice)."""
    from graphsurgery.ir.io import load

    model = zoo.build(name)
    gd = type(model.graph_def)()
    gd.CopyFrom(model.graph_def)
    for node in gd.node:
        node.name = prefix + node.name
        node.input[:] = [f"^{prefix}{i[1:]}" if i.startswith("^") else prefix + i
                         for i in node.input]
        for i, loc in enumerate(node.attr["_class"].list.s if "_class" in node.attr else []):
            node.attr["_class"].list.s[i] = loc.replace(b"loc:@", b"loc:@" + prefix.encode())
    return load(gd, inputs=[prefix + i for i in model.inputs],
                outputs=[prefix + o for o in model.outputs])


VARIANTS = {
    # configurations no preset has, each of which once broke or could break a pass
    "sg1 without truncation": lambda: _variant("sg1", truncation_psi=None),
    "sg1 psi on every layer": lambda: _variant("sg1", truncation_cutoff=None),
    "sg1 fixed batch 1": lambda: _variant("sg1", batch=1),
    "sg1 linear, constant noise": lambda: _variant("sg1", structure="linear",
                                                   randomize_noise=False),
    "sg2 grayscale": lambda: _variant("sg2", num_channels=1),
    "sg2 fixed batch 2": lambda: _variant("sg2", batch=2),
    "sg2 orig, custom ops": lambda: _variant("sg2", architecture="orig", impl="cuda"),
    "sg2 resnet, non-fused, custom ops": lambda: _variant(
        "sg2", architecture="resnet", fused_modconv=False, impl="cuda"),
    "sg2 without truncation": lambda: _variant("sg2", truncation_psi=None),
    "sg1 under Gs/_Run/": lambda: _prefixed("sg1-tiny", "Gs/_Run/Gs/"),
    "sg2 custom ops under Gs/_Run/": lambda: _prefixed("sg2-tiny-cuda", "Gs/_Run/Gs/"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_structural_variants(tmp_path, variant):
    """Graphs the way other configurations of the original code freeze them."""
    original = VARIANTS[variant]()
    batch = original.static_shape(original.inputs[0])[0]
    feeds = random_feeds(original, seed=1, batch=batch if batch and batch > 0 else 1)
    with ReferenceRunner(original, noise="seeded", seed=0) as ref:
        (reference,) = ref.run(feeds)
    graph = original.copy()
    gs.Pipeline.preset("stylegan-to-tflite").run(graph)
    path = tmp_path / "model.tflite"
    convert_tflite(graph, path)
    audit = audit_tflite(path)
    assert audit.clean, audit.violations
    assert audit.transpose_count <= 1 and audit.nonconst_weights == []
    with TFLiteRunner(path) as lite:
        (out,) = lite.run(with_seeded_noise(graph, feeds))
    cmp = compare(reference, out)
    assert cmp.rel_max_abs <= 1e-3 and cmp.psnr >= 60, cmp


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


def test_passes_that_infer_shapes_say_so(monkeypatch):
    """``Pass.infers_shapes`` is what lets a pipeline load the shape library while the model
    file is read: every pass of the preset that asks for shapes on the zoo graphs carries
    it, so the marks cannot go stale unnoticed."""
    from graphsurgery.ir.graph import Graph
    from graphsurgery.pipeline import Instrument
    from graphsurgery.registry import get_pass

    current: list[str | None] = [None]
    asked: set[str] = set()
    infer = Graph.infer

    def recording_infer(self, *args, **kwargs):
        if current[0] is not None:
            asked.add(current[0])
        return infer(self, *args, **kwargs)

    class Track(Instrument):
        def before_pass(self, pass_id, graph):
            current[0] = pass_id

        def after_pass(self, record, graph):
            current[0] = None

    monkeypatch.setattr(Graph, "infer", recording_infer)
    for name in ("sg1-tiny", "sg2-tiny", "sg2-tiny-cuda", "tf2-tiny-savedmodel"):
        pipe = gs.Pipeline.preset("stylegan-to-tflite")
        assert pipe.run(zoo.load(name), instruments=[Track()]).ok
    assert len(asked) >= 8
    unmarked = sorted(p for p in asked if not get_pass(p).infers_shapes)
    assert unmarked == []


# StyleGAN2-ADA (families.md): mixed precision, conv_clamp, fp16 overflow guards, labels.
ADA_TINY = ["ada-tiny", "ada-tiny-cond", "ada-tiny-fused", "ada-tiny-const-noise",
            "ada-tiny-cuda", "ada-tiny-fp32", "ada-tiny-stylegan2"]


def _float16_tensors(path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return [d["name"] for d in interp.get_tensor_details() if d["dtype"] == np.float16]


@pytest.mark.parametrize(("name", "noise"), [(n, "const") for n in ADA_TINY]
                         + [("ada-tiny", "input"), ("ada-tiny-cond", "input")])
def test_stylegan2_ada_is_clean_float32_and_faithful(tmp_path, name, noise):
    from graphsurgery.driver import FLOAT16_TOLERANCE, computes_in_float16

    original = zoo.load(name)
    graph, before, audit, reference, out = convert(name, tmp_path, noise=noise)
    assert audit.clean, audit.violations
    assert audit.transpose_count <= 1 and audit.nonconst_weights == []
    assert not computes_in_float16(graph)
    assert not _float16_tensors(tmp_path / f"{name}-{noise}-fp32.tflite")
    after = graph.op_counts()
    assert after.get("Cast", 0) == 0
    # the weight guards fold into the constant filters; the style guards (max |s| of the
    # run-time styles) stay as ABS / REDUCE_MAX / DIV builtins
    assert after.get("Abs", 0) == before.get("Abs", 0) // 2
    # conditional generators keep labels_in as a real input, down to the .tflite
    conditional = zoo.build(name).meta["label_size"] > 0
    assert ("labels_in:0" in [str(t) for t in graph.inputs]) == conditional
    assert ("labels_in" in [i["name"] for i in audit.inputs]) == conditional
    cmp = compare(reference, out)
    if computes_in_float16(original):  # vs a float16 original: its precision (~70 dB)
        assert cmp.psnr >= 60 and cmp.rel_max_abs <= FLOAT16_TOLERANCE, cmp
    else:
        assert cmp.psnr >= 120 and cmp.rel_max_abs <= 1e-5, cmp


def test_conditional_generator_with_only_latents_named_keeps_labels(tmp_path, caplog):
    """``--inputs latents_in`` on a conditional generator: labels_in stays an input (the
    graph cannot run without it) and verification passes at float16's tolerance."""
    model = zoo.build("ada-tiny-cond")
    src = tmp_path / "cond.pb"
    zoo.write(model, src)
    result = gs.convert(src, "stylegan-to-tflite", outdir=tmp_path / "out",
                        inputs=["latents_in"], verify=True)
    assert result.status == 0, result.verification
    assert result.inputs[:2] == ["latents_in:0", "labels_in:0"]
    assert "kept as input" in caplog.text
    ver = result.verification
    assert ver["ok"] and ver["original_precision"] == "float16"
    assert ver["tflite:images_out:0"]["psnr"] >= 60


# ProGAN G_paper (families.md): dense reshaped to NCHW, [N, 0] labels concatenated.
PROGAN_TINY = ["progan-tiny", "progan-tiny-linear", "progan-tiny-nonfused"]


@pytest.mark.parametrize("name", PROGAN_TINY)
def test_progan_is_clean_without_inner_transpose_and_faithful(tmp_path, name):
    graph, before, audit, reference, out = convert(name, tmp_path)
    assert audit.clean, audit.violations
    assert audit.transpose_count == 1  # the NCHW output boundary only
    assert audit.nonconst_weights == [] and audit.max_rank <= 4
    after = graph.op_counts()
    for op in ("Switch", "Merge", "Transpose"):
        assert after.get(op, 0) <= (1 if op == "Transpose" else 0), op
    # the empty labels_in [N, 0] is folded away: one model input
    assert [str(t) for t in graph.inputs] == ["latents_in:0"]
    assert [i["name"] for i in audit.inputs] == ["latents_in"]
    cmp = compare(reference, out)
    assert cmp.psnr >= 120 and cmp.rel_max_abs <= 1e-5, cmp


def test_tf2_port_nhwc_convs_between_transposes_is_clean_and_faithful(tmp_path):
    """A TF2 port in CPU mode: the wrapped convs are unwrapped, the 6-D zero insertion of
    the ToRGB skip path lowers, and the layout pass leaves no transpose inside."""
    graph, before, audit, reference, out = convert("tf2-port-tiny", tmp_path)
    assert before["Transpose"] > 30 and before["Pad"] == 8
    assert audit.clean, audit.violations
    assert audit.transpose_count == 1 and audit.max_rank <= 4
    assert audit.nonconst_weights == []
    # noise + BiasAdd bias: guarded from folding into one [1,H,W,C] constant per layer
    noise_subs = [n for n in graph.nodes("Sub") if graph.is_const(n.data_inputs[1])]
    assert len(noise_subs) == 5
    assert (tmp_path / "tf2-port-tiny-const-fp32.tflite").stat().st_size < 90_000
    cmp = compare(reference, out)
    assert cmp.psnr >= 120 and cmp.rel_max_abs <= 1e-5, cmp
