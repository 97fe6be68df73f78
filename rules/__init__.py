"""Built-in declarative rules (``graphsurgery.rules``), registered as passes on import.

Loaded through the ``graphsurgery.passes`` entry-point group; each module registers its
rule set with :func:`graphsurgery.patterns.register_rules`.
"""

from __future__ import annotations

from . import arith, elementwise, scalings

__all__ = ["arith", "elementwise", "scalings"]
