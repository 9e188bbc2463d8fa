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

from hpscaler.model import Node, Pod
from hpscaler.provisioning.bookings import Booking, place_bookings, placements, review, unbuildable
from hpscaler.provisioning.provreq import (
    ACCEPTED,
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


@dataclass(slots=True)
class Decision:
    """What one round decided: status changes, the booking to plan around, and a request to provision."""

    changes: list[StatusChange] = field(default_factory=list)
    booking: Booking | None = None
    attempt: Attempt | None = None
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
    for req in queue_order(requests):
        if req.finished or req.booked or req.key in ending:
            continue
        try:
            pods = request_pods(req, templates)
        except TemplateError as exc:
            decision.changes.append(unbuildable(req, exc, now))
            continue
        if req.class_name == CHECK_CAPACITY:
            _check(decision, booking, req, pods, base, now)
        elif provision and decision.attempt is None:
            _atomic(decision, booking, req, pods, base, now)
    return decision


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
        booking.hold(pods, placements(plan.existing, plan.inflight))
        decision.nodes[req.key] = _nodes_of(plan, pods)
        found = RequestCondition(
            PROVISIONED, "True", CAPACITY_IS_FOUND, "Capacity is found in the cluster", now
        )
        decision.changes.append(StatusChange(req.key, (accepted(now), found)))
    else:
        decision.changes.append(StatusChange(req.key, (accepted(now), not_found(req, _why(plan, pods), now))))


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
    decision.nodes[req.key] = _nodes_of(plan, pods)
    if not plan.new_nodes:
        booking.hold(pods, placements(plan.existing, plan.inflight))
        found = RequestCondition(
            PROVISIONED, "True", CAPACITY_IS_FOUND, "Capacity is found in the cluster", now
        )
        decision.changes.append(StatusChange(req.key, (accepted(now), found)))
        return
    decision.attempt = Attempt(req, pods, plan)


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
    """After the nodes were asked for: `Provisioned=True` if all the pods now fit on nodes that exist
    or are on their way; otherwise `Provisioned=False` (the caller releases what was launched)."""
    req, pods = attempt.request, attempt.pods
    plan = solve(scheduling_input(without_provisioning(base), pods, nodes, inflight))
    if placed_keys(plan) >= {p.key for p in pods}:
        zones = sorted({n.zone for n in attempt.plan.new_nodes})
        message = (
            f"Capacity is provisioned: {len(attempt.plan.new_nodes)} new nodes in {', '.join(zones)} "
            f"for all {len(pods)} pods"
        )
        return StatusChange(
            req.key,
            (accepted(now), RequestCondition(PROVISIONED, "True", CAPACITY_IS_PROVISIONED, message, now)),
        )
    why = (
        f"nodes for all {len(pods)} pods could not be launched at once ({_why(plan, pods)}); "
        "the nodes launched for it were released"
    )
    return StatusChange(req.key, (accepted(now), not_found(req, why, now)))
