"""Custom ops as plugins: what graphsurgery knows about ops TensorFlow does not.

A frozen graph may hold ops that are not in TensorFlow's registry (a model family's CUDA
kernels, say). TensorFlow cannot infer their shapes nor run them, so a plugin declares,
per op, a shape function, a reference implementation and the pass that lowers the op to
standard ones::

    register_custom_op(
        "MyAct",
        shape=lambda node, ins: [ins[0]],               # output infos from input infos
        reference=lambda node, ins: tf.nn.relu(ins[0]),  # TensorFlow maths (see below)
        lowered_by="mytools::lower_my_act",
    )

* ``shape(node, inputs) -> [TensorInfo | (dtype, shape)]``: ``inputs`` holds one
  :class:`~graphsurgery.ir.shapes.TensorInfo` per data input (possibly unknown); used by
  shape inference (:mod:`graphsurgery.ir.shapes`) for nodes TensorFlow cannot import.
* ``reference(node, inputs) -> tensor | [tensors]``: the op's maths, built with TensorFlow
  ops inside a fresh ``tf.compat.v1`` graph; ``inputs`` holds one tensor per data input (a
  ``tf.constant`` for a small constant input, so ``tf.get_static_value`` works, else a
  placeholder). The reference runner (:mod:`graphsurgery.reference`) splices the result in
  place of every node of the op. Numpy maths can be wrapped in ``tf.numpy_function``.
* ``lowered_by``: the id of the pass that rewrites the op into standard ones (documentation
  for ``check`` and the user; nothing runs it implicitly).

Registrations come from plugins (the ``graphsurgery.passes`` entry-point group, like
passes): looking up an op that is not registered first asks the discoverers added with
:func:`add_discoverer` (graphsurgery's plugin loader) to load the plugins, once. Registering
an op again replaces the fields given and keeps the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

#: ``shape(node, input_infos) -> output infos`` (see the module documentation).
ShapeFn = Callable[[Any, list[Any]], list[Any]]
#: ``reference(node, input_tensors) -> tensor | [tensors]`` (TensorFlow ops).
ReferenceFn = Callable[[Any, list[Any]], Any]


@dataclass(frozen=True)
class CustomOp:
    """What a plugin declared about one custom op (any field may be None)."""

    op: str
    shape: ShapeFn | None = None
    reference: ReferenceFn | None = None
    lowered_by: str | None = None
    module: str | None = None  # the module that registered it


_REGISTRY: dict[str, CustomOp] = {}
_DISCOVERERS: list[Callable[[], None]] = []
_discovered = False


def register_custom_op(
    op: str,
    reference: ReferenceFn | None = None,
    *,
    shape: ShapeFn | None = None,
    lowered_by: str | None = None,
) -> Any:
    """Declare custom op ``op``: its ``shape`` function, ``reference`` maths and the id of
    the pass that lowers it (see the module documentation).

    Fields not given keep an earlier registration's. With neither ``reference``, ``shape``
    nor ``lowered_by`` it is a decorator registering the reference maths::

        @register_custom_op("MyAct")
        def my_act(node, inputs): ...
    """
    if reference is None and shape is None and lowered_by is None:

        def deco(fn: ReferenceFn) -> ReferenceFn:
            register_custom_op(op, fn)
            return fn

        return deco
    if not isinstance(op, str) or not op:
        raise TypeError(f"a custom op needs an op name, not {op!r}")
    old = _REGISTRY.get(op, CustomOp(op))
    fn = reference or shape
    changes: dict[str, Any] = {"module": getattr(fn, "__module__", None) or old.module}
    if reference is not None:
        changes["reference"] = reference
    if shape is not None:
        changes["shape"] = shape
    if lowered_by is not None:
        changes["lowered_by"] = lowered_by
    _REGISTRY[op] = replace(old, **changes)
    return reference if reference is not None else shape


def unregister_custom_op(op: str) -> None:
    """Forget what was declared about ``op`` (for tests and interactive sessions)."""
    _REGISTRY.pop(op, None)


def add_discoverer(fn: Callable[[], None]) -> None:
    """Call ``fn()`` (once) before the first lookup of an unregistered op: a plugin loader."""
    if fn not in _DISCOVERERS:
        _DISCOVERERS.append(fn)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    try:
        for fn in list(_DISCOVERERS):
            fn()
    except BaseException:
        _discovered = False
        raise


def get_custom_op(op: str) -> CustomOp | None:
    """The declaration of ``op``, loading the plugins first when it is not registered."""
    hit = _REGISTRY.get(op)
    if hit is None and not _discovered:
        _discover()
        hit = _REGISTRY.get(op)
    return hit


def custom_shape_fn(op: str) -> ShapeFn | None:
    """The shape function declared for ``op``, if any."""
    hit = get_custom_op(op)
    return None if hit is None else hit.shape


def custom_reference_fn(op: str) -> ReferenceFn | None:
    """The reference maths declared for ``op``, if any."""
    hit = get_custom_op(op)
    return None if hit is None else hit.reference


def registered_custom_ops() -> list[str]:
    """Every declared custom op, sorted (after loading the plugins)."""
    _discover()
    return sorted(_REGISTRY)
