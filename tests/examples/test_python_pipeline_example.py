"""examples/02_python_pipeline runs: an edited preset from Python, then gs.convert."""

import importlib.util
from pathlib import Path

SCRIPT = (Path(__file__).resolve().parents[2] / "examples" / "02_python_pipeline"
          / "run_pipeline.py")


def test_python_pipeline_example(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("run_pipeline_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert out.startswith("12 passes, nodes 29 -> 9")
    assert "core::fold_switch_merge" in out and "Less -1 (1 -> 0)" in out
    assert "model.tflite" in out and ": clean" in out
    assert (tmp_path / "out" / "model.tflite").is_file()
