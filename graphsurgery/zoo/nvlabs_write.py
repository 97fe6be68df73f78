"""Write NVlabs-format pickles (``(G, D, Gs)`` of ``dnnlib.tflib.network.Network``) from zoo
generators' weights.

An official snapshot is a pickle of ``Network`` objects whose ``__getstate__`` returns a
plain dict (``version``, ``name``, ``static_kwargs``, ``components``, ``build_module_src``,
``build_func_name``, ``variables``; see ``shared/reference/families.md``). This module writes
the same bytes from a zoo preset: a stand-in :class:`Network` class is registered under the
NVlabs module name in ``sys.modules`` only while the pickle is written, so the file names
``dnnlib.tflib.network.Network`` exactly as an official snapshot does.

* ``G`` and ``Gs`` are the same generator (the zoo's weights, with the stored noise variables
  real pickles carry), under the original build function (``G_style``, ``G_main`` for
  StyleGAN2 and ADA, ``G_paper``) with its ``mapping``/``synthesis`` components
  (``G_mapping``; ``G_synthesis``, or ``G_synthesis_stylegan2`` for StyleGAN2), and
  ``static_kwargs`` that describe the zoo config (truncation as validation
  settings, ``truncation_psi_val``/``truncation_cutoff_val``, so that importing the file gives
  the preset's graph);
* ``D`` is a small stand-in discriminator (one variable) under the family's ``D`` function.

Build functions are named as the original ``Network`` stores them: the short name, without
the module (``util.get_module_from_obj_name`` splits it off). ``dotted=True`` writes
``training.networks_stylegan2.G_main`` and the like instead (older graphsurgery files did).

Writing uses the standard :mod:`pickle` module (it is our own data); reading pickles is only
ever done by :func:`graphsurgery.ir.pickle.read_pickle`. The stored ``build_module_src`` is a
comment, not the NVlabs module: the file is for graphsurgery (and any tool that reads the
weights), not for the original loader.

    write_snapshot("sg2-tiny", "sg2-tiny.pkl")      # then: graphsurgery import sg2-tiny.pkl ...
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from graphsurgery.errors import UsageError
from graphsurgery.outdir import atomic_file
from graphsurgery.zoo import BuiltModel

#: The ``build_module_src`` written into every network: a comment, never code to run.
NOTE_SRC = ("# Written by graphsurgery (graphsurgery.zoo.nvlabs_write) from a zoo generator's "
            "weights.\n# No module source is stored: rebuild it with `graphsurgery import`.\n")


@dataclass(frozen=True)
class Family:
    """How one generator family is spelled in an NVlabs pickle."""

    module: str
    func: str
    mapping: str | None  # component build functions (None: a single network, no components)
    synthesis: str | None
    discriminator: str
    version: int

    def name(self, func: str, dotted: bool = False) -> str:
        """``func`` as a pickle stores it: short (``G_main``), or with its module."""
        return f"{self.module}.{func}" if dotted else func


#: Zoo ``meta["kind"]`` -> how its pickles name things.
FAMILIES: dict[str, Family] = {
    "stylegan1": Family("training.networks_stylegan", "G_style", "G_mapping", "G_synthesis",
                        "D_basic", 3),
    "stylegan2": Family("training.networks_stylegan2", "G_main", "G_mapping",
                        "G_synthesis_stylegan2", "D_stylegan2", 4),
    "stylegan2-ada": Family("training.networks", "G_main", "G_mapping", "G_synthesis",
                            "D_main", 4),
    "progan": Family("training.networks_progan", "G_paper", None, None, "D_paper", 3),
}
_ALIASES = {"v1": "stylegan1", "v2": "stylegan2", "ada": "stylegan2-ada"}


def family(kind: str) -> Family:
    """The :class:`Family` of a zoo kind (``stylegan1``, ``stylegan2``, ``stylegan2-ada``,
    ``progan``; ``v1``/``v2``/``ada`` are short names)."""
    kind = _ALIASES.get(kind, kind)
    if kind not in FAMILIES:
        raise UsageError(f"no NVlabs pickle form for zoo graphs of kind {kind!r} (supported: "
                         f"{', '.join(FAMILIES)})")
    return FAMILIES[kind]


# ----------------------------------------------------------------------------- the stand-in
class Network:
    """Stand-in for ``dnnlib.tflib.network.Network``, pickled by its state dict only."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def __getstate__(self) -> dict[str, Any]:
        return self.state

    def __setstate__(self, state: dict[str, Any]) -> None:  # pickle round trips in tests
        self.state = state


