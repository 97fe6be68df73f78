"""Freezing a TF2 SavedModel by reading it as data: nothing of the model is executed.

``tf.saved_model.load`` runs the model's own code: it restores variables through the model's
restore function and runs every resource's ``_initialize`` function, which may call any op
(``tf.io.write_file`` included). This module instead reads

* ``saved_model.pb``: the MetaGraphDef, its function library, the signature map and the
  object graph (which variables each function captures);
* ``variables/variables.index`` and its data shards with TensorFlow's tensor-bundle reader
  (``CheckpointReader``: it parses files, it builds and runs no graph);

and inlines the signature's function, with every nested ``PartitionedCall``/
``StatefulPartitionedCall`` and direct function call, into one flat GraphDef. Captured
variables become ``Const`` nodes holding their checkpoint values (each ``ReadVariableOp``
becomes an ``Identity`` of that Const); captured constants are copied; ``If`` is lowered
to ``Switch``/``Merge`` as TensorFlow lowers it. A signature that
needs any other resource (a hash table, a ``TrackableResource``, an asset) cannot be frozen
without running its initializer and is refused with one line; initializers that exist but
are not needed are reported with a warning, never run. Other functional control flow
(``While``, ``Case``) is kept, with the functions it calls, as long as no variable flows
into it.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any

from ..errors import InputError
from . import opdefs, proto

log = logging.getLogger("graphsurgery")

_CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
# Ops that only forward a resource handle (followed to find the variable a read reads).
_HANDLE_FORWARDERS = frozenset({"Identity", "IdentityN"})
_VARIABLE = "_graphsurgery_variable"  # op of the marker nodes standing for captured variables
_MAX_NESTING = 64
_RESOURCE = 20  # DT_RESOURCE
_BOOL = 10  # DT_BOOL
# Functional conditionals lowered to Switch/Merge (TensorFlow's LowerIfOp does the same).
_IF_OPS = frozenset({"If", "StatelessIf"})


class _Refused(Exception):
    """A SavedModel this module will not freeze; the message is the reason (one line)."""


def freeze(path: Path, signature: str) -> tuple[Any, list[str], list[str]]:
    """Freeze the SavedModel at ``path`` through ``signature``.

    Returns ``(graph_def, input names, output names)``; ``graph_def`` is graphsurgery's own
    message (:mod:`graphsurgery.ir.proto`). Raises InputError naming ``path``.
    """
    try:
        return _freeze(path, signature)
    except _Refused as exc:
        raise InputError(f"{path}: {exc}") from None


def _freeze(path: Path, signature: str) -> tuple[Any, list[str], list[str]]:
    meta = _meta_graph(path)
    sigs = sorted(k for k in meta.signature_def if not k.startswith("__"))
    if signature not in meta.signature_def or signature.startswith("__"):
        raise _Refused(f"SavedModel has no signature {signature!r} (has: {sigs})")
    if not meta.object_graph_def.nodes:
        raise _Refused(
            "a TF1 SavedModel (no object graph); graphsurgery freezes TF2 SavedModels without "
            "running them. Freeze it to a GraphDef .pb in its own environment first"
        )
    objects = meta.object_graph_def
    library = {f.signature.name: f for f in meta.graph_def.library.function}
    fname = _signature_function(meta, signature)
    if fname not in library:
        raise _Refused(f"signature {signature!r} calls function {fname!r}, not in the library")
    fdef = library[fname]
    bound = list(objects.concrete_functions[fname].bound_inputs)
    args = list(fdef.signature.input_arg)
    n_user = len(args) - len(bound)
    if n_user < 0:
        raise _Refused(f"function {fname!r} captures more inputs than it takes")
    paths = _object_paths(objects)

    out: dict[str, Any] = {}
    arg_map: dict[str, str] = {}
    inputs: list[str] = []
    for i, arg in enumerate(args[:n_user]):
        nd = proto.NodeDef(name=arg.name, op="Placeholder")
        nd.attr["dtype"].type = arg.type
        shape = _arg_shape(fdef, i)
        if shape is not None:
            nd.attr["shape"].shape.CopyFrom(shape)
        out[arg.name] = nd
        arg_map[arg.name] = arg.name
        inputs.append(arg.name)
    variables: dict[str, str] = {}  # marker node -> the variable's object path
    for arg, node_id in zip(args[n_user:], bound, strict=True):
        if not 0 <= node_id < len(objects.nodes):
            raise _Refused(f"function {fname!r} captures object {node_id}, which does not exist")
        obj = objects.nodes[node_id]
        kind = obj.WhichOneof("kind")
        where = paths.get(node_id, f"object {node_id}")
        if kind == "variable":
            out[arg.name] = proto.NodeDef(name=arg.name, op=_VARIABLE)
            variables[arg.name] = where
        elif kind == "constant":
            out[arg.name] = _captured_constant(meta, obj.constant.operation, arg.name, where)
        else:
            raise _Refused(
                f"signature {signature!r} uses {kind} {where!r}, not a variable: freezing it "
                "would mean running its initializer, and graphsurgery executes nothing of a "
                "SavedModel"
            )
        arg_map[arg.name] = arg.name

    inliner = _Inliner(library)
    rets = inliner.inline(fdef, "", arg_map, [], out)
    outputs = [rets[a.name] for a in fdef.signature.output_arg]
    nodes = _prune(out, outputs)
    _bind_variables(nodes, variables, _Checkpoint(path / "variables" / "variables", objects),
                    outputs)
    gd = proto.GraphDef()
    gd.node.extend(nodes.values())
    gd.versions.CopyFrom(proto.VersionDef.FromString(meta.graph_def.versions.SerializeToString()))
    used = inliner.referenced_functions(nodes.values())
    if used:
        from tensorflow.core.framework import function_pb2

        lib = function_pb2.FunctionDefLibrary()
        lib.function.extend(library[name] for name in sorted(used))
        gd.library = lib.SerializeToString()
    _report_initializers(path, meta, objects, paths)
    return gd, inputs, outputs


# ---------------------------------------------------------------- reading the files


def _meta_graph(path: Path) -> Any:
    from google.protobuf import message as pb_message
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    try:
        if (path / "saved_model.pb").exists():
            sm.ParseFromString((path / "saved_model.pb").read_bytes())
        else:
            text_format.Parse((path / "saved_model.pbtxt").read_text(), sm)
    except (pb_message.DecodeError, text_format.ParseError) as exc:
        raise _Refused(f"not a SavedModel (saved_model.pb: {str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise _Refused(f"cannot read saved_model.pb: {exc.strerror}") from None
    metas = [m for m in sm.meta_graphs if "serve" in m.meta_info_def.tags]
    if not metas:
        metas = list(sm.meta_graphs)
    if len(metas) != 1:
        tags = [list(m.meta_info_def.tags) for m in sm.meta_graphs]
        raise _Refused(f"expected one MetaGraph tagged 'serve', found tags {tags}")
    return metas[0]


def _signature_function(meta: Any, signature: str) -> str:
    """The concrete function behind ``signature``: from the object graph (the root's
    ``signatures`` child), else from the call node that produces the signature's outputs."""
    objects = meta.object_graph_def
    root = objects.nodes[0]
    for child in root.children:
        if child.local_name != "signatures":
            continue
        for sig in objects.nodes[child.node_id].children:
            if sig.local_name == signature:
                obj = objects.nodes[sig.node_id]
                if obj.WhichOneof("kind") == "bare_concrete_function":
                    return obj.bare_concrete_function.concrete_function_name
                if obj.WhichOneof("kind") == "function" and obj.function.concrete_functions:
                    return obj.function.concrete_functions[0]
    tensors = meta.signature_def[signature].outputs.values()
    nodes = {n.name: n for n in meta.graph_def.node}
    for info in tensors:
        nd = nodes.get(info.name.split(":")[0])
        if nd is not None and nd.op in _CALL_OPS:
            return nd.attr["f"].func.name
    raise _Refused(f"cannot find the function of signature {signature!r}")


