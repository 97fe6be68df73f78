"""Importing TensorFlow quietly from the command line.

TensorFlow writes log lines to the process's stderr while it is imported ("All log
messages before absl::InitializeLog() ...", the oneDNN notice), before its own log level
settings apply. The CLI is quiet by default, so :func:`install` arranges for the first
import of ``tensorflow`` to run with file descriptor 2 pointed at /dev/null; errors raised
by the import still propagate. With ``-vv`` nothing is hidden.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import threading
from typing import Any

#: Held by whoever points file descriptor 2 elsewhere for a while (here, and the quiet load
#: of :mod:`graphsurgery.ir.tf_capi` in its background thread). Two such redirections
#: interleaved would restore each other's copies: fd 2 then keeps a pipe's write end open
#: and the pipe's reader waits forever (``graphsurgery run x.pkl`` hung so: the pickle's
#: rebuild imports TensorFlow while the shape library preloads).
FD2_LOCK = threading.RLock()


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.active = False

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname != "tensorflow" or self.active:
            return None
        self.active = True
        sys.meta_path.remove(self)
        with FD2_LOCK:
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                sys.stderr.flush()
                os.dup2(devnull, 2)
                import tensorflow  # noqa: F401  (the real import, now silent)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                os.close(devnull)
        return None  # the module is in sys.modules now; the normal import finds it


#: True once :func:`install` ran: :mod:`graphsurgery.ir.tf_capi` then loads TensorFlow's
#: C library with stderr silenced too.
ACTIVE = False


def install() -> None:
    """Make the next ``import tensorflow`` silent on stderr (once)."""
    global ACTIVE
    ACTIVE = True
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.meta_path.insert(0, _QuietTensorFlow())
