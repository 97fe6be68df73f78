"""The runner interface, and running a graph as it is with TensorFlow.

Every runner has ``inputs`` and ``outputs`` (:class:`TensorSpec`: name, static shape with
None for unknown dims, numpy dtype) and ``run(feeds) -> [arrays]`` in ``outputs`` order.
:class:`GraphDefRunner` runs a graph in a TensorFlow session created once, and refuses
(:class:`~graphsurgery.errors.InputError` naming the node) a graph holding an op that acts
on the host unless given ``allow_side_effects=True``. :mod:`graphsurgery.runners` gathers
every runner (the reference, LiteRT, onnxruntime) and compares them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .ir import opdefs
from .ir.graph import Graph
from .ir.names import TensorRef

_PREFIXES = ("serving_default_",)


@dataclass(frozen=True)
class TensorSpec:
    """A runner's input or output: name, static shape (None dims unknown), numpy dtype."""

    name: str
    shape: tuple[int | None, ...] | None
    dtype: np.dtype | None


def canonical_name(name: str) -> str:
    """A tensor name without a ``:0`` suffix or a ``serving_default_`` prefix."""
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name.endswith(":0"):
        name = name[:-2]
    return name


def _shape_tuple(shape: Any) -> tuple[int | None, ...] | None:
    if shape is None:
        return None
    return tuple(None if d is None or not isinstance(d, int | np.integer) or d < 0 else int(d)
                 for d in shape)


def graph_tensor_spec(graph: Graph, ref: TensorRef) -> TensorSpec:
    """The spec of tensor ``ref`` of ``graph`` from what is known without inference."""
    dtype = graph.dtype_hint(ref)
    np_dtype = None
    if dtype is not None:
        try:
            np_dtype = dtype.numpy
        except ValueError:
            np_dtype = None
    return TensorSpec(ref.input_string, _shape_tuple(graph.static_shape(ref)), np_dtype)


def refuse_side_effects(graph: Graph, allow: str = "allow_side_effects=True") -> None:
    """Raise InputError naming the first node of ``graph`` that acts on the host (and how
    many more there are); ``allow`` says how the user allows it anyway."""
    found = opdefs.side_effects(graph)
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise InputError(f"{found[0]}{more}: not run; a graph that acts on this machine runs "
                         f"only with {allow}")


class Runner(ABC):
    """Something that maps named input arrays to output arrays."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @abstractmethod
    def run(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        """Outputs (in ``self.outputs`` order) for ``feeds`` (input name -> array)."""

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def accepts(self, name: str) -> bool:
        """Whether ``name`` names one of this runner's inputs."""
        key = canonical_name(name)
        return any(canonical_name(s.name) == key for s in self.inputs)

    def select_feeds(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """The subset of ``feeds`` that names this runner's inputs."""
        return {k: v for k, v in feeds.items() if self.accepts(k)}

    def _ordered_feeds(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        """One array per input, in input order, cast to the input's dtype; strict on names."""
        by_key: dict[str, Any] = {}
        for k, v in feeds.items():
            key = canonical_name(k)
            if key in by_key:
                raise InputError(f"input {key!r} is fed twice")
            by_key[key] = v
        arrays = []
        for spec in self.inputs:
            key = canonical_name(spec.name)
            if key not in by_key:
                raise InputError(f"input {spec.name!r} is not fed (feeds: {sorted(feeds)})")
            arrays.append(np.asarray(by_key.pop(key), dtype=spec.dtype))
        if by_key:
            raise InputError(f"unknown inputs {sorted(by_key)} (inputs: {self.input_names})")
        return arrays

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the runner holds (sessions, interpreters)."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ============================================================================ TensorFlow
class GraphDefRunner(Runner):
    """Run a graph as it is with TensorFlow on the CPU; the session is created once.

    ``graph`` is a :class:`~graphsurgery.Graph`, a GraphDef (ours or TensorFlow's) or a path
    (loaded with :func:`graphsurgery.load`). Besides the declared inputs, any tensor of the
    graph may be fed, and :meth:`fetch` evaluates any tensors.
    """

    def __init__(self, graph: Graph | Any, *, config: Any = None,
                 allow_side_effects: bool = False) -> None:
        if not isinstance(graph, Graph):
            from .ir.io import load

            graph = load(graph)
        if not allow_side_effects:
            refuse_side_effects(graph)
        self.graph = graph
        self._config = config
        self._session: Any = None
        self._tf_graph: Any = None
        self.inputs = [graph_tensor_spec(graph, t) for t in graph.inputs]
        self.outputs = [graph_tensor_spec(graph, t) for t in graph.outputs]

    @property
    def session(self) -> Any:
        """The TensorFlow session (created on first use)."""
        if self._session is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow as tf

            tfg = tf.Graph()
            with tfg.as_default():
                tf.graph_util.import_graph_def(self.graph.to_tf_graph_def(), name="")
            self._tf_graph = tfg
            self._session = tf.compat.v1.Session(graph=tfg, config=self._config)
        return self._session

    def accepts(self, name: str) -> bool:
        return super().accepts(name) or self._resolve(name, strict=False) is not None

    def _resolve(self, name: str, strict: bool = True) -> str | None:
        """``name`` as a TensorFlow tensor name (``node:port``) of this graph."""
        for candidate in (name, canonical_name(name)):
            ref = TensorRef.parse(candidate)
            if ref.node in self.graph:
                return f"{ref.node}:{ref.port}"
        if strict:
            raise InputError(f"no tensor {name!r} in the graph")
        return None

    def fetch(
        self, feeds: Mapping[str, Any], fetches: Sequence[str | TensorRef]
    ) -> list[np.ndarray]:
        """Evaluate ``fetches`` (tensor names) with ``feeds`` (any tensors of the graph)."""
        sess = self.session
        tfg = self._tf_graph
        feed = {}
        for k, v in feeds.items():
            feed[tfg.get_tensor_by_name(self._resolve(str(k)))] = v
        names = [self._resolve(str(t)) for t in fetches]
        values = sess.run([tfg.get_tensor_by_name(n) for n in names], feed)
        return [np.asarray(v) for v in values]

    def run(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        return self.fetch(feeds, [s.name for s in self.outputs])

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
            self._tf_graph = None