def _object_paths(objects: Any) -> dict[int, str]:
    """``node id -> "child/grandchild"`` for every object reachable from the root."""
    paths = {0: ""}
    queue = deque([0])
    while queue:
        i = queue.popleft()
        for child in objects.nodes[i].children:
            if child.node_id not in paths and child.node_id < len(objects.nodes):
                paths[child.node_id] = f"{paths[i]}/{child.local_name}".lstrip("/")
                queue.append(child.node_id)
    return paths


def _arg_shape(fdef: Any, index: int) -> Any:
    attrs = fdef.arg_attr[index].attr if index in fdef.arg_attr else {}
    if "_output_shapes" in attrs and len(attrs["_output_shapes"].list.shape):
        return proto.TensorShapeProto.FromString(
            attrs["_output_shapes"].list.shape[0].SerializeToString()
        )
    return None


def _captured_constant(meta: Any, operation: str, name: str, where: str) -> Any:
    for nd in meta.graph_def.node:
        if nd.name == operation and nd.op == "Const":
            const = proto.NodeDef.FromString(nd.SerializeToString())
            const.name = name
            del const.input[:]
            return const
    raise _Refused(f"captured constant {where!r} names no Const node {operation!r}")


def _report_initializers(path: Path, meta: Any, objects: Any, paths: dict[int, str]) -> None:
    """Warn about initializers a TensorFlow load would run (resources, the init op)."""
    found = []
    for i, obj in enumerate(objects.nodes):
        if obj.WhichOneof("kind") != "resource":
            continue
        init = [
            objects.nodes[c.node_id] for c in obj.children if c.local_name == "_initialize"
        ]
        fn = ""
        if init and init[0].WhichOneof("kind") == "function":
            fn = f" (_initialize: {', '.join(init[0].function.concrete_functions)})"
        found.append(f"resource {paths.get(i, f'object {i}')!r}{fn}")
    init_sig = meta.signature_def.get("__saved_model_init_op")
    if init_sig is not None:
        nodes = {n.name: n for n in meta.graph_def.node}
        for info in init_sig.outputs.values():
            nd = nodes.get(info.name.split(":")[0])
            if nd is None or (nd.op == "NoOp" and not nd.input):
                continue
            runs = []
            for ref in nd.input:
                dep = nodes.get(_split(ref.lstrip("^"))[0])
                if dep is not None:
                    runs.append(dep.attr["f"].func.name if dep.op in _CALL_OPS else dep.name)
            found.append(f"init op {nd.name!r} (runs {', '.join(runs) or nd.op})")
    if found:
        log.warning(
            "%s: SavedModel initializers not run (graphsurgery reads variable values from the "
            "checkpoint and executes nothing of the model): %s",
            path,
            "; ".join(found),
        )


