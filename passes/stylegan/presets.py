"""StyleGAN's pipeline presets: ``stylegan`` (any target), ``stylegan-to-tflite``,
``stylegan-to-onnx`` and ``stylegan-to-coreml`` (each target's ``extend`` of ``stylegan``)."""

from __future__ import annotations

from typing import Any

from graphsurgery.pipeline import register_pipeline

from . import custom_ops  # noqa: F401  (the custom ops the preset lowers)


@register_pipeline("stylegan", "frozen StyleGAN / StyleGAN2 (reference or custom ops) / TF2 "
                   "generator -> builtin ops, NHWC, rank <= 4, constant filters (any target)")
def stylegan() -> str:
    return ",".join([
        # 1. Make the graph importable and pick the progressive-growing level before any
        #    folding: lod decides which Switch branches live.
        "core::strip_training",
        #    Mixed-precision graphs (StyleGAN2-ADA's float16 blocks) become float32 before
        #    anything looks for structure: the casts to half and back would hide it, and
        #    the float32 graph is the faithful one (float16 is a quantization choice).
        "core::upcast_float16",
        # 2. Choices about what the model computes come first, while the structure they
        #    look for is intact: folding the control flow for lod 0 removes the lower
        #    resolutions' ToRGB layers that pruning cuts to, and truncation must be set
        #    before split separates the mapping from the synthesis.
        "stylegan::prune_resolution",
        "stylegan::truncation",
        "stylegan::split",
        "stylegan::set_lod",
        # 3. A fixed batch turns shape arithmetic (Shape(x)[0] -> noise shapes, tiling of
        #    the learned constant) into constants.
        "core::set_batch",
        "core::fold_shapes",
        #    Zero-size operands (labels_in [N, 0] concatenated to the latent) go, so the
        #    empty input is pruned at the end.
        "core::drop_empty_concat",
        "core::fold_switch_merge",
        "core::remove_identity",
        # 4. Noise becomes a constant (or a named input) before folding, so noise * weight
        #    folds where it does not grow the model.
        "stylegan::noise",
        "core::canonicalize",
        #    TF2 ports run NCHW convolutions as NHWC ones between transposes: written back
        #    as NCHW ops (shapes are constants by now), the structures below are found.
        "core::unwrap_nhwc",
        # 5. Custom ops and the reference upfirdn2d chains become rank <= 4 builtins; the
        #    ref chain must be raised before anything else touches its 6-D pads.
        "stylegan::lower_fused_bias_act",
        "stylegan::raise_upfirdn2d_ref",
        "stylegan::lower_upfirdn2d",
        # 6. Run-time convolution weights become constant filters with per-channel scales.
        "stylegan::unfuse_modconv",
        # 7. The remaining rank > 4 tensors (v1's 6-D upscale and 5-D styles).
        "stylegan::lower_upscale_6d",
        "stylegan::lower_style_5d",
        "core::canonicalize",
        # 8. Output format, then layout last: every op the layout pass converts exists by
        #    now (the uint8 conversion included, so the boundary Transpose is the very last
        #    op), and nothing after it introduces NCHW again.
        "core::output_format",
        "core::to_nhwc",
        #    Nearest up-sampling + 3x3 conv (v1 below 128 px, ProGAN fused_scale=False) as
        #    four 2x2 phase convs on the low-resolution input: 16/36 of the multiplies,
        #    about 1.4x faster end to end in LiteRT (needs NHWC: a no-op for NCHW targets).
        "core::upsample_conv_phases",
        #    The bias after interleaved phase convs (these and the target's polyphase
        #    transposed convs) onto each conv, where the converter fuses it.
        "core::bias_into_phases",
        #    Stride-1 SAME 3x3 convs with constant filters, wide enough to pay (128-512
        #    channels, sizes in the pass's options), as Winograd F(2x2,3x3): 16/36 of the
        #    multiplies in 1x1 convs between depthwise/add transforms, 1.13-1.38x end to
        #    end in LiteRT. After the phase passes: their 2x2 convs are left alone, the
        #    union-kernel 3x3 of tflite::polyphase_transpose_conv is rewritten too.
        "core::winograd_conv3x3",
        # 9. Up-sampling transposed convolutions as phase convolutions, which LiteRT's
        #    XNNPACK runs about twice as fast (needs NHWC): the TFLite target's
        #    tflite::polyphase_transpose_conv goes here (stylegan-to-tflite).
        #    StyleGAN2's separable 4x4 FIR filter as two 1-D depthwise convolutions.
        "core::separable_depthwise",
        # 10. Fewer passes over the big activations: two-op idioms as one op, then chains
        #    of per-channel scalings and shifts (instance norm + style, gain + modulation)
        #    as one multiply and one add.
        "core::fuse_elementwise",
        "core::fold_affine_chains",
        #    Pixel norm's per-pixel multiply behind a narrower 1x1 conv (ProGAN's ToRGB).
        "core::scale_after_pointwise_conv",
        "core::canonicalize",
        # 11. The TFLite target's tflite::guard_broadcast_folding goes here: it keeps the
        #    converter from folding noise + bias into one [1,H,W,C] constant per layer.
        # 12. An input nothing reads (labels_in [N, 0] of unconditional generators) would
        #    be a zero-size model input.
        "core::dce(prune_inputs=true)",
    ])


@register_pipeline("stylegan-to-tflite", "stylegan + the TFLite target's passes -> a "
                   "TFLite-clean graph")
def stylegan_to_tflite() -> Any:
    from graphsurgery.pipeline import Pipeline
    from graphsurgery.targets import get_target

    return get_target("tflite").extend(Pipeline.preset("stylegan"))


@register_pipeline("stylegan-to-onnx", "stylegan for the ONNX target: the original NCHW "
                   "layout (no core::to_nhwc), no Transpose")
def stylegan_to_onnx() -> Any:
    from graphsurgery.pipeline import Pipeline
    from graphsurgery.targets import get_target

    return get_target("onnx").extend(Pipeline.preset("stylegan"))


@register_pipeline("stylegan-to-coreml", "stylegan for the Core ML target (NHWC: coremltools "
                   "removes its own transposes, and fails on NCHW depthwise convolutions)")
def stylegan_to_coreml() -> Any:
    from graphsurgery.pipeline import Pipeline
    from graphsurgery.targets import get_target

    return get_target("coreml").extend(Pipeline.preset("stylegan"))
