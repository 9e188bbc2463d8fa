"""World wiring (HyperPod instances become K8s nodes), the signal fakes, and whole-world runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from hpscaler.backends.protocols import BackendError, InterruptionSource, PlacementScores
from hpscaler.backends.types import InterruptionKind, InterruptionMessage, JunkMessage, NodeStatus
from hpscaler.fake import (
    FakeInterruptionQueue,
    FakePlacementScores,
    StaticSpec,
    World,
    instance_group,
    node_name,
)
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_INSTANCE_GROUP,
    LABEL_INSTANCE_TYPE,
    LABEL_ZONE,
    CapacityType,
    Pod,
    Taint,
    Toleration,
)
from hpscaler.provisioning.batching import AddRequest, NodesToAdd

SPECS = {
    "ml.c5.2xlarge": StaticSpec(
        {"cpu": 7910, "memory": 14 * 1024**3, "pods": 58}, 0.48, 0.12, {"arch": "amd64"}
    )
}
SPOT = instance_group(
    "spot", "ml.c5.2xlarge", "spot", ("us-west-2a",), ("usw2-az1",), taints=(Taint("spot", "NoSchedule"),)
)
ON_DEMAND = instance_group(
    "od", "ml.c5.2xlarge", "on-demand", ("us-west-2b",), ("usw2-az2",), labels={"tier": "od"}
)


def make_world(**kw: Any) -> World:
    return World.from_groups(SPOT, ON_DEMAND, specs=SPECS, **kw)


def web_pod(name: str, **kw: Any) -> Pod:
    return Pod("default", name, {"cpu": 2000}, labels={"app": "web"}, owner_kind="ReplicaSet", **kw)


@asynccontextmanager
async def running(world: World) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        await tg.start(world.run)
        yield
        tg.cancel_scope.cancel()


@pytest.mark.looptime
async def test_instance_becomes_a_labelled_node_that_turns_ready_after_join_seconds() -> None:
    world = make_world()
    world.kubernetes.add_pod(web_pod("w0"))
    async with running(world):
        await world.hyperpod.batch_add_nodes(AddRequest("fake-cluster", "", (NodesToAdd("od", 1),)))
        await anyio.sleep(89)
        assert world.kubernetes.nodes() == []
        await anyio.sleep(2)
        (instance,) = world.hyperpod.nodes()
        (node,) = world.kubernetes.nodes()
        assert node.name == node_name(instance.instance_id) == f"hyperpod-{instance.instance_id}"
        assert node.provider_id == f"aws:///us-west-2b/{instance.instance_id}"
        assert not node.ready and node.created == 90.0
        assert node.allocatable == SPECS["ml.c5.2xlarge"].allocatable()
        # Only what HyperPod puts on a node: its own labels and the group's KubernetesConfig labels.
        # Nothing of Karpenter's (capacity type, NodePool, instance facts): registration adds those.
        assert node.labels == {
            LABEL_INSTANCE_TYPE: "ml.c5.2xlarge",
            LABEL_ZONE: "us-west-2b",
            LABEL_INSTANCE_GROUP: "od",
            LABEL_HOSTNAME: node.name,
            "tier": "od",
        }
        assert world.kubernetes.pod("default/w0").node_name == ""  # type: ignore[union-attr]
        await anyio.sleep(29)  # t=120: joined
        (node,) = world.kubernetes.nodes()
        assert node.ready and [p.name for p in node.pods] == ["w0"]


@pytest.mark.looptime
async def test_spot_interruption_kills_undrained_pods_and_they_come_back_pending() -> None:
    world = make_world()
    tolerant = (Toleration("spot", "Exists"),)
    world.kubernetes.add_pod(web_pod("w0", tolerations=tolerant))
    world.kubernetes.add_pod(web_pod("w1", tolerations=tolerant))
    async with running(world):
        await world.hyperpod.batch_add_nodes(AddRequest("fake-cluster", "", (NodesToAdd("spot", 1),)))
        await anyio.sleep(121)
        (instance,) = world.hyperpod.nodes()
        (node,) = world.kubernetes.nodes()
        assert node.taints == (Taint("spot", "NoSchedule"),) and len(node.pods) == 2
        world.hyperpod.interrupt(instance.instance_id)
        (notice,) = await world.interruptions.receive()
        assert isinstance(notice, InterruptionMessage) and notice.kind == InterruptionKind.SPOT_INTERRUPTION
        await world.interruptions.acknowledge(notice)
        # As the daemon's interruption handler would: fence the node, drain one pod, forget the other.
        await world.kubernetes.taint_node(node.name, add=[Taint("interrupted", "NoSchedule")])
        assert await world.kubernetes.evict_pod("default", "w0", grace_seconds=10) == "evicted"
        await anyio.sleep(121)  # the notice said 241
        assert world.kubernetes.nodes() == []
        assert [(k.key, k.time, k.reason) for k in world.kubernetes.kills] == [
            ("default/w1", 241.0, "spot-interruption")
        ]
        assert sorted((p.name, p.phase) for p in world.kubernetes.pods()) == [
            ("w0-r1", "Pending"),
            ("w1-r1", "Pending"),
        ]
        (terminated,) = await world.interruptions.receive()
        assert isinstance(terminated, InterruptionMessage) and terminated.state == "terminated"
        report = world.report()
    assert report["pods_killed"] == 1 and report["evictions"] == 1 and report["binds"] == 2
    assert report["nodes_launched"] == {"spot": {"spot": 1}}
    assert report["pods_pending"] == 2
    # Billed from 90 to 241 at the Spot price.
    assert report["cost"] == pytest.approx(151 * 0.12 / 3600)
    assert report["on_demand_cost"] == pytest.approx(151 * 0.48 / 3600)
    assert report["savings"] == pytest.approx(0.75)


@pytest.mark.looptime
async def test_queue_long_polls_and_redelivers_unacknowledged_messages() -> None:
    queue = FakeInterruptionQueue(wait_seconds=20, visibility_seconds=30)
    assert isinstance(queue, InterruptionSource)
    start = anyio.current_time()
    assert await queue.receive() == []
    assert anyio.current_time() - start == pytest.approx(20)
    for i in range(12):
        queue.put(InterruptionMessage("", InterruptionKind.REBALANCE, f"i-{i}", 0.0))
    junk = queue.put_junk("bad json")
    first = await queue.receive()
    assert len(first) == 10 and all(m.receipt for m in first)
    rest = await queue.receive()
    assert [m.message_id for m in rest] == [m.message_id for m in queue.messages()[10:]]
    assert isinstance(rest[-1], JunkMessage) and rest[-1].message_id == junk.message_id
    for message in first[:9]:
        await queue.acknowledge(message)
    await queue.acknowledge(rest[-1])
    # The unacknowledged ones reappear once their visibility timeout (30 s) runs out.
    assert await queue.receive() == []  # t=20..40
    again = await queue.receive()
    assert anyio.current_time() - start == pytest.approx(50)
    assert [m.message_id for m in again] == [first[9].message_id, *(m.message_id for m in rest[:2])]
    assert queue.redelivered == 3 and queue.acknowledged == 10
    await queue.acknowledge(first[9])  # stale receipt: the message stays
    assert len(queue) == 3 and queue.stale_acknowledgements == 1
    for message in again:
        await queue.acknowledge(message)
    assert len(queue) == 0


@pytest.mark.looptime
async def test_receive_wakes_when_a_message_arrives() -> None:
    queue = FakeInterruptionQueue()
    got: list[float] = []

    async def poll() -> None:
        await queue.receive()
        got.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await anyio.sleep(5)
        queue.put(InterruptionMessage("m", InterruptionKind.REBALANCE, "i-1", 0.0))
    assert got == [pytest.approx(5)]


async def test_placement_scores_by_zone_id_or_name() -> None:
    scores = FakePlacementScores(
        {"us-west-2a": 9}, zone_ids={"us-west-2a": "usw2-az1", "us-west-2b": "usw2-az2"}
    )
    assert isinstance(scores, PlacementScores)
    scores.set_score("usw2-az2", 2)
    assert await scores.scores(["ml.c5.2xlarge"], 10) == {"usw2-az1": 9, "usw2-az2": 2}
    scores.faults.fail_next("scores", BackendError("throttled", code="ThrottlingException"))
    with pytest.raises(BackendError):
        await scores.scores(["ml.c5.2xlarge"], 10)
    assert scores.calls == 2 and scores.requests[0] == (("ml.c5.2xlarge",), 10)


@pytest.mark.looptime
async def test_world_scores_know_every_group_zone() -> None:
    world = make_world(scores={"usw2-az1": 8.0})
    assert await world.placement.scores(["ml.c5.2xlarge"], 1) == {"usw2-az1": 8.0, "usw2-az2": 5.0}


async def scenario(seed: int) -> dict[str, Any]:
    world = make_world(spot_interruptions_per_hour=1.0, notice_probability=0.5, seed=seed)
    for i in range(6):
        world.kubernetes.add_pod(
            web_pod(f"w{i}", tolerations=(Toleration("spot", "Exists"),)), run_seconds=1800
        )
    async with running(world):
        await world.hyperpod.batch_add_nodes(
            AddRequest("fake-cluster", "scenario", (NodesToAdd("spot", 4), NodesToAdd("od", 1)))
        )
        await anyio.sleep(2 * 3600)
    return world.report()


@pytest.mark.looptime
async def test_two_virtual_hours_are_deterministic_and_reclaim_spot() -> None:
    first = await scenario(seed=1)
    second = await scenario(seed=1)
    other = await scenario(seed=2)
    assert first == second and first != other
    assert first["time"] == pytest.approx(2 * 3600)
    assert first["nodes_launched"] == {"od": {"on-demand": 1}, "spot": {"spot": 4}}
    # One interruption per instance-hour: no Spot instance outlives the two hours with this seed,
    # some jobs die with their nodes, and their replacements still finish on what is left.
    assert first["spot_interruptions"] == 4
    assert first["pods_killed"] > 0 and first["pods_recreated"] == first["pods_killed"]
    assert first["pods_completed"] == 6 and first["pods_pending"] == 0
    assert first["binds"] == 6 + first["pods_recreated"]
    assert first["interruption_messages"] == 0  # nobody polled the queue
    assert 0 < first["cost"] < first["on_demand_cost"]


@pytest.mark.looptime
async def test_world_run_is_structured_and_stops_when_cancelled() -> None:
    world = make_world()
    await world.hyperpod.batch_add_nodes(AddRequest("fake-cluster", "", (NodesToAdd("od", 1),)))
    with anyio.move_on_after(60):
        await world.run()
    assert [n.status for n in world.hyperpod.nodes()] == [NodeStatus.PENDING]
    assert world.hyperpod.nodes()[0].capacity_type == CapacityType.ON_DEMAND
    # Nothing runs once run() has returned: time passes, the node stays Pending.
    await anyio.sleep(600)
    assert [n.status for n in world.hyperpod.nodes()] == [NodeStatus.PENDING]


@pytest.mark.looptime
async def test_specs_come_from_the_catalogue_unless_injected() -> None:
    from hpscaler.catalogue import load_catalogue

    world = World.from_groups(instance_group("od", "ml.c5.2xlarge"))
    spec = load_catalogue().get("ml.c5.2xlarge")
    async with running(world):
        await world.hyperpod.batch_add_nodes(AddRequest("fake-cluster", "", (NodesToAdd("od", 1),)))
        await anyio.sleep(3690)
        (node,) = world.kubernetes.nodes()
    assert node.allocatable == spec.allocatable()
    assert node.labels["node.kubernetes.io/instance-type"] == spec.name
    assert not any(key.startswith("karpenter.") for key in node.labels)
    assert world.hyperpod.cost() == pytest.approx(spec.price(CapacityType.ON_DEMAND))
    with pytest.raises(ValueError, match=r"ml\.nope"):
        World.from_groups(instance_group("x", "ml.nope"))
