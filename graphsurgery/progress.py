"""Progress of a conversion on stderr: load, each pass, conversion, verification, report.

:func:`graphsurgery.convert` reports its steps to a :class:`Progress`; the command line
gives it one that draws a one-line ``tqdm`` status on stderr only when stderr is a terminal
(and not with ``-q``), so piped or redirected output never holds progress::

    loading generator.pb  62%|██████▏   | 48.1M/77.6M [00:01<00:00, 41.2MB/s]
    passes [14/27] core::fold_constants   3.1s
    converting to TFLite   7.9s

While the status line is shown, graphsurgery's own log lines are written above it
(``tqdm.write``), never through it. :class:`Progress` with ``enabled=False`` does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

from .pipeline import Instrument, PassRecord

__all__ = ["Progress", "for_terminal"]


class Progress:
    """A status line for the steps of a conversion (a no-op when not ``enabled``).

    ``stage(label)`` is a context manager around one step; ``pass_instrument(total)`` an
    :class:`~graphsurgery.pipeline.Instrument` counting passes; ``bytes_callback(label)`` the
    ``(done, total)`` callback :func:`graphsurgery.ir.io.load` reports file reading with.
    """

    def __init__(self, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self.stages: list[str] = []  # every stage started, in order (read by tests)

    # ------------------------------------------------------------------ the bar
    def _open(self, label: str, total: float | None = None, unit: str = "it",
              bar: bool = False) -> Any:
        from tqdm import tqdm

        self._close_bar()
        fmt = ("{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} [{elapsed}]" if bar
               else "{desc}  {elapsed}")
        self._bar = tqdm(total=total, desc=label, unit=unit, unit_scale=unit == "B",
                         file=self.stream, leave=False, bar_format=fmt, dynamic_ncols=True,
                         mininterval=0.1)
        return self._bar

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _tick(self) -> None:
        """Redraw the status line twice a second, so its clock runs during long steps."""
        while not self._stop.wait(0.5):
            bar = self._bar
            if bar is not None:
                with contextlib.suppress(Exception):
                    bar.refresh()

    def _stop_ticker(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        self._stop.clear()

    def _start_ticker(self) -> None:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="graphsurgery-progress",
                                            daemon=True)
            self._ticker.start()

    @contextlib.contextmanager
    def stage(self, label: str) -> Iterator[None]:
        """Show ``label`` with a running clock while the block runs."""
        self.stages.append(label)
        if not self.enabled:
            yield
            return
        self._open(label)
        self._start_ticker()
        with _logs_above(self):
            try:
                yield
            finally:
                self._stop_ticker()
                self._close_bar()

    def bytes_callback(self, label: str) -> Callable[[int, int], None] | None:
        """A ``(done, total)`` callback showing ``label`` with a byte bar, or None."""
        self.stages.append(label)
        if not self.enabled:
            return None
        state: dict[str, Any] = {"bar": None}

        def report(done: int, total: int) -> None:
            bar = state["bar"]
            if bar is None or bar is not self._bar:
                bar = state["bar"] = self._open(label, total=total, unit="B", bar=True)
            bar.update(done - bar.n)
            if done >= total:
                self._close_bar()

        return report

    def pass_instrument(self, total: int) -> Instrument:
        """An instrument showing ``passes [i/total] pass_id`` before each pass."""
        return _PassProgress(self, total)

    def close(self) -> None:
        """Remove the status line and stop redrawing it."""
        self._stop_ticker()
        self._close_bar()
        if isinstance(self.stream, _Terminal):
            self.stream.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PassProgress(Instrument):
    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def before_pass(self, pass_id: str, graph: Any) -> None:
        bar = self.progress._bar
        if bar is not None:  # fixpoint groups repeat: the count may pass the total
            n = self.done + 1
            count = f"{n}/{self.total}" if n <= self.total else str(n)
            bar.set_description_str(f"passes [{count}] {pass_id}", refresh=True)

    def after_pass(self, record: PassRecord, graph: Any) -> None:
        self.done += 1

    def on_failure(self, record: PassRecord, graph: Any) -> None:
        self.done += 1


class _TqdmHandler(logging.Handler):
    """Writes log records above the status line instead of through it."""

    def __init__(self, progress: Progress, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.progress = progress
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.progress.stream)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


@contextlib.contextmanager
def _logs_above(progress: Progress) -> Iterator[None]:
    """Route graphsurgery's stream handlers through ``tqdm.write`` while a stage runs."""
    logger = logging.getLogger("graphsurgery")
    saved = list(logger.handlers)
    swapped = [
        _TqdmHandler(progress, h.formatter) if isinstance(h, logging.StreamHandler)
        and getattr(h, "stream", None) in (sys.stderr, progress.stream) else h
        for h in saved
    ]
    for new, old in zip(swapped, saved):
        new.setLevel(old.level)
    logger.handlers[:] = swapped
    try:
        yield
    finally:
        logger.handlers[:] = saved


def for_terminal(quiet: bool = False, stream: IO[str] | None = None) -> Progress:
    """A :class:`Progress` enabled only when ``stream`` (stderr) is a terminal and not quiet.

    For stderr it writes to a duplicate of file descriptor 2: while TensorFlow is imported
    quietly (:mod:`graphsurgery._quiet`) descriptor 2 points to /dev/null for a moment, and
    the status line must not vanish with TensorFlow's log lines.
    """
    stream = stream if stream is not None else sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty or quiet:
        return Progress(enabled=False, stream=stream)
    if stream is sys.stderr:
        with contextlib.suppress(OSError, ValueError):
            stream = _Terminal(os.fdopen(os.dup(stream.fileno()), "w", encoding="utf-8",
                                         errors="replace"))
    return Progress(enabled=True, stream=stream)


class _Terminal:
    """A text stream on a duplicate of stderr; a tty (for tqdm), closed with the process."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file

    def write(self, text: str) -> int:
        return self._file.write(text)

    def flush(self) -> None:
        self._file.flush()

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
