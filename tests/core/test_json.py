"""Every JSON graphsurgery writes parses with a strict parser: no Infinity, no NaN.

``strict_loads`` is ``json.loads`` with ``parse_constant`` raising, which is what strict
parsers (JavaScript's ``JSON.parse``, Go, jq) do with ``Infinity``/``NaN``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.driver import dump_json, strict_json

from .graphs import chain


def _reject(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def strict_loads(text: str):
    return json.loads(text, parse_constant=_reject)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_strict_loads_rejects_what_python_writes_by_default():
    with pytest.raises(ValueError, match="Infinity"):
        strict_loads(json.dumps({"psnr": float("inf")}))


def test_non_finite_floats_become_null_with_a_note():
    obj = {"psnr": float("inf"), "ssim": np.float32(1.0), "x": [float("nan"), 1],
           "low": -math.inf, "nan": np.float64("nan"), "n": np.int64(3)}
    out = strict_loads(dump_json(obj))
    assert out["psnr"] is None and out["psnr_note"] == "identical outputs (infinite PSNR)"
    assert out["ssim"] == 1.0 and out["n"] == 3
    assert out["x"] == [None, 1]
    assert out["low"] is None and out["low_note"] == "-infinity"
    assert out["nan"] is None and out["nan_note"] == "not a number (NaN)"
    assert strict_json({"a": 1.5}) == {"a": 1.5}


def test_summary_of_identical_outputs_is_strict_json(capsys, tmp_path):
    """A pipeline that changes no value: the comparison's PSNR is infinite."""
    model = gs.save(chain(), tmp_path / "model.pb")
    code, out, err = run_cli(capsys, "run", model, "-p", "core::remove_identity",
                             "-o", tmp_path / "out", "--target", "none", "--verify")
    assert code == 0, err
    text = (tmp_path / "out" / "summary.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    summary = strict_loads(text)
    cmp = summary["verification"]["graphdef:y:0"]
    assert cmp["psnr"] is None and "identical" in cmp["psnr_note"]
    assert cmp["max_abs"] == 0.0
    assert "PSNR inf (identical)" in out  # the final lines say it too


def test_result_to_json_is_strict(tmp_path):
    result = gs.convert(chain(), "core::remove_identity", target=None, outdir=tmp_path / "o",
                        verify=True)
    strict_loads(json.dumps(result.to_json(), allow_nan=False))


def test_list_commands_print_strict_json(capsys):
    code, out, _ = run_cli(capsys, "passes", "--json")
    assert code == 0
    passes = {p["id"]: p for p in strict_loads(out)}
    assert passes["core::fold_constants"]["options"][0]["name"] == "max_bytes"
    assert "``" not in passes["core::fold_scalings"]["summary"]
    code, out, _ = run_cli(capsys, "pipelines", "--json")
    assert code == 0
    data = strict_loads(out)
    assert {"generic", "stylegan-to-tflite"} <= {p["name"] for p in data["presets"]}
    assert all("::" in p["passes"] for p in data["presets"])


def test_check_prints_strict_json(capsys, tmp_path):
    model = gs.save(chain(), tmp_path / "model.pb")
    code, out, err = run_cli(capsys, "check", model, "--json")
    assert code == 0, err
    data = strict_loads(out)
    assert data["clean"] is True and data["errors"] == 0 and data["nodes"] == 7
    assert data["parameters"] == 4  # the Mul's constant
    assert data["flops"]["total"] == 0
