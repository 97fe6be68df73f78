"""Patterns and replacements written as plain Python functions of TensorFlow ops.

A traced pattern reads like the maths::

    @traced
    def lrelu(x):
        return tf.maximum(x, x * 0.2)

    for m in lrelu.find(graph):          # m["x"] is the tensor fed to the leaky ReLU
        ...

The function is traced once (cached) in a ``tf.compat.v1`` graph: its parameters become
placeholders, which match any tensor and are captured under the parameter's name; its
return value is the root. The traced graph is then matched structurally, exactly: the same
op types, the same inputs in the same order (``Identity`` included), the same non-type
attributes (``keep_dims``, ``transpose_a``, ``data_format``...; dtypes are not compared, so
a float32 pattern matches a float16 graph), and constants with equal values and shapes.
With ``const_any=True`` a traced constant matches any ``Const`` of the same shape and is
captured under its traced name (``tf.constant(0.2, name="alpha")`` -> ``m["alpha"]``).
Commutative ops match in the traced order only.

Parameters with default values stay Python values (``def f(x, alpha=0.2)``); give
placeholders a dtype or shape with ``params={"x": "int32"}`` or ``{"x": ("float32", [None,
512])}`` (default float32, unknown shape).

A :class:`Template` is the same idea for replacements: a function of the match's captures,
traced once and copied into the graph for every match::

    Rule("lrelu", lrelu, Template(lambda x: tf.nn.leaky_relu(x, alpha=0.2)))

TensorFlow is imported only when a function is first traced.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..ir.attrs import attr_to_python
from ..ir.dtypes import DType
from ..ir.graph import Graph
from ..ir.names import TensorRef
from .builder import Builder, linked_attrs
from .optree import Any, Match, P, Pattern

ParamSpec = typing.Any  # a dtype (DType, name, numpy or tf dtype) or (dtype, shape)

# Attributes that never decide whether two nodes compute the same thing.
_IGNORED_ATTRS = frozenset({"use_cudnn_on_gpu"})


@dataclass(frozen=True)
class TraceResult:
    """A traced function: its graph, the root tensor and parameter -> placeholder name."""

    graph: Graph
    root: TensorRef
    params: dict[str, str]


_TRACES: dict[tuple[typing.Any, ...], TraceResult] = {}


def trace_function(fn: Callable[..., typing.Any], params: Mapping[str, ParamSpec] | None = None
                   ) -> TraceResult:
    """Trace ``fn`` into a small graph (cached per function and parameter specs)."""
    specs = dict(params or {})
    key = (fn, tuple(sorted((k, repr(v)) for k, v in specs.items())))
    hit = _TRACES.get(key)
    if hit is not None:
        return hit
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    names = _placeholder_params(fn)
    unknown = sorted(set(specs) - set(names))
    if unknown:
        raise UsageError(f"traced {_fn_name(fn)}: no parameter {unknown[0]!r} (has {names})")
    g = tf.Graph()
    with g.as_default():
        phs = []
        for name in names:
            dtype, shape = _split_spec(specs.get(name, "float32"))
            op_name = name if _valid_op_name(name) else "param"
            phs.append(tf.compat.v1.placeholder(tf.as_dtype(int(dtype)), shape, name=op_name))
        out = fn(*phs)
    if not isinstance(out, tf.Tensor):
        raise UsageError(
            f"traced {_fn_name(fn)} must return one TensorFlow tensor, not {type(out).__name__}"
        )
    graph = Graph.from_graph_def(g.as_graph_def(), outputs=[out.name])
    result = TraceResult(
        graph,
        TensorRef(out.op.name, out.value_index),
        {n: ph.op.name for n, ph in zip(names, phs)},
    )
    _TRACES[key] = result
    return result


def _placeholder_params(fn: Callable[..., typing.Any]) -> list[str]:
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            out.append(p.name)
        elif p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise UsageError(f"traced {_fn_name(fn)}: *args/**kwargs cannot be traced")
    return out


def _split_spec(spec: ParamSpec) -> tuple[DType, list[int | None] | None]:
    shape = None
    if isinstance(spec, tuple):
        spec, shape = spec
        shape = None if shape is None else list(shape)
    if hasattr(spec, "as_datatype_enum"):  # a tf.DType
        spec = int(spec.as_datatype_enum)
    return DType.of(spec), shape


def _valid_op_name(name: str) -> bool:
    return name[:1].isalnum() or name[:1] == "."


def _fn_name(fn: Callable[..., typing.Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


# ---------------------------------------------------------------------- patterns
class Traced(Pattern):
    """A pattern traced from ``fn`` (see the module docstring).

    Args:
        fn: a function of tensors returning one tensor.
        params: placeholder dtype (and shape) per parameter.
        const_any: traced constants match any ``Const`` of the same shape (captured).
        match_attrs: compare non-type attributes (default True).
    """

    def __init__(
        self,
        fn: Callable[..., typing.Any],
        *,
        params: Mapping[str, ParamSpec] | None = None,
        const_any: bool = False,
        match_attrs: bool = True,
    ) -> None:
        self.fn = fn
        self.params = dict(params or {})
        self.const_any = const_any
        self.match_attrs = match_attrs
        self._root: P | None = None
        self.__name__ = getattr(fn, "__name__", "traced")
        self.__doc__ = fn.__doc__

    def trace(self) -> TraceResult:
        """Trace the function with TensorFlow (a fresh trace every call)."""
        return trace_function(self.fn, self.params)

    def compiled(self) -> P:
        """The root :class:`P` of the traced pattern (traced once, on first use)."""
        if self._root is None:
            self._root = _compile(self.trace(), self.const_any, self.match_attrs)
        return self._root

    def __call__(self, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        """Call the underlying function (a traced pattern is still usable as TF code)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"traced({_fn_name(self.fn)})"


