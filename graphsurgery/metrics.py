"""Comparing outputs: max and mean absolute error, PSNR and SSIM.

PSNR and SSIM come from TensorFlow (``tf.image.psnr``/``tf.image.ssim``), computed over the
reference output's value range. SSIM is defined for images: it is reported for 4-D
outputs (NCHW or NHWC, the channel axis is guessed as the one of size 1, 3 or 4 nearest
the end) whose spatial size is at least 11 x 11 (the SSIM window), else None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class Comparison:
    max_abs: float
    mean_abs: float
    value_range: float
    psnr: float | None
    ssim: float | None

    @property
    def rel_max_abs(self) -> float:
        """Max abs error as a fraction of the reference's value range."""
        return self.max_abs / self.value_range if self.value_range > 0 else self.max_abs

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["rel_max_abs"] = self.rel_max_abs
        return {k: (None if v is None else float(v)) for k, v in d.items()}

    def __str__(self) -> str:
        psnr = "inf" if self.psnr is not None and np.isinf(self.psnr) else (
            "n/a" if self.psnr is None else f"{self.psnr:.1f} dB")
        ssim = "n/a" if self.ssim is None else f"{self.ssim:.5f}"
        return (f"max abs {self.max_abs:.3g} ({self.rel_max_abs:.2g} of range), "
                f"mean abs {self.mean_abs:.3g}, PSNR {psnr}, SSIM {ssim}")


def _channels_last(x: np.ndarray) -> np.ndarray:
    if x.ndim != 4:
        return x
    if x.shape[1] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
        return np.transpose(x, (0, 2, 3, 1))
    return x


def compare(reference: np.ndarray, result: np.ndarray) -> Comparison:
    """Compare ``result`` against ``reference`` (same shape; ValueError otherwise).

    Outputs that are not numbers (strings) are compared for equality: an error of 0 when
    equal, infinite otherwise.
    """
    ref, got = np.asarray(reference), np.asarray(result)
    if ref.shape != got.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, result {got.shape}")
    if ref.dtype.kind not in "biufc" or got.dtype.kind not in "biufc":
        same = ref.dtype == got.dtype and bool(np.array_equal(ref, got))
        err = 0.0 if same else float("inf")
        return Comparison(err, err, 0.0, float("inf") if same else None, None)
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    diff = np.abs(ref - got)
    vrange = float(ref.max() - ref.min()) if ref.size else 0.0
    psnr = ssim = None
    if ref.size:
        import tensorflow as tf

        lo = float(ref.min())
        span = vrange if vrange > 0 else 1.0
        a = ((ref - lo) / span).astype(np.float32)
        b = ((got - lo) / span).astype(np.float32)
        if np.array_equal(a, b):
            psnr = float("inf")
        else:
            psnr = float(tf.reduce_mean(tf.image.psnr(a.reshape(1, -1, 1, 1),
                                                      b.reshape(1, -1, 1, 1), max_val=1.0)))
        a4, b4 = _channels_last(a), _channels_last(b)
        if a4.ndim == 4 and min(a4.shape[1], a4.shape[2]) >= 11:
            ssim = float(tf.reduce_mean(tf.image.ssim(a4, b4, max_val=1.0)))
    return Comparison(float(diff.max()) if diff.size else 0.0,
                      float(diff.mean()) if diff.size else 0.0, vrange, psnr, ssim)
