"""``stylegan::set_lod``: set StyleGAN (v1)'s progressive-growing level ``lod``."""

from __future__ import annotations

import logging
import math

import numpy as np

from graphsurgery.errors import UsageError
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

log = logging.getLogger("graphsurgery.passes.stylegan.set_lod")

#: Ops that pass the lod value on unchanged (read through, or routed by a Switch).
_PASS_THROUGH = frozenset({
    "Identity", "Snapshot", "StopGradient", "PreventGradient", "Cast", "Switch", "RefSwitch",
    "RefIdentity", "Enter", "RefEnter",
})
#: Ops that make a scalar ``lod`` the progressive-growing level: the recursive structure
#: compares it (``lod_in > k``, ``lod_in < k``), the linear one subtracts (``lod_in - k``),
#: and the training wrapper assigns it to the synthesis network's own ``lod``.
_USES = frozenset({
    "Greater", "Less", "GreaterEqual", "LessEqual", "Equal", "NotEqual", "Sub",
    "Assign", "AssignVariableOp",
})
_MAX_DEPTH = 8


def lod_constants(graph: Graph) -> list[Node]:
    """The scalar float ``Const`` nodes named ``lod`` (last name component) that feed a
    comparison, a ``Sub`` or an ``Assign``, directly or through identities, casts and
    Switches; declared graph inputs excluded."""
    inputs = {t.node for t in graph.inputs}
    found = []
    for node in graph.nodes("Const"):
        if node.name.rsplit("/", 1)[-1] != "lod" or node.name in inputs:
            continue
        if tuple(graph.const_shape(node.name)) != ():
            continue
        dtype = node.attr("dtype")
        if dtype is None or not getattr(dtype, "is_floating", False):
            continue
        if _feeds_lod_logic(graph, node):
            found.append(node)
    return found


def _feeds_lod_logic(graph: Graph, node: Node) -> bool:
    frontier, seen = [node], {node.name}
    for _ in range(_MAX_DEPTH):
        nxt = []
        for n in frontier:
            ports = range(2) if n.op in ("Switch", "RefSwitch") else range(1)
            for port in ports:
                for user, _ in graph.consumers(n.output(port)):
                    if user.op in _USES:
                        return True
                    if user.op in _PASS_THROUGH and user.name not in seen:
                        seen.add(user.name)
                        nxt.append(user)
        if not nxt:
            return False
        frontier = nxt
    return False


@register_pass("stylegan::set_lod")
class SetLod(Pass):
    """Set the progressive-growing level ``lod`` of a StyleGAN (v1) graph.

    A frozen v1 generator keeps its ``lod`` variable as a scalar float ``Const`` (the
    original code names it ``G_synthesis/lod``, plus the wrapper's own ``lod`` that a
    training leftover ``Assign`` copies into it). It selects the output resolution: the
    recursive structure compares it in nested ``tf.cond`` predicates (``Switch``/``Merge``),
    the linear one blends every resolution with ``lerp_clip(..., lod - k)``. The pass finds
    every such constant by structure and name (scalar float ``Const`` whose last name
    component is ``lod`` and that reaches a comparison, a ``Sub`` or an ``Assign`` through
    identities, casts or Switches) and sets it to ``lod``, so the predicates and blend
    coefficients fold to that level: run it before ``core::fold_switch_merge``, constant
    folding and ``core::cse`` (which may merge the constant with another equal one);
    ``core::simplify_arith`` then removes the lerps with coefficient 0 or 1.
    Graphs without such a constant (StyleGAN2, TF2) are left unchanged. ``lod=0`` is the
    full resolution; level ``k`` is the output at ``2**-k`` of it, upscaled.

    Before::

        G_synthesis/lod = Const 0.0
        p = Greater(Identity(G_synthesis/lod), 1.0)
        t = Sub(Identity(G_synthesis/lod), 2.0)

    After (lod=1)::

        G_synthesis/lod = Const 1.0
        p = Greater(Identity(G_synthesis/lod), 1.0)
        t = Sub(Identity(G_synthesis/lod), 2.0)
    """

    lod = Option(float, 0.0, "the level of detail: 0 = full resolution, k = 2**-k of it")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        if not math.isfinite(self.lod) or self.lod < 0:
            raise UsageError(f"pass {self.id}: lod must be a finite number >= 0, not {self.lod}")
        nodes = lod_constants(graph)
        if not nodes:
            log.info("%s: no lod constant (not a progressive-growing graph)", self.id)
            return
        was = set()
        for node in nodes:
            current = np.asarray(graph.const_value(node.output()))
            value = np.asarray(self.lod, dtype=current.dtype)
            if current == value:
                continue
            rw.set_attr(node, "value", value)
            was.add(float(current))
            log.info("%s: %s = %s (was %s)", self.id, node.name, value, current)
        if was:
            # The output now differs from what the frozen graph computed: say so by default.
            old = ", ".join(f"{v:g}" for v in sorted(was))
            hint = f" (option lod={old} keeps its output)" if len(was) == 1 else ""
            log.warning("%s: lod set to %g; the graph was frozen at lod %s%s",
                        self.id, self.lod, old, hint)
