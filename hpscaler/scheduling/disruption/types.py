"""What a consolidation decision is made of: candidates, the methods that judge them, the decision."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from hpscaler.model import Node, NodePool, Pod

if TYPE_CHECKING:
    from hpscaler.scheduling.disruption.room import Room


@dataclass(frozen=True, slots=True)
class Removal:
    """A node to remove and the reason (Karpenter's: Empty, Underutilized, Expired)."""

    node: str
    reason: str
    node_pool: str


@dataclass(slots=True)
class ConsolidationDecision:
    """Nodes to remove now, why every other candidate stays, and when time alone could change that."""

    remove: list[Removal] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    recheck_at: float = math.inf

    def recheck(self, at: float) -> None:
        """Look again at `at` at the latest: a timer that could change the answer matures then."""
        self.recheck_at = min(self.recheck_at, at)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A Ready node of a NodePool, not being disrupted already, as the disruption methods see it."""

    node: Node
    pool: NodePool
    movable: tuple[Pod, ...]  # its pods but DaemonSet pods, which go with the node
    expired: bool  # it outlived its NodePool's expireAfter
    last_pod_change: float  # when a pod last came or went (its creation if none did)


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a method keeps a candidate for now, and when that may change by time alone."""

    why: str
    until: float = math.inf


class DisruptionMethod(Protocol):
    """One reason to disrupt a node (Karpenter's `disruption.Method`).

    Each candidate is judged by the first method, in order, that `claims` it; the candidates of all
    methods are then tried in one order, cheapest disruption first, against the disruption budget
    for the method's `reason`.
    """

    @property
    def reason(self) -> str:
        """The disruption reason budgets and metrics name (Karpenter's `DisruptionReason`)."""
        ...

    def claims(self, candidate: Candidate) -> bool:
        """Whether the candidate is this method's to judge."""
        ...

    def should_disrupt(self, candidate: Candidate, now: float) -> Hold | None:
        """None when the method may disrupt the candidate (budgets and its pods permitting)."""
        ...

    def simulate(self, candidate: Candidate, room: Room) -> str | None:
        """Take the candidate out of `room`, moving its pods as the method requires; None when done,
        else why the node stays (and `room` is unchanged)."""
        ...
