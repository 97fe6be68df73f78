"""Targets: the deployment formats a graph is converted to, registered like passes.

A target (:class:`Target`) declares its lint rules (``graphsurgery check --target``), the
passes it appends to a pipeline (in its own namespace, ``tflite::...``), how it exports a
graph, how it audits the artefact and a runner to verify it. Installed packages declare
targets in the ``graphsurgery.targets`` entry-point group (a :class:`Target` subclass, an
instance, or a module that calls :func:`register_target` when imported)::

    [project.entry-points."graphsurgery.targets"]
    mine = "mypackage.target:MyTarget"

and a ``--plugin`` file may call :func:`register_target`. graphsurgery's own TFLite target
is loaded through the same group. Importing this package does not import TensorFlow.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import UsageError
from .base import Artefact, Audit, AuditLike, Finding, Rule, Target, violation_rule

log = logging.getLogger("graphsurgery")
GROUP = "graphsurgery.targets"
_TARGETS: dict[str, Target] = {}
_loaded = False


def register_target(target: type[Target] | Target) -> Any:
    """Register a Target subclass (instantiated once) or instance under its ``name``.

    Usable as a class decorator; a second target with the same name is refused.
    """
    inst = target() if isinstance(target, type) else target
    if not isinstance(inst, Target):
        raise TypeError(f"{target!r} is not a graphsurgery Target")
    name = inst.name
    if not name or not name.replace("-", "_").isidentifier() or name == "none":
        raise UsageError(f"target name {name!r} must be an identifier other than 'none'")
    prev = _TARGETS.get(name)
    if prev is not None and type(prev) is not type(inst):
        raise UsageError(f"target {name} is registered twice (by {type(prev).__module__} and "
                         f"{type(inst).__module__})")
    _TARGETS[name] = inst
    return target


def unregister_target(name: str) -> None:
    """Remove a registration (for tests and interactive sessions)."""
    _TARGETS.pop(name, None)


def load_entry_points() -> None:
    """Load every target of the ``graphsurgery.targets`` entry-point group (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from ..plugins import load_group

    try:
        for obj in load_group(GROUP, "target plugin"):
            if isinstance(obj, Target) or (isinstance(obj, type) and issubclass(obj, Target)):
                register_target(obj)
    except UsageError:
        _loaded = False
        raise


def all_targets() -> dict[str, Target]:
    """Every registered target by name, sorted."""
    load_entry_points()
    return dict(sorted(_TARGETS.items()))


def get_target(name: str) -> Target:
    """The target registered as ``name``; UsageError listing the known ones otherwise."""
    load_entry_points()
    try:
        return _TARGETS[name]
    except KeyError:
        from ..registry import did_you_mean

        known = ", ".join(sorted(_TARGETS)) or "none"
        hint = did_you_mean(name, [*_TARGETS, "none"])
        raise UsageError(f"unknown target {name!r}{hint} (targets: {known})") from None


__all__ = [
    "GROUP",
    "Artefact",
    "Audit",
    "AuditLike",
    "Finding",
    "Rule",
    "Target",
    "all_targets",
    "get_target",
    "load_entry_points",
    "register_target",
    "unregister_target",
    "violation_rule",
]
