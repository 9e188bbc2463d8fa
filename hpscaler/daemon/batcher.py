"""Batching windows for pending pods, as Karpenter's batcher.

A window opens with the first trigger; each further trigger pushes its end back by the idle
duration, but never past the maximum duration from the opening. Then the provisioner plans for
everything that arrived in the window at once, so a burst of pods gets one plan, not hundreds.
"""

from __future__ import annotations

import anyio


def window_end(opened: float, last_trigger: float, idle: float, maximum: float) -> float:
    """When a window that opened at `opened` and last saw a trigger at `last_trigger` closes."""
    return min(last_trigger + idle, opened + maximum)


class Batcher:
    """Collects triggers into windows; `wait` returns when one closes."""

    def __init__(self, idle_seconds: float = 1.0, max_seconds: float = 10.0) -> None:
        self.idle = idle_seconds
        self.maximum = max_seconds
        self._event = anyio.Event()
        self._first = 0.0
        self._last = 0.0
        self._count = 0

    @property
    def open(self) -> bool:
        """Whether triggers are waiting for their window to close."""
        return self._count > 0

    def trigger(self) -> None:
        """Something worth provisioning for happened (a new pending pod, a lost node)."""
        now = anyio.current_time()
        if self._count == 0:
            self._first = now  # the window opens with its first trigger, waited for or not
        self._count += 1
        self._last = now
        self._event.set()

    async def wait(self) -> tuple[int, float]:
        """Wait for the next window to close; return (triggers in it, when it opened)."""
        await self._event.wait()
        opened = self._first
        while True:
            self._event = anyio.Event()
            remaining = window_end(opened, self._last, self.idle, self.maximum) - anyio.current_time()
            if remaining <= 0:
                break
            with anyio.move_on_after(remaining):
                await self._event.wait()
        count, self._count = self._count, 0
        self._event = anyio.Event()
        return count, opened
