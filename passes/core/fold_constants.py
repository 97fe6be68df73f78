"""``core::fold_constants``: evaluate pure ops on constants, without TensorFlow.

Only ops with a kernel in :mod:`graphsurgery.kernels` are evaluated, in numpy: arithmetic,
comparisons, casts, shape and layout ops, reductions, ``MatMul``. Stateful, random and I/O
ops (``WriteFile``, ``ReadFile``, ``PrintV2``, ``RandomStandardNormal``, ``Assign``...) have
no kernel and are never run, whatever their inputs.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections import Counter
from typing import Any

import numpy as np

from graphsurgery import kernels
from graphsurgery.errors import GraphError, UsageError
from graphsurgery.ir import opdefs, proto
from graphsurgery.ir.attrs import make_shape
from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph, Node
from graphsurgery.ir.names import Input, TensorRef
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

log = logging.getLogger("graphsurgery.passes.core.fold_constants")

# Ops that read only their input's shape: fed with zero-stride stand-ins, never decoded,
# and foldable when the input is a Placeholder of known shape ("rank": rank suffices).
_SHAPE_ONLY = {"Shape": "full", "Size": "full", "ZerosLike": "full", "OnesLike": "full",
               "Rank": "rank"}

# Constants larger than this are decoded without Graph.const_value's cache and extra copy.
_DECODE_DIRECT = 1 << 20


class _Skip(Exception):
    """The node's output would exceed ``max_bytes``: it is left as it is."""


