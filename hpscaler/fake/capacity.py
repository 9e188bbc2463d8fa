"""EC2 capacity of the in-memory HyperPod: how many instances of an offering may run at once.

An offering is an instance type in a zone (by name or id) at a capacity type. Unset means
unlimited. An instance holds its capacity from the moment EC2 accepted its launch until it is gone,
shutting down included, as EC2 counts it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from hpscaler.backends.types import NodeStatus
from hpscaler.model import CapacityType, InstanceGroup

Offering = tuple[str, str, CapacityType]  # instance type, zone (name or id), capacity type


@dataclass(frozen=True, slots=True)
class CapacityChange:
    """An offering's capacity set by a test or the simulator (None: unlimited)."""

    time: float
    offering: Offering
    count: int | None


class Holder(Protocol):
    """What the capacity check reads of a node."""

    capacity_type: CapacityType
    instance_id: str
    instance_type: str
    zone: str
    status: NodeStatus
    reserved: tuple[str, str] | None


class OfferingCapacity:
    """Limits per offering, and whether a launch would find room."""

    def __init__(self, limits: dict[Offering, int | None]) -> None:
        self._limits = limits
        self.changes: list[CapacityChange] = []

    def set(self, offering: Offering, count: int | None, now: float) -> None:
        """Limit concurrently running instances of an offering (None: unlimited)."""
        self._limits[offering] = count
        self.changes.append(CapacityChange(now, offering, count))

    def get(self, offering: Offering) -> int | None:
        """The offering's capacity as set (None: unlimited)."""
        return self._limits.get(offering)

    def has_room(
        self,
        instance_type: str,
        zone: str,
        launching: Holder,
        group: InstanceGroup,
        nodes: Iterable[Holder],
    ) -> bool:
        """Whether `launching`, a node of `group`, would get an instance of this type in this zone."""
        keys = [(instance_type, zone, launching.capacity_type)]
        if zone in group.zones and len(group.zone_ids) == len(group.zones):
            keys.append((instance_type, group.zone_ids[group.zones.index(zone)], launching.capacity_type))
        limit = next((self._limits[k] for k in keys if k in self._limits), None)
        if limit is None:
            return True
        # An instance holds its capacity until it is gone, including while it shuts down; a launch
        # holds the capacity its check found while it is pending.
        holding = sum(
            1
            for n in nodes
            if n is not launching
            and n.capacity_type == launching.capacity_type
            and (
                (n.instance_id and (n.instance_type, n.zone) == (instance_type, zone))
                or (
                    not n.instance_id
                    and n.status == NodeStatus.PENDING
                    and n.reserved == (instance_type, zone)
                )
            )
        )
        return holding < limit