def traced(
    fn: Callable[..., typing.Any] | None = None,
    *,
    params: Mapping[str, ParamSpec] | None = None,
    const_any: bool = False,
    match_attrs: bool = True,
) -> typing.Any:
    """Make a :class:`Traced` pattern; usable as ``@traced`` or ``@traced(const_any=True)``."""

    def wrap(f: Callable[..., typing.Any]) -> Traced:
        return Traced(f, params=params, const_any=const_any, match_attrs=match_attrs)

    return wrap if fn is None else wrap(fn)


def _compile(tr: TraceResult, const_any: bool, match_attrs: bool) -> P:
    g = tr.graph
    param_of = {ph: name for name, ph in tr.params.items()}
    memo: dict[str, Pattern] = {}

    def build(name: str) -> Pattern:
        hit = memo.get(name)
        if hit is not None:
            return hit
        node = g.node(name)
        pat: Pattern
        if node.op == "Placeholder":
            pat = Any(param_of.get(name, name))
        elif node.op == "Const":
            value = g.const_value(node.output())
            if const_any:
                pat = P("Const", const=_SameShape(value.shape), capture=name, port=None)
            else:
                pat = P("Const", const=_ConstEquals(value), port=None)
        else:
            data = node.data_inputs
            attrs = _attrs(node.proto) if match_attrs else {}
            pat = P(node.op, *[build(t.node) for t in data], attrs=attrs, port=None)
            pat.in_ports = tuple(t.port for t in data)
        if isinstance(pat, P):
            pat.label = name
        memo[name] = pat
        return pat

    root = build(tr.root.node)
    if not isinstance(root, P):
        raise UsageError("a traced pattern must compute something: it returns a parameter")
    root.port = tr.root.port
    return root


def _attrs(nd: typing.Any) -> dict[str, typing.Any]:
    out: dict[str, typing.Any] = {}
    for key in sorted(nd.attr):
        av = nd.attr[key]
        if key.startswith("_") or key in _IGNORED_ATTRS:
            continue
        kind = av.WhichOneof("value")
        if kind == "type" or (kind == "list" and len(av.list.type)):
            continue
        out[key] = _AttrEquals(attr_to_python(av))
    return out


class _AttrEquals:
    """Attribute predicate of traced nodes: equal, or absent where the traced value is a
    zero/False/empty default."""

    def __init__(self, value: typing.Any) -> None:
        self.value = value
        self.wants = repr(value)

    def __call__(self, have: typing.Any) -> bool:
        want = self.value
        if have is None:
            return _is_zero(want)
        if isinstance(want, np.ndarray) or isinstance(have, np.ndarray):
            return _values_equal(np.asarray(have), np.asarray(want))
        if isinstance(want, list | tuple) and isinstance(have, list | tuple):
            return list(want) == list(have)
        return bool(have == want)


def _is_zero(v: typing.Any) -> bool:
    if isinstance(v, np.ndarray):
        return v.size == 0
    return v in (False, 0, 0.0, "", b"") or (isinstance(v, list | tuple) and not v)


