"""``stylegan::*`` passes: what makes StyleGAN and StyleGAN2 generators TFLite-clean.

One module per pass, each registering itself on import; ``custom_ops`` declares StyleGAN2's
custom ops (shape functions, reference maths, lowering passes).
"""

from . import (  # noqa: F401
    custom_ops,
    lower_fused_bias_act,
    lower_style_5d,
    lower_upfirdn2d,
    lower_upscale_6d,
    noise,
    presets,
    prune_resolution,
    raise_upfirdn2d_ref,
    set_lod,
    split,
    truncation,
    unfuse_modconv,
)