_LOCK = threading.Lock()


@contextlib.contextmanager
def nvlabs_modules() -> Iterator[None]:
    """``dnnlib.tflib.network.Network`` importable (as :class:`Network`) during the block;
    ``sys.modules`` is restored afterwards."""
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    with _LOCK:
        saved = {n: sys.modules.get(n) for n in names}
        mods = {n: types.ModuleType(n) for n in names}
        mods["dnnlib.tflib.network"].Network = Network  # type: ignore[attr-defined]
        Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
        sys.modules.update(mods)
        try:
            yield
        finally:
            Network.__module__, Network.__qualname__ = __name__, "Network"
            for n, m in saved.items():
                if m is None:
                    sys.modules.pop(n, None)
                else:
                    sys.modules[n] = m


# ----------------------------------------------------------------------------- networks
def network(name: str, func: str, static_kwargs: Mapping[str, Any],
            variables: Mapping[str, np.ndarray], components: Mapping[str, Network] | None = None,
            version: int = 4, build_module_src: str = NOTE_SRC) -> Network:
    """One ``Network`` state: ``variables`` are its own (names relative to its scope)."""
    return Network({
        "version": version, "name": name, "static_kwargs": dict(static_kwargs),
        "components": dict(components or {}), "build_module_src": build_module_src,
        "build_func_name": func, "variables": list(variables.items()),
    })


def generator(values: Mapping[str, np.ndarray], kind: str, static_kwargs: Mapping[str, Any],
              name: str = "Gs", build_module_src: str = NOTE_SRC, dotted: bool = False,
              ) -> Network:
    """A generator network of family ``kind`` from flat variable names (``G_mapping/Dense0/
    weight``, ``G_synthesis/...``, own ones like ``dlatent_avg``), split into the
    ``mapping``/``synthesis`` components where the family has them. Build functions get
    their short names (``G_main``), or with ``dotted`` their module's too."""
    fam = family(kind)
    func = fam.name(fam.func, dotted)
    if fam.mapping is None or fam.synthesis is None:
        return network(name, func, static_kwargs, values, version=fam.version,
                       build_module_src=build_module_src)
    parts: dict[str, dict[str, np.ndarray]] = {"G_mapping": {}, "G_synthesis": {}, "": {}}
    for key, value in values.items():
        scope, _, rest = key.partition("/")
        if scope in parts and rest:
            parts[scope][rest] = value
        else:
            parts[""][key] = value
    mapping = network("G_mapping", fam.name(fam.mapping, dotted), static_kwargs,
                      parts["G_mapping"], version=fam.version,
                      build_module_src=build_module_src)
    synthesis = network("G_synthesis", fam.name(fam.synthesis, dotted), static_kwargs,
                        parts["G_synthesis"], version=fam.version,
                        build_module_src=build_module_src)
    return network(name, func, static_kwargs, parts[""],
                   {"mapping": mapping, "synthesis": synthesis}, version=fam.version,
                   build_module_src=build_module_src)


def discriminator(kind: str, static_kwargs: Mapping[str, Any] | None = None,
                  build_module_src: str = NOTE_SRC, dotted: bool = False) -> Network:
    """A small stand-in ``D`` of family ``kind`` (one ``Output/weight`` variable)."""
    fam = family(kind)
    kw = dict(static_kwargs) if static_kwargs is not None else {"resolution": 16}
    return network("D", fam.name(fam.discriminator, dotted), kw,
                   {"Output/weight": np.ones([4, 4], np.float32)}, version=fam.version,
                   build_module_src=build_module_src)


