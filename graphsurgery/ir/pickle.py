"""NVlabs pickles (``.pkl``) read as data: nothing in the file is ever executed.

An NVlabs snapshot is a pickle of ``dnnlib.tflib.network.Network`` objects (usually a
``(G, D, Gs)`` tuple). Unpickling it the usual way runs whatever globals it names, and the
original ``Network.__setstate__`` then executes the ``build_module_src`` it carries.

:func:`read_pickle` unpickles with a ``pickle.Unpickler`` whose ``find_class`` resolves
only an allow-list, each entry mapped to graphsurgery's own stand-in (never to the real
object the file names):

* numpy arrays, dtypes and scalars (``numpy.core.multiarray._reconstruct``/``scalar``,
  ``numpy.core.numeric._frombuffer``, ``numpy.dtype``, ``numpy.ndarray``, under numpy 1's
  ``numpy.core`` and numpy 2's ``numpy._core`` paths): the stand-ins check dtype, shape and
  byte count and build the array with ``np.frombuffer``; object, structured and void dtypes
  are refused;
* ``collections.OrderedDict``, ``dnnlib.util.EasyDict`` (a plain dict here) and
  ``_codecs.encode`` (protocol 2 spells bytes with it; only ``(str, 'latin1')``);
* ``dnnlib.tflib.network.Network``: :class:`NetworkState`, which only records the state
  dict its ``__setstate__`` receives.

Anything else stops the read with :class:`~graphsurgery.errors.InputError` naming the
global (exit 2). The generator is then rebuilt from the recorded weights by the rebuilder
registered for its ``build_func_name`` (:func:`register_rebuilder`; the StyleGAN ones live in
``graphsurgery.zoo.nvlabs`` and are found through the ``graphsurgery.pickles`` entry-point
group): the file's code is never needed. Only the explicit opt-in
``PickleOptions(trust_code=True)`` (``--trust-pickle-code``) runs it, in a subprocess
(:mod:`graphsurgery.ir.pickle_trusted`).
"""

from __future__ import annotations

import io
import math
import os
import pickle
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UsageError

#: Entry-point group of the modules that register rebuilders.
GROUP = "graphsurgery.pickles"
#: ``--network`` choices: a network of a ``(G, D, Gs)`` tuple or a component of it.
NETWORKS = ("Gs", "G", "mapping", "synthesis")
NOISE_MODES = ("stored", "random")
#: What an error says when only the file's own code could build the network.
OPT_IN = ("--trust-pickle-code --pickle-code-path NVLABS_REPO builds it by running the "
          "pickle's own code instead (only for a file you trust)")
_MAX_DEPTH = 64


class _Refused(Exception):
    """The file names something the restricted unpickler will not build."""


# ----------------------------------------------------------------------------- stand-ins
class _Sealed(type):
    """Metaclass of the stand-in classes: a pickle's BUILD cannot set their attributes."""

    def __setattr__(cls, key: str, value: Any) -> None:
        raise _Refused(f"setting attribute {key!r} of {cls.__name__}")


class _Frozen(metaclass=_Sealed):
    """Instances whose attributes a pickle's BUILD cannot set (only ``__setstate__``)."""

    __slots__ = ()

    def __setattr__(self, key: str, value: Any) -> None:
        raise _Refused(f"setting attribute {key!r} of {type(self).__name__}")


_DTYPE_KINDS = "biufc"  # bool, signed, unsigned, float, complex: plain numbers only


