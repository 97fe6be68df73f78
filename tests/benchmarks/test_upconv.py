"""benchmarks/upconv.py: one tiny up-sampling layer in every form of
tflite::polyphase_transpose_conv gives the same result; the timing harness runs."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("cpu", [False, True])
def test_one_tiny_layer_runs_and_matches_in_every_form(cpu):
    pytest.importorskip("ai_edge_litert")
    from benchmarks.upconv import FORMS, bench

    rep = bench(6, 4, 3, FORMS, threads=1, runs=2, cooldown=0.0, cpu=cpu)
    assert rep["layer"] == "6x4x3"
    for form in FORMS:
        assert rep[form]["max_abs_diff"] < 1e-4
        assert rep[form]["ms"] >= 0 and rep[form]["speedup"] > 0


def test_cpu_time_needs_one_thread():
    from benchmarks.upconv import bench

    with pytest.raises(ValueError, match="one thread"):
        bench(6, 4, 3, ["phases"], threads=2, runs=1, cooldown=0.0, cpu=True)
