"""Out-of-capacity offerings with adaptive backoff.

Karpenter caches an insufficient-capacity offering for a fixed 3 minutes; a pool that stays empty for
an hour is then retried 20 times. Here each (instance group, zone) offering backs off exponentially
with every failure in a row and forgets its history after a quiet period, so a briefly empty pool is
retried soon and a persistently empty one rarely. Pure data: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Offering = tuple[str, str]  # (instance group, zone)


@dataclass(slots=True)
class Backoff:
    """The failure history of one offering."""

    failures: int
    until: float
    last_failure: float
    reason: str


@dataclass(slots=True)
class UnavailableOfferings:
    """Which offerings are out of capacity, and until when."""

    initial_seconds: float = 180.0
    max_seconds: float = 1800.0
    multiplier: float = 2.0
    reset_after_seconds: float = 3 * 3600.0
    entries: dict[Offering, Backoff] = field(default_factory=dict)

    def mark(self, group: str, zone: str, now: float, reason: str = "insufficient capacity") -> float:
        """Record a capacity failure; returns the time until which the offering is skipped."""
        previous = self.entries.get((group, zone))
        failures = 1
        if previous is not None and now - previous.last_failure < self.reset_after_seconds:
            failures = previous.failures + 1
        backoff = min(self.max_seconds, self.initial_seconds * self.multiplier ** (failures - 1))
        until = now + backoff
        self.entries[(group, zone)] = Backoff(failures, until, now, reason)
        return until

    def mark_once(
        self, group: str, zone: str, now: float, reason: str, window_seconds: float
    ) -> float | None:
        """`mark`, unless the offering failed within `window_seconds`: several signals of one event
        (four Spot notices of one reclaim) are one capacity signal, not four failures in a row.
        Returns the new backoff end, or None when the signal was folded into the recent one.
        """
        previous = self.entries.get((group, zone))
        if previous is not None and now - previous.last_failure < window_seconds:
            return None
        return self.mark(group, zone, now, reason)

    def mark_available(self, group: str, zone: str, requested_at: float) -> None:
        """A launch requested at `requested_at` succeeded: forget the failures recorded before it.

        A failure recorded since (an interruption of the offering a moment ago) is newer news than
        this launch and stands.
        """
        entry = self.entries.get((group, zone))
        if entry is not None and entry.last_failure <= requested_at:
            del self.entries[(group, zone)]

    def is_unavailable(self, group: str, zone: str, now: float) -> bool:
        """Whether the offering is still backing off at `now`."""
        entry = self.entries.get((group, zone))
        return entry is not None and entry.until > now

    def snapshot(self, now: float) -> dict[Offering, str]:
        """The offerings unavailable at `now`, with a reason for plans and pod events."""
        return {
            key: f"{entry.reason} ({entry.failures} in a row), retry in {entry.until - now:.0f}s"
            for key, entry in self.entries.items()
            if entry.until > now
        }

    def to_json(self) -> list[dict[str, Any]]:
        """Serialisable state, so a restarted daemon keeps its backoffs."""
        return [
            {
                "group": g,
                "zone": z,
                "failures": e.failures,
                "until": e.until,
                "lastFailure": e.last_failure,
                "reason": e.reason,
            }
            for (g, z), e in sorted(self.entries.items())
        ]

    def load_json(self, data: list[dict[str, Any]]) -> None:
        """Restore state written by `to_json`."""
        for item in data:
            self.entries[(str(item["group"]), str(item["zone"]))] = Backoff(
                int(item["failures"]), float(item["until"]), float(item["lastFailure"]), str(item["reason"])
            )
