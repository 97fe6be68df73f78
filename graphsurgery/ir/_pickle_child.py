"""The child process of ``--trust-pickle-code``: it RUNS an NVlabs pickle's own code.

Never imported by graphsurgery: :mod:`graphsurgery.ir.pickle_trusted` runs this file's text
with ``python -c`` in a fresh interpreter, in a temporary folder of its own, passing one JSON
request (``pickle``, ``code_path``, ``network``, ``psi``, ``cutoff``, ``noise``, ``seed``,
``static_kwargs``, ``out``). What it does, in the original NVlabs way:

1. puts ``code_path`` (the user's clone of the NVlabs repository) first on ``sys.path`` and
   stops with "no dnnlib" when ``dnnlib`` cannot be found there;
2. imports TensorFlow, disables v2 behaviour and makes ``import tensorflow`` give
   ``tf.compat.v1`` (the NVlabs code is TF 1 code; ``tensorflow.contrib``, which its
   ``tfutil`` imports, is an empty module), then ``dnnlib.tflib.init_tf()``;
3. ``pickle.load`` with the real pickle module: ``Network.__setstate__`` executes the
   file's ``build_module_src`` (this is the point of the opt-in); ``static_kwargs`` of the
   request are added to every network's state first, through ``dnnlib``'s import handlers;
4. picks ``Gs``/``G`` of a ``(G, D, Gs)`` tuple, or a component, feeds placeholders named
   after the network's inputs to ``get_output_for(..., is_validation=True,
   randomize_noise=..., truncation_psi_val=..., truncation_cutoff_val=...)``, names the
   outputs after the network's, freezes with ``convert_variables_to_constants`` and writes
   ``frozen.pb`` and ``meta.json`` into ``out``.

Any exception ends it with exit 1 and its last traceback line (``Type: message``) in
``out/error.txt``; the parent reports that line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
import types


def _fail(out: str, message: str) -> None:
    with open(os.path.join(out, "error.txt"), "w", encoding="utf-8") as fh:
        fh.write((message.strip().splitlines() or ["unknown error"])[0])
    sys.exit(1)


def _last_line(exc: BaseException) -> str:
    """The traceback's last line, ``Type: message`` (its first line when it has several)."""
    lines = [ln for ln in "".join(traceback.format_exception_only(exc)).splitlines()
             if ln.strip()]
    name = type(exc).__name__
    for line in lines:
        head = line.split(":", 1)[0].strip()
        if head == name or head.endswith("." + name):
            return line.strip()
    return lines[-1].strip() if lines else name


def _default(net: object, key: str) -> object:
    """``key`` as the network's build function would see it: its static kwarg, else the
    function's own default, else None."""
    import inspect

    static = getattr(net, "static_kwargs", None) or {}
    if key in static:
        return static[key]
    try:
        param = inspect.signature(getattr(net, "_build_func", None)).parameters.get(key)
    except (TypeError, ValueError):
        return None
    return None if param is None or param.default is param.empty else param.default


