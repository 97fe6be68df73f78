"""``core::fold_affine_chains``: chains of per-channel scalings and shifts as one of each."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from graphsurgery.ir.graph import Graph
from graphsurgery.ir.names import TensorRef
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

log = logging.getLogger(__name__)

_OPS = {"Mul": "mul", "Add": "add", "AddV2": "add", "BiasAdd": "add", "Sub": "sub"}


@dataclass(frozen=True)
class _Step:
    """``node`` computes ``big <kind> small``: ``mul``, ``add``, ``sub`` (big - small) or
    ``rsub`` (small - big), where ``small`` broadcasts into ``big``'s shape."""

    node: str
    big: TensorRef
    small: TensorRef
    kind: str
    small_shape: tuple[int, ...]


@register_pass("core::fold_affine_chains")
class FoldAffineChains(Pass):
    """Merge a chain of element-wise scalings and shifts by small tensors into one
    multiply and one add.

    A chain ``((x - m) * r) * s + b`` whose operands ``m``, ``r``, ``s``, ``b`` are small
    next to ``x`` (per-channel vectors, scalars; computed at run time or constant) is
    ``x * A + B`` with ``A = r * s`` and ``B = b - m * r * s``: the same value up to
    rounding, with two passes over the big tensor instead of four, and the new work done
    on the small tensors. It is StyleGAN's instance normalisation followed by the style
    modulation (after ``core::fuse_elementwise`` has made the centred tensor single-use),
    and StyleGAN2's activation gain followed by the next layers' modulation (one chain per
    consumer; the shared gain disappears). A chain goes through a node only when
    everything that reads it is in a chain too, and stops where the operands would
    broadcast to something large (StyleGAN2's ``[1,H,W,1]`` noise then ``[C]`` bias).
    Needs static shapes; ops whose operands have the same shape are not scalings.

    Before::  x[1,H,W,C] -> Sub(., m[1,1,1,C]) -> Mul(., r[1,1,1,C]) -> Mul(., s[1,1,1,C])
                  -> AddV2(., b[1,1,1,C]) -> y
    After::   A = Mul(r, s);  B = Sub(b, Mul(m, A))    (on [1,1,1,C])
              x -> Mul(., A) -> AddV2(., B) -> y
    """

    infers_shapes = True

    min_ratio = Option(float, 16.0, "operands count as small when their combined broadcast "
                       "has at most 1/min_ratio of the elements of the tensor they act on")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        steps = self._steps(graph)
        if not steps:
            return
        absorbable = {
            name for name, st in steps.items()
            if not graph.is_output(name) and self._all_steps(graph, name, steps)
        }
        chains: dict[str, list[_Step]] = {}
        for end, st in steps.items():
            if end in absorbable:
                continue
            chain = [st]
            while chain[0].big.port == 0 and chain[0].big.node in absorbable:
                prev = steps[chain[0].big.node]
                if not self._small_enough(graph, [prev, *chain]):
                    break
                chain.insert(0, prev)
            if len(chain) > _ops_needed(chain):
                chains[end] = chain
        self._drop_partial_prefixes(graph, chains)
        dead: list[str] = []
        for end, chain in chains.items():
            self._rewrite(graph, rw, end, chain)
            dead.extend(st.node for st in chain)
        rw.erase_dead(dead)

    # ------------------------------------------------------------------ analysis
    def _steps(self, graph: Graph) -> dict[str, _Step]:
        out: dict[str, _Step] = {}
        for node in graph.nodes(*_OPS):
            dtype = node.attr("T")
            if dtype is None or not dtype.is_floating or node.control_inputs:
                continue
            if node.op == "BiasAdd" and node.attr("data_format", "NHWC") != "NHWC":
                continue
            ins = node.data_inputs
            if len(ins) != 2:
                continue
            shapes = [graph.shape(t) for t in ins]
            shape_out = graph.shape(node.output())
            if shape_out is None or any(s is None or min(s, default=0) < 0 for s in shapes):
                continue
            if min(shape_out, default=0) < 0:
                continue
            for big, small in ((0, 1), (1, 0)):
                if tuple(shapes[big]) != tuple(shape_out) or shapes[small] == shapes[big]:
                    continue
                if not self._is_small(shapes[small], shape_out):
                    continue
                kind = _OPS[node.op]
                if kind == "sub" and big == 1:
                    kind = "rsub"
                out[node.name] = _Step(node.name, ins[big], ins[small], kind,
                                       tuple(shapes[small]))
                break
        return out

    def _is_small(self, small: tuple[int, ...], big: tuple[int, ...]) -> bool:
        try:
            if np.broadcast_shapes(small, big) != tuple(big):
                return False
        except ValueError:
            return False
        return int(np.prod(small, dtype=np.int64)) * self.min_ratio <= np.prod(big)

    def _small_enough(self, graph: Graph, chain: list[_Step]) -> bool:
        shape = graph.shape(TensorRef(chain[-1].node))
        try:
            combined = np.broadcast_shapes(*(st.small_shape for st in chain))
        except ValueError:
            return False
        return shape is not None and self._is_small(tuple(combined), tuple(shape))

    @staticmethod
    def _all_steps(graph: Graph, name: str, steps: dict[str, _Step]) -> bool:
        """Every reader of ``name`` is a step taking it as its big operand (and only so)."""
        users = graph.users(name)
        if not users:
            return False
        for user in users:
            st = steps.get(user.name)
            if st is None or st.big != TensorRef(name) or st.small.node == name:
                return False
        return True

    @staticmethod
    def _drop_partial_prefixes(graph: Graph, chains: dict[str, list[_Step]]) -> None:
        """A node inside chains goes away only if every reader of it is in one of the
        chains through it; otherwise those chains start after it (and are dropped when
        no longer worth it)."""
        changed = True
        while changed:
            changed = False
            after: dict[str, set[str]] = {}  # node -> nodes after it in chains through it
            for chain in chains.values():
                for i, st in enumerate(chain[:-1]):
                    after.setdefault(st.node, set()).update(s.node for s in chain[i + 1:])
            kept = {n for n, later in after.items()
                    if not {u.name for u in graph.users(n)} <= later}
            for end, chain in list(chains.items()):
                cut = max((i + 1 for i, st in enumerate(chain[:-1]) if st.node in kept),
                          default=0)
                if not cut:
                    continue
                rest = chain[cut:]
                if len(rest) > _ops_needed(rest):
                    chains[end] = rest
                else:
                    del chains[end]
                changed = True

    # ------------------------------------------------------------------ rewriting
    def _rewrite(self, graph: Graph, rw: Rewriter, end: str, chain: list[_Step]) -> None:
        dtype = graph.node(end).attr("T")
        scope = f"{end}/affine"
        a: TensorRef | None = None  # y = x * a + b; None stands for 1 and 0
        b: TensorRef | None = None

        def op(kind: str, *inputs: TensorRef) -> TensorRef:
            return rw.add_node(kind, list(inputs), {"T": dtype}, name=f"{scope}/{kind}").output()

        for st in chain:
            s = st.small
            if st.kind == "mul":
                a = s if a is None else op("Mul", a, s)
                b = None if b is None else op("Mul", b, s)
            elif st.kind == "add":
                b = s if b is None else op("AddV2", b, s)
            elif st.kind == "sub":
                b = op("Neg", s) if b is None else op("Sub", b, s)
            else:  # rsub: s - (x * a + b)
                a = op("Neg", a) if a is not None else rw.const(
                    np.array(-1, dtype=dtype.numpy), name=f"{scope}/minus_one").output()
                b = s if b is None else op("Sub", s, b)
        out = chain[0].big
        if a is not None:
            out = op("Mul", out, a)
        if b is not None:
            out = op("AddV2", out, b)
        log.debug("core::fold_affine_chains: %s: %d ops -> %d", end, len(chain),
                  _ops_needed(chain))
        rw.replace_uses(TensorRef(end), out)


def _ops_needed(chain: list[_Step]) -> int:
    """Big-tensor ops of the merged chain: a multiply, an add, or both."""
    mul = any(st.kind in ("mul", "rsub") for st in chain)
    add = any(st.kind != "mul" for st in chain)
    return int(mul) + int(add)