class _DType(_Frozen):
    """``numpy.dtype(obj, align, copy)`` as a pickle calls it, then ``__setstate__``."""

    __slots__ = ("dtype",)

    def __init__(self, obj: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(obj, str) or len(obj) > 8:
            raise _Refused(f"numpy dtype {obj!r}")
        try:
            dt = np.dtype(obj)
        except TypeError:
            raise _Refused(f"numpy dtype {obj!r}") from None
        if dt.kind == "O":
            raise _Refused("a numpy object array (its items would be Python objects)")
        if dt.kind not in _DTYPE_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise _Refused(f"numpy dtype {obj!r} (only numbers are read)")
        object.__setattr__(self, "dtype", dt)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 8:
            raise _Refused("a malformed numpy dtype state")
        order, subarray, names, fields = state[1:5]
        if subarray is not None or names is not None or fields is not None:
            raise _Refused("a structured numpy dtype")
        if order not in ("<", ">", "|", "="):
            raise _Refused(f"numpy byte order {order!r}")
        if order in "<>":
            object.__setattr__(self, "dtype", self.dtype.newbyteorder(order))


def _dtype_of(obj: Any) -> np.dtype:
    if not isinstance(obj, _DType):
        raise _Refused(f"a numpy array whose dtype is {type(obj).__name__}")
    return obj.dtype


def _shape_of(obj: Any) -> tuple[int, ...]:
    if not isinstance(obj, tuple) or len(obj) > 32 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in obj):
        raise _Refused(f"a numpy array with shape {obj!r}")
    return obj


def _from_bytes(data: Any, dtype: np.dtype, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    if isinstance(data, list):
        raise _Refused("a numpy object array (its items would be Python objects)")
    if not isinstance(data, bytes | bytearray):
        raise _Refused(f"numpy array data of type {type(data).__name__}")
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise _Refused(f"numpy array data of {len(data)} bytes for shape {list(shape)} "
                       f"of {dtype}")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


class _Array(_Frozen):
    """``_reconstruct(ndarray, (0,), b'b')`` then ``__setstate__((version, shape, dtype,
    is_fortran, data))``: an array read with ``np.frombuffer``, nothing else."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray | None = None) -> None:
        object.__setattr__(self, "array", array)

    def __setstate__(self, state: Any) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("a malformed numpy array state")
        shape, dtype, fortran, data = state[-4:]
        object.__setattr__(self, "array", _from_bytes(data, _dtype_of(dtype), _shape_of(shape),
                                                      bool(fortran)))


class _NDArrayType(_Frozen):
    """What ``numpy.ndarray`` resolves to: only a marker for ``_reconstruct``."""

    __slots__ = ()


_NDARRAY = _NDArrayType()


class _Function(_Frozen):
    """An allowed callable: a pickle's BUILD cannot set attributes on it."""

    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "name", name)

    def __call__(self, *args: Any) -> Any:
        try:
            return self.fn(*args)
        except TypeError as exc:
            raise _Refused(f"a call of {self.name} with unexpected arguments ({exc})") from None


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _Array:
    if cls is not _NDARRAY:
        raise _Refused(f"numpy _reconstruct of {type(cls).__name__}")
    return _Array()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    return _Array(_from_bytes(buf, _dtype_of(dtype), _shape_of(shape), order == "F"))


class _Scalar(_Frozen):
    """``scalar(dtype, data)``: a numpy number (the real one has a ``__setstate__`` that a
    pickle's BUILD could call, so the stand-in is finished into it afterwards)."""

    __slots__ = ("value",)

    def __init__(self, value: np.generic) -> None:
        object.__setattr__(self, "value", value)


def _scalar(dtype: Any, data: Any = None) -> _Scalar:
    dt = _dtype_of(dtype)
    if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise _Refused("a malformed numpy scalar")
    return _Scalar(np.frombuffer(data, dt)[0])


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise _Refused("_codecs.encode other than of a str as latin1")
    return text.encode("latin1")


class _EasyDict(dict):  # noqa: FURB189 - a plain dict that pickles may name
    """``dnnlib.util.EasyDict``: a plain dict here."""


