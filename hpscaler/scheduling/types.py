"""Inputs and outputs of the scheduler: plain data, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hpscaler.catalogue import Catalogue
from hpscaler.model import CapacityType, InstanceGroup, Node, NodeClass, NodePool, Pod, Resources


@dataclass(slots=True)
class InFlightNode:
    """A node hpscaler asked HyperPod for that has not joined the cluster yet."""

    name: str  # HyperPod NodeLogicalId (or a planned name)
    node_pool: str
    instance_group: str
    instance_type: str
    zone: str
    capacity_type: CapacityType
    pods: list[Pod] = field(default_factory=list)  # pods already nominated to it


@dataclass(frozen=True, slots=True)
class SchedulingInput:
    """Everything a scheduling decision depends on, at one instant."""

    pods: Sequence[Pod]
    node_pools: Sequence[NodePool]
    node_classes: Sequence[NodeClass]
    groups: Sequence[InstanceGroup]
    catalogue: Catalogue
    nodes: Sequence[Node] = ()
    inflight: Sequence[InFlightNode] = ()
    daemonsets: Sequence[Pod] = ()
    # Spot placement score (1-10) by zone name or zone id; missing zones score 0.
    placement_scores: Mapping[str, float] = field(default_factory=dict)
    # (instance group, zone) offerings currently out of capacity -> why (shown in reasons).
    unavailable: Mapping[tuple[str, str], str] = field(default_factory=dict)
    region: str = ""
    # Gang (`namespace/name`) -> the zone its nodes in flight were launched in: finish it there if it fits.
    gang_zones: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class PlannedNode:
    """A new node the plan asks HyperPod for."""

    name: str
    node_pool: str
    instance_group: str
    instance_type: str
    zone: str
    capacity_type: CapacityType
    allocatable: Resources
    price_per_hour: float
    pods: list[str] = field(default_factory=list)
    # What the node will be labelled with: its zone, capacity type, NodePool, instance group and type,
    # and the one value of each key the NodePool leaves open that its pods agreed on.
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Unschedulable:
    """A pod no node can take, and why."""

    pod: str
    reason: str


@dataclass(slots=True)
class Plan:
    """The scheduler's answer: where every input pod goes, or why it cannot go anywhere."""

    new_nodes: list[PlannedNode] = field(default_factory=list)
    existing: dict[str, list[str]] = field(default_factory=dict)  # node name -> pod keys
    inflight: dict[str, list[str]] = field(default_factory=dict)  # in-flight node -> pod keys
    unschedulable: list[Unschedulable] = field(default_factory=list)

    @property
    def cost_per_hour(self) -> float:
        """What the new nodes cost per hour."""
        return sum(n.price_per_hour for n in self.new_nodes)

    def nodes_by_group(self) -> dict[str, int]:
        """How many new nodes each instance group gets."""
        counts: dict[str, int] = {}
        for node in self.new_nodes:
            counts[node.instance_group] = counts.get(node.instance_group, 0) + 1
        return counts
