"""Plugin loading: the ``graphsurgery.passes`` entry-point group and ``--plugin``.

A plugin is a Python module that registers passes or pipelines when imported. Installed
packages declare it in their metadata::

    [project.entry-points."graphsurgery.passes"]
    mytools = "mytools.graphsurgery_passes"

and a file or module can be named on the command line: ``--plugin path/to/file.py`` or
``--plugin package.module``. graphsurgery's own built-in passes and rules are loaded
through the same entry-point group.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import UsageError
from .ir import customops

log = logging.getLogger("graphsurgery")
GROUP = "graphsurgery.passes"
_loaded_entry_points = False
_loaded_files: dict[Path, ModuleType] = {}


def load_group(group: str, what: str) -> list[Any]:
    """Load every entry point of ``group``, in name order, and return what each names.

    Plugin code that raises, or calls ``sys.exit``, is a :class:`UsageError` naming
    ``what`` (``"plugin"``, ``"target plugin"``), the entry point and its module.
    """
    loaded = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            loaded.append(ep.load())
        except SystemExit as exc:
            raise UsageError(f"{what} {ep.name} ({ep.value}) {_exited(exc)}") from None
        except Exception as exc:
            raise UsageError(
                f"{what} {ep.name} ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
            ) from exc
    return loaded


def load_entry_points() -> None:
    """Import every module of the ``graphsurgery.passes`` entry-point group (once)."""
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    try:
        load_group(GROUP, "plugin")
    except UsageError:
        _loaded_entry_points = False
        raise


# Custom ops (graphsurgery.ir.customops) are declared by plugins: an unknown one loads them.
customops.add_discoverer(load_entry_points)


def load_plugin(spec: str) -> ModuleType:
    """Import a plugin given as a ``.py`` path or a dotted module name."""
    load_entry_points()
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        return _load_file(path)
    try:
        return importlib.import_module(spec)
    except SystemExit as exc:
        sys.modules.pop(spec, None)
        raise UsageError(f"plugin {spec} {_exited(exc)}") from None
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):
            raise UsageError(f"plugin {spec}: no such file or module") from None
        raise UsageError(f"plugin {spec} failed to import: {type(exc).__name__}: {exc}") from exc
    except UsageError as exc:
        raise UsageError(f"plugin {spec} failed to import: {exc}") from exc
    except Exception as exc:
        raise UsageError(f"plugin {spec} failed to import: {type(exc).__name__}: {exc}") from exc


def _load_file(path: Path) -> ModuleType:
    path = path.resolve()
    if path in _loaded_files:
        return _loaded_files[path]
    if not path.is_file():
        raise UsageError(f"plugin {path}: no such file")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"graphsurgery_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"plugin {path}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        sys.modules.pop(name, None)
        raise UsageError(f"plugin {path} {_exited(exc)}") from None
    except UsageError as exc:
        sys.modules.pop(name, None)
        raise UsageError(f"plugin {path} failed to import: {exc}") from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        line = ""
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == str(path):
                line = f" (line {tb.tb_lineno})"
            tb = tb.tb_next
        raise UsageError(
            f"plugin {path} failed to import{line}: {type(exc).__name__}: {exc}"
        ) from exc
    _loaded_files[path] = module
    log.debug("loaded plugin %s", path)
    return module


def _exited(exc: SystemExit) -> str:
    """The error for a plugin that calls ``sys.exit()`` while it is imported: an exit from
    plugin code must never pass for graphsurgery's own (exit 0 with no output)."""
    return f"called sys.exit({exc.code!r}) while being imported"
