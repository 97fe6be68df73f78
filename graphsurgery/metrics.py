"""Comparing outputs: max and mean absolute error, PSNR and SSIM.

PSNR and SSIM come from TensorFlow (``tf.image.psnr``/``tf.image.ssim``), computed over the
reference output's value range. SSIM is defined for images: it is reported for 4-D
outputs (NCHW or NHWC, the channel axis is guessed as the one of size 1, 3 or 4 nearest
the end) whose spatial size is at least 11 x 11 (the SSIM window), else None.

A :class:`Criterion` decides whether a comparison passes: the result of the passes is held
to a relative max abs error (``--tolerance``, 1e-3 of the output range), a quantized model
to what its mode can reach (:func:`quantized_criterion`: fp16 to 16 float16 epsilons,
8-bit modes to PSNR and SSIM floors).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


# ---------------------------------------------------------------------- pass/fail criteria
#: ``--tolerance``'s default: max abs error / output range of a float32 result.
DEFAULT_TOLERANCE = 1e-3

#: 16 float16 epsilons (2**-10) of the output range: what a float16 computation or float16
#: weights can be held to. A float16 StyleGAN2-ADA generator and its float32 rewrite differ
#: by 2e-3 of the range (70-75 dB PSNR); a float32 generator converted with fp16 weights by
#: at most 5.5e-3 (the zoo's tiny presets, sg1-256 and sg2-256: 68.7-81 dB).
FLOAT16_TOLERANCE = 16 * 2.0**-10


@dataclass(frozen=True)
class Criterion:
    """What a comparison must meet to pass: a relative max abs error (``tolerance``), or
    floors on PSNR (dB over the reference's range) and SSIM (images only: an output
    without SSIM is held to the PSNR floor alone). ``name`` and ``reason`` say which
    criterion applied and why (``summary.json``, the printed verdict)."""

    name: str
    reason: str
    tolerance: float | None = None
    min_psnr: float | None = None
    min_ssim: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def failures(self, cmp: Comparison) -> list[str]:
        """What ``cmp`` misses, one phrase each (``"PSNR 21.3 dB < 30 dB"``); empty: it
        passes."""
        out = []
        if self.tolerance is not None and not cmp.rel_max_abs <= self.tolerance:
            out.append(f"max abs error {cmp.rel_max_abs:.3g} of range > {self.tolerance:.3g}")
        if self.min_psnr is not None and not (cmp.psnr is not None
                                               and cmp.psnr >= self.min_psnr):
            got = "n/a" if cmp.psnr is None else f"{cmp.psnr:.1f} dB"
            out.append(f"PSNR {got} < {self.min_psnr:g} dB")
        if self.min_ssim is not None and cmp.ssim is not None and not cmp.ssim >= self.min_ssim:
            out.append(f"SSIM {cmp.ssim:.4f} < {self.min_ssim:g}")
        return out

    def accepts(self, cmp: Comparison) -> bool:
        return not self.failures(cmp)

    def describe(self) -> str:
        """The bounds in words: ``"max abs error <= 0.001 of range"``,
        ``"PSNR >= 30 dB, SSIM >= 0.95"``."""
        parts = []
        if self.tolerance is not None:
            parts.append(f"max abs error <= {self.tolerance:.3g} of range")
        if self.min_psnr is not None:
            parts.append(f"PSNR >= {self.min_psnr:g} dB")
        if self.min_ssim is not None:
            parts.append(f"SSIM >= {self.min_ssim:g}")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """``{"name", "tolerance" or "min_psnr"/"min_ssim", "reason"}`` (unset bounds left
        out)."""
        out: dict[str, Any] = {"name": self.name}
        for key in ("tolerance", "min_psnr", "min_ssim"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**out, **self.extra, "reason": self.reason}


def verdict(entry: dict[str, Any]) -> str:
    """The verdict of one comparison of ``summary.json`` (``"ok"``, ``"criterion"``,
    ``"missed"``) in words, for the printed line: ``"ok (max abs error <= 0.001 of
    range)"``, ``"ok (tflite --quantize dynamic: PSNR >= 30 dB, SSIM >= 0.95)"``,
    ``"FAILED: PSNR 12.1 dB < 30 dB (tflite --quantize dynamic)"``; empty for an entry
    without a criterion."""
    crit = entry.get("criterion")
    if not isinstance(crit, dict):
        return ""
    bounds = Criterion(str(crit.get("name")), "", tolerance=crit.get("tolerance"),
                       min_psnr=crit.get("min_psnr"), min_ssim=crit.get("min_ssim")).describe()
    mode = f"{crit.get('target')} --quantize {crit['quantize']}" if crit.get("quantize") else ""
    if entry.get("ok"):
        return f"ok ({mode}: {bounds})" if mode else f"ok ({bounds})"
    return f"FAILED: {'; '.join(entry.get('missed') or ())}" + (f" ({mode})" if mode else "")


def max_abs_criterion(tolerance: float, reason: str) -> Criterion:
    """Max abs error / output range at most ``tolerance``."""
    return Criterion("max_abs", reason, tolerance=tolerance)


#: PSNR (dB) and SSIM floors of the 8-bit modes, measured with ``stylegan-to-tflite``
#: (seed 0). Weights in int8, activations in float (``dynamic``, ``mobile``): 45.7-54.4 dB
#: and SSIM >= 0.9968 on the zoo's 22 tiny presets, 39.2-43.4 dB and SSIM >= 0.978 on
#: ``sg1-256``/``sg2-256``. Full integer (``int8``, activations in int8 too): 29.6-43.0 dB
#: and SSIM >= 0.920 (tiny), 32.0 dB / 0.953 (``sg2-256``) and 28.6 dB / 0.841
#: (``sg1-256``: below the SSIM floor, it fails). The error grows with depth, so the weight
#: floors sit 9 dB below the worst seen. A broken model falls far below them: zeroing the
#: largest filter of ``sg2-tiny``'s ``.tflite`` gives 14.9-21.3 dB and SSIM 0.27-0.72 in
#: every mode. (Zeroing one of its 8 output channels instead, 44.6 dB with ``dynamic``, is
#: an error no larger than quantization's own: only a float32 conversion can show that.)
WEIGHT_INT8_FLOORS = (30.0, 0.95)
FULL_INT8_FLOORS = (25.0, 0.9)
#: ``mobile-int4`` (StyleGAN v1 at 256 px: 29.2 dB, SSIM 0.91 mean, 0.88 worst of 16 latents).
MOBILE_INT4_FLOORS = (25.0, 0.85)


def quantized_criterion(target: str, mode: str | None) -> Criterion | None:
    """The criterion an artefact exported with quantization ``mode`` is held to by
    default, or None when ``mode`` stores float32 (the float32 tolerance applies).

    ``fp16`` (float16 weights): max abs error within :data:`FLOAT16_TOLERANCE`, as for
    an input graph that computes in float16. ``dynamic`` and ``mobile`` (int8 weights,
    float activations) and Core ML's ``int8`` (8-bit linear weights):
    :data:`WEIGHT_INT8_FLOORS`. TFLite's ``int8`` (activations in int8 too, calibrated
    on random inputs): :data:`FULL_INT8_FLOORS`.
    """
    if mode in (None, "fp32"):
        return None
    why, extra = f"{target} --quantize {mode}: ", {"target": target, "quantize": mode}
    if mode == "fp16":
        return Criterion("float16", why + "float16 weights are exact to 2**-11; 16 float16 "
                         "epsilons of the output range", tolerance=FLOAT16_TOLERANCE, extra=extra)
    if mode in ("dynamic", "mobile") or (mode == "int8" and target != "tflite"):
        psnr, ssim = WEIGHT_INT8_FLOORS
        return Criterion("quantized", why + "8-bit weights change every output a little; "
                         "held to image-quality floors instead of a max abs error",
                         min_psnr=psnr, min_ssim=ssim, extra=extra)
    if mode == "mobile-int4":
        psnr, ssim = MOBILE_INT4_FLOORS
        return Criterion("quantized", why + "4-bit weights in the small convolutions, 8-bit "
                         "in the rest; held to image-quality floors instead of a max abs "
                         "error", min_psnr=psnr, min_ssim=ssim, extra=extra)
    if mode == "int8":
        psnr, ssim = FULL_INT8_FLOORS
        return Criterion("quantized", why + "8-bit weights and activations (calibrated on "
                         "random inputs); held to image-quality floors instead of a max "
                         "abs error", min_psnr=psnr, min_ssim=ssim, extra=extra)
    return None
