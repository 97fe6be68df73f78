"""TensorFlow op facts without importing TensorFlow.

``opdefs.json`` is extracted from TensorFlow's op registry by ``tools/gen_opdefs.py``:
for every registered op, its input and output argument specs and whether it is stateful.
Ops absent from it are unregistered (custom) ops; callers treat their facts as unknown.

It also holds the one table of what ops *do* besides computing (:func:`category`,
:func:`side_effect`), read by every place that evaluates anything (folding, shape
inference, verification, conversion, the lint)::

    side_effect("ImmutableConst")   # 'maps a file of this machine into the model'
    category("RandomUniform")       # 'random' (no host effect: side_effect() is None)
    for e in side_effects(graph):   # nodes, and calls of functions, that touch the host
        print(e)                    # ReadFile 'read' reads a file

Categories touching the host (:data:`HOST_CATEGORIES`; :func:`side_effect` gives the
reason): ``file-io`` (reading, writing, listing or mapping files: ``ReadFile``,
``ImmutableConst``, ``MatchingFiles``, checkpoints, readers, file datasets, summaries,
debugger dumps), ``dataset`` (other tf.data pipelines and iterators), ``python``
(``PyFunc``...), ``print``, ``network`` (send/receive, collectives, RPC) and ``process``
(``Abort``). The others: ``random`` (stateful and stateless random ops), ``assert``
(``Assert``, ``CheckNumerics``), ``variable`` (variables and other resources) and
``stateful`` (whatever else TensorFlow declares stateful: queues, function calls, control
flow). Pure ops, and custom ops TensorFlow does not know, have no category.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .dtypes import DType


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    data = json.loads((Path(__file__).with_name("opdefs.json")).read_text())
    return data["ops"]


def tensorflow_version() -> str:
    return json.loads((Path(__file__).with_name("opdefs.json")).read_text())["tensorflow"]


def is_registered(op: str) -> bool:
    """True for ops TensorFlow knows (custom ops such as ``UpFirDn2D`` are not)."""
    return op in _table()


@lru_cache(maxsize=1)
def ops_without_outputs() -> frozenset[str]:
    """Registered ops that produce no tensor (``NoOp``, ``WriteFile``, ``Assert`` ...)."""
    return frozenset(op for op, spec in _table().items() if not spec["out"])


def is_stateful(op: str) -> bool:
    """True for stateful ops (random, I/O, variables) and for every op with a side effect on
    the host (``ReadFile``, ``ImmutableConst``, ``PyFuncStateless``: TensorFlow calls them
    stateless); unknown ops count as stateful. Nothing stateful is folded or merged."""
    spec = _table().get(op)
    return True if spec is None else spec["stateful"] or op in _host_ops()


def _count(args: list[Any], node_def: Any) -> int | None:
    total = 0
    for arg in args:
        if arg[0] == "n":
            if arg[1] not in node_def.attr:
                return None
            total += int(node_def.attr[arg[1]].i)
        elif arg[0] == "list":
            if arg[1] not in node_def.attr:
                return None
            total += len(node_def.attr[arg[1]].list.type)
        else:
            total += 1
    return total


def num_outputs(node_def: Any) -> int | None:
    """How many outputs ``node_def`` has; None when unknown (custom op, missing attr)."""
    spec = _table().get(node_def.op)
    return None if spec is None else _count(spec["out"], node_def)


def num_inputs(node_def: Any) -> int | None:
    """How many data inputs ``node_def`` takes; None when unknown."""
    spec = _table().get(node_def.op)
    return None if spec is None else _count(spec["in"], node_def)


def output_dtype(node_def: Any, port: int) -> DType | None:
    """The dtype of output ``port`` from the op's spec and the node's attributes."""
    spec = _table().get(node_def.op)
    if spec is None:
        return None
    i = 0
    for arg in spec["out"]:
        if arg[0] == "one":
            if i == port:
                t = arg[1]
                if isinstance(t, int):
                    return DType.of(t)
                return DType.of(node_def.attr[t].type) if t in node_def.attr else None
            i += 1
        elif arg[0] == "list":
            types = node_def.attr[arg[1]].list.type if arg[1] in node_def.attr else []
            if port < i + len(types):
                return DType.of(types[port - i])
            i += len(types)
        else:
            return None  # number_attr outputs: type comes from a type attr we do not track
    return None


def has_ref_input(op: str) -> bool:
    """True for ops that take a reference input (``Assign``, ``RefSwitch``...)."""
    spec = _table().get(op)
    return bool(spec) and any(a[0] == "one" and a[2] for a in spec["in"])


# ---------------------------------------------------------------------------- op tables
#: Random ops that draw a tensor of the shape given as input 0, and their distribution:
#: ``normal``, ``uniform`` (floats in [0, 1)), ``truncated_normal`` (redrawn outside two
#: standard deviations), ``uniform_int`` (in [minval, maxval), inputs 1 and 2). Every random
#: op, these and others (``Multinomial``, ``RandomShuffle``, stateless ones...), has the
#: category ``random`` (:func:`is_random`, :func:`random_ops`).
RANDOM_OPS: dict[str, str] = {
    "RandomStandardNormal": "normal",
    "RandomUniform": "uniform",
    "TruncatedNormal": "truncated_normal",
    "RandomUniformInt": "uniform_int",
}
#: Reference-forwarding ops (the ``*_ref`` dtypes of TF1 variables) and their value forms,
#: which take and give the same arguments without the references. ``RefSelect`` has none:
#: it picks one of N inputs by index, which ``Select`` (a condition, two inputs) does not.
REF_OPS: dict[str, str] = {
    "RefSwitch": "Switch",
    "RefMerge": "Merge",
    "RefIdentity": "Identity",
    "RefEnter": "Enter",
    "RefExit": "Exit",
    "RefNextIteration": "NextIteration",
}


def is_random(op: Any) -> bool:
    """True for ops (names, NodeDefs or Nodes) that draw random numbers, stateful or not."""
    return category(op) == "random"


@lru_cache(maxsize=1)
def random_ops() -> frozenset[str]:
    """Every registered op of category ``random`` (for ``graph.nodes(*random_ops())``)."""
    return frozenset(op for op, (cat, _) in _categories().items() if cat == "random")


# ---------------------------------------------------------------------------- side effects
#: Categories whose ops act on the host: never run while loading, folding, inferring
#: shapes or converting, and run by verification only when the user allows it.
HOST_CATEGORIES = frozenset({"file-io", "dataset", "python", "print", "network", "process"})

_MAPS = "maps a file of this machine into the model"
_READS_CKPT = "reads checkpoint files"
_WRITES_CKPT = "writes checkpoint files"
_READS_FILES = "reads files of this machine"
_SUMMARY = "writes summary files"
_DEBUG = "writes debugger dumps (files or network)"
_NETWORK = "communicates with other processes or devices"

# op -> (category, reason): the ops named one by one.
_NAMED: dict[str, tuple[str, str]] = {
    "ImmutableConst": ("file-io", _MAPS),
    "ReadFile": ("file-io", "reads a file"),
    "WriteFile": ("file-io", "writes a file"),
    "MatchingFiles": ("file-io", "lists files of this machine"),
    "MatchingFilesDataset": ("file-io", "lists files of this machine"),
    "ExperimentalMatchingFilesDataset": ("file-io", "lists files of this machine"),
    "FileSystemSetConfiguration": ("file-io", "configures the host's file systems"),
    "Save": ("file-io", _WRITES_CKPT),
    "SaveV2": ("file-io", _WRITES_CKPT),
    "SaveSlices": ("file-io", _WRITES_CKPT),
    "MergeV2Checkpoints": ("file-io", _WRITES_CKPT),
    "DistributedSave": ("file-io", "writes files"),
    "CalibrationStatisticsSaver": ("file-io", "writes files"),
    "DumpTensor": ("file-io", "writes files"),
    "SaveDataset": ("file-io", "writes files"),
    "SaveDatasetV2": ("file-io", "writes files"),
    "DatasetToTFRecord": ("file-io", "writes files"),
    "ExperimentalDatasetToTFRecord": ("file-io", "writes files"),
    "Restore": ("file-io", _READS_CKPT),
    "RestoreV2": ("file-io", _READS_CKPT),
    "RestoreSlice": ("file-io", _READS_CKPT),
    "DTensorRestoreV2": ("file-io", _READS_CKPT),
    "LoadAndRemapMatrix": ("file-io", _READS_CKPT),
    "InitializeTableFromTextFile": ("file-io", "reads a file"),
    "InitializeTableFromTextFileV2": ("file-io", "reads a file"),
    "RecordInput": ("file-io", _READS_FILES),
    "ImportEvent": ("file-io", _SUMMARY),
    "PyFunc": ("python", "runs Python code"),
    "PyFuncStateless": ("python", "runs Python code"),
    "EagerPyFunc": ("python", "runs Python code"),
    "Print": ("print", "prints to the host's output"),
    "PrintV2": ("print", "prints to the host's output (or a file)"),
    "Abort": ("process", "aborts the process"),
    "Assert": ("assert", ""),
    "CheckNumerics": ("assert", ""),
    "CheckNumericsV2": ("assert", ""),
    "DebugGradientIdentity": ("", ""),  # identities despite the name
    "DebugGradientRefIdentity": ("", ""),
}
# (pattern on the op name, category, reason), tried in order after _NAMED.
_PATTERNS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"Reader"), "file-io", _READS_FILES),
    (re.compile(r"^(Experimental)?(TFRecord|TextLine|FixedLengthRecord|CSV|LMDB|Sql|Load|"
                r"Snapshot\w*|ListSnapshotChunks|Cache)Dataset"), "file-io", _READS_FILES),
    (re.compile(r"Summary(Db|File)?Writer$|^Write\w*Summary$|SetSummaryWriter$"),
     "file-io", _SUMMARY),
    (re.compile(r"^Debug"), "file-io", _DEBUG),
    (re.compile(r"^(Decode|Encode)Proto"), "", ""),  # file-io when descriptor_source is a path
    (re.compile(r"^_?(Host)?(Send|Recv)$|Collective|Nccl|^Rpc|RemoteCall|DataService|"
                r"RegisterDataset|^(Infeed|Outfeed)|Heartbeat|^_?Xla\w*(Send|Recv)"),
     "network", _NETWORK),
    (re.compile(r"Dataset|Iterator"), "dataset",
     "runs a tf.data pipeline (datasets read files and run functions)"),
    (re.compile(r"^Stateless(Random|Truncated|Multinomial|Parameterized|SampleDistorted)"),
     "random", ""),
    (re.compile(r"^(Random(?!ShuffleQueue)|TruncatedNormal|ParameterizedTruncatedNormal|"
                r"Multinomial|NonDeterministicInts|Rng|SampleDistortedBoundingBox|"
                r"Stateful(Random|Standard|Truncated|Uniform))|CandidateSampler$"),
     "random", ""),
]
_RESOURCE = 20  # DT_RESOURCE


def _classify(op: str) -> tuple[str, str] | None:
    """(category, reason) of ``op`` from the lists and patterns, then the registry."""
    hit = _NAMED.get(op)
    if hit is None:
        for pattern, cat, reason in _PATTERNS:
            if pattern.search(op):
                hit = (cat, reason)
                break
    if hit is not None:
        return hit if hit[0] else None
    spec = _table().get(op)
    if spec is None:
        return None  # a custom op: nothing known
    args = spec["in"] + spec["out"]
    if any(a[0] == "one" and (a[1] == _RESOURCE or a[2]) for a in args):
        return ("variable", "")
    return ("stateful", "") if spec["stateful"] else None


@lru_cache(maxsize=1)
def _categories() -> dict[str, tuple[str, str]]:
    out = {}
    for op in (*_table(), *_NAMED):
        hit = _classify(op)
        if hit is not None:
            out[op] = hit
    return out


@lru_cache(maxsize=1)
def _host_ops() -> frozenset[str]:
    """Op names that may act on the host (by name alone: with any attributes)."""
    named = {op for op, (cat, _) in _categories().items() if cat in HOST_CATEGORIES}
    return frozenset(named | {op for op in _table() if _descriptor_file(op, None)})


def _op_and_attrs(op: Any) -> tuple[str, Any]:
    """``op`` as an op name, and the NodeDef's attributes when a node was given."""
    if isinstance(op, str):
        return op, None
    nd = getattr(op, "proto", op)  # a graph Node or a NodeDef
    return nd.op, nd.attr