class NetworkState(metaclass=_Sealed):
    """What ``Network.__setstate__`` receives, recorded and never built.

    After :func:`read_pickle`: ``name``, ``build_func_name`` (the short name the original
    ``Network`` stores: ``G_main``, ``G_style``...), ``static_kwargs``, ``components`` (nested
    networks: ``mapping``, ``synthesis``), ``variables``, the network's own variable names
    (relative to its scope) mapped to arrays, and ``build_module_src``, the module source as
    text (never run; ``""`` where the file holds no string there).
    """

    name: str = ""
    version: int = 0
    build_func_name: str = ""
    build_module_src: str = ""
    static_kwargs: dict[str, Any] = {}  # noqa: RUF012 - class defaults, never mutated
    components: dict[str, NetworkState] = {}  # noqa: RUF012
    variables: dict[str, np.ndarray] = {}  # noqa: RUF012
    state: dict[str, Any] | None = None

    def __setstate__(self, state: Any) -> None:
        if "state" in self.__dict__ or not isinstance(state, dict):
            raise _Refused("a Network state that is not a dict")
        self.__dict__["state"] = state

    def __repr__(self) -> str:
        return (f"NetworkState({self.name!r}, {self.build_func_name}, "
                f"{len(self.variables)} variables, components {sorted(self.components)})")

    def all_variables(self) -> dict[str, np.ndarray]:
        """Own variables, then each component's prefixed with its name (``G_mapping/...``),
        as ``Network.vars`` names them."""
        out = dict(self.variables)
        for comp in self.components.values():
            for name, value in comp.all_variables().items():
                out[f"{comp.name}/{name}"] = value
        return out


def _network(*args: Any) -> NetworkState:
    return NetworkState()


_ALLOWED: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _NDARRAY,
                                        ("collections", "OrderedDict"): OrderedDict,
                                        ("dnnlib.util", "EasyDict"): _EasyDict,
                                        ("_codecs", "encode"): _Function("encode", _codecs_encode)}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _Function("_reconstruct", _reconstruct)
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = _Function("scalar", _scalar)
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _Function("_frombuffer", _frombuffer)
_ALLOWED[("numpy", "dtype")] = _DType
_ALLOWED[("dnnlib.tflib.network", "Network")] = NetworkState


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-list above, to graphsurgery's stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(f"global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent id")


class _Bounded(io.RawIOBase):
    """A file whose reads never ask for more than is left (a lying length in a truncated
    file must not allocate gigabytes)."""

    def __init__(self, fh: Any, size: int) -> None:
        self.fh, self.left = fh, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        return data

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf)[: self.left]
        got = self.fh.readinto(view)
        self.left -= got
        return got

    def readline(self, limit: int = -1) -> bytes:
        line = self.fh.readline(self.left if limit < 0 else min(limit, self.left))
        self.left -= len(line)
        return line


