"""Running graphs and converted models behind one interface, and comparing them.

Every runner has ``inputs`` and ``outputs`` (:class:`TensorSpec`: name, static shape with
None for unknown dims, numpy dtype) and ``run(feeds) -> [arrays]`` in ``outputs`` order:

* :class:`GraphDefRunner`: a graph as it is, in a TensorFlow session created once
  (:mod:`graphsurgery.graph_runner`, with the :class:`Runner` interface);
* :class:`ReferenceRunner`: the exact reference of a graph (:mod:`graphsurgery.reference`):
  NCHW ops, custom ops (by the reference maths their plugin declared) and training
  leftovers made CPU-runnable, noise as inputs;
* :class:`TFLiteRunner`: a ``.tflite`` model in the LiteRT interpreter;
* :class:`ONNXRunner`: an ``.onnx`` model in onnxruntime (CPU).

The two TensorFlow runners refuse (:class:`~graphsurgery.errors.InputError` naming the node)
a graph holding an op that acts on the host (:func:`graphsurgery.ir.opdefs.side_effects`:
``WriteFile``, ``ReadFile``, ``ImmutableConst``, ``PrintV2``, ``PyFunc``...) unless given
``allow_side_effects=True``. Random ops are not side effects: the reference feeds them noise.

Feeds are matched to inputs by name, forgiving the spellings converters use: a ``:0``
suffix and a ``serving_default_`` prefix are ignored (``"latents_in"``, ``"latents_in:0"``
and ``"serving_default_latents_in:0"`` name the same input). :func:`compare_runners` runs
two runners on the same feeds (each takes the feeds that name its inputs) and compares
their outputs with :func:`graphsurgery.metrics.compare`::

    ref = ReferenceRunner(graph, noise="seeded")
    lite = TFLiteRunner("generator.tflite")
    feeds = {"latents_in": z, **ref.reference.make_noise({"latents_in": z})}
    for c in compare_runners(ref, lite, feeds):
        print(c)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .graph_runner import (
    GraphDefRunner,
    Runner,
    TensorSpec,
    _shape_tuple,
    canonical_name,
    graph_tensor_spec,
    refuse_side_effects,
)
from .ir.graph import Graph
from .ir.names import TensorRef
from .metrics import Comparison, compare
from .reference import make_reference

__all__ = [
    "BackgroundRun",
    "GraphDefRunner",
    "ONNXRunner",
    "ReferenceRunner",
    "Runner",
    "TFLiteRunner",
    "TensorSpec",
    "canonical_name",
    "compare_runners",
    "feed_shapes",
    "graph_tensor_spec",
    "refuse_side_effects",
    "run_tflite",
    "same_feeds",
]


class ReferenceRunner(Runner):
    """The exact reference of ``graph`` (:func:`graphsurgery.reference.make_reference`).

    Inputs are the graph's declared inputs, plus the noise inputs ``noise_input/<i>`` with
    ``noise="input"``; with ``noise="seeded"`` noise inputs are optional (drawn from
    ``seed`` when not fed). ``reference`` is the underlying
    :class:`~graphsurgery.reference.Reference` (for intermediate fetches, ``make_noise``).
    A graph acting on the host is refused unless ``allow_side_effects``. ``input_shapes``
    (declared input -> full shape) fixes the shapes it will be fed, which lets the
    reference run faster kernels (see :func:`~graphsurgery.reference.make_reference`);
    :func:`feed_shapes` gives them for a feed dictionary.
    """

    def __init__(self, graph: Graph, *, noise: str = "seeded", seed: int = 0,
                 allow_side_effects: bool = False,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        self.reference = make_reference(graph, noise=noise, seed=seed,
                                        allow_side_effects=allow_side_effects,
                                        input_shapes=input_shapes)
        g = self.reference.graph
        self._noise_specs = [
            TensorSpec(n.name, _shape_tuple(n.shape), n.dtype.numpy) for n in self.reference.noise
        ]
        noise_names = {n.name for n in self.reference.noise}
        self.inputs = [graph_tensor_spec(g, t) for t in self.reference.inputs
                       if t.node not in noise_names]
        if noise == "input":
            self.inputs += self._noise_specs
        self.outputs = [graph_tensor_spec(g, t) for t in self.reference.outputs]

    def accepts(self, name: str) -> bool:
        key = canonical_name(name)
        return super().accepts(name) or any(s.name == key for s in self._noise_specs)

    def run(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        return self.reference.run({canonical_name(k): v for k, v in feeds.items()})

    def fetch(
        self, feeds: Mapping[str, Any], fetches: Sequence[str | TensorRef]
    ) -> list[np.ndarray]:
        """Evaluate any tensors of the original graph (NCHW as in the original)."""
        return self.reference.run({canonical_name(k): v for k, v in feeds.items()},
                                  fetches=fetches)

    def close(self) -> None:
        self.reference.close()


def feed_shapes(graph: Graph, feeds: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shapes of the feeds that name a declared input placeholder of ``graph``
    (``input_shapes`` for a :class:`ReferenceRunner` that runs only those feeds)."""
    declared = {ref.node for ref in graph.inputs}
    found = {}
    for key, value in feeds.items():
        ref = TensorRef.parse(canonical_name(key))
        if (ref.node in declared and ref.port == 0
                and graph.node(ref.node).op == "Placeholder"):
            found[ref.node] = tuple(np.shape(value))
    return found


