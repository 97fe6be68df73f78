"""StyleGAN2-ADA ``Gs`` generator graphs (TF1 style), rebuilt from the facts with random weights.

The structure of NVlabs' StyleGAN2-ADA TensorFlow generator (see
``shared/reference/families.md``) written in the project's own code on top of the StyleGAN2
builder (:mod:`graphsurgery.zoo.stylegan2`):

* **mixed precision**: the ``num_fp16_res`` highest resolutions run in float16. Each such
  block starts with ``Cast(x, half)``; weights, biases, noise and styles are cast to half
  where they meet the activations; the ToRGB output is cast back to float32 before it is
  added to the running (float32) skip image;
* **conv_clamp**: every bias + activation (ToRGB included) ends with
  ``clip_by_value(x, -c, c)`` (``Minimum`` then ``Maximum``), with half constants in float16
  blocks;
* **fp16 overflow guards** in non-fused modulated convolutions of float16 blocks:
  ``w *= sqrt(1/fan_in) / max(abs(w), axis=[0,1,2])`` and ``s *= 1 / max(abs(s))``;
* **conditional mapping**: with ``label_size > 0``, ``labels_in [N, C]`` is embedded (dense +
  bias to ``label_fmaps``), normalised by its second moment and concatenated with the
  normalised latent before the mapping layers; with ``label_size = 0`` the ``[N, 0]`` input
  is left dangling as in unconditional pickles.

The ``auto`` config (small data sets) has 2 mapping layers; the ``stylegan2`` config 8.
Inputs ``latents_in``, ``labels_in``; output ``images_out`` ``[N, C, R, R]`` float32.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from graphsurgery.zoo import BuiltModel, register_presets, sgops
from graphsurgery.zoo._lazy import tf, v1
from graphsurgery.zoo.stylegan2 import StyleGAN2Config, _Builder


@dataclass(frozen=True)
class ADAConfig(StyleGAN2Config):
    """StyleGAN2-ADA ``G_main`` hyper-parameters on top of :class:`StyleGAN2Config`."""

    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0
    label_size: int = 0
    label_fmaps: int = 512
    fused_modconv: bool = False
    mapping_layers: int = 2

    def fp16(self, res: int) -> bool:
        """True when the block at ``2**res`` px runs in float16."""
        return res > self.resolution_log2 - self.num_fp16_res


class _ADABuilder(_Builder):
    cfg: ADAConfig

    def bias_act(self, x: tf.Tensor, act: str = "linear", lrmul: float = 1.0,
                 bias_var: str = "bias", clamp: float | None = None) -> tf.Tensor:
        b = self.p.get(bias_var, [int(x.shape[1])], std=0.1 / lrmul) * np.float32(lrmul)
        return sgops.fused_bias_act(x, tf.cast(b, x.dtype), act=act, clamp=clamp,
                                    impl=self.cfg.impl)

    def modconv(self, x: tf.Tensor, y: tf.Tensor, fmaps: int, kernel: int, up: bool = False,
                demodulate: bool = True) -> tuple[tf.Tensor, dict[str, Any]]:
        cfg = self.cfg
        half = x.dtype == tf.float16
        guard = half and not cfg.fused_modconv and demodulate
        wshape = [kernel, kernel, int(x.shape[1]), fmaps]
        w = self.get_weight(wshape)
        if guard:  # pre-normalise to avoid float16 overflow
            w *= np.float32(np.sqrt(1 / np.prod(wshape[:-1]))) / tf.reduce_max(
                tf.abs(w), axis=[0, 1, 2])
        ww = w[tf.newaxis]
        s = self.dense(y, fmaps=int(x.shape[1]), weight_var="mod_weight")
        s = sgops.fused_bias_act(s, self.p.get("mod_bias", [int(x.shape[1])], std=0.1),
                                 impl=cfg.impl) + 1
        if guard:
            s *= 1 / tf.reduce_max(tf.abs(s))
        ww *= s[:, tf.newaxis, tf.newaxis, :, tf.newaxis]
        d = None
        if demodulate:
            d = tf.math.rsqrt(tf.reduce_sum(tf.square(ww), axis=[1, 2, 3]) + 1e-8)
            ww *= d[:, tf.newaxis, tf.newaxis, tf.newaxis, :]
        if cfg.fused_modconv:
            x = tf.reshape(x, [1, -1, x.shape[2], x.shape[3]])
            w = tf.reshape(tf.transpose(ww, [1, 2, 3, 0, 4]),
                           [ww.shape[1], ww.shape[2], ww.shape[3], -1])
        else:
            x *= tf.cast(s[:, :, tf.newaxis, tf.newaxis], x.dtype)
        w = tf.cast(w, x.dtype)
        if up:
            conv, x = sgops._upsample_conv_2d(x, w, cfg.resample_kernel, 2, 1, cfg.impl)
        else:
            x = conv = sgops.conv2d(x, w)
        if cfg.fused_modconv:
            x = tf.reshape(x, [-1, fmaps, x.shape[2], x.shape[3]])
        elif demodulate:
            x *= tf.cast(d[:, :, tf.newaxis, tf.newaxis], x.dtype)
        scope = v1.get_variable_scope().name
        info = {"weight": f"{scope}/weight", "style": s.name, "conv": conv.op.name,
                "conv_op": conv.op.type, "modconv_out": x.name, "half": half,
                "demod": d.name if d is not None else None}
        return x, info

    def layer(self, x: tf.Tensor, dl: tf.Tensor, layer_idx: int, fmaps: int, kernel: int,
              noise_inputs: list[tf.Tensor], up: bool = False) -> tf.Tensor:
        cfg = self.cfg
        x, info = self.modconv(x, dl[:, layer_idx], fmaps=fmaps, kernel=kernel, up=up)
        if cfg.randomize_noise:
            noise = tf.random.normal([tf.shape(x)[0], 1, x.shape[2], x.shape[3]], dtype=x.dtype)
        else:
            noise = tf.cast(noise_inputs[layer_idx], x.dtype)
        strength = self.p.get("noise_strength", [], std=0.1)
        x += noise * tf.cast(strength, x.dtype)
        x = self.bias_act(x, act="lrelu", clamp=cfg.conv_clamp)
        info.update(layer_idx=layer_idx, scope=v1.get_variable_scope().name, out=x.name)
        self.layers.append(info)
        return x

    def torgb(self, x: tf.Tensor, y: tf.Tensor | None, dl: tf.Tensor, res: int) -> tf.Tensor:
        cfg = self.cfg
        with v1.variable_scope("ToRGB"):
            t, info = self.modconv(x, dl[:, res * 2 - 3], fmaps=cfg.num_channels, kernel=1,
                                   demodulate=False)
            t = self.bias_act(t, clamp=cfg.conv_clamp)
            t = tf.cast(t, tf.float32)
            out = t if y is None else y + t
            info.update(res=2**res, out=out.name)
            self.torgb_info.append(info)
            return out

    def mapping(self, latents_in: tf.Tensor, labels_in: tf.Tensor) -> tf.Tensor:
        cfg = self.cfg
        with v1.variable_scope("G_mapping"):
            x = sgops.pixel_norm(tf.identity(latents_in, name="latents_in"))  # 2nd moment
            labels = tf.identity(labels_in, name="labels_in")
            if cfg.label_size:
                with v1.variable_scope("LabelEmbed"):
                    y = self.dense(labels, cfg.label_fmaps)
                    y = self.bias_act(y)
                    y = sgops.pixel_norm(y)
                x = tf.concat([x, y], axis=1)
            return self.mapping_layers(x)

    def synthesis(self, dlatents: tf.Tensor) -> tf.Tensor:
        cfg = self.cfg
        nf = cfg.nf
        with v1.variable_scope("G_synthesis"):
            dl = tf.identity(dlatents, name="dlatents_in")
            dl.set_shape([cfg.batch, cfg.num_layers, cfg.dlatent_size])
            noise_inputs = [
                self.p.get(f"noise{i}", [1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)],
                           trainable=False)
                for i in range(cfg.num_layers - 1)]
            dtype = tf.float16 if cfg.fp16(2) else tf.float32
            with v1.variable_scope("4x4"):
                with v1.variable_scope("Const"):
                    x = self.p.get("const", [1, nf(1), 4, 4])
                    x = tf.cast(tf.tile(x, [tf.shape(dl)[0], 1, 1, 1]), dtype)
                with v1.variable_scope("Conv"):
                    x = self.layer(x, dl, 0, nf(1), 3, noise_inputs)
                y = self.torgb(x, None, dl, 2)
                self.skip_images[4] = y.name
            for res in range(3, cfg.resolution_log2 + 1):
                with v1.variable_scope(f"{2**res}x{2**res}"):
                    x = tf.cast(x, tf.float16 if cfg.fp16(res) else tf.float32)
                    with v1.variable_scope("Conv0_up"):
                        x = self.layer(x, dl, res * 2 - 5, nf(res - 1), 3, noise_inputs,
                                       up=True)
                    with v1.variable_scope("Conv1"):
                        x = self.layer(x, dl, res * 2 - 4, nf(res - 1), 3, noise_inputs)
                    with v1.variable_scope("Upsample"):
                        y = sgops.upsample_2d(y, k=cfg.resample_kernel, impl=cfg.impl)
                    y = self.torgb(x, y, dl, res)
                    self.skip_images[2**res] = y.name
            return tf.identity(y, name="images_out")

    def build(self) -> tuple[Any, dict[str, Any]]:
        cfg = self.cfg
        graph = tf.Graph()
        with graph.as_default():
            latents_in = v1.placeholder(tf.float32, [cfg.batch, cfg.latent_size],
                                         name="latents_in")
            labels_in = v1.placeholder(tf.float32, [cfg.batch, cfg.label_size],
                                        name="labels_in")
            dlatent_avg = self.p.get("dlatent_avg", [cfg.dlatent_size], std=0.5,
                                     trainable=False)
            dlatents = self.mapping(latents_in, labels_in)
            dlatents = self.truncation(dlatents, dlatent_avg)
            tf.identity(self.synthesis(dlatents), name="images_out")
        frozen, standins = sgops.freeze(graph, self.p, ["images_out", "labels_in"])
        return frozen, self.meta(standins)

    def meta(self, standins: list[sgops.CustomOpStandIn]) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "kind": "stylegan2-ada", "resolution": cfg.resolution,
            "num_layers": cfg.num_layers, "architecture": "skip",
            "num_fp16_res": cfg.num_fp16_res, "conv_clamp": cfg.conv_clamp,
            "label_size": cfg.label_size, "fused_modconv": cfg.fused_modconv,
            "impl": cfg.impl,
            "randomize_noise": cfg.randomize_noise, "num_params": self.p.num_trainable,
            "fp16_resolutions": [2**r for r in range(2, cfg.resolution_log2 + 1)
                                 if cfg.fp16(r)],
            "layers": self.layers, "torgb": self.torgb_info,
            "skip_images": dict(self.skip_images),
            "config": {**asdict(cfg), "resample_kernel": list(cfg.resample_kernel)},
            "latent_size": cfg.latent_size, "dlatent_size": cfg.dlatent_size,
            "mapping_output": "G_mapping/dlatents_out:0", "dlatents": "G_synthesis/dlatents_in:0",
        }


def build_ada(cfg: ADAConfig, values: Mapping[str, np.ndarray] | None = None) -> BuiltModel:
    """Build and freeze a StyleGAN2-ADA ``Gs`` graph for ``cfg``.

    ``values`` (variable name -> array, e.g. from an NVlabs pickle) replaces the random
    weights: a missing name is a ``KeyError`` naming it, a wrong shape a ``ValueError``;
    ``meta["variables"]`` lists every variable the graph was built from. With ``values``
    the graph is frozen without a session (:func:`graphsurgery.zoo.freeze_given`) and
    ``graph_def`` is graphsurgery's own GraphDef (``graphsurgery.ir.proto``).
    """
    t0 = time.perf_counter()
    builder = _ADABuilder(cfg, values)
    graph_def, meta = builder.build()
    meta["variables"] = {var.op.name: list(value.shape) for var, value in builder.p.values}
    meta["build_seconds"] = round(time.perf_counter() - t0, 3)
    meta["num_nodes"] = len(graph_def.node)
    return BuiltModel(inputs=["latents_in:0", "labels_in:0"], outputs=["images_out:0"],
                      graph_def=graph_def, meta=meta)


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

#: ``--cfg=auto`` shrunk: 16 px, fp16 on the top 2 resolutions (8 and 16), clamp 256.
TINY = ADAConfig(resolution=16, fmap_base=64, fmap_max=16, latent_size=16, dlatent_size=16,
                 mapping_fmaps=16, label_fmaps=16, num_fp16_res=2, truncation_cutoff=4)
#: ``--cfg=auto`` at 256 px (fmap_base 16384 -> narrowed like sg2-256), fp16 on the top 4.
AUTO_256 = ADAConfig(resolution=256, fmap_base=2048, fmap_max=128, latent_size=128,
                     dlatent_size=128, mapping_fmaps=128, label_fmaps=128,
                     truncation_cutoff=8)

PRESETS: dict[str, ADAConfig] = {
    "ada-tiny": TINY,
    "ada-tiny-cond": replace(TINY, label_size=10),
    "ada-tiny-fused": replace(TINY, fused_modconv=True),
    "ada-tiny-const-noise": replace(TINY, randomize_noise=False),
    "ada-tiny-fp32": replace(TINY, num_fp16_res=0, conv_clamp=None),
    "ada-tiny-cuda": replace(TINY, impl="cuda", conv_clamp=2.0),
    "ada-tiny-stylegan2": replace(TINY, mapping_layers=8),
    "ada-256": AUTO_256,
    "ada-256-cond": replace(AUTO_256, label_size=10),
}

_DESCRIPTIONS = {
    "ada-tiny": "StyleGAN2-ADA 16px (cfg auto): fp16 top 2 resolutions, conv_clamp 256, "
                "fp16 overflow guards, unconditional [N,0] labels",
    "ada-tiny-cond": "StyleGAN2-ADA 16px, conditional: labels_in [N,10] embedded and "
                     "concatenated to z",
    "ada-tiny-fused": "StyleGAN2-ADA 16px, fused modconv in fp16 (no overflow guards)",
    "ada-tiny-const-noise": "StyleGAN2-ADA 16px, randomize_noise=False (half-cast noise)",
    "ada-tiny-fp32": "StyleGAN2-ADA 16px with num_fp16_res=0 and no clamp",
    "ada-tiny-cuda": "StyleGAN2-ADA 16px with the FusedBiasAct (clamp attr, here 2 so it "
                     "bites) and UpFirDn2D custom ops in float16, as in released pickles",
    "ada-tiny-stylegan2": "StyleGAN2-ADA 16px, cfg stylegan2 (8 mapping layers)",
    "ada-256": "StyleGAN2-ADA 256px (cfg auto, narrow): fp16 top 4 resolutions, clamp 256",
    "ada-256-cond": "StyleGAN2-ADA 256px conditional (labels_in [N,10])",
}

register_presets(PRESETS, _DESCRIPTIONS, build_ada,
                 full_size=[n for n in PRESETS if n.startswith("ada-256")])
