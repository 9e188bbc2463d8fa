"""Capacity booked for provisioned ProvisioningRequests, and when a booking ends. Pure: no I/O.

As Cluster Autoscaler does (`processors/provreq/processor.go`, bookCapacity), a provisioned request
books its capacity by placing its pods, less those of its consumers that already exist, on the nodes
that exist or are on their way, without provisioning anything. Where they land, a holder pod keeps
the room: other pending pods are planned around it, and consolidation never takes the node (the
holder is `do-not-disrupt`). A booking that no longer fits means its nodes went away: the request's
capacity is revoked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hpscaler.model import Gang, Node, Pod
from hpscaler.provisioning.provreq import (
    BEST_EFFORT_ATOMIC,
    BOOKING_EXPIRED,
    BOOKING_SECONDS,
    CAPACITY_LOST,
    CAPACITY_REVOKED,
    EXPIRED,
    EXPIRY_SECONDS,
    FAILED,
    FAILED_TO_CREATE_PODS,
    PROVISIONED,
    RESERVATION_EXPIRED,
    VALID_UNTIL,
    ProvisioningRequest,
    RequestCondition,
    StatusChange,
    TemplateError,
    holder,
    queue_order,
    request_pods,
    scheduling_input,
    without_provisioning,
)
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import InFlightNode, SchedulingInput


@dataclass(slots=True)
class Booking:
    """Nodes and in-flight nodes with the holders of booked capacity attached."""

    nodes: list[Node]
    inflight: list[InFlightNode]
    held: dict[str, set[str]] = field(default_factory=dict)  # request -> node names holding it
    lost: dict[str, str] = field(default_factory=dict)  # request -> why its booking no longer fits
    broken: dict[str, str] = field(default_factory=dict)  # request -> why its pods cannot be built
    holders: dict[str, list[Pod]] = field(default_factory=dict)  # node or in-flight node -> holders

    def hold(self, pods: Sequence[Pod], where: Mapping[str, str]) -> None:
        """Attach holders for `pods` at `where` (pod key -> node or in-flight node name)."""
        by_node: dict[str, list[Pod]] = {}
        for pod in pods:
            name = where.get(pod.key)
            if name:
                by_node.setdefault(name, []).append(holder(pod, name))
                self.holders.setdefault(name, []).append(by_node[name][-1])
                self.held.setdefault(f"{pod.namespace}/{pod.owner_name}", set()).add(name)
        if not by_node:
            return
        self.nodes = [
            dataclasses.replace(n, pods=[*n.pods, *by_node[n.name]]) if n.name in by_node else n
            for n in self.nodes
        ]
        self.inflight = [
            dataclasses.replace(f, pods=[*f.pods, *by_node[f.name]]) if f.name in by_node else f
            for f in self.inflight
        ]


def with_holders(nodes: Sequence[Node], held: Mapping[str, Sequence[Pod]]) -> list[Node]:
    """`nodes` with the holders of booked capacity bound to them (copies where there are any)."""
    if not held:
        return list(nodes)
    return [dataclasses.replace(n, pods=[*n.pods, *held[n.name]]) if n.name in held else n for n in nodes]


def placements(
    plan_existing: Mapping[str, list[str]], plan_inflight: Mapping[str, list[str]]
) -> dict[str, str]:
    """Pod key -> the node (or in-flight node) a plan put it on."""
    where = {key: name for name, keys in plan_existing.items() for key in keys}
    where.update({key: name for name, keys in plan_inflight.items() for key in keys})
    return where


def place_bookings(
    requests: Sequence[ProvisioningRequest],
    templates: Mapping[str, Pod],
    consumed: Mapping[str, int],
    nodes: Sequence[Node],
    inflight: Sequence[InFlightNode],
    base: SchedulingInput,
) -> Booking:
    """Hold the capacity of every booked request on `nodes` and `inflight`."""
    booking = Booking(list(nodes), list(inflight))
    pods: list[Pod] = []
    wanted: dict[str, list[Pod]] = {}
    for req in queue_order(requests):
        if not req.booked:
            continue
        try:
            all_pods = request_pods(req, templates)
        except TemplateError as exc:
            booking.broken[req.key] = str(exc)
            continue
        left = max(0, len(all_pods) - consumed.get(req.key, 0))
        if not left:
            continue
        gang = Gang(all_pods[0].gang.name if all_pods[0].gang else req.name, left)
        mine = [dataclasses.replace(p, gang=gang) for p in all_pods[:left]]
        wanted[req.key] = mine
        pods.extend(mine)
    if not pods:
        return booking
    plan = solve(scheduling_input(without_provisioning(base), pods, booking.nodes, booking.inflight))
    where = placements(plan.existing, plan.inflight)
    reasons = {u.pod: u.reason for u in plan.unschedulable}
    for key, mine in wanted.items():
        missing = [p for p in mine if p.key not in where]
        if missing:
            booking.lost[key] = (
                f"the capacity booked for {len(mine)} pods no longer fits on the nodes that exist or are "
                f"on their way (a node holding it was removed or its launch failed): "
                f"{reasons.get(missing[0].key, 'no room')}; create the request again"
            )
    booking.hold([p for p in pods if f"{p.namespace}/{p.owner_name}" not in booking.lost], where)
    return booking


def review(
    requests: Sequence[ProvisioningRequest],
    booking: Booking,
    now: float,
    *,
    booking_seconds: float = BOOKING_SECONDS,
    expiry_seconds: float = EXPIRY_SECONDS,
) -> list[StatusChange]:
    """Bookings that end (expired, revoked, unbookable) and requests never provisioned in time."""
    changes: list[StatusChange] = []
    for req in queue_order(requests):
        if req.finished:
            continue
        provisioned = req.condition(PROVISIONED)
        if req.booked and provisioned is not None:
            if req.key in booking.broken:
                condition = RequestCondition(
                    FAILED,
                    "True",
                    "FailedToBookCapacity",
                    f"cannot book capacity: {booking.broken[req.key]}",
                    now,
                )
            elif req.key in booking.lost:
                condition = RequestCondition(
                    CAPACITY_REVOKED, "True", CAPACITY_LOST, booking.lost[req.key], now
                )
            elif provisioned.since + booking_seconds <= now:
                condition = RequestCondition(
                    BOOKING_EXPIRED,
                    "True",
                    RESERVATION_EXPIRED,
                    f"Capacity reservation time is expired: the capacity was held for {booking_seconds:.0f}s "
                    "after Provisioned and is now free for other pods; create the pods (admit the workload) "
                    "sooner, or create a new request",
                    now,
                )
            else:
                continue
            changes.append(StatusChange(req.key, (condition,)))
        elif (valid := _valid_until(req)) is not None and req.created + valid <= now:
            message = (
                f"ProvisioningRequest is expired: not provisioned within {VALID_UNTIL}={valid:.0f}s of its "
                "creation; create it again (with a longer validity) once capacity is likely"
            )
            changes.append(StatusChange(req.key, (RequestCondition(FAILED, "True", EXPIRED, message, now),)))
        elif req.created + expiry_seconds <= now:
            message = (
                f"ProvisioningRequest is expired: not provisioned within {expiry_seconds / 86400:.0f} days "
                "of its creation; check its pods' requests against the NodePools, then create it again"
            )
            changes.append(StatusChange(req.key, (RequestCondition(FAILED, "True", EXPIRED, message, now),)))
    return changes


def _valid_until(req: ProvisioningRequest) -> float | None:
    """The best-effort-atomic `ValidUntilSeconds` parameter: how long to keep trying (None: unset or
    not a number of seconds, in which case the 7-day expiry applies)."""
    text = req.parameters.get(VALID_UNTIL, "")
    if req.class_name != BEST_EFFORT_ATOMIC or not text.isdigit():
        return None
    return float(text)


def unbuildable(req: ProvisioningRequest, error: TemplateError, now: float) -> StatusChange:
    """`Failed=True` for a request whose pods cannot be built from its PodTemplates."""
    return StatusChange(req.key, (RequestCondition(FAILED, "True", FAILED_TO_CREATE_PODS, str(error), now),))