class _ConstEquals:
    """Const predicate: same shape and equal values (compared in the less precise dtype)."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = value
        self.label = _short(value)

    def __call__(self, arr: np.ndarray) -> bool:
        return _values_equal(arr, self.value)

    def describe(self, arr: np.ndarray) -> str:
        if arr.shape != self.value.shape:
            return f"has shape {list(arr.shape)}, pattern wants {list(self.value.shape)}"
        return f"is {_short(arr)}, pattern wants {_short(self.value)}"


class _SameShape:
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        self.label = f"shape={list(self.shape)}"

    def __call__(self, arr: np.ndarray) -> bool:
        return tuple(arr.shape) == self.shape

    def describe(self, arr: np.ndarray) -> str:
        return f"has shape {list(arr.shape)}, pattern wants {list(self.shape)}"


def _values_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype == object or b.dtype == object:
        return bool(np.array_equal(a, b))
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        low = a.dtype if a.dtype.itemsize <= b.dtype.itemsize else b.dtype
        return bool(np.array_equal(a.astype(low), b.astype(low), equal_nan=True))
    return bool(np.array_equal(a, b))


def _short(arr: np.ndarray) -> str:
    def fmt(v: typing.Any) -> str:
        return f"{v:.6g}" if isinstance(v, float | int | np.number) else repr(v)

    if arr.ndim == 0:
        return fmt(arr.item())
    if arr.size <= 4:
        return "[" + ", ".join(fmt(v) for v in arr.ravel().tolist()) + "]"
    return f"array{list(arr.shape)}"


# ---------------------------------------------------------------------- replacements
class Template:
    """A replacement traced from a function of capture names (see the module docstring).

    Called as ``template(builder, match)`` it copies the traced graph into the target,
    binding each parameter to ``match.tensor(param)``; type attributes are re-inferred from
    the actual inputs and floating constants take the dtype of the first floating
    parameter, so a template traced in float32 also serves float16 graphs.
    """

    def __init__(
        self, fn: Callable[..., typing.Any], *, params: Mapping[str, ParamSpec] | None = None
    ) -> None:
        self.fn = fn
        self.params = dict(params or {})

    def __call__(self, b: Builder, m: Match) -> TensorRef:
        tr = trace_function(self.fn, self.params)
        g = tr.graph
        env: dict[str, TensorRef] = {}  # placeholder name -> bound tensor
        made: dict[str, str] = {}  # traced node -> new node name
        float_dtype: DType | None = None
        for param, ph in tr.params.items():
            if param not in m.captures:
                raise UsageError(
                    f"template {_fn_name(self.fn)}: parameter {param!r} is not a capture of "
                    f"the match (captures: {sorted(m.captures)})"
                )
            env[ph] = m.tensor(param)
            dt = b.dtype(env[ph])
            if float_dtype is None and dt is not None and dt.is_floating:
                float_dtype = dt

        def tensor(t: TensorRef) -> TensorRef:
            if t.node in env:
                return env[t.node]
            return TensorRef(made[t.node], t.port)

        needed = g.ancestors([tr.root.node], control=False)
        for name in g.toposort():
            if name not in needed or name in env:
                continue
            node = g.node(name)
            base = name.rsplit("/", 1)[-1]
            if node.op == "Placeholder":
                raise UsageError(f"template {_fn_name(self.fn)}: unbound placeholder {name!r}")
            if node.op == "Const":
                value = g.const_value(node.output())
                dtype = None
                if value.dtype.kind == "f" and float_dtype is not None:
                    dtype = float_dtype
                made[name] = b.const(value, dtype=dtype, name=base).node
                continue
            data = node.data_inputs
            linked = linked_attrs(node.op, len(data))
            attrs = {
                k: v
                for k, v in node.proto.attr.items()
                if not k.startswith("_") and k not in linked
            }
            made[name] = b.op(node.op, *[tensor(t) for t in data], name=base, **attrs).node
        return tensor(tr.root)

    def __repr__(self) -> str:
        return f"Template({_fn_name(self.fn)})"


def template(
    fn: Callable[..., typing.Any] | None = None,
    *,
    params: Mapping[str, ParamSpec] | None = None,
) -> typing.Any:
    """Make a :class:`Template`; usable as ``@template`` or ``@template(params=...)``."""

    def wrap(f: Callable[..., typing.Any]) -> Template:
        return Template(f, params=params)

    return wrap if fn is None else wrap(fn)
