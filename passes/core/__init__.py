"""Generic ``core::*`` passes: one module per pass, each registering itself on import."""

from . import (  # noqa: F401
    bias_into_phases,
    cse,
    dce,
    drop_empty_concat,
    fold_affine_chains,
    fold_constants,
    fold_shapes,
    fold_switch_merge,
    output_format,
    remove_identity,
    scale_after_pointwise_conv,
    separable_depthwise,
    set_batch,
    strip_training,
    to_nhwc,
    unwrap_nhwc,
    upcast_float16,
    upsample_conv_phases,
    winograd_conv3x3,
)
