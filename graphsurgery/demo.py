"""A small built-in graph with the problems the generic pipeline fixes.

It is built with a Rewriter (no TensorFlow needed) and holds, in miniature, what frozen
research graphs carry: a training-only ``Assign`` that breaks import, a ``Switch``/``Merge``
pair with a constant predicate, ``Identity``/``IdentityN`` chains, a weight rescaled at
run time (``Mul(Const, Const)``), a bias reshaped at run time, a duplicated branch and an
unused branch. ``graphsurgery demo`` runs the ``generic`` pipeline over it and converts the
result to TFLite.

Before (abridged)::

    x -> Conv2D(filter = w * coef) -> IdentityN -> BiasAdd(reshape(b)) -> Switch(pred=true)
      -> Relu -> Merge -> Add(Relu, Relu') -> Identity -> y        Assign(lod, 0)  unused

After::

    x -> Conv2D(filter) -> BiasAdd(b) -> Relu -> Add -> y
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np

from .ir.attrs import Shape
from .ir.dtypes import DType
from .ir.graph import Graph
from .rewriter import Rewriter

if TYPE_CHECKING:
    from .driver import Result
    from .pipeline import PassRecord

F32 = DType.float32


def build_demo_graph(seed: int = 0) -> Graph:
    """The demo graph: input ``x`` [1, 16, 16, 3] float32, output ``y`` [1, 16, 16, 8]."""
    rng = np.random.default_rng(seed)
    g = Graph([], inputs=[], outputs=[], source="<demo>")
    rw = Rewriter(g, "demo::build")
    x = rw.add_node("Placeholder", [], {"dtype": F32, "shape": Shape((1, 16, 16, 3))}, name="x")

    # Training leftover: the progressive-growing level, assigned at run time.
    lod = rw.const(np.float32(0.0), name="lod")
    lod_in = rw.const(np.float32(0.0), name="lod_in")
    rw.add_node("Assign", [lod, lod_in], {"T": F32, "use_locking": True,
                                          "validate_shape": True}, name="lod/Assign")

    # Equalised learning rate: the stored weight is rescaled on every inference.
    w = rw.const(rng.standard_normal((3, 3, 3, 8)).astype(np.float32), name="conv/weight")
    coef = rw.const(np.float32(1.0 / np.sqrt(27.0)), name="conv/coef")
    w_scaled = rw.add_node("Mul", [w, coef], {"T": F32}, name="conv/mul")
    conv = rw.add_node(
        "Conv2D", [x, w_scaled],
        {"T": F32, "strides": [1, 1, 1, 1], "padding": "SAME", "data_format": "NHWC"},
        name="conv/Conv2D",
    )
    idn = rw.add_node("IdentityN", [conv], {"T": [F32]}, name="conv/IdentityN")
    b = rw.const(rng.standard_normal(8).astype(np.float32) * 0.1, name="conv/bias")
    b_shape = rw.const(np.array([8], np.int32), name="conv/bias_shape")
    b_r = rw.add_node("Reshape", [b, b_shape], {"T": F32, "Tshape": DType.int32},
                      name="conv/bias_reshape")
    biased = rw.add_node("BiasAdd", [idn, b_r], {"T": F32, "data_format": "NHWC"},
                         name="conv/BiasAdd")

    # A frozen tf.cond: the predicate is a constant comparison.
    k = rw.const(np.float32(0.5), name="cond/k")
    pred = rw.add_node("Less", [lod, k], {"T": F32}, name="cond/pred")
    sw = rw.add_node("Switch", [biased, pred], {"T": F32}, name="cond/Switch")
    relu_t = rw.add_node("Relu", [sw.output(1)], {"T": F32}, name="cond/true/Relu")
    tanh_f = rw.add_node("Tanh", [sw.output(0)], {"T": F32}, name="cond/false/Tanh")
    merge = rw.add_node("Merge", [tanh_f, relu_t], {"T": F32, "N": 2}, name="cond/Merge")

    # A duplicated branch (CSE) and identity chains.
    id1 = rw.add_node("Identity", [merge], {"T": F32}, name="branch_a/Identity")
    r1 = rw.add_node("Relu", [id1], {"T": F32}, name="branch_a/Relu")
    r2 = rw.add_node("Relu", [id1], {"T": F32}, name="branch_b/Relu")
    added = rw.add_node("AddV2", [r1, r2], {"T": F32}, name="sum")
    half = rw.const(np.float32(0.5), name="half")
    two = rw.const(np.float32(2.0), name="two")
    s1 = rw.add_node("Mul", [added, half], {"T": F32}, name="scale/a")
    s2 = rw.add_node("Mul", [s1, two], {"T": F32}, name="scale/b")

    # An unused branch.
    rw.add_node("Sigmoid", [conv], {"T": F32}, name="unused/Sigmoid")
    y = rw.add_node("Identity", [s2], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    g.provenance.clear()
    return g


def describe(result: Result) -> str:
    """What ``graphsurgery demo`` prints about a :class:`~graphsurgery.driver.Result`: the
    passes that changed the graph, the audit, the fidelity and the files written."""
    changed = [r for r in result.records if r.changed]
    lines = [f"  {len(result.records)} passes ran, {len(changed)} changed the graph:"]
    lines += [f"    {r.pass_id:32s} {_what_changed(r)}" for r in changed]
    if result.audit is not None:
        a = result.audit.to_json()
        verdict = "clean" if a.get("clean") else "NOT clean: " + "; ".join(a["violations"])
        name = result.artefacts[result.target].name if result.target else "artefact"
        lines.append(f"  {name} ({a.get('size', 0) / 1e3:.0f} kB): {verdict}")
        ops = a.get("ops")
        if isinstance(ops, dict) and ops:
            text = ", ".join(f"{op}\xa0{n}" for op, n in ops.items())  # never split
            lines += [line.replace("\xa0", " ") for line in textwrap.wrap(
                f"{sum(ops.values())} ops: {text}", 96, initial_indent="    ",
                subsequent_indent="      ")]
    for key, val in (result.fidelity or {}).items():
        psnr = val.get("psnr")
        psnr_text = "inf" if psnr is None or psnr == float("inf") else f"{psnr:.1f} dB"
        if "max_abs" in val:
            lines.append(f"  verified {key}: max abs error {val['max_abs']:.3g}, PSNR {psnr_text}")
        else:
            lines.append(f"  verified {key}: {val.get('error')}")
    out = result.outdir
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    lines.append(f"  written to {out}/: {', '.join(names)}")
    if "report" in result.artefacts:
        lines.append(f"  open {result.artefacts['report']} to see what every pass changed")
    return "\n".join(lines)


def _what_changed(record: PassRecord) -> str:
    """The largest op-count changes of a pass, or what it changed when no count moved."""
    deltas = record.deltas()[:3]
    if deltas:
        return "; ".join(deltas)
    kinds = sorted(set(record.changes.values()))
    n = len(record.changes)
    return f"{n} node(s) {'/'.join(kinds) or 'changed'}, op counts unchanged"