class _Checkpoint:
    """Variable values read from the tensor bundle as data.

    ``CheckpointReader`` (TensorFlow's C++ ``BundleReader``) parses the index and data
    shards; no graph is built and no op runs. Checkpoint keys are found by matching the
    SavedModel's object graph with the checkpoint's own (``_CHECKPOINTABLE_OBJECT_GRAPH``)
    by object path, as TensorFlow's restore does.
    """

    def __init__(self, prefix: Path, objects: Any) -> None:
        self.prefix = prefix
        self.objects = objects
        self._reader: Any = None
        self._keys: dict[str, str] | None = None

    def reader(self) -> Any:
        if self._reader is None:
            from tensorflow.python.training import py_checkpoint_reader

            if not self.prefix.with_name("variables.index").exists():
                raise _Refused("no variables/variables.index (the variables' checkpoint)")
            try:
                self._reader = py_checkpoint_reader.NewCheckpointReader(str(self.prefix))
            except Exception as exc:  # TensorFlow raises several types for a bad bundle
                raise _Refused(f"cannot read the variables: {str(exc).splitlines()[0]}") from None
        return self._reader

    def key_of(self, where: str) -> str:
        """The checkpoint key of the variable at object path ``where``."""
        if self._keys is None:
            from tensorflow.core.protobuf import trackable_object_graph_pb2

            try:
                raw = self.reader().get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
                graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(raw)
            except Exception:  # noqa: BLE001 - any failure means: no usable object graph
                raise _Refused("the checkpoint has no object graph") from None
            by_path = {p: i for i, p in _object_paths(graph).items()}
            self._keys = {}
            for p in _object_paths(self.objects).values():
                ck = by_path.get(p)
                if ck is None:
                    continue
                for attr in graph.nodes[ck].attributes:
                    if attr.name == "VARIABLE_VALUE":
                        self._keys[p] = attr.checkpoint_key
        key = self._keys.get(where)
        if key is None:
            raise _Refused(f"variable {where!r} has no value in the checkpoint")
        return key

    def value(self, where: str) -> Any:
        """The value (numpy) of the variable at object path ``where``."""
        key = self.key_of(where)
        try:
            return self.reader().get_tensor(key)
        except Exception as exc:  # noqa: BLE001
            raise _Refused(
                f"cannot read variable {where!r}: {str(exc).splitlines()[0]}"
            ) from None