@register_pass("core::fold_constants")
class FoldConstants(Pass):
    """Evaluate pure ops whose inputs are all constants and replace them with Consts.

    Before::

        w     = Const[3,3,512,512]
        coef  = Const(0.0147)
        w_eff = Mul(w, coef)              # rescales the weight on every inference
        y     = Conv2D(x, w_eff)

    After::

        w_eff = Const[3,3,512,512]        # same name: the product, computed once
        y     = Conv2D(x, w_eff)

    A node is folded when its op has a numpy kernel (see :mod:`graphsurgery.kernels`; the
    ``ops`` option narrows the list: ``ops="Mul,Reshape"`` in Python,
    ``core::fold_constants(ops=Mul+Reshape)`` in pipeline text), it is not stateful, every
    data input is a ``Const`` or a folded node (``Shape``, ``Size``, ``Rank``, ``ZerosLike``
    and ``OnesLike`` also accept a Placeholder of known shape), and none of its outputs
    exceeds ``max_bytes``; a broadcasting op (``Mul``, ``Add``, ``Tile``, ``Fill``, ...) is
    also left alone when its output would exceed ``max_growth`` times its largest input and
    64 KiB, so a cheap run-time broadcast never becomes a large constant. A folded
    single-output node becomes a ``Const`` of the same name, so consumers and declared
    outputs keep working; a multi-output node (``Unpack``, ``Split``) becomes one
    ``<name>/out_<i>`` Const per used output. Control dependencies are kept: the new Const
    depends on every non-constant node the folded computation depended on (a Const inside
    a ``tf.cond`` branch keeps its ``^switch`` pivot, so deadness is preserved). What the
    folded nodes used and nothing else uses (the original weights) is erased.

    Declared graph inputs are never treated as constants (they are fed), even when they
    are ``Const`` nodes. Shapes are read only from Consts and Placeholders, never from
    ``_output_shapes`` attributes, which earlier rewrites may have left stale.
    Invalid inputs (a reshape to the wrong size, an index out of range) fail the pass
    with the node's name, or with ``ignore_errors`` leave the node unfolded and log it;
    a node that not every run computes (no declared output needs it, or it rests on a
    ``tf.cond`` pivot) is left unfolded either way, as TensorFlow may never run it.
    Nothing larger than ``max_bytes`` is ever materialised: a Const whose value would
    exceed it is not decoded (a shape-only op still reads its shape), outputs are sized
    before they are computed, and a Const feeding one node N times is decoded once.
    """

    max_bytes = Option(int, 64 << 20, "largest output (bytes) a folded node may create")
    ops = Option(
        str, "", "op types to evaluate, separated by ',' or (in pipeline text) '+' "
        "(default: every op with a kernel)"
    )
    ignore_errors = Option(
        bool, False, "leave nodes whose evaluation fails unfolded instead of failing the pass"
    )
    max_growth = Option(
        float, 4.0, "leave a broadcasting op unfolded when its output would be more than this "
        "many times its largest input (and over 64 KiB); 0 disables the check"
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.max_bytes < 0:
            raise UsageError(f"pass {self.id}: max_bytes must be >= 0, not {self.max_bytes}")
        self.allowed = _parse_ops(self.ops, self.id)

    def run(self, graph: Graph, rw: Rewriter) -> None:
        _Folder(graph, rw, self.allowed, self.max_bytes, self.ignore_errors,
                self.max_growth).run()


def _parse_ops(text: str, pass_id: str) -> frozenset[str]:
    names = [s.strip() for s in re.split(r"[,+|;\s]", text) if s.strip()]
    if not names:
        return frozenset(kernels.KERNELS)
    unknown = sorted(set(names) - set(kernels.KERNELS))
    if unknown:
        raise UsageError(
            f"pass {pass_id}: ops={text!r}: no kernel for {', '.join(unknown)} "
            f"(available: {', '.join(sorted(kernels.KERNELS))})"
        )
    return frozenset(names)


# Ops whose output can be far larger than any input by broadcasting. Folding such an op
# trades a cheap run-time op for a large constant (StyleGAN's per-layer
# ``noise[1,1,H,W] * weight[1,C,1,1]`` would grow a 1024 px model by 260 MB).
_BROADCASTING = frozenset({
    "Add", "AddV2", "Sub", "Mul", "RealDiv", "Div", "FloorDiv", "FloorMod", "Maximum",
    "Minimum", "Pow", "Select", "SelectV2", "BroadcastTo", "Tile", "Fill", "LogicalAnd",
    "LogicalOr", "Greater", "Less", "GreaterEqual", "LessEqual", "Equal", "NotEqual",
})
_GROWTH_FLOOR = 64 << 10


class _Folder:
    def __init__(
        self, graph: Graph, rw: Rewriter, allowed: frozenset[str], max_bytes: int,
        ignore_errors: bool, max_growth: float = 0.0,
    ) -> None:
        self.graph = graph
        self.max_growth = max_growth
        self.rw = rw
        self.allowed = allowed
        self.max_bytes = max_bytes
        self.ignore_errors = ignore_errors
        self.fed = {t.node for t in graph.inputs}
        self.candidates: set[str] = set()
        # folded node -> the non-constant nodes its value depends on through control edges
        self.folded: dict[str, frozenset[str]] = {}
        self.values: dict[TensorRef, np.ndarray] = {}
        self.pending: Counter[str] = Counter()  # data uses by candidates not yet visited
        self.in_place: set[str] = set()  # folded single-output nodes now Consts of their name
        self.port_const: dict[TensorRef, str] = {}  # multi-output port -> its new Const
        self.alias: dict[str, TensorRef] = {}  # that Const -> the port it stands for
        self.producers: dict[str, list[str]] = {}  # inputs of folded nodes before folding
        self.ctrl_memo: dict[str, frozenset[str]] = {}
        # (Const, stamp) -> its value, for as long as something holds it: never more than
        # one decoded copy of a weight, and no weight kept alive just for the cache
        self.decoded: weakref.WeakValueDictionary[tuple[str, int | None], np.ndarray] = (
            weakref.WeakValueDictionary()
        )
        self.stats: Counter[str] = Counter()
        self.needed: set[str] | None = None  # ancestors of the outputs, when first asked

    # ------------------------------------------------------------------ driver
    def run(self) -> None:
        order = self.graph.toposort()  # tolerates the back edges of v1 while loops
        for name in order:
            if self._is_candidate(name):
                self.candidates.add(name)
        if not self.candidates:
            return
        for name in self.candidates:
            for ref in self.graph.node(name).data_inputs:
                if ref.node in self.candidates:
                    self.pending[ref.node] += 1
        for name in order:
            if name in self.candidates:
                self._visit(name)
        self._rewire_control_users()
        self._erase_dead()  # the pass manager then drops ``loc:@`` entries naming them
        log.info(
            "core::fold_constants: folded %d node(s), %d Const(s) written; left %d too large, "
            "%d unsupported, %d failing",
            len(self.folded), len(self.in_place) + len(self.alias), self.stats["large"],
            self.stats["unsupported"], self.stats["error"],
        )

    # ------------------------------------------------------------------ what may fold
    def _is_candidate(self, name: str) -> bool:
        nd = self.graph.node_def(name)
        if nd.op not in self.allowed or opdefs.is_stateful(nd.op) or name in self.fed:
            return False
        n_out = opdefs.num_outputs(nd)
        if not n_out:
            return False
        if n_out > 1 and self.graph.is_output(name):
            return False  # new output names would change the declared interface
        if any(_output_dtype(nd, p) not in kernels.SUPPORTED_DTYPES for p in range(n_out)):
            return False
        shape_only = _SHAPE_ONLY.get(nd.op)
        for s in nd.input:
            inp = Input.parse(s)
            if inp.control or inp.node in self.candidates:
                continue
            ref = inp.tensor
            if self._const_source(ref) and (shape_only or self._decodable(ref.node)):
                continue
            if shape_only and self._placeholder_shape(ref, shape_only) is not None:
                continue
            return False
        return True

    def _const_source(self, ref: TensorRef) -> bool:
        """An original Const (not fed) whose value the kernels can decode."""
        nd = self.graph.get(ref.node)
        if nd is None or nd.op != "Const" or ref.port != 0 or ref.node in self.fed:
            return False
        dt = nd.attr("dtype")
        return isinstance(dt, DType) and dt in kernels.SUPPORTED_DTYPES

    def _needed(self, name: str) -> bool:
        """True when every run computes ``name``: a declared output depends on it. (A node
        that fails but that TensorFlow never runs does not make the graph invalid.)"""
        if self.needed is None:
            self.needed = self.graph.ancestors(t.node for t in self.graph.outputs)
        return name in self.needed

    def _decodable(self, name: str) -> bool:
        """A Const is decoded only when its value fits ``max_bytes``: a few bytes of file
        (one ``float_val`` for a [32768, 32768] shape) must not become gigabytes."""
        return self.graph.const_nbytes(name) <= self.max_bytes

    def _placeholder_shape(self, ref: TensorRef, need: str) -> tuple[int, ...] | None:
        nd = self.graph.get(ref.node)
        if nd is None or nd.op != "Placeholder" or ref.port != 0:
            return None
        shape = self.graph.static_shape(ref)
        if shape is None or (need == "full" and any(d < 0 for d in shape)):
            return None
        return tuple(max(d, 0) for d in shape)

    # ------------------------------------------------------------------ evaluation
    def _visit(self, name: str) -> None:
        node = self.graph.node(name)
        shape_only = _SHAPE_ONLY.get(node.op)
        refs = [self._resolve(r) for r in node.data_inputs]
        ok = True
        arrays: list[np.ndarray] = []
        deps: set[str] = set()
        for ref in refs:
            if ref.node in self.folded:
                if shape_only and ref not in self.values:  # written already: read its shape
                    const = ref.node if ref.node in self.in_place else self.port_const[ref]
                    arrays.append(_stand_in(self.graph.const_shape(const), np.dtype(bool)))
                else:
                    arrays.append(self._value(ref))
                deps |= self.folded[ref.node]
            elif self._const_source(ref) and (shape_only or self._decodable(ref.node)):
                if shape_only:
                    dt = self.graph.node(ref.node).attr("dtype").numpy
                    arrays.append(_stand_in(self.graph.const_shape(ref.node), dt))
                else:
                    arrays.append(self._decode(ref.node))
                deps |= self._control_deps(ref.node, of_const=True)
            elif shape_only and (shape := self._placeholder_shape(ref, shape_only)) is not None:
                arrays.append(_stand_in(shape, np.dtype(bool)))
            else:  # produced by a candidate that could not be folded
                ok = False
                break
        outs: list[np.ndarray] | None = None
        if ok:
            for c in node.control_inputs:
                deps |= self._control_deps(c)
            outs = self._evaluate(node, arrays, conditional=bool(deps))
        del arrays
        # release (or, for a consumer left unfolded, materialise) the folded inputs
        for ref in refs:
            p = ref.node
            if p not in self.folded:
                continue
            if outs is None:
                self._materialize(p)
            self.pending[p] -= 1
            if self.pending[p] <= 0:
                self._drop_values(p)
        if outs is None:
            return
        self.folded[name] = frozenset(deps)
        for port, arr in enumerate(outs):
            self.values[TensorRef(name, port)] = arr
        if self.graph.is_output(name) or self._has_unfolded_data_users(name):
            self._materialize(name)
        if self.pending[name] <= 0:
            self._drop_values(name)

    def _evaluate(
        self, node: Node, arrays: list[np.ndarray], conditional: bool = False
    ) -> list[np.ndarray] | None:
        """The node's outputs, or None to leave it unfolded. ``conditional``: its value
        rests on control dependencies (a Const under a ``tf.cond`` pivot), so TensorFlow
        may never run it."""
        try:
            predicted = kernels.predicted_nbytes(node, arrays)
            if predicted is not None and predicted > self.max_bytes:
                raise _Skip(f"output of about {predicted} bytes exceeds max_bytes")
            if self.max_growth > 0 and node.op in _BROADCASTING and arrays:
                largest = max(a.nbytes for a in arrays)
                if predicted is not None and predicted > max(
                    _GROWTH_FLOOR, self.max_growth * largest
                ):
                    raise _Skip(f"output of about {predicted} bytes would be more than "
                                f"{self.max_growth:g}x its largest input ({largest} bytes)")
            outs = kernels.evaluate(node, arrays)
            expected = opdefs.num_outputs(node.proto)
            if len(outs) != expected:
                raise kernels.KernelError(f"kernel gave {len(outs)} outputs, expected {expected}")
            for port, out in enumerate(outs):
                if out.nbytes > self.max_bytes:
                    raise _Skip(f"output {port} has {out.nbytes} bytes, more than max_bytes")
                dt = _output_dtype(node.proto, port)
                if dt is not None and out.dtype != dt.numpy:  # a kernel bug: never write it
                    log.warning(
                        "core::fold_constants: kernel %s gave %s for output %d of %s, expected "
                        "%s; left unfolded", node.op, out.dtype, port, node.name, dt.name,
                    )
                    self.stats["unsupported"] += 1
                    return None
            return outs
        except _Skip as exc:
            self.stats["large"] += 1
            log.debug("not folding %s (%s): %s", node.name, node.op, exc)
        except kernels.Unsupported as exc:
            self.stats["unsupported"] += 1
            log.debug("not folding %s (%s): %s", node.name, node.op, exc)
        except MemoryError:
            self.stats["large"] += 1
            log.warning("core::fold_constants: out of memory evaluating %s; left unfolded",
                        node.name)
        except Exception as exc:  # KernelError, or a kernel bug: both name the node
            detail = str(exc) if isinstance(exc, kernels.KernelError) else (
                f"{type(exc).__name__}: {exc}"
            )
            msg = f"cannot evaluate {node.op} node {node.name!r} on its constant inputs: {detail}"
            if not self.ignore_errors and not conditional and self._needed(node.name):
                raise GraphError(msg + " (ignore_errors=true leaves such nodes unfolded)") from None
            self.stats["error"] += 1
            log.log(logging.WARNING if self.ignore_errors else logging.INFO,
                    "core::fold_constants: %s; left unfolded (%s)", msg,
                    "ignore_errors" if self.ignore_errors else "not every run computes it")
        return None

    def _decode(self, name: str) -> np.ndarray:
        """A Const's value, decoded once while anything holds it (a Concat of the same
        weight N times holds one copy, not N); large ones are read straight from their
        bytes (one copy, where ``Graph.const_value`` makes two)."""
        key = (name, self.graph.stamp(name))
        hit = self.decoded.get(key)
        if hit is None:
            hit = self._read_const(name)
            self.decoded[key] = hit
        return hit

    def _read_const(self, name: str) -> np.ndarray:
        if self.graph.const_nbytes(name) <= _DECODE_DIRECT:
            return self.graph.const_value(name)
        tp = self.graph.node_def(name).attr["value"].tensor
        content = tp.tensor_content  # one copy of the bytes
        if not content:
            return self.graph.const_value(name)
        dtype = DType.of(tp.dtype).numpy
        return np.frombuffer(content, dtype=dtype).reshape(self.graph.const_shape(name))

    def _resolve(self, ref: TensorRef) -> TensorRef:
        """A Const this pass wrote for a multi-output node stands for that node's port."""
        return self.alias.get(ref.node, ref) if ref.port == 0 else ref

    def _value(self, ref: TensorRef) -> np.ndarray:
        arr = self.values.get(ref)
        if arr is not None:
            return arr
        if ref.node in self.in_place:
            return self._decode(ref.node)
        return self._decode(self.port_const[ref])

    def _drop_values(self, name: str) -> None:
        for ref in [r for r in self.values if r.node == name]:
            del self.values[ref]

    def _control_deps(self, name: str, of_const: bool = False) -> frozenset[str]:
        """The nodes a control edge on ``name`` (or, with ``of_const``, the value of the
        Const ``name``) really waits for: constants and folded nodes are transparent."""
        if name in self.folded:
            return self.folded[name]
        if not self._ctrl_transparent(name):
            return frozenset() if of_const else frozenset({name})
        # Iterative post-order walk down chains of control-dependent Consts: a chain of
        # thousands of them is legal TensorFlow and must not exhaust Python's stack.
        stack, open_ = [(name, False)], set()  # open_: expanded, not yet finished
        while stack:
            top, expanded = stack.pop()
            if top in self.ctrl_memo or (not expanded and top in open_):
                continue
            ctrl = self.graph.node(top).control_inputs
            if not expanded:
                open_.add(top)
                stack.append((top, True))
                stack.extend((c, False) for c in ctrl if c not in self.folded
                             and c not in self.ctrl_memo and self._ctrl_transparent(c))
                continue
            open_.discard(top)
            self.ctrl_memo[top] = frozenset().union(*(
                self.folded[c] if c in self.folded
                else self.ctrl_memo.get(c, frozenset()) if self._ctrl_transparent(c)
                else frozenset({c})
                for c in ctrl))
        return self.ctrl_memo[name]

    def _ctrl_transparent(self, name: str) -> bool:
        """A Const that is not fed: a control edge on it waits for its own control inputs."""
        nd = self.graph.get(name)
        return nd is not None and nd.op == "Const" and name not in self.fed

    def _has_unfolded_data_users(self, name: str) -> bool:
        for user in self.graph.users(name):
            if user.name in self.candidates:
                continue  # visited later: a candidate that fails asks for the Const then
            if any(r.node == name for r in user.data_inputs):
                return True
        return False

    # ------------------------------------------------------------------ rewriting
    def _materialize(self, name: str) -> None:
        """Write the value of folded ``name`` into the graph as Const node(s)."""
        if name in self.in_place:
            return
        node = self.graph.node(name)
        deps = sorted(self.folded[name])
        self.producers.setdefault(name, [Input.parse(s).node for s in node.proto.input])
        n_out = opdefs.num_outputs(node.proto)
        if n_out == 1:
            nd = proto.NodeDef(name=name, op="Const", device=node.device)
            self._fill_const(nd, TensorRef(name, 0))
            nd.input.extend(f"^{d}" for d in deps)
            self.rw.replace_node_def(nd)
            self.in_place.add(name)
            self._release_sources(self.producers[name])
            return
        for port in self._unmaterialized_ports(name):
            ref = TensorRef(name, port)
            nd = proto.NodeDef(name=self.graph.unique_name(f"{name}/out_{port}"), op="Const")
            self._fill_const(nd, ref)
            nd.input.extend(f"^{d}" for d in deps)
            const = self.rw.replace_node_def(nd)
            self.port_const[ref] = const.name
            self.alias[const.name] = ref
            self.rw.replace_uses(ref, const.output())

    def _release_sources(self, names: list[str]) -> None:
        """Erase, at once, original Consts and folded nodes that nothing uses any more, and
        walk on to their own inputs: a pass that replaces every weight of a graph then
        never holds the old and the new weights together."""
        work = list(names)
        while work:
            p = work.pop()
            nd = self.graph.get(p)
            if nd is None or p in self.fed or p in self.in_place or self.graph.has_outside_uses(p):
                continue
            if nd.op != "Const" and p not in self.folded:
                continue
            inputs = [Input.parse(s).node for s in nd.proto.input]
            self.rw.erase(p)
            work.extend(inputs)

    def _fill_const(self, nd: Any, ref: TensorRef) -> None:
        """Encode the value of ``ref`` into Const ``nd`` with as few copies as possible: the
        array is released (when nothing will read it) before its bytes enter the message."""
        value = self._value(ref)
        dtype, shape = DType.of(value.dtype), value.shape
        data = np.ascontiguousarray(value).tobytes()
        del value
        if self.pending[ref.node] <= 0:
            self.values.pop(ref, None)
        nd.attr["dtype"].type = int(dtype)
        tp = nd.attr["value"].tensor
        tp.dtype = int(dtype)
        tp.tensor_shape.CopyFrom(make_shape(shape))
        tp.tensor_content = data

    def _unmaterialized_ports(self, name: str) -> list[int]:
        """Ports of ``name`` still used in place (uses of written ports were redirected)."""
        used = {r.port for r in self.graph.outputs if r.node == name}
        for user in self.graph.users(name):
            used.update(r.port for r in user.data_inputs if r.node == name)
        return sorted(used)

    def _rewire_control_users(self) -> None:
        """Control edges on folded nodes that disappear move to what those nodes waited for."""
        for name, deps in self.folded.items():
            if name in self.in_place:
                continue
            for user in self.graph.control_users(name):
                if user.name in self.folded:
                    continue  # erased below
                self.rw.remove_control_input(user, name)
                for d in sorted(deps):
                    if d != user.name:
                        self.rw.add_control_input(user, d)

    def _erase_dead(self) -> int:
        """Erase folded nodes and Consts that nothing uses any more (nothing else)."""
        keep = {t.node for t in self.graph.inputs} | {t.node for t in self.graph.outputs}
        work = [n for n in self.folded if n not in self.in_place]
        for name in self.in_place:
            work.extend(self.producers.get(name, ()))
        erased = 0
        while work:
            name = work.pop()
            nd = self.graph.get(name)
            if nd is None or name in keep or self.graph.has_outside_uses(name):
                continue
            if nd.op != "Const" and (name not in self.folded or name in self.in_place):
                continue
            work.extend(Input.parse(s).node for s in nd.proto.input)
            self.rw.erase(name)
            erased += 1
        return erased


def _output_dtype(node_def: Any, port: int) -> DType | None:
    dt = opdefs.output_dtype(node_def, port)
    if dt is None and "T" in node_def.attr:  # Unpack, Split: outputs of type T
        dt = DType.of(node_def.attr["T"].type)
    return dt


def _stand_in(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only array of ``shape`` that takes no memory (for ops reading shapes only)."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)
