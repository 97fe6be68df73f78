"""TensorFlow imported on first use, for the zoo builders.

Listing the zoo (``graphsurgery zoo list``) only reads the preset tables; importing
TensorFlow for it would take seconds. The builder modules name ``tf`` and ``v1`` at module
level and touch them only when they build a graph.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """A module imported on its first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        module = self.__dict__["_module"]
        if module is None:
            module = importlib.import_module(self.__dict__["_name"])
            self.__dict__["_module"] = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


tf: Any = LazyModule("tensorflow")
v1: Any = LazyModule("tensorflow.compat.v1")
