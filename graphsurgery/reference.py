"""The exact reference: a CPU-runnable copy of a graph, and its metadata.

A frozen graph does not always run on a CPU as it is: NCHW convolutions have no CPU kernel,
custom ops (a model family's CUDA kernels) are unknown to TensorFlow, TF1 graphs keep an
``Assign`` on a frozen variable that fails to import, and random ops draw fresh noise on
every run. :func:`make_reference` returns a copy that runs, computing exactly what the
original graph defines, by changes that are correct by construction:

* **NCHW ops** run in NHWC between two transposes (:mod:`graphsurgery.nchw`).
* **Training leftovers**: ``Assign``/``AssignAdd``/``AssignSub`` whose value nobody reads
  are removed with the control edges to them (read ones become ``Identity``/``AddV2``/
  ``Sub`` of their inputs); ref-forwarding ops (``RefSwitch``, ``RefIdentity``...:
  :data:`graphsurgery.ir.opdefs.REF_OPS`) become their value forms.
* **Custom ops** are replaced by the reference maths their plugin declared
  (:func:`graphsurgery.ir.customops.register_custom_op`), traced with TensorFlow and spliced
  in (:func:`graphsurgery.splice.splice_tf`).
* **Random ops** become inputs (below).

Every original node name survives and means the same tensor: a rewritten node ``X``
becomes a ``Transpose``, ``Identity`` or ``IdentityN`` called ``X`` whose outputs are the
original ones, and the new nodes live under ``X/...``. So any intermediate tensor of the
original graph can be fetched (``Reference.run(feeds, fetches=["G_synthesis/64x64/
ToRGB/add:0"])``) or fed, exactly as the original graph would have it.

Noise inputs
------------
Random ops are numbered and named as :mod:`graphsurgery.noise` says: random op ``i``
becomes a ``Placeholder`` called ``noise_input/<i>`` with the random op's dtype and static
shape, and the random op itself an ``Identity`` of it. Passes that expose noise as model
inputs use the same names, so the same feed dictionary drives the reference and an
optimised graph. A graph that already has ``noise_input/<i>`` placeholders (and no random
op) keeps them as its noise inputs.

With ``noise="input"`` the caller feeds the noise (``run(..., noise={0: array})`` or in
``feeds`` by name). With ``noise="seeded"`` every noise input that is not fed is drawn by
:func:`~graphsurgery.noise.seeded_noise` ``(seed, index, shape)``; an unknown leading
(batch) dimension is taken from the batch of the fed inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import GraphError, InputError, UsageError
from .graph_runner import GraphDefRunner, refuse_side_effects
from .ir import opdefs
from .ir.customops import custom_reference_fn, registered_custom_ops
from .ir.customops import register_custom_op as _register
from .ir.dtypes import DType
from .ir.graph import Graph, Node
from .ir.names import Input, TensorRef
from .nchw import node_def, replace_keeping_name, wrap_nchw_ops
from .noise import (  # noqa: F401 - re-exported: the names the reference gives noise inputs
    NOISE_OPS,
    NOISE_SCOPE,
    noise_index,
    noise_input_name,
    noise_order,
    seeded_noise,
    with_seeded_noise,
)
from .rewriter import Rewriter
from .splice import splice_tf

PASS_ID = "reference"
NOISE_MODES = ("input", "seeded")
_ASSIGN_OPS = {"Assign": "Identity", "AssignAdd": "AddV2", "AssignSub": "Sub"}
# Constants up to this size are handed to custom-op reference functions as values.
_INLINE_CONST_BYTES = 4096

#: ``fn(node, inputs) -> tensor | [tensors]``: builds the reference maths of one custom-op
#: node with TensorFlow (see :mod:`graphsurgery.ir.customops`).
CustomOpFn = Callable[[Node, list[Any]], Any]


def register_custom_op(op: str, fn: CustomOpFn | None = None) -> Any:
    """Register the reference maths of custom op ``op`` (also usable as a decorator): the
    same as ``graphsurgery.ir.customops.register_custom_op(op, reference=fn)``."""
    return _register(op) if fn is None else _register(op, fn)


def custom_op_fn(op: str) -> CustomOpFn | None:
    """The registered reference function of ``op``, if any."""
    return custom_reference_fn(op)


__all__ = [
    "NOISE_MODES",
    "NoiseInput",
    "Reference",
    "custom_op_fn",
    "make_reference",
    "noise_index",
    "noise_input_name",
    "noise_order",
    "register_custom_op",
    "registered_custom_ops",
    "seeded_noise",
    "with_seeded_noise",
]


# ============================================================================ the reference
@dataclass(frozen=True)
class NoiseInput:
    """One noise input of a reference: ``noise_input/<index>`` and where it came from."""

    index: int
    name: str
    source: str | None  # the random op it replaces; None when the graph already had it
    op: str  # the random op type (its distribution)
    dtype: DType
    shape: tuple[int, ...] | None  # static shape, -1 for unknown dims


@dataclass
class Reference:
    """A runnable copy of a graph (``graph``) with the original interface and noise inputs.

    ``inputs``/``outputs`` are the original graph's declared interface; ``noise`` lists the
    noise inputs by index; ``changes`` maps each rewritten node to what was done to it.
    The TensorFlow session is created on the first :meth:`run` and reused.
    """

    graph: Graph
    inputs: list[TensorRef]
    outputs: list[TensorRef]
    noise: list[NoiseInput]
    noise_mode: str = "input"
    seed: int = 0
    changes: dict[str, str] = field(default_factory=dict)
    allow_side_effects: bool = False  # run ops that act on the host (WriteFile, PrintV2...)
    _runner: GraphDefRunner | None = field(default=None, repr=False)
    _needed_cache: dict[Any, list[int]] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ noise
    @property
    def noise_names(self) -> list[str]:
        return [n.name for n in self.noise]

    def _noise_by_key(self, key: int | str) -> NoiseInput:
        by_index = {n.index: n for n in self.noise}
        if isinstance(key, int | np.integer):
            idx: int | None = int(key)
        else:
            idx = noise_index(key)
            if idx is None:
                src = TensorRef.parse(key).node
                idx = next((n.index for n in self.noise if n.source == src), None)
        if idx is None or idx not in by_index:
            raise InputError(f"{key!r} is not a noise input of this reference "
                             f"({len(self.noise)} noise inputs)")
        return by_index[idx]

    def noise_shape(self, index: int, feeds: Mapping[str, Any]) -> tuple[int, ...]:
        """Concrete shape of noise input ``index`` for ``feeds`` (batch from the inputs)."""
        info = self._noise_by_key(index)
        if info.shape is None:
            raise InputError(f"{info.name}: unknown rank; feed it")
        shape = list(info.shape)
        if shape and shape[0] < 0:
            shape[0] = self._batch(feeds, info.name)
        if any(d < 0 for d in shape):
            raise InputError(f"{info.name}: shape {tuple(info.shape)} is not static; feed it")
        return tuple(shape)

    def _batch(self, feeds: Mapping[str, Any], what: str) -> int:
        fed = {TensorRef.parse(k): v for k, v in feeds.items()}
        for ref in self.inputs:
            value = fed.get(ref)
            if value is not None and np.ndim(value) >= 1:
                return int(np.shape(value)[0])
        raise InputError(f"{what}: cannot tell the batch size: feed one of the graph inputs")

    def make_noise(
        self, feeds: Mapping[str, Any], *, seed: int | None = None,
        indices: Iterable[int] | None = None,
    ) -> dict[str, np.ndarray]:
        """Seeded noise for ``feeds``' batch: ``{noise_input/<i>: seeded_noise(seed, i, ...)}``."""
        seed = self.seed if seed is None else seed
        wanted = set(indices) if indices is not None else {n.index for n in self.noise}
        return {
            n.name: seeded_noise(seed, n.index, self.noise_shape(n.index, feeds), op=n.op,
                                 dtype=n.dtype.numpy)
            for n in self.noise if n.index in wanted
        }

    # ------------------------------------------------------------------ running
    @property
    def runner(self) -> GraphDefRunner:
        if self._runner is None:
            self._runner = GraphDefRunner(self.graph, config=as_written_config(),
                                          allow_side_effects=self.allow_side_effects)
        return self._runner

    def run(
        self,
        feeds: Mapping[str, Any],
        noise: Mapping[int | str, Any] | None = None,
        *,
        fetches: Sequence[str | TensorRef] | None = None,
    ) -> list[np.ndarray]:
        """Evaluate the declared outputs (or ``fetches``: any tensor names) for ``feeds``.

        ``feeds`` maps tensor names (``"latents_in"``, ``"x:0"``, intermediate tensors too)
        to arrays; ``noise`` maps noise inputs (index, ``noise_input/<i>`` or the original
        random op's name) to arrays. Noise inputs the fetches need and nobody fed are an
        error with ``noise="input"`` and drawn by :func:`seeded_noise` with ``"seeded"``.
        Results are laid out exactly as in the original graph (NCHW stays NCHW).
        """
        fetch_refs = [_ref(t) for t in (fetches if fetches is not None else self.outputs)]
        feed_map: dict[str, Any] = {}
        for key, value in feeds.items():
            idx = noise_index(key)
            if idx is not None:
                feed_map[self._noise_by_key(idx).name] = value
            else:
                feed_map[_ref(key).input_string] = value
        for key, value in (noise or {}).items():
            feed_map[self._noise_by_key(key).name] = value
        for ref in fetch_refs:
            if ref.node not in self.graph:
                raise InputError(f"no tensor {ref} in the graph")
        for key in feed_map:
            if _ref(key).node not in self.graph:
                raise InputError(f"cannot feed {key}: no such tensor in the graph")
        needed = self._needed_noise(fetch_refs, feed_map)
        missing = [i for i in needed if noise_input_name(i) not in feed_map]
        if missing:
            if self.noise_mode != "seeded":
                names = ", ".join(noise_input_name(i) for i in missing[:4])
                more = f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""
                raise InputError(
                    f"noise inputs not fed: {names}{more}; pass noise=... "
                    f"or build the reference with noise='seeded'"
                )
            feed_map.update(self.make_noise(feed_map, indices=missing))
        return self.runner.fetch(feed_map, fetch_refs)

    def _needed_noise(self, fetches: list[TensorRef], feed_map: Mapping[str, Any]) -> list[int]:
        """Indices of the noise inputs the fetches depend on, not counting fed tensors."""
        fed = frozenset(_ref(k).node for k in feed_map)
        key = (tuple(fetches), fed)
        hit = self._needed_cache.get(key)
        if hit is not None:
            return hit
        by_name = {n.name: n.index for n in self.noise}
        seen: set[str] = set()
        stack = [r.node for r in fetches]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in fed:
                continue
            for s in self.graph.node_def(name).input:
                src = Input.parse(s).node
                if src not in seen:
                    stack.append(src)
        result = sorted(by_name[n] for n in seen if n in by_name and n not in fed)
        if len(self._needed_cache) < 64:
            self._needed_cache[key] = result
        return result

    def close(self) -> None:
        """Close the TensorFlow session (a later run opens a new one)."""
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> Reference:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_reference(graph: Graph, *, noise: str = "input", seed: int = 0,
                   allow_side_effects: bool = False,
                   input_shapes: Mapping[str, Sequence[int]] | None = None) -> Reference:
    """A CPU-runnable copy of ``graph`` (never modified) computing exactly what it defines.

    See the module documentation for what is rewritten and how noise inputs are named.
    ``noise`` is ``"input"`` (the caller feeds the noise) or ``"seeded"`` (noise not fed is
    drawn from :func:`seeded_noise` with ``seed``). A graph holding ops that act on the
    host (:func:`graphsurgery.ir.opdefs.side_effects`; random ops are not among them) is
    refused with InputError naming the node, unless ``allow_side_effects``.

    ``input_shapes`` maps declared inputs (``"latents_in"``) to the full shapes the caller
    will feed; the copy then only takes feeds of those shapes, and every shape the
    rewrites read is known. A transposed convolution whose groups follow the batch
    (StyleGAN2's fused modulated convolution, ``groups = batch``) is then proven
    ungrouped and runs as TensorFlow's own ``Conv2DBackpropInput`` kernel instead of the
    grouped lowering, a convolution of the zero-upsampled input with four times its
    multiply-adds (see :mod:`graphsurgery.nchw`): the same maths, faster. A name that is
    not a declared input, or a shape that contradicts the declared one, is an InputError.
    """
    if noise not in NOISE_MODES:
        raise UsageError(f"noise must be one of {NOISE_MODES}, not {noise!r}")
    if not allow_side_effects:
        refuse_side_effects(graph)
    g = graph.copy()
    rw = Rewriter(g, PASS_ID)
    if input_shapes:
        _pin_input_shapes(rw, input_shapes)
    changes: dict[str, str] = {}
    dead: list[str] = []
    _strip_training_leftovers(rw, changes, dead)
    info = g.infer() if _reads_shapes(g) else {}
    _splice_custom_ops(rw, info, changes)
    noise_inputs = _replace_random_ops(rw, info, changes, dead)
    wrap_nchw_ops(rw, info, changes)
    rw.erase_dead(dead)
    rw.set_graph_inputs(list(graph.inputs) + [
        TensorRef(n.name) for n in noise_inputs if TensorRef(n.name) not in graph.inputs
    ])
    return Reference(g, list(graph.inputs), list(graph.outputs), noise_inputs, noise, seed,
                     changes, allow_side_effects)


