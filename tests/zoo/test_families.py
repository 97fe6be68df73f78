"""The full-size presets of the performance measurements: original widths, built on demand."""

from __future__ import annotations

from graphsurgery import zoo

NAMES = ["sg1-64-512", "sg2-256-f", "progan-256-orig", "progan-256-orig-nonfused",
         "ada-64-fp32"]


def test_registered_full_size():
    entries = {e.name: e for e in zoo.entries()}
    assert all(entries[n].full_size for n in NAMES)


def test_configs_have_the_original_widths():
    from graphsurgery.zoo.families import CONFIGS

    sg1, sg2, pg, pg_nf, ada = (CONFIGS[n] for n in NAMES)
    assert (sg1.resolution, sg1.fmap_base, sg1.fmap_max, sg1.use_fused_scale) == (
        64, 8192, 512, "auto")  # auto: nearest up-sampling + conv below 128 px
    assert (sg2.resolution, sg2.nf(1), sg2.nf(6)) == (256, 512, 256)  # config-f
    assert (pg.resolution, pg.nf(1), pg.nf(6), pg.fused_scale) == (256, 512, 128, True)
    assert pg_nf.fused_scale is False
    assert (ada.resolution, ada.nf(5), ada.num_fp16_res, ada.conv_clamp) == (64, 512, 0, None)
