"""The exact reference: a CPU-runnable copy of a StyleGAN-like graph, and its metadata.

A frozen StyleGAN graph does not run on a CPU as it is: NCHW convolutions have no CPU
kernel, StyleGAN2's released graphs carry the custom ops ``FusedBiasAct``/``UpFirDn2D``,
StyleGAN (v1) keeps an ``Assign`` on a frozen variable that fails to import, and every
layer draws fresh random noise. :func:`make_reference` returns a copy that runs, computing
exactly what the original graph defines, by changes that are correct by construction:

* **NCHW ops** (``Conv2D``, ``DepthwiseConv2dNative``, ``Conv2DBackpropInput``, ``BiasAdd``,
  ``MaxPool``, ``AvgPool``, ``MaxPoolV2``, ``FusedBatchNorm*``, ``DepthToSpace``,
  ``SpaceToDepth``) run in NHWC between two transposes; strides, dilations, ksize and
  explicit paddings are permuted, as are 4-vectors given as inputs (the ``input_sizes``
  of ``Conv2DBackpropInput``, ``ksize``/``strides`` of ``MaxPoolV2``). Grouped ``Conv2D``
  (input depth a multiple of the filter's, as in StyleGAN2's fused modulated convolution)
  runs natively in NHWC on the CPU. A grouped ``Conv2DBackpropInput`` does not (without
  oneDNN: "Gradients for grouped convolutions are not supported on CPU"), so a transposed
  convolution that is not provably ungrouped becomes a grouped ``Conv2D`` of the
  zero-upsampled input with the flipped, regrouped filter.
* **Training leftovers**: ``Assign``/``AssignAdd``/``AssignSub`` whose value nobody reads
  are removed with the control edges to them (read ones become ``Identity``/``AddV2``/
  ``Sub`` of their inputs); ``RefSwitch``, ``RefIdentity``... become their plain ops.
* **Custom ops** are replaced by their reference maths, traced with TensorFlow and spliced
  in (:func:`graphsurgery.splice.splice_tf`) from a registry (:func:`register_custom_op`);
  ``FusedBiasAct`` and ``UpFirDn2D`` use :mod:`graphsurgery.zoo.sgops`.
* **Random ops** become inputs (below).

Every original node name survives and means the same tensor: a rewritten node ``X``
becomes a ``Transpose``, ``Identity`` or ``IdentityN`` called ``X`` whose outputs are the
original ones (NCHW), and the new nodes live under ``X/...``. So any intermediate tensor of
the original graph can be fetched (``Reference.run(feeds, fetches=["G_synthesis/64x64/
ToRGB/add:0"])``) or fed, exactly as the original graph would have it.

Noise inputs
------------
The random ops (``RandomStandardNormal``, ``RandomUniform``, ``TruncatedNormal``) of a graph,
taken in ``graph.toposort()`` order (a stable topological order: ties keep GraphDef order,
see :func:`noise_order`), are numbered 0, 1, 2...; random op ``i`` becomes a
``Placeholder`` called ``noise_input/<i>`` (:func:`noise_input_name`) with the random op's
dtype and static shape (usually ``[-1, 1, H, W]``), and the random op itself an
``Identity`` of it. Passes that expose noise as model inputs use the same names, so the
same feed dictionary drives the reference and an optimised graph. A graph that already has
``noise_input/<i>`` placeholders (and no random op) keeps them as its noise inputs.

With ``noise="input"`` the caller feeds the noise (``run(..., noise={0: array})`` or in
``feeds`` by name). With ``noise="seeded"`` every noise input that is not fed is drawn by
:func:`seeded_noise` ``(seed, index, shape)``, float32 standard normal from
``numpy.random.default_rng([seed, index])``; an unknown leading (batch) dimension is taken
from the batch of the fed inputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import GraphError, InputError, UsageError
from .ir import proto
from .ir.attrs import python_to_attr
from .ir.dtypes import DType
from .ir.graph import Graph, Node
from .ir.names import Input, TensorRef
from .rewriter import Rewriter
from .runners import GraphDefRunner, refuse_side_effects
from .splice import splice_tf

PASS_ID = "reference"

#: Random ops replaced by noise inputs, and the distribution :func:`seeded_noise` draws.
RANDOM_OPS: dict[str, str] = {
    "RandomStandardNormal": "normal",
    "RandomUniform": "uniform",
    "TruncatedNormal": "truncated_normal",
}
NOISE_SCOPE = "noise_input"
_NOISE_NAME = re.compile(rf"^{NOISE_SCOPE}/(\d+)$")
NOISE_MODES = ("input", "seeded")

# op -> indices of data inputs in NCHW layout
_NCHW_OPS: dict[str, tuple[int, ...]] = {
    "Conv2D": (0,),
    "DepthwiseConv2dNative": (0,),
    "Conv2DBackpropInput": (2,),
    "BiasAdd": (0,),
    "MaxPool": (0,),
    "AvgPool": (0,),
    "MaxPoolV2": (0,),
    "FusedBatchNorm": (0,),
    "FusedBatchNormV2": (0,),
    "FusedBatchNormV3": (0,),
    "DepthToSpace": (0,),
    "SpaceToDepth": (0,),
}
# op -> indices of data inputs that are 4-vectors in NCHW order
_NCHW_VECTORS: dict[str, tuple[int, ...]] = {"Conv2DBackpropInput": (0,), "MaxPoolV2": (1, 2)}
_LIST_ATTRS = ("strides", "dilations", "ksize")
_ASSIGN_OPS = {"Assign": "Identity", "AssignAdd": "AddV2", "AssignSub": "Sub"}
_REF_OPS = {
    "RefSwitch": "Switch",
    "RefIdentity": "Identity",
    "RefMerge": "Merge",
    "RefEnter": "Enter",
    "RefExit": "Exit",
    "RefNextIteration": "NextIteration",
    "RefSelect": "Select",
}
# Constants up to this size are handed to custom-op reference functions as values.
_INLINE_CONST_BYTES = 4096


# ============================================================================ noise naming
def noise_input_name(index: int) -> str:
    """The name of noise input ``index``: ``noise_input/<index>``."""
    return f"{NOISE_SCOPE}/{int(index)}"


def noise_index(name: str) -> int | None:
    """The index of a noise input name (``noise_input/3``, ``noise_input/3:0``), else None."""
    node = TensorRef.parse(name).node
    m = _NOISE_NAME.match(node)
    return int(m.group(1)) if m else None


def noise_order(graph: Graph) -> list[str]:
    """The random ops of ``graph`` in the order that numbers them (``graph.toposort()``)."""
    return [n for n in graph.toposort() if graph.node_def(n).op in RANDOM_OPS]


def seeded_noise(
    seed: int,
    index: int,
    shape: Sequence[int],
    *,
    op: str = "RandomStandardNormal",
    dtype: Any = np.float32,
) -> np.ndarray:
    """Deterministic values for noise input ``index``: ``np.random.default_rng([seed, index])``.

    Standard normal (float32) for ``RandomStandardNormal`` (the default); uniform in [0, 1)
    for ``RandomUniform``; normal redrawn outside two standard deviations for
    ``TruncatedNormal``.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    shape = tuple(int(d) for d in shape)
    kind = RANDOM_OPS.get(op, "normal")
    if kind == "uniform":
        values = rng.random(shape, dtype=np.float32)
    else:
        values = rng.standard_normal(shape, dtype=np.float32)
        if kind == "truncated_normal":
            bad = np.abs(values) > 2
            while bad.any():
                values[bad] = rng.standard_normal(int(bad.sum()), dtype=np.float32)
                bad = np.abs(values) > 2
    return values.astype(dtype, copy=False)