# ---------------------------------------------------------------- inlining


def _flat(node: str, port: int) -> str:
    return node if port == 0 else f"{node}:{port}"


def _split(tensor: str) -> tuple[str, int]:
    name, _, port = tensor.partition(":")
    return name, int(port) if port else 0


class _Inliner:
    """Inline a FunctionDef, and every function call in it, into flat NodeDefs."""

    def __init__(self, library: dict[str, Any]) -> None:
        self.library = library
        self.stack: list[str] = []

    def _output_ports(self, nd: Any) -> dict[str, int]:
        """``output arg name -> first flat port`` of a node in a function body."""
        if nd.op in self.library:
            sig = self.library[nd.op].signature
        else:
            from tensorflow.python.framework import op_def_registry

            sig = op_def_registry.get(nd.op)
            if sig is None:
                raise _Refused(f"node {nd.name!r}: op {nd.op!r} is not a TensorFlow op")
        ports, port = {}, 0
        for arg in sig.output_arg:
            ports[arg.name] = port
            if arg.number_attr:
                port += nd.attr[arg.number_attr].i
            elif arg.type_list_attr:
                port += len(nd.attr[arg.type_list_attr].list.type)
            else:
                port += 1
        return ports

    def inline(
        self,
        fdef: Any,
        prefix: str,
        arg_map: dict[str, str],
        controls: list[str],
        out: dict[str, Any],
    ) -> dict[str, str]:
        """Add ``fdef``'s body to ``out`` under ``prefix``; return ``ret name -> tensor``.

        ``arg_map`` gives the outer tensor of each argument, ``controls`` the outer control
        inputs of the call, which every inlined node that depends on nothing inside waits on.
        """
        name = fdef.signature.name
        if name in self.stack:
            raise _Refused(f"function {name!r} calls itself")
        if len(self.stack) >= _MAX_NESTING:
            raise _Refused(f"function calls nested deeper than {_MAX_NESTING}")
        self.stack.append(name)
        body = {nd.name: nd for nd in fdef.node_def}
        ports = {n: self._output_ports(nd) for n, nd in body.items()}

        def tensor(ref: str, where: str) -> str:
            if ref in arg_map:
                return arg_map[ref]
            parts = ref.split(":")
            if len(parts) == 3 and parts[0] in body and parts[1] in ports[parts[0]]:
                return _flat(prefix + parts[0], ports[parts[0]][parts[1]] + int(parts[2]))
            raise _Refused(f"function {name!r}: node {where!r} has a bad input {ref!r}")

        def control(ref: str, where: str) -> str:
            src = ref[1:]
            if src in arg_map:
                return "^" + _split(arg_map[src])[0]
            if src in body:
                return "^" + prefix + src
            raise _Refused(f"function {name!r}: node {where!r} has a bad input {ref!r}")

        inlined = {prefix + n for n in body}
        calls = []
        for nd in fdef.node_def:
            new = proto.NodeDef.FromString(nd.SerializeToString())
            new.name = prefix + nd.name
            del new.input[:]
            data = [tensor(r, nd.name) for r in nd.input if not r.startswith("^")]
            ctrl = [control(r, nd.name) for r in nd.input if r.startswith("^")]
            inside = any(_split(t.lstrip("^"))[0] in inlined for t in data + ctrl)
            if controls and not inside:
                ctrl += [c for c in controls if c not in ctrl]
            for av in new.attr.values():
                if av.WhichOneof("value") == "placeholder":
                    raise _Refused(f"function {name!r} is polymorphic (attr ${av.placeholder})")
            new.input.extend(data + ctrl)
            if new.name in out:
                raise _Refused(f"inlining {name!r} makes two nodes named {new.name!r}")
            out[new.name] = new
            if nd.op in _CALL_OPS or nd.op in _IF_OPS or nd.op in self.library:
                calls.append(new)
        for call in calls:
            if call.op in _IF_OPS:
                self._lower_if(call, out)
            else:
                self._inline_call(call, out)
        rets = {}
        for arg in fdef.signature.output_arg:
            rets[arg.name] = tensor(fdef.ret[arg.name], f"return {arg.name}")
        self.stack.pop()
        self.control_rets = [prefix + n for n in fdef.control_ret.values()]
        return rets

    def _inline_call(self, call: Any, out: dict[str, Any]) -> None:
        fname = call.attr["f"].func.name if call.op in _CALL_OPS else call.op
        if fname not in self.library:
            raise _Refused(f"node {call.name!r} calls function {fname!r}, not in the library")
        fdef = self.library[fname]
        data = [t for t in call.input if not t.startswith("^")]
        ctrl = [t for t in call.input if t.startswith("^")]
        args = fdef.signature.input_arg
        if len(data) != len(args):
            raise _Refused(f"node {call.name!r} passes {len(data)} inputs to {fname!r}")
        arg_map = {a.name: t for a, t in zip(args, data, strict=True)}
        rets = self.inline(fdef, call.name + "/", arg_map, ctrl, out)
        outs = [rets[a.name] for a in fdef.signature.output_arg]
        types = [a.type for a in fdef.signature.output_arg]
        # The call node becomes the junction its users already name; it also waits for the
        # function's control rets.
        out[call.name] = _junction(call, outs, types, ["^" + n for n in self.control_rets])

    def _lower_if(self, node: Any, out: dict[str, Any]) -> None:
        """Lower a functional ``If`` to ``Switch``/``Merge`` with both branches inlined, as
        TensorFlow's own lowering does (and as freezing with TensorFlow did): every input is
        switched on the predicate (resource handles pass as they are), each branch runs on
        its side of the switch, and one Merge per output joins them."""
        name = node.name
        data = [t for t in node.input if not t.startswith("^")]
        ctrl = [t for t in node.input if t.startswith("^")]
        pred, args = data[0], data[1:]
        tin = list(node.attr["Tin"].list.type)
        tout = list(node.attr["Tout"].list.type)
        branches = [node.attr["else_branch"].func.name, node.attr["then_branch"].func.name]
        if len(tin) != len(args) or any(b not in self.library for b in branches):
            raise _Refused(f"node {name!r} (If) does not match its branch functions")

        def add(suffix: str, op: str, inputs: list[str], **types: Any) -> str:
            nd = proto.NodeDef(name=f"{name}/{suffix}", op=op, device=node.device)
            nd.input.extend(inputs)
            for key, value in types.items():
                if isinstance(value, list):
                    nd.attr[key].list.type.extend(value)
                elif key == "N":
                    nd.attr[key].i = value
                else:
                    nd.attr[key].type = value
            if nd.name in out:
                raise _Refused(f"lowering {name!r} makes two nodes named {nd.name!r}")
            out[nd.name] = nd
            return nd.name

        switch = add("switch_pred", "Switch", [pred, pred, *ctrl], T=_BOOL)
        pivots = [add(f"pivot_{side}", "Identity", [_flat(switch, port)], T=_BOOL)
                  for port, side in enumerate(("f", "t"))]
        switched = [
            a if t == _RESOURCE else add(f"input_{i}", "Switch", [a, pred, *ctrl], T=t)
            for i, (a, t) in enumerate(zip(args, tin, strict=True))
        ]
        rets = []
        for port, (fname, side) in enumerate(zip(branches, ("else", "then"), strict=True)):
            fdef = self.library[fname]
            arg_map = {
                arg.name: a if t == _RESOURCE else _flat(a, port)
                for arg, a, t in zip(fdef.signature.input_arg, switched, tin, strict=True)
            }
            got = self.inline(fdef, f"{name}/{side}/", arg_map, ["^" + pivots[port]], out)
            rets.append([got[a.name] for a in fdef.signature.output_arg])
        merges = [
            add(f"merge_{j}", "Merge", [rets[1][j], rets[0][j]], T=t, N=2)
            for j, t in enumerate(tout)
        ]
        out[name] = _junction(node, merges, tout, [] if merges else ["^" + p for p in pivots])

    def referenced_functions(self, nodes: Any) -> set[str]:
        """Library functions the kept nodes (``If``, ``While``, ...) need, transitively."""
        todo = [n for nd in nodes for n in opdefs.function_attrs(nd)]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen or name not in self.library:
                continue
            seen.add(name)
            for nd in self.library[name].node_def:
                todo.extend(opdefs.function_attrs(nd))
                if nd.op in self.library:
                    todo.append(nd.op)
        return seen


