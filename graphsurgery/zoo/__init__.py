"""The graph zoo: StyleGAN-family generator graphs built from scratch with fixed seeds.

Real generator graphs cannot ship with the repository, so the zoo rebuilds their structure
(see ``shared/reference/stylegan-graphs.md``) with random weights. Tiny presets build in
well under a second for tests; full-size presets are built on demand and cached under
``$GRAPHSURGERY_CACHE`` (default ``~/.cache/graphsurgery/zoo``), never committed.

Each builder module registers its presets with :func:`register` (a table of configs with
:func:`register_presets`).
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

_Config = TypeVar("_Config")


@dataclass
class BuiltModel:
    """What a builder returns.

    Exactly one of ``graph_def`` (a ``tf.compat.v1.GraphDef``) and ``saved_model_dir`` is set.
    ``inputs``/``outputs`` are tensor names (``"latents_in:0"``); ``meta`` records facts the
    tests and passes may rely on (``kind``, ``resolution``, ``num_layers``, ``architecture``,
    noise node names, ...).
    """

    inputs: list[str]
    outputs: list[str]
    graph_def: Any = None
    saved_model_dir: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class ResolutionMixin:
    """``resolution_log2`` and ``num_layers`` of a generator config with a power-of-two
    ``resolution`` field (every StyleGAN-family config of the zoo)."""

    resolution: int

    @property
    def resolution_log2(self) -> int:
        """log2 of the output resolution."""
        return int(np.log2(self.resolution))

    @property
    def num_layers(self) -> int:
        """Number of synthesis layers = dlatent rows, two per resolution from 4x4:
        ``2 * log2(R) - 2``."""
        return 2 * self.resolution_log2 - 2


def given_value(values: Mapping[str, Any], name: str, shape: Collection[int]) -> np.ndarray:
    """``values[name]`` as float32, for a builder built from given weights instead of random
    ones; a missing name is a ``KeyError(name)``, another shape a ``ValueError`` naming it."""
    if name not in values:
        raise KeyError(name)
    value = np.asarray(values[name])
    if list(value.shape) != [int(d) for d in shape]:
        raise ValueError(f"variable {name}: shape {list(value.shape)}, the network needs "
                         f"{[int(d) for d in shape]}")
    return value.astype(np.float32, copy=False)


def freeze_given(graph_def: Any, values: Mapping[str, np.ndarray], keep: list[str]) -> Any:
    """``convert_variables_to_constants`` without a session, for given values: the graph is
    cut to what ``keep`` needs and each ``VariableV2`` becomes a ``Const`` holding its value.

    Returns graphsurgery's own GraphDef (:mod:`graphsurgery.ir.proto`), with each weight
    copied once, straight into it: no variable buffers, no fetched copies, no serialised
    TensorFlow GraphDef in between.
    """
    from graphsurgery.ir import proto
    from graphsurgery.zoo._lazy import v1

    out = proto.from_tf(v1.graph_util.extract_sub_graph(graph_def, keep))  # no weights yet
    for node in out.node:
        if node.op == "VariableV2":
            value = np.asarray(values[node.name], dtype=np.float32, order="C")  # keeps 0-d
            dtype = node.attr["dtype"].type
            for key in [k for k in node.attr if k != "dtype"]:
                del node.attr[key]
            node.op = "Const"
            tensor = node.attr["value"].tensor
            tensor.dtype = dtype
            for d in value.shape:
                tensor.tensor_shape.dim.add().size = d
            tensor.tensor_content = value.tobytes()
    return out


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    builder: Callable[[], BuiltModel]
    full_size: bool = False

    @property
    def suffix(self) -> str:
        return "" if self.name.endswith("-savedmodel") else ".pb"


_REGISTRY: dict[str, ZooEntry] = {}
_BUILDER_MODULES = ("stylegan1", "stylegan2", "tf2", "ada", "progan", "tf2_port",
                    "families")


def register(
    name: str, description: str, *, full_size: bool = False
) -> Callable[[Callable[[], BuiltModel]], Callable[[], BuiltModel]]:
    """Decorator registering a zero-argument builder under ``name``."""

    def deco(fn: Callable[[], BuiltModel]) -> Callable[[], BuiltModel]:
        if name in _REGISTRY:
            raise ValueError(f"zoo preset {name!r} is registered twice")
        _REGISTRY[name] = ZooEntry(name, description, fn, full_size)
        return fn

    return deco


def register_presets(
    presets: Mapping[str, _Config],
    descriptions: Mapping[str, str],
    build: Callable[[_Config], BuiltModel],
    *,
    full_size: Collection[str] = (),
) -> None:
    """Register one builder per preset: ``build(presets[name])`` with ``meta["preset"]`` set.

    ``presets[name]`` is looked up when the builder runs; ``descriptions[name]`` is the
    entry's description and the builder's docstring; the names in ``full_size`` are marked
    full-size.
    """
    for name in presets:
        register(name, descriptions[name], full_size=name in full_size)(
            _preset_builder(name, presets, descriptions[name], build))


def _preset_builder(
    name: str,
    presets: Mapping[str, _Config],
    description: str,
    build: Callable[[_Config], BuiltModel],
) -> Callable[[], BuiltModel]:
    def builder() -> BuiltModel:
        model = build(presets[name])
        model.meta["preset"] = name
        return model

    builder.__name__ = builder.__qualname__ = "build_" + name.replace("-", "_")
    builder.__doc__ = description
    return builder


def _load_builders() -> None:
    for mod in _BUILDER_MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:  # a builder module not written yet
            if exc.name != f"{__name__}.{mod}":
                raise


def entries() -> list[ZooEntry]:
    """All registered presets, sorted by name."""
    _load_builders()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get(name: str) -> ZooEntry:
    _load_builders()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown zoo preset {name!r} (known: {known})") from None


def build(name: str) -> BuiltModel:
    """Build preset ``name`` in memory."""
    return get(name).builder()


def load(name: str) -> Any:
    """Build preset ``name`` and load it as a :class:`graphsurgery.Graph` with its interface."""
    from ..ir.io import load as load_graph

    model = build(name)
    if model.saved_model_dir is not None:
        return load_graph(model.saved_model_dir)
    return load_graph(model.graph_def, inputs=model.inputs, outputs=model.outputs)


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "graphsurgery" / "zoo"
    return Path(os.environ.get("GRAPHSURGERY_CACHE", default))


def write(model: BuiltModel, out: Path) -> Path:
    """Write a built model to ``out`` (a ``.pb`` file or a SavedModel directory), atomically."""
    from graphsurgery.outdir import atomic_file, fix_modes

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if model.saved_model_dir is not None:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        shutil.rmtree(tmp)
        shutil.copytree(model.saved_model_dir, tmp)
        fix_modes(tmp)  # mkdtemp makes 0700: the umask's modes, like every output
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return out
    with atomic_file(out) as fh:
        fh.write(model.graph_def.SerializeToString())
    return out


def cached(name: str) -> Path:
    """Path of preset ``name`` built once and kept in :func:`cache_dir`."""
    entry = get(name)
    path = cache_dir() / f"{name}{entry.suffix}"
    if not path.exists():
        write(entry.builder(), path)
    return path
