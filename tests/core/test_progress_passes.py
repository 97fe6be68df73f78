"""The pass counter of the progress line keeps its total through fixpoint rounds."""

from __future__ import annotations

import io
import re

import graphsurgery as gs
from graphsurgery.progress import Progress

from .graphs import chain


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _shown(stream: _Tty) -> list[str]:
    """Every ``passes [...] ...`` status the line showed, in order, without repeats."""
    seen: list[str] = []
    for m in re.finditer(r"passes \[[^\]]*\] [\w:]+(?: \(round \d+\))?", stream.getvalue()):
        if not seen or seen[-1] != m.group(0):
            seen.append(m.group(0))
    return seen


def test_fixpoint_rounds_keep_the_total(tmp_path):
    # Round 1 removes the identities and the unused Relu, round 2 changes nothing: 2 x 2
    # passes in the group, then core::cse, 5 passes run for 3 planned.
    pipeline = "fixpoint(max_iter=4){core::remove_identity,core::dce},core::cse"
    stream = _Tty()
    with Progress(True, stream) as progress:
        result = gs.convert(chain(), pipeline, target=None, outdir=tmp_path / "o",
                            progress=progress)
    assert [r.pass_id for r in result.records] == [
        "core::remove_identity", "core::dce", "core::remove_identity", "core::dce",
        "core::cse"]
    assert [r.changed for r in result.records[:4]] == [True, True, False, False]
    assert _shown(stream) == [
        "passes [1/3] core::remove_identity",
        "passes [2/3] core::dce",
        "passes [1/3] core::remove_identity (round 2)",
        "passes [2/3] core::dce (round 2)",
        "passes [3/3] core::cse",
    ]


def test_a_fixpoint_that_runs_out_of_rounds_then_the_rest(tmp_path):
    """max_iter=1: one round even though it changed the graph, then the next item (which
    starts with the same pass: the counter follows the plan, not the pass names)."""
    pipeline = "fixpoint(max_iter=1){core::remove_identity},core::remove_identity,core::dce"
    stream = _Tty()
    with Progress(True, stream) as progress:
        gs.convert(chain(), pipeline, target=None, outdir=tmp_path / "o", progress=progress)
    assert _shown(stream) == [
        "passes [1/3] core::remove_identity",
        "passes [2/3] core::remove_identity",
        "passes [3/3] core::dce",
    ]
