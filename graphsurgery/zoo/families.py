"""Full-size presets at the original widths, for the performance measurements
(``benchmarks/families.py``): each family's own builder and config fields, nothing new.

* ``sg1-64-512``: StyleGAN v1 FFHQ's config (fmap_base 8192, fmap_max 512: 512 channels
  up to 32 px, 256 at 64 px, 8x512 mapping) cut to 64 px: the up-sampling blocks below
  128 px are nearest up-sampling + 3x3 conv;
* ``sg2-256-f``: StyleGAN2 config-f (fmap_base 16384, fmap_max 512) at 256 px;
* ``progan-256-orig``: ProGAN ``G_paper`` with its original widths (fmap_base 8192,
  fmap_max 512, fused up-scale) at 256 px;
* ``progan-256-orig-nonfused``: the same with ``fused_scale=False`` (nearest up-sampling
  + 3x3 conv);
* ``ada-64-fp32``: StyleGAN2-ADA ``--cfg=auto`` widths at 64 px (fmap_base 16384, 512
  channels throughout), float32 (no fp16 blocks, no clamp).
"""

from __future__ import annotations

from dataclasses import replace

from graphsurgery.zoo import register_presets
from graphsurgery.zoo.ada import ADAConfig, build_ada
from graphsurgery.zoo.progan import ProGANConfig, build_progan
from graphsurgery.zoo.stylegan1 import StyleGAN1Config, build_stylegan1
from graphsurgery.zoo.stylegan2 import CONFIG_F, build_gs

_PROGAN = ProGANConfig(resolution=256, seed=12)

#: The configs behind the presets.
CONFIGS = {
    "sg1-64-512": StyleGAN1Config(resolution=64, seed=10),
    "sg2-256-f": replace(CONFIG_F, resolution=256, seed=11),
    "progan-256-orig": _PROGAN,
    "progan-256-orig-nonfused": replace(_PROGAN, fused_scale=False),
    "ada-64-fp32": ADAConfig(resolution=64, num_fp16_res=0, conv_clamp=None,
                             truncation_cutoff=8, seed=13),
}

_DESCRIPTIONS = {
    "sg1-64-512": "StyleGAN v1 Gs, FFHQ widths (512 to 32 px, 256 at 64 px) cut to 64 px, "
                  "nearest up-sampling + conv, recursive",
    "sg2-256-f": "StyleGAN2 config-f widths (fmap_base 16384, max 512) at 256px, ref ops",
    "progan-256-orig": "ProGAN G_paper 256px, original widths (fmap_base 8192, max 512), "
                       "fused up-conv",
    "progan-256-orig-nonfused": "ProGAN G_paper 256px, original widths, fused_scale=False "
                                "(nearest up-sampling + conv)",
    "ada-64-fp32": "StyleGAN2-ADA 64px, cfg auto widths (fmap_base 16384, 512 channels), "
                   "fp32, no clamp",
}

for _names, _build in ((["sg1-64-512"], build_stylegan1), (["sg2-256-f"], build_gs),
                       (["progan-256-orig", "progan-256-orig-nonfused"], build_progan),
                       (["ada-64-fp32"], build_ada)):
    register_presets({n: CONFIGS[n] for n in _names}, _DESCRIPTIONS, _build,
                     full_size=_names)
