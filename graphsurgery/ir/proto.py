"""Wire-compatible GraphDef messages that do not need TensorFlow.

Importing TensorFlow costs about 600 MB of resident memory and three seconds, more than
the whole budget for loading, rewriting and saving a 120 MB generator graph. The core
therefore reads and writes GraphDefs with its own message classes, declared here with the
field numbers of TensorFlow's ``graph.proto`` family. Messages that graphsurgery never
looks inside (the function library, debug info, full types, resource handles) are
declared as ``bytes``: an embedded message and a bytes field share one wire type, so they
round-trip untouched. Fields this schema does not name survive as unknown fields. Dtypes
are the ``DataType`` enum, so a ``.pbtxt`` reads and writes ``DT_FLOAT`` as TensorFlow does.

TensorFlow is imported only where TensorFlow itself is needed (shape inference, the
TFLite converter, running a graph); :func:`to_tf` and :func:`from_tf` cross that border.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "graphsurgery.wire"

# (message, [(field name, number, type, label, message or enum type name or None)])
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_MESSAGES: list[tuple[str, list[tuple[str, int, int, int, str | None]]]] = [
    ("Dim", [("size", 1, _F.TYPE_INT64, _OPT, None), ("name", 2, _F.TYPE_STRING, _OPT, None)]),
    (
        "TensorShapeProto",
        [("dim", 2, _F.TYPE_MESSAGE, _REP, "Dim"), ("unknown_rank", 3, _F.TYPE_BOOL, _OPT, None)],
    ),
    (
        "TensorProto",
        [
            ("dtype", 1, _F.TYPE_ENUM, _OPT, "DataType"),
            ("tensor_shape", 2, _F.TYPE_MESSAGE, _OPT, "TensorShapeProto"),
            ("version_number", 3, _F.TYPE_INT32, _OPT, None),
            ("tensor_content", 4, _F.TYPE_BYTES, _OPT, None),
            ("float_val", 5, _F.TYPE_FLOAT, _REP, None),
            ("double_val", 6, _F.TYPE_DOUBLE, _REP, None),
            ("int_val", 7, _F.TYPE_INT32, _REP, None),
            ("string_val", 8, _F.TYPE_BYTES, _REP, None),
            ("scomplex_val", 9, _F.TYPE_FLOAT, _REP, None),
            ("int64_val", 10, _F.TYPE_INT64, _REP, None),
            ("bool_val", 11, _F.TYPE_BOOL, _REP, None),
            ("dcomplex_val", 12, _F.TYPE_DOUBLE, _REP, None),
            ("half_val", 13, _F.TYPE_INT32, _REP, None),
            ("resource_handle_val", 14, _F.TYPE_BYTES, _REP, None),
            ("variant_val", 15, _F.TYPE_BYTES, _REP, None),
            ("uint32_val", 16, _F.TYPE_UINT32, _REP, None),
            ("uint64_val", 17, _F.TYPE_UINT64, _REP, None),
            ("float8_val", 18, _F.TYPE_BYTES, _OPT, None),
        ],
    ),
    (
        "ListValue",
        [
            ("s", 2, _F.TYPE_BYTES, _REP, None),
            ("i", 3, _F.TYPE_INT64, _REP, None),
            ("f", 4, _F.TYPE_FLOAT, _REP, None),
            ("b", 5, _F.TYPE_BOOL, _REP, None),
            ("type", 6, _F.TYPE_ENUM, _REP, "DataType"),
            ("shape", 7, _F.TYPE_MESSAGE, _REP, "TensorShapeProto"),
            ("tensor", 8, _F.TYPE_MESSAGE, _REP, "TensorProto"),
            ("func", 9, _F.TYPE_MESSAGE, _REP, "NameAttrList"),
        ],
    ),
    (
        "AttrValue",
        [
            ("list", 1, _F.TYPE_MESSAGE, _OPT, "ListValue"),
            ("s", 2, _F.TYPE_BYTES, _OPT, None),
            ("i", 3, _F.TYPE_INT64, _OPT, None),
            ("f", 4, _F.TYPE_FLOAT, _OPT, None),
            ("b", 5, _F.TYPE_BOOL, _OPT, None),
            ("type", 6, _F.TYPE_ENUM, _OPT, "DataType"),
            ("shape", 7, _F.TYPE_MESSAGE, _OPT, "TensorShapeProto"),
            ("tensor", 8, _F.TYPE_MESSAGE, _OPT, "TensorProto"),
            ("placeholder", 9, _F.TYPE_STRING, _OPT, None),
            ("func", 10, _F.TYPE_MESSAGE, _OPT, "NameAttrList"),
        ],
    ),
    (
        "NameAttrList",
        [("name", 1, _F.TYPE_STRING, _OPT, None), ("attr", 2, _F.TYPE_MESSAGE, _REP, "AttrEntry")],
    ),
    (
        "NodeDef",
        [
            ("name", 1, _F.TYPE_STRING, _OPT, None),
            ("op", 2, _F.TYPE_STRING, _OPT, None),
            ("input", 3, _F.TYPE_STRING, _REP, None),
            ("device", 4, _F.TYPE_STRING, _OPT, None),
            ("attr", 5, _F.TYPE_MESSAGE, _REP, "AttrEntry"),
            ("experimental_debug_info", 6, _F.TYPE_BYTES, _OPT, None),
            ("experimental_type", 7, _F.TYPE_BYTES, _OPT, None),
        ],
    ),
    (
        "VersionDef",
        [
            ("producer", 1, _F.TYPE_INT32, _OPT, None),
            ("min_consumer", 2, _F.TYPE_INT32, _OPT, None),
            ("bad_consumers", 3, _F.TYPE_INT32, _REP, None),
        ],
    ),
    # Only the op names of TensorFlow's registry (tf_capi.registered_ops); the rest of
    # each OpDef is skipped as unknown fields.
    ("OpDef", [("name", 1, _F.TYPE_STRING, _OPT, None)]),
    ("OpList", [("op", 1, _F.TYPE_MESSAGE, _REP, "OpDef")]),
    (
        "GraphDef",
        [
            ("node", 1, _F.TYPE_MESSAGE, _REP, "NodeDef"),
            ("library", 2, _F.TYPE_BYTES, _OPT, None),
            ("version", 3, _F.TYPE_INT32, _OPT, None),
            ("versions", 4, _F.TYPE_MESSAGE, _OPT, "VersionDef"),
            ("debug_info", 5, _F.TYPE_BYTES, _OPT, None),
        ],
    ),
]

# tensorflow.DataType (types.proto), declared as an enum so that the text format reads and
# writes the names TensorFlow uses ("DT_FLOAT"). proto3 enums are open: a number not listed
# here still parses and round-trips (and :mod:`graphsurgery.ir.attrs` reports it).
_DATA_TYPES = [
    "INVALID", "FLOAT", "DOUBLE", "INT32", "UINT8", "INT16", "INT8", "STRING", "COMPLEX64",
    "INT64", "BOOL", "QINT8", "QUINT8", "QINT32", "BFLOAT16", "QINT16", "QUINT16", "UINT16",
    "COMPLEX128", "HALF", "RESOURCE", "VARIANT", "UINT32", "UINT64", "FLOAT8_E5M2",
    "FLOAT8_E4M3FN", "FLOAT8_E4M3FNUZ", "FLOAT8_E4M3B11FNUZ", "FLOAT8_E5M2FNUZ", "INT4", "UINT4",
    "INT2", "UINT2", "FLOAT4_E2M1FN",
]  # the value of each is its index; DT_<name>_REF is the value plus 100

# Fields that are a `oneof value` in attr_value.proto.
_ONEOF = {
    "AttrValue": ["list", "s", "i", "f", "b", "type", "shape", "tensor", "placeholder", "func"]
}


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="graphsurgery/wire.proto", package=_PACKAGE, syntax="proto3"
    )
    # map<string, AttrValue> is a repeated entry message with map_entry set.
    entry = f.message_type.add(name="AttrEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_OPT)
    entry.field.add(
        name="value", number=2, type=_F.TYPE_MESSAGE, label=_OPT, type_name=f".{_PACKAGE}.AttrValue"
    )
    enum = f.enum_type.add(name="DataType")
    for number, name in enumerate(_DATA_TYPES):
        enum.value.add(name=f"DT_{name}", number=number)
    for number, name in enumerate(_DATA_TYPES[1:], start=101):
        enum.value.add(name=f"DT_{name}_REF", number=number)
    for msg_name, fields in _MESSAGES:
        msg = f.message_type.add(name=msg_name)
        oneof = _ONEOF.get(msg_name, [])
        if oneof:
            msg.oneof_decl.add(name="value")
        for name, number, ftype, label, type_name in fields:
            fd = msg.field.add(name=name, number=number, type=ftype, label=label)
            if type_name is not None:
                if type_name == "AttrEntry":
                    fd.type_name = f".{_PACKAGE}.{msg_name}.AttrEntry"
                else:
                    fd.type_name = f".{_PACKAGE}.{type_name}"
            if name in oneof:
                fd.oneof_index = 0
        if any(t == "AttrEntry" for *_, t in fields):
            nested = msg.nested_type.add()
            nested.CopyFrom(entry)
    del f.message_type[0]  # the template entry; each map owner has its own nested copy
    return f


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_build_file())


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


GraphDef = _cls("GraphDef")
NodeDef = _cls("NodeDef")
AttrValue = _cls("AttrValue")
TensorProto = _cls("TensorProto")
TensorShapeProto = _cls("TensorShapeProto")
VersionDef = _cls("VersionDef")
NameAttrList = _cls("NameAttrList")
OpList = _cls("OpList")


def to_tf(graph_def: Any) -> Any:
    """Return a ``tf.compat.v1.GraphDef`` with the same content (imports TensorFlow)."""
    from tensorflow.core.framework import graph_pb2

    return graph_pb2.GraphDef.FromString(graph_def.SerializeToString())


def from_tf(message: Any) -> Any:
    """Return our GraphDef for a TensorFlow ``GraphDef`` (or anything that serialises to one)."""
    return GraphDef.FromString(message.SerializeToString())
