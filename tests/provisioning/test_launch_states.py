"""In-flight nodes through HyperPod's ClusterInstanceStatus, as the continuous-provisioning page
defines it (Pending: provisioned or rebooted; Failure: retried by HyperPod; DeepHealthCheckInProgress:
minutes to hours; ShuttingDown: removed, or Failure if termination fails)."""

from __future__ import annotations

from hpscaler.backends.types import HyperPodNode, NodeStatus
from hpscaler.provisioning.launches import InFlight, LaunchReview, review_launches

GROUP = "spot-a"
TIMEOUT = 600.0


def review(
    nodes: list[HyperPodNode],
    inflight: dict[str, InFlight] | None = None,
    *,
    now: float = 100.0,
    joined: set[str] | frozenset[str] = frozenset(),
    registered: set[str] | None = None,
    gone: set[str] | frozenset[str] = frozenset(),
) -> LaunchReview:
    return review_launches(
        inflight or {},
        nodes,
        set(joined),
        {GROUP},
        now,
        launch_timeout=TIMEOUT,
        registration_timeout=1200.0,
        group_zone={GROUP: "us-west-2a"},
        registered_instances=registered,
        gone=gone,
    )


def node(logical_id: str, status: NodeStatus, instance: str = "", message: str = "") -> HyperPodNode:
    return HyperPodNode(logical_id, GROUP, status, instance, message=message)


def record(logical_id: str, at: float = 0.0) -> dict[str, InFlight]:
    return {logical_id: InFlight(logical_id, GROUP, "default", at)}


def test_a_pending_node_that_had_joined_is_rebooting_not_failing() -> None:
    rebooting = node("n1", NodeStatus.PENDING, "i-1")
    # Long past the launch timeout, with its Node object still there (NotReady while it reboots).
    after_restart = review([rebooting], now=10_000.0, registered={"i-1"})
    assert after_restart.adopted == [] and after_restart.give_up == []
    tracked = review([rebooting], record("n1"), now=10_000.0, registered={"i-1"})
    assert tracked.joined == ["n1"] and tracked.give_up == []
    # A Pending node with no Node object is a launch: past the timeout it is given up.
    launching = review([node("n2", NodeStatus.PENDING)], record("n2"), now=TIMEOUT + 1, registered=set())
    assert [g.logical_id for g in launching.give_up] == ["n2"] and launching.give_up[0].out_of_capacity


def test_deep_health_checks_stay_in_flight_for_hours_and_after_restarts() -> None:
    checking = node("n1", NodeStatus.DEEP_HEALTH_CHECK, "i-1")
    tracked = review([checking], record("n1"), now=5 * 3600.0)
    assert tracked.give_up == [] and tracked.health_checking == ["n1"]
    assert review([checking], now=5 * 3600.0).adopted == [checking]  # a restarted daemon adopts it
    # The launch clock starts again when the checks end: a node just out of them is not timed out.
    records = record("n1")
    records["n1"].health_checked_at = 5 * 3600.0
    running = node("n1", NodeStatus.RUNNING, "i-1")
    assert review([running], records, now=5 * 3600.0 + 60).give_up == []


def test_failure_is_left_to_hyperpods_retries_unless_capacity_or_timeout() -> None:
    lifecycle = node("n1", NodeStatus.FAILURE, message="Lifecycle script failed")
    assert review([lifecycle], record("n1"), now=TIMEOUT - 1).give_up == []
    (late,) = review([lifecycle], record("n1"), now=TIMEOUT + 1).give_up
    assert late.logical_id == "n1" and not late.out_of_capacity  # not a capacity verdict on the offering
    capacity = node("n2", NodeStatus.FAILURE, message="InsufficientInstanceCapacity")
    (now,) = review([capacity], record("n2"), now=1.0).give_up
    assert now.out_of_capacity and now.zone == "us-west-2a"


def test_a_node_seen_shutting_down_is_never_adopted_again() -> None:
    shutting = node("n1", NodeStatus.SHUTTING_DOWN, "i-1")
    first = review([shutting])
    assert first.going == ["n1"] and first.adopted == []
    failed = node("n1", NodeStatus.FAILURE, "i-1", "termination failed")
    assert review([failed], gone=set(first.going)).adopted == []
    assert review([failed], record("n1"), gone={"n1"}).vanished == ["n1"]
    # Without that memory it would have looked like a launch HyperPod retries.
    assert review([failed]).adopted == [failed]


def test_nodes_without_a_logical_id_are_never_tracked_by_their_instance_id() -> None:
    anonymous = HyperPodNode("", GROUP, NodeStatus.FAILURE, "i-9")
    assert review([anonymous]).adopted == []
