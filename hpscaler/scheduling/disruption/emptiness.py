"""Emptiness: a node with no pods but DaemonSet pods goes once it has settled (Karpenter's `Emptiness`).

Both consolidation policies allow it, WhenEmpty and WhenEmptyOrUnderutilized.
"""

from __future__ import annotations

from hpscaler.scheduling.disruption.consolidating import evacuate, settled
from hpscaler.scheduling.disruption.room import Room
from hpscaler.scheduling.disruption.types import Candidate, Hold


class Emptiness:
    """The `Empty` disruption method."""

    @property
    def reason(self) -> str:
        """Karpenter's reason name."""
        return "Empty"

    def claims(self, candidate: Candidate) -> bool:
        """Nodes whose only pods are DaemonSet pods."""
        return not candidate.movable

    def should_disrupt(self, candidate: Candidate, now: float) -> Hold | None:
        """Once consolidateAfter has passed."""
        return settled(candidate, now)

    def simulate(self, candidate: Candidate, room: Room) -> str | None:
        """Out of the room, with any pods earlier removals were simulated onto it."""
        return evacuate(candidate, room)
