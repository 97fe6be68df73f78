"""Write NVlabs-format pickles (``dnnlib.tflib.network.Network`` states) from zoo weights.

A stand-in ``Network`` class is registered under the NVlabs module name in ``sys.modules``
only while a pickle is written, so the file names ``dnnlib.tflib.network.Network`` exactly as
an official snapshot does; ``__getstate__`` returns the state dict the original writes
(``version``, ``name``, ``static_kwargs``, ``components``, ``build_module_src``,
``build_func_name``, ``variables``).
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

V1 = "training.networks_stylegan"
V2 = "training.networks_stylegan2"
SRC = "import os\nos.system('touch /tmp/graphsurgery-pwned')  # never run\n"


class Network:
    """Stand-in for ``dnnlib.tflib.network.Network`` (pickled by its state only)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def __getstate__(self) -> dict[str, Any]:
        return self.state


@contextlib.contextmanager
def nvlabs_modules() -> Iterator[None]:
    """``dnnlib.tflib.network.Network`` importable for the duration of the block."""
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    mods["dnnlib.tflib.network"].Network = Network
    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def network(name: str, func: str, static_kwargs: Mapping[str, Any],
            variables: Mapping[str, np.ndarray], components: Mapping[str, Network] | None = None,
            version: int = 4) -> Network:
    return Network({
        "version": version, "name": name, "static_kwargs": dict(static_kwargs),
        "components": dict(components or {}), "build_module_src": SRC,
        "build_func_name": func, "variables": list(variables.items()),
    })


def generator(values: Mapping[str, np.ndarray], kind: str, static_kwargs: Mapping[str, Any],
              name: str = "Gs") -> Network:
    """A ``G_style`` (kind ``v1``) or ``G_main`` (``v2``) network from flat variable names
    (``G_mapping/Dense0/weight``, ``G_synthesis/...``, own ones like ``dlatent_avg``)."""
    module = V1 if kind == "v1" else V2
    parts: dict[str, dict[str, np.ndarray]] = {"G_mapping": {}, "G_synthesis": {}, "": {}}
    for key, value in values.items():
        scope, _, rest = key.partition("/")
        if scope in parts and rest:
            parts[scope][rest] = value
        else:
            parts[""][key] = value
    synth_func = "G_synthesis" if kind == "v1" else "G_synthesis_stylegan2"
    mapping = network("G_mapping", f"{module}.G_mapping", static_kwargs, parts["G_mapping"])
    synthesis = network("G_synthesis", f"{module}.{synth_func}", static_kwargs,
                        parts["G_synthesis"])
    func = f"{module}.G_style" if kind == "v1" else f"{module}.G_main"
    return network(name, func, static_kwargs, parts[""],
                   {"mapping": mapping, "synthesis": synthesis},
                   version=3 if kind == "v1" else 4)


def discriminator(kind: str) -> Network:
    module = V1 if kind == "v1" else V2
    w = np.ones([4, 4], np.float32)
    return network("D", f"{module}.D_basic", {"resolution": 16}, {"Output/weight": w})


def write(path: Path, obj: Any, protocol: int = 4, numpy1: bool = False) -> Path:
    """Pickle ``obj`` with the stand-in ``Network`` registered. ``numpy1`` writes numpy 1's
    ``numpy.core`` module paths (protocol 2's text ``GLOBAL`` opcodes, rewritten)."""
    with nvlabs_modules():
        data = pickle.dumps(obj, protocol=protocol)
    if numpy1:
        assert protocol == 2
        data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"numpy._core" not in data
    path.write_bytes(data)
    return path


def frozen_values(graph_def: Any, names: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The values of the variables ``names`` in a frozen zoo graph (Consts of those names)."""
    from tensorflow import make_ndarray

    consts = {n.name: n for n in graph_def.node if n.op == "Const"}
    return {k: make_ndarray(consts[k].attr["value"].tensor) for k in names}
