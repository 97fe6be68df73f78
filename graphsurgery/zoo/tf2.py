"""A TF2 StyleGAN2 synthesis network exported as a SavedModel.

The kind of model a TF2 port of StyleGAN2 produces: a ``tf.Module`` whose ``tf.function``
maps ``dlatents`` ``[N, num_layers, dlatent_size]`` to ``images`` ``[N, 3, R, R]`` (NCHW at the
boundary, to mirror the original; NHWC inside so that it runs on CPU). It keeps the StyleGAN2
maths: equalised learning rate (stored weight times a run-time coefficient), modulated
convolutions with demodulation, the 2x up-sampling convolution as a stride-2 transposed
convolution followed by a [1,3,3,1] FIR filter, constant per-layer noise times a scalar
strength, bias + leaky ReLU * sqrt(2), and the skip architecture (``ToRGB`` per resolution
added to the up-sampled running image).

Modulated convolutions without up-sampling use the fused form when ``fused_modconv`` is set
(batch folded into channels, one grouped ``Conv2D`` with a weight computed at run time);
the up-sampling ones always use the per-sample form ``x * s -> conv(W) -> x * d``, because
TensorFlow's CPU kernels reject grouped transposed convolutions.

The serving signature is ``serving_default(dlatents) -> {"images": ...}``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from graphsurgery.zoo import BuiltModel, ResolutionMixin, register_presets
from graphsurgery.zoo._lazy import tf

SIGNATURE = "serving_default"
INPUT_KEY = "dlatents"
OUTPUT_KEY = "images"


@dataclass(frozen=True)
class TF2SynthesisConfig(ResolutionMixin):
    """Hyper-parameters of the TF2 synthesis network."""

    resolution: int = 16
    fmap_base: int = 64
    fmap_max: int = 16
    fmap_min: int = 1
    dlatent_size: int = 16
    num_channels: int = 3
    fused_modconv: bool = True
    resample_kernel: tuple[int, ...] = (1, 3, 3, 1)
    seed: int = 0

    def nf(self, stage: int) -> int:
        """Feature maps at ``stage``."""
        return int(np.clip(int(self.fmap_base / 2.0**stage), self.fmap_min, self.fmap_max))


def build_tf2_savedmodel(cfg: TF2SynthesisConfig, export_dir: Path | None = None) -> BuiltModel:
    """Build the TF2 synthesis network for ``cfg`` and save it as a SavedModel."""
    if not tf.executing_eagerly():
        raise RuntimeError("build_tf2_savedmodel needs eager execution (not inside a tf.Graph)")
    from graphsurgery.zoo.tf2_module import StyleGAN2SynthesisTF2

    t0 = time.perf_counter()
    module = StyleGAN2SynthesisTF2(cfg)
    spec = tf.TensorSpec([None, cfg.num_layers, cfg.dlatent_size], tf.float32, name=INPUT_KEY)

    @tf.function(input_signature=[spec])
    def serve(dlatents: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_KEY: module.forward(dlatents)}

    module.serve = serve
    if export_dir is None:
        export_dir = Path(tempfile.mkdtemp(prefix="graphsurgery-tf2-"))
        atexit.register(shutil.rmtree, export_dir, True)
    tf.saved_model.save(module, str(export_dir), signatures={SIGNATURE: serve})
    num_params = sum(int(np.prod(v.shape)) for v in module.trainable_variables)
    meta = {
        "kind": "stylegan2-tf2",
        "resolution": cfg.resolution,
        "num_layers": cfg.num_layers,
        "dlatent_size": cfg.dlatent_size,
        "architecture": "skip",
        "fused_modconv": cfg.fused_modconv,
        "randomize_noise": False,
        "layout": "NCHW",
        "signature": SIGNATURE,
        "input_key": INPUT_KEY,
        "output_key": OUTPUT_KEY,
        "num_params": num_params,
        "config": {**asdict(cfg), "resample_kernel": list(cfg.resample_kernel)},
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    return BuiltModel(inputs=[INPUT_KEY], outputs=[OUTPUT_KEY], saved_model_dir=export_dir,
                      meta=meta)


PRESETS: dict[str, TF2SynthesisConfig] = {
    "tf2-tiny-savedmodel": TF2SynthesisConfig(),
    "tf2-256-savedmodel": TF2SynthesisConfig(resolution=256, fmap_base=2048, fmap_max=128,
                                             dlatent_size=128),
}

_DESCRIPTIONS = {
    "tf2-tiny-savedmodel": "TF2 tf.Module StyleGAN2 synthesis 16px (SavedModel, NCHW output)",
    "tf2-256-savedmodel": "TF2 tf.Module StyleGAN2 synthesis 256px narrow (SavedModel)",
}


register_presets(PRESETS, _DESCRIPTIONS, build_tf2_savedmodel)
