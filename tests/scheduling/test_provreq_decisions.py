"""ProvisioningRequest decisions, pure: each class, each condition, bookings and their end."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from test_scheduler_cases import (
    CAT,
    MI,
    SPOT,
    ZA,
    ZB,
    existing_node,
    group,
)

from hpscaler.model import LABEL_ZONE, NodeClass, NodePool, Pod
from hpscaler.provisioning.bookings import place_bookings, review
from hpscaler.provisioning.capacity import confirm, decide
from hpscaler.provisioning.provreq import (
    ACCEPTED,
    BEST_EFFORT_ATOMIC,
    BOOKING_EXPIRED,
    CAPACITY_REVOKED,
    CHECK_CAPACITY,
    CONSUME_ANNOTATION,
    FAILED,
    PROVISIONED,
    PodSet,
    ProvisioningRequest,
    RequestCondition,
    StatusChange,
    request_pods,
)
from hpscaler.scheduling.types import InFlightNode, SchedulingInput

NOW = 10_000.0
TEMPLATES = {"ml/worker": Pod("ml", "worker", {"cpu": 7000, "memory": 1024 * MI})}


def base(limit_nodes: int | None = None, zones: Sequence[str] = (ZA, ZB)) -> SchedulingInput:
    groups = [group(f"spot-{z[-1]}", zone=z) for z in zones]
    limits = (("nodes", limit_nodes),) if limit_nodes is not None else ()
    return SchedulingInput(
        pods=(),
        node_pools=[NodePool("default", "nc", limits=limits)],
        node_classes=[NodeClass("nc", tuple(g.name for g in groups))],
        groups=groups,
        catalogue=CAT,
    )


def request(
    name: str, count: int, cls: str = BEST_EFFORT_ATOMIC, *conditions: RequestCondition, **params: str
) -> ProvisioningRequest:
    return ProvisioningRequest(
        "ml",
        name,
        cls,
        (PodSet("worker", count),),
        params,
        created=NOW - 100,
        uid=name,
        conditions=conditions,
    )


def change_of(changes: Sequence[StatusChange], key: str) -> dict[str, RequestCondition]:
    found = [c for c in changes if c.request == key]
    assert len(found) == 1, changes
    return {c.type: c for c in found[0].conditions}


def provisioned_at(since: float) -> RequestCondition:
    return RequestCondition(PROVISIONED, "True", "CapacityIsProvisioned", "", since)


def test_pods_are_one_gang_built_from_the_templates() -> None:
    pods = request_pods(request("job", 3), TEMPLATES)
    assert [p.name for p in pods] == ["job-provreq-0-0", "job-provreq-0-1", "job-provreq-0-2"]
    assert {p.gang.min_member for p in pods if p.gang} == {3}
    assert all(p.annotations[CONSUME_ANNOTATION] == "job" and p.requests["cpu"] == 7000 for p in pods)


def test_check_capacity_found_on_existing_nodes_provisions_nothing() -> None:
    nodes = [existing_node(f"n{i}") for i in range(2)]
    decision = decide(
        [request("check", 2, CHECK_CAPACITY)], TEMPLATES, [], nodes, [], base(), NOW, booking_seconds=600
    )
    conditions = change_of(decision.changes, "ml/check")
    assert conditions[ACCEPTED].status == "True"
    assert (conditions[PROVISIONED].status, conditions[PROVISIONED].reason) == ("True", "CapacityIsFound")
    assert decision.attempt is None
    assert decision.nodes["ml/check"] == ["n0", "n1"]


def test_check_capacity_counts_in_flight_nodes_but_never_new_ones() -> None:
    flight = [InFlightNode("hp-1", "default", "spot-a", "ml.c5.2xlarge", ZA, SPOT)]
    decision = decide(
        [request("check", 2, CHECK_CAPACITY)], TEMPLATES, [], [], flight, base(), NOW, booking_seconds=600
    )
    conditions = change_of(decision.changes, "ml/check")
    assert (conditions[PROVISIONED].status, conditions[PROVISIONED].reason) == ("False", "CapacityIsNotFound")
    assert "try again" in conditions[PROVISIONED].message
    assert decision.attempt is None


def test_check_capacity_with_no_retry_fails() -> None:
    decision = decide(
        [request("check", 1, CHECK_CAPACITY, noRetry="true")],
        TEMPLATES,
        [],
        [],
        [],
        base(),
        NOW,
        booking_seconds=600,
    )
    conditions = change_of(decision.changes, "ml/check")
    assert (conditions[FAILED].status, conditions[FAILED].reason) == ("True", "CapacityIsNotFound")


def test_second_check_sees_the_first_ones_capacity_as_booked() -> None:
    nodes = [existing_node("n0")]
    first, second = request("a", 1, CHECK_CAPACITY), request("b", 1, CHECK_CAPACITY)
    decision = decide([second, first], TEMPLATES, [], nodes, [], base(), NOW, booking_seconds=600)
    assert change_of(decision.changes, "ml/a")[PROVISIONED].status == "True"
    assert change_of(decision.changes, "ml/b")[PROVISIONED].status == "False"


def test_atomic_request_plans_all_nodes_in_one_zone() -> None:
    decision = decide([request("train", 4)], TEMPLATES, [], [], [], base(), NOW, booking_seconds=600)
    assert decision.attempt is not None
    plan = decision.attempt.plan
    assert len(plan.new_nodes) == 4 and len({n.zone for n in plan.new_nodes}) == 1
    assert decision.changes == []  # Provisioned only once the nodes are asked for


def test_atomic_request_over_the_limit_gets_no_node_and_says_why() -> None:
    decision = decide(
        [request("train", 4)], TEMPLATES, [], [], [], base(limit_nodes=3), NOW, booking_seconds=600
    )
    assert decision.attempt is None
    conditions = change_of(decision.changes, "ml/train")
    assert (conditions[PROVISIONED].status, conditions[PROVISIONED].reason) == ("False", "CapacityIsNotFound")
    assert "limit" in conditions[PROVISIONED].message


def test_one_atomic_request_per_round_oldest_first() -> None:
    older = request("first", 2)
    newer = ProvisioningRequest(
        "ml", "second", BEST_EFFORT_ATOMIC, (PodSet("worker", 2),), created=NOW, uid="s"
    )
    decision = decide([newer, older], TEMPLATES, [], [], [], base(), NOW, booking_seconds=600)
    assert decision.attempt is not None and decision.attempt.request.name == "first"
    assert all(c.request != "ml/second" for c in decision.changes)


def test_confirm_launching_when_the_nodes_are_in_flight_and_refuses_a_partial_launch() -> None:
    decision = decide([request("train", 2)], TEMPLATES, [], [], [], base(), NOW, booking_seconds=600)
    assert decision.attempt is not None
    zone = decision.attempt.plan.new_nodes[0].zone
    group_name = decision.attempt.plan.new_nodes[0].instance_group
    flights = [InFlightNode(f"hp-{i}", "default", group_name, "ml.c5.2xlarge", zone, SPOT) for i in range(2)]
    ok = confirm(decision.attempt, [], flights, base(), NOW)
    launching = ok.get(PROVISIONED)
    assert launching is not None and (launching.status, launching.reason) == (
        "False",
        "CapacityIsBeingProvisioned",
    )
    partial = confirm(decision.attempt, [], flights[:1], base(), NOW)
    condition = partial.get(PROVISIONED)
    assert condition is not None and condition.status == "False"
    assert "released" in condition.message


def test_missing_template_fails_the_request() -> None:
    decision = decide([request("train", 2)], {}, [], [], [], base(), NOW, booking_seconds=600)
    conditions = change_of(decision.changes, "ml/train")
    assert (conditions[FAILED].status, conditions[FAILED].reason) == ("True", "FailedToCreatePods")
    assert "PodTemplate ml/worker not found" in conditions[FAILED].message


def test_booking_holds_room_and_is_released_for_consumers() -> None:
    nodes = [existing_node(f"n{i}") for i in range(2)]
    booked = request("train", 2, BEST_EFFORT_ATOMIC, provisioned_at(NOW - 60))
    booking = place_bookings([booked], TEMPLATES, {}, nodes, [], base())
    held = [p for n in booking.nodes for p in n.pods]
    assert len(held) == 2 and all(p.annotations["karpenter.sh/do-not-disrupt"] == "true" for p in held)
    assert booking.held == {"ml/train": {"n0", "n1"}}
    # A third request's check sees no room left.
    decision = decide(
        [booked, request("check", 1, CHECK_CAPACITY)],
        TEMPLATES,
        [],
        nodes,
        [],
        base(),
        NOW,
        booking_seconds=600,
    )
    assert change_of(decision.changes, "ml/check")[PROVISIONED].status == "False"
    # One consumer pod exists: one pod's room is handed back.
    consumer = Pod("ml", "real-0", {"cpu": 7000}, annotations={CONSUME_ANNOTATION: "train"})
    booking = place_bookings([booked], TEMPLATES, {"ml/train": 1}, nodes, [], base())
    assert sum(len(n.pods) for n in booking.nodes) == 1
    assert consumer.annotations[CONSUME_ANNOTATION] == "train"


def test_booking_expires_after_the_reservation_time() -> None:
    nodes = [existing_node(f"n{i}") for i in range(2)]
    booked = request("train", 2, BEST_EFFORT_ATOMIC, provisioned_at(NOW - 601))
    booking = place_bookings([booked], TEMPLATES, {}, nodes, [], base())
    conditions = change_of(review([booked], booking, NOW, booking_seconds=600), "ml/train")
    assert (conditions[BOOKING_EXPIRED].status, conditions[BOOKING_EXPIRED].reason) == (
        "True",
        "CapacityReservationTimeExpired",
    )
    fresh = request("train", 2, BEST_EFFORT_ATOMIC, provisioned_at(NOW - 599))
    assert review([fresh], place_bookings([fresh], TEMPLATES, {}, nodes, [], base()), NOW) == []


def test_booking_whose_node_is_gone_is_revoked() -> None:
    booked = request("train", 2, BEST_EFFORT_ATOMIC, provisioned_at(NOW - 60))
    nodes = [existing_node("n0")]  # n1 was removed
    booking = place_bookings([booked], TEMPLATES, {}, nodes, [], base())
    conditions = change_of(review([booked], booking, NOW), "ml/train")
    assert (conditions[CAPACITY_REVOKED].status, conditions[CAPACITY_REVOKED].reason) == (
        "True",
        "CapacityLost",
    )
    assert "create the request again" in conditions[CAPACITY_REVOKED].message


def test_request_never_provisioned_in_seven_days_fails() -> None:
    old = ProvisioningRequest(
        "ml", "old", BEST_EFFORT_ATOMIC, (PodSet("worker", 1),), created=NOW - 8 * 86400
    )
    conditions = change_of(review([old], place_bookings([], TEMPLATES, {}, [], [], base()), NOW), "ml/old")
    assert (conditions[FAILED].status, conditions[FAILED].reason) == ("True", "Expired")


def test_finished_and_foreign_requests_are_left_alone() -> None:
    failed = request("done", 1, BEST_EFFORT_ATOMIC, RequestCondition(FAILED, "True", "x", "", 0.0))
    foreign = request("gke", 1, "queued-provisioning.gke.io")
    decision = decide([failed, foreign], TEMPLATES, [], [], [], base(), NOW, booking_seconds=600)
    assert decision.changes == [] and decision.attempt is None


def test_booked_gang_stays_in_the_zone_of_its_nodes() -> None:
    nodes = [existing_node("a0", zone=ZA), existing_node("b0", zone=ZB), existing_node("b1", zone=ZB)]
    booked = request("train", 2, BEST_EFFORT_ATOMIC, provisioned_at(NOW - 60))
    booking = place_bookings([booked], TEMPLATES, {}, nodes, [], base())
    zones = {n.labels[LABEL_ZONE] for n in booking.nodes if n.pods}
    assert zones == {ZB}


def launching_request(name: str, count: int) -> ProvisioningRequest:
    condition = RequestCondition(PROVISIONED, "False", "CapacityIsBeingProvisioned", "", NOW - 30)
    return request(name, count, BEST_EFFORT_ATOMIC, condition)


def test_launching_request_is_provisioned_once_all_nodes_joined() -> None:
    req = launching_request("train", 2)
    flights = [InFlightNode(f"hp-{i}", "default", "spot-a", "ml.c5.2xlarge", ZA, SPOT) for i in range(2)]
    waiting = decide(
        [req], TEMPLATES, [], [existing_node("n0")], flights[:1], base(), NOW, booking_seconds=600
    )
    assert waiting.changes == [] and waiting.attempt is None and not waiting.release
    assert waiting.booking is not None and set(waiting.booking.holders) == {"n0", "hp-0"}
    joined = decide(
        [req], TEMPLATES, [], [existing_node("n0"), existing_node("n1")], [], base(), NOW, booking_seconds=600
    )
    conditions = change_of(joined.changes, "ml/train")
    assert (conditions[PROVISIONED].status, conditions[PROVISIONED].reason) == (
        "True",
        "CapacityIsProvisioned",
    )


def test_partial_launch_is_finished_in_its_zone() -> None:
    req = launching_request("train", 3)
    nodes = [existing_node("n0", zone=ZB)]  # one of three joined in b; the other launches failed
    decision = decide([req], TEMPLATES, [], nodes, [], base(), NOW, booking_seconds=600)
    assert decision.attempt is not None and decision.attempt.zone == ZB
    assert {n.zone for n in decision.attempt.plan.new_nodes} == {ZB}
    assert len(decision.attempt.plan.new_nodes) == 2


def test_partial_launch_the_zone_cannot_finish_releases_everything() -> None:
    req = launching_request("train", 3)
    nodes = [existing_node("n0", zone=ZB)]
    decision = decide([req], TEMPLATES, [], nodes, [], base(limit_nodes=2), NOW, booking_seconds=600)
    assert decision.attempt is None
    assert decision.release == {"ml/train": {f"ml/train-provreq-0-{i}" for i in range(3)}}
    conditions = change_of(decision.changes, "ml/train")
    assert (conditions[PROVISIONED].status, conditions[PROVISIONED].reason) == ("False", "CapacityIsNotFound")
    assert "released" in conditions[PROVISIONED].message and ZB in conditions[PROVISIONED].message


def test_atomic_request_gives_up_after_valid_until_seconds() -> None:
    req = ProvisioningRequest(
        "ml",
        "short",
        BEST_EFFORT_ATOMIC,
        (PodSet("worker", 1),),
        {"ValidUntilSeconds": "60"},
        created=NOW - 61,
    )
    empty = place_bookings([], TEMPLATES, {}, [], [], base())
    conditions = change_of(review([req], empty, NOW), "ml/short")
    assert (conditions[FAILED].status, conditions[FAILED].reason) == ("True", "Expired")
    assert "ValidUntilSeconds=60s" in conditions[FAILED].message
    young = dataclasses.replace(req, created=NOW - 59)
    assert review([young], empty, NOW) == []


def test_hyperpod_nodes_count_against_the_limits_of_their_groups_nodepool() -> None:
    # HyperPod labels its nodes with the instance group, not with karpenter.sh/nodepool.
    node = existing_node("n0")
    del node.labels["karpenter.sh/nodepool"]
    assert node.instance_group == "spot-a"
    decision = decide(
        [request("train", 1)], TEMPLATES, [], [node], [], base(limit_nodes=1), NOW, booking_seconds=600
    )
    # n0 is busy with nothing but counts as the pool's one node: the request fits on it, no new node.
    assert decision.attempt is None
    busy = existing_node("n0", bound=[Pod("x", "busy", {"cpu": 7000})])
    del busy.labels["karpenter.sh/nodepool"]
    decision = decide(
        [request("train", 1)], TEMPLATES, [], [busy], [], base(limit_nodes=1), NOW, booking_seconds=600
    )
    assert decision.attempt is None
    assert "limit" in change_of(decision.changes, "ml/train")[PROVISIONED].message