def with_seeded_noise(graph: Graph, feeds: Mapping[str, Any], seed: int = 0) -> dict[str, Any]:
    """Feeds for every declared input of ``graph``: its noise inputs (``noise_input/<i>``)
    get the seeded noise the reference runner draws for ``seed``, the rest come from
    ``feeds`` by node name. Runs a rewritten graph with the same noise as the reference."""
    out: dict[str, Any] = {}
    for t in graph.inputs:
        i = noise_index(t.node)
        out[t.node] = (seeded_noise(seed, i, graph.static_shape(t)) if i is not None
                       else feeds[t.node])
    return out


# ============================================================================ custom ops
#: ``fn(node, inputs) -> tensor | [tensors]``: builds the reference maths of one custom-op
#: node with TensorFlow. ``inputs`` holds one tensor per data input: a ``tf.constant`` for
#: a small constant input (so ``tf.get_static_value`` works), else a placeholder.
CustomOpFn = Callable[[Node, list[Any]], Any]
_CUSTOM_OPS: dict[str, CustomOpFn] = {}


def register_custom_op(op: str, fn: CustomOpFn | None = None) -> Any:
    """Register the reference maths of custom op ``op`` (also usable as a decorator).

    ``fn(node, inputs)`` runs inside a fresh ``tf.compat.v1`` graph and returns the node's
    output tensor(s); the result is spliced in place of every ``op`` node. A later
    registration replaces an earlier one.
    """
    if fn is None:

        def deco(f: CustomOpFn) -> CustomOpFn:
            _CUSTOM_OPS[op] = f
            return f

        return deco
    _CUSTOM_OPS[op] = fn
    return fn


