"""Pipeline groups (``core::canonicalize``) and how pipelines print."""

from __future__ import annotations

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.pipeline import Fixpoint, register_group

from .graphs import F32

# The cleanup fixpoint the stylegan preset spelled out three times before it had a name.
CLEANUP = ("fixpoint(max_iter=10){core::fold_constants,core::simplify_arith,"
           "core::fold_scalings,core::cse,core::dce}")


def _foldable() -> gs.Graph:
    """x * (2 * 3) * 1 + (zero * x), with a dead Relu and a duplicate Mul."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [1, 4]).output()
    two = rw.const(np.float32(2), name="two")
    three = rw.const(np.float32(3), name="three")
    k = rw.add_node("Mul", [two, three], {"T": F32}, name="k")
    a = rw.add_node("Mul", [x, k], {"T": F32}, name="a")
    one = rw.const(np.float32(1), name="one")
    b = rw.add_node("Mul", [a, one], {"T": F32}, name="b")
    a2 = rw.add_node("Mul", [x, k], {"T": F32}, name="a2")
    y = rw.add_node("AddV2", [b, a2], {"T": F32}, name="y")
    rw.add_node("Relu", [x], {"T": F32}, name="dead")
    rw.set_graph_inputs([rw.graph.node("x").output()])
    rw.set_outputs([y])
    return g


def test_canonicalize_is_the_cleanup_fixpoint():
    p = gs.Pipeline.parse("core::dce,core::canonicalize")
    (step, group) = p.items
    assert isinstance(group, Fixpoint) and group.group == "core::canonicalize"
    assert p.text() == "core::dce,core::canonicalize"
    assert p.text(expand=True) == f"core::dce,{CLEANUP}"
    assert gs.Pipeline.parse(p.text(expand=True)).pass_ids() == p.pass_ids()
    # edited, it is no longer the group: its text says what it is
    p.set_options("core::fold_constants", max_bytes=1024)
    assert "core::canonicalize" not in p.text() and "max_bytes=1024" in p.text()
    assert gs.Pipeline.parse(p.text()).text() == p.text()


def test_canonicalize_runs_exactly_the_passes_it_replaces():
    named = gs.Pipeline.parse("core::canonicalize").run(_foldable())
    spelled = gs.Pipeline.parse(CLEANUP).run(_foldable())
    runs = [[(r.pass_id, r.iteration, r.changed, r.ops_after) for r in res.records]
            for res in (named, spelled)]
    assert runs[0] == runs[1] and len(runs[0]) >= 10  # two rounds at least
    assert "dead" not in named.graph and named.graph.op_counts()["Mul"] == 1


def test_stylegan_preset_runs_the_same_passes_as_before():
    preset = gs.Pipeline.preset("stylegan-to-tflite")
    text = preset.text()
    assert text.count("core::canonicalize") == 3 and "fixpoint" not in text
    old = gs.Pipeline.parse(text.replace("core::canonicalize", CLEANUP))  # the old spelling
    assert old.text(expand=True) == preset.text(expand=True)
    assert old.pass_ids() == preset.pass_ids()
    assert [type(i).__name__ for i in old.items] == [type(i).__name__ for i in preset.items]


def test_group_errors_are_one_line():
    with pytest.raises(gs.UsageError, match="group core::canonicalize takes no options"):
        gs.Pipeline.parse("core::canonicalize(max_iter=3)")
    with pytest.raises(gs.UsageError, match="cannot be nested in another fixpoint"):
        gs.Pipeline.parse("fixpoint{core::canonicalize}")
    with pytest.raises(gs.UsageError, match="registered twice"):
        register_group("core::canonicalize", "core::dce", "again")
    with pytest.raises(gs.UsageError, match="must look like 'namespace::name'"):
        register_group("canonicalize", "core::dce", "no namespace")


def test_pipeline_prints_one_pass_per_line_and_parses_back():
    p = gs.Pipeline.parse(
        "core::strip_training,core::dce(keep=x),fixpoint(max_iter=3){core::cse,core::dce},"
        "core::canonicalize")
    lines = str(p).splitlines()
    assert lines == [
        "core::strip_training,",
        "core::dce(keep=x),",
        "fixpoint(max_iter=3){",
        "  core::cse,",
        "  core::dce",
        "},",
        "core::canonicalize",
    ]
    assert gs.Pipeline.parse(str(p)).text() == p.text()
    assert p.copy().text() == p.text()
    r = repr(p)
    assert r.startswith('Pipeline.parse("""') and "\n    core::dce(keep=x),\n" in r
    assert eval(r, {"Pipeline": gs.Pipeline}).text() == p.text()
    assert repr(gs.Pipeline()) == "Pipeline()"


def test_pipelines_listing_prints_one_pass_per_line_and_the_groups(capsys):
    from graphsurgery.cli import main

    assert main(["pipelines", "-v"]) == 0
    out = capsys.readouterr().out
    assert "\n" + " " * 23 + "core::canonicalize,\n" in out
    assert "core::canonicalize     (group) fold constants" in out
    assert CLEANUP in out  # what the group stands for
