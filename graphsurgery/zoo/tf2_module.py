"""The ``tf.Module`` behind the ``tf2-*`` zoo presets (see :mod:`graphsurgery.zoo.tf2`).

Kept apart so that listing the zoo does not import TensorFlow: :mod:`graphsurgery.zoo.tf2`
imports this module only when it builds a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
    from graphsurgery.zoo.tf2 import TF2SynthesisConfig

SQRT2 = float(np.sqrt(2.0))


def _fir(k: tuple[int, ...], gain: float) -> np.ndarray:
    k = np.asarray(k, np.float32)
    k = np.outer(k, k)
    return (k / k.sum() * gain).astype(np.float32)


class _ModConv(tf.Module):
    """One modulated conv layer (+ noise + bias + lrelu unless ``torgb``)."""

    def __init__(self, rng: np.random.Generator, cin: int, cout: int, kernel: int,
                 dlatent_size: int, layer_idx: int, res: int, fir_k: np.ndarray,
                 fused: bool = True, up: bool = False, torgb: bool = False,
                 name: str | None = None) -> None:
        super().__init__(name=name)
        self.layer_idx, self.up, self.torgb, self.kernel = layer_idx, up, torgb, kernel
        self._fused, self._fir_k = fused, fir_k

        def normal(shape: list[int], std: float = 1.0) -> np.ndarray:
            return (rng.standard_normal(shape) * std).astype(np.float32)

        self.weight = tf.Variable(normal([kernel, kernel, cin, cout]), name="weight")
        self.weight_coef = float(1.0 / np.sqrt(kernel * kernel * cin))
        self.mod_weight = tf.Variable(normal([dlatent_size, cin]), name="mod_weight")
        self.mod_coef = float(1.0 / np.sqrt(dlatent_size))
        self.mod_bias = tf.Variable(normal([cin], 0.1), name="mod_bias")
        self.bias = tf.Variable(normal([cout], 0.1), name="bias")
        if not torgb:
            self.noise_strength = tf.Variable(normal([], 0.1), name="noise_strength")
            self.noise = tf.Variable(normal([1, res, res, 1]), trainable=False, name="noise")

    def __call__(self, x: tf.Tensor, dlatents: tf.Tensor) -> tf.Tensor:
        w = self.weight * self.weight_coef  # [k, k, Cin, Cout]
        s = tf.matmul(dlatents[:, self.layer_idx], self.mod_weight * self.mod_coef)
        s = s + self.mod_bias + 1.0  # [N, Cin]
        demod = not self.torgb
        if self.up:
            x = self._up_conv(x, w, s, demod)
        elif self._fused and demod:
            x = self._fused_conv(x, w, s)
        else:
            x = x * s[:, tf.newaxis, tf.newaxis, :]
            x = tf.nn.conv2d(x, w, 1, "SAME")
            if demod:
                x = x * self._demod(w, s)[:, tf.newaxis, tf.newaxis, :]
        if self.torgb:
            return x + self.bias
        x = x + self.noise * self.noise_strength
        return tf.nn.leaky_relu(x + self.bias, alpha=0.2) * SQRT2

    @staticmethod
    def _demod(w: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        # rsqrt(sum_{k,k,Cin} (w * s)^2) = rsqrt(s^2 @ sum_{k,k} w^2)
        return tf.math.rsqrt(tf.matmul(tf.square(s), tf.reduce_sum(tf.square(w), [0, 1])) + 1e-8)

    def _fused_conv(self, x: tf.Tensor, w: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        ww = w[tf.newaxis] * s[:, tf.newaxis, tf.newaxis, :, tf.newaxis]  # [N, k, k, Cin, Cout]
        ww *= tf.math.rsqrt(tf.reduce_sum(tf.square(ww), [1, 2, 3], keepdims=True) + 1e-8)
        shape = tf.shape(x)
        n, h, wd = shape[0], shape[1], shape[2]
        cin, cout = w.shape[2], w.shape[3]
        x = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, wd, -1])  # [1, H, W, N*Cin]
        wg = tf.reshape(tf.transpose(ww, [1, 2, 3, 0, 4]), [self.kernel, self.kernel, cin, -1])
        x = tf.nn.conv2d(x, wg, 1, "SAME")  # grouped: N groups
        x = tf.reshape(x, [h, wd, n, cout])
        return tf.transpose(x, [2, 0, 1, 3])

    def _up_conv(self, x: tf.Tensor, w: tf.Tensor, s: tf.Tensor, demod: bool) -> tf.Tensor:
        x = x * s[:, tf.newaxis, tf.newaxis, :]
        shape = tf.shape(x)
        k = self.kernel
        cout = w.shape[3]
        wt = tf.transpose(w[::-1, ::-1], [0, 1, 3, 2])  # [k, k, Cout, Cin]
        out_shape = tf.stack([shape[0], (shape[1] - 1) * 2 + k, (shape[2] - 1) * 2 + k, cout])
        x = tf.nn.conv2d_transpose(x, wt, out_shape, 2, "VALID")
        x = _fir_filter(x, self._fir_k, pad=(1, 1))
        if demod:
            x = x * self._demod(w, s)[:, tf.newaxis, tf.newaxis, :]
        return x


def _fir_filter(x: tf.Tensor, k: np.ndarray, pad: tuple[int, int]) -> tf.Tensor:
    """Pad NHWC ``x`` and convolve each channel with the FIR kernel ``k`` (depthwise)."""
    c = x.shape[-1]
    x = tf.pad(x, [[0, 0], [pad[0], pad[1]], [pad[0], pad[1]], [0, 0]])
    kf = np.tile(k[::-1, ::-1, np.newaxis, np.newaxis], [1, 1, c, 1])
    return tf.nn.depthwise_conv2d(x, tf.constant(kf), [1, 1, 1, 1], "VALID")


def _upsample_2d(x: tf.Tensor, k: np.ndarray) -> tf.Tensor:
    """2x FIR up-sampling of NHWC ``x`` (= upfirdn2d up=2, pad (2, 1)) as a transposed conv."""
    c = x.shape[-1]
    kk = np.zeros([k.shape[0], k.shape[1], c, c], np.float32)
    for i in range(c):
        kk[:, :, i, i] = k
    shape = tf.shape(x)
    out_shape = tf.stack([shape[0], shape[1] * 2 + 2, shape[2] * 2 + 2, c])
    y = tf.nn.conv2d_transpose(x, tf.constant(kk), out_shape, 2, "VALID")
    return y[:, 1:-1, 1:-1, :]


class StyleGAN2SynthesisTF2(tf.Module):
    """StyleGAN2 synthesis network (skip architecture) as a ``tf.Module``."""

    def __init__(self, cfg: TF2SynthesisConfig) -> None:
        super().__init__(name="G_synthesis")
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        nf = cfg.nf
        up_k = _fir(cfg.resample_kernel, 4.0)
        self._up_k = up_k
        self.const = tf.Variable(rng.standard_normal([1, 4, 4, nf(1)]).astype(np.float32),
                                 name="const")
        kw = {"dlatent_size": cfg.dlatent_size, "fir_k": up_k, "fused": cfg.fused_modconv}
        rgb = cfg.num_channels
        self.convs: list[_ModConv] = [_ModConv(rng, nf(1), nf(1), 3, layer_idx=0, res=4,
                                               name="b4_conv", **kw)]
        self.torgbs: list[_ModConv] = [_ModConv(rng, nf(1), rgb, 1, layer_idx=1, res=4,
                                                torgb=True, name="b4_torgb", **kw)]
        for res in range(3, cfg.resolution_log2 + 1):
            r = 2**res
            cin, cout = nf(res - 2), nf(res - 1)
            self.convs.append(_ModConv(rng, cin, cout, 3, layer_idx=res * 2 - 5, res=r, up=True,
                                       name=f"b{r}_conv0_up", **kw))
            self.convs.append(_ModConv(rng, cout, cout, 3, layer_idx=res * 2 - 4, res=r,
                                       name=f"b{r}_conv1", **kw))
            self.torgbs.append(_ModConv(rng, cout, rgb, 1, layer_idx=res * 2 - 3, res=r,
                                        torgb=True, name=f"b{r}_torgb", **kw))

    def forward(self, dlatents: tf.Tensor) -> tf.Tensor:
        """dlatents [N, num_layers, dlatent_size] -> images [N, 3, R, R] (NCHW)."""
        n = tf.shape(dlatents)[0]
        x = tf.tile(self.const, [n, 1, 1, 1])
        x = self.convs[0](x, dlatents)
        y = self.torgbs[0](x, dlatents)
        for i, torgb in enumerate(self.torgbs[1:]):
            x = self.convs[1 + 2 * i](x, dlatents)
            x = self.convs[2 + 2 * i](x, dlatents)
            y = _upsample_2d(y, self._up_k) + torgb(x, dlatents)
        return tf.transpose(y, [0, 3, 1, 2])
