"""examples/04_pickle_to_phone runs: an NVlabs snapshot .pkl -> gs.convert -> clean .tflite."""

import importlib.util
import re
from pathlib import Path

SCRIPT = (Path(__file__).resolve().parents[2] / "examples" / "04_pickle_to_phone"
          / "pickle_to_tflite.py")


def test_pickle_to_phone_example(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("pickle_to_tflite_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(None, str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    pkl = tmp_path / "sg2-tiny.pkl"
    assert pkl.is_file() and pkl.read_bytes()[:1] == b"\x80"  # a pickle, written beside OUTDIR
    assert f"{pkl}: read as data, Gs rebuilt from its weights" in out
    tflite = tmp_path / "out" / "model.tflite"
    assert tflite.is_file()
    assert re.search(rf"{re.escape(str(tflite))}: \d+ kB, audit clean", out), out
    psnr = float(re.search(r"tflite:images_out:0: PSNR ([\d.]+) dB", out).group(1))
    assert psnr >= 60

    # A snapshot given on the command line is used as it is (and never written to).
    before = pkl.read_bytes()
    assert module.main(str(pkl), str(tmp_path / "again")) == 0
    assert "written from the zoo" not in capsys.readouterr().out
    assert pkl.read_bytes() == before and (tmp_path / "again" / "model.tflite").is_file()
