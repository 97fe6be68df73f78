"""A small builder for replacement subgraphs, on top of :class:`~graphsurgery.Rewriter`.

Every method creates nodes through the rewriter (so they are journaled) and returns the
:class:`TensorRef` of the new node's first output. Type attributes (``T``, ``Tidx``,
``N``...) are inferred from the inputs when not given, and plain Python or numpy values
given as inputs become constants of the right dtype::

    b = Builder(rw, scope="block1/fold")
    k = b.const(np.float32(0.5))
    y = b.mul(x, k)                       # Mul, T inferred from x
    y = b.add(y, 1.0)                     # 1.0 becomes a Const of x's dtype
    z = b.op("LeakyRelu", y, alpha=0.2)   # any op by name; attributes as keywords
    rw.replace_uses(old, z)

New nodes are named ``<scope>/<op>`` (made unique), or ``<scope>/<name>`` with ``name=``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import GraphError
from ..ir import opdefs
from ..ir.dtypes import DType
from ..ir.graph import Graph, Node
from ..ir.names import TensorRef
from ..rewriter import Rewriter, as_array

TensorLike = TensorRef | Node | str | float | int | np.ndarray | np.generic | list


def _spec(op: str) -> dict[str, typing.Any] | None:
    return opdefs._table().get(op)


def input_type_attrs(op: str, n_inputs: int) -> list[tuple[str, str | None]] | None:
    """For each of ``n_inputs`` data inputs of ``op``: ``(kind, type attr)``.

    ``kind`` is ``one``, ``n`` (a ``number_attr`` list, type attr assumed ``T``) or
    ``list`` (a ``type_list_attr``); the type attr is None for fixed-type inputs. None
    when the op is unknown or the inputs cannot be aligned with its arguments.
    """
    spec = _spec(op)
    if spec is None:
        return None
    args = spec["in"]
    variadic = [a for a in args if a[0] != "one"]
    fixed = len(args) - len(variadic)
    if len(variadic) > 1 or (not variadic and n_inputs != fixed) or n_inputs < fixed:
        return None
    has_t = any(isinstance(a[1], str) and a[1] == "T" for a in spec["in"] + spec["out"])
    out: list[tuple[str, str | None]] = []
    for a in args:
        if a[0] == "one":
            out.append(("one", a[1] if isinstance(a[1], str) else None))
        elif a[0] == "n":
            out.extend([("n", "T" if has_t else None)] * (n_inputs - fixed))
        else:
            out.extend([("list", a[1])] * (n_inputs - fixed))
    return out


def linked_attrs(op: str, n_inputs: int) -> set[str]:
    """The attributes of ``op`` that :meth:`Builder.op` infers from ``n_inputs`` inputs."""
    keys = {key for _, key in input_type_attrs(op, n_inputs) or [] if key}
    number = _number_attr(op)
    return keys | ({number} if number else set())


def _number_attr(op: str) -> str | None:
    spec = _spec(op)
    if spec is None:
        return None
    return next((a[1] for a in spec["in"] if a[0] == "n"), None)


class Builder:
    """Creates replacement nodes through ``rw``; see the module docstring.

    Args:
        rw: the rewriter every node is created through.
        scope: name prefix of the new nodes (``""``: none).
    """

    def __init__(self, rw: Rewriter, scope: str = "") -> None:
        self.rw = rw
        self.scope = scope.strip("/")
        self.created: list[str] = []

    @property
    def graph(self) -> Graph:
        """The graph the builder adds to (its rewriter's)."""
        return self.rw.graph

    # ------------------------------------------------------------------ core
    def dtype(self, tensor: TensorRef | Node | str) -> DType | None:
        """Static dtype of ``tensor``: op specs and attributes, TF inference as a last resort."""
        ref = _ref(tensor)
        nd = self.graph._nodes.get(ref.node)
        if nd is None:
            raise GraphError(f"no node named {ref.node!r}")
        dt = opdefs.output_dtype(nd, ref.port) or self.graph.dtype_hint(ref)
        if dt is None:
            try:
                dt = self.graph.dtype(ref)
            except Exception:  # inference is best effort here
                dt = None
        return dt

    def _name(self, base: str) -> str:
        return f"{self.scope}/{base}" if self.scope else base

    def const(
        self, value: typing.Any, *, dtype: DType | str | None = None, name: str | None = None
    ) -> TensorRef:
        """A ``Const`` holding ``value`` (Python floats become float32 unless ``dtype``)."""
        dt = None if dtype is None else DType.of(dtype)
        node = self.rw.const(value, name=self._name(name or "Const"), dtype=dt)
        self.created.append(node.name)
        return node.output()

    def op(
        self,
        op: str,
        *inputs: TensorLike,
        name: str | None = None,
        control_inputs: Iterable[str | Node] = (),
        **attrs: typing.Any,
    ) -> TensorRef:
        """Create ``op`` on ``inputs`` with ``attrs``; returns its output 0.

        Type attributes tied to inputs (``T``, ``Tidx``, ``Tshape``, ``N``...) are
        inferred from the inputs' dtypes unless given; for ops TensorFlow does not know,
        ``T`` is taken from the first input. Non-tensor inputs become constants of the
        dtype their argument needs.
        """
        layout = input_type_attrs(op, len(inputs))
        attrs = dict(attrs)
        # 1. type attrs from the tensor inputs
        if layout is None:
            first = next((i for i in inputs if _is_tensor(i)), None)
            if "T" not in attrs and first is not None and _spec(op) is None:
                dt = self.dtype(_ref(first))
                if dt is not None:
                    attrs["T"] = dt
        else:
            lists: dict[str, list[DType]] = {}
            for (kind, key), x in zip(layout, inputs):
                if key is None:
                    continue
                if kind == "list":
                    dt = self.dtype(_ref(x)) if _is_tensor(x) else _value_dtype(x)
                    lists.setdefault(key, []).append(dt)  # type: ignore[arg-type]
                elif key not in attrs and _is_tensor(x):
                    dt = self.dtype(_ref(x))
                    if dt is not None:
                        attrs[key] = dt
            for key, types in lists.items():
                if key not in attrs and all(t is not None for t in types):
                    attrs[key] = types
            number = _number_attr(op)
            if number is not None and number not in attrs:
                attrs[number] = sum(1 for kind, _ in layout if kind == "n")
        # 2. plain values become constants of the dtype their argument needs
        refs: list[TensorRef] = []
        for k, x in enumerate(inputs):
            if _is_tensor(x):
                refs.append(_ref(x))
                continue
            arr = x if isinstance(x, np.ndarray) else as_array(x)
            if layout is not None:
                kind, key = layout[k]
            else:
                kind, key = "one", ("T" if _spec(op) is None else None)
            want = attrs.get(key) if key is not None else None
            if not isinstance(want, DType):
                want = None
                if key is not None and kind != "list" and key not in attrs:
                    attrs[key] = DType.of(arr.dtype)
            refs.append(self.const(arr, dtype=want, name=f"{name or op}/in{k}"))
        node = self.rw.add_node(
            op, refs, attrs, name=self._name(name or op), control_inputs=control_inputs
        )
        self.created.append(node.name)
        return node.output()

    # ------------------------------------------------------------------ helpers
    def mul(self, x: TensorLike, y: TensorLike, *, name: str | None = None) -> TensorRef:
        """``x * y`` (``Mul``)."""
        return self._binary("Mul", x, y, name)

    def add(self, x: TensorLike, y: TensorLike, *, name: str | None = None) -> TensorRef:
        """``x + y`` (``AddV2``)."""
        return self._binary("AddV2", x, y, name)

    def sub(self, x: TensorLike, y: TensorLike, *, name: str | None = None) -> TensorRef:
        """``x - y`` (``Sub``)."""
        return self._binary("Sub", x, y, name)

    def div(self, x: TensorLike, y: TensorLike, *, name: str | None = None) -> TensorRef:
        """``x / y`` (``RealDiv``)."""
        return self._binary("RealDiv", x, y, name)

    def maximum(self, x: TensorLike, y: TensorLike, *, name: str | None = None) -> TensorRef:
        """``max(x, y)`` (``Maximum``)."""
        return self._binary("Maximum", x, y, name)

    def identity(self, x: TensorLike, *, name: str | None = None) -> TensorRef:
        """``Identity(x)``."""
        return self.op("Identity", x, name=name)

    def cast(self, x: TensorLike, dtype: DType | str, *, name: str | None = None) -> TensorRef:
        """``Cast`` to ``dtype``."""
        return self.op("Cast", x, DstT=DType.of(dtype), Truncate=False, name=name)

    def reshape(
        self, x: TensorLike, shape: Sequence[int] | TensorLike, *, name: str | None = None
    ) -> TensorRef:
        """``Reshape``; a list shape becomes an int32 constant."""
        if not _is_tensor(shape):
            shape = np.asarray(shape, dtype=np.int32)
        return self.op("Reshape", x, shape, name=name)

    def transpose(
        self, x: TensorLike, perm: Sequence[int] | TensorLike, *, name: str | None = None
    ) -> TensorRef:
        """``Transpose``; a list permutation becomes an int32 constant."""
        if not _is_tensor(perm):
            perm = np.asarray(perm, dtype=np.int32)
        return self.op("Transpose", x, perm, name=name)

    def _binary(self, op: str, x: TensorLike, y: TensorLike, name: str | None) -> TensorRef:
        if not _is_tensor(x) and not _is_tensor(y):
            raise GraphError(f"{op}: at least one input must be a tensor")
        return self.op(op, x, y, name=name)


def _is_tensor(x: typing.Any) -> bool:
    return isinstance(x, TensorRef | Node | str)


def _ref(x: typing.Any) -> TensorRef:
    if isinstance(x, TensorRef):
        return x
    if isinstance(x, Node):
        return x.output()
    return TensorRef.parse(x)



def _value_dtype(x: typing.Any) -> DType | None:
    try:
        arr = x if isinstance(x, np.ndarray) else as_array(x)
        return DType.of(arr.dtype)
    except (TypeError, ValueError):
        return None