# ============================================================================ LiteRT
class TFLiteRunner(Runner):
    """A ``.tflite`` model (path or bytes) in the LiteRT interpreter, with default delegates.

    Inputs are resized when a feed's shape differs from the current one.

    ``recorded``: a run of this same model already made in LiteRT with ``num_threads``
    threads (the audit's, :class:`graphsurgery.export.audit.LiteRTRun`). A :meth:`run` on
    feeds equal to the recorded ones (same dtypes, shapes and values, input by input)
    returns copies of the recorded outputs instead of running the model again; any other
    feeds run it. The interpreter is only created when a run needs it.
    """

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int = 2,
                 recorded: Any = None) -> None:
        self._model, self._threads = model, num_threads
        self._interp: Any = None
        self._recorded = recorded if (
            recorded is not None and recorded.num_threads == num_threads) else None
        if self._recorded is not None:
            self._details = list(self._recorded.input_details)
            outputs = self._recorded.output_details
        else:
            self._load()
            outputs = self._interp.get_output_details()
        self.inputs = [self._spec(d) for d in self._details]
        self.outputs = [self._spec(d) for d in outputs]

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        model, threads = self._model, self._threads
        if isinstance(model, bytes | bytearray):
            self._interp = Interpreter(model_content=bytes(model), num_threads=threads)
        else:
            self._interp = Interpreter(model_path=str(Path(model)), num_threads=threads)
        self._interp.allocate_tensors()
        self._details = self._interp.get_input_details()

    @staticmethod
    def _spec(d: Mapping[str, Any]) -> TensorSpec:
        sig = d.get("shape_signature")
        shape = sig if sig is not None and len(sig) else d["shape"]
        return TensorSpec(d["name"], _shape_tuple([int(x) for x in shape]), np.dtype(d["dtype"]))

    def run(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        arrays = self._ordered_feeds(feeds)
        rec = self._recorded
        if rec is not None and len(rec.feeds) == len(arrays) and all(
                r.dtype == x.dtype and r.shape == x.shape and np.array_equal(r, x)
                for r, x in zip(rec.feeds, arrays)):
            return [np.array(o) for o in rec.outputs]
        if self._interp is None:
            self._load()
        interp = self._interp
        current = interp.get_input_details()
        resized = False
        for d, x in zip(current, arrays):
            if tuple(int(s) for s in d["shape"]) != x.shape:
                interp.resize_tensor_input(d["index"], list(x.shape))
                resized = True
        if resized:
            interp.allocate_tensors()
        for d, x in zip(self._details, arrays):
            interp.set_tensor(d["index"], np.asarray(x, order="C"))
        interp.invoke()
        return [np.array(interp.get_tensor(d["index"])) for d in interp.get_output_details()]

    def close(self) -> None:
        self._interp = None


def run_tflite(
    model: str | os.PathLike | bytes, inputs: Sequence[np.ndarray], num_threads: int = 2
) -> list[np.ndarray]:
    """Run a ``.tflite`` model in the LiteRT interpreter; inputs in the model's input order."""
    runner = TFLiteRunner(model, num_threads=num_threads)
    if len(runner.inputs) != len(inputs):
        raise ValueError(f"model takes {len(runner.inputs)} inputs, got {len(inputs)}")
    return runner.run({s.name: x for s, x in zip(runner.inputs, inputs)})


# ============================================================================ onnxruntime
_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class ONNXRunner(Runner):
    """An ``.onnx`` model (path or bytes) in onnxruntime with the CPU execution provider."""

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int = 2) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        source = bytes(model) if isinstance(model, bytes | bytearray) else str(Path(model))
        self._session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        self.inputs = [self._spec(a) for a in self._session.get_inputs()]
        self.outputs = [self._spec(a) for a in self._session.get_outputs()]

    @staticmethod
    def _spec(arg: Any) -> TensorSpec:
        dtype = _ORT_TYPES.get(arg.type)
        return TensorSpec(arg.name, _shape_tuple(arg.shape),
                          None if dtype is None else np.dtype(dtype))

    def run(self, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        arrays = self._ordered_feeds(feeds)
        values = self._session.run(None, {s.name: x for s, x in zip(self.inputs, arrays)})
        return [np.asarray(v) for v in values]

    def close(self) -> None:
        self._session = None


# ============================================================================ comparing
def compare_runners(a: Runner, b: Runner, feeds: Mapping[str, Any]) -> list[Comparison]:
    """Run ``a`` (the reference) and ``b`` on ``feeds``; compare output by output.

    Each runner gets the feeds that name its inputs, so one dictionary can hold, say, the
    latents and the noise inputs of both. Outputs are paired in order and must have the
    same shapes (see :func:`graphsurgery.metrics.compare`).
    """
    ra = a.run(a.select_feeds(feeds))
    rb = b.run(b.select_feeds(feeds))
    if len(ra) != len(rb):
        raise ValueError(f"{len(ra)} outputs against {len(rb)}: cannot pair them")
    return [compare(x, y) for x, y in zip(ra, rb)]


# ============================================================================ in the background
def same_feeds(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two feed dictionaries hold the same names, dtypes, shapes and values."""
    if set(a) != set(b):
        return False
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            return False
    return True


class BackgroundRun:
    """``make().run(feeds)`` in a thread started at once; :meth:`result` waits for it.

    A TensorFlow session and the LiteRT interpreter release the GIL while they compute, so
    the run overlaps whatever the calling thread does meanwhile (the passes, the
    conversion) on another core. The runner is built, run once and closed in the thread;
    :meth:`result` returns its outputs or raises what the thread raised. ``feeds`` are kept
    (:attr:`feeds`) so a caller can check, with :func:`same_feeds`, that the outputs are
    the ones it wants. ``after``: another run this one waits for before it starts (one
    large graph in memory at a time). ``seconds`` is the run's own wall time once done.
    Always :meth:`wait` (or :meth:`result`) before the process exits::

        job = BackgroundRun(lambda: ReferenceRunner(graph, noise="seeded"), feeds)
        ...  # other work
        outputs = job.result()
    """

    def __init__(self, make: Callable[[], Runner], feeds: Mapping[str, Any],
                 name: str = "graphsurgery-run", after: BackgroundRun | None = None) -> None:
        self.feeds = dict(feeds)
        self.seconds: float | None = None
        self._outputs: list[np.ndarray] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(make, after), name=name,
                                        daemon=True)
        self._thread.start()

    def _work(self, make: Callable[[], Runner], after: BackgroundRun | None) -> None:
        if after is not None:
            after.wait()
        t0 = time.perf_counter()
        try:
            with make() as runner:
                self._outputs = runner.run(self.feeds)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc
        finally:
            self.seconds = time.perf_counter() - t0

    def done(self) -> bool:
        """Whether the run has finished (or failed)."""
        return not self._thread.is_alive()

    def wait(self) -> None:
        """Wait until the run has finished (or failed)."""
        self._thread.join()

    def result(self) -> list[np.ndarray]:
        """The outputs, once the run has finished; raises what the run raised."""
        self.wait()
        if self._error is not None:
            raise self._error
        assert self._outputs is not None
        return self._outputs

