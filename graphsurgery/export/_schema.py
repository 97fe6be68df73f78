"""The TFLite flatbuffer schema classes and their enum names (for the audit and the
``mobile`` weight rewrite; imports nothing of graphsurgery, so both may use it)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - LiteRT is a dependency
        import importlib

        schema = importlib.import_module("tensorflow.lite.python.schema_py_generated")
    return schema


@lru_cache(maxsize=1)
def _enum_names() -> tuple[dict[int, str], dict[int, str]]:
    schema = _schema()

    def names(cls: Any) -> dict[int, str]:
        return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}

    return names(schema.BuiltinOperator), names(schema.TensorType)
