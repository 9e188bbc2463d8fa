"""`SageMakerHyperPod` against moto over HTTP (with the operations `moto_ext` adds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import moto_ext
import pytest
from aws_harness import CLUSTER, FAST, REGION, Admin, Recorder, make_world

from hpscaler.aws.sagemaker import SageMakerHyperPod
from hpscaler.aws.session import AwsClients
from hpscaler.backends.errors import InvalidRequestError
from hpscaler.backends.protocols import BackendError, HyperPodCluster
from hpscaler.backends.types import NodeStatus
from hpscaler.model import CapacityType, Taint
from hpscaler.provisioning.batching import AddRequest, NodesToAdd

GROUPS = [
    {"Name": "spot-a", "Zones": "a", "Capacity": "Spot", "Count": 2},
    {"Name": "od-multi", "Zones": "bc", "Capacity": "OnDemand"},
    {"Name": "plain"},  # no override: the cluster's subnet (zone a); no CapacityRequirements
]


def hyperpod(clients: AwsClients, page_size: int = 100) -> SageMakerHyperPod:
    return SageMakerHyperPod(clients.sagemaker, clients.ec2, CLUSTER, retry=FAST, page_size=page_size)


def body(token: str, *entries: dict[str, Any]) -> AddRequest:
    """An AddRequest written as the API's entries, so the tests read like the requests on the wire."""
    return AddRequest(
        CLUSTER,
        token,
        tuple(
            NodesToAdd(
                e["InstanceGroupName"],
                e.get("IncrementTargetCountBy", 0),
                tuple(e.get("AvailabilityZones", ())),
                tuple(e.get("InstanceTypes", ())),
            )
            for e in entries
        ),
    )


async def test_is_a_hyperpod_cluster(clients: AwsClients) -> None:
    assert isinstance(hyperpod(clients), HyperPodCluster)


async def test_describe_resolves_zones_through_subnets_once(
    admin: Admin, clients: AwsClients, recorder: Recorder
) -> None:
    world = await make_world(admin, GROUPS)
    cluster = moto_ext.sagemaker_cluster(REGION, CLUSTER)
    cluster.instance_groups[0]["KubernetesConfig"] = {
        "CurrentLabels": {"team": "ml"},
        "CurrentTaints": [{"Key": "gpu", "Value": "true", "Effect": "NoSchedule"}],
    }
    hp = hyperpod(clients)

    description = await hp.describe_cluster()

    groups = {g.name: g for g in description.groups}
    assert description.name == CLUSTER
    spot = groups["spot-a"]
    assert spot.instance_types == ("ml.c5.xlarge",)
    assert spot.capacity_type is CapacityType.SPOT
    assert spot.zones == ("us-west-2a",)
    assert spot.zone_ids == (world.zone_ids["us-west-2a"],)
    assert spot.subnets == (world.subnets["us-west-2a"],)
    assert (spot.current_count, spot.target_count) == (2, 2)
    assert spot.labels == (("team", "ml"),)
    assert spot.taints == (Taint("gpu", "NoSchedule", "true"),)
    assert spot.status == "InService"
    multi = groups["od-multi"]
    assert multi.capacity_type is CapacityType.ON_DEMAND
    assert multi.zones == ("us-west-2b", "us-west-2c")
    assert multi.zone_ids == (world.zone_ids["us-west-2b"], world.zone_ids["us-west-2c"])
    plain = groups["plain"]
    assert plain.capacity_type is CapacityType.ON_DEMAND  # no CapacityRequirements: on-demand
    assert plain.zones == ("us-west-2a",)  # from the cluster's VpcConfig

    await hp.describe_cluster()
    assert len(recorder.operations("DescribeCluster")) == 2
    assert len(recorder.operations("DescribeSubnets")) == 1  # subnets never move: cached


async def test_describe_flexible_group(admin: Admin, clients: AwsClients) -> None:
    await make_world(admin, [{"Name": "flex", "Zones": "a"}])
    group = moto_ext.sagemaker_cluster(REGION, CLUSTER).instance_groups[0]
    del group["InstanceType"]
    group["InstanceRequirements"] = {"CurrentInstanceTypes": ["ml.c5.xlarge", "ml.c5.2xlarge"]}

    (flex,) = (await hyperpod(clients).describe_cluster()).groups

    assert flex.instance_types == ("ml.c5.xlarge", "ml.c5.2xlarge")


async def test_describe_unknown_cluster_is_not_retryable(clients: AwsClients, recorder: Recorder) -> None:
    with pytest.raises(BackendError) as raised:
        await hyperpod(clients).describe_cluster()
    assert raised.value.code == "ValidationException"
    assert not raised.value.retryable
    assert len(recorder.operations("DescribeCluster")) == 1


