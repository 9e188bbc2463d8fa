"""Decide what to do about nodes in flight, from what HyperPod reports. Pure: no I/O.

In continuous provisioning mode HyperPod retries a failed launch forever. An autoscaler that falls
back to another instance group without first cancelling the failed request ends up with both once
capacity returns, so a launch that fails or takes too long is given up: its offering is marked out
of capacity and the node is deleted before the pods are planned elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hpscaler.backends.types import HyperPodNode, NodeStatus

CAPACITY_ERRORS = (
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "MaxSpotInstanceCountExceeded",
    "VcpuLimitExceeded",
    "UnfulfillableCapacity",
    "SpotCapacity",
)


@dataclass(slots=True)
class InFlight:
    """A node hpscaler asked for, from the BatchAddClusterNodes answer until it joins or is given up."""

    logical_id: str
    group: str
    node_pool: str
    requested_at: float
    for_pods: tuple[str, ...] = ()
    # The labels the plan gave the node (registration puts them on it); empty for adopted nodes.
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class GiveUp:
    """An in-flight node to cancel, and whether its offering should be marked out of capacity."""

    logical_id: str
    group: str
    zone: str
    reason: str
    out_of_capacity: bool


@dataclass(slots=True)
class LaunchReview:
    """The outcome of comparing in-flight records with HyperPod's node list."""

    give_up: list[GiveUp] = field(default_factory=list)
    joined: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    adopted: list[HyperPodNode] = field(default_factory=list)


def is_capacity_error(message: str) -> bool:
    """Whether a launch failure message means the offering has no capacity."""
    return any(code.lower() in message.lower() for code in CAPACITY_ERRORS)


def review_launches(
    inflight: Mapping[str, InFlight],
    nodes: Iterable[HyperPodNode],
    joined_instances: set[str],
    managed_groups: set[str],
    now: float,
    *,
    launch_timeout: float,
    registration_timeout: float,
    group_zone: Mapping[str, str],
) -> LaunchReview:
    """Sort in-flight nodes into joined, vanished and given up; adopt unknown launching nodes."""
    review = LaunchReview()
    seen: set[str] = set()
    for node in nodes:
        seen.add(node.logical_id)
        record = inflight.get(node.logical_id)
        if record is None:
            # After a restart the records are gone but HyperPod still launches the nodes: adopt them
            # so they count as capacity on its way instead of being requested again.
            if (node.group in managed_groups and node.status in (NodeStatus.PENDING, NodeStatus.FAILURE)) or (
                node.group in managed_groups
                and node.status is NodeStatus.RUNNING
                and node.instance_id not in joined_instances
            ):
                review.adopted.append(node)
            continue
        zone = node.zone or group_zone.get(node.group, "")
        age = now - record.requested_at
        if node.status is NodeStatus.RUNNING and node.instance_id in joined_instances:
            review.joined.append(node.logical_id)
        elif node.status in (NodeStatus.NOT_FOUND, NodeStatus.SHUTTING_DOWN):
            review.vanished.append(node.logical_id)
        elif node.status is NodeStatus.FAILURE:
            review.give_up.append(
                GiveUp(
                    node.logical_id,
                    node.group,
                    zone,
                    node.message or "launch failed",
                    is_capacity_error(node.message) or not node.message,
                )
            )
        elif node.status is NodeStatus.PENDING and age > launch_timeout:
            review.give_up.append(
                GiveUp(node.logical_id, node.group, zone, f"still Pending after {age:.0f}s", True)
            )
        elif node.status is NodeStatus.RUNNING and age > launch_timeout + registration_timeout:
            review.give_up.append(
                GiveUp(node.logical_id, node.group, zone, f"Running but not joined after {age:.0f}s", False)
            )
    review.vanished.extend(lid for lid in inflight if lid not in seen)
    return review
