"""StyleGAN2 ``Gs`` generator graphs (TF1 style), rebuilt from the facts with random weights.

:func:`build_gs` builds mapping + truncation + synthesis in a ``tf.Graph`` with the original's
scope names and op structure (see ``shared/reference/stylegan-graphs.md``), initialises the
variables from a fixed-seed numpy generator following the original initialisation, and
freezes the graph with ``convert_variables_to_constants``. The forward pass is never run in
TensorFlow here: NCHW ``Conv2D`` cannot run on CPU.

Key names in the frozen graph (``R`` = resolution, ``S`` = layer scope such as
``G_synthesis/8x8/Conv0_up``):

* inputs ``latents_in``, ``labels_in`` (the latter dangling: label_size is 0); output
  ``images_out`` ``[N, 3, R, R]``; mapping output ``G_mapping/dlatents_out``; synthesis input
  (after truncation) ``G_synthesis/dlatents_in``; ``dlatent_avg`` (a Const once frozen).
* per layer ``S/weight``, ``S/mod_weight``, ``S/mod_bias``, ``S/bias``, ``S/noise_strength``;
  noise ``S/random_normal/RandomStandardNormal`` (random) or ``G_synthesis/noiseK`` (constant).
* running skip image at each resolution: ``meta["skip_images"][R]``. For R > 4 it is the
  ``AddV2`` in scope ``G_synthesis/RxR/ToRGB`` whose inputs are ``G_synthesis/RxR/Upsample/...``
  (the up-sampled previous image) and the ToRGB bias output; at 4x4 it is the ToRGB bias
  output itself. Cutting the graph there gives the R x R generator.
* modulated conv pieces per layer (``meta["layers"][i]``): ``style`` (``s``), ``demod``
  (``Rsqrt``), ``conv_weight`` (the run-time grouped weight in the fused form), ``conv``
  (the ``Conv2D``/``Conv2DBackpropInput`` node).

:attr:`BuiltModel.meta` lists these per layer (``meta["layers"]``, ``meta["torgb"]``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from graphsurgery.zoo import (
    BuiltModel,
    ResolutionMixin,
    given_value,
    register_presets,
    sgops,
)
from graphsurgery.zoo._lazy import tf, v1


@dataclass(frozen=True)
class StyleGAN2Config(ResolutionMixin):
    """Hyper-parameters of a StyleGAN2 ``Gs`` (defaults: config-f at 1024 px)."""

    resolution: int = 1024
    fmap_base: int = 16 << 10
    fmap_max: int = 512
    fmap_min: int = 1
    fmap_decay: float = 1.0
    latent_size: int = 512
    dlatent_size: int = 512
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lrmul: float = 0.01
    num_channels: int = 3
    batch: int | None = None
    architecture: str = "skip"  # "skip" | "orig" | "resnet"
    fused_modconv: bool = True
    impl: str = "ref"  # "ref" | "cuda"
    randomize_noise: bool = True
    truncation_psi: float | None = 0.5
    truncation_cutoff: int | None = None
    resample_kernel: tuple[int, ...] = (1, 3, 3, 1)
    seed: int = 0

    def nf(self, stage: int) -> int:
        """Feature maps at ``stage`` (``fmap_base / 2**stage`` clipped to [min, max])."""
        return int(np.clip(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))),
                           self.fmap_min, self.fmap_max))

    def validate(self) -> None:
        """Raise ``ValueError`` on an impossible configuration."""
        r = self.resolution
        if r < 8 or r > 1024 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two in [8, 1024], got {r}")
        if self.architecture not in ("skip", "orig", "resnet"):
            raise ValueError(f"unknown architecture {self.architecture!r}")
        if self.impl not in ("ref", "cuda"):
            raise ValueError(f"unknown impl {self.impl!r}")


class _Params:
    """Creates ref variables and remembers the numpy values to load into them."""

    def __init__(self, seed: int, given: Mapping[str, np.ndarray] | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.given = given  # variable name -> value: used instead of random draws
        self.values: list[tuple[Any, np.ndarray]] = []
        self.num_trainable = 0

    def get(self, name: str, shape: list[int], std: float = 1.0, mean: float = 0.0,
            trainable: bool = True) -> tf.Tensor:
        if self.given is None:
            value = (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
                     + np.float32(mean))
        var = v1.get_variable(name, shape=shape, dtype=tf.float32,
                               initializer=v1.zeros_initializer(), trainable=trainable,
                               use_resource=False)
        if self.given is not None:
            value = given_value(self.given, var.op.name, shape)
        self.values.append((var, value))
        if trainable:
            self.num_trainable += int(np.prod(shape))
        return var

    def load(self, sess: Any) -> None:
        feed = {var.initializer.inputs[1]: value for var, value in self.values}
        sess.run([var.initializer for var, _ in self.values], feed_dict=feed)


class _Builder:
    def __init__(self, cfg: StyleGAN2Config,
                 values: Mapping[str, np.ndarray] | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.p = _Params(cfg.seed, values)
        self.layers: list[dict[str, Any]] = []
        self.torgb_info: list[dict[str, Any]] = []
        self.skip_images: dict[int, str] = {}

    # -- layers in the original's style (variables in the current variable scope) --

    def get_weight(self, shape: list[int], gain: float = 1.0, lrmul: float = 1.0,
                   weight_var: str = "weight") -> tf.Tensor:
        fan_in = int(np.prod(shape[:-1]))
        he_std = gain / np.sqrt(fan_in)
        w = self.p.get(weight_var, shape, std=1.0 / lrmul)
        return w * np.float32(he_std * lrmul)

    def dense(self, x: tf.Tensor, fmaps: int, lrmul: float = 1.0,
              weight_var: str = "weight") -> tf.Tensor:
        if x.shape.rank > 2:
            x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
        w = self.get_weight([int(x.shape[1]), fmaps], lrmul=lrmul, weight_var=weight_var)
        return tf.matmul(x, w)

    def bias_act(self, x: tf.Tensor, act: str = "linear", lrmul: float = 1.0,
                 bias_var: str = "bias") -> tf.Tensor:
        # The original initialises biases to zero; trained models have non-zero ones, so the
        # fixtures draw small values (effective std 0.1) to make the bias path observable.
        b = self.p.get(bias_var, [int(x.shape[1])], std=0.1 / lrmul) * np.float32(lrmul)
        return sgops.fused_bias_act(x, b, act=act, impl=self.cfg.impl)

    def modconv(self, x: tf.Tensor, y: tf.Tensor, fmaps: int, kernel: int, up: bool = False,
                demodulate: bool = True) -> tuple[tf.Tensor, dict[str, Any]]:
        cfg = self.cfg
        w = self.get_weight([kernel, kernel, int(x.shape[1]), fmaps])
        s = self.dense(y, fmaps=int(x.shape[1]), weight_var="mod_weight")
        s = self.bias_act(s, bias_var="mod_bias") + 1
        parts = sgops.ModConvParts()
        out = sgops.modulated_conv2d(x, w, s, demodulate=demodulate, fused=cfg.fused_modconv,
                                     up=up, resample_kernel=cfg.resample_kernel, impl=cfg.impl,
                                     parts=parts)
        scope = v1.get_variable_scope().name
        info = {
            "weight": f"{scope}/weight", "mod_weight": f"{scope}/mod_weight",
            "mod_bias": f"{scope}/mod_bias", "effective_weight": w.name, "style": s.name,
            "demod": parts.d.name if parts.d is not None else None,
            "conv_weight": parts.weight.name, "conv": parts.conv.op.name,
            "conv_op": parts.conv.op.type, "modconv_out": out.name,
        }
        return out, info

    def layer(self, x: tf.Tensor, dl: tf.Tensor, layer_idx: int, fmaps: int, kernel: int,
              noise_inputs: list[tf.Tensor], up: bool = False) -> tf.Tensor:
        cfg = self.cfg
        x, info = self.modconv(x, dl[:, layer_idx], fmaps=fmaps, kernel=kernel, up=up)
        if cfg.randomize_noise:
            noise = tf.random.normal([tf.shape(x)[0], 1, x.shape[2], x.shape[3]], dtype=x.dtype)
            noise_node = noise.op.inputs[0].op.inputs[0].op.name  # RandomStandardNormal
        else:
            noise = tf.convert_to_tensor(noise_inputs[layer_idx])  # the variable's read
            noise_node = f"G_synthesis/noise{layer_idx}"  # a Const once frozen
        strength = self.p.get("noise_strength", [], std=0.1)
        x += noise * strength
        x = self.bias_act(x, act="lrelu")
        scope = v1.get_variable_scope().name
        info.update(layer_idx=layer_idx, scope=scope, res=int(x.shape[2]), kernel=kernel,
                    up=up, fmaps=fmaps, noise=noise.name, noise_node=noise_node,
                    noise_strength=f"{scope}/noise_strength", bias=f"{scope}/bias",
                    out=x.name)
        self.layers.append(info)
        return x

    def torgb(self, x: tf.Tensor, y: tf.Tensor | None, dl: tf.Tensor, res: int) -> tf.Tensor:
        cfg = self.cfg
        with v1.variable_scope("ToRGB"):
            t, info = self.modconv(x, dl[:, res * 2 - 3], fmaps=cfg.num_channels, kernel=1,
                                   demodulate=False)
            t = self.bias_act(t)
            out = t if y is None else y + t
            info.update(layer_idx=res * 2 - 3, scope=v1.get_variable_scope().name,
                        res=2**res, rgb=t.name, out=out.name)
            self.torgb_info.append(info)
            return out

    # -- networks --

    def mapping_layers(self, x: tf.Tensor) -> tf.Tensor:
        """The mapping's dense layers on the normalised input, broadcast to every layer
        (``dlatents_out``); called inside the ``G_mapping`` scope."""
        cfg = self.cfg
        for layer_idx in range(cfg.mapping_layers):
            with v1.variable_scope(f"Dense{layer_idx}"):
                last = layer_idx == cfg.mapping_layers - 1
                fmaps = cfg.dlatent_size if last else cfg.mapping_fmaps
                x = self.dense(x, fmaps, lrmul=cfg.mapping_lrmul)
                x = self.bias_act(x, act="lrelu", lrmul=cfg.mapping_lrmul)
        with v1.variable_scope("Broadcast"):
            x = tf.tile(x[:, tf.newaxis], [1, cfg.num_layers, 1])
        return tf.identity(x, name="dlatents_out")

    def mapping(self, latents_in: tf.Tensor, labels_in: tf.Tensor) -> tf.Tensor:
        with v1.variable_scope("G_mapping"):
            x = tf.identity(latents_in, name="latents_in")
            tf.identity(labels_in, name="labels_in")  # label_size 0: unused, as in Gs
            with v1.variable_scope("Normalize"):
                x = sgops.pixel_norm(x)
            return self.mapping_layers(x)

    def truncation(self, dlatents: tf.Tensor, dlatent_avg: tf.Tensor) -> tf.Tensor:
        cfg = self.cfg
        if cfg.truncation_psi is None:
            return dlatents
        with v1.variable_scope("Truncation"):
            layer_idx = np.arange(cfg.num_layers)[np.newaxis, :, np.newaxis]
            layer_psi = np.ones(layer_idx.shape, dtype=np.float32)
            if cfg.truncation_cutoff is None:
                layer_psi *= np.float32(cfg.truncation_psi)
            else:
                layer_psi = v1.where(layer_idx < cfg.truncation_cutoff,
                                      layer_psi * np.float32(cfg.truncation_psi), layer_psi)
            return sgops.lerp(dlatent_avg, dlatents, layer_psi)

    def synthesis(self, dlatents: tf.Tensor) -> tf.Tensor:
        cfg = self.cfg
        nf = cfg.nf
        rlog2 = cfg.resolution_log2
        arch = cfg.architecture
        with v1.variable_scope("G_synthesis"):
            dl = tf.identity(dlatents, name="dlatents_in")
            dl.set_shape([cfg.batch, cfg.num_layers, cfg.dlatent_size])
            noise_inputs = []
            for layer_idx in range(cfg.num_layers - 1):
                res = (layer_idx + 5) // 2
                noise_inputs.append(self.p.get(f"noise{layer_idx}", [1, 1, 2**res, 2**res],
                                               trainable=False))

            y = None
            with v1.variable_scope("4x4"):
                with v1.variable_scope("Const"):
                    x = self.p.get("const", [1, nf(1), 4, 4])
                    x = tf.tile(x, [tf.shape(dl)[0], 1, 1, 1])
                with v1.variable_scope("Conv"):
                    x = self.layer(x, dl, 0, nf(1), 3, noise_inputs)
                if arch == "skip":
                    y = self.torgb(x, y, dl, 2)
                    self.skip_images[4] = y.name

            for res in range(3, rlog2 + 1):
                with v1.variable_scope(f"{2**res}x{2**res}"):
                    t = x
                    with v1.variable_scope("Conv0_up"):
                        x = self.layer(x, dl, res * 2 - 5, nf(res - 1), 3, noise_inputs,
                                       up=True)
                    with v1.variable_scope("Conv1"):
                        x = self.layer(x, dl, res * 2 - 4, nf(res - 1), 3, noise_inputs)
                    if arch == "resnet":
                        with v1.variable_scope("Skip"):
                            w = self.get_weight([1, 1, int(t.shape[1]), nf(res - 1)])
                            t = sgops.upsample_conv_2d(t, w, k=cfg.resample_kernel,
                                                       impl=cfg.impl)
                            x = (x + t) * np.float32(1 / np.sqrt(2))
                    if arch == "skip":
                        with v1.variable_scope("Upsample"):
                            y = sgops.upsample_2d(y, k=cfg.resample_kernel, impl=cfg.impl)
                    if arch == "skip" or res == rlog2:
                        y = self.torgb(x, y, dl, res)
                        if arch == "skip":
                            self.skip_images[2**res] = y.name
            return tf.identity(y, name="images_out")

    def build(self) -> tuple[Any, dict[str, Any]]:
        cfg = self.cfg
        graph = tf.Graph()
        with graph.as_default():
            latents_in = v1.placeholder(tf.float32, [cfg.batch, cfg.latent_size],
                                         name="latents_in")
            labels_in = v1.placeholder(tf.float32, [cfg.batch, 0], name="labels_in")
            dlatent_avg = self.p.get("dlatent_avg", [cfg.dlatent_size], std=0.5,
                                     trainable=False)
            dlatents = self.mapping(latents_in, labels_in)
            dlatents = self.truncation(dlatents, dlatent_avg)
            images = self.synthesis(dlatents)
            tf.identity(images, name="images_out")

        frozen, standins = sgops.freeze(graph, self.p, ["images_out", "labels_in"])
        return frozen, self.meta(standins)

    def meta(self, standins: list[sgops.CustomOpStandIn]) -> dict[str, Any]:
        cfg = self.cfg
        d = asdict(cfg)
        d["resample_kernel"] = list(cfg.resample_kernel)
        return {
            "kind": "stylegan2",
            "resolution": cfg.resolution,
            "num_layers": cfg.num_layers,
            "architecture": cfg.architecture,
            "fused_modconv": cfg.fused_modconv,
            "impl": cfg.impl,
            "randomize_noise": cfg.randomize_noise,
            "truncation_psi": cfg.truncation_psi,
            "truncation_cutoff": cfg.truncation_cutoff,
            "latent_size": cfg.latent_size,
            "dlatent_size": cfg.dlatent_size,
            "num_params": self.p.num_trainable,
            "config": d,
            "mapping_output": "G_mapping/dlatents_out:0",
            "dlatents": "G_synthesis/dlatents_in:0",
            "dlatent_avg": "dlatent_avg",
            "layers": self.layers,
            "torgb": self.torgb_info,
            "skip_images": dict(self.skip_images),
            "noise_nodes": [layer["noise_node"] for layer in self.layers],
            "custom_ops": [{"name": r.name, "op": r.op} for r in standins],
        }


def build_gs(cfg: StyleGAN2Config,
             values: Mapping[str, np.ndarray] | None = None) -> BuiltModel:
    """Build and freeze a StyleGAN2 ``Gs`` graph for ``cfg``.

    ``values`` (variable name -> array, e.g. from an NVlabs pickle) replaces the random
    weights: a missing name is a ``KeyError`` naming it, a wrong shape a ``ValueError``;
    ``meta["variables"]`` lists every variable the graph was built from. With ``values``
    the graph is frozen without a session (:func:`freeze_given`) and ``graph_def`` is
    graphsurgery's own GraphDef (``graphsurgery.ir.proto``) rather than TensorFlow's.
    """
    t0 = time.perf_counter()
    builder = _Builder(cfg, values)
    graph_def, meta = builder.build()
    meta["variables"] = {var.op.name: list(value.shape) for var, value in builder.p.values}
    meta["build_seconds"] = round(time.perf_counter() - t0, 3)
    meta["num_nodes"] = len(graph_def.node)
    return BuiltModel(inputs=["latents_in:0", "labels_in:0"], outputs=["images_out:0"],
                      graph_def=graph_def, meta=meta)


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

TINY = StyleGAN2Config(resolution=16, fmap_base=64, fmap_max=16, latent_size=16,
                       dlatent_size=16, mapping_layers=2, mapping_fmaps=16,
                       truncation_cutoff=4)
MID_256 = StyleGAN2Config(resolution=256, fmap_base=2048, fmap_max=128, latent_size=128,
                          dlatent_size=128, mapping_layers=8, mapping_fmaps=128,
                          truncation_cutoff=8)
CONFIG_F = StyleGAN2Config(truncation_cutoff=8)

PRESETS: dict[str, StyleGAN2Config] = {
    "sg2-tiny": TINY,
    "sg2-tiny-orig": replace(TINY, architecture="orig"),
    "sg2-tiny-resnet": replace(TINY, architecture="resnet"),
    "sg2-tiny-nonfused": replace(TINY, fused_modconv=False),
    "sg2-tiny-cuda": replace(TINY, impl="cuda"),
    "sg2-tiny-const-noise": replace(TINY, randomize_noise=False),
    "sg2-256": MID_256,
    "sg2-256-cuda": replace(MID_256, impl="cuda"),
    "sg2-1024": CONFIG_F,
    "sg2-1024-cuda": replace(CONFIG_F, impl="cuda"),
}

_DESCRIPTIONS = {
    "sg2-tiny": "StyleGAN2 16px, skip, fused modconv, ref ops, random noise, tiny widths",
    "sg2-tiny-orig": "StyleGAN2 16px, orig architecture (one ToRGB at the end)",
    "sg2-tiny-resnet": "StyleGAN2 16px, resnet architecture (1x1 up-conv skips)",
    "sg2-tiny-nonfused": "StyleGAN2 16px, fused_modconv=False (x*s -> conv(const W) -> x*d)",
    "sg2-tiny-cuda": "StyleGAN2 16px with the FusedBiasAct/UpFirDn2D custom ops",
    "sg2-tiny-const-noise": "StyleGAN2 16px, randomize_noise=False (frozen constant noise)",
    "sg2-256": "StyleGAN2 256px, skip, fused, ref ops, narrow (fmap_base 2048, max 128)",
    "sg2-256-cuda": "StyleGAN2 256px narrow, with the custom ops",
    "sg2-1024": "StyleGAN2 config-f 1024px (30M params), skip, fused, ref ops",
    "sg2-1024-cuda": "StyleGAN2 config-f 1024px with the custom ops (as in released pickles)",
}


register_presets(PRESETS, _DESCRIPTIONS, build_gs,
                 full_size=[n for n in PRESETS if n.startswith("sg2-1024")])
