"""benchmarks/winograd.py: one layer converted to LiteRT directly and after
core::winograd_conv3x3 gives the same result; the timing harness runs."""

from __future__ import annotations


def test_one_tiny_layer_runs_and_matches():
    from benchmarks.winograd import bench

    rep = bench(6, 4, threads=1, runs=2, cooldown=0.0)
    assert rep["layer"] == "6x4"
    assert rep["max_abs_diff"] < 1e-4
    assert rep["direct_ms"] > 0 and rep["winograd_ms"] > 0 and rep["speedup"] > 0
