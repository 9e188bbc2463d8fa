"""A progress line on stderr for long `plan` and `simulate` runs, when stderr is a terminal.

One line, redrawn in place at most every `interval` seconds and erased at the end, so it never
mixes with the plan or report on stdout. It shows the phase (reading, scheduling, writing for
`plan`; simulating for `simulate`), how far it is when that is known, and the seconds the phase
has taken. Nothing at all is written when stderr is not a terminal (pipes, CI, tests), nor before
the run has lasted `delay` seconds: a quick run stays silent. `HPSCALER_PROGRESS=always` or `never`
overrides the terminal check, `HPSCALER_PROGRESS_DELAY` the seconds before the line first shows.

A phase that is one long call with nothing to report (`solve()`) gets a ticker thread that redraws
the elapsed time, so the line does not look stuck.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["DELAY_ENV", "ENV", "ProgressLine", "for_stderr"]

_CLEAR = "\r\x1b[K"


class ProgressLine:
    """The line (see the module docstring); `enabled=False` makes every call a no-op."""

    def __init__(
        self,
        stream: TextIO,
        *,
        enabled: bool,
        command: str,
        interval: float = 0.2,
        delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.enabled = enabled
        self.command = command
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.show_after = self.started + delay
        self.phase_name = ""
        self.phase_started = self.started
        self.detail = ""
        self.drawn = False
        self.last_draw = float("-inf")
        self._lock = threading.Lock()

    def phase(self, name: str, detail: str = "") -> None:
        """Start a phase: what the run is doing now."""
        if not self.enabled:
            return
        self.phase_name, self.detail, self.phase_started = name, detail, self.clock()
        self._draw(force=True)

    def update(self, detail: str) -> None:
        """How far the phase is (drawn at most every `interval` seconds)."""
        if not self.enabled:
            return
        self.detail = detail
        self._draw()

    def fraction(self, done: float, total: float, what: str = "") -> None:
        """`update` with a percentage of `total` (`what` says of what, e.g. "53 MB")."""
        if self.enabled and total > 0:
            self.update(f"{min(100.0, 100.0 * done / total):.0f}%" + (f" of {what}" if what else ""))

    def _draw(self, force: bool = False) -> None:
        now = self.clock()
        if now < self.show_after or (not force and now - self.last_draw < self.interval):
            return
        with self._lock:
            self.last_draw = now
            detail = f" {self.detail}" if self.detail else ""
            line = f"{self.command}: {self.phase_name}{detail} ({now - self.phase_started:.0f}s)"
            self.stream.write(_CLEAR + line)
            self.stream.flush()
            self.drawn = True

    @contextmanager
    def ticking(self, name: str, detail: str = "") -> Iterator[None]:
        """A phase that reports nothing itself: a thread redraws its elapsed time until it ends."""
        self.phase(name, detail)
        if not self.enabled:
            yield
            return
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(self.interval):
                self._draw()

        ticker = threading.Thread(target=tick, name="hpscaler-progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()

    def close(self) -> None:
        """Erase the line (call before writing the result)."""
        if self.enabled and self.drawn:
            with self._lock:
                self.drawn = False
                with contextlib.suppress(OSError, ValueError):  # the terminal is gone: nothing to erase
                    self.stream.write(_CLEAR)
                    self.stream.flush()


ENV = "HPSCALER_PROGRESS"  # "always" or "never" overrides the terminal check
DELAY_ENV = "HPSCALER_PROGRESS_DELAY"  # seconds before the line first shows (default 1)


def for_stderr(command: str) -> ProgressLine:
    """The line on stderr, enabled when stderr is a terminal (`HPSCALER_PROGRESS` overrides)."""
    stream = sys.stderr
    choice = os.environ.get(ENV, "").strip().lower()
    enabled = choice == "always" or (choice != "never" and bool(getattr(stream, "isatty", lambda: False)()))
    try:
        delay = max(0.0, float(os.environ.get(DELAY_ENV, "1")))
    except ValueError:
        delay = 1.0
    return ProgressLine(stream, enabled=enabled, command=command, delay=delay)