def dumps(obj: Any, protocol: int = 4, numpy1: bool = False) -> bytes:
    """Pickle ``obj`` with the stand-in ``Network`` registered. ``numpy1`` writes numpy 1's
    ``numpy.core`` module paths (needs protocol 2, whose ``GLOBAL`` opcodes are text)."""
    with nvlabs_modules():
        data = pickle.dumps(obj, protocol=protocol)
    if numpy1:
        if protocol != 2:
            raise UsageError(f"numpy 1 module paths are written with protocol 2, not {protocol}")
        data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    return data


def write(path: str | os.PathLike, obj: Any, protocol: int = 4, numpy1: bool = False) -> Path:
    """Write :func:`dumps` of ``obj`` to ``path`` atomically (whole or not at all)."""
    return _write_bytes(Path(path), dumps(obj, protocol, numpy1))


def _write_bytes(path: Path, data: bytes) -> Path:
    with atomic_file(path) as fh:
        fh.write(data)
    return path


# ----------------------------------------------------------------------------- zoo models
def frozen_values(graph_def: Any, names: Any) -> dict[str, np.ndarray]:
    """The values of the variables ``names`` in a frozen graph (its Consts of those names;
    TensorFlow's or graphsurgery's GraphDef). A name with no Const is a ``KeyError``."""
    from graphsurgery.ir.attrs import tensor_to_numpy

    wanted = set(names)
    consts = {n.name: n for n in graph_def.node if n.op == "Const" and n.name in wanted}
    return {k: np.array(tensor_to_numpy(consts[k].attr["value"].tensor), np.float32)
            for k in names}


#: Zoo kind -> (builder module, config class, build function) of graphsurgery.zoo.
_BUILDERS = {"stylegan1": ("stylegan1", "StyleGAN1Config", "build_stylegan1"),
             "stylegan2": ("stylegan2", "StyleGAN2Config", "build_gs"),
             "stylegan2-ada": ("ada", "ADAConfig", "build_ada"),
             "progan": ("progan", "ProGANConfig", "build_progan")}


def _config_of(model: BuiltModel) -> tuple[Any, Any]:
    """The zoo config a model was built from (``meta["config"]``) and its build function."""
    kind = str(model.meta.get("kind"))
    family(kind)  # raises, listing the supported kinds
    module, cls_name, build_name = _BUILDERS[kind]
    mod = importlib.import_module(f"graphsurgery.zoo.{module}")
    cls = getattr(mod, cls_name)
    if "config" not in model.meta:
        raise UsageError(f"a {kind} model without meta['config'] cannot be written as a pickle")
    known = {f.name for f in fields(cls)}
    d = {k: v for k, v in model.meta["config"].items() if k in known}
    if isinstance(d.get("resample_kernel"), list):
        d["resample_kernel"] = tuple(d["resample_kernel"])
    return cls(**d), getattr(mod, build_name)


def static_kwargs(kind: str, cfg: Any) -> dict[str, Any]:
    """The ``static_kwargs`` of the NVlabs network that a zoo config ``cfg`` describes."""
    kind = _ALIASES.get(kind, kind)
    kw: dict[str, Any] = {"resolution": cfg.resolution, "fmap_base": cfg.fmap_base,
                          "fmap_decay": float(cfg.fmap_decay), "fmap_max": cfg.fmap_max}
    if kind == "progan":
        kw.update(num_channels=cfg.num_channels, label_size=cfg.label_size,
                  latent_size=cfg.latents, fused_scale=cfg.fused_scale,
                  structure=cfg.structure)
        return kw
    kw.update(num_channels=getattr(cfg, "num_channels", 3),
              label_size=getattr(cfg, "label_size", 0), latent_size=cfg.latent_size,
              dlatent_size=cfg.dlatent_size, mapping_layers=cfg.mapping_layers,
              mapping_fmaps=cfg.mapping_fmaps, mapping_lrmul=float(cfg.mapping_lrmul),
              truncation_psi_val=cfg.truncation_psi, truncation_cutoff_val=cfg.truncation_cutoff)
    if kind == "stylegan1":
        kw.update(structure=cfg.structure, fused_scale=cfg.use_fused_scale)
        return kw
    kw.update(fmap_min=cfg.fmap_min, architecture=cfg.architecture,
              resample_kernel=list(cfg.resample_kernel), fused_modconv=cfg.fused_modconv)
    if kind == "stylegan2-ada":
        kw.update(num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp,
                  label_fmaps=cfg.label_fmaps)
    return kw


