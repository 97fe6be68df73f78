"""``stylegan::noise``: make the per-layer random noise constant, a model input, or zero."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from graphsurgery.errors import GraphError
from graphsurgery.ir import proto
from graphsurgery.ir.attrs import python_to_attr
from graphsurgery.ir.dtypes import DType
from graphsurgery.ir.graph import Graph
from graphsurgery.ir.names import TensorRef
from graphsurgery.noise import (
    noise_index,
    noise_input_name,
    noise_order,
    seeded_noise,
)
from graphsurgery.registry import Option, Pass, register_pass
from graphsurgery.rewriter import Rewriter

log = logging.getLogger("graphsurgery.passes.stylegan.noise")

MODES = ("const", "input", "zero")


@dataclass(frozen=True)
class _Random:
    """One random op, numbered as :func:`graphsurgery.noise.noise_order` numbers it."""

    index: int
    name: str
    op: str
    dtype: DType
    shape_input: TensorRef
    shape: tuple[int, ...] | None  # -1: unknown dim; None: unknown rank
    producers: tuple[str, ...] = ()  # nodes feeding the op (shape, seeds): dead afterwards

    @property
    def static(self) -> bool:
        return self.shape is not None and all(d >= 0 for d in self.shape)


@register_pass("stylegan::noise")
class Noise(Pass):
    """Replace every random op (the per-layer noise) by a constant, a model input or zeros.

    The random ops (``RandomStandardNormal``, ``RandomUniform``, ``TruncatedNormal``) are
    numbered in the order :func:`graphsurgery.noise.noise_order` gives (a stable
    topological order, which the generic preparation passes keep), and random op ``i``
    becomes, by ``mode``:

    * ``const`` (default): a ``Const`` of the same name holding
      :func:`graphsurgery.noise.seeded_noise` ``(seed, i, shape)``, exactly the noise
      the reference runner draws with the same seed. Constant folding then folds the
      ``noise * weight`` products.
    * ``input``: a ``Placeholder`` ``noise_input/<i>`` of the op's dtype and static shape
      (an unknown batch stays unknown), appended in order to the declared graph inputs: one
      clearly named model input per noise layer, the names the reference runner feeds.
    * ``zero``: a ``Const`` of zeros (a ``Fill`` when the shape is only known at run time),
      after which ``core::simplify_arith`` and ``core::fold_constants`` remove the whole
      ``x + noise * weight`` term.

    ``const`` and ``zero`` need the static shape: the random op's shape input must be a
    constant (run ``core::set_batch`` and ``core::fold_shapes`` first, which the
    ``stylegan-to-tflite`` pipeline does) or inference must know it; otherwise the pass
    fails and says so. Only random ops are touched: a graph whose noise is already a frozen
    constant (``randomize_noise=False``) keeps its own noise in every mode, and ``input``
    does not turn those constants into inputs. Control inputs of a random op are kept.

    Before::

        shape = Const [1, 1, 8, 8]
        n = RandomStandardNormal(shape)
        y = AddV2(x, Mul(n, w))

    After (mode=const)::

        n = Const [1, 1, 8, 8]            # seeded_noise(seed, 0, [1, 1, 8, 8])
        y = AddV2(x, Mul(n, w))           # Mul(n, w) folds to one Const later

    After (mode=input)::

        noise_input/0 = Placeholder [1, 1, 8, 8]   (declared graph input)
        y = AddV2(x, Mul(noise_input/0, w))
    """

    infers_shapes = True

    mode = Option(MODES, "const", "const: seeded constants; input: noise_input/<i> "
                  "placeholders; zero: zeros (the noise term then folds away)")
    seed = Option(int, 0, "seed of the constant noise (mode=const), as the reference runner")

    def run(self, graph: Graph, rw: Rewriter) -> None:
        randoms = _collect(graph)
        if not randoms:
            return
        if self.mode in ("const", "zero"):
            _require_static(randoms, self.mode)
        if self.mode == "input":
            _check_names(graph, randoms)
        new_inputs: list[TensorRef] = []
        for r in randoms:
            if self.mode == "const":
                value = seeded_noise(self.seed, r.index, r.shape or (), op=r.op,
                                     dtype=r.dtype.numpy)
                _to_const(rw, r, value)
            elif self.mode == "zero":
                _to_const(rw, r, np.zeros(r.shape if r.static else (), dtype=r.dtype.numpy))
            else:
                new_inputs.append(_to_input(rw, r))
            rw.erase_dead(r.producers)
        if new_inputs:
            rw.set_graph_inputs([*graph.inputs, *new_inputs])
        log.info("%s: %d random op(s) -> %s", self.id, len(randoms), self.mode)


def _collect(graph: Graph) -> list[_Random]:
    """The random ops in noise order, with their static output shapes."""
    result = []
    info = None
    for index, name in enumerate(noise_order(graph)):
        node = graph.node(name)
        dtype = node.attr("dtype")
        if not isinstance(dtype, DType):
            dtype = DType.float32
        (shape_in,) = node.data_inputs[:1] or [None]
        if shape_in is None:
            raise GraphError(f"{name}: {node.op} without a shape input")
        shape: tuple[int, ...] | None = None
        if graph.is_const(shape_in):
            shape = tuple(int(d) for d in np.asarray(graph.const_value(shape_in)).reshape(-1))
        else:
            if info is None:
                try:
                    info = graph.infer()
                except Exception as exc:  # inference is best effort
                    log.debug("shape inference failed: %s", exc)
                    info = {}
            ti = info.get(node.output())
            if ti is not None and ti.shape is not None:
                shape = tuple(int(d) for d in ti.shape)
        producers = tuple(t.node for t in node.data_inputs)
        result.append(_Random(index, name, node.op, dtype, shape_in, shape, producers))
    return result


def _require_static(randoms: list[_Random], mode: str) -> None:
    if mode == "zero":
        return  # a run-time shape becomes Fill(shape, 0)
    for r in randoms:
        if not r.static:
            shape = "unknown" if r.shape is None else list(r.shape)
            raise GraphError(
                f"stylegan::noise(mode={mode}): random op {r.name} has no static shape "
                f"(got {shape}; its shape input {r.shape_input} is computed at run time). "
                "Pin the batch first: --inputs latents_in=1x512 on the command line, or run "
                "core::set_batch and core::fold_shapes before this pass"
            )


def _check_names(graph: Graph, randoms: list[_Random]) -> None:
    existing = [n.name for n in graph.nodes("Placeholder") if noise_index(n.name) is not None]
    if existing:
        raise GraphError(
            f"stylegan::noise(mode=input): the graph already has noise inputs "
            f"({', '.join(sorted(existing)[:3])}...) and random ops ({randoms[0].name}...): "
            "cannot number the noise consistently"
        )
    for r in randoms:
        name = noise_input_name(r.index)
        if name in graph:
            raise GraphError(f"stylegan::noise(mode=input): the name {name} is taken")


def _controls(rw: Rewriter, name: str) -> list[str]:
    return [f"^{c}" for c in rw.graph.node(name).control_inputs]


def _to_const(rw: Rewriter, r: _Random, value: np.ndarray) -> None:
    """The random op becomes a Const (or, for zeros of a run-time shape, a Fill) of its name."""
    if not r.static:  # mode=zero only
        zero = rw.const(np.zeros((), dtype=r.dtype.numpy), name=f"{r.name}/zero")
        index_type = rw.graph.node(r.name).attr("T")
        nd = proto.NodeDef(op="Fill")
        nd.name = r.name
        nd.input.extend([r.shape_input.input_string, zero.name, *_controls(rw, r.name)])
        nd.attr["T"].CopyFrom(python_to_attr(r.dtype))
        nd.attr["index_type"].CopyFrom(
            python_to_attr(index_type if isinstance(index_type, DType) else DType.int32)
        )
        rw.replace_node_def(nd)
        return
    nd = proto.NodeDef(op="Const")
    nd.name = r.name
    nd.input.extend(_controls(rw, r.name))
    nd.attr["dtype"].CopyFrom(python_to_attr(r.dtype))
    nd.attr["value"].CopyFrom(python_to_attr(np.asarray(value, dtype=r.dtype.numpy)))
    rw.replace_node_def(nd)


def _to_input(rw: Rewriter, r: _Random) -> TensorRef:
    """The random op becomes the Placeholder ``noise_input/<index>``; returns its output."""
    shape = None if r.shape is None else [None if d < 0 else d for d in r.shape]
    ph = rw.placeholder(noise_input_name(r.index), r.dtype, shape)
    controls = _controls(rw, r.name)
    if controls:  # keep the control inputs (deadness in an unfolded tf.cond branch)
        nd = proto.NodeDef(op="Identity")
        nd.name = r.name
        nd.input.extend([ph.name, *controls])
        nd.attr["T"].CopyFrom(python_to_attr(r.dtype))
        rw.replace_node_def(nd)
    else:
        rw.replace_node(r.name, ph.name)
        rw.erase(r.name)
    return ph.output()


__all__ = ["MODES", "Noise"]