# ----------------------------------------------------------------------------- reading
def read_pickle(path: str | os.PathLike) -> Any:
    """The pickle at ``path`` as plain data: dicts, lists, tuples, numbers, strings, numpy
    arrays and :class:`NetworkState` objects. Nothing in the file runs; a global off the
    allow-list, an object array, a truncated or non-pickle file is an InputError (exit 2)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(2)
            if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
                raise InputError(f"{path}: not a pickle of protocol 2 to "
                                 f"{pickle.HIGHEST_PROTOCOL} (NVlabs snapshots are)")
            fh.seek(0)
            obj = _RestrictedUnpickler(_Bounded(fh, size)).load()
    except _Refused as exc:
        raise InputError(f"{path}: refuses {exc}: graphsurgery never runs code from a "
                         "pickle") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except InputError:
        raise
    except Exception as exc:  # truncated or corrupt: EOFError, UnpicklingError, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable pickle (truncated or corrupt: {reason})") \
            from None
    try:
        return _finish(obj, 0)
    except _Refused as exc:
        raise InputError(f"{path}: refuses {exc}: graphsurgery never runs code from a "
                         "pickle") from None
    except (AttributeError, TypeError, ValueError, RecursionError) as exc:
        # a stand-in created without its arguments (NEWOBJ), a malformed state
        raise InputError(f"{path}: not a readable NVlabs pickle (malformed: "
                         f"{type(exc).__name__}: {exc})") from None


def _finish(obj: Any, depth: int) -> Any:
    """Replace the stand-ins with what they stand for (arrays, dicts, networks)."""
    if depth > _MAX_DEPTH:
        raise _Refused(f"objects nested more than {_MAX_DEPTH} deep")
    if isinstance(obj, _Array):
        if obj.array is None:
            raise _Refused("a numpy array without data")
        return obj.array
    if isinstance(obj, _DType):
        return obj.dtype
    if isinstance(obj, _Scalar):
        return obj.value
    if isinstance(obj, _Frozen):
        raise _Refused(f"a bare {type(obj).__name__}")
    if isinstance(obj, NetworkState):
        return _finish_network(obj, depth)
    if isinstance(obj, dict):
        return {k: _finish(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        items = [_finish(v, depth + 1) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    if obj is None or isinstance(obj, bool | int | float | complex | str | bytes | bytearray):
        return obj
    raise _Refused(f"an object of type {type(obj).__name__}")


def _finish_network(net: NetworkState, depth: int) -> NetworkState:
    if net.build_func_name:  # already finished (shared through the pickle's memo)
        return net
    state = net.state
    if state is None:
        raise _Refused("a Network without state")
    state = _finish(state, depth + 1)
    version = state.get("version")
    if version not in (2, 3, 4):
        raise _Refused(f"a Network state of version {version!r} (2 to 4 are known)")
    for key, kind in (("name", str), ("build_func_name", str), ("static_kwargs", dict),
                      ("variables", list | tuple)):
        if not isinstance(state.get(key), kind):
            raise _Refused(f"a Network state whose {key!r} is not a {kind}")
    comps = state.get("components") or {}
    if not isinstance(comps, dict) or not all(
            isinstance(c, NetworkState) for c in comps.values()):
        raise _Refused("a Network state whose components are not Networks")
    variables: dict[str, np.ndarray] = {}
    for item in state["variables"]:
        if (not isinstance(item, tuple | list) or len(item) != 2 or not isinstance(item[0], str)
                or not isinstance(item[1], np.ndarray | np.generic)):
            raise _Refused(f"a Network variable entry {str(item)[:60]!r}")
        variables[item[0]] = np.asarray(item[1])
    src = state.get("build_module_src")
    d = net.__dict__
    d.update(name=state["name"], version=version, static_kwargs=state["static_kwargs"],
             components=comps, variables=variables,
             build_module_src=src if isinstance(src, str) else "")
    d["build_func_name"] = state["build_func_name"]
    return net


def select_network(obj: Any, network: str = "Gs", source: str = "") -> NetworkState:
    """The network ``network`` names in what :func:`read_pickle` returned: ``Gs`` (default)
    or ``G`` of a ``(G, D, Gs)`` tuple (a lone network is both); ``mapping``/``synthesis``
    are components of ``Gs``, and are selected by the rebuilders, so this returns ``Gs``."""
    if network not in NETWORKS:
        raise UsageError(f"--network {network}: choose one of {', '.join(NETWORKS)}")
    if isinstance(obj, NetworkState):
        return obj
    if isinstance(obj, tuple | list) and obj and all(isinstance(n, NetworkState) for n in obj):
        if len(obj) == 3:
            return obj[0] if network == "G" else obj[2]
        if len(obj) == 1:
            return obj[0]
    raise InputError(f"{source}: holds no NVlabs network (a Network or a (G, D, Gs) tuple); "
                     f"found {type(obj).__name__}")


# ----------------------------------------------------------------------------- rebuilders
@dataclass(frozen=True)
class PickleOptions:
    """How to rebuild: which network, truncation, noise (see :func:`load_pickle`).

    ``trust_code=True`` RUNS THE PICKLE'S OWN CODE instead of rebuilding from the weights
    (:mod:`graphsurgery.ir.pickle_trusted`: a subprocess unpickles it with the real pickle
    module and freezes ``get_output_for``), with the NVlabs repository clone ``code_path``
    (its ``dnnlib``) on ``sys.path``, for at most ``code_timeout`` seconds; ``code_kwargs``
    are added to every network's ``static_kwargs`` while unpickling (``{"impl": "ref"}``).
    """

    network: str = "Gs"
    psi: float | None = None
    cutoff: int | None = None
    noise: str = "stored"
    seed: int = 0
    trust_code: bool = False
    code_path: str | None = None
    code_timeout: float = 600.0
    code_kwargs: Mapping[str, Any] = field(default_factory=dict)


#: ``build(net, options, source) -> BuiltModel-like`` (``graph_def``, ``inputs``, ``outputs``).
Rebuilder = Callable[[NetworkState, PickleOptions, str], Any]
_REBUILDERS: dict[str, Rebuilder] = {}
_LABELS: dict[str, str] = {}
_discovered = False


def register_rebuilder(build_func_names: Iterable[str], label: str = "",
                       ) -> Callable[[Rebuilder], Rebuilder]:
    """Decorator: ``fn`` rebuilds networks whose ``build_func_name`` is one of these.

    Real snapshots store the short name (``G_main``: the original ``Network`` keeps the
    object name without its module); a dotted name (``training.networks.G_main``) is only
    matched exactly. Where one short name covers several families (StyleGAN2's and
    StyleGAN2-ADA's ``G_main``), register a rebuilder for it that picks one from the data.
    ``label`` (``"ProGAN"``) is what error messages say the name stands for."""

    def deco(fn: Rebuilder) -> Rebuilder:
        for name in build_func_names:
            if name in _REBUILDERS and _REBUILDERS[name] is not fn:
                raise ValueError(f"a rebuilder for {name} is registered twice")
            _REBUILDERS[name] = fn
            if label:
                _LABELS[name] = label
        return fn

    return deco


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        ep.load()


def rebuilders() -> list[str]:
    """The build functions a pickle may name, in the short form real pickles store: a
    dotted name whose short form is registered too is left out."""
    _discover()
    short = {n for n in _REBUILDERS if "." not in n}
    return sorted(n for n in _REBUILDERS if n in short or n.rsplit(".", 1)[-1] not in short)


def supported() -> str:
    """``G_main (StyleGAN2 or StyleGAN2-ADA), G_paper (ProGAN), ...`` for error messages."""
    names = [f"{n} ({_LABELS[n]})" if n in _LABELS else n for n in rebuilders()]
    return ", ".join(names) or "none installed"


def load_pickle(path: str | os.PathLike, options: PickleOptions | None = None) -> Any:
    """Rebuild the generator an NVlabs pickle holds; returns the registered rebuilder's model
    (``graph_def``, ``inputs``, ``outputs``, ``meta``). Nothing in the file runs."""
    options = options or PickleOptions()
    if options.noise not in NOISE_MODES:
        raise UsageError(f"noise {options.noise!r}: choose one of {', '.join(NOISE_MODES)}")
    source = str(path)
    if options.trust_code:  # the user's explicit opt-in: the file's code runs, in a child
        from .pickle_trusted import freeze_with_code

        if options.network not in NETWORKS:
            raise UsageError(f"--network {options.network}: choose one of "
                             f"{', '.join(NETWORKS)}")

        return freeze_with_code(path, options)
    net = select_network(read_pickle(path), options.network, source)
    _discover()
    build = _REBUILDERS.get(net.build_func_name)
    if build is None:
        raise InputError(f"{source}: network {net.name!r} is built by {net.build_func_name}, "
                         f"which graphsurgery cannot rebuild (supported: {supported()}); "
                         f"{OPT_IN}")
    try:
        return build(net, options, source)
    except InputError as exc:  # unknown kwargs, mismatched variables: name the opt-in
        raise type(exc)(f"{exc}; {OPT_IN}") from None
