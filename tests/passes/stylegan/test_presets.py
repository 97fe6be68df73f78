"""StyleGAN's presets: ``stylegan`` names no target's pass; ``stylegan-to-tflite`` is it plus
the TFLite target's passes at their places."""

import graphsurgery as gs


def test_stylegan_preset_is_target_neutral():
    ids = gs.Pipeline.preset("stylegan").pass_ids()
    assert ids[0] == "core::strip_training" and ids[-1] == "core::dce"
    assert not [p for p in ids if not p.startswith(("core::", "stylegan::"))]
    assert "stylegan::lower_upfirdn2d" in ids and "core::to_nhwc" in ids


def test_stylegan_to_tflite_is_stylegan_plus_the_tflite_passes():
    base = gs.Pipeline.preset("stylegan").pass_ids()
    ids = gs.Pipeline.preset("stylegan-to-tflite").pass_ids()
    added = [p for p in ids if p.startswith("tflite::")]
    assert sorted(added) == ["tflite::guard_broadcast_folding",
                             "tflite::polyphase_transpose_conv"]
    assert [p for p in ids if not p.startswith("tflite::")] == base
    assert ids[ids.index("tflite::polyphase_transpose_conv") - 1] == "core::to_nhwc"
    assert ids[ids.index("tflite::guard_broadcast_folding") + 1] == "core::dce"
