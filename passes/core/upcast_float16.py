"""``core::upcast_float16``: run a mixed-precision (float16) graph in float32."""

from __future__ import annotations

import numpy as np

from graphsurgery.ir import proto
from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import TensorRef
from graphsurgery.registry import Pass, register_pass
from graphsurgery.rewriter import Rewriter

_HALF = int(DType.float16)
_FLOAT = int(DType.float32)


@register_pass("core::upcast_float16")
class UpcastFloat16(Pass):
    """Make every float16 tensor float32: casts to half and back removed, half constants
    (clamp bounds included) widened, every ``half`` type attribute made ``float``.

    Mixed-precision generators (StyleGAN2-ADA's ``num_fp16_res``) run their highest
    resolutions in float16; TFLite's builtin kernels reject float16 ``MINIMUM``/``MAXIMUM``
    and TensorFlow's CPU kernels compute them slower than float32. The float32 graph is the
    faithful one (the original's float16 arithmetic only loses precision); quantizing to
    float16 afterwards (``--quantize fp16``) is a choice of the target.

    A ``Cast`` whose source and destination types become equal is removed. Declared inputs
    and outputs keep their dtype: a float16 input is cast to float32 where it is read, and a
    float16 output is computed in float32 then cast to float16 once, at the end.

    Before::

        x  = Conv2D(a, w)                          (float32)
        h  = Cast(x, DstT=half)
        c  = Const(256, dtype=half)
        m  = Minimum(h, c)                         (T=half)
        y  = Cast(m, DstT=float)

    After::

        x  = Conv2D(a, w)
        c  = Const(256, dtype=float)
        y  = Minimum(x, c)                         (T=float)
    """

    def run(self, graph: Graph, rw: Rewriter) -> None:
        inputs = {t.node for t in graph.inputs}
        half_outputs = [t for t in graph.outputs if graph.dtype_hint(t) == DType.float16]
        half_inputs = [t for t in graph.inputs if graph.dtype_hint(t) == DType.float16]
        casts: list[str] = []
        for name in graph.toposort():
            node = graph.get(name)
            if node is None or name in inputs:
                continue
            if node.op == "Const" and node.proto.attr["dtype"].type == _HALF:
                value = np.asarray(graph.const_value(name)).astype(np.float32)
                rw.set_attr(name, "value", value)
                rw.set_attr(name, "dtype", DType.float32)
                continue
            for key, av in node.proto.attr.items():
                widened = _widen(av)
                if widened is not None:
                    rw.set_attr(name, key, widened)
            if node.op == "Cast":
                casts.append(name)
        for ref in half_inputs:
            cast = rw.add_node("Cast", [ref], {"SrcT": DType.float16, "DstT": DType.float32},
                               name=f"{ref.node}/to_float32")
            rw.replace_uses(ref, cast.output(), outputs=False, exclude=[cast.name])
        for name in casts:
            _drop_if_noop(graph, rw, graph.node(name))
        for ref in half_outputs:
            cast = rw.add_node("Cast", [ref], {"SrcT": DType.float32, "DstT": DType.float16},
                               name=f"{ref.node}/to_float16")
            rw.replace_uses(ref, cast.output(), exclude=[cast.name])


def _widen(av: proto.AttrValue) -> proto.AttrValue | None:
    """``av`` with every ``half`` type made ``float``, or None when it holds none."""
    kind = av.WhichOneof("value")
    if kind == "type" and av.type == _HALF:
        out = proto.AttrValue()
        out.type = _FLOAT
        return out
    if kind == "list" and _HALF in av.list.type:
        out = proto.AttrValue()
        out.CopyFrom(av)
        del out.list.type[:]
        out.list.type.extend(_FLOAT if t == _HALF else t for t in av.list.type)
        return out
    return None


def _drop_if_noop(graph: Graph, rw: Rewriter, node: Node) -> None:
    """Bypass a ``Cast`` that now casts a type to itself."""
    if node.proto.attr["SrcT"].type != node.proto.attr["DstT"].type:
        return
    if node.control_inputs or graph.control_users(node.name):
        return
    rw.replace_uses(TensorRef(node.name, 0), node.data_inputs[0])
    rw.erase(node.name)
