"""Expiration: a node that outlived its NodePool's `expireAfter` goes, whatever its pods.

Its pods are not simulated onto the nodes that stay: they are evicted (respecting their budgets and
do-not-disrupt) and provisioning finds them room, new nodes if need be, as Karpenter's expiration does.
Neither consolidateAfter nor the consolidation policy holds an expired node.
"""

from __future__ import annotations

from hpscaler.scheduling.disruption.room import Room
from hpscaler.scheduling.disruption.types import Candidate, Hold


class Expiration:
    """The `Expired` disruption method."""

    @property
    def reason(self) -> str:
        """Karpenter's reason name."""
        return "Expired"

    def claims(self, candidate: Candidate) -> bool:
        """Every expired node."""
        return candidate.expired

    def should_disrupt(self, candidate: Candidate, now: float) -> Hold | None:
        """Always: expiry is not consolidation, so its settling rules do not apply."""
        return None

    def simulate(self, candidate: Candidate, room: Room) -> str | None:
        """The node leaves the room with its pods."""
        room.remove(room.row[candidate.node.name])
        return None
