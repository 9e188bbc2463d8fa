"""Seeded random faults for long scenarios: the plan, drawn from the seed before the run starts.

The plan fixes when each fault happens and what kind it is (an interruption with or without notice, a
rebalance recommendation, a capacity loss of one group for a drawn duration). Which instance an
interruption or a recommendation hits is drawn when it happens, from the running Spot instances, with
its own seeded stream; a fault that finds no running Spot instance waits for one (`RETRY_SECONDS`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from hpscaler.model import CapacityType, InstanceGroup
from hpscaler.simulate.scenario import Scenario

RETRY_SECONDS = 60.0
ChaosKind = Literal["interrupt", "rebalance", "capacity-loss"]


@dataclass(frozen=True, slots=True)
class ChaosEvent:
    """One planned fault, `at` seconds after the scenario's start."""

    at: float
    kind: ChaosKind
    groups: tuple[str, ...]  # the candidates (interrupt, rebalance) or the one group that runs out
    notice: bool = True  # interrupt only
    duration: float = 0.0  # capacity-loss only: capacity comes back after this long


@dataclass(frozen=True, slots=True)
class ChaosCounts:
    """How many faults of each kind: planned from the seed, or observed in the world."""

    interruptions_with_notice: int = 0
    interruptions_without_notice: int = 0
    rebalances: int = 0
    capacity_losses: int = 0

    def as_dict(self) -> dict[str, int]:
        """The report's shape."""
        return {
            "interruptionsWithNotice": self.interruptions_with_notice,
            "interruptionsWithoutNotice": self.interruptions_without_notice,
            "rebalances": self.rebalances,
            "capacityLosses": self.capacity_losses,
        }


def _spot_groups(groups: Sequence[InstanceGroup], named: Sequence[str]) -> tuple[str, ...]:
    return tuple(named) if named else tuple(g.name for g in groups if g.capacity_type is CapacityType.SPOT)


def _arrivals(rng: random.Random, per_hour: float, start: float, end: float) -> list[float]:
    """A Poisson process of `per_hour` events per hour between `start` and `end`."""
    times: list[float] = []
    t = start
    while True:
        t += rng.expovariate(per_hour / 3600.0)
        if t >= end:
            return times
        times.append(t)


def plan_chaos(scenario: Scenario, groups: Sequence[InstanceGroup]) -> tuple[ChaosEvent, ...]:
    """Every random fault of the scenario, in time order; the same seed always gives the same plan."""
    chaos = scenario.chaos
    if chaos is None:
        return ()
    start, end = chaos.start, scenario.chaos_end
    events: list[ChaosEvent] = []
    if (interruptions := chaos.interruptions) is not None:
        rng = random.Random(f"hpscaler-chaos:{scenario.seed}:interruptions")
        candidates = _spot_groups(groups, interruptions.groups)
        for at in _arrivals(rng, interruptions.per_hour, start, end):
            notice = rng.random() >= interruptions.without_notice
            events.append(ChaosEvent(at, "interrupt", candidates, notice=notice))
    if (rebalances := chaos.rebalances) is not None:
        rng = random.Random(f"hpscaler-chaos:{scenario.seed}:rebalances")
        candidates = _spot_groups(groups, rebalances.groups)
        events.extend(
            ChaosEvent(at, "rebalance", candidates) for at in _arrivals(rng, rebalances.per_hour, start, end)
        )
    if (loss := chaos.capacity_loss) is not None:
        rng = random.Random(f"hpscaler-chaos:{scenario.seed}:capacity")
        candidates = _spot_groups(groups, loss.groups)
        out_until: dict[str, float] = {}
        for at in _arrivals(rng, loss.per_hour, start, end):
            duration = rng.uniform(loss.min_duration, loss.max_duration)
            free = [g for g in candidates if out_until.get(g, -1.0) <= at]
            if not free:
                continue  # every group is already out: this loss changes nothing
            group = rng.choice(free)
            out_until[group] = at + duration
            events.append(ChaosEvent(at, "capacity-loss", (group,), duration=duration))
    return tuple(sorted(events, key=lambda e: (e.at, e.kind)))


def planned_counts(plan: Sequence[ChaosEvent]) -> ChaosCounts:
    """The plan's faults by kind."""
    return ChaosCounts(
        interruptions_with_notice=sum(1 for e in plan if e.kind == "interrupt" and e.notice),
        interruptions_without_notice=sum(1 for e in plan if e.kind == "interrupt" and not e.notice),
        rebalances=sum(1 for e in plan if e.kind == "rebalance"),
        capacity_losses=sum(1 for e in plan if e.kind == "capacity-loss"),
    )
