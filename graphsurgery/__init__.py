"""graphsurgery: a graph-rewriting compiler toolkit for frozen TensorFlow graphs.

The public API::

    import graphsurgery as gs

    graph = gs.load("generator.pb")
    result = gs.Pipeline.preset("generic").run(graph)
    gs.save(graph, "out.pb")

    # or the whole job, as `graphsurgery run` does it (summary.json is result.to_json()):
    result = gs.convert("generator.pb", "stylegan-to-tflite", target="tflite",
                        outdir="out", verify=True, report=True)

Importing graphsurgery does not import TensorFlow; only shape inference, running graphs
and TFLite conversion do.
"""

from __future__ import annotations

from .driver import Result, convert
from .errors import (
    GraphError,
    GraphSurgeryError,
    InputError,
    PassFailure,
    UsageError,
    VerificationError,
)
from .ir.attrs import Shape
from .ir.dtypes import DType
from .ir.graph import Graph, Node, Provenance
from .ir.io import load, save, serialize
from .ir.names import Input, TensorRef
from .ir.pickle import PickleOptions
from .pipeline import (
    DumpChanged,
    Fixpoint,
    Instrument,
    LogOpDeltas,
    LogTimings,
    PassRecord,
    Pipeline,
    PipelineResult,
    Step,
    register_group,
    register_pipeline,
)
from .plugins import load_plugin
from .registry import Option, Pass, all_passes, get_pass, register_pass
from .rewriter import Rewriter
from .targets import Target, get_target, register_target

__version__ = "0.1.0"

__all__ = [
    "DType",
    "DumpChanged",
    "Fixpoint",
    "Graph",
    "GraphError",
    "GraphSurgeryError",
    "Input",
    "InputError",
    "Instrument",
    "LogOpDeltas",
    "LogTimings",
    "Node",
    "Option",
    "Pass",
    "PassFailure",
    "PassRecord",
    "PickleOptions",
    "Pipeline",
    "PipelineResult",
    "Provenance",
    "Result",
    "Rewriter",
    "Shape",
    "Step",
    "Target",
    "TensorRef",
    "UsageError",
    "VerificationError",
    "all_passes",
    "convert",
    "get_pass",
    "get_target",
    "load",
    "load_plugin",
    "register_group",
    "register_pass",
    "register_pipeline",
    "register_target",
    "save",
    "serialize",
]
