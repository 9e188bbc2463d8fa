"""Underutilization: a node goes when every pod on it fits on the nodes that stay.

Karpenter's single-node consolidation by deletion: the pods are placed by the scheduler's rules onto
the other nodes, with no new node allowed, and stay there for the candidates tried after it. Only
under `consolidationPolicy: WhenEmptyOrUnderutilized`.
"""

from __future__ import annotations

from hpscaler.scheduling.disruption.consolidating import evacuate, settled
from hpscaler.scheduling.disruption.room import Room
from hpscaler.scheduling.disruption.types import Candidate, Hold


class Underutilization:
    """The `Underutilized` disruption method."""

    @property
    def reason(self) -> str:
        """Karpenter's reason name."""
        return "Underutilized"

    def claims(self, candidate: Candidate) -> bool:
        """Every node with pods to move (the methods before it took the others)."""
        return True

    def should_disrupt(self, candidate: Candidate, now: float) -> Hold | None:
        """Once consolidateAfter has passed, if the NodePool consolidates underutilized nodes."""
        hold = settled(candidate, now)
        if hold is None and candidate.pool.disruption.consolidation_policy == "WhenEmpty":
            return Hold("consolidationPolicy is WhenEmpty")
        return hold

    def simulate(self, candidate: Candidate, room: Room) -> str | None:
        """Move its pods onto the nodes that stay, then out of the room."""
        return evacuate(candidate, room)
