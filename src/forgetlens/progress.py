"""Progress of long work, shown to the person waiting for it.

Every long loop in forgetlens goes through :func:`track` (or :func:`open_task` when the loop is someone else's,
as a trainer's steps are).  What the user sees depends on where the output goes:

- ``live`` (stderr is a terminal): a rich display with one row per piece of work in flight (description,
  bar, k of n, elapsed, time left); when a piece finishes its row is replaced by one line saying so.
- ``lines`` (stderr is a file or a pipe: logs, CI): only those lines, one per finished piece of work.
- ``quiet`` (``--quiet``, or ``FORGETLENS_QUIET`` set): nothing; warnings and errors still print.

Work done in worker processes (``forgetlens run --jobs N``) is shown by the parent: a worker whose initializer
called :func:`send_to` puts its events on a queue that :func:`relay` drains into the parent's display.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Mode = Literal["live", "lines", "quiet"]
"""How progress is shown: a live display, one line per finished piece of work, or nothing."""

T = TypeVar("T")

Logger = Callable[[str], None]
"""Where a stage's messages go (``print``, ``click.echo``)."""


def default_mode() -> Mode:
    """``quiet`` when FORGETLENS_QUIET is set, ``live`` when stderr is a terminal, ``lines`` otherwise."""
    if os.environ.get("FORGETLENS_QUIET"):
        return "quiet"
    return "live" if sys.stderr.isatty() else "lines"


@dataclass
class _Open:
    """One piece of work in flight, as the display knows it."""

    description: str
    total: int | None
    unit: str
    announce: bool = True  # a line when it finishes (False: inner loops, shown only while they run)
    done: int = 0
    started: float = field(default_factory=time.perf_counter)
    row: Any = None  # the rich task id, in live mode


class _Display:
    """The process's view of every piece of work in flight (its own and its workers'), thread-safe."""

    def __init__(self) -> None:
        self.open: dict[tuple, _Open] = {}
        self.lock = threading.RLock()
        self.live: Any = None  # rich.progress.Progress while something is open in live mode

    def start(
        self,
        key: tuple,
        description: str,
        total: int | None,
        unit: str,
        initial: int = 0,
        eta: bool = True,
        announce: bool = True,
    ) -> None:
        mode = default_mode()
        if mode == "quiet":
            return
        with self.lock:
            work = _Open(description, total, unit, announce, done=initial)
            self.open[key] = work
            if mode == "live":
                if self.live is None:
                    self.live = _rich_progress()
                    self.live.start()
                work.row = self.live.add_task(description, total=total, completed=initial, unit=unit, eta=eta)

    def advance(self, key: tuple, n: int = 1) -> None:
        with self.lock:
            work = self.open.get(key)
            if work is None:
                return
            work.done += n
            if work.row is not None and self.live is not None:
                self.live.advance(work.row, n)

    def finish(self, key: tuple) -> None:
        with self.lock:
            work = self.open.pop(key, None)
            if work is None:
                return
            seconds = time.perf_counter() - work.started
            count = f"{work.done}/{work.total}" if work.total is not None else f"{work.done}"
            unit = f" {work.unit}" if work.unit else ""
            line = f"{work.description}: {count}{unit} in {_duration(seconds)}"
            if self.live is not None:
                if work.row is not None:
                    self.live.remove_task(work.row)
                if work.announce:
                    self.live.console.print(line, markup=False, highlight=False)
                if not self.open:
                    self.live.stop()
                    self.live = None
            elif work.announce:
                print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the live display (at exit, so that an error leaves the terminal's cursor as it found it)."""
        with self.lock:
            if self.live is not None:
                self.live.stop()
                self.live = None
            self.open.clear()

    def stop_now(self) -> None:
        """Stop the live display from a signal handler: without waiting for a drawing thread (the lock is taken
        only if it is free within half a second; an RLock, so the main thread's own hold does not block it)."""
        if self.lock.acquire(timeout=0.5):
            try:
                if self.live is not None:
                    self.live.stop()
                    self.live = None
            finally:
                self.lock.release()

    def handle(self, event: tuple) -> None:
        """Apply a worker's event (see :class:`Task`)."""
        kind, key, *payload = event
        apply: Any = {"start": self.start, "advance": self.advance, "finish": self.finish}[kind]
        apply(key, *payload)


_display = _Display()
atexit.register(_display.close)
_sink: Any = None  # a worker's queue to the parent's display (send_to)
_keys = itertools.count()


def _rich_progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
    from rich.text import Text

    class Times(ProgressColumn):
        """Time elapsed and, from the pace so far, time left (none for work whose pieces differ too much in
        size to extrapolate: ``eta=False``)."""

        def render(self, task):
            text = f"{_clock(task.elapsed)} elapsed"
            if task.fields.get("eta") is not False:
                left = task.time_remaining
                text += f", {_clock(left) if left is not None else '-:--'} left"
            return Text(text)

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        Times(),
        console=Console(stderr=True),
        refresh_per_second=2,
    )


def _clock(seconds: float | None) -> str:
    seconds = int(seconds or 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"


class Task:
    """A handle on one piece of work: ``advance()`` as it goes, ``finish()`` once (a ``with`` block does it)."""

    def __init__(
        self,
        description: str,
        total: int | None,
        unit: str = "",
        initial: int = 0,
        eta: bool = True,
        announce: bool = True,
    ):
        self.key = (os.getpid(), next(_keys))
        self._send("start", description, total, unit, initial, eta, announce)

    def _send(self, kind: str, *payload) -> None:
        if _sink is not None:
            _sink.put((kind, self.key, *payload))
        else:
            _display.handle((kind, self.key, *payload))

    def advance(self, n: int = 1) -> None:
        self._send("advance", n)

    def finish(self) -> None:
        self._send("finish")

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


def open_task(
    description: str, total: int | None, unit: str = "", initial: int = 0, eta: bool = True, announce: bool = True
) -> Task:
    """Start showing a piece of work of ``total`` units (None: unknown) of which ``initial`` are done; ``eta``
    False: its units differ too much in cost for a time-left estimate; ``announce`` False: an inner loop, shown
    while it runs but given no line of its own when it finishes."""
    return Task(description, total, unit, initial, eta, announce)


def track(items: Iterable[T], description: str, unit: str = "", total: int | None = None) -> Iterator[T]:
    """Yield ``items`` while showing how many are done (``total``: their count when ``items`` has no len)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with open_task(description, total, unit) as task:
        for item in items:
            yield item
            task.advance()


def stop_display() -> None:
    """Stop this process's live display at once (an interrupt: the terminal left as it was found)."""
    _display.stop_now()


def send_to(queue: Any) -> None:
    """In a worker process: show this process's work through ``queue`` (drained by :func:`relay`)."""
    global _sink
    _sink = queue


@contextmanager
def relay(context: Any) -> Iterator[Any]:
    """A queue (of multiprocessing ``context``) for workers' :func:`send_to`, drained into this process's display
    until the block ends."""
    queue = context.Queue()

    def drain() -> None:
        while (event := queue.get()) is not None:
            _display.handle(event)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield queue
    finally:
        queue.put(None)
        thread.join(timeout=5)
