"""The layout of an ONNX model's image inputs and outputs (the ``layout`` option).

ONNX convolutions are NCHW, so the network inside keeps that layout; ``layout`` says how the
model's 4-D inputs and outputs are delivered: ``nchw`` or ``nhwc`` (unset: as the rewritten
graph has them). A 4-D output's present layout is read from the ONNX graph: walking back
through element-wise ops, a ``Conv``/``ConvTranspose``/``DepthToSpace`` means NCHW, a
``Transpose`` to channels-last means NHWC. One that differs gets a ``Transpose`` at the
boundary (which the ``no-inner-transpose`` rule tolerates), or loses the one it had::

    Conv -> Add(bias) -> images_out [1,3,H,W]          (layout=nhwc)
    Conv -> Add(bias) -> Transpose(0,2,3,1) -> images_out [1,H,W,3]

    Conv -> Transpose(0,2,3,1) -> images_out [1,H,W,3] (layout=nchw: the transpose goes)
    Conv -> images_out [1,3,H,W]

Works on an ``onnx_graphsurgeon.Graph`` (shapes from ONNX shape inference).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import VerificationError
from ...graph_runner import Runner, TensorSpec, canonical_name
from .transposes import BINARY, UNARY, _cancel

LAYOUTS = ("nchw", "nhwc")
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
#: ONNX ops whose 4-D data input and output are NCHW by definition.
NCHW_OPS = frozenset({"Conv", "ConvTranspose", "DepthToSpace", "SpaceToDepth", "MaxPool",
                      "AveragePool", "BatchNormalization", "InstanceNormalization",
                      "GlobalAveragePool", "Resize"})
_THROUGH = UNARY | BINARY | {"Pad", "Clip"}


def _perm(node: Any) -> list[int] | None:
    perm = node.attrs.get("perm")
    return [int(p) for p in perm] if perm is not None else None


def output_layout(tensor: Any, depth: int = 64) -> str | None:
    """``"nchw"``/``"nhwc"`` for a 4-D tensor from the ops that produce it, or None."""
    stack, seen = [tensor], set()
    while stack and depth > 0:
        t = stack.pop()
        if id(t) in seen or len(t.inputs) != 1:
            continue
        seen.add(id(t))
        depth -= 1
        node = t.inputs[0]
        if node.op in NCHW_OPS:
            return "nchw"
        if node.op == "Transpose":
            perm = _perm(node)
            return {tuple(TO_NHWC): "nhwc", tuple(TO_NCHW): "nchw"}.get(tuple(perm or ()))
        if node.op in _THROUGH:
            stack.extend(i for i in node.inputs if _rank4(i))
    return None


def input_layout(tensor: Any, depth: int = 64) -> str | None:
    """``"nchw"``/``"nhwc"`` for a 4-D graph input from the ops that read it, or None."""
    stack, seen = [tensor], set()
    while stack and depth > 0:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        depth -= 1
        for node in t.outputs:
            if node.op in NCHW_OPS and node.inputs and node.inputs[0] is t:
                return "nchw"
            if node.op == "Transpose":
                perm = _perm(node)
                found = {tuple(TO_NCHW): "nhwc", tuple(TO_NHWC): "nchw"}.get(tuple(perm or ()))
                if found:
                    return found
            elif node.op in _THROUGH:
                stack.extend(o for o in node.outputs if _rank4(o))
    return None


def _rank4(t: Any) -> bool:
    return t.shape is not None and len(t.shape) == 4


def set_layout(graph: Any, layout: str) -> dict[str, dict[str, list[int]]]:
    """Deliver every 4-D input and output of ``graph`` in ``layout``; the permutations
    made (``{"outputs": {name: perm}, "inputs": {name: perm}}``, each ``perm`` taking an
    array in the graph's former layout to the new one, as ``np.transpose`` does).

    A tensor whose present layout cannot be told is a VerificationError naming it.
    """
    import onnx_graphsurgeon as ogs

    made: dict[str, dict[str, list[int]]] = {"outputs": {}, "inputs": {}}
    for y in list(graph.outputs):
        if not _rank4(y):
            continue
        now = output_layout(y)
        if now is None:
            raise VerificationError(f"layout={layout}: cannot tell the layout of output "
                                    f"{y.name!r} (no convolution or transpose produces it)")
        if now == layout:
            continue
        producer = y.inputs[0]
        perm = TO_NHWC if layout == "nhwc" else TO_NCHW
        x = producer.inputs[0] if producer.op == "Transpose" else None
        if (x is not None and len(x.inputs) == 1 and len(x.outputs) == 1 and x not in
                graph.inputs and x not in graph.outputs and [_perm(producer)[i] for i in perm]
                == [0, 1, 2, 3]):
            # the output was transposed from the wanted layout: drop the transpose
            inner = x.inputs[0]
            inner.outputs = [y if o is x else o for o in inner.outputs]
            producer.outputs.clear()
        else:
            inner_t = ogs.Variable(f"{y.name}__{now}", dtype=y.dtype, shape=list(y.shape))
            producer.outputs = [inner_t if o is y else o for o in producer.outputs]
            for user in list(y.outputs):
                user.inputs = [inner_t if i is y else i for i in user.inputs]
            graph.nodes.append(ogs.Node("Transpose", f"{y.name}__to_{layout}",
                                        attrs={"perm": perm}, inputs=[inner_t], outputs=[y]))
        y.shape = [y.shape[i] for i in perm]
        made["outputs"][y.name] = perm
    for x in list(graph.inputs):
        if not _rank4(x):
            continue
        now = input_layout(x)
        if now is None:
            raise VerificationError(f"layout={layout}: cannot tell the layout of input "
                                    f"{x.name!r} (no convolution or transpose reads it)")
        if now == layout:
            continue
        to_model = TO_NHWC if layout == "nhwc" else TO_NCHW  # how the user's array is permuted
        inner_t = ogs.Variable(f"{x.name}__{now}", dtype=x.dtype, shape=list(x.shape))
        for user in list(x.outputs):
            user.inputs = [inner_t if i is x else i for i in user.inputs]
        x.shape = [x.shape[i] for i in to_model]
        back = TO_NCHW if layout == "nhwc" else TO_NHWC
        graph.nodes.append(ogs.Node("Transpose", f"{x.name}__from_{layout}",
                                    attrs={"perm": back}, inputs=[x], outputs=[inner_t]))
        for user in list(inner_t.outputs):  # a transpose the input had: the pair cancels
            if user.op == "Transpose":
                _cancel(graph, user)
        made["inputs"][x.name] = to_model
    if made["outputs"] or made["inputs"]:
        graph.cleanup().toposort()
    return made


#: The ONNX model's metadata key recording the permutations of :func:`set_layout`.
METADATA_KEY = "graphsurgery.layout"


class LayoutRunner(Runner):
    """A runner of a model whose inputs and outputs :func:`set_layout` permuted, fed and
    read in the graph's former layout (so ``verify`` compares it with the reference)."""

    def __init__(self, inner: Runner, made: dict[str, dict[str, list[int]]]) -> None:
        self.inner = inner
        self._in = {canonical_name(k): v for k, v in made.get("inputs", {}).items()}
        self._out = {canonical_name(k): v for k, v in made.get("outputs", {}).items()}
        self.inputs = [self._spec(s, self._in, inverse=True) for s in inner.inputs]
        self.outputs = [self._spec(s, self._out, inverse=True) for s in inner.outputs]

    @staticmethod
    def _spec(spec: TensorSpec, perms: dict[str, list[int]], inverse: bool) -> TensorSpec:
        perm = perms.get(canonical_name(spec.name))
        if perm is None or spec.shape is None:
            return spec
        order = [int(i) for i in np.argsort(perm)] if inverse else perm
        return TensorSpec(spec.name, tuple(spec.shape[i] for i in order), spec.dtype)

    def run(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        moved = {}
        for k, v in feeds.items():
            perm = self._in.get(canonical_name(k))
            moved[k] = np.transpose(v, perm) if perm is not None else v
        outs = self.inner.run(moved)
        back = []
        for spec, y in zip(self.inner.outputs, outs):
            perm = self._out.get(canonical_name(spec.name))
            back.append(np.transpose(y, np.argsort(perm)) if perm is not None else y)
        return back

    def close(self) -> None:
        self.inner.close()


__all__ = ["LAYOUTS", "METADATA_KEY", "LayoutRunner", "input_layout", "output_layout",
           "set_layout"]
