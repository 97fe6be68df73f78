"""Regenerate graphsurgery/ir/opdefs.json from the installed TensorFlow's op registry.

The core reads op facts (output arity, input arity, statefulness) from that file so that
loading, verifying and rewriting never import TensorFlow. Run after upgrading TensorFlow:

    .venv/bin/python tools/gen_opdefs.py

The side-effect table (``opdefs.category``/``side_effect``) is derived from these facts
(``stateful``, resource and ref arguments) and the name lists in ``opdefs.py``; after an
upgrade, review the ops ``category()`` files under ``stateful`` for new ones that touch the
host (``tests/test_side_effects.py`` pins the important ones).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "graphsurgery" / "ir" / "opdefs.json"


def _args(args) -> list:  # noqa: ANN001
    out = []
    for a in args:
        if a.number_attr:
            out.append(["n", a.number_attr])
        elif a.type_list_attr:
            out.append(["list", a.type_list_attr])
        else:
            out.append(["one", a.type_attr or int(a.type), bool(a.is_ref)])
    return out


def collect() -> dict:
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session as c_api

    buf = c_api.TF_GetAllOpList()
    try:
        op_list = op_def_pb2.OpList.FromString(c_api.TF_GetBuffer(buf))
    finally:
        c_api.TF_DeleteBuffer(buf)
    ops = {}
    for op in sorted(op_list.op, key=lambda o: o.name):
        name = op.name
        ops[name] = {
            "in": _args(op.input_arg),
            "out": _args(op.output_arg),
            "stateful": bool(op.is_stateful),
        }
    return ops


def main() -> None:
    import tensorflow as tf

    data = {"tensorflow": tf.__version__, "ops": collect()}
    OUT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(data['ops'])} ops)")


if __name__ == "__main__":
    main()
