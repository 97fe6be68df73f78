"""``--trust-pickle-code``: freeze an NVlabs pickle by RUNNING ITS OWN CODE, in a subprocess.

graphsurgery rebuilds the networks it knows from a pickle's weights without running
anything (:mod:`graphsurgery.ir.pickle`). For any other network the user may opt in to what
the original NVlabs loader does, knowing that it executes the file: ``PickleOptions(
trust_code=True, code_path=NVLABS_REPO)``, ``gs.load(path, pickle_options=...)``, or
``graphsurgery import|run SNAPSHOT.pkl --trust-pickle-code --pickle-code-path NVLABS_REPO``.

:func:`freeze_with_code` starts a fresh ``python`` (this interpreter's) on
``graphsurgery/ir/_pickle_child.py`` in a temporary folder of its own (its working
directory and ``TMPDIR``; stdout and stderr captured there; its process group killed after
``code_timeout`` seconds, and when it ends, so nothing it started outlives it). The child
puts ``code_path`` first on ``sys.path`` (``dnnlib`` must be there), runs TensorFlow with
v2 behaviour disabled and ``import tensorflow`` giving ``tf.compat.v1``, calls
``dnnlib.tflib.init_tf()``, unpickles the file with the real pickle module
(``Network.__setstate__`` executes its ``build_module_src``; ``code_kwargs`` are added to
every network's static kwargs through dnnlib's import handlers), feeds placeholders to
``get_output_for(..., is_validation=True, ...)`` with the chosen truncation and noise, and
freezes with ``convert_variables_to_constants`` into ``frozen.pb``. This process never
unpickles the file: it parses ``frozen.pb`` as data (graphsurgery's own GraphDef message)
and removes the folder; ``gs.load``/``run``/``import`` then take the graph through
:func:`graphsurgery.ir.io.load` like any other (every tensor and the structure checked).
A failure of the child is one line (the last line of its exception), exit 2, and nothing
is written.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, UsageError
from . import proto

if TYPE_CHECKING:
    from .pickle import PickleOptions

log = logging.getLogger("graphsurgery")

_CHILD = Path(__file__).with_name("_pickle_child.py")


def check_code_path(code_path: str | os.PathLike | None) -> str | None:
    """``code_path`` as an absolute folder holding ``dnnlib`` (a UsageError naming
    ``--pickle-code-path`` otherwise); None leaves finding ``dnnlib`` to ``sys.path``."""
    if code_path is None:
        return None
    path = Path(code_path).expanduser()
    if not path.is_dir():
        raise UsageError(f"--pickle-code-path {code_path}: no such folder (give your clone of "
                         "the NVlabs repository, the folder holding dnnlib/)")
    if not (path / "dnnlib").is_dir() and not (path / "dnnlib.py").is_file():
        raise UsageError(f"--pickle-code-path {code_path}: holds no dnnlib (give your clone of "
                         "the NVlabs repository, the folder holding dnnlib/)")
    return str(path.resolve())


@dataclass
class FrozenByCode:
    """What :func:`freeze_with_code` returns (shaped like the rebuilders' models): the
    frozen ``graph_def`` (graphsurgery's own message, parsed as data), its ``inputs`` and
    ``outputs`` (``"latents_in:0"``), and ``meta`` (``pickle_code_run`` True,
    ``pickle_network``, ``build_func_name``, ``resolution``, truncation, noise)."""

    inputs: list[str]
    outputs: list[str]
    graph_def: Any
    meta: dict[str, Any] = field(default_factory=dict)


def freeze_with_code(path: str | os.PathLike, options: PickleOptions) -> FrozenByCode:
    """Freeze the network ``options`` selects by running the pickle's code in a child
    process (see the module docstring). The GraphDef is parsed here as data; the caller
    loads it through :func:`graphsurgery.ir.io.load` (tensors and structure checked)."""
    path = Path(path)
    source = str(path)
    if not options.code_timeout > 0:
        raise UsageError(f"--pickle-code-timeout {options.code_timeout}: give seconds > 0")
    code_path = check_code_path(options.code_path)
    if not path.is_file():
        raise InputError(f"{source}: no such file")
    log.info("%s: running the pickle's own code (--trust-pickle-code) in a subprocess", source)
    with tempfile.TemporaryDirectory(prefix="graphsurgery-pickle-code-") as tmp:
        request = {"pickle": str(path.resolve()), "code_path": code_path,
                   "network": options.network, "psi": options.psi, "cutoff": options.cutoff,
                   "noise": options.noise, "seed": options.seed, "out": tmp,
                   "static_kwargs": _json_kwargs(options.code_kwargs)}
        _run_child(request, Path(tmp), options.code_timeout, source)
        try:
            meta = json.loads((Path(tmp) / "meta.json").read_text(encoding="utf-8"))
            inputs, outputs = list(meta.pop("inputs")), list(meta.pop("outputs"))
            graph_def = proto.GraphDef.FromString((Path(tmp) / "frozen.pb").read_bytes())
        except Exception as exc:  # noqa: BLE001 - whatever the child left is untrusted data
            raise InputError(f"{source}: the pickle's code (--trust-pickle-code) left no "
                             f"readable frozen graph ({type(exc).__name__}: {exc})") from None
    meta.update(pickle_code_run=True, noise=options.noise, network=options.network)
    return FrozenByCode(inputs=inputs, outputs=outputs, graph_def=graph_def, meta=meta)


def _json_kwargs(kwargs: Any) -> dict[str, Any]:
    """``code_kwargs`` as JSON for the child (names are identifiers; values plain)."""
    try:
        out = dict(kwargs)
        json.dumps(out)
    except (TypeError, ValueError):
        raise UsageError(f"--pickle-code-kwarg: {kwargs!r} are not plain values") from None
    for key in out:
        if not isinstance(key, str) or not key.isidentifier():
            raise UsageError(f"--pickle-code-kwarg {key!r}: not a keyword argument name")
    return out


def _run_child(request: dict[str, Any], tmp: Path, timeout: float, source: str) -> None:
    env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp),
           "PYTHONDONTWRITEBYTECODE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-c", _CHILD.read_text(encoding="utf-8"), json.dumps(request)]
    with open(tmp / "stdout.txt", "wb") as out, open(tmp / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise InputError(f"{source}: the pickle's code (--trust-pickle-code) ran longer "
                             f"than {timeout:g} s (--pickle-code-timeout); stopped") from None
        except BaseException:  # Ctrl-C, SIGTERM: stop the child and what it started
            _stop(proc)
            raise
        _stop(proc)  # what the file's code started in the background does not outlive it
    stderr = (tmp / "stderr.txt").read_text(encoding="utf-8", errors="replace")
    if stderr.strip():
        log.info("the pickle's code wrote on stderr:\n%s", stderr[-4000:])
    if code == 0 and (tmp / "frozen.pb").is_file() and (tmp / "meta.json").is_file():
        return
    error = tmp / "error.txt"
    if error.is_file():
        reason = error.read_text(encoding="utf-8", errors="replace").strip()
    else:  # killed, or crashed before it could say why
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        how = f"exit status {code}" if code >= 0 else f"signal {-code}"
        reason = f"{lines[-1]} ({how})" if lines else how
    raise InputError(f"{source}: the pickle's code (--trust-pickle-code) failed: {reason}")


def _stop(proc: subprocess.Popen) -> None:
    """Kill the child's process group (it was started in a session of its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# ----------------------------------------------------------------------------- command line
def add_trust_arguments(parser: Any) -> None:
    """``--trust-pickle-code``, ``--pickle-code-path`` and ``--pickle-code-timeout`` (the
    ``import`` and ``run`` subcommands)."""
    parser.add_argument("--trust-pickle-code", action="store_true",
                        help="RUN THE PICKLE'S OWN CODE (only for a file you trust): unpickle "
                             "it with the real pickle module in a subprocess, which executes "
                             "its build_module_src with your NVlabs repository's dnnlib under "
                             "tf.compat.v1, and freeze Gs.get_output_for(..., "
                             "is_validation=True); without it graphsurgery rebuilds the "
                             "networks it knows from the weights and never runs the file")
    parser.add_argument("--pickle-code-path", default=None, metavar="NVLABS_REPO",
                        help="with --trust-pickle-code: your clone of the NVlabs repository "
                             "(the folder holding dnnlib/), put first on the subprocess's "
                             "sys.path")
    parser.add_argument("--pickle-code-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="with --trust-pickle-code: stop the subprocess after this many "
                             "seconds (default 600)")
    parser.add_argument("--pickle-code-kwarg", action="append", default=[], metavar="KEY=VALUE",
                        help="with --trust-pickle-code: add KEY=VALUE (a Python literal, else "
                             "a string) to every network's static kwargs while unpickling, "
                             "through dnnlib's import handlers; e.g. impl=ref runs StyleGAN2's "
                             "reference ops instead of compiling its CUDA ones (repeatable)")


def trust_options(args: Any) -> dict[str, Any]:
    """The :class:`PickleOptions` fields the trust arguments give (UsageError when
    ``--pickle-code-path`` comes without ``--trust-pickle-code``)."""
    trust = bool(getattr(args, "trust_pickle_code", False))
    code_path = getattr(args, "pickle_code_path", None)
    pairs = getattr(args, "pickle_code_kwarg", None) or []
    for given, flag in ((code_path, "--pickle-code-path"), (pairs, "--pickle-code-kwarg")):
        if given and not trust:
            raise UsageError(f"{flag}: only used with --trust-pickle-code (which runs the "
                             "pickle's own code)")
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"--pickle-code-kwarg {pair}: write KEY=VALUE (impl=ref)")
        try:
            kwargs[key.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = text
    return {"trust_code": trust, "code_path": code_path, "code_kwargs": kwargs,
            "code_timeout": getattr(args, "pickle_code_timeout", 600.0)}