def snapshot_values(model: BuiltModel) -> dict[str, np.ndarray]:
    """Every variable of the NVlabs network behind a zoo model, by its ``Network.vars`` name:
    the model's weights, plus the stored noise inputs a snapshot always carries (taken from
    the same config built with ``randomize_noise=False``: same seed, same weights)."""
    cfg, build = _config_of(model)
    source = model
    if getattr(cfg, "randomize_noise", False):
        source = build(replace(cfg, randomize_noise=False))
    names = list(source.meta["variables"])
    values = frozen_values(source.graph_def, names)
    if source is not model:  # the model's own weights win (it may be built from given ones)
        own = set(model.meta.get("variables", ())) & {n.name for n in model.graph_def.node}
        values.update(frozen_values(model.graph_def, sorted(own)))
    if model.meta["kind"] == "stylegan1" and cfg.explicit_mapping_gain:
        # The zoo's explicit gain computes sqrt(2) * lrelu(x W + b); G_style folds the gain
        # into the weight scale, lrelu(sqrt(2) x W + b'): equal for b' = sqrt(2) b.
        for name in values:
            if name.startswith("G_mapping/Dense") and name.endswith("/bias"):
                values[name] = values[name] * np.float32(np.sqrt(2.0))
    if model.meta["kind"] == "stylegan2" and "lod" not in values:
        values["lod"] = np.zeros([], np.float32)  # G_main's own lod, as in real pickles
    return values


def snapshot(model: str | BuiltModel, build_module_src: str = NOTE_SRC, dotted: bool = False,
             ) -> tuple[Network, Network, Network]:
    """The ``(G, D, Gs)`` networks of a zoo preset name or a built zoo model (build functions
    by their short names as in official snapshots; ``dotted``: with their modules)."""
    if isinstance(model, str):
        from graphsurgery import zoo

        try:
            entry = zoo.get(model)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
        model = entry.builder()
    kind = str(model.meta.get("kind"))
    family(kind)
    cfg, _ = _config_of(model)
    values = snapshot_values(model)
    kw = static_kwargs(kind, cfg)
    d_kw = {k: kw[k] for k in ("resolution", "num_channels", "label_size") if k in kw}
    return (generator(values, kind, kw, "G", build_module_src, dotted),
            discriminator(kind, d_kw, build_module_src, dotted),
            generator(values, kind, kw, "Gs", build_module_src, dotted))


def write_snapshot(model: str | BuiltModel, path: str | os.PathLike, *, protocol: int = 4,
                   numpy1: bool = False, dotted: bool = False) -> Path:
    """Write a zoo generator (a preset name such as ``"sg2-tiny"``, or a :class:`BuiltModel`
    of the v1, v2, ADA or ProGAN builders) as an NVlabs ``(G, D, Gs)`` snapshot at ``path``,
    atomically. ``protocol`` 2 to 5; ``numpy1`` spells the arrays with numpy 1's
    ``numpy.core`` paths (protocol 2), as pickles written before numpy 2 do; build functions
    get their short names (``G_main``) as in official snapshots, or with ``dotted`` their
    modules too (``training.networks_stylegan2.G_main``)."""
    if protocol not in (2, 3, 4, 5):
        raise UsageError(f"pickle protocol {protocol}: write 2 to 5")
    return write(path, snapshot(model, dotted=dotted), protocol=protocol, numpy1=numpy1)


__all__ = ["FAMILIES", "Network", "discriminator", "dumps", "frozen_values", "generator",
           "network", "nvlabs_modules", "snapshot", "snapshot_values", "static_kwargs",
           "write", "write_snapshot"]