def custom_op_fn(op: str) -> CustomOpFn | None:
    """The registered reference function of ``op``, if any."""
    return _CUSTOM_OPS.get(op)


def registered_custom_ops() -> list[str]:
    """The ops with a registered reference function."""
    return sorted(_CUSTOM_OPS)


@register_custom_op("FusedBiasAct")
def _fused_bias_act(node: Node, inputs: list[Any]) -> Any:
    """StyleGAN2 ``FusedBiasAct(x, b, ref)``: ``act(x + b) * gain`` (sgops reference)."""
    from .zoo import sgops

    if node.attr("grad", 0):
        raise GraphError(f"{node.name}: FusedBiasAct with grad={node.attr('grad')} (a gradient)")
    code = int(node.attr("act", 1))
    if code not in sgops.ACT_NAMES:
        raise GraphError(f"{node.name}: unknown FusedBiasAct activation {code}")
    x = inputs[0]
    b = inputs[1] if len(inputs) > 1 else None
    if b is not None and b.shape.rank == 1 and b.shape[0] == 0:
        b = None
    return sgops.fused_bias_act_ref(
        x, b, axis=int(node.attr("axis", 1)), act=sgops.ACT_NAMES[code],
        # As the original op: an absent attribute takes its registered default (alpha 0,
        # gain 1), not the activation's usual value; frozen graphs carry all of them.
        alpha=node.attr("alpha", 0.0), gain=node.attr("gain", 1.0),
    )


@register_custom_op("UpFirDn2D")
def _upfirdn2d(node: Node, inputs: list[Any]) -> Any:
    """StyleGAN2 ``UpFirDn2D(x, k)`` on ``[major, H, W, minor]`` (sgops reference)."""
    from .zoo import sgops

    kwargs = {a: int(node.attr(a, 1 if a[:2] in ("up", "do") else 0)) for a in sgops.UPFIRDN_ATTRS}
    return sgops.upfirdn2d_ref(inputs[0], inputs[1], **kwargs)


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
            self._runner = GraphDefRunner(self.graph,
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
                   allow_side_effects: bool = False) -> Reference:
    """A CPU-runnable copy of ``graph`` (never modified) computing exactly what it defines.

    See the module documentation for what is rewritten and how noise inputs are named.
    ``noise`` is ``"input"`` (the caller feeds the noise) or ``"seeded"`` (noise not fed is
    drawn from :func:`seeded_noise` with ``seed``). A graph holding ops that act on the
    host (:func:`graphsurgery.ir.opdefs.side_effects`; random ops are not among them) is
    refused with InputError naming the node, unless ``allow_side_effects``.
    """
    if noise not in NOISE_MODES:
        raise UsageError(f"noise must be one of {NOISE_MODES}, not {noise!r}")
    if not allow_side_effects:
        refuse_side_effects(graph)
    g = graph.copy()
    rw = Rewriter(g, PASS_ID)
    changes: dict[str, str] = {}
    dead: list[str] = []
    _strip_training_leftovers(rw, changes, dead)
    info = g.infer()
    _splice_custom_ops(rw, info, changes)
    noise_inputs = _replace_random_ops(rw, info, changes, dead)
    _NHWC(rw, info, changes).run()
    rw.erase_dead(dead)
    rw.set_graph_inputs(list(graph.inputs) + [
        TensorRef(n.name) for n in noise_inputs if TensorRef(n.name) not in graph.inputs
    ])
    return Reference(g, list(graph.inputs), list(graph.outputs), noise_inputs, noise, seed,
                     changes, allow_side_effects)


# ============================================================================ rewrites
def _ref(t: str | TensorRef) -> TensorRef:
    return t if isinstance(t, TensorRef) else TensorRef.parse(t)


