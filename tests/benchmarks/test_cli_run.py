"""benchmarks.cli_run: the whole command, split by step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import graphsurgery as gs

ROOT = Path(__file__).resolve().parents[2]


def test_cli_run_splits_the_run_by_step(tmp_path):
    from tests.core.graphs import chain

    model = gs.save(chain(), tmp_path / "model.pb")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli_run", "run", str(model), "-p", "core::dce",
         "--verify", "--report", "--inputs", "x", "--outputs", "y", "-o", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    assert rep["rc"] == 0, rep
    steps = rep["steps"]
    assert {"load", "passes", "convert", "audit", "verify", "report"} <= set(steps)
    assert set(steps["background"]) == {"reference_run"}  # the .tflite checks the GraphDef
    assert sum(v for k, v in steps.items() if k != "background") <= rep["wall_s"]
    assert "in the background: reference run" in rep["steps_line"]
    assert 0 < rep["main_thread_cpu_s"] <= rep["cpu_s"]  # CPU seconds: main thread, all
