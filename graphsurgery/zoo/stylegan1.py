"""StyleGAN (v1) ``Gs`` generator graphs, rebuilt from scratch with fixed-seed random weights.

The builder reproduces the structure of the graph that the original TensorFlow 1 code freezes
(see ``shared/reference/stylegan-graphs.md``), written independently from those facts:

* mapping network ``G_mapping``: pixel norm, ``Dense<i>`` layers with equalised learning rate
  (stored weight ~ N(0, 1/lrmul) multiplied at run time by ``he_std * lrmul``, lrmul 0.01),
  leaky ReLU 0.2 (``Maximum(x, x * 0.2)`` inside a ``tf.custom_gradient``) then ``* sqrt(2)``,
  and the broadcast ``tile(x[:, newaxis], [1, num_layers, 1])``;
* truncation ``lerp(dlatent_avg, dlatents, where(layer_idx < cutoff, psi, 1))``;
* the training leftover ``Assign`` of ``lod`` that every synthesis op depends on (so a frozen
  graph fails ``import_graph_def`` with "... incompatible with expected float_ref");
* synthesis network ``G_synthesis`` in NCHW: learned constant tiled over the batch, per-layer
  conv -> noise -> bias -> leaky ReLU -> instance norm -> style modulation, 6-D nearest
  upscale and a depthwise blur (both wrapped in ``tf.custom_gradient`` so ``IdentityN`` nodes
  appear), fused ``Conv2DBackpropInput`` up-convolution from 128 px up, ``ToRGB_lod<k>``;
* progressive growing selected by a scalar ``lod`` variable, either with nested v1 ``tf.cond``
  (``structure="recursive"``: ``Switch``/``Merge`` nodes) or with ``lerp_clip`` blending
  (``structure="linear"``).

Only variable initialisation and freezing run in a session: the NCHW convolutions cannot run
on a CPU, so the forward pass is never executed here.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from graphsurgery.tfcompat import control_flow_v1
from graphsurgery.zoo import (
    BuiltModel,
    ResolutionMixin,
    freeze_given,
    given_value,
    register_presets,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Input and output tensor names of every graph this module builds.
INPUTS = ["latents_in:0", "labels_in:0"]
OUTPUTS = ["images_out:0"]
#: The (truncated) dlatents fed to the synthesis network, where a pipeline may cut the graph.
DLATENTS_TENSOR = "G_synthesis/dlatents_in:0"
#: The mapping network's own output (before truncation).
MAPPING_OUTPUT = "G_mapping/dlatents_out:0"

# Standard deviations (at run time) of the parameters that the original code initialises to
# zero or one; trained generators have non-trivial values there, so the fixtures do too.
_BIAS_STD = 0.1
_NOISE_WEIGHT_STD = 0.1
_DLATENT_AVG_STD = 0.1


@dataclass(frozen=True)
class StyleGAN1Config(ResolutionMixin):
    """Hyper-parameters of a StyleGAN (v1) ``Gs`` graph.

    ``nf(stage) = min(int(fmap_base / 2 ** (stage * fmap_decay)), fmap_max)`` feature maps at
    resolution ``2 ** (stage + 1)``. ``batch=None`` gives the placeholders a dynamic batch
    dimension. ``use_fused_scale="auto"`` fuses upscale and convolution into
    ``Conv2DBackpropInput`` for output resolutions of 128 px and more. ``lod`` is the initial
    value of the level-of-detail variables (0 = full resolution). ``explicit_mapping_gain``
    applies the mapping layers' sqrt(2) gain as a ``Mul`` after the leaky ReLU (as the
    reference notes describe) instead of folding it into the weight scale.
    """

    resolution: int = 1024
    fmap_base: int = 8192
    fmap_max: int = 512
    fmap_decay: float = 1.0
    latent_size: int = 512
    dlatent_size: int = 512
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lrmul: float = 0.01
    batch: int | None = None
    structure: str = "recursive"
    randomize_noise: bool = True
    truncation_psi: float | None = 0.7
    truncation_cutoff: int | None = 8
    use_fused_scale: bool | str = "auto"
    lod: float = 0.0
    explicit_mapping_gain: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        log2 = int(round(math.log2(self.resolution))) if self.resolution > 0 else 0
        if self.resolution != 2**log2 or not 8 <= self.resolution <= 1024:
            raise ValueError(f"resolution must be a power of two in 8..1024, not {self.resolution}")
        if self.structure not in ("recursive", "linear"):
            raise ValueError(f"structure must be 'recursive' or 'linear', not {self.structure!r}")
        if self.use_fused_scale not in ("auto", True, False):
            raise ValueError(
                f"use_fused_scale must be 'auto', True or False, not {self.use_fused_scale!r}"
            )
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch must be None or positive, not {self.batch}")
        if self.mapping_layers < 1:
            raise ValueError("mapping_layers must be at least 1")
        if min(self.fmap_base, self.fmap_max, self.latent_size, self.dlatent_size) < 1:
            raise ValueError("fmap_base, fmap_max, latent_size and dlatent_size must be positive")

    def nf(self, stage: int) -> int:
        """Feature maps at ``stage`` (resolution ``2 ** (stage + 1)``), at least 1."""
        return max(min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max), 1)

    def fused_at(self, out_res: int) -> bool:
        """Whether the up-convolution producing ``out_res`` pixels is fused."""
        if self.use_fused_scale == "auto":
            return out_res >= 128
        return bool(self.use_fused_scale)


class _GsBuilder:
    """Builds the ``Gs`` graph for one config into the current default graph."""

    def __init__(self, cfg: StyleGAN1Config,
                 values: Mapping[str, np.ndarray] | None = None) -> None:
        import tensorflow as tf

        self.tf = tf
        self.v1 = tf.compat.v1
        self.cfg = cfg
        self.given = values  # variable name -> value: used instead of random draws
        self.variables: dict[str, Any] = {}
        self.noise_nodes: list[str] = []

    # ----------------------------------------------------------------- parameters
    def variable(
        self, name: str, shape: list[int], std: float, *, mean: float = 0.0, trainable: bool = True
    ) -> Any:
        """A reference variable (``VariableV2``) with fixed-seed N(mean, std) initial values.

        Values depend only on the seed and the variable's full name, never on build order. The
        variable is created outside any control-flow context so that uses inside a ``tf.cond``
        branch go through ``Switch`` nodes, as in graphs built from a template network.
        """
        scope = self.v1.get_variable_scope().name
        full = f"{scope}/{name}" if scope else name
        if full in self.variables:
            return self.variables[full]
        if self.given is not None:  # checked now, frozen in later (freeze_given)
            given_value(self.given, full, shape)
            init: Any = self.v1.zeros_initializer()
        else:
            rng = np.random.default_rng([self.cfg.seed, zlib.crc32(full.encode())])
            init = (rng.standard_normal(shape).astype(np.float32) * np.float32(std)
                    + np.float32(mean))
        with self.tf.control_dependencies(None):
            var = self.v1.get_variable(
                name, shape=shape if self.given is not None else None, initializer=init,
                dtype=self.tf.float32, trainable=trainable, use_resource=False
            )
        self.variables[full] = var
        return var

    def weight(self, shape: list[int], gain: float, lrmul: float = 1.0) -> Any:
        """Equalised-learning-rate weight: stored N(0, 1/lrmul), times ``he_std * lrmul``."""
        fan_in = int(np.prod(shape[:-1]))
        he_std = gain / math.sqrt(fan_in)
        return self.variable("weight", shape, 1.0 / lrmul) * (he_std * lrmul)

    def apply_bias(self, x: Any, lrmul: float = 1.0) -> Any:
        """``x + b`` (dense) or ``x + reshape(b, [1, -1, 1, 1])`` (NCHW), ``b = bias * lrmul``."""
        channels = int(x.shape[1])
        b = self.variable("bias", [channels], _BIAS_STD / lrmul) * lrmul
        if x.shape.rank == 2:
            return x + b
        return x + self.tf.reshape(b, [1, -1, 1, 1])

    # ----------------------------------------------------------------- layers
    def dense(self, x: Any, fmaps: int, gain: float, lrmul: float = 1.0) -> Any:
        """Fully connected layer with an equalised-learning-rate weight."""
        tf = self.tf
        if x.shape.rank > 2:
            x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
        w = self.weight([int(x.shape[1]), fmaps], gain, lrmul)
        return tf.matmul(x, w)

    def conv2d(self, x: Any, fmaps: int, kernel: int, gain: float) -> Any:
        """SAME NCHW convolution with an equalised-learning-rate weight."""
        w = self.weight([kernel, kernel, int(x.shape[1]), fmaps], gain)
        return self.v1.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME", data_format="NCHW")

    def leaky_relu(self, x: Any, alpha: float = 0.2) -> Any:
        """``Maximum(x, x * alpha)`` wrapped in a custom gradient (leaves an ``IdentityN``)."""
        tf = self.tf
        with self.v1.variable_scope("LeakyReLU"):
            alpha_t = tf.constant(alpha, dtype=x.dtype, name="alpha")

            @tf.custom_gradient
            def func(x: Any) -> Any:
                y = tf.maximum(x, x * alpha_t)

                def grad(dy: Any) -> Any:
                    return self.v1.where(y >= 0, dy, dy * alpha_t)

                return y, grad

            return func(x)

    def _upscale(self, x: Any, factor: int) -> Any:
        tf = self.tf
        c, h, w = (int(d) for d in x.shape[1:])
        x = tf.reshape(x, [-1, c, h, 1, w, 1])
        x = tf.tile(x, [1, 1, 1, factor, 1, factor])
        return tf.reshape(x, [-1, c, h * factor, w * factor])

    def _downscale(self, x: Any, factor: int) -> Any:
        # Gradient of the nearest upscale: sum over each factor x factor block.
        tf = self.tf
        c, h, w = (int(d) for d in x.shape[1:])
        x = tf.reshape(x, [-1, c, h // factor, factor, w // factor, factor])
        return tf.reduce_sum(x, axis=[3, 5])

    def upscale2d(self, x: Any, factor: int = 2) -> Any:
        """Nearest-neighbour upscale in 6-D (reshape, tile, reshape) in a custom gradient."""
        if factor == 1:
            return x
        tf = self.tf
        with self.v1.variable_scope("Upscale2D"):

            @tf.custom_gradient
            def func(x: Any) -> Any:
                def grad(dy: Any) -> Any:
                    return self._downscale(dy, factor)

                return self._upscale(x, factor), grad

            return func(x)

    def _blur(self, x: Any, flip: bool = False) -> Any:
        tf = self.tf
        f = np.array([1.0, 2.0, 1.0], dtype=np.float32)
        f = f[:, np.newaxis] * f[np.newaxis, :]
        f /= f.sum()
        if flip:
            f = f[::-1, ::-1]
        f = np.tile(f[:, :, np.newaxis, np.newaxis], [1, 1, int(x.shape[1]), 1])
        kernel = tf.constant(f, dtype=x.dtype, name="filter")
        return self.v1.nn.depthwise_conv2d_native(
            x, kernel, strides=[1, 1, 1, 1], padding="SAME", data_format="NCHW"
        )

    def blur2d(self, x: Any) -> Any:
        """3x3 [1,2,1] x [1,2,1] / 16 depthwise NCHW blur in a custom gradient."""
        tf = self.tf
        with self.v1.variable_scope("Blur2D"):

            @tf.custom_gradient
            def func(x: Any) -> Any:
                def grad(dy: Any) -> Any:
                    return self._blur(dy, flip=True)

                return self._blur(x), grad

            return func(x)

    def upscale2d_conv2d(self, x: Any, fmaps: int, kernel: int, gain: float) -> Any:
        """Upscale then conv, or (from 128 px up) one fused stride-2 ``Conv2DBackpropInput``."""
        tf = self.tf
        out_res = int(x.shape[2]) * 2
        if not self.cfg.fused_at(out_res):
            return self.conv2d(self.upscale2d(x), fmaps, kernel, gain)
        w = self.weight([kernel, kernel, int(x.shape[1]), fmaps], gain)
        w = tf.transpose(w, [0, 1, 3, 2])  # [k, k, out, in]
        w = tf.pad(w, [[1, 1], [1, 1], [0, 0], [0, 0]], mode="CONSTANT")
        w = tf.add_n([w[1:, 1:], w[:-1, 1:], w[1:, :-1], w[:-1, :-1]])
        out_shape = [tf.shape(x)[0], fmaps, out_res, out_res]
        return self.v1.nn.conv2d_transpose(
            x, w, out_shape, strides=[1, 1, 2, 2], padding="SAME", data_format="NCHW"
        )

    def instance_norm(self, x: Any, epsilon: float = 1e-8) -> Any:
        """Subtract the spatial mean, multiply by ``rsqrt(mean(square) + eps)``."""
        tf = self.tf
        with self.v1.variable_scope("InstanceNorm"):
            x -= tf.reduce_mean(x, axis=[2, 3], keepdims=True)
            eps = tf.constant(epsilon, dtype=x.dtype, name="epsilon")
            x *= tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=[2, 3], keepdims=True) + eps)
            return x

    def pixel_norm(self, x: Any, epsilon: float = 1e-8) -> Any:
        """``x * rsqrt(mean(square(x), axis=1) + eps)``."""
        tf = self.tf
        with self.v1.variable_scope("PixelNorm"):
            eps = tf.constant(epsilon, dtype=x.dtype, name="epsilon")
            return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=1, keepdims=True) + eps)

    def style_mod(self, x: Any, dlatent: Any) -> Any:
        """``x * (style[:, 0] + 1) + style[:, 1]`` with a 5-D ``[-1, 2, C, 1, 1]`` style."""
        tf = self.tf
        channels = int(x.shape[1])
        with self.v1.variable_scope("StyleMod"):
            style = self.apply_bias(self.dense(dlatent, channels * 2, gain=1.0))
            style = tf.reshape(style, [-1, 2, channels, 1, 1])
            return x * (style[:, 0] + 1) + style[:, 1]

    def apply_noise(self, x: Any, layer_idx: int, noise_var: Any) -> Any:
        """Add per-pixel noise scaled by a per-channel weight."""
        tf = self.tf
        h, w = int(x.shape[2]), int(x.shape[3])
        with self.v1.variable_scope("Noise"):
            if noise_var is None:
                noise = self.v1.random_normal([tf.shape(x)[0], 1, h, w], dtype=x.dtype)
                self.noise_nodes.append(noise.op.inputs[0].op.inputs[0].op.name)
            else:
                noise = noise_var
            weight = self.variable("weight", [int(x.shape[1])], _NOISE_WEIGHT_STD)
            return x + noise * tf.reshape(weight, [1, -1, 1, 1])

    # ----------------------------------------------------------------- networks
    def mapping(self, latents_in: Any, labels_in: Any) -> Any:
        """``G_mapping``: Z [N, latent] -> W [N, num_layers, dlatent]."""
        tf, cfg = self.tf, self.cfg
        with self.v1.variable_scope("G_mapping"):
            x = tf.identity(latents_in, name="latents_in")
            tf.identity(labels_in, name="labels_in")
            x = self.pixel_norm(x)
            gain = 1.0 if cfg.explicit_mapping_gain else math.sqrt(2.0)
            for layer_idx in range(cfg.mapping_layers):
                with self.v1.variable_scope(f"Dense{layer_idx}"):
                    last = layer_idx == cfg.mapping_layers - 1
                    fmaps = cfg.dlatent_size if last else cfg.mapping_fmaps
                    x = self.dense(x, fmaps, gain=gain, lrmul=cfg.mapping_lrmul)
                    x = self.apply_bias(x, lrmul=cfg.mapping_lrmul)
                    x = self.leaky_relu(x)
                    if cfg.explicit_mapping_gain:
                        x = x * math.sqrt(2.0)
            with self.v1.variable_scope("Broadcast"):
                x = tf.tile(x[:, np.newaxis], [1, cfg.num_layers, 1])
            return tf.identity(x, name="dlatents_out")

    def truncation(self, dlatents: Any, dlatent_avg: Any) -> Any:
        """``lerp(dlatent_avg, dlatents, where(layer_idx < cutoff, psi, 1))``."""
        cfg = self.cfg
        if cfg.truncation_psi is None or cfg.truncation_cutoff is None:
            return dlatents
        with self.v1.variable_scope("Truncation"):
            layer_idx = np.arange(cfg.num_layers)[np.newaxis, :, np.newaxis]
            ones = np.ones(layer_idx.shape, dtype=np.float32)
            coefs = self.v1.where(
                layer_idx < cfg.truncation_cutoff, np.float32(cfg.truncation_psi) * ones, ones
            )
            return dlatent_avg + (dlatents - dlatent_avg) * coefs

    def synthesis(self, dlatents_in: Any, lod_in: Any) -> Any:
        """``G_synthesis`` body (inside its scope): W -> image [N, 3, R, R] NCHW."""
        tf, v1, cfg = self.tf, self.v1, self.cfg
        log2 = cfg.resolution_log2
        gain = math.sqrt(2.0)

        noise_vars: list[Any] = []
        if not cfg.randomize_noise:
            for layer_idx in range(cfg.num_layers):
                res = layer_idx // 2 + 2
                var = self.variable(
                    f"noise{layer_idx}", [1, 1, 2**res, 2**res], 1.0, trainable=False
                )
                noise_vars.append(var)
                self.noise_nodes.append(var.op.name)

        def epilogue(x: Any, layer_idx: int) -> Any:
            x = self.apply_noise(x, layer_idx, noise_vars[layer_idx] if noise_vars else None)
            x = self.apply_bias(x)
            x = self.leaky_relu(x)
            x = self.instance_norm(x)
            return self.style_mod(x, dlatents_in[:, layer_idx])

        with v1.variable_scope("4x4"):
            with v1.variable_scope("Const"):
                const = self.variable("const", [1, cfg.nf(1), 4, 4], 1.0)
                x = tf.tile(const, [tf.shape(dlatents_in)[0], 1, 1, 1])
                x = epilogue(x, 0)
            with v1.variable_scope("Conv"):
                x = epilogue(self.conv2d(x, cfg.nf(1), 3, gain), 1)

        def block(res: int, x: Any) -> Any:
            with v1.variable_scope(f"{2**res}x{2**res}"):
                with v1.variable_scope("Conv0_up"):
                    x = self.upscale2d_conv2d(x, cfg.nf(res - 1), 3, gain)
                    x = epilogue(self.blur2d(x), res * 2 - 4)
                with v1.variable_scope("Conv1"):
                    x = epilogue(self.conv2d(x, cfg.nf(res - 1), 3, gain), res * 2 - 3)
                return x

        def torgb(res: int, x: Any) -> Any:
            with v1.variable_scope(f"ToRGB_lod{log2 - res}"):
                return self.apply_bias(self.conv2d(x, 3, 1, gain=1.0))

        def lerp(a: Any, b: Any, t: Any) -> Any:
            return a + (b - a) * t

        if cfg.structure == "linear":
            img = torgb(2, x)
            for res in range(3, log2 + 1):
                lod = log2 - res
                x = block(res, x)
                y = torgb(res, x)
                img = self.upscale2d(img)
                with v1.variable_scope(f"Grow_lod{lod}"):
                    img = lerp(y, img, tf.clip_by_value(lod_in - lod, 0.0, 1.0))
            return img

        def cset(cur: Callable[[], Any], pred: Any, new: Callable[[], Any]) -> Callable[[], Any]:
            return lambda: v1.cond(pred, new, cur)

        def grow(x: Any, res: int, lod: int) -> Any:
            y = block(res, x)

            def plain() -> Any:
                return self.upscale2d(torgb(res, y), 2**lod)

            def blended() -> Any:
                low = self.upscale2d(torgb(res - 1, x))
                return self.upscale2d(lerp(torgb(res, y), low, lod_in - lod), 2**lod)

            img = cset(plain, lod_in > lod, blended)
            if lod > 0:
                img = cset(img, lod_in < lod, lambda: grow(y, res + 1, lod - 1))
            return img()

        return grow(x, 3, log2 - 3)

    def build(self) -> dict[str, Any]:
        """Build the whole ``Gs`` graph; returns the tensors of interest."""
        tf, v1, cfg = self.tf, self.v1, self.cfg
        latents_in = v1.placeholder(tf.float32, [cfg.batch, cfg.latent_size], name="latents_in")
        labels_in = v1.placeholder(tf.float32, [cfg.batch, 0], name="labels_in")
        lod_in = self.variable("lod", [], 0.0, mean=cfg.lod, trainable=False)
        dlatent_avg = self.variable(
            "dlatent_avg", [cfg.dlatent_size], _DLATENT_AVG_STD, trainable=False
        )

        dlatents = self.mapping(latents_in, labels_in)
        dlatents = self.truncation(dlatents, dlatent_avg)

        with v1.variable_scope("G_synthesis", auxiliary_name_scope=False):
            synth_lod = self.variable("lod", [], 0.0, mean=cfg.lod, trainable=False)
        # Training leftover: the wrapper copies its lod into the synthesis network's lod before
        # every evaluation; every synthesis op depends on it through control edges.
        assign = v1.assign(synth_lod, lod_in)
        with tf.control_dependencies([assign]):
            with v1.variable_scope("G_synthesis"):
                dl = tf.identity(dlatents, name="dlatents_in")
                dl.set_shape([cfg.batch, cfg.num_layers, cfg.dlatent_size])
                images = tf.identity(self.synthesis(dl, synth_lod), name="images_out")
        images_out = tf.identity(images, name="images_out")
        return {"images_out": images_out, "assign": assign, "dlatents": dl}


def _graph_parameters(graph_def: Any, names: set[str]) -> int:
    total = 0
    for node in graph_def.node:
        if node.op == "Const" and node.name in names:
            total += int(np.prod([d.size for d in node.attr["value"].tensor.tensor_shape.dim]))
    return total


def build_stylegan1(cfg: StyleGAN1Config | None = None,
                    values: Mapping[str, np.ndarray] | None = None) -> BuiltModel:
    """Build and freeze a StyleGAN (v1) ``Gs`` graph for ``cfg`` (default: full 1024 px).

    ``values`` (variable name -> array, e.g. from an NVlabs pickle) replaces the random
    weights: a missing name is a ``KeyError`` naming it, a wrong shape a ``ValueError``;
    ``meta["variables"]`` lists every variable the graph was built from. With ``values``
    the graph is frozen without a session (:func:`graphsurgery.zoo.freeze_given`) and
    ``graph_def`` is graphsurgery's own GraphDef (``graphsurgery.ir.proto``).
    """
    import tensorflow as tf

    cfg = cfg or StyleGAN1Config()
    graph = tf.Graph()
    with graph.as_default(), control_flow_v1():
        builder = _GsBuilder(cfg, values)
        tensors = builder.build()
        init = tf.compat.v1.global_variables_initializer()
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # convert_variables_to_constants' deprecation warnings
    try:
        if values is not None:  # given weights: frozen without a session, into our GraphDef
            graph_def = freeze_given(graph.as_graph_def(), values, ["images_out", "labels_in"])
        else:
            with tf.compat.v1.Session(graph=graph) as sess:
                sess.run(init)
                graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(
                    sess, graph.as_graph_def(), ["images_out", "labels_in"]
                )
    finally:
        logger.setLevel(level)
    var_names = {v.op.name for v in builder.variables.values()}
    frozen = {n.name for n in graph_def.node}
    meta: dict[str, Any] = {
        "kind": "stylegan1",
        "architecture": "progressive-growing",
        "resolution": cfg.resolution,
        "num_layers": cfg.num_layers,
        "structure": cfg.structure,
        "randomize_noise": cfg.randomize_noise,
        "latent_size": cfg.latent_size,
        "dlatent_size": cfg.dlatent_size,
        "batch": cfg.batch,
        "truncation_psi": cfg.truncation_psi,
        "truncation_cutoff": cfg.truncation_cutoff,
        "lod": cfg.lod,
        "fused_resolutions": [
            2**r for r in range(3, cfg.resolution_log2 + 1) if cfg.fused_at(2**r)
        ],
        "inputs": list(INPUTS),
        "outputs": list(OUTPUTS),
        "input_names": {"latents": INPUTS[0], "labels": INPUTS[1]},
        "output_names": {"images": OUTPUTS[0]},
        "dlatents_tensor": DLATENTS_TENSOR,
        "mapping_output": MAPPING_OUTPUT,
        "lod_nodes": ["lod", "G_synthesis/lod"],
        "assign_nodes": [tensors["assign"].op.name],
        "noise_nodes": [n for n in builder.noise_nodes if n in frozen],
        "num_params": _graph_parameters(graph_def, var_names & frozen),
        "config": asdict(cfg),
        "variables": {k: v.shape.as_list() for k, v in builder.variables.items()},
    }
    return BuiltModel(list(INPUTS), list(OUTPUTS), graph_def=graph_def, meta=meta)


_TINY = StyleGAN1Config(
    resolution=32,
    fmap_base=64,
    fmap_max=16,
    latent_size=16,
    dlatent_size=16,
    mapping_layers=3,
    mapping_fmaps=16,
    seed=1,
)

#: The configs behind the registered presets.
PRESETS: dict[str, StyleGAN1Config] = {
    "sg1-tiny": _TINY,
    "sg1-tiny-linear": replace(_TINY, structure="linear"),
    "sg1-tiny-const-noise": replace(_TINY, randomize_noise=False),
    "sg1-tiny-fused": replace(_TINY, resolution=128, fmap_base=256, mapping_layers=2),
    "sg1-256": StyleGAN1Config(
        resolution=256,
        fmap_base=2048,
        fmap_max=128,
        latent_size=128,
        dlatent_size=128,
        mapping_fmaps=128,
        seed=2,
    ),
    "sg1-1024": StyleGAN1Config(seed=3),
}


_DESCRIPTIONS = {
    "sg1-tiny":
        "StyleGAN v1 Gs, 32 px, tiny widths, recursive (Switch/Merge), random noise",
    "sg1-tiny-linear":
        "StyleGAN v1 Gs, 32 px, tiny widths, linear lerp_clip structure, random noise",
    "sg1-tiny-const-noise":
        "StyleGAN v1 Gs, 32 px, tiny widths, recursive, frozen constant noise",
    "sg1-tiny-fused":
        "StyleGAN v1 Gs, 128 px, tiny widths, fused Conv2DBackpropInput up-conv at 128 px",
    "sg1-256":
        "StyleGAN v1 Gs, 256 px, fmap_base 2048 / fmap_max 128, latent 128, recursive",
    "sg1-1024":
        "StyleGAN v1 Gs at full size: 1024 px, 8x512 mapping, ~26 M parameters, recursive",
}

register_presets(PRESETS, _DESCRIPTIONS, build_stylegan1, full_size={"sg1-1024"})
