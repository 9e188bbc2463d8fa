"""Wall-clock time for timestamps; waiting always goes through anyio so virtual time can drive it."""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    """Seconds since the epoch, as the daemon stamps and compares times."""

    def now(self) -> float:
        """The current time in epoch seconds."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> float:
        """time.time()."""
        return time.time()


class LoopClock:
    """The event loop's clock shifted to an epoch: virtual when the loop runs in virtual time."""

    def __init__(self, epoch: float = 0.0) -> None:
        self._offset = epoch - anyio.current_time()

    def now(self) -> float:
        """Loop time plus the offset fixed at construction."""
        return anyio.current_time() + self._offset
