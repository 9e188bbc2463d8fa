"""Decide what to do about nodes in flight, from what HyperPod reports. Pure: no I/O.

In continuous provisioning mode HyperPod retries a failed launch forever. An autoscaler that falls
back to another instance group without first cancelling the failed request ends up with both once
capacity returns, so a launch that fails for lack of capacity, or takes too long, is given up: its
offering is marked out of capacity and the node is deleted before the pods are planned elsewhere.

Node states as the continuous-provisioning page defines ClusterInstanceStatus
(/work/shared/seed-examples/hyperpod-continuous-provisioning.txt):

- Pending "is being provisioned or rebooted": a Pending node that had joined is rebooting, not a
  launch, so it is neither adopted nor timed out;
- DeepHealthCheckInProgress "could take anywhere between a few mins to several hours": the node is
  capacity on its way (adopted after a restart), and its launch clock only starts when it ends;
- Failure: "the system will automatically retry provisioning", so only a capacity error cancels
  at once; any other failure is left to HyperPod until the launch timeout;
- ShuttingDown "will either transition to Failure status if termination encounters issues, or will
  be successfully removed": a node seen going away is never adopted again, whatever comes next.
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
    health_checked_at: float = 0.0  # last seen in DeepHealthCheckInProgress: the clock restarts
    # The zone and instance type asked for in AvailabilityZones / InstanceTypes ("" = the group's).
    zone: str = ""
    instance_type: str = ""


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
    health_checking: list[str] = field(default_factory=list)  # in-flight nodes in deep health checks
    going: list[str] = field(default_factory=list)  # seen ShuttingDown: never to be adopted again


def is_capacity_error(message: str) -> bool:
    """Whether a launch failure message means the offering has no capacity."""
    return any(code.lower() in message.lower() for code in CAPACITY_ERRORS)


def _adoptable(
    node: HyperPodNode, joined: set[str], registered: set[str], gone: set[str] | frozenset[str]
) -> bool:
    """A node of a managed group that is capacity on its way, with no record (after a restart)."""
    if not node.logical_id or node.logical_id in gone:
        return False  # no id to track it by, or a node on its way out that failed to terminate
    if node.status is NodeStatus.PENDING:
        return node.instance_id not in registered  # with a Node object it is rebooting
    if node.status is NodeStatus.RUNNING:
        return node.instance_id not in joined
    return node.status in (NodeStatus.FAILURE, NodeStatus.DEEP_HEALTH_CHECK)


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
    registered_instances: set[str] | None = None,
    gone: set[str] | frozenset[str] = frozenset(),
) -> LaunchReview:
    """Sort in-flight nodes into joined, vanished and given up; adopt unknown launching nodes.

    `registered_instances`: instances with a Node object, Ready or not (default: the joined ones);
    `gone`: logical ids seen ShuttingDown or deleted by hpscaler.
    """
    registered = joined_instances if registered_instances is None else registered_instances
    review = LaunchReview()
    seen: set[str] = set()
    for node in nodes:
        if node.status is NodeStatus.SHUTTING_DOWN and node.logical_id not in gone:
            review.going.append(node.logical_id)
        seen.add(node.logical_id)
        record = inflight.get(node.logical_id)
        if record is None:
            # After a restart the records are gone but HyperPod still launches the nodes: adopt them
            # so they count as capacity on its way instead of being requested again.
            if node.group in managed_groups and _adoptable(node, joined_instances, registered, gone):
                review.adopted.append(node)
            continue
        zone = node.zone or group_zone.get(node.group, "")
        age = now - max(record.requested_at, record.health_checked_at)
        if node.status is NodeStatus.RUNNING and node.instance_id in joined_instances:
            review.joined.append(node.logical_id)
        elif node.status is NodeStatus.PENDING and node.instance_id and node.instance_id in registered:
            review.joined.append(node.logical_id)  # it joined and is rebooting now
        elif node.status in (NodeStatus.NOT_FOUND, NodeStatus.SHUTTING_DOWN) or node.logical_id in gone:
            review.vanished.append(node.logical_id)
        elif node.status is NodeStatus.DEEP_HEALTH_CHECK:
            review.health_checking.append(node.logical_id)
        elif node.status is NodeStatus.FAILURE and is_capacity_error(node.message):
            review.give_up.append(GiveUp(node.logical_id, node.group, zone, node.message, True))
        elif node.status in (NodeStatus.FAILURE, NodeStatus.PENDING) and age > launch_timeout:
            # HyperPod keeps retrying other failures by itself; past the timeout it is given up,
            # but a failure that is not about capacity does not make the offering unavailable.
            failed = node.status is NodeStatus.FAILURE
            reason = f"{node.message or 'launch failed'}, retried for {age:.0f}s" if failed else ""
            review.give_up.append(
                GiveUp(
                    node.logical_id,
                    node.group,
                    zone,
                    reason or f"still Pending after {age:.0f}s",
                    not failed,
                )
            )
        elif node.status is NodeStatus.RUNNING and age > launch_timeout + registration_timeout:
            review.give_up.append(
                GiveUp(node.logical_id, node.group, zone, f"Running but not joined after {age:.0f}s", False)
            )
    review.vanished.extend(lid for lid in inflight if lid not in seen)
    return review
