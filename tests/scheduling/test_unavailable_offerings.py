"""Out-of-capacity offerings: exponential backoff, reset after a quiet period, snapshot, persistence."""

from __future__ import annotations

import json

from hpscaler.scheduling.unavailable import UnavailableOfferings

G, Z = "spot-a", "us-west-2a"


def test_backoff_doubles_up_to_the_cap() -> None:
    offerings = UnavailableOfferings(initial_seconds=60, max_seconds=300, multiplier=2)
    now = 1000.0
    waits = []
    for _ in range(5):
        until = offerings.mark(G, Z, now)
        waits.append(until - now)
        now = until + 1
    assert waits == [60, 120, 240, 300, 300]


def test_unavailable_until_the_backoff_ends() -> None:
    offerings = UnavailableOfferings(initial_seconds=60)
    offerings.mark(G, Z, 0.0, "InsufficientCapacity")
    assert offerings.is_unavailable(G, Z, 59.9)
    assert not offerings.is_unavailable(G, Z, 60.0)
    assert not offerings.is_unavailable(G, "us-west-2b", 1.0)
    assert offerings.snapshot(30.0) == {(G, Z): "InsufficientCapacity (1 in a row), retry in 30s"}
    assert offerings.snapshot(60.0) == {}


def test_history_resets_after_a_quiet_period_or_a_success() -> None:
    offerings = UnavailableOfferings(initial_seconds=60, reset_after_seconds=3600)
    offerings.mark(G, Z, 0.0)
    assert offerings.mark(G, Z, 100.0) == 100.0 + 120
    assert offerings.mark(G, Z, 100.0 + 3600) == 3700.0 + 60  # quiet for an hour: first failure again
    offerings.mark_available(G, Z, requested_at=3700.0)
    assert not offerings.is_unavailable(G, Z, 3701.0)
    assert offerings.mark(G, Z, 4000.0) == 4060.0


def test_a_success_does_not_wipe_a_failure_newer_than_its_request() -> None:
    offerings = UnavailableOfferings(initial_seconds=60)
    offerings.mark(G, Z, 500.0, "spot interruption")
    offerings.mark_available(G, Z, requested_at=400.0)  # launched before the interruption, joined after
    assert offerings.is_unavailable(G, Z, 501.0)
    offerings.mark_available(G, Z, requested_at=520.0)
    assert not offerings.is_unavailable(G, Z, 521.0)


def test_state_survives_a_restart() -> None:
    offerings = UnavailableOfferings()
    offerings.mark(G, Z, 0.0, "ICE")
    offerings.mark(G, Z, 70.0, "ICE")
    restored = UnavailableOfferings()
    restored.load_json(json.loads(json.dumps(offerings.to_json())))
    assert restored.entries == offerings.entries
    assert restored.mark(G, Z, 200.0) == offerings.mark(G, Z, 200.0)