def _junction(call: Any, outs: list[str], types: list[int], controls: list[str]) -> Any:
    """The node that stands where ``call`` stood, under its name: ``Identity`` for one
    output, ``IdentityN`` for several, ``NoOp`` for none; ``controls`` are waited for."""
    node = proto.NodeDef(name=call.name, device=call.device)
    if len(outs) == 1:
        node.op = "Identity"
        node.attr["T"].type = types[0]
    elif outs:
        node.op = "IdentityN"
        node.attr["T"].list.type.extend(types)
    else:
        node.op = "NoOp"
    node.input.extend(outs + controls)
    return node


# ---------------------------------------------------------------- variables


def _prune(nodes: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    """Keep the nodes the outputs need (data and control), in their original order."""
    keep: set[str] = set()
    todo = [_split(t)[0] for t in outputs]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        todo.extend(_split(t.lstrip("^"))[0] for t in nodes[name].input)
    return {n: nd for n, nd in nodes.items() if n in keep}


def _forwards_handle(nd: Any, port: int) -> bool:
    """True when output ``port`` of ``nd`` is a resource handle passed through unchanged."""
    if nd.op == "Identity":
        return port == 0 and nd.attr["T"].type == _RESOURCE
    if nd.op == "IdentityN":
        types = nd.attr["T"].list.type
        return port < len(types) and types[port] == _RESOURCE
    return False


def _prune_in_place(nodes: dict[str, Any], outputs: list[str]) -> None:
    kept = _prune(nodes, outputs)
    for name in [n for n in nodes if n not in kept]:
        del nodes[name]


def _bind_variables(
    nodes: dict[str, Any],
    variables: dict[str, str],
    ckpt: _Checkpoint,
    outputs: list[str],
) -> None:
    """Turn the variable markers into Consts and each read of one into an Identity; prune
    what the outputs no longer need (the handle forwarders)."""
    handle_of: dict[str, str] = {}  # tensor -> marker, through Identity of a resource

    def variable_of(tensor: str) -> str | None:
        name, port = _split(tensor)
        if name in variables:
            return name
        nd = nodes.get(name)
        if nd is None or not _forwards_handle(nd, port):
            return None
        if tensor not in handle_of:
            data = [t for t in nd.input if not t.startswith("^")]
            handle_of[tensor] = variable_of(data[port]) if port < len(data) else None
        return handle_of[tensor]

    read_dtype: dict[str, int] = {}
    for nd in list(nodes.values()):
        data = [t for t in nd.input if not t.startswith("^")]
        used = [(i, variable_of(t)) for i, t in enumerate(data)]
        used = [(i, v) for i, v in used if v is not None]
        if not used:
            continue
        if nd.op == "ReadVariableOp":
            var = used[0][1]
            dtype = nd.attr["dtype"].type
            if read_dtype.setdefault(var, dtype) != dtype:
                raise _Refused(f"variable {variables[var]!r} is read as two dtypes")
            ctrl = [t for t in nd.input if t.startswith("^")]
            del nd.input[:]
            nd.input.extend([var, *ctrl])
            nd.op = "Identity"
            nd.attr.clear()
            nd.attr["T"].type = dtype
        elif nd.op in _HANDLE_FORWARDERS and all(
            _forwards_handle(nd, i) for i, _ in used
        ):
            continue  # a handle in transit; left unused once the reads are rewritten
        elif nd.op == "ResourceGather" and [i for i, _ in used] == [0]:
            _gather_from_const(nd, used[0][1], nodes, read_dtype)
        elif nd.op == "VariableShape" and [i for i, _ in used] == [0]:
            continue  # becomes Shape(value) below, once the value's dtype is known
        else:
            raise _Refused(
                f"node {nd.name!r} ({nd.op}) uses variable {variables[used[0][1]]!r}; "
                "only reads of variables (ReadVariableOp, ResourceGather, VariableShape) "
                "can be frozen"
            )
    _prune_in_place(nodes, outputs)
    # A handle forwarder still kept (by a control edge) becomes a NoOp with the same edges.
    for nd in nodes.values():
        data = [t for t in nd.input if not t.startswith("^")]
        carried = [_forwards_handle(nd, i) and variable_of(t) is not None
                   for i, t in enumerate(data)]
        if any(carried):
            if not all(carried):
                raise _Refused(f"node {nd.name!r} forwards a variable handle with other tensors")
            ctrl = [t for t in nd.input if t.startswith("^")]
            del nd.input[:]
            nd.input.extend(["^" + _split(t)[0] for t in data] + ctrl)
            nd.op = "NoOp"
            nd.attr.clear()
        elif nd.op in ("ReadVariableOp", "VarHandleOp", "VariableV2", "ResourceGather"):
            raise _Refused(
                f"node {nd.name!r} ({nd.op}) uses a variable that is not one the signature "
                "captures; it would read uninitialised state"
            )
    import tensorflow as tf

    for marker, where in variables.items():
        if marker not in nodes:
            continue
        value = ckpt.value(where)
        dtype = read_dtype.get(marker)
        tensor = tf.compat.v1.make_tensor_proto(value)
        if dtype is not None and tensor.dtype != dtype:
            raise _Refused(
                f"variable {where!r} holds {tf.dtypes.as_dtype(tensor.dtype).name} in the "
                f"checkpoint but is read as {tf.dtypes.as_dtype(dtype).name}"
            )
        const = nodes[marker]
        for user in nodes.values():
            if user.op == "VariableShape" and variable_of(user.input[0]) == marker:
                _shape_of_const(user, marker, tensor.dtype)
        const.op = "Const"
        const.attr["dtype"].type = tensor.dtype
        const.attr["value"].tensor.CopyFrom(
            proto.TensorProto.FromString(tensor.SerializeToString())
        )


def _gather_from_const(
    nd: Any, var: str, nodes: dict[str, Any], read_dtype: dict[str, int]
) -> None:
    """``ResourceGather(variable, indices)`` -> ``GatherV2(value, indices, batch_dims)``."""
    dtype = nd.attr["dtype"].type
    if read_dtype.setdefault(var, dtype) != dtype:
        raise _Refused(f"node {nd.name!r} reads a variable as two dtypes")
    batch_dims = nd.attr["batch_dims"].i if "batch_dims" in nd.attr else 0
    tindices = nd.attr["Tindices"].type
    axis = proto.NodeDef(name=f"{nd.name}/axis", op="Const")
    if axis.name in nodes:
        raise _Refused(f"node name {axis.name!r} is taken")
    axis.attr["dtype"].type = 3  # int32
    axis.attr["value"].tensor.dtype = 3
    axis.attr["value"].tensor.int_val.append(batch_dims)
    nodes[axis.name] = axis
    data = [t for t in nd.input if not t.startswith("^")]
    ctrl = [t for t in nd.input if t.startswith("^")]
    del nd.input[:]
    nd.input.extend([var, data[1], axis.name, *ctrl])
    nd.op = "GatherV2"
    nd.attr.clear()
    nd.attr["Tparams"].type = dtype
    nd.attr["Tindices"].type = tindices
    nd.attr["Taxis"].type = 3
    nd.attr["batch_dims"].i = batch_dims


def _shape_of_const(nd: Any, var: str, dtype: int) -> None:
    """``VariableShape(variable)`` -> ``Shape(value)``."""
    out_type = nd.attr["out_type"].type if "out_type" in nd.attr else 3
    ctrl = [t for t in nd.input if t.startswith("^")]
    del nd.input[:]
    nd.input.extend([var, *ctrl])
    nd.op = "Shape"
    nd.attr.clear()
    nd.attr["T"].type = dtype
    nd.attr["out_type"].type = out_type
