"""Random graphs of pure ops through the ``generic`` pipeline give what TensorFlow gives.

Each example is a small TF1 graph built from a *tape* of choices: hypothesis draws each
choice (and shrinks a failure to a few ops), :class:`Tape` replays a recorded list. The
graph mixes placeholders (fully known, partly unknown and zero-size shapes, scalars) with
constants and: arithmetic with broadcasting, comparisons, unary ops, ``Cast``, ``Reshape``
(also to a shape computed with ``Shape``/``Unpack``/``Pack``), ``Transpose``,
``Pack``/``Unpack``, ``ConcatV2``, ``Slice``, ``StridedSlice``, ``Shape``/``Size``/``Rank``,
``Fill``, ``ExpandDims``, ``Squeeze``, ``Tile``, reductions, ``tf.cond`` built as v1
``Switch``/``Merge`` (constant and fed predicates, nested), and failing constant
computations that no output needs. Every op is first run eagerly on the feeds' values; an
op TensorFlow rejects is not added, so every generated graph runs.

The graph goes through ``Pipeline.preset("generic")`` and the property is: the declared
outputs keep their names, TensorFlow imports and runs the result, and every output has the
original's dtype, shape and values (integers and booleans exactly, floats to 1e-5). The
examples are derandomized, so every run tries the same graphs.

A falsifying example shows its tape; keep it in ``tests/fuzz_regressions.json``, where
:func:`test_fuzz_regression` replays it. (Tapes replay the generator as written here: new
kinds of op go at the end of the lists so old tapes keep building the same graphs, and
each bug found also has its own unit test.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphsurgery as gs
from graphsurgery.tfcompat import control_flow_v1

v1 = tf.compat.v1
raw = tf.raw_ops

#: Graphs tried per run of the property (a few hundred keeps the test under a minute).
EXAMPLES = 300
REGRESSIONS = Path(__file__).with_name("fuzz_regressions.json")


class Tape:
    """Choices replayed from a list of integers (0 once it runs out)."""

    def __init__(self, values: Sequence[int] = ()) -> None:
        self.values = list(values)
        self.i = 0

    def choose(self, n: int) -> int:
        """An integer in ``[0, n)``."""
        if n <= 1:
            return 0
        v = self.values[self.i] if self.i < len(self.values) else 0
        self.i += 1
        return v % n

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[self.choose(len(seq))]

    def coin(self, one_in: int = 2) -> bool:
        """True with probability ``1 / one_in`` (False on an exhausted tape)."""
        return self.choose(one_in) == one_in - 1


class DrawnTape(Tape):
    """Choices drawn by hypothesis (so that it shrinks them) and recorded for replay."""

    def __init__(self, data: Any) -> None:
        super().__init__()
        self.data = data

    def choose(self, n: int) -> int:
        if n <= 1:
            return 0
        v = self.data.draw(st.integers(0, n - 1))
        self.values.append(v)
        return v


@dataclass
class Entry:
    tensor: Any  # the graph tensor
    value: np.ndarray  # its value when the graph runs on the feeds (computed eagerly)
    const: bool  # computed from constants only


_INT = (np.int32, np.int64)


def C(value: np.ndarray) -> Any:  # noqa: N802
    """``value`` as a constant: a Const in graph mode, an eager tensor otherwise."""
    return tf.constant(value)


class Generator:
    """Builds one random graph from a tape."""

    def __init__(self, tape: Tape) -> None:
        self.t = tape
        self.g = tf.Graph()
        self.pool: list[Entry] = []
        self.feeds: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(tape.choose(1 << 16))

    # ------------------------------------------------------------------ values
    def shape(self, max_rank: int = 3) -> tuple[int, ...]:
        rank = self.t.choose(max_rank + 1)
        return tuple(self.t.pick((2, 1, 3, 0, 2, 1)) for _ in range(rank))

    def dtype(self) -> type:
        return self.t.pick((np.float32, np.int32, np.float32, np.int32, np.bool_, np.int64,
                            np.float64))

    def values(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dt = np.dtype(dtype)
        if dt.kind == "b":
            return self.rng.integers(0, 2, shape).astype(bool)
        if dt.kind == "f":
            return (self.rng.integers(-6, 7, shape) / 2).astype(dt)
        return self.rng.integers(-3, 4, shape).astype(dt)

    # ------------------------------------------------------------------ pool
    def add_placeholder(self) -> None:
        shape = self.shape()
        dtype = self.t.pick((np.float32, np.float32, np.int32))
        declared = [None if self.t.coin(3) else d for d in shape]
        if self.t.coin(8):
            declared = None  # unknown rank
        name = f"x{len(self.feeds)}"
        with self.g.as_default():
            ph = v1.placeholder(tf.as_dtype(dtype), declared, name=name)
        value = self.values(shape, dtype)
        self.feeds[name] = value
        self.pool.append(Entry(ph, value, const=False))

    def add_const(self, value: np.ndarray | None = None) -> Entry:
        if value is None:
            value = self.values(self.shape(), self.dtype())
        with self.g.as_default():
            c = tf.constant(value)
        entry = Entry(c, np.asarray(value), const=True)
        self.pool.append(entry)
        return entry

    def entry(self, where: Callable[[Entry], bool] | None = None) -> Entry | None:
        """A pool entry (recent ones more often) satisfying ``where``."""
        cands = [e for e in self.pool if where is None or where(e)]
        if not cands:
            return None
        if self.t.coin(2):
            return cands[-1]
        return self.t.pick(cands)

    def ints(self, values: Sequence[int] | int) -> np.ndarray:
        """An int32 or int64 array: an op argument, made a Const inside ``fn`` (so that it
        is a graph constant in the graph and an eager tensor when run eagerly)."""
        return np.array(values, dtype=self.t.pick((np.int32, np.int64)))

    # ------------------------------------------------------------------ ops
    def apply(self, fn: Callable[..., Any], operands: Sequence[Entry]) -> list[Entry]:
        """Run ``fn`` eagerly on the operands' values and, when TensorFlow accepts it, add
        it to the graph; returns the new entries (none when TensorFlow refused)."""
        try:
            eager = fn(*[tf.constant(e.value) for e in operands])
        except (tf.errors.OpError, ValueError, TypeError, IndexError):
            return []
        outs_e = eager if isinstance(eager, list | tuple) else [eager]
        try:
            with self.g.as_default(), control_flow_v1():
                built = fn(*[e.tensor for e in operands])
        except (tf.errors.OpError, ValueError, TypeError, IndexError):
            return []
        outs_g = built if isinstance(built, list | tuple) else [built]
        const = all(e.const for e in operands)
        new = [Entry(g, np.asarray(e.numpy()), const) for g, e in zip(outs_g, outs_e)]
        self.pool.extend(new)
        return new

    def step(self) -> None:
        kinds = (
            self.binary, self.unary, self.reshape, self.transpose, self.pack, self.unpack,
            self.concat, self.slice, self.strided_slice, self.shape_op, self.fill, self.cast,
            self.reduce, self.cond, self.dynamic_reshape, self.expand_squeeze, self.tile,
            self.new_const, self.poison,
        )
        self.t.pick(kinds)()

    def new_const(self) -> None:
        self.add_const()

    def poison(self) -> None:
        """A constant computation that fails (an integer division by zero) and that no
        output needs: TensorFlow never runs it, the graph is valid, and folding must not
        fail on it."""
        op = self.t.pick(("FloorMod", "FloorDiv", "Div"))
        x = self.ints([3, -4])
        with self.g.as_default():
            getattr(raw, op)(x=tf.constant(x), y=tf.constant(np.zeros(2, x.dtype)))

    def _broadcastable(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A shape that broadcasts with ``shape``."""
        choice = self.t.choose(4)
        if choice == 0:
            return shape
        if choice == 1:
            return ()
        if choice == 2:
            return tuple(1 if self.t.coin() else d for d in shape[self.t.choose(len(shape) + 1):])
        return (self.t.pick((1, 2)), *shape) if len(shape) < 3 else shape

    def _operand_like(self, a: Entry) -> Entry:
        shape_ok = lambda e: e is not a and e.value.dtype == a.value.dtype  # noqa: E731
        b = self.entry(lambda e: shape_ok(e) and _broadcasts(e.value.shape, a.value.shape))
        if b is None or self.t.coin(3):
            b = self.add_const(self.values(self._broadcastable(a.value.shape), a.value.dtype))
        return b

    def binary(self) -> None:
        a = self.entry()
        if a is None:
            return
        kind = a.value.dtype.kind
        if kind == "b":
            ops = ("LogicalAnd", "LogicalOr", "Equal", "NotEqual")
        else:
            ops = ("AddV2", "Mul", "Sub", "Maximum", "Minimum", "Add", "Greater", "Less",
                   "Equal", "FloorDiv", "FloorMod", "GreaterEqual", "LessEqual", "NotEqual")
            ops += ("RealDiv", "Div") if kind == "f" else ("Div",)
        op = self.t.pick(ops)
        b = self._operand_like(a)
        if self.t.coin():
            a, b = b, a
        self.apply(lambda x, y: getattr(raw, op)(x=x, y=y), [a, b])

    def unary(self) -> None:
        a = self.entry()
        if a is None:
            return
        kind = a.value.dtype.kind
        if kind == "b":
            ops = ("LogicalNot", "Identity", "ZerosLike", "OnesLike")
        elif kind == "f":
            ops = ("Neg", "Abs", "Square", "Sign", "Floor", "Ceil", "Round", "Identity",
                   "ZerosLike", "OnesLike", "Sqrt", "Exp", "Reciprocal")
        else:
            ops = ("Neg", "Abs", "Square", "Sign", "Identity", "ZerosLike", "OnesLike")
        op = self.t.pick(ops)
        self.apply(lambda x: getattr(raw, op)(x=x), [a])

    def cast(self) -> None:
        a = self.entry()
        if a is None:
            return
        dst = tf.as_dtype(self.t.pick((np.float32, np.int32, np.bool_, np.int64, np.float64,
                                       np.uint8)))
        self.apply(lambda x: raw.Cast(x=x, DstT=dst), [a])

    def reshape(self) -> None:
        a = self.entry()
        if a is None:
            return
        target = list(self.t.pick(_shapes_of_size(a.value.size)))
        if target and self.t.coin(3):
            rest = [d for i, d in enumerate(target) if i != 0]
            if int(np.prod(rest)) != 0:
                target[self.t.choose(len(target))] = -1
        sizes = self.ints(target)
        self.apply(lambda x: raw.Reshape(tensor=x, shape=C(sizes)), [a])

    def dynamic_reshape(self) -> None:
        """``b, h, w = unstack(shape(x)); reshape(x, stack([b * h, w]))`` and kin."""
        a = self.entry(lambda e: e.value.ndim >= 2)
        if a is None:
            return
        out_type = tf.as_dtype(self.t.pick((np.int32, np.int64)))
        rank = a.value.ndim
        i = self.t.choose(rank - 1)

        def build(x: Any) -> Any:
            dims = raw.Unpack(value=raw.Shape(input=x, out_type=out_type), num=rank, axis=0)
            merged = raw.Mul(x=dims[i], y=dims[i + 1])
            return raw.Reshape(tensor=x, shape=raw.Pack(
                values=[*dims[:i], merged, *dims[i + 2:]], axis=0))

        self.apply(build, [a])

    def transpose(self) -> None:
        a = self.entry()
        if a is None:
            return
        perm = list(self.rng.permutation(a.value.ndim))
        if perm and self.t.coin(4):
            perm[0] -= a.value.ndim
        p = self.ints(perm)
        self.apply(lambda x: raw.Transpose(x=x, perm=C(p)), [a])

    def pack(self) -> None:
        a = self.entry()
        if a is None:
            return
        same = [e for e in self.pool
                if e.value.shape == a.value.shape and e.value.dtype == a.value.dtype]
        n = 1 + self.t.choose(3)
        items = [a] + [self.t.pick(same) for _ in range(n - 1)]
        axis = self.t.choose(2 * a.value.ndim + 2) - a.value.ndim - 1
        self.apply(lambda *xs: raw.Pack(values=list(xs), axis=axis), items)

    def unpack(self) -> None:
        a = self.entry(lambda e: e.value.ndim >= 1 and 0 < max(e.value.shape) <= 4)
        if a is None:
            return
        axes = [i for i, d in enumerate(a.value.shape) if 0 < d <= 4]
        if not axes:
            return
        axis = self.t.pick(axes)
        num = a.value.shape[axis]
        if self.t.coin():
            axis -= a.value.ndim
        self.apply(lambda x: list(raw.Unpack(value=x, num=num, axis=axis)), [a])

    def concat(self) -> None:
        a = self.entry(lambda e: e.value.ndim >= 1)
        if a is None:
            return
        rank = a.value.ndim
        axis = self.t.choose(rank)
        fits = [e for e in self.pool if e.value.dtype == a.value.dtype and e.value.ndim == rank
                and all(x == y for k, (x, y) in enumerate(zip(e.value.shape, a.value.shape))
                        if k != axis)]
        items = [a] + [self.t.pick(fits) for _ in range(self.t.choose(3))]
        ax = self.ints(axis - rank if self.t.coin() else axis)
        self.apply(lambda *xs: raw.ConcatV2(values=list(xs), axis=C(ax)), items)

    def slice(self) -> None:
        a = self.entry()
        if a is None:
            return
        begin, size = [], []
        for d in a.value.shape:
            b = self.t.choose(d + 1)
            begin.append(b)
            size.append(-1 if self.t.coin(3) else self.t.choose(d - b + 1))
        bt, st_ = self.ints(begin), self.ints(size)
        self.apply(lambda x: raw.Slice(input=x, begin=C(bt), size=C(st_)), [a])

    def strided_slice(self) -> None:
        a = self.entry()
        if a is None:
            return
        n = self.t.choose(a.value.ndim + 2)
        begin, end, strides = [], [], []
        for i in range(n):
            d = a.value.shape[i] if i < a.value.ndim else 1
            begin.append(self.t.choose(2 * d + 3) - d - 1)
            end.append(self.t.choose(2 * d + 3) - d - 1)
            strides.append(self.t.pick((1, 1, 2, -1, -2)))
        masks = {key: self.t.choose(1 << n) if self.t.coin() else 0
                 for key in ("begin_mask", "end_mask", "new_axis_mask", "shrink_axis_mask")}
        if n and self.t.coin(4):
            masks["ellipsis_mask"] = 1 << self.t.choose(n)
        b = self.ints(begin)
        e, s = np.array(end, b.dtype), np.array(strides, b.dtype)
        self.apply(lambda x: raw.StridedSlice(input=x, begin=C(b), end=C(e), strides=C(s),
                                              **masks), [a])

    def shape_op(self) -> None:
        a = self.entry()
        if a is None:
            return
        op = self.t.pick(("Shape", "Size", "Rank", "Shape"))
        if op == "Rank":
            self.apply(lambda x: raw.Rank(input=x), [a])
            return
        out_type = tf.as_dtype(self.t.pick((np.int32, np.int64)))
        self.apply(lambda x: getattr(raw, op)(input=x, out_type=out_type), [a])

    def fill(self) -> None:
        dims = self.entry(lambda e: e.value.ndim == 1 and e.value.dtype.kind in "iu"
                          and e.value.size <= 3 and 0 <= e.value.min(initial=0)
                          and e.value.max(initial=0) <= 4)
        if dims is None or self.t.coin(3):
            dims = self.add_const(np.array(self.shape(), self.t.pick(_INT)))
        value = self.entry(lambda e: e.value.ndim == 0)
        if value is None or self.t.coin(3):
            value = self.add_const(self.values((), self.dtype()))
        self.apply(lambda d, v: raw.Fill(dims=d, value=v), [dims, value])

    def reduce(self) -> None:
        a = self.entry()
        if a is None:
            return
        ops = ("Any", "All") if a.value.dtype.kind == "b" else ("Sum", "Max", "Min", "Mean",
                                                                 "Prod")
        op = self.t.pick(ops)
        rank = a.value.ndim
        axes = [i - rank if self.t.coin(3) else i for i in range(rank) if self.t.coin()]
        if len(axes) == 1 and self.t.coin():
            ax = self.ints(axes[0])
        else:
            ax = self.ints(axes)
        keep = self.t.coin()
        self.apply(lambda x: getattr(raw, op)(input=x, axis=C(ax), keep_dims=keep), [a])

    def expand_squeeze(self) -> None:
        a = self.entry()
        if a is None:
            return
        if self.t.coin():
            dim = self.ints(self.t.choose(2 * a.value.ndim + 2) - a.value.ndim - 1)
            self.apply(lambda x: raw.ExpandDims(input=x, axis=C(dim)), [a])
            return
        ones = [i for i, d in enumerate(a.value.shape) if d == 1]
        axis = [i for i in ones if self.t.coin()] if self.t.coin() else []
        self.apply(lambda x: raw.Squeeze(input=x, axis=axis), [a])

    def tile(self) -> None:
        a = self.entry(lambda e: e.value.size <= 8)
        if a is None:
            return
        m = self.ints([self.t.pick((1, 2, 0, 3)) for _ in range(a.value.ndim)])
        self.apply(lambda x: raw.Tile(input=x, multiples=C(m)), [a])

    def cond(self) -> None:
        """v1 ``tf.cond`` (Switch/Merge) on a constant or fed predicate, maybe nested."""
        a = self.entry()
        if a is None:
            return
        fed = self.entry(lambda e: e.value.ndim == 0 and e.value.dtype.kind == "b"
                         and not e.const)
        how = self.t.choose(3)
        if how == 2 and fed is not None:
            pred_entry = fed
        else:
            pred_entry = None
        pred_value = bool(self.t.coin())
        branches = [self._branch(a.value) for _ in range(2)]
        nested = self.t.coin(4)
        use_less = how == 1

        def build(x: Any, *p: Any) -> Any:
            if p:
                pred = p[0]
            elif use_less:
                lo, hi = (1.0, 2.0) if pred_value else (2.0, 1.0)
                pred = raw.Less(x=tf.constant(lo), y=tf.constant(hi))
            else:
                pred = tf.constant(pred_value)
            t_fn, f_fn = (lambda: branches[0](x)), (lambda: branches[1](x))
            if nested:
                inner = t_fn
                t_fn = lambda: v1.cond(tf.constant(not pred_value), inner,  # noqa: E731
                                       lambda: branches[1](x))
            return v1.cond(pred, t_fn, f_fn)

        self.apply(build, [a] + ([pred_entry] if pred_entry is not None else []))

    def _branch(self, value: np.ndarray) -> Callable[[Any], Any]:
        dt = value.dtype
        kind = self.t.choose(5)
        if dt.kind == "b":
            return [lambda x: raw.LogicalNot(x=x), lambda x: tf.identity(x),
                    lambda x: raw.ZerosLike(x=x), lambda x: tf.constant(value),
                    lambda x: raw.LogicalAnd(x=x, y=tf.constant(True))][kind]
        k = self.values((), dt) if self.t.coin() else np.asarray(2, dt)
        other = self.values(value.shape, dt)  # drawn now: the eager and graph runs agree
        return [lambda x: raw.Mul(x=x, y=tf.constant(k)),
                lambda x: raw.AddV2(x=x, y=tf.constant(k)),
                lambda x: raw.Neg(x=x), lambda x: tf.identity(x),
                lambda x: tf.constant(other)][kind]

    # ------------------------------------------------------------------ the graph
    def build(self) -> tuple[gs.Graph, list[str]]:
        for _ in range(1 + self.t.choose(2)):
            self.add_placeholder()
        for _ in range(self.t.choose(3)):
            self.add_const()
        for _ in range(2 + self.t.choose(10)):
            self.step()
        results = [e for e in self.pool if e.tensor.op.type != "Placeholder"]
        if not results:
            self.unary()
            results = [e for e in self.pool if e.tensor.op.type != "Placeholder"]
        if not results:
            results = [self.add_const()]
        chosen = [results[-1]] + [self.t.pick(results) for _ in range(self.t.choose(3))]
        names = list(dict.fromkeys(e.tensor.name for e in chosen))
        graph = gs.load(self.g, inputs=list(self.feeds), outputs=names)
        return graph, [str(t) for t in graph.outputs]


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def _shapes_of_size(n: int) -> list[tuple[int, ...]]:
    """Shapes of rank <= 3 with ``n`` elements."""
    dims = [d for d in range(0, 7) if d == 0 and n == 0 or d and n % d == 0] or [n]
    out = [(n,)]
    if n == 1:
        out.append(())
    for a in dims:
        for b in dims:
            if a * b == n:
                out.append((a, b))
            for c in dims:
                if a * b * c == n:
                    out.append((a, b, c))
    return out


