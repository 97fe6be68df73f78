"""The TFLite target's converter and audit (:mod:`graphsurgery.targets.tflite` is the target
that uses them); importing this package does not import TensorFlow.

* :func:`convert_tflite` (``export/tflite.py``): builtins-only TFLite conversion.
* :func:`audit_tflite` (``export/audit.py``): every TFLite-clean rule, checked on the
  flatbuffer itself.
"""

from __future__ import annotations

from .audit import Audit, audit_tflite
from .tflite import ConversionResult, convert_tflite

__all__ = ["Audit", "ConversionResult", "audit_tflite", "convert_tflite"]
