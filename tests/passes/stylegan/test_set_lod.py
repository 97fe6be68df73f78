"""stylegan::set_lod: the v1 progressive-growing level, folded for recursive and linear graphs."""

from __future__ import annotations

import graphsurgery.passes.stylegan.set_lod  # noqa: F401
import graphsurgery.rules.arith  # noqa: F401
import numpy as np
import pytest
from graphsurgery.passes.stylegan.set_lod import lod_constants

from graphsurgery import zoo
from graphsurgery.errors import UsageError
from graphsurgery.rewriter import Rewriter
from graphsurgery.testing import assert_equivalent, run_pass

from .prep import PREP, prepared

PASS = "stylegan::set_lod"
# what the pipeline runs after set_lod: the generic preparation, then simplification
AFTER = (*PREP, "core::simplify_arith", "core::fold_constants", "core::dce")
OPS = ("Switch", "Merge", "Minimum", "Conv2D", "Sub", "AddV2")


def reference_at(name: str, lod: float):  # noqa: ANN201
    """The zoo graph with its lod constants set by hand: what the original computes at lod."""
    g = zoo.load(name)
    rw = Rewriter(g, "test::lod")
    for node in ("lod", "G_synthesis/lod"):
        rw.set_attr(node, "value", np.array(lod, dtype=np.float32))
    return g


def counts(g, ops=OPS):  # noqa: ANN001, ANN201
    c = g.op_counts()
    return {op: c.get(op, 0) for op in ops}


@pytest.mark.parametrize(
    ("name", "lod", "before", "after"),
    [
        # recursive: nested tf.cond on Greater/Less(lod, k)
        ("sg1-tiny", 0.0, {"Switch": 97, "Merge": 5, "Minimum": 0, "Conv2D": 16},
         {"Switch": 0, "Merge": 0, "Minimum": 0, "Conv2D": 8, "Sub": 9, "AddV2": 54}),
        ("sg1-tiny", 1.0, {"Switch": 97, "Merge": 5, "Minimum": 0, "Conv2D": 16},
         {"Switch": 0, "Merge": 0, "Minimum": 0, "Conv2D": 6, "Sub": 7, "AddV2": 42}),
        # linear: lerp_clip(img, upscaled, lod - k) at every resolution
        ("sg1-tiny-linear", 0.0, {"Switch": 0, "Merge": 0, "Minimum": 3, "Conv2D": 11},
         {"Switch": 0, "Merge": 0, "Minimum": 0, "Conv2D": 8, "Sub": 9, "AddV2": 54}),
        ("sg1-tiny-linear", 1.0, {"Switch": 0, "Merge": 0, "Minimum": 3, "Conv2D": 11},
         {"Switch": 0, "Merge": 0, "Minimum": 0, "Conv2D": 6, "Sub": 7, "AddV2": 42}),
    ],
)
def test_lod_folds_to_the_reference_at_that_level(name, lod, before, after):  # noqa: ANN001
    g = zoo.load(name)
    assert {op: n for op, n in counts(g).items() if op in before} == before
    record = run_pass(g, PASS, lod=lod)
    assert record.changed == (lod != 0.0)  # the zoo graphs are frozen at lod 0
    assert sorted(n.name for n in lod_constants(g)) == ["G_synthesis/lod", "lod"]
    assert all(float(g.const_value(n)) == lod for n in ("lod", "G_synthesis/lod"))
    for pass_id in AFTER:
        run_pass(g, pass_id)
    assert counts(g) == after
    # no progressive-growing remnants: no blend, no clip, no control flow
    assert not [n.name for n in g.nodes() if "/Grow_lod" in n.name]
    assert_equivalent(reference_at(name, lod), g)


def test_fractional_lod_keeps_the_blend():
    g = zoo.load("sg1-tiny-linear")
    run_pass(g, PASS, lod=0.5)
    for pass_id in AFTER:
        run_pass(g, pass_id)
    blend = [n for n in g.nodes("AddV2") if "/Grow_lod0/" in n.name]
    assert len(blend) == 1  # a + (b - a) * 0.5 stays; the clip is folded
    assert counts(g, ("Minimum", "Maximum", "Switch")) == {"Minimum": 0, "Maximum": 11,
                                                            "Switch": 0}
    assert_equivalent(reference_at("sg1-tiny-linear", 0.5), g)


def test_stylegan2_and_prepared_graphs_are_left_alone():
    for name in ("sg2-tiny", "sg1-tiny"):
        _, g = prepared(name)  # v2 has no lod; a prepared v1 graph has it folded already
        before = g.op_counts()
        record = run_pass(g, PASS, lod=2.0)
        assert not record.changed and g.op_counts() == before


def test_changing_a_frozen_lod_warns(caplog):
    """A graph frozen at lod 1 set to the default lod 0 computes a different image than it
    did: that is said by default, with the option that keeps the graph's output."""
    g = reference_at("sg1-tiny", 1.0)
    with caplog.at_level("WARNING", logger="graphsurgery"):
        assert run_pass(g, PASS).changed
    (rec,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "frozen at lod 1" in rec.getMessage() and "lod=1" in rec.getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="graphsurgery"):
        assert not run_pass(zoo.load("sg1-tiny"), PASS).changed  # frozen at 0: nothing said
    assert not caplog.records


def test_negative_lod_is_a_usage_error():
    g = zoo.load("sg1-tiny")
    with pytest.raises(UsageError, match="lod must be"):
        run_pass(g, PASS, lod=-1.0)
