"""``tflite::*`` passes: rewrites for the TFLite target (appended by it, see
:mod:`graphsurgery.targets.tflite`), one module per pass.

Their former ids ``core::polyphase_transpose_conv`` and ``core::guard_broadcast_folding``
still work as deprecated aliases (a warning names the new id).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from graphsurgery.registry import Pass, register_pass

from . import guard_broadcast_folding, polyphase_transpose_conv

log = logging.getLogger("graphsurgery")


def _deprecated_alias(old_id: str, cls: type[Pass]) -> type[Pass]:
    """Register ``cls`` again as ``old_id``, warning once per run that it moved."""
    new_id = cls.id

    def __init__(self: Pass, **options: Any) -> None:  # noqa: N807
        cls.__init__(self, **options)
        if not getattr(alias, "_warned", False):
            alias._warned = True  # type: ignore[attr-defined]
            log.warning("pass %s is deprecated: it is %s now", old_id, new_id)

    doc = f"Deprecated alias of {new_id}.\n\n{inspect.getdoc(cls) or ''}"
    alias = type(f"{cls.__name__}Alias", (cls,), {"__doc__": doc, "__init__": __init__,
                                                  "__module__": cls.__module__})
    register_pass(old_id)(alias)
    return alias


_deprecated_alias("core::polyphase_transpose_conv", polyphase_transpose_conv.PolyphaseTransposeConv)
_deprecated_alias("core::guard_broadcast_folding", guard_broadcast_folding.GuardBroadcastFolding)