async def test_list_nodes_reads_every_page(admin: Admin, clients: AwsClients, recorder: Recorder) -> None:
    await make_world(admin, [{"Name": "spot-a", "Zones": "a", "Capacity": "Spot", "Count": 5}])
    hp = hyperpod(clients, page_size=2)

    nodes = await hp.list_nodes()

    assert len(recorder.operations("ListClusterNodes")) == 3  # 2 + 2 + 1
    assert all(c.params["IncludeNodeLogicalIds"] for c in recorder.operations("ListClusterNodes"))
    assert sorted(n.instance_id for n in nodes) == [f"spot-a-{i}" for i in range(5)]
    first = nodes[0]
    assert first.logical_id == f"lid-{first.instance_id}"
    assert first.group == "spot-a"
    assert first.status is NodeStatus.RUNNING
    assert first.instance_type == "ml.c5.xlarge"
    assert first.zone == "us-west-2a"  # the group's only zone
    assert first.capacity_type is CapacityType.SPOT
    assert abs(first.launch_time - datetime.now(UTC).timestamp()) < 60


async def test_nodes_of_a_multi_zone_group_get_their_placement(
    admin: Admin, clients: AwsClients, recorder: Recorder
) -> None:
    await make_world(admin, [{"Name": "multi", "Zones": "bc", "Capacity": "Spot"}])
    hp = hyperpod(clients)
    await hp.describe_cluster()
    await hp.batch_add_nodes(
        body(
            "t-multi",
            {"InstanceGroupName": "multi", "IncrementTargetCountBy": 2, "AvailabilityZones": ["us-west-2c"]},
        )
    )

    nodes = await hp.list_nodes()
    await hp.list_nodes()

    assert {n.zone for n in nodes} == {"us-west-2c"}
    assert {n.status for n in nodes} == {NodeStatus.PENDING}
    assert {n.capacity_type for n in nodes} == {CapacityType.SPOT}
    # One DescribeClusterNode per instance, then the placement is remembered.
    assert len(recorder.operations("DescribeClusterNode")) == 2


async def test_batch_add_success_and_shared_state(admin: Admin, clients: AwsClients) -> None:
    await make_world(admin, GROUPS)
    hp = hyperpod(clients)

    result = await hp.batch_add_nodes(
        body(
            "t-ok",
            {"InstanceGroupName": "spot-a", "IncrementTargetCountBy": 3},
            {
                "InstanceGroupName": "od-multi",
                "IncrementTargetCountBy": 1,
                "AvailabilityZones": ["us-west-2b"],
            },
        )
    )

    assert result.failed == ()
    assert [(a.group, a.status) for a in result.successful] == [("spot-a", NodeStatus.PENDING)] * 3 + [
        ("od-multi", NodeStatus.PENDING)
    ]
    listed = {n.logical_id: n for n in await hp.list_nodes()}
    assert {a.logical_id for a in result.successful} <= set(listed)
    groups = {g.name: g for g in (await hp.describe_cluster()).groups}
    assert groups["spot-a"].target_count == 5
    assert groups["od-multi"].target_count == 1
    moto_ext.set_node_status(REGION, CLUSTER, result.successful[0].logical_id, "Running")
    assert {g.name: g for g in (await hp.describe_cluster()).groups}["spot-a"].current_count == 3


async def test_batch_add_partial_failure(admin: Admin, clients: AwsClients) -> None:
    await make_world(admin, GROUPS)

    result = await hyperpod(clients).batch_add_nodes(
        body(
            "t-partial",
            {"InstanceGroupName": "spot-a", "IncrementTargetCountBy": 1},
            {"InstanceGroupName": "missing", "IncrementTargetCountBy": 2},
            {
                "InstanceGroupName": "od-multi",
                "IncrementTargetCountBy": 4,
                "AvailabilityZones": ["us-west-2a"],
            },
            {"InstanceGroupName": "plain", "IncrementTargetCountBy": 1, "InstanceTypes": ["ml.p5.48xlarge"]},
        )
    )

    assert [a.group for a in result.successful] == ["spot-a"]
    assert [(f.group, f.error_code, f.count) for f in result.failed] == [
        ("missing", "InstanceGroupNotFound", 2),
        ("od-multi", "IncompatibleAvailabilityZones", 4),
        ("plain", "IncompatibleInstanceTypes", 1),
    ]
    assert all(f.message for f in result.failed)


@pytest.mark.filterwarnings("ignore:Exception.*IdempotentParameterMismatch:UserWarning")
async def test_batch_add_replays_a_client_token(admin: Admin, clients: AwsClients) -> None:
    await make_world(admin, GROUPS)
    hp = hyperpod(clients)
    request = body("t-replay", {"InstanceGroupName": "spot-a", "IncrementTargetCountBy": 2})

    first = await hp.batch_add_nodes(request)
    again = await hp.batch_add_nodes(request)

    assert again == first
    groups = {g.name: g for g in (await hp.describe_cluster()).groups}
    assert groups["spot-a"].target_count == 4  # 2 initial + 2, not + 4
    with pytest.raises(BackendError) as raised:
        await hp.batch_add_nodes(
            body("t-replay", {"InstanceGroupName": "spot-a", "IncrementTargetCountBy": 3})
        )
    assert raised.value.code == "IdempotentParameterMismatch"
    assert isinstance(raised.value, InvalidRequestError) and not raised.value.retryable


