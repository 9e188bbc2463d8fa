"""FakeHyperPod: BatchAdd/BatchDelete semantics, continuous provisioning, Spot, metering."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from hpscaler.backends.errors import InvalidRequestError, NotFoundError
from hpscaler.backends.protocols import BackendError, HyperPodCluster
from hpscaler.backends.types import InterruptionKind, InterruptionMessage, NodeStatus
from hpscaler.clock import LoopClock
from hpscaler.fake import INSUFFICIENT_CAPACITY, FakeHyperPod, StaticSpec, instance_group
from hpscaler.model import CapacityType
from hpscaler.provisioning.batching import AddRequest, NodesToAdd

SPECS = {
    "ml.c5.2xlarge": StaticSpec({"cpu": 7910, "memory": 14 * 1024**3, "pods": 58}, 0.48, 0.12),
    "ml.c5.xlarge": StaticSpec({"cpu": 3920, "memory": 6 * 1024**3, "pods": 58}, 0.24, 0.06),
}
GROUPS = (
    instance_group("od", "ml.c5.2xlarge", "on-demand", ("us-west-2a",), ("usw2-az1",)),
    instance_group("spot", "ml.c5.2xlarge", "spot", ("us-west-2a", "us-west-2b"), ("usw2-az1", "usw2-az2")),
)
LOGICAL_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9]$")


def make(**kw: Any) -> FakeHyperPod:
    return FakeHyperPod("my-cluster", GROUPS, LoopClock(), specs=SPECS, **kw)


def body(
    *entries: tuple[str, int] | NodesToAdd, token: str = "tok-1", cluster: str = "my-cluster"
) -> AddRequest:
    nodes = tuple(e if isinstance(e, NodesToAdd) else NodesToAdd(*e) for e in entries)
    return AddRequest(cluster, token, nodes)


@asynccontextmanager
async def running(fake: FakeHyperPod) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(fake.run)
        yield
        tg.cancel_scope.cancel()


async def statuses(fake: FakeHyperPod) -> dict[str, NodeStatus]:
    return {n.logical_id: n.status for n in await fake.list_nodes()}


async def test_implements_the_protocol() -> None:
    assert isinstance(make(), HyperPodCluster)


@pytest.mark.parametrize(
    "request_body",
    [
        body(),  # no NodesToAdd entries
        body(*[("od", 1)] * 6),  # more than 5 entries
        body(("od", 0)),
        body(("od", 51)),
        body(("od", 30), ("spot", 21)),  # 51 in total
        body(("od", 1), token="x" * 65),
        body(("od", 1), token="tab\there"),
        body(NodesToAdd("", 1)),  # no InstanceGroupName
        body(NodesToAdd("spot", 1, zones=("xx",))),
        body(NodesToAdd("spot", 1, zones=("us-west-2c",))),  # not a zone of the group
        body(NodesToAdd("spot", 1, instance_types=("ml.p5.48xlarge",))),  # not a type of the group
    ],
)
async def test_batch_add_validation(request_body: AddRequest) -> None:
    fake = make()
    with pytest.raises(BackendError) as error:
        await fake.batch_add_nodes(request_body)
    assert (error.value.code, error.value.retryable) == ("ValidationException", False)
    assert isinstance(error.value, InvalidRequestError)
    assert fake.nodes() == [] and fake.calls["batch_add_nodes"] == 1 and fake.add_requests == [request_body]


async def test_batch_add_to_another_cluster_is_not_found() -> None:
    fake = make()
    with pytest.raises(NotFoundError) as error:
        await fake.batch_add_nodes(body(("od", 1), cluster="other"))
    assert (error.value.code, error.value.retryable) == ("ResourceNotFound", False)
    assert fake.nodes() == []


async def test_batch_add_accepts_the_limits_and_reports_unknown_groups() -> None:
    fake = make()
    arn = "arn:aws:sagemaker:us-west-2:111122223333:cluster/my-cluster"
    result = await fake.batch_add_nodes(body(("od", 30), ("spot", 19), ("ghost", 1), cluster=arn))
    assert [(f.group, f.error_code, f.count) for f in result.failed] == [
        ("ghost", "InstanceGroupNotFound", 1)
    ]
    assert len(result.successful) == 49
    assert all(LOGICAL_ID.match(n.logical_id) and n.status == NodeStatus.PENDING for n in result.successful)
    assert len({n.logical_id for n in result.successful}) == 49
    counts = {g.name: (g.current_count, g.target_count) for g in (await fake.describe_cluster()).groups}
    assert counts == {"od": (0, 30), "spot": (0, 19)}


@pytest.mark.looptime
async def test_same_client_token_replays_for_eight_hours() -> None:
    fake = make()
    first = await fake.batch_add_nodes(body(("od", 2), ("ghost", 1)))
    again = await fake.batch_add_nodes(body(("od", 2), ("ghost", 1)))
    assert again == first
    assert len(fake.nodes()) == 2 and fake.groups()[0].target_count == 2
    with pytest.raises(BackendError) as mismatch:
        await fake.batch_add_nodes(body(("od", 3)))
    assert mismatch.value.code == "IdempotentParameterMismatch"
    assert isinstance(mismatch.value, InvalidRequestError)
    async with running(fake):
        await fake.batch_delete_nodes([first.successful[0].logical_id])
        await anyio.sleep(100)
        replay = await fake.batch_add_nodes(body(("od", 2), ("ghost", 1)))
        assert [(n.logical_id, n.status) for n in replay.successful] == [
            (first.successful[0].logical_id, NodeStatus.NOT_FOUND),
            (first.successful[1].logical_id, NodeStatus.RUNNING),
        ]
        assert len(fake.nodes()) == 1
        await anyio.sleep(8 * 3600)
        fresh = await fake.batch_add_nodes(body(("od", 2), ("ghost", 1)))
        assert {n.logical_id for n in fresh.successful}.isdisjoint(n.logical_id for n in first.successful)
        assert len(fake.nodes()) == 3


@pytest.mark.looptime
async def test_pending_node_runs_after_launch_seconds() -> None:
    fake = make(launch_seconds=90)
    result = await fake.batch_add_nodes(body(("spot", 1)))
    logical_id = result.successful[0].logical_id
    async with running(fake):
        await anyio.sleep(89)
        assert await statuses(fake) == {logical_id: NodeStatus.PENDING}
        await anyio.sleep(2)
        (node,) = await fake.list_nodes()
        assert node.status == NodeStatus.RUNNING and node.launch_time == 90.0
        assert re.fullmatch(r"i-[0-9a-f]{17}", node.instance_id)
        assert (node.instance_type, node.zone, node.capacity_type) == ("ml.c5.2xlarge", "us-west-2a", "spot")
        assert [(g.name, g.current_count) for g in fake.groups()] == [("od", 0), ("spot", 1)]


@pytest.mark.looptime
async def test_insufficient_capacity_fails_then_retries_until_capacity_returns() -> None:
    # Capacity may be keyed by zone name or zone id.
    fake = make(capacity={("ml.c5.2xlarge", "usw2-az1", CapacityType.ON_DEMAND): 1}, retry_seconds=60)
    result = await fake.batch_add_nodes(body(("od", 2)))
    first, second = (n.logical_id for n in result.successful)
    async with running(fake):
        # EC2 answers a launch at once: the first launch holds the one unit of capacity while it boots,
        # so the second fails at its capacity check (t=10), not when the first comes up (t=90).
        await anyio.sleep(11)
        assert await statuses(fake) == {first: NodeStatus.PENDING, second: NodeStatus.FAILURE}
        (failed,) = [n for n in fake.nodes() if n.status == NodeStatus.FAILURE]
        assert failed.message == INSUFFICIENT_CAPACITY
        errors = [e for e in await fake.list_events(0.0) if e.level == "Error"]
        assert (
            len(errors) == 1
            and errors[0].group == "od"
            and INSUFFICIENT_CAPACITY in errors[0].failure_message
        )
        assert errors[0].description == "Instance creation in Cluster my-cluster and InstanceGroup od failed"
        assert errors[0].time == 10.0
        await anyio.sleep(60)  # t=71: back to Pending for another launch attempt
        assert (await statuses(fake))[second] == NodeStatus.PENDING
        await anyio.sleep(20)  # t=91: the retry's capacity check (t=80) finds no room; the first runs
        assert await statuses(fake) == {first: NodeStatus.RUNNING, second: NodeStatus.FAILURE}
        assert len([e for e in await fake.list_events(20.0) if e.level == "Error"]) == 1
        fake.set_capacity("ml.c5.2xlarge", "us-west-2a", CapacityType.ON_DEMAND, None)
        await anyio.sleep(140)  # retry at 140 -> Pending, room found at 150, launched at 230
        assert await statuses(fake) == {first: NodeStatus.RUNNING, second: NodeStatus.RUNNING}
        assert fake.node_by_instance(fake.nodes()[1].instance_id).launch_time == 230.0  # type: ignore[union-attr]


@pytest.mark.looptime
async def test_delete_shuts_down_stops_billing_and_removes() -> None:
    fake = make(shutdown_seconds=30)
    gone: list[tuple[str, str]] = []
    fake.on_gone.append(lambda node, reason: gone.append((node.logical_id, reason)))
    result = await fake.batch_add_nodes(body(("od", 2)))
    ids = [n.logical_id for n in result.successful]
    async with running(fake):
        await anyio.sleep(90 + 3600)
        deleted = await fake.batch_delete_nodes([ids[0], "nope"])
        assert deleted.deleted == (ids[0],)
        assert [(f.logical_id, f.code) for f in deleted.failed] == [("nope", "NodeIdNotFound")]
        assert (await statuses(fake))[ids[0]] == NodeStatus.SHUTTING_DOWN
        assert fake.groups()[0].target_count == 1
        await anyio.sleep(29)
        assert gone == []
        await anyio.sleep(2)
        assert gone == [(ids[0], "deleted")]
        assert list(await statuses(fake)) == [ids[1]]
        record = fake.meter_records()[0]
        assert (record.start, record.end, record.end_reason) == (90.0, 3690.0, "deleted")
    with pytest.raises(BackendError) as nothing:
        await fake.batch_delete_nodes([])
    assert nothing.value.code == "ValidationException"


@pytest.mark.looptime
async def test_spot_interruption_with_and_without_notice() -> None:
    fake = make()
    gone: list[tuple[str, str]] = []
    fake.on_gone.append(lambda node, reason: gone.append((node.instance_id, reason)))
    await fake.batch_add_nodes(body(("spot", 3)))
    async with running(fake):
        await anyio.sleep(100)
        warned, sudden, nudged = (n.instance_id for n in fake.nodes())
        fake.interrupt(warned)
        fake.interrupt(sudden, notice=False)
        fake.rebalance(nudged)
        assert gone == [(sudden, "spot-interruption")]
        messages = fake.interruptions.messages()
        assert [(m.kind, m.instance_id) for m in messages if isinstance(m, InterruptionMessage)] == [
            (InterruptionKind.SPOT_INTERRUPTION, warned),
            (InterruptionKind.STATE_CHANGE, sudden),
            (InterruptionKind.REBALANCE, nudged),
        ]
        notice = messages[0]
        assert isinstance(notice, InterruptionMessage) and (notice.time, notice.deadline) == (100.0, 220.0)
        await anyio.sleep(119)
        assert len(gone) == 1 and fake.groups()[1].target_count == 2
        await anyio.sleep(2)
        assert gone == [(sudden, "spot-interruption"), (warned, "spot-interruption")]
        assert [n.instance_id for n in fake.nodes()] == [nudged]
        assert fake.groups()[1].target_count == 1
        ends = {m.instance_id: m.end for m in fake.meter_records()}
        assert ends == {warned: 220.0, sudden: 100.0, nudged: None}
        with pytest.raises(ValueError):
            fake.interrupt(warned)


@pytest.mark.looptime
async def test_metering_hand_computed() -> None:
    fake = make()
    await fake.batch_add_nodes(body(("od", 1), ("spot", 2)))
    async with running(fake):
        await anyio.sleep(90)  # all three bill from t=90
        spot_ids = [n.logical_id for n in fake.nodes() if n.capacity_type == CapacityType.SPOT]
        await anyio.sleep(1800)
        await fake.batch_delete_nodes(spot_ids[:1])  # billed 0.5 h
        await anyio.sleep(1800)
    # on-demand: 1 h x 0.48; spot: 0.5 h x 0.12 + 1 h x 0.12
    assert fake.cost() == pytest.approx(0.48 + 0.06 + 0.12)
    assert fake.on_demand_equivalent_cost() == pytest.approx(0.48 + 0.24 + 0.48)
    assert dict(fake.launched) == {("od", CapacityType.ON_DEMAND): 1, ("spot", CapacityType.SPOT): 2}
    assert [round(m.seconds(fake.clock.now())) for m in fake.meter_records()] == [3600, 1800, 3600]


@pytest.mark.looptime
async def test_initial_target_counts_launch_and_zone_restriction() -> None:
    groups = (instance_group("warm", "ml.c5.xlarge", "spot", ("us-west-2a", "us-west-2b"), target_count=2),)
    fake = FakeHyperPod(
        "c", groups, LoopClock(), specs=SPECS, capacity={("ml.c5.xlarge", "us-west-2a", CapacityType.SPOT): 0}
    )
    async with running(fake):
        await anyio.sleep(91)
        assert [(n.status, n.zone) for n in fake.nodes()] == [(NodeStatus.RUNNING, "us-west-2b")] * 2
        restricted = body(NodesToAdd("warm", 1, zones=("us-west-2a",)), cluster="c")
        await fake.batch_add_nodes(restricted)
        await anyio.sleep(91)
        assert fake.nodes()[-1].status == NodeStatus.FAILURE  # may not fall back to us-west-2b


@pytest.mark.looptime
async def test_insufficient_capacity_is_reported_within_seconds_not_after_the_launch_time() -> None:
    fake = make(capacity={("ml.c5.2xlarge", "usw2-az1", CapacityType.ON_DEMAND): 0}, retry_seconds=60)
    result = await fake.batch_add_nodes(body(("od", 1)))
    (node,) = (n.logical_id for n in result.successful)
    async with running(fake):
        await anyio.sleep(9)
        assert (await statuses(fake))[node] == NodeStatus.PENDING
        await anyio.sleep(2)  # t=11: the capacity verdict came at t=10, far before launch_seconds (90)
        assert (await statuses(fake))[node] == NodeStatus.FAILURE


@pytest.mark.looptime
async def test_reclaims_rebalances_and_capacity_changes_are_logged() -> None:
    fake = make()
    await fake.batch_add_nodes(body(("spot", 2)))
    async with running(fake):
        await anyio.sleep(91)
        first, second = (n.instance_id for n in fake.nodes())
        fake.rebalance(first)
        fake.interrupt(first, notice=True)
        fake.interrupt(first, notice=True)  # a second notice for the same instance changes nothing
        fake.interrupt(second, notice=False)
        assert [(r.instance_id, r.group, r.notice, r.time) for r in fake.reclaims] == [
            (first, "spot", True, 91.0),
            (second, "spot", False, 91.0),
        ]
        assert fake.rebalances == [(91.0, first)]
        assert fake.has_room("spot")
        fake.set_capacity("ml.c5.2xlarge", "us-west-2a", CapacityType.SPOT, 0)
        assert fake.has_room("spot")  # us-west-2b still has room
        fake.set_capacity("ml.c5.2xlarge", "us-west-2b", CapacityType.SPOT, 0)
        assert not fake.has_room("spot") and fake.has_room("od")
        assert fake.capacity("ml.c5.2xlarge", "us-west-2b", CapacityType.SPOT) == 0
        assert [(c.offering[1], c.count) for c in fake.capacity_changes] == [
            ("us-west-2a", 0),
            ("us-west-2b", 0),
        ]


@pytest.mark.looptime
async def test_deletes_go_50_identifiers_a_request_by_logical_or_instance_id() -> None:
    fake = make(launch_seconds=5.0)
    async with running(fake):
        added = [a.logical_id for a in (await fake.batch_add_nodes(body(("od", 50), token="a"))).successful]
        added += [a.logical_id for a in (await fake.batch_add_nodes(body(("od", 50), token="b"))).successful]
        added += [a.logical_id for a in (await fake.batch_add_nodes(body(("od", 20), token="c"))).successful]
        await anyio.sleep(10)
        nodes = {n.logical_id: n for n in fake.nodes()}
        by_instance = [nodes[i].instance_id for i in added[:10]]
        fake.refuse_delete(added[10], "NodeIdInUse")

        result = await fake.batch_delete_nodes(added[10:], by_instance)

        assert [len(r) for r in fake.delete_requests] == [50, 50, 20]
        assert set(result.deleted) == set(added[11:]) | set(by_instance)
        assert [(f.logical_id, f.code) for f in result.failed] == [(added[10], "NodeIdInUse")]
        # An instance id is not a logical id: HyperPod does not find it under NodeLogicalIds.
        wrong = await fake.batch_delete_nodes([nodes[added[10]].instance_id])
        assert [f.code for f in wrong.failed] == ["NodeIdNotFound"]


@pytest.mark.looptime
async def test_a_failed_termination_ends_in_failure_and_describe_reports_the_cluster() -> None:
    fake = make(launch_seconds=5.0, shutdown_seconds=30.0)
    async with running(fake):
        (added,) = (await fake.batch_add_nodes(body(("od", 1)))).successful
        await anyio.sleep(10)
        fake.termination_failures.add(added.logical_id)
        await fake.batch_delete_nodes([added.logical_id])
        assert (await statuses(fake))[added.logical_id] is NodeStatus.SHUTTING_DOWN
        await anyio.sleep(31)
        (node,) = await fake.list_nodes()
        assert (node.status, node.message) == (NodeStatus.FAILURE, "termination failed")

        fake.settings.auto_scaling_mode = "Enable"
        document = (await fake.describe_cluster()).document
        assert document["NodeProvisioningMode"] == "Continuous"
        assert document["AutoScaling"] == {
            "Mode": "Enable",
            "Status": "InService",
            "AutoScalerType": "Karpenter",
        }
        spot = next(g for g in document["InstanceGroups"] if g["InstanceGroupName"] == "spot")
        assert spot["CapacityRequirements"] == {"Spot": {}} and spot["TargetCount"] == 0
        assert {s["AvailabilityZone"] for s in document["Subnets"]} == {"us-west-2a", "us-west-2b"}


async def test_availability_zones_are_zone_names() -> None:
    fake = make()
    request = body(NodesToAdd("spot", 1, zones=("usw2-az2",)))  # a zone id: the API's pattern refuses it
    with pytest.raises(BackendError) as refused:
        await fake.batch_add_nodes(request)
    assert refused.value.code == "ValidationException"