def as_written_config() -> Any:
    """A TensorFlow session configuration that runs a graph as it is written: Grappler
    (fusions, constant folding, layout and arithmetic rewrites) off. The reference is then
    the graph's own op-by-op maths, not TensorFlow's rewrite of it, and a session that runs
    once does not spend seconds optimising a 100 MB graph (1.4 s of CPU on StyleGAN2 at
    1024 px, for the same run time afterwards)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


# ============================================================================ rewrites
def _pin_input_shapes(rw: Rewriter, shapes: Mapping[str, Sequence[int]]) -> None:
    """Give the declared input placeholders of ``rw.graph`` the full shapes ``shapes``."""
    from .ir.attrs import Shape

    g = rw.graph
    declared = {ref.node: ref for ref in g.inputs}
    for key, dims in shapes.items():
        ref = _ref(key)
        if ref.node not in declared or g.node(ref.node).op != "Placeholder":
            raise InputError(f"input_shapes names {key!r}, not a declared input placeholder")
        full = tuple(int(d) for d in dims)
        known = g.static_shape(ref)
        if any(d < 0 for d in full) or (known is not None and (len(known) != len(full) or any(
                k >= 0 and k != d for k, d in zip(known, full)))):
            raise InputError(f"{ref.node}: shape {list(full)} does not fit the declared "
                             f"shape {None if known is None else list(known)}")
        rw.set_attr(ref.node, "shape", Shape(full))


def _reads_shapes(g: Graph) -> bool:
    """Whether a rewrite below reads inferred shapes: there is a custom op with reference
    maths, a random op or an NCHW op. A graph with none (an optimised graph) runs as it
    is, and shape inference of a large graph costs a second for nothing."""
    for node in g.nodes():
        nd = node.proto
        if nd.op in NOISE_OPS or ("data_format" in nd.attr
                                  and nd.attr["data_format"].s.upper().startswith(b"NC")):
            return True
        if not opdefs.is_registered(nd.op) and custom_reference_fn(nd.op) is not None:
            return True
    return False


def _ref(t: str | TensorRef) -> TensorRef:
    return t if isinstance(t, TensorRef) else TensorRef.parse(t)


def _strip_training_leftovers(rw: Rewriter, changes: dict[str, str], dead: list[str]) -> None:
    """Remove ref-typed training leftovers that keep a frozen graph from importing."""
    g = rw.graph
    for node in g.nodes(*opdefs.REF_OPS):
        rw.set_op(node, opdefs.REF_OPS[node.op])
        changes[node.name] = f"{node.op}: was a ref op"
    for node in g.nodes(*_ASSIGN_OPS):
        op = node.op
        data = node.data_inputs
        if g.consumers(node.output()) or g.is_output(node.name):
            # Its value is read: keep the value, drop the side effect.
            if op == "Assign":
                inputs = [data[1].input_string]
            else:
                inputs = [data[0].input_string, data[1].input_string]
            ctrl = [f"^{c}" for c in node.control_inputs]
            attrs = {"T": node.attr("T", DType.float32)}
            rw.replace_node_def(node_def(node.name, _ASSIGN_OPS[op], inputs + ctrl, attrs))
            changes[node.name] = f"{op} -> {_ASSIGN_OPS[op]}: training leftover"
            continue
        for user in g.control_users(node.name):
            rw.remove_control_input(user, node.name)
        dead.extend(r.node for r in data)
        dead.extend(node.control_inputs)
        rw.erase(node)
        changes[node.name] = f"{op}: training leftover removed"
    # Colocation constraints naming nodes that are gone no longer import.
    for node in g.nodes():
        locs = node.attr("_class")
        if not locs:
            continue
        kept = [s for s in locs if not s.startswith("loc:@") or s[5:] in g]
        if len(kept) != len(locs):
            if kept:
                rw.set_attr(node, "_class", kept)
            else:
                rw.del_attr(node, "_class")


def _splice_custom_ops(
    rw: Rewriter, info: Mapping[TensorRef, Any], changes: dict[str, str]
) -> None:
    g = rw.graph
    for name in g.toposort():
        nd = g.node_def(name)
        if opdefs.is_registered(nd.op):
            continue
        fn = custom_reference_fn(nd.op)
        if fn is None:
            continue  # a library function called as an op, or an op TensorFlow will refuse
        node = g.node(name)
        refs = node.data_inputs
        specs, consts = [], {}
        for i, r in enumerate(refs):
            ti = info.get(r)
            dtype = ti.dtype if ti is not None and ti.dtype is not None else g.dtype_hint(r)
            if dtype is None:
                raise GraphError(f"{name}: dtype of input {r} is unknown")
            specs.append((dtype, ti.shape if ti is not None else None))
            if g.is_const(r) and g.const_nbytes(r.node) <= _INLINE_CONST_BYTES:
                consts[i] = np.array(g.const_value(r))

        def traced(*placeholders: Any, _node: Node = node, _consts: dict = consts,
                   _fn: CustomOpFn = fn) -> Any:
            import tensorflow as tf

            tensors = [tf.constant(_consts[i]) if i in _consts else ph
                       for i, ph in enumerate(placeholders)]
            return _fn(_node, tensors)

        outs = splice_tf(rw, traced, refs, scope=f"{name}/reference", input_specs=specs)
        replace_keeping_name(rw, node, outs, info, control=node.control_inputs)
        changes[name] = f"{nd.op}: custom op replaced by its reference maths"


def _replace_random_ops(
    rw: Rewriter, info: Mapping[TensorRef, Any], changes: dict[str, str], dead: list[str]
) -> list[NoiseInput]:
    g = rw.graph
    existing = []
    for node in g.nodes("Placeholder"):
        idx = noise_index(node.name)
        if idx is not None:
            shape = node.attr("shape")
            existing.append(NoiseInput(idx, node.name, None, "RandomStandardNormal",
                                       node.attr("dtype", DType.float32), shape))
    order = noise_order(g)
    if existing and order:
        raise GraphError(
            f"graph has both noise inputs ({existing[0].name}...) and random ops "
            f"({order[0]}...): cannot number the noise consistently"
        )
    result = sorted(existing, key=lambda n: n.index)
    for index, name in enumerate(order):
        node = g.node(name)
        dtype = node.attr("dtype", DType.float32)
        ti = info.get(node.output())
        shape = None if ti is None or ti.shape is None else tuple(ti.shape)
        ph_name = noise_input_name(index)
        if ph_name in g:
            raise GraphError(f"cannot create noise input {ph_name}: the name is taken")
        ph = rw.placeholder(ph_name, dtype, None if shape is None else
                            [None if d < 0 else d for d in shape])
        dead.extend(r.node for r in node.data_inputs)
        nd = node_def(name, "Identity",
                       [ph.name] + [f"^{c}" for c in node.control_inputs], {"T": dtype})
        rw.replace_node_def(nd)
        result.append(NoiseInput(index, ph.name, name, node.op, dtype, shape))
        changes[name] = f"{node.op}: replaced by noise input {ph.name}"
    return result