def category(op: Any) -> str | None:
    """The category of ``op`` (an op name, NodeDef or Node): ``"file-io"``, ``"dataset"``,
    ``"python"``, ``"print"``, ``"network"``, ``"process"``, ``"random"``, ``"assert"``,
    ``"variable"``, ``"stateful"``, or None for a pure (or unknown custom) op."""
    name, attrs = _op_and_attrs(op)
    if _descriptor_file(name, attrs):
        return "file-io"
    hit = _categories().get(name)
    return None if hit is None else hit[0]


def side_effect(op: Any) -> str | None:
    """Why running ``op`` (an op name, NodeDef or Node) would act on the host, as a phrase
    after the node ("reads a file", "runs Python code"); None when it would not."""
    name, attrs = _op_and_attrs(op)
    if _descriptor_file(name, attrs):
        return "reads a file (its proto descriptor_source)"
    hit = _categories().get(name)
    return hit[1] if hit is not None and hit[0] in HOST_CATEGORIES else None


def _descriptor_file(op: str, attrs: Any) -> bool:
    """``DecodeProtoV2``/``EncodeProto`` whose ``descriptor_source`` is a file (a bare op
    name counts as one: the default is ``local://``, but the node may say otherwise)."""
    if not op.startswith(("DecodeProto", "EncodeProto")):
        return False
    if attrs is None:
        return True
    source = attrs["descriptor_source"].s if "descriptor_source" in attrs else b"local://"
    return source not in (b"", b"local://")


