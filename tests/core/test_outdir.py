"""OUTDIR safety: never lose a user's files, never leave litter, one writer, the user's umask."""

import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import graphsurgery as gs
from graphsurgery.cli import main

from .graphs import chain

MARKER = ".graphsurgery-output"


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def tree(path):
    """{relative path: sha256 or 'dir'} of everything under ``path``."""
    out = {}
    for base, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(base, d), path)] = "dir"
        for f in files:
            p = os.path.join(base, f)
            out[os.path.relpath(p, path)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def siblings(parent, name="out"):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def model(tmp_path):
    return gs.save(chain(), tmp_path / "model.pb")


def run(capsys, model, out, *extra):
    return run_cli(capsys, "run", model, "-p", "core::remove_identity", "-o", out,
                   "--target", "none", *extra)


# ---------------------------------------------------------------------- what may be replaced
def test_foreign_outdir_with_summary_is_refused_and_kept(capsys, tmp_path, model):
    out = tmp_path / "out"
    (out / "reproducer").mkdir(parents=True)
    (out / "summary.json").write_text("{}")
    (out / "thesis.tex").write_text("three years of work")
    before = tree(out)
    code, _, err = run(capsys, model, out)
    line = one_line(err)
    assert code == 2 and str(out) in line and "not written by graphsurgery" in line
    assert tree(out) == before and siblings(tmp_path) == []


def test_own_outdir_is_replaced(capsys, tmp_path, model):
    out = tmp_path / "out"
    code, _, err = run(capsys, model, out, "--dump-changed")
    assert code == 0, err
    assert (out / "dumps").is_dir()
    marker = json.loads((out / MARKER).read_text())
    assert sorted(marker["files"]) == ["dumps", "model.pb", "summary.json"]
    code, _, err = run(capsys, model, out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "model.pb", "summary.json"]
    assert siblings(tmp_path) == []


def test_own_outdir_with_a_user_file_added_is_refused(capsys, tmp_path, model):
    out = tmp_path / "out"
    assert run(capsys, model, out)[0] == 0
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    code, _, err = run(capsys, model, out)
    assert code == 2 and "'notes.txt'" in one_line(err)
    assert tree(out) == before


@pytest.mark.parametrize("outdir", [".", "..", "../sub/..", "/"])
def test_current_folder_its_parents_and_root_are_refused(capsys, tmp_path, monkeypatch, model,
                                                         outdir):
    # both folders look like earlier outputs: only where they are protects them
    work = tmp_path / "work"
    for d in (work, work / "sub"):
        d.mkdir(exist_ok=True)
        (d / "summary.json").write_text("{}")
        (d / MARKER).write_text("{}")
        (d / "keep.txt").write_text("x")
    monkeypatch.chdir(work / "sub")
    before = tree(tmp_path)
    code, _, err = run(capsys, model, outdir)
    line = one_line(err)
    assert code == 2 and ("current folder" in line or "root folder" in line), line
    assert tree(tmp_path) == before


def test_home_folder_is_refused(capsys, tmp_path, monkeypatch, model):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    code, _, err = run(capsys, model, home)
    assert code == 2 and "home folder" in one_line(err)
    assert list(home.iterdir()) == []


def test_outdir_holding_the_input_is_refused(capsys, tmp_path):
    prev = tmp_path / "prev"
    prev.mkdir()
    model = gs.save(chain(), prev / "model.pb")
    (prev / "other.txt").write_text("keep me")
    before = tree(prev)
    code, _, err = run(capsys, model, prev)
    line = one_line(err)
    assert code == 2 and "holds the input" in line and str(prev) in line
    assert tree(prev) == before and siblings(tmp_path, "prev") == []
    # an OUTDIR inside an input folder (a SavedModel) and the input file itself
    code, _, err = run(capsys, prev, prev / "out")
    assert code == 2 and "inside the input" in one_line(err)
    code, _, err = run(capsys, model, model)
    assert code == 2 and one_line(err)
    assert tree(prev) == before


# ---------------------------------------------------------------------- kills and leftovers
SLEEP_PLUGIN = '''
import pathlib
import time

import graphsurgery as gs


@gs.register_pass("test::sleep")
def sleep(graph, rw):
    """Tell the test the run is under way, then wait to be signalled."""
    pathlib.Path({started!r}).write_text("started")
    time.sleep(120)
'''


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_run_leaves_no_temporary_folder(tmp_path, model, sig, code):
    started = tmp_path / "started"
    plugin = tmp_path / "sleepy.py"
    plugin.write_text(SLEEP_PLUGIN.format(started=str(started)))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphsurgery", "run", str(model), "-p",
         "core::remove_identity,test::sleep", "--plugin", str(plugin), "-o", str(out),
         "--target", "none"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        assert siblings(tmp_path)  # the run writes into a temporary sibling
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "interrupted" in one_line(err)
    assert siblings(tmp_path) == [] and not out.exists()


def _stale(parent, kind, pid, content):
    d = parent / f".out.{kind}-{pid}-0badc0de"
    d.mkdir()
    (d / MARKER).write_text(json.dumps({"pid": pid}))
    (d / "model.pb").write_bytes(content)
    return d


def test_stale_siblings_of_killed_runs_are_removed(capsys, tmp_path, model):
    out = tmp_path / "out"
    assert run(capsys, model, out)[0] == 0
    pid = dead_pid()
    _stale(tmp_path, "tmp", pid, b"partial")
    _stale(tmp_path, "old", pid, b"previous")
    alive = _stale(tmp_path, "tmp", os.getppid(), b"a live run's")  # not provably dead
    foreign = tmp_path / f".out.tmp-{pid}-0ddba11"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("no marker: not ours")
    code, _, err = run(capsys, model, out)
    assert code == 0, err
    assert siblings(tmp_path) == sorted([alive.name, foreign.name])


def test_old_output_moved_aside_by_a_kill_is_restored(tmp_path, model, monkeypatch):
    from graphsurgery import outdir

    out_path = tmp_path / "out"
    with outdir.OutputDir(out_path) as out:
        (out.tmp / "model.pb").write_bytes(b"old")
        out.commit()
    old = tree(out_path)
    # a kill between the two renames of a swap without RENAME_EXCHANGE
    monkeypatch.setattr(outdir, "_exchange", lambda a, b: False)
    real_rename, calls = os.rename, []

    class Killed(BaseException):
        pass

    def rename(a, b):
        calls.append(a)
        if len(calls) == 2:
            raise Killed
        real_rename(a, b)

    out = outdir.OutputDir(out_path).open()
    (out.tmp / "model.pb").write_bytes(b"new")
    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(Killed):
        out.commit()
    monkeypatch.setattr(os, "rename", real_rename)
    os.close(out._lock_fd)  # what the kill does; no handler, no cleanup ran
    out._restore_handlers()
    assert not out_path.exists() and len(siblings(tmp_path)) == 3  # tmp, old, lock
    with outdir.OutputDir(out_path):
        assert tree(out_path) == old
    assert tree(out_path) == old and siblings(tmp_path) == []


# ---------------------------------------------------------------------- one writer
def test_concurrent_run_gets_one_clear_error(capsys, tmp_path, model):
    out = tmp_path / "out"
    assert run(capsys, model, out)[0] == 0
    before = tree(out)
    with open(tmp_path / ".out.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write("4242\n")
        fh.flush()
        code, _, err = run(capsys, model, out)
    assert code == 2
    assert "being written by another graphsurgery run (pid 4242)" in one_line(err)
    assert tree(out) == before
    assert siblings(tmp_path) == [".out.lock"]  # the holder's file, untouched


def test_lock_is_released_and_removed(capsys, tmp_path, model):
    out = tmp_path / "out"
    for _ in range(2):
        code, _, err = run(capsys, model, out)
        assert code == 0, err
    assert siblings(tmp_path) == []


# ---------------------------------------------------------------------- permissions
@pytest.mark.parametrize("umask, fmode, dmode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_modes_follow_the_umask(capsys, tmp_path, model, umask, fmode, dmode):
    old = os.umask(umask)
    try:
        out = tmp_path / "out"
        code, _, err = run(capsys, model, out, "--dump-changed")
        saved = gs.save(chain(), tmp_path / "saved.pb")
    finally:
        os.umask(old)
    assert code == 0, err
    assert out.stat().st_mode & 0o777 == dmode
    assert (out / "dumps").stat().st_mode & 0o777 == dmode
    for f in [out / "model.pb", out / "summary.json", *(out / "dumps").iterdir(), saved]:
        assert f.stat().st_mode & 0o777 == fmode, f


# ---------------------------------------------------------------------- final paths
FAILING_PLUGIN = '''
import graphsurgery as gs


@gs.register_pass("test::dangle")
def dangle(graph, rw):
    """Erase a node that is still used."""
    rw.erase("mul", force=True)
'''


def test_reproducer_paths_printed_are_final(capsys, tmp_path, model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plugin = tmp_path / "dangle_plugin.py"
    plugin.write_text(FAILING_PLUGIN)
    try:
        code, _, err = run_cli(capsys, "run", model, "-p", "core::dce,test::dangle",
                               "--plugin", plugin, "-o", "out", "--target", "none")
        assert code == 3
        repro = re.search(r"\(reproducer: (.*?)\)", one_line(err)).group(1)
        assert repro == os.path.join("out", "reproducer") and (tmp_path / repro).is_dir()
        code, _, err = run_cli(capsys, "run", model, "-p", "core::dce,test::dangle",
                               "--plugin", plugin, "-o", "out2", "--target", "none",
                               "--keep-going")
        assert code == 3, err
        repro = re.search(r"reproducer in (\S+)", err).group(1)
        assert repro == os.path.join("out2", "reproducer") and (tmp_path / repro).is_dir()
        assert json.loads((tmp_path / "out2" / "summary.json").read_text())["failures"]
    finally:
        gs.registry.unregister_pass("test::dangle")


def test_audit_path_in_summary_is_final(capsys, tmp_path, model):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", model, "-p", "core::remove_identity", "-o", out)
    assert code == 0, err
    audit = json.loads((out / "summary.json").read_text())["audit"]
    assert audit["path"] == "model.tflite" and (out / audit["path"]).is_file()