def _node_def(name: str, op: str, inputs: Sequence[str], attrs: Mapping[str, Any]) -> Any:
    nd = proto.NodeDef(name=name, op=op)
    nd.input.extend(inputs)
    for key, value in attrs.items():
        nd.attr[key].CopyFrom(python_to_attr(value))
    return nd


def _strip_training_leftovers(rw: Rewriter, changes: dict[str, str], dead: list[str]) -> None:
    """Remove ref-typed training leftovers that keep a frozen graph from importing."""
    g = rw.graph
    for node in g.nodes(*_REF_OPS):
        rw.set_op(node, _REF_OPS[node.op])
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
            rw.replace_node_def(_node_def(node.name, _ASSIGN_OPS[op], inputs + ctrl, attrs))
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
        fn = _CUSTOM_OPS.get(nd.op)
        if fn is None:
            continue
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
        _replace_keeping_name(rw, node, outs, info, control=node.control_inputs)
        changes[name] = f"{nd.op}: custom op replaced by its reference maths"


def _replace_keeping_name(
    rw: Rewriter, node: Node, outs: Sequence[TensorRef], info: Mapping[TensorRef, Any],
    control: Sequence[str] = (),
) -> None:
    """Make ``node`` an Identity (one output) or IdentityN of ``outs``, keeping its name."""
    g = rw.graph
    ctrl = [f"^{c}" for c in control]
    dtypes = []
    for port, out in enumerate(outs):
        ti = info.get(TensorRef(node.name, port))
        dt = ti.dtype if ti is not None and ti.dtype is not None else g.dtype_hint(out)
        dtypes.append(dt or DType.float32)
    if len(outs) == 1:
        nd = _node_def(node.name, "Identity", [outs[0].input_string, *ctrl], {"T": dtypes[0]})
    else:
        nd = _node_def(node.name, "IdentityN", [o.input_string for o in outs] + ctrl,
                       {"T": dtypes})
    rw.replace_node_def(nd)


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
        nd = _node_def(name, "Identity",
                       [ph.name] + [f"^{c}" for c in node.control_inputs], {"T": dtype})
        rw.replace_node_def(nd)
        result.append(NoiseInput(index, ph.name, name, node.op, dtype, shape))
        changes[name] = f"{node.op}: replaced by noise input {ph.name}"
    return result


def _perm_to_last(rank: int) -> list[int]:
    """NCHW-like -> NHWC-like permutation (channels from axis 1 to the end)."""
    return [0, *range(2, rank), 1]