@dataclass(frozen=True)
class SideEffect:
    """A node of a graph that acts on the host: directly, or by calling a function
    (``via``: the function, and the node in it) that does."""

    node: str
    op: str
    reason: str
    via: str | None = None

    def __str__(self) -> str:
        return f"{self.op} {self.node!r} {self.reason}"


def side_effects(graph: Any) -> list[SideEffect]:
    """Every node of ``graph`` (a :class:`~graphsurgery.Graph`) that acts on the host, in
    graph order: side-effecting ops, and calls (``PartitionedCall``, ``If``, a function
    used as an op...) of library functions that hold one, at any depth."""
    functions, tainted = _library_taint(bytes(getattr(graph, "library", b"") or b""))
    host = _host_ops()
    found = []
    for nd in graph._nodes.values():
        why = side_effect(nd) if nd.op in host else None
        if why is not None:
            found.append(SideEffect(nd.name, nd.op, why))
            continue
        for fn in _called(nd, functions) if tainted else ():
            if fn in tainted:
                inner = tainted[fn]
                found.append(SideEffect(nd.name, nd.op, f"calls function {fn!r}: {inner}",
                                        via=fn))
                break
    return found


@lru_cache(maxsize=8)
def _library_taint(library: bytes) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """The functions of a serialized library, and those acting on the host (cached: a
    graph's library does not change while it is rewritten)."""
    functions = _library_functions(library)
    return functions, _tainted_functions(functions)


