"""Output folders that never lose a user's files.

``graphsurgery run -o OUTDIR`` writes through :class:`OutputDir`:

* **Only its own output is replaced.** Every OUTDIR graphsurgery writes holds a marker file,
  ``.graphsurgery-output`` (JSON: version, pid, time and the names it wrote). An existing
  OUTDIR is replaced only when it is empty or holds that marker and nothing the marker does
  not list; any other folder is refused, whatever it holds (a ``summary.json`` is not proof).
* **Never an input, never a parent.** An OUTDIR that is, holds or lies inside an input (the
  model file or SavedModel folder, a plugin file), or that is the current folder or one of
  its parents, the home folder or ``/``, is refused.
* **Old or new, whole.** The output is built in a hidden sibling ``.OUTDIR.tmp-PID-XXXX``
  and swapped in at the end: atomically where the filesystem can exchange two names (Linux
  ``renameat2(RENAME_EXCHANGE)``); elsewhere the old output is first renamed aside to
  ``.OUTDIR.old-PID-XXXX`` and, should a kill come between the two renames, restored by
  the next run. A kill at any moment leaves the old or the new output whole.
* **No litter.** SIGINT and SIGTERM remove the temporary sibling and end the run (exit 130
  or 143); siblings left by runs that could not clean up (SIGKILL, power loss) are removed
  by the next run to the same OUTDIR (their pid is dead and they hold the marker).
* **One writer.** ``fcntl.flock`` on ``.OUTDIR.lock`` beside OUTDIR: a second run to the
  same OUTDIR stops at once with one line naming the run that holds it.
* **The user's umask.** Folders and files get ``0o777``/``0o666`` less the umask, also
  those written through :func:`tempfile.mkstemp` (which makes them 0600).
* **Final paths.** While the run writes into the sibling, log lines and recorded paths name
  the final OUTDIR (:meth:`OutputDir.final_path`, :meth:`OutputDir.relative`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, BinaryIO

from .errors import UsageError

try:  # POSIX; elsewhere concurrent runs are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MARKER = ".graphsurgery-output"
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]+$")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_UMASK_LOCK = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while an OUTDIR was being written (after cleaning up)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


# ---------------------------------------------------------------------- permissions
def current_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open()``: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode a new folder gets from ``mkdir``: ``0o777`` less the umask."""
    return 0o777 & ~current_umask()


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only when the block ends without an error.

    It is written as a hidden sibling (``.NAME.*.tmp``), which is removed on any error, and
    gets the replaced file's mode, or the umask's for a new file (``mkstemp`` makes 0600)::

        with atomic_file(Path("model.pb")) as fh:
            fh.write(data)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, path.stat().st_mode & 0o7777 if path.is_file() else file_mode())
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fix_modes(root: Path) -> None:
    """Give ``root`` and everything under it the modes the umask asks for (no symlinks)."""
    fmode, dmode = file_mode(), dir_mode()
    os.chmod(root, dmode)
    for base, dirs, files in os.walk(root):
        for name in dirs:
            p = os.path.join(base, name)
            if not os.path.islink(p):
                os.chmod(p, dmode)
        for name in files:
            p = os.path.join(base, name)
            if not os.path.islink(p):
                os.chmod(p, fmode)


# ---------------------------------------------------------------------- helpers
def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False where the OS or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _remove_tree(path: Path) -> None:
    """Remove a folder of ours, its marker last: a kill midway leaves it recognisable."""
    for child in path.iterdir():
        if child.name == MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    (path / MARKER).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.rmdir()