def _perm_to_first(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


class _NHWC:
    """Wrap every NCHW op in NCHW -> NHWC -> NCHW transposes."""

    def __init__(self, rw: Rewriter, info: Mapping[TensorRef, Any],
                 changes: dict[str, str]) -> None:
        self.rw = rw
        self.g = rw.graph
        self.info = info
        self.changes = changes
        self._perms: dict[tuple[int, ...], str] = {}
        self._transposed: dict[tuple[TensorRef, int], TensorRef] = {}

    def run(self) -> None:
        for node in self.g.nodes(*_NCHW_OPS):
            if node.attr("data_format") != "NCHW":
                continue
            if node.op == "Conv2DBackpropInput" and not self._ungrouped(node):
                self._lower_conv_transpose(node)
            else:
                self._wrap(node)

    # ------------------------------------------------------------------ helpers
    def _shape(self, ref: TensorRef) -> tuple[int, ...] | None:
        ti = self.info.get(ref)
        if ti is not None and ti.shape is not None:
            return tuple(ti.shape)
        return self.g.static_shape(ref)

    def _dtype(self, ref: TensorRef) -> DType:
        ti = self.info.get(ref)
        if ti is not None and ti.dtype is not None:
            return ti.dtype
        return self.g.dtype_hint(ref) or DType.float32

    def _perm(self, perm: Sequence[int]) -> str:
        key = tuple(perm)
        if key not in self._perms:
            suffix = "".join(str(p) for p in key)
            node = self.rw.const(np.array(key, dtype=np.int32), name=f"reference/perm_{suffix}")
            self._perms[key] = node.name
        return self._perms[key]

    def _transpose(self, ref: TensorRef, perm: Sequence[int], name: str) -> TensorRef:
        node = self.rw.add_node(
            "Transpose", [ref, self._perm(perm)],
            {"T": self._dtype(ref), "Tperm": DType.int32}, name=name,
        )
        return node.output()

    def _to_nhwc(self, ref: TensorRef, rank: int, owner: str) -> TensorRef:
        key = (ref, rank)
        if key not in self._transposed:
            self._transposed[key] = self._transpose(ref, _perm_to_last(rank), f"{owner}/to_nhwc")
        return self._transposed[key]

    def _permuted_vector(self, ref: TensorRef, owner: str) -> TensorRef:
        """A 4-vector input (NCHW order) in NHWC order."""
        g = self.g
        if g.is_const(ref):
            value = np.asarray(g.const_value(ref))
            if value.shape == (4,):
                return self.rw.const(value[[0, 2, 3, 1]], name=f"{owner}/nhwc_vector").output()
            return ref  # a 2-vector (spatial only) is layout-independent
        shape = self._shape(ref)
        if shape is not None and shape != (4,) and -1 not in shape:
            return ref
        indices = self.rw.const(np.array([0, 2, 3, 1], dtype=np.int32),
                                name=f"{owner}/nhwc_indices")
        axis = self.rw.const(np.int32(0), name=f"{owner}/nhwc_axis")
        node = self.rw.add_node(
            "GatherV2", [ref, indices, axis],
            {"Tparams": self._dtype(ref), "Tindices": DType.int32, "Taxis": DType.int32,
             "batch_dims": 0},
            name=f"{owner}/nhwc_vector",
        )
        return node.output()

    def _rank(self, node: Node) -> int:
        if node.op in ("BiasAdd",):
            shape = self._shape(node.data_inputs[0])
            if shape is not None:
                return len(shape)
        return 4

    # ------------------------------------------------------------------ wrapping
    def _wrap(self, node: Node) -> None:
        rw, g = self.rw, self.g
        name = node.name
        rank = self._rank(node)
        data = list(node.data_inputs)
        new_data: list[TensorRef] = list(data)
        for i in _NCHW_OPS[node.op]:
            new_data[i] = self._to_nhwc(data[i], rank, name)
        for i in _NCHW_VECTORS.get(node.op, ()):
            new_data[i] = self._permuted_vector(data[i], name)

        nd = proto.NodeDef()
        nd.CopyFrom(node.proto)
        nd.name = g.unique_name(f"{name}/nhwc")
        del nd.input[:]
        nd.input.extend([r.input_string for r in new_data] +
                        [f"^{c}" for c in node.control_inputs])
        nd.attr["data_format"].CopyFrom(python_to_attr("NHWC"))
        for key in _LIST_ATTRS:
            value = node.attr(key)
            if isinstance(value, list) and len(value) == 4:
                nd.attr[key].CopyFrom(python_to_attr([value[p] for p in (0, 2, 3, 1)]))
        pads = node.attr("explicit_paddings")
        if isinstance(pads, list) and len(pads) == 8:
            pairs = [pads[2 * d: 2 * d + 2] for d in (0, 2, 3, 1)]
            nd.attr["explicit_paddings"].CopyFrom(python_to_attr([p for pr in pairs for p in pr]))
        if "_output_shapes" in nd.attr:
            del nd.attr["_output_shapes"]
        new = rw.replace_node_def(nd)

        used = max(g.num_outputs_used(name), 1)
        back = _perm_to_first(rank)
        if used == 1:  # X becomes the transpose back to NCHW
            rw.replace_node_def(_node_def(
                name, "Transpose", [new.name, self._perm(back)],
                {"T": self._dtype(node.output()), "Tperm": DType.int32},
            ))
        else:  # X becomes IdentityN(transpose(y), the other outputs...)
            out0 = self._transpose(new.output(0), back, f"{name}/to_nchw")
            outs = [out0] + [new.output(p) for p in range(1, used)]
            _replace_keeping_name(rw, node, outs, self.info)
        self.changes[name] = f"{node.op}: NCHW run as NHWC between transposes"

    # ------------------------------------------------------------------ transposed conv
    def _ungrouped(self, node: Node) -> bool:
        """True when the transposed conv's output depth provably equals the filter's."""
        filt = self._shape(node.data_inputs[1])
        out = self._shape(node.output())
        if filt is None or out is None or len(filt) != 4 or len(out) != 4:
            return False
        return filt[2] >= 0 and filt[2] == out[1]

    def _lower_conv_transpose(self, node: Node) -> None:
        """Grouped (or possibly grouped) NCHW ``Conv2DBackpropInput`` as a grouped Conv2D.

        ``dx = conv2d(pad(upsample_zeros(dy, stride)), F')`` with
        ``F'[p, q, b, g*A + a] = F[kh-1-p, kw-1-q, a, g*Bg + b]``: the transposed conv of
        group ``g`` is the plain convolution of the zero-upsampled input with the flipped,
        transposed filter of that group.
        """
        name = node.name
        sizes, filt, dy = node.data_inputs
        fshape = self._shape(filt)
        oshape = self._shape(node.output())
        dshape = self._shape(dy)
        strides = node.attr("strides") or [1, 1, 1, 1]
        dilations = node.attr("dilations") or [1, 1, 1, 1]
        padding = node.attr("padding")

        def static(shape: tuple[int, ...] | None, idx: Sequence[int], what: str) -> list[int]:
            if shape is None or len(shape) != 4 or any(shape[i] < 0 for i in idx):
                raise GraphError(
                    f"{name}: grouped Conv2DBackpropInput needs a static {what} "
                    f"(got {shape}) to be lowered for the CPU"
                )
            return [shape[i] for i in idx]

        kh, kw = static(fshape, (0, 1), "filter size")
        out_h, out_w = static(oshape, (2, 3), "output size")
        in_h, in_w = static(dshape, (2, 3), "input size")
        if any(int(d) != 1 for d in dilations):
            raise GraphError(f"{name}: dilated grouped Conv2DBackpropInput is not supported")
        sh, sw = int(strides[2]), int(strides[3])

        def pad_before(size: int, in_size: int, k: int, s: int, axis: int) -> int:
            if padding == "VALID":
                return 0
            if padding == "SAME":
                return max((in_size - 1) * s + k - size, 0) // 2
            pads = node.attr("explicit_paddings") or [0] * 8
            return int(pads[2 * axis])

        top = kh - 1 - pad_before(out_h, in_h, kh, sh, 2)
        left = kw - 1 - pad_before(out_w, in_w, kw, sw, 3)
        up_h, up_w = (in_h - 1) * sh + 1, (in_w - 1) * sw + 1
        bottom = out_h + kh - 1 - top - up_h
        right = out_w + kw - 1 - left - up_w

        def body(sizes_t: Any, filt_t: Any, dy_t: Any) -> Any:
            import tensorflow as tf

            x = tf.transpose(dy_t, [0, 2, 3, 1])  # [N, Hi, Wi, G*Bg]
            n, b = tf.shape(x)[0], tf.shape(x)[3]
            a = tf.shape(filt_t)[2]
            c = tf.cast(sizes_t[1], tf.int32)  # G*A output channels
            groups = c // a
            f = tf.reshape(filt_t, [kh, kw, a, groups, -1])  # [kh, kw, A, G, Bg]
            f = tf.transpose(f, [0, 1, 4, 3, 2])  # [kh, kw, Bg, G, A]
            f = tf.reverse(tf.reshape(f, [kh, kw, -1, c]), [0, 1])
            if sh > 1 or sw > 1:
                x = tf.reshape(x, [n, in_h, 1, in_w, 1, b])
                x = tf.pad(x, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])
                x = tf.reshape(x, [n, in_h * sh, in_w * sw, b])[:, :up_h, :up_w, :]
            x = tf.pad(x, [[0, 0], [max(top, 0), max(bottom, 0)],
                           [max(left, 0), max(right, 0)], [0, 0]])
            if min(top, bottom, left, right) < 0:
                h = up_h + max(top, 0) + max(bottom, 0)
                w = up_w + max(left, 0) + max(right, 0)
                x = x[:, max(-top, 0):h - max(-bottom, 0), max(-left, 0):w - max(-right, 0), :]
            y = tf.nn.conv2d(x, f, strides=[1, 1, 1, 1], padding="VALID", data_format="NHWC")
            return tf.transpose(y, [0, 3, 1, 2])

        specs = [(self._dtype(r), self._shape(r)) for r in (sizes, filt, dy)]
        (out,) = splice_tf(self.rw, body, [sizes, filt, dy], scope=f"{name}/grouped",
                           input_specs=specs)
        _replace_keeping_name(self.rw, node, [out], self.info, control=node.control_inputs)
        self.changes[name] = (
            "Conv2DBackpropInput: (possibly) grouped transposed conv lowered to a grouped "
            "NHWC Conv2D of the zero-upsampled input"
        )
