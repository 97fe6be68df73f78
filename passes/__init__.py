"""graphsurgery's built-in passes, loaded through the ``graphsurgery.passes`` entry point.

One module per pass, grouped by namespace (``core/`` holds ``core::*``, ``tflite/`` the
TFLite target's ``tflite::*``); ``presets``
registers the pipeline presets built from them.
"""

from . import core, presets, stylegan, tflite  # noqa: F401