def _accepted(net: object, kwargs: dict) -> dict:
    """The kwargs the build function takes (all of them when it takes ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(getattr(net, "_build_func", None)).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _select(obj: object, network: str) -> object:
    net = obj
    if isinstance(obj, tuple | list):
        if len(obj) == 3:
            net = obj[0] if network == "G" else obj[2]
        elif len(obj) == 1:
            net = obj[0]
        else:
            raise ValueError(f"holds a {type(obj).__name__} of {len(obj)} items, not a Network "
                             "or a (G, D, Gs) tuple")
    if network in ("mapping", "synthesis"):
        net = getattr(net, "components", {})[network]
    if not hasattr(net, "get_output_for"):
        raise ValueError(f"holds a {type(net).__name__}, not a dnnlib Network")
    return net


def main(request: dict) -> None:
    out = request["out"]
    os.chdir(out)
    if request["code_path"]:
        sys.path.insert(0, request["code_path"])
    import importlib.util

    if importlib.util.find_spec("dnnlib") is None:
        where = request["code_path"] or "sys.path"
        _fail(out, f"no dnnlib to import in {where}: give --pickle-code-path the folder of "
                   "your clone of the NVlabs repository (the one holding dnnlib/)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    tf = tensorflow.compat.v1
    tf.disable_v2_behavior()
    sys.modules["tensorflow"] = tf  # the NVlabs code's `import tensorflow as tf`: TF 1's API
    # dnnlib's tfutil does `import tensorflow.contrib` (TF 1.x only); inference never uses it
    contrib = types.ModuleType("tensorflow.contrib")
    sys.modules.setdefault("tensorflow.contrib", contrib)
    with contextlib.suppress(AttributeError, TypeError):
        tf.contrib = sys.modules["tensorflow.contrib"]
    import dnnlib.tflib as tflib

    if request["static_kwargs"]:  # added to every network's state while unpickling
        import dnnlib.tflib.network as network

        handlers = getattr(network, "_import_handlers", None)
        if not isinstance(handlers, list):
            raise RuntimeError("this dnnlib has no import handlers (dnnlib.tflib.network."
                               "_import_handlers): --pickle-code-kwarg cannot be applied")

        def add_kwargs(state: dict) -> dict:
            state["static_kwargs"] = {**state.get("static_kwargs", {}),
                                      **request["static_kwargs"]}
            return state

        handlers.append(add_kwargs)
    if hasattr(tflib, "init_tf"):
        tflib.init_tf()
    if tf.get_default_session() is None:
        tf.Session().__enter__()
    tf.set_random_seed(request["seed"])
    import pickle  # the real one: this runs the file's code, as the user asked

    with open(request["pickle"], "rb") as fh:
        net = _select(pickle.load(fh, encoding="latin1"), request["network"])
    psi, cutoff = request["psi"], request["cutoff"]
    if psi is not None and cutoff is None:
        cutoff = _default(net, "truncation_cutoff")
    kwargs = {"is_validation": True, "randomize_noise": request["noise"] == "random"}
    if psi is not None:
        kwargs.update(truncation_psi=psi, truncation_psi_val=psi)
    if cutoff is not None:
        kwargs.update(truncation_cutoff=cutoff, truncation_cutoff_val=cutoff)
    names, shapes = list(net.input_names), list(net.input_shapes)
    placeholders = [tf.placeholder(tf.float32, shape=s, name=n) for n, s in zip(names, shapes)]
    outs = net.get_output_for(*placeholders, **_accepted(net, kwargs))
    outs = list(outs) if isinstance(outs, tuple | list) else [outs]
    out_names = list(getattr(net, "output_names", None) or [])
    if len(out_names) != len(outs):
        out_names = [f"output_{i}" for i in range(len(outs))]
    finals = [tf.identity(t, name=n) for t, n in zip(outs, out_names)]
    sess = tf.get_default_session()
    frozen = tf.graph_util.convert_variables_to_constants(
        sess, sess.graph.as_graph_def(), [t.op.name for t in finals])
    kept = {n.name for n in frozen.node}
    with open(os.path.join(out, "frozen.pb"), "wb") as fh:
        fh.write(frozen.SerializeToString())
    static = getattr(net, "static_kwargs", None) or {}
    meta = {
        "inputs": [t.name for t in placeholders if t.op.name in kept],
        "outputs": [t.name for t in finals],
        "pickle_network": str(getattr(net, "name", request["network"])),
        "build_func_name": str(getattr(net, "_build_func_name", None)
                               or getattr(net, "build_func_name", "")),
        "resolution": static.get("resolution") if isinstance(static.get("resolution"), int)
        else None,
        "truncation_psi": psi, "truncation_cutoff": cutoff,
    }
    with open(os.path.join(out, "meta.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh)


if __name__ == "__main__":
    _request = json.loads(sys.argv[1])
    try:
        main(_request)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure of the file's code: one line
        _fail(_request["out"], _last_line(exc))
