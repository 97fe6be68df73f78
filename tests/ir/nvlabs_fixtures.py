"""NVlabs-format pickles for the tests: :mod:`graphsurgery.zoo.nvlabs_write`, with a hostile
``build_module_src`` (it would touch a file if anything ran it) in every network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from graphsurgery.zoo import nvlabs_write as _w
from graphsurgery.zoo.nvlabs_write import (  # noqa: F401 - re-exported for the tests
    Network,
    frozen_values,
    nvlabs_modules,
    write,
    write_snapshot,
)

V1 = "training.networks_stylegan"
V2 = "training.networks_stylegan2"
ADA = "training.networks"
PROGAN = "training.networks_progan"
SRC = "import os\nos.system('touch /tmp/graphsurgery-pwned')  # never run\n"


def network(name: str, func: str, static_kwargs: Mapping[str, Any],
            variables: Mapping[str, np.ndarray], components: Mapping[str, Network] | None = None,
            version: int = 4) -> Network:
    return _w.network(name, func, static_kwargs, variables, components, version,
                      build_module_src=SRC)


def generator(values: Mapping[str, np.ndarray], kind: str, static_kwargs: Mapping[str, Any],
              name: str = "Gs", dotted: bool = False) -> Network:
    return _w.generator(values, kind, static_kwargs, name, build_module_src=SRC, dotted=dotted)


def discriminator(kind: str, dotted: bool = False) -> Network:
    return _w.discriminator(kind, build_module_src=SRC, dotted=dotted)
