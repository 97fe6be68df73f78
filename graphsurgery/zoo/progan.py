"""ProGAN ``G_paper`` generator graphs (TF1 style), rebuilt from the facts with random weights.

The structure of Progressive GAN's generator as the NVlabs StyleGAN repository ships it
(``training/networks_progan.py``, see ``shared/reference/families.md``), written in the
project's own code:

* inputs ``latents_in [N, latent]`` and ``labels_in [N, label_size]`` (``[N, 0]``: zero-size,
  yet concatenated to the latent, so the input is real in the graph and carries nothing);
* 4x4 block: pixel norm of the latent, ``Dense`` to ``nf * 16`` reshaped to NCHW
  ``[-1, nf, 4, 4]``, bias, leaky ReLU ``Maximum(x * 0.2, x)``, pixel norm, then a 3x3 conv;
* blocks from 8x8: up-sampling conv (``fused_scale``: one stride-2 NCHW
  ``Conv2DBackpropInput`` with a run-time weight built by transpose, pad and ``AddN`` of four
  shifted slices; otherwise a 6-D nearest upscale then a conv), then a conv; every conv is
  followed by bias, leaky ReLU and pixel norm;
* equalised learning rate: ``weight * wscale`` at run time;
* ``ToRGB_lod<k>``: 1x1 conv + bias; progressive growing by ``lod`` (a variable, a constant
  once frozen) either with nested v1 ``tf.cond`` (``recursive``) or ``lerp_clip``
  (``linear``), with nearest upscales by ``2**lod`` inside the conds.

Output ``images_out [N, C, R, R]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from graphsurgery.tfcompat import control_flow_v1
from graphsurgery.zoo import BuiltModel, ResolutionMixin, freeze_given, register_presets
from graphsurgery.zoo.stylegan1 import _GsBuilder


@dataclass(frozen=True)
class ProGANConfig(ResolutionMixin):
    """``G_paper`` hyper-parameters (defaults: CelebA-HQ 1024 px)."""

    resolution: int = 1024
    num_channels: int = 3
    label_size: int = 0
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    latent_size: int | None = None  # None: nf(0)
    fused_scale: bool = True
    structure: str = "recursive"  # "recursive" | "linear"
    batch: int | None = None
    lod: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 8 or r > 1024 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two in 8..1024, not {r}")
        if self.structure not in ("recursive", "linear"):
            raise ValueError(f"structure must be 'recursive' or 'linear', not {self.structure!r}")

    def nf(self, stage: int) -> int:
        """Feature maps at ``stage``."""
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

    @property
    def latents(self) -> int:
        return self.latent_size if self.latent_size is not None else self.nf(0)


class _ProGANBuilder(_GsBuilder):
    cfg: ProGANConfig  # type: ignore[assignment]

    def lrelu(self, x: Any, alpha: float = 0.2) -> Any:
        with self.v1.variable_scope("LeakyRelu"):
            a = self.tf.constant(alpha, dtype=x.dtype, name="alpha")
            return self.tf.maximum(x * a, x)

    def pn(self, x: Any, epsilon: float = 1e-8) -> Any:
        tf = self.tf
        with self.v1.variable_scope("PixelNorm"):
            eps = tf.constant(epsilon, dtype=x.dtype, name="epsilon")
            return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=1, keepdims=True) + eps)

    def upscale(self, x: Any, factor: int = 2) -> Any:
        if factor == 1:
            return x
        tf = self.tf
        with self.v1.variable_scope("Upscale2D"):
            c, h, w = (int(d) for d in x.shape[1:])
            x = tf.reshape(x, [-1, c, h, 1, w, 1])
            x = tf.tile(x, [1, 1, 1, factor, 1, factor])
            return tf.reshape(x, [-1, c, h * factor, w * factor])

    def upconv(self, x: Any, fmaps: int) -> Any:
        tf = self.tf
        w = self.weight([3, 3, int(x.shape[1]), fmaps], math.sqrt(2))
        w = tf.transpose(w, [0, 1, 3, 2])
        w = tf.pad(w, [[1, 1], [1, 1], [0, 0], [0, 0]], mode="CONSTANT")
        w = tf.add_n([w[1:, 1:], w[:-1, 1:], w[1:, :-1], w[:-1, :-1]])
        out_shape = [tf.shape(x)[0], fmaps, int(x.shape[2]) * 2, int(x.shape[3]) * 2]
        return self.v1.nn.conv2d_transpose(x, w, out_shape, strides=[1, 1, 2, 2],
                                           padding="SAME", data_format="NCHW")

    def post(self, x: Any) -> Any:
        return self.pn(self.lrelu(self.apply_bias(x)))

    def block(self, x: Any, res: int) -> Any:
        cfg, v1 = self.cfg, self.v1
        nf = cfg.nf(res - 1)
        with v1.variable_scope(f"{2**res}x{2**res}"):
            if res == 2:
                x = self.pn(x)
                with v1.variable_scope("Dense"):
                    x = self.dense(x, nf * 16, gain=math.sqrt(2) / 4)
                    x = self.tf.reshape(x, [-1, nf, 4, 4])
                    x = self.post(x)
                with v1.variable_scope("Conv"):
                    x = self.post(self.conv2d(x, nf, 3, math.sqrt(2)))
            else:
                if cfg.fused_scale:
                    with v1.variable_scope("Conv0_up"):
                        x = self.post(self.upconv(x, nf))
                else:
                    x = self.upscale(x)
                    with v1.variable_scope("Conv0"):
                        x = self.post(self.conv2d(x, nf, 3, math.sqrt(2)))
                with v1.variable_scope("Conv1"):
                    x = self.post(self.conv2d(x, nf, 3, math.sqrt(2)))
            return x

    def torgb(self, x: Any, res: int) -> Any:
        with self.v1.variable_scope(f"ToRGB_lod{self.cfg.resolution_log2 - res}"):
            return self.apply_bias(self.conv2d(x, self.cfg.num_channels, 1, gain=1.0))

    def generator(self, combo_in: Any, lod_in: Any) -> Any:
        tf, v1, cfg = self.tf, self.v1, self.cfg
        log2 = cfg.resolution_log2

        def lerp(a: Any, b: Any, t: Any) -> Any:
            return a + (b - a) * t

        if cfg.structure == "linear":
            x = self.block(combo_in, 2)
            images = self.torgb(x, 2)
            for res in range(3, log2 + 1):
                lod = log2 - res
                x = self.block(x, res)
                img = self.torgb(x, res)
                images = self.upscale(images)
                with v1.variable_scope(f"Grow_lod{lod}"):
                    images = lerp(img, images, tf.clip_by_value(lod_in - lod, 0.0, 1.0))
            return images

        def cset(cur: Callable[[], Any], pred: Any, new: Callable[[], Any]) -> Callable[[], Any]:
            return lambda: v1.cond(pred, new, cur)

        def grow(x: Any, res: int, lod: int) -> Any:
            y = self.block(x, res)

            def img() -> Any:
                return self.upscale(self.torgb(y, res), 2**lod)

            if res > 2:
                img = cset(img, lod_in > lod, lambda: self.upscale(
                    lerp(self.torgb(y, res), self.upscale(self.torgb(x, res - 1)),
                         lod_in - lod), 2**lod))
            if lod > 0:
                img = cset(img, lod_in < lod, lambda: grow(y, res + 1, lod - 1))
            return img()

        return grow(combo_in, 2, log2 - 2)

    def build_graph(self) -> Any:
        tf, v1, cfg = self.tf, self.v1, self.cfg
        latents_in = v1.placeholder(tf.float32, [cfg.batch, cfg.latents], name="latents_in")
        labels_in = v1.placeholder(tf.float32, [cfg.batch, cfg.label_size], name="labels_in")
        combo_in = tf.concat([latents_in, labels_in], axis=1)
        lod_in = self.variable("lod", [], 0.0, mean=cfg.lod, trainable=False)
        return tf.identity(self.generator(combo_in, lod_in), name="images_out")


def build_progan(cfg: ProGANConfig,
                 values: Mapping[str, np.ndarray] | None = None) -> BuiltModel:
    """Build and freeze a ProGAN ``G_paper`` graph for ``cfg``.

    ``values`` (variable name -> array, e.g. from an NVlabs pickle) replaces the random
    weights: a missing name is a ``KeyError`` naming it, a wrong shape a ``ValueError``;
    ``meta["variables"]`` lists every variable the graph was built from. With ``values``
    the graph is frozen without a session (:func:`graphsurgery.zoo.freeze_given`) and
    ``graph_def`` is graphsurgery's own GraphDef (``graphsurgery.ir.proto``).
    """
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default(), control_flow_v1():
        builder = _ProGANBuilder(cfg, values)  # type: ignore[arg-type]
        builder.build_graph()
        init = tf.compat.v1.global_variables_initializer()
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        if values is not None:  # given weights: frozen without a session, into our GraphDef
            graph_def = freeze_given(graph.as_graph_def(), values, ["images_out"])
        else:
            with tf.compat.v1.Session(graph=graph) as sess:
                sess.run(init)
                graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(
                    sess, graph.as_graph_def(), ["images_out"])
    finally:
        logger.setLevel(level)
    meta = {"kind": "progan", "resolution": cfg.resolution, "structure": cfg.structure,
            "fused_scale": cfg.fused_scale, "latent_size": cfg.latents,
            "label_size": cfg.label_size, "config": asdict(cfg),
            "num_nodes": len(graph_def.node),
            "variables": {k: v.shape.as_list() for k, v in builder.variables.items()},
            "num_params": int(sum(np.prod(v.shape.as_list())
                                  for v in builder.variables.values()))}
    return BuiltModel(["latents_in:0", "labels_in:0"], ["images_out:0"], graph_def=graph_def,
                      meta=meta)


TINY = ProGANConfig(resolution=16, fmap_base=128, fmap_max=16, seed=4)
#: CelebA-HQ's structure at 256 px, narrow (fmap_max 128).
P256 = ProGANConfig(resolution=256, fmap_base=2048, fmap_max=128, seed=5)

PRESETS: dict[str, ProGANConfig] = {
    "progan-tiny": TINY,
    "progan-tiny-linear": replace(TINY, structure="linear"),
    "progan-tiny-nonfused": replace(TINY, fused_scale=False),
    "progan-256": P256,
}

_DESCRIPTIONS = {
    "progan-tiny": "ProGAN G_paper 16px, recursive (Switch/Merge), fused up-conv, tiny widths",
    "progan-tiny-linear": "ProGAN G_paper 16px, linear structure (lerp_clip)",
    "progan-tiny-nonfused": "ProGAN G_paper 16px, fused_scale=False (6-D upscale then conv)",
    "progan-256": "ProGAN G_paper 256px, recursive, fused up-conv (fmap_max 128)",
}

register_presets(PRESETS, _DESCRIPTIONS, build_progan, full_size=["progan-256"])