def _write_marker(folder: Path, files: list[str] | None = None) -> None:
    from . import __version__

    data: dict[str, Any] = {"graphsurgery": __version__, "pid": os.getpid(),
                            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if files is not None:
        data["files"] = files
    part = folder / (MARKER + ".part")
    part.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(part, folder / MARKER)


def _resolved(path: str | os.PathLike[str]) -> list[Path]:
    """The absolute path as given and with symlinks resolved (both, when they differ)."""
    absolute = Path(os.path.abspath(path))
    real = Path(path).resolve()
    return [absolute] if absolute == real else [absolute, real]


def _inside(child: Path, parent: Path) -> bool:
    return parent in child.parents


# ---------------------------------------------------------------------- the folder
class OutputDir:
    """An OUTDIR written through a temporary sibling, swapped into place on :meth:`commit`.

    Construction checks that ``path`` may be written (raising :class:`UsageError`, exit 2)
    and touches nothing. Entering the context (or :meth:`open`) takes the lock, cleans what
    killed runs left, creates the sibling :attr:`tmp` and installs SIGINT/SIGTERM handlers;
    leaving it removes the sibling unless committed, restores the handlers and releases
    the lock. ``protect`` names inputs OUTDIR must not be, hold or lie inside.
    """

    def __init__(self, path: str | os.PathLike[str],
                 protect: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.display = str(Path(path))
        try:
            self.final = Path(path).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise UsageError(f"{self.display}: cannot resolve: {exc}") from None
        self.parent = self.final.parent
        self.name = self.final.name
        self.tmp = self.parent / f".{self.name}.tmp-unopened"
        self.lock_path = self.parent / f".{self.name}.lock"
        self.committed = False
        self._opened = False
        self._lock_fd: int | None = None
        self._old_handlers: dict[int, Any] = {}
        self._hold = False
        self._pending: int | None = None
        self._log_filter: _FinalPaths | None = None
        self._check_location(protect)
        self._check_replaceable()

    # -- checks
    def _check_location(self, protect: Iterable[str | os.PathLike[str]]) -> None:
        final, shown = self.final, self.display
        if final.parent == final:
            raise UsageError(f"{shown}: is the root folder; give OUTDIR a folder of its own")
        with contextlib.suppress(RuntimeError, KeyError, OSError):
            if final == Path.home().resolve():
                raise UsageError(f"{shown}: is your home folder; give OUTDIR a folder of its own")
        cwd = Path.cwd().resolve()
        if final == cwd or _inside(cwd, final):
            raise UsageError(f"{shown}: is the current folder or one of its parents; "
                             "give OUTDIR a folder of its own")
        for item in protect:
            for p in _resolved(item):
                if final == p:
                    raise UsageError(f"{shown}: is the input {item}; choose another OUTDIR")
                if _inside(p, final):
                    raise UsageError(f"{shown}: holds the input {item}; writing OUTDIR would "
                                     "replace it; choose another OUTDIR")
                if _inside(final, p):
                    raise UsageError(f"{shown}: lies inside the input {item}; choose another "
                                     "OUTDIR")

    def _check_replaceable(self) -> None:
        """Refuse an existing OUTDIR that is not empty and not graphsurgery's own output."""
        final, shown = self.final, self.display
        if not final.exists():
            if final.is_symlink():
                raise UsageError(f"{shown}: is a broken symbolic link")
            return
        if not final.is_dir():
            raise UsageError(f"{shown}: exists and is not a directory")
        try:
            names = {p.name for p in final.iterdir()}
        except OSError as exc:
            raise UsageError(f"{shown}: cannot read: {exc.strerror or exc}") from None
        if not names:
            return
        marker = final / MARKER
        if not marker.is_file():
            raise UsageError(f"{shown}: exists, is not empty and was not written by graphsurgery "
                             f"(no {MARKER}); remove it or choose another OUTDIR")
        try:
            data = json.loads(marker.read_text())
            listed = data.get("files")
        except (OSError, ValueError, AttributeError):
            raise UsageError(f"{shown}: its {MARKER} is unreadable; remove OUTDIR or choose "
                             "another") from None
        if isinstance(listed, list):
            extra = sorted(names - set(map(str, listed)) - {MARKER})
            if extra:
                raise UsageError(f"{shown}: holds {extra[0]!r}, which graphsurgery did not "
                                 "write; move it away or choose another OUTDIR")

    # -- open / close
    def __enter__(self) -> OutputDir:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(raise_pending=exc_type is None)

    def open(self) -> OutputDir:
        """Take the lock, clean up after killed runs and create the temporary sibling."""
        if self._opened:
            return self
        self._opened = True
        try:
            self._install_handlers()
            try:
                self.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"{self.display}: cannot write: {exc.strerror or exc}") from None
            self._lock()
            self.recover()
            self._check_replaceable()  # again: it may have changed, or been restored
            self.tmp = self._new_sibling("tmp", create=True)
            _write_marker(self.tmp)
            self._log_filter = _FinalPaths(self)
            for h in logging.getLogger("graphsurgery").handlers:
                h.addFilter(self._log_filter)
        except BaseException:
            self.close(raise_pending=False)
            raise
        return self

    def close(self, raise_pending: bool = True) -> None:
        """Remove the sibling unless committed, restore the signal handlers, unlock."""
        self._hold = True
        try:
            if self._log_filter is not None:
                for h in logging.getLogger("graphsurgery").handlers:
                    h.removeFilter(self._log_filter)
                self._log_filter = None
            self.discard()
            self._unlock()
        finally:
            self._restore_handlers()
            self._hold = False
        if raise_pending and self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)

    def discard(self) -> None:
        """Remove the temporary sibling (nothing once committed)."""
        if not self.committed and self.tmp.is_dir() and not self.tmp.is_symlink():
            _remove_tree(self.tmp)

    def _new_sibling(self, kind: str, create: bool = False) -> Path:
        for _ in range(100):
            p = self.parent / f".{self.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
            if not create:
                if not os.path.lexists(p):
                    return p
                continue
            try:
                os.mkdir(p, 0o777)
                return p
            except FileExistsError:
                continue
            except OSError as exc:
                raise UsageError(f"{self.display}: cannot write: {exc.strerror or exc}") from None
        raise UsageError(f"{self.display}: cannot create a temporary folder beside it")

    # -- lock
    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise UsageError(f"{self.display}: cannot write: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                try:
                    holder = self.lock_path.read_text().strip() or "unknown"
                except OSError:
                    holder = "unknown"
                raise UsageError(f"{self.display}: OUTDIR is being written by another "
                                 f"graphsurgery run (pid {holder})") from None
            # The holder before us removes the file when done: lock the file now in place.
            st = os.fstat(fd)
            try:
                cur = os.stat(self.lock_path)
            except FileNotFoundError:
                cur = None
            if cur is not None and (cur.st_ino, cur.st_dev) == (st.st_ino, st.st_dev):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            self.lock_path.unlink()  # while still held: the next run locks a fresh file
        os.close(self._lock_fd)
        self._lock_fd = None

    # -- signals
    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):  # pragma: no cover
                pass

    def _restore_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._old_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._hold:  # swapping or cleaning up: finish first, then stop
            self._pending = self._pending or signum
            return
        self._hold = True
        raise Interrupted(signum)

    # -- recovery
    def recover(self) -> None:
        """Clean the siblings of killed runs; restore an old output a kill left aside."""
        stale: list[tuple[str, float, Path]] = []
        try:
            entries = list(self.parent.iterdir())
        except OSError:
            return
        for entry in entries:
            m = _SIBLING.match(entry.name)
            if not m or m["name"] != self.name or entry.is_symlink() or not entry.is_dir():
                continue
            pid = int(m["pid"])
            if pid != os.getpid() and _pid_alive(pid):
                continue  # not provably dead: leave it
            try:
                ours = (entry / MARKER).is_file() or not any(entry.iterdir())
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            if ours:
                stale.append((m["kind"], mtime, entry))
        # the newest old output first: it is what a kill during a swap left aside
        stale.sort(key=lambda s: (s[0] != "old", -s[1]))
        for kind, _, entry in stale:
            if kind == "old" and not os.path.lexists(self.final):
                os.rename(entry, self.final)
                log.warning("%s: restored the previous output that an interrupted run had "
                            "moved aside", self.display)
                continue
            _remove_tree(entry)
            log.info("%s: removed %s left by an interrupted run", self.display, entry.name)

    # -- commit
    def keep_only(self, *names: str) -> bool:
        """Remove everything in :attr:`tmp` but ``names`` (and the marker); False if none."""
        kept = False
        for child in list(self.tmp.iterdir()):
            if child.name in names:
                kept = True
            elif child.name != MARKER:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        return kept

    def commit(self) -> None:
        """Swap the finished output in place of the old one; remove the old one."""
        self._check_replaceable()  # the user may have put something there meanwhile
        names = sorted(p.name for p in self.tmp.iterdir() if p.name != MARKER)
        _write_marker(self.tmp, names)
        fix_modes(self.tmp)
        old: Path | None = None
        self._hold = True  # a signal now waits until the swap is done
        try:
            if os.path.lexists(self.final):
                if _exchange(self.tmp, self.final):
                    old = self.tmp
                else:
                    old = self._new_sibling("old")
                    os.rename(self.final, old)
                    os.rename(self.tmp, self.final)
            else:
                os.rename(self.tmp, self.final)
            self.committed = True
        except OSError as exc:
            raise UsageError(f"{self.display}: cannot write: {exc.strerror or exc}") from None
        finally:
            self._hold = False
        if old is not None:
            _remove_tree(old)
        if self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)

    # -- paths
    def final_path(self, path: str | os.PathLike[str]) -> str:
        """``path`` under :attr:`tmp` as it reads once committed (under the OUTDIR given)."""
        text, tmp = str(path), str(self.tmp)
        if text == tmp or text.startswith(tmp + os.sep):
            return self.display + text[len(tmp):]
        return text

    def relative(self, obj: Any) -> Any:
        """``obj`` (JSON-like) with every path under :attr:`tmp` made relative to OUTDIR."""
        if isinstance(obj, dict):
            return {k: self.relative(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.relative(v) for v in obj]
        if isinstance(obj, str | os.PathLike):
            text, tmp = str(obj), str(self.tmp)
            if text == tmp:
                return "."
            if text.startswith(tmp + os.sep):
                return text[len(tmp) + 1:]
        return obj


class _FinalPaths(logging.Filter):
    """Rewrites the temporary sibling's path to the final OUTDIR in log messages."""

    def __init__(self, out: OutputDir) -> None:
        super().__init__()
        self.out = out

    def filter(self, record: logging.LogRecord) -> bool:
        tmp = str(self.out.tmp)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        if tmp in message:
            record.msg = message.replace(tmp, self.out.display)
            record.args = None
        return True