async def test_batch_add_limits_are_enforced(admin: Admin, clients: AwsClients, recorder: Recorder) -> None:
    await make_world(admin, GROUPS)
    hp = hyperpod(clients)
    # A request the model forbids (IncrementTargetCountBy below its minimum of 1) never leaves the
    # client ...
    with pytest.raises(BackendError) as raised:
        await hp.batch_add_nodes(body("t-bad", {"InstanceGroupName": "spot-a", "IncrementTargetCountBy": 0}))
    assert (raised.value.code, raised.value.retryable) == ("ParamValidationError", False)
    assert isinstance(raised.value, InvalidRequestError)
    # ... while the 5-group and 50-node limits are the service's to enforce (botocore checks
    # only minimums), and they are not worth retrying.
    with pytest.raises(BackendError) as raised:
        await hp.batch_add_nodes(
            body("t-six", *({"InstanceGroupName": f"g{i}", "IncrementTargetCountBy": 1} for i in range(6)))
        )
    assert (raised.value.code, raised.value.retryable) == ("ValidationException", False)
    with pytest.raises(BackendError) as raised:
        await hp.batch_add_nodes(
            body(
                "t-51",
                {"InstanceGroupName": "spot-a", "IncrementTargetCountBy": 50},
                {"InstanceGroupName": "plain", "IncrementTargetCountBy": 1},
            )
        )
    assert raised.value.code == "ValidationException"
    assert [c.params["ClientToken"] for c in recorder.operations("BatchAddClusterNodes")] == [
        "t-bad",
        "t-six",
        "t-51",
    ]


async def test_batch_delete_chunks_by_50(admin: Admin, clients: AwsClients, recorder: Recorder) -> None:
    await make_world(admin, GROUPS)
    hp = hyperpod(clients)
    added = [
        a.logical_id
        for token in ("t1", "t2", "t3")
        for a in (
            await hp.batch_add_nodes(
                body(token, {"InstanceGroupName": "od-multi", "IncrementTargetCountBy": 50})
            )
        ).successful
    ]
    assert len(added) == 150

    result = await hp.batch_delete_nodes(added)

    calls = recorder.operations("BatchDeleteClusterNodes")
    # "a combined maximum of 50 identifiers" (BatchDeleteClusterNodes API reference)
    assert [len(c.params["NodeLogicalIds"]) for c in calls] == [50, 50, 50]
    assert set(result.deleted) == set(added)
    assert result.failed == ()
    assert [n.group for n in await hp.list_nodes()] == ["spot-a", "spot-a"]


async def test_batch_delete_twice_reports_not_found(admin: Admin, clients: AwsClients) -> None:
    await make_world(admin, GROUPS)
    hp = hyperpod(clients)
    node = (await hp.list_nodes())[0]

    first = await hp.batch_delete_nodes([node.logical_id])
    second = await hp.batch_delete_nodes([node.logical_id, "no-such-node"])

    assert first.deleted == (node.logical_id,)
    assert second.deleted == ()
    assert [(f.logical_id, f.code) for f in second.failed] == [
        (node.logical_id, "NodeIdNotFound"),
        ("no-such-node", "NodeIdNotFound"),
    ]
    assert await hp.batch_delete_nodes([]) == first.__class__()


async def test_list_events_since_a_time(admin: Admin, clients: AwsClients, recorder: Recorder) -> None:
    await make_world(admin, GROUPS)
    cluster = moto_ext.sagemaker_cluster(REGION, CLUSTER)
    start = datetime.now(UTC) - timedelta(hours=1)
    for minute in range(5):
        moto_ext.add_event(
            cluster,
            f"event {minute}",
            group="spot-a",
            instance_id=f"i-{minute}",
            level="Error" if minute == 4 else "Info",
            time=start + timedelta(minutes=minute),
        )
    hp = SageMakerHyperPod(clients.sagemaker, clients.ec2, CLUSTER, retry=FAST, page_size=2)

    events = await hp.list_events((start + timedelta(minutes=1)).timestamp())

    assert [e.description for e in events] == ["event 2", "event 3", "event 4"]
    assert events[-1].level == "Error"
    assert (events[0].group, events[0].instance_id) == ("spot-a", "i-2")
    assert events[0].time == pytest.approx((start + timedelta(minutes=2)).timestamp(), abs=1e-3)
    assert len(recorder.operations("ListClusterEvents")) == 2  # 3 events, pages of 2
    assert len(await hp.list_events(0)) == 5
