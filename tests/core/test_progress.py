"""Progress on stderr when it is a terminal (a pseudo-terminal here), none when piped or -q."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

import graphsurgery as gs
from graphsurgery.progress import Progress, for_terminal

from .graphs import chain


def _run_in_pty(argv: list[str], timeout: float = 120) -> tuple[int, str, str]:
    """Run argv with stderr on a pseudo-terminal (80 columns); stdout is a pipe."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    err = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read().decode()
    return proc.wait(timeout=10), out, err.decode(errors="replace")


CLI = [sys.executable, "-m", "graphsurgery"]


@pytest.fixture
def model(tmp_path):
    return str(gs.save(chain(), tmp_path / "model.pb"))


def test_progress_on_a_terminal(model, tmp_path):
    code, out, err = _run_in_pty([*CLI, "run", model, "-p", "core::remove_identity,core::dce",
                                  "--verify", "--report", "-o", str(tmp_path / "o")])
    assert code == 0, err
    for step in ("loading model.pb", "passes [1/2] core::remove_identity",
                 "passes [2/2] core::dce", "converting to TFLite", "auditing model.tflite",
                 "verifying against the input graph", "writing the report"):
        assert step in err, err
    assert "\r" in err  # one status line, redrawn in place
    assert "passes [" not in out  # stdout holds the results only: figures and verdict
    assert re.search(r"model\.tflite \(\d+ kB\): audit clean", out) and "max abs error" in out


def test_no_progress_when_piped_or_quiet(model, tmp_path):
    proc = subprocess.run([*CLI, "run", model, "-p", "core::dce", "--target", "none",
                           "-o", str(tmp_path / "a")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    code, _, err = _run_in_pty([*CLI, "run", model, "-p", "core::dce", "--target", "none",
                                "-q", "-o", str(tmp_path / "b")])
    assert code == 0 and err == "", err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_are_written_above_the_status_line():
    stream = _Tty()
    logger = logging.getLogger("graphsurgery")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [logging.StreamHandler(stream)]
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        with Progress(True, stream) as progress, progress.stage("converting"):
            logger.warning("a warning while converting")
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    text = stream.getvalue()
    assert "converting" in text
    assert not [t for t in threading.enumerate() if t.name == "graphsurgery-progress"]
    # The warning stands on its own line: the status line was cleared before it.
    line = next(x for x in text.split("\n") if "a warning while converting" in x)
    assert line.split("\r")[-1] == "a warning while converting"


def test_disabled_progress_writes_nothing():
    stream = _Tty()
    progress = for_terminal(quiet=True, stream=stream)
    assert not progress.enabled
    with progress, progress.stage("loading"):
        assert progress.bytes_callback("reading") is None
    assert stream.getvalue() == ""
    assert progress.stages == ["loading", "reading"]
    assert not for_terminal(stream=io.StringIO()).enabled  # not a terminal


def test_library_log_lines_only_with_verbose(tmp_path):
    """A library's warning (here from a plugin pass) never lands among the progress."""
    plugin = tmp_path / "noisy_plugin.py"
    plugin.write_text(
        "import logging\nimport graphsurgery as gs\n\n"
        "@gs.register_pass('noisy::log')\n"
        "def log(graph, rw):\n"
        "    '''Log a warning as a third-party library would.'''\n"
        "    logging.getLogger('somelib').warning('somelib says hello')\n")
    model = gs.save(chain(), tmp_path / "m.pb")
    argv = [*CLI, "run", str(model), "-p", "noisy::log", "--plugin", str(plugin),
            "--target", "none"]
    quiet = subprocess.run([*argv, "-o", str(tmp_path / "a")], capture_output=True, text=True)
    assert quiet.returncode == 0 and "somelib" not in quiet.stderr, quiet.stderr
    loud = subprocess.run([*argv, "-v", "-o", str(tmp_path / "b")], capture_output=True,
                          text=True)
    assert loud.returncode == 0 and "somelib says hello" in loud.stderr
