"""One round of ProvisioningRequest decisions: bookings, then each waiting request in queue order.

Pure: the daemon's loop (`hpscaler.daemon.provreq`), `hpscaler plan` and the tests call `decide`
with what they know and carry its answer out. Check-capacity requests are answered at once and
book what they found, so the next request in the queue sees the room as taken (Cluster Autoscaler
commits each found request to its snapshot the same way). One best-effort-atomic request is
provisioned per round, like Cluster Autoscaler's "pick 1 ProvisioningRequest": its nodes must be
asked for, and the next request must see them in flight before it is planned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hpscaler.model import LABEL_ZONE, Node, Pod
from hpscaler.provisioning.bookings import Booking, place_bookings, placements, review, unbuildable
from hpscaler.provisioning.provreq import (
    ACCEPTED,
    BEING_PROVISIONED,
    CAPACITY_IS_FOUND,
    CAPACITY_IS_NOT_FOUND,
    CAPACITY_IS_PROVISIONED,
    CHECK_CAPACITY,
    FAILED,
    NO_RETRY,
    PROVISIONED,
    REASON_ACCEPTED,
    ProvisioningRequest,
    RequestCondition,
    StatusChange,
    TemplateError,
    consumers,
    placed_keys,
    queue_order,
    request_pods,
    scheduling_input,
    without_provisioning,
)
from hpscaler.quantity import format_resource
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import InFlightNode, Plan, SchedulingInput

ACCEPTED_MESSAGE = "ProvisioningRequest is accepted by hpscaler"


@dataclass(slots=True)
class Attempt:
    """A best-effort-atomic request whose pods all fit: the nodes in `plan` are to be asked for."""

    request: ProvisioningRequest
    pods: list[Pod]
    plan: Plan
    zone: str = ""  # finishing a partial launch in this zone


@dataclass(slots=True)
class Decision:
    """What one round decided: status changes, the booking to plan around, and a request to provision."""

    changes: list[StatusChange] = field(default_factory=list)
    booking: Booking | None = None
    attempt: Attempt | None = None
    # requests whose launches are to be cancelled (a partial launch the zone cannot finish) -> pod keys
    release: dict[str, set[str]] = field(default_factory=dict)
    # request -> the nodes (existing, in-flight or new) its pods were placed on this round
    nodes: dict[str, list[str]] = field(default_factory=dict)


def accepted(now: float) -> RequestCondition:
    """`Accepted=True`, as Cluster Autoscaler writes it for every request it takes on."""
    return RequestCondition(ACCEPTED, "True", REASON_ACCEPTED, ACCEPTED_MESSAGE, now)


def not_found(req: ProvisioningRequest, why: str, now: float) -> RequestCondition:
    """`Provisioned=False` (tried again later), or `Failed=True` for a check with `noRetry: "true"`."""
    if req.class_name == CHECK_CAPACITY and req.parameters.get(NO_RETRY) == "true":
        return RequestCondition(FAILED, "True", CAPACITY_IS_NOT_FOUND, f"capacity is not found: {why}", now)
    return RequestCondition(
        PROVISIONED,
        "False",
        CAPACITY_IS_NOT_FOUND,
        f"Capacity is not found, hpscaler will try again: {why}",
        now,
    )


def _why(plan: Plan, pods: Sequence[Pod]) -> str:
    keys = {p.key for p in pods}
    reasons = [u.reason for u in plan.unschedulable if u.pod in keys]
    return reasons[0] if reasons else "no room"


def _nodes_of(plan: Plan, pods: Sequence[Pod]) -> list[str]:
    keys = {p.key for p in pods}
    names = {name for name, placed in (*plan.existing.items(), *plan.inflight.items()) if keys & set(placed)}
    names.update(n.name for n in plan.new_nodes if keys & set(n.pods))
    return sorted(names)


def decide(
    requests: Sequence[ProvisioningRequest],
    templates: Mapping[str, Pod],
    live_pods: Sequence[Pod],
    nodes: Sequence[Node],
    inflight: Sequence[InFlightNode],
    base: SchedulingInput,
    now: float,
    *,
    booking_seconds: float,
    provision: bool = True,
) -> Decision:
    """Decide one round (see the module docstring); `provision=False` leaves atomic requests waiting."""
    booking = place_bookings(requests, templates, consumers(live_pods), nodes, inflight, base)
    decision = Decision(review(requests, booking, now, booking_seconds=booking_seconds), booking)
    ending = {c.request for c in decision.changes}
    ordered = queue_order(requests)
    for req in [*(r for r in ordered if r.launching), *(r for r in ordered if not r.launching)]:
        if req.finished or req.booked or req.key in ending:
            continue
        try:
            pods = request_pods(req, templates)
        except TemplateError as exc:
            decision.changes.append(unbuildable(req, exc, now))
            continue
        if req.launching:
            _launching(decision, booking, req, pods, base, now, provision=provision)
        elif req.class_name == CHECK_CAPACITY:
            _check(decision, booking, req, pods, base, now)
        elif provision and decision.attempt is None:
            _atomic(decision, booking, req, pods, base, now)
    return decision


def _found(
    decision: Decision, booking: Booking, req: ProvisioningRequest, pods: list[Pod], plan: Plan, now: float
) -> None:
    """`Provisioned=True` (`CapacityIsFound`): the pods fit where `plan` put them, which is booked."""
    booking.hold(pods, placements(plan.existing, plan.inflight))
    decision.nodes[req.key] = _nodes_of(plan, pods)
    found = RequestCondition(PROVISIONED, "True", CAPACITY_IS_FOUND, "Capacity is found in the cluster", now)
    decision.changes.append(StatusChange(req.key, (accepted(now), found)))


def _check(
    decision: Decision,
    booking: Booking,
    req: ProvisioningRequest,
    pods: list[Pod],
    base: SchedulingInput,
    now: float,
) -> None:
    plan = solve(scheduling_input(without_provisioning(base), pods, booking.nodes, booking.inflight))
    if placed_keys(plan) >= {p.key for p in pods}:
        _found(decision, booking, req, pods, plan, now)
    else:
        why = (
            f"its {len(pods)} pods do not all fit, in one zone, on the nodes that exist or are on their way "
            "(a capacity check provisions nothing)"
        )
        decision.changes.append(StatusChange(req.key, (accepted(now), not_found(req, why, now))))


def _atomic(
    decision: Decision,
    booking: Booking,
    req: ProvisioningRequest,
    pods: list[Pod],
    base: SchedulingInput,
    now: float,
) -> None:
    plan = solve(scheduling_input(base, pods, booking.nodes, booking.inflight))
    if not placed_keys(plan) >= {p.key for p in pods}:
        why = _limits_hint(base, pods, booking) or _why(plan, pods)
        decision.changes.append(StatusChange(req.key, (accepted(now), not_found(req, why, now))))
        return
    if not plan.new_nodes:
        _found(decision, booking, req, pods, plan, now)
        return
    decision.nodes[req.key] = _nodes_of(plan, pods)
    decision.attempt = Attempt(req, pods, plan)


def _launching(
    decision: Decision,
    booking: Booking,
    req: ProvisioningRequest,
    pods: list[Pod],
    base: SchedulingInput,
    now: float,
    *,
    provision: bool,
) -> None:
    """A request whose nodes are on their way: Provisioned once they all joined; a launch that failed
    is finished in the same zone, or everything launched for the request is released."""
    closed = without_provisioning(base)
    joined = solve(scheduling_input(closed, pods, booking.nodes, ()))
    if placed_keys(joined) >= {p.key for p in pods}:
        booking.hold(pods, placements(joined.existing, joined.inflight))
        decision.nodes[req.key] = _nodes_of(joined, pods)
        message = f"Capacity is provisioned: the nodes for all {len(pods)} pods joined the cluster"
        done = RequestCondition(PROVISIONED, "True", CAPACITY_IS_PROVISIONED, message, now)
        decision.changes.append(StatusChange(req.key, (done,)))
        return
    coming = solve(scheduling_input(closed, pods, booking.nodes, booking.inflight))
    if placed_keys(coming) >= {p.key for p in pods}:
        booking.hold(pods, placements(coming.existing, coming.inflight))
        decision.nodes[req.key] = _nodes_of(coming, pods)
        return
    if not provision or decision.attempt is not None:
        return
    zone = _partial_zone(pods, booking, closed)
    pinned = [dataclasses.replace(p, node_selector={**p.node_selector, LABEL_ZONE: zone}) for p in pods]
    plan = solve(scheduling_input(base, pinned if zone else pods, booking.nodes, booking.inflight))
    if zone and placed_keys(plan) >= {p.key for p in pods}:
        decision.attempt = Attempt(req, pinned, plan, zone)
        return
    decision.release[req.key] = {p.key for p in pods}
    why = (
        f"a partial capacity error: nodes for only some of the {len(pods)} pods could be launched"
        + (f" in {zone}" if zone else "")
        + f", and the zone has no room for the rest ({_why(plan, pods)}); every node launched for the "
        "request was released"
    )
    decision.changes.append(StatusChange(req.key, (not_found(req, why, now),)))


def _partial_zone(pods: list[Pod], booking: Booking, closed: SchedulingInput) -> str:
    """The zone holding most of the pods of a partial launch (where finishing costs least)."""
    loose = [dataclasses.replace(p, gang=None) for p in pods]
    plan = solve(scheduling_input(closed, loose, booking.nodes, booking.inflight))
    zones: dict[str, int] = {}
    node_zone = {n.name: n.labels.get(LABEL_ZONE, "") for n in booking.nodes}
    node_zone.update({f.name: f.zone for f in booking.inflight})
    for name, keys in (*plan.existing.items(), *plan.inflight.items()):
        zone = node_zone.get(name, "")
        if zone:
            zones[zone] = zones.get(zone, 0) + len(keys)
    return max(sorted(zones), key=lambda z: zones[z]) if zones else ""


def _limits_hint(base: SchedulingInput, pods: list[Pod], booking: Booking) -> str:
    """If the NodePools' limits are what keeps the pods out, say so (the gang's own reason does not)."""
    limited = [p for p in base.node_pools if p.limits]
    if not limited:
        return ""
    unlimited = dataclasses.replace(
        base, node_pools=[dataclasses.replace(p, limits=()) for p in base.node_pools]
    )
    plan = solve(scheduling_input(unlimited, pods, booking.nodes, booking.inflight))
    if not placed_keys(plan) >= {p.key for p in pods}:
        return ""
    limits = "; ".join(
        f"{p.name}: "
        + ", ".join(
            f"{name}={amount if name == 'nodes' else format_resource(name, amount)}"
            for name, amount in p.limits
        )
        for p in limited
    )
    return (
        f"NodePool limits ({limits}) leave too little room for nodes for all {len(pods)} pods at once; "
        "the request is provisioned when capacity frees up, or raise the limits"
    )


def confirm(
    attempt: Attempt,
    nodes: Sequence[Node],
    inflight: Sequence[InFlightNode],
    base: SchedulingInput,
    now: float,
) -> StatusChange:
    """After the nodes were asked for: `Provisioned=False` (`CapacityIsBeingProvisioned`) if all the pods
    now fit on nodes that exist or are on their way; otherwise `CapacityIsNotFound` (the caller
    releases what was launched). `Provisioned=True` follows once the nodes joined (`decide`)."""
    req, pods = attempt.request, attempt.pods
    plan = solve(scheduling_input(without_provisioning(base), pods, nodes, inflight))
    if placed_keys(plan) >= {p.key for p in pods}:
        zones = sorted({n.zone for n in attempt.plan.new_nodes})
        message = (
            f"{len(attempt.plan.new_nodes)} new nodes in {', '.join(zones)} launching for all "
            f"{len(pods)} pods; Provisioned once they all joined the cluster"
        )
        return StatusChange(
            req.key, (accepted(now), RequestCondition(PROVISIONED, "False", BEING_PROVISIONED, message, now))
        )
    why = (
        f"nodes for all {len(pods)} pods could not be launched at once ({_why(plan, pods)}); "
        "the nodes launched for it were released"
    )
    return StatusChange(req.key, (accepted(now), not_found(req, why, now)))