# ---------------------------------------------------------------------- the property
def _run_both(original: gs.Graph, result: gs.Graph, names: list[str],
              feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The declared outputs of both graphs, run by TensorFlow in one session."""
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(original.to_tf_graph_def(), name="a")
        try:
            tf.graph_util.import_graph_def(result.to_tf_graph_def(), name="b")
        except (ValueError, tf.errors.OpError) as exc:
            pytest.fail(f"TensorFlow refuses the rewritten graph: {exc}")
    feed = {g.get_tensor_by_name(f"a/{k}:0"): v for k, v in feeds.items()}
    for k, v in feeds.items():
        if k in result:
            feed[g.get_tensor_by_name(f"b/{k}:0")] = v
    fetch_a = [g.get_tensor_by_name(f"a/{n}") for n in names]
    try:
        fetch_b = [g.get_tensor_by_name(f"b/{n}") for n in names]
    except (KeyError, ValueError) as exc:
        pytest.fail(f"a declared output is missing from the rewritten graph: {exc}")
    with v1.Session(graph=g) as sess:
        want = sess.run(fetch_a, feed)
        try:
            got = sess.run(fetch_b, feed)
        except tf.errors.OpError as exc:
            pytest.fail(f"TensorFlow cannot run the rewritten graph: {exc.message}")
    return [np.asarray(v) for v in want], [np.asarray(v) for v in got]


def check_tape(tape: Tape) -> None:
    """The property, for the graph that ``tape`` builds."""
    gen = Generator(tape)
    graph, names = gen.build()
    original = graph.copy()
    gs.Pipeline.preset("generic").run(graph)
    assert [str(t) for t in graph.outputs] == names, "declared outputs were renamed"
    want, got = _run_both(original, graph, names, gen.feeds)
    for name, w, g in zip(names, want, got):
        assert g.dtype == w.dtype, f"{name}: dtype {g.dtype}, TensorFlow gives {w.dtype}"
        assert g.shape == w.shape, f"{name}: shape {g.shape}, TensorFlow gives {w.shape}"
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck), print_blob=False)
@given(st.data())
def test_generic_pipeline_matches_tensorflow(data):
    tape = DrawnTape(data)
    try:
        check_tape(tape)
    finally:  # shown with the falsifying example: the tape to keep in fuzz_regressions.json
        hypothesis.note(f"tape: {tape.values}")


def _regressions() -> list[Any]:
    if not REGRESSIONS.exists():
        return []
    cases = json.loads(REGRESSIONS.read_text())
    return [pytest.param(c["tape"], id=c["id"]) for c in cases]


@pytest.mark.parametrize("tape", _regressions())
def test_fuzz_regression(tape):
    """Every tape the property ever failed on (see the file's ``found`` notes)."""
    check_tape(Tape(tape))
