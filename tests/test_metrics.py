"""metrics.compare: errors, PSNR and SSIM of an output against its reference."""

from __future__ import annotations

import numpy as np
import pytest

from graphsurgery.metrics import compare


def test_identical_outputs():
    x = np.linspace(-1, 1, 2 * 3 * 16 * 16, dtype=np.float32).reshape(2, 3, 16, 16)
    c = compare(x, x.copy())
    assert (c.max_abs, c.mean_abs, c.psnr) == (0.0, 0.0, float("inf"))
    assert c.ssim == pytest.approx(1.0)
    assert c.value_range == pytest.approx(2.0)
    assert "PSNR inf" in str(c)


def test_errors_are_relative_to_the_reference_range():
    ref = np.array([0.0, 10.0, 5.0, 5.0], np.float32)
    got = ref + np.array([0.0, 0.0, 1.0, -1.0], np.float32)
    c = compare(ref, got)
    assert c.max_abs == 1.0 and c.mean_abs == 0.5 and c.rel_max_abs == pytest.approx(0.1)
    # mean squared error 0.5 / 100 on the normalised range: 10*log10(1/0.005)
    assert c.psnr == pytest.approx(10 * np.log10(1 / 0.005), rel=1e-4)
    assert c.ssim is None  # not an image
    assert c.to_json()["rel_max_abs"] == pytest.approx(0.1)


def test_small_or_flat_images_have_no_ssim_and_flat_ranges_do_not_divide_by_zero():
    ref = np.ones((1, 3, 8, 8), np.float32)
    c = compare(ref, ref + 0.5)
    assert c.ssim is None and c.value_range == 0.0 and c.rel_max_abs == 0.5


def test_shape_mismatch_and_strings():
    with pytest.raises(ValueError, match="shapes differ"):
        compare(np.zeros((1, 2)), np.zeros((2, 1)))
    words = np.array([b"a", b"b"])
    assert compare(words, words.copy()).max_abs == 0.0
    assert compare(words, np.array([b"a", b"c"])).max_abs == float("inf")
