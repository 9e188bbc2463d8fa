"""What the consolidation methods (Empty, Underutilized) share: settling, and moving the pods out.

As Karpenter's `consolidation` base does: a node is considered once its pods have not changed for the
NodePool's `consolidateAfter` (never, when that is "Never").
"""

from __future__ import annotations

from hpscaler.scheduling.disruption.room import Room
from hpscaler.scheduling.disruption.types import Candidate, Hold


def settled(candidate: Candidate, now: float) -> Hold | None:
    """None once consolidateAfter has passed since the node's pods last changed, else why not yet."""
    after = candidate.pool.disruption.consolidate_after_seconds
    if after is None:
        return Hold("consolidateAfter is Never")
    settled_at = candidate.last_pod_change + after
    if now < settled_at:
        return Hold("pods changed less than consolidateAfter ago", settled_at)
    return None


def evacuate(candidate: Candidate, room: Room) -> str | None:
    """Move the node's pods onto the nodes that stay, then take it out of the room; None when done.

    The node's pods now include those earlier removals were simulated onto it: they need a place
    too, or the nodes that stay end up overbooked.
    """
    row = room.row[candidate.node.name]
    movable = [p for p in room.pods[row] if not p.is_daemonset]
    if movable:
        placement = room.place(row, movable)
        if placement is None:
            return "its pods do not fit on the other nodes"
        room.move(placement)
    room.remove(row)
    return None
