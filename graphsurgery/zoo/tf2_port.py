"""A TF2/Keras port of the StyleGAN2 synthesis network in "CPU mode", frozen.

What popular TF2 ports that load the official weights into Keras layers freeze to (see
``shared/reference/families.md``), written in the project's own code: the tensors are NCHW
as in the original, but every convolution runs NHWC with the NCHW tensor transposed in and
out around it, because TensorFlow's CPU kernels refuse NCHW convolutions:

* modulated convolutions in the per-sample form ``x * s -> conv(W) -> x * d`` with the
  demodulation ``d = 1 / sqrt(sum(square(w * s)) + eps)`` (``Sqrt`` and ``RealDiv``, not
  ``Rsqrt``);
* bias through ``BiasAdd`` (NCHW), leaky ReLU then ``* sqrt(2)``;
* the 2x up-sampling conv as an NHWC ``Conv2DBackpropInput`` (stride 2, VALID) between
  transposes, followed by upfirdn2d in the reference form, whose one-channel FIR convolution
  is itself NHWC between transposes; the same upfirdn2d (6-D reshape and ``Pad`` for the zero
  insertion) up-samples the 3-channel ToRGB skip image;
* a learned constant tiled over the batch, constant noise times a scalar strength.

Weights are constants (as ``convert_variables_to_constants_v2`` leaves them), stored as
weight times a run-time coefficient (equalised learning rate). Input ``dlatents [N, L, D]``,
output ``images_out [N, 3, R, R]``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from graphsurgery.zoo import BuiltModel, ResolutionMixin, register_presets, sgops
from graphsurgery.zoo._lazy import tf, v1

TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]


@dataclass(frozen=True)
class TF2PortConfig(ResolutionMixin):
    """Synthesis hyper-parameters of the port (defaults: config-f at 1024 px)."""

    resolution: int = 1024
    fmap_base: int = 16 << 10
    fmap_max: int = 512
    dlatent_size: int = 512
    num_channels: int = 3
    batch: int | None = None
    resample_kernel: tuple[int, ...] = (1, 3, 3, 1)
    seed: int = 0

    def nf(self, stage: int) -> int:
        return int(np.clip(int(self.fmap_base / (2.0 ** stage)), 1, self.fmap_max))


def _conv_nhwc(x: tf.Tensor, w: Any, padding: str = "SAME") -> tf.Tensor:
    """NHWC ``Conv2D`` of NCHW ``x`` between transposes (the port's CPU path)."""
    y = tf.nn.conv2d(tf.transpose(x, TO_NHWC), w, strides=[1, 1, 1, 1], padding=padding,
                     data_format="NHWC")
    return tf.transpose(y, TO_NCHW)


def upfirdn2d_port(x: tf.Tensor, k: np.ndarray, up: int = 1, pad0: int = 0,
                   pad1: int = 0) -> tf.Tensor:
    """upfirdn2d of NCHW ``x`` in the reference form, its FIR conv NHWC between transposes."""
    c, in_h, in_w = (int(d) for d in x.shape[1:])
    kh, kw = k.shape
    x = tf.reshape(x, [-1, in_h, in_w, 1])
    x = tf.reshape(x, [-1, in_h, 1, in_w, 1, 1])
    x = tf.pad(x, [[0, 0], [0, 0], [0, up - 1], [0, 0], [0, up - 1], [0, 0]])
    x = tf.reshape(x, [-1, in_h * up, in_w * up, 1])
    x = tf.pad(x, [[0, 0], [max(pad0, 0), max(pad1, 0)], [max(pad0, 0), max(pad1, 0)], [0, 0]])
    x = x[:, max(-pad0, 0):int(x.shape[1]) - max(-pad1, 0),
          max(-pad0, 0):int(x.shape[2]) - max(-pad1, 0), :]
    h, w = in_h * up + pad0 + pad1, in_w * up + pad0 + pad1
    x = tf.transpose(x, [0, 3, 1, 2])
    x = tf.reshape(x, [-1, 1, h, w])
    x = _conv_nhwc(x, tf.constant(k[::-1, ::-1, np.newaxis, np.newaxis]), padding="VALID")
    x = tf.reshape(x, [-1, 1, h - kh + 1, w - kw + 1])
    x = tf.transpose(x, [0, 2, 3, 1])
    return tf.reshape(x, [-1, c, h - kh + 1, w - kw + 1])


class _PortBuilder:
    def __init__(self, cfg: TF2PortConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.num_params = 0

    def param(self, shape: list[int], std: float = 1.0) -> tf.Tensor:
        self.num_params += int(np.prod(shape))
        return tf.constant((self.rng.standard_normal(shape) * std).astype(np.float32))

    def weight(self, shape: list[int], gain: float = 1.0) -> tf.Tensor:
        return self.param(shape) * np.float32(gain / np.sqrt(np.prod(shape[:-1])))

    def bias_act(self, x: tf.Tensor, act: bool) -> tf.Tensor:
        x = tf.nn.bias_add(x, self.param([int(x.shape[1])], 0.1), data_format="NCHW")
        return tf.nn.leaky_relu(x, 0.2) * np.float32(np.sqrt(2)) if act else x

    def modconv(self, x: tf.Tensor, dl: tf.Tensor, fmaps: int, kernel: int, up: bool = False,
                demodulate: bool = True) -> tf.Tensor:
        cin = int(x.shape[1])
        w = self.weight([kernel, kernel, cin, fmaps])
        s = tf.matmul(dl, self.weight([int(dl.shape[1]), cin]))
        s = tf.nn.bias_add(s, self.param([cin], 0.1)) + 1.0
        x = x * s[:, :, tf.newaxis, tf.newaxis]
        if up:
            wt = tf.transpose(w[::-1, ::-1], [0, 1, 3, 2])  # [k, k, out, in]
            h, ww = int(x.shape[2]), int(x.shape[3])
            out_shape = tf.stack([tf.shape(x)[0], (h - 1) * 2 + kernel,
                                  (ww - 1) * 2 + kernel, fmaps])
            y = tf.nn.conv2d_transpose(tf.transpose(x, TO_NHWC), wt, out_shape,
                                       strides=[1, 2, 2, 1], padding="VALID",
                                       data_format="NHWC")
            x = tf.transpose(y, TO_NCHW)
            kk = sgops.setup_kernel(self.cfg.resample_kernel) * 4
            p = (kk.shape[0] - 2) - (kernel - 1)
            x = upfirdn2d_port(x, kk, pad0=(p + 1) // 2 + 1, pad1=p // 2 + 1)
        else:
            x = _conv_nhwc(x, w)
        if demodulate:
            ww5 = w[tf.newaxis] * s[:, tf.newaxis, tf.newaxis, :, tf.newaxis]
            d = 1.0 / tf.sqrt(tf.reduce_sum(tf.square(ww5), axis=[1, 2, 3]) + 1e-8)
            x = x * d[:, :, tf.newaxis, tf.newaxis]
        return x

    def layer(self, x: tf.Tensor, dl: tf.Tensor, fmaps: int, up: bool = False) -> tf.Tensor:
        x = self.modconv(x, dl, fmaps, 3, up=up)
        noise = self.param([1, 1, int(x.shape[2]), int(x.shape[3])])
        x = x + noise * self.param([], 0.1)
        return self.bias_act(x, act=True)

    def torgb(self, x: tf.Tensor, y: tf.Tensor | None, dl: tf.Tensor) -> tf.Tensor:
        t = self.bias_act(self.modconv(x, dl, self.cfg.num_channels, 1, demodulate=False),
                          act=False)
        if y is None:
            return t
        kk = sgops.setup_kernel(self.cfg.resample_kernel) * 4
        p = kk.shape[0] - 2
        return upfirdn2d_port(y, kk, up=2, pad0=(p + 1) // 2 + 1, pad1=p // 2) + t

    def build(self) -> Any:
        cfg = self.cfg
        graph = tf.Graph()
        with graph.as_default():
            dl = v1.placeholder(tf.float32, [cfg.batch, cfg.num_layers, cfg.dlatent_size],
                                name="dlatents")
            x = tf.tile(self.param([1, cfg.nf(1), 4, 4]), [tf.shape(dl)[0], 1, 1, 1])
            x = self.layer(x, dl[:, 0], cfg.nf(1))
            y = self.torgb(x, None, dl[:, 1])
            for res in range(3, cfg.resolution_log2 + 1):
                x = self.layer(x, dl[:, res * 2 - 5], cfg.nf(res - 1), up=True)
                x = self.layer(x, dl[:, res * 2 - 4], cfg.nf(res - 1))
                y = self.torgb(x, y, dl[:, res * 2 - 3])
            tf.identity(y, name="images_out")
        return graph.as_graph_def()


def build_port(cfg: TF2PortConfig) -> BuiltModel:
    """Build the frozen port graph for ``cfg``."""
    t0 = time.perf_counter()
    builder = _PortBuilder(cfg)
    graph_def = builder.build()
    meta = {"kind": "tf2-port", "resolution": cfg.resolution, "num_layers": cfg.num_layers,
            "config": asdict(cfg), "num_params": builder.num_params,
            "num_nodes": len(graph_def.node),
            "build_seconds": round(time.perf_counter() - t0, 3)}
    return BuiltModel(["dlatents:0"], ["images_out:0"], graph_def=graph_def, meta=meta)


TINY = TF2PortConfig(resolution=16, fmap_base=64, fmap_max=16, dlatent_size=16)
PRESETS: dict[str, TF2PortConfig] = {
    "tf2-port-tiny": TINY,
    "tf2-port-256": replace(TINY, resolution=256, fmap_base=2048, fmap_max=128,
                            dlatent_size=128),
}
_DESCRIPTIONS = {
    "tf2-port-tiny": "TF2/Keras StyleGAN2 port, CPU mode: NHWC convs between transposes, "
                     "BiasAdd, Sqrt demodulation, NHWC Conv2DBackpropInput, 16px",
    "tf2-port-256": "TF2/Keras StyleGAN2 port, CPU mode, 256px (fmap_max 128)",
}

register_presets(PRESETS, _DESCRIPTIONS, build_port, full_size=["tf2-port-256"])