def function_attrs(nd: Any) -> list[str]:
    """The functions a NodeDef names in its attributes (``If`` branches, ``While`` body,
    ``PartitionedCall``'s ``f``...)."""
    out = []
    for value in nd.attr.values():
        kind = value.WhichOneof("value")
        if kind == "func":
            out.append(value.func.name)
        elif kind == "list":
            out.extend(f.name for f in value.list.func)
    return out


def _called(nd: Any, functions: dict[str, list[Any]]) -> list[str]:
    """The library functions a NodeDef calls: its op, and function-valued attributes."""
    return ([nd.op] if nd.op in functions else []) + function_attrs(nd)


def _tainted_functions(functions: dict[str, list[Any]]) -> dict[str, str]:
    """function name -> ``"<Op> '<node>' (in function 'f') <reason>"`` for the functions
    acting on the host, directly or through the functions they call (the innermost node)."""
    tainted: dict[str, str] = {}
    for name, nodes in functions.items():
        for nd in nodes:
            why = side_effect(nd)
            if why is not None:
                tainted[name] = f"{nd.op} {nd.name!r} (in function {name!r}) {why}"
                break
    changed = True
    while changed:  # callers of tainted functions, to a fixpoint
        changed = False
        for name, nodes in functions.items():
            if name in tainted:
                continue
            for nd in nodes:
                hit = next((f for f in _called(nd, functions) if f in tainted), None)
                if hit is not None:
                    tainted[name] = tainted[hit]
                    changed = True
                    break
    return tainted


def _fields(buf: bytes) -> list[tuple[int, Any]]:
    """(field number, value) of a serialized protobuf message: ints for varints, bytes for
    length-delimited fields; fixed-size fields are skipped."""
    out, i, n = [], 0, len(buf)

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    while i < n:
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 2:
            size = varint()
            out.append((number, buf[i:i + size]))
            i += size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _library_functions(library: bytes) -> dict[str, list[Any]]:
    """function name -> its NodeDefs, read from a serialized ``FunctionDefLibrary``
    (``function = 1``; in a ``FunctionDef``, ``signature = 1`` whose ``name = 1``, and
    ``node_def = 3``). An unreadable library gives what was read."""
    from . import proto

    out: dict[str, list[Any]] = {}
    try:
        for number, fdef in _fields(bytes(library)):
            if number != 1 or not isinstance(fdef, bytes):
                continue
            name, nodes = "", []
            for fnum, value in _fields(fdef):
                if fnum == 1 and isinstance(value, bytes):
                    name = next((v.decode("utf-8", "replace") for k, v in _fields(value)
                                 if k == 1 and isinstance(v, bytes)), "")
                elif fnum == 3 and isinstance(value, bytes):
                    nodes.append(proto.NodeDef.FromString(value))
            out[name] = nodes
    except Exception:  # noqa: BLE001 - a malformed library: keep what was read
        pass
    return out
