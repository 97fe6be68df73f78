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

from .pipeline import Fixpoint, Instrument, PassRecord, Pipeline, Step

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

    def pass_instrument(self, plan: Pipeline | int) -> Instrument:
        """An instrument showing ``passes [i/total] pass_id`` before each pass.

        With the :class:`~graphsurgery.pipeline.Pipeline` about to run, ``i`` is the pass's
        place in it and a fixpoint group's later rounds show again under their places,
        ``passes [2/3] core::dce (round 2)``, so the count never passes the total. With a
        number only, passes are counted as they run.
        """
        return _PassProgress(self, plan)

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
    """Follows the plan as the pass manager runs it: items in order, a fixpoint group's
    steps again while a round changed the graph, up to ``max_iter`` rounds."""

    def __init__(self, progress: Progress, plan: Pipeline | int) -> None:
        self.progress = progress
        self.items: list[Step | Fixpoint] = [] if isinstance(plan, int) else list(plan.items)
        self.places: list[int] = []  # the place (0-based) of each item's first step
        total = 0
        for item in self.items:
            self.places.append(total)
            total += len(item.steps) if isinstance(item, Fixpoint) else 1
        self.total = plan if isinstance(plan, int) else total
        self.done = 0
        self.item, self.step, self.round, self.round_changed = 0, 0, 1, False
        self._skip_empty()

    def _skip_empty(self) -> None:
        while self.item < len(self.items) and self._group_size() == 0:
            self.item += 1

    def _group_size(self) -> int:
        it = self.items[self.item]
        return len(it.steps) if isinstance(it, Fixpoint) else 1

    def _label(self, pass_id: str) -> str:
        if self.item < len(self.items):
            it = self.items[self.item]
            expected = it.steps[self.step] if isinstance(it, Fixpoint) else it
            if expected.pass_id == pass_id:
                place = self.places[self.item] + self.step + 1
                again = f" (round {self.round})" if self.round > 1 else ""
                return f"passes [{place}/{self.total}] {pass_id}{again}"
        self.items = []  # not the plan we were given: count passes as they run
        n = self.done + 1
        return f"passes [{n}/{self.total}] {pass_id}" if n <= self.total \
            else f"passes [{n}] {pass_id}"

    def before_pass(self, pass_id: str, graph: Any) -> None:
        label = self._label(pass_id)
        bar = self.progress._bar
        if bar is not None:
            bar.set_description_str(label, refresh=True)

    def _advance(self, changed: bool) -> None:
        self.done += 1
        if self.item >= len(self.items):
            return
        it = self.items[self.item]
        if isinstance(it, Fixpoint):
            self.round_changed |= changed
            self.step += 1
            if self.step < len(it.steps):
                return
            if self.round_changed and self.round < it.max_iter:  # another round
                self.step, self.round, self.round_changed = 0, self.round + 1, False
                return
        self.item, self.step, self.round, self.round_changed = self.item + 1, 0, 1, False
        self._skip_empty()

    def after_pass(self, record: PassRecord, graph: Any) -> None:
        self._advance(record.changed)

    def on_failure(self, record: PassRecord, graph: Any) -> None:
        self._advance(False)  # with --keep-going the graph is restored: nothing changed


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
