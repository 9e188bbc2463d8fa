"""Callbacks due after a delay in loop time: the one timer heap every fake of a world shares."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import anyio

_EPSILON = 1e-9


class Timers:
    """Callbacks due after a delay in loop time (virtual under looptime), fired by `run()`.

    A single heap instead of one task per delay keeps the firing order deterministic: by due time,
    then by scheduling order.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._deferred: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake = anyio.Event()

    def __len__(self) -> int:
        return len(self._heap) + len(self._deferred)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run `callback` once `delay` seconds of loop time have passed."""
        seq = next(self._seq)
        try:
            due = anyio.current_time() + max(0.0, delay)
        except RuntimeError:
            # Set-up code outside the event loop: the delay counts from when run() starts.
            self._deferred.append((delay, seq, callback))
            return
        heapq.heappush(self._heap, (due, seq, callback))
        self._wake.set()

    async def run(self) -> None:
        """Fire callbacks as they fall due, forever (cancel to stop)."""
        while True:
            now = anyio.current_time()
            for delay, seq, callback in self._deferred:
                heapq.heappush(self._heap, (now + max(0.0, delay), seq, callback))
            self._deferred.clear()
            while self._heap and self._heap[0][0] <= now + _EPSILON:
                heapq.heappop(self._heap)[2]()
            # No await since the heap was last read, so no call_later can be missed here.
            self._wake = anyio.Event()
            timeout = self._heap[0][0] - now if self._heap else math.inf
            with anyio.move_on_after(timeout):
                await self._wake.wait()
