"""A group with subnets in two zones, over the wire: each BatchAddClusterNodes carries in
`AvailabilityZones` the one zone the plan chose, so zone spreads, zone-pinned pods and gangs hold.

moto places the nodes in the zone asked for (API_AddClusterNodeSpecification: "the availability
zones in which to add nodes"), DescribeClusterNode reports it in `Placement`, and the Node joins with
that zone's label, as HyperPod's kubelet registers it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import moto_ext
import pytest
from aws_harness import CLUSTER, REGION, Admin
from e2e_harness import (
    INSTANCE_TYPE,
    NAMESPACE,
    Setup,
    batch_adds,
    bind,
    build_cloud,
    check_batch_add,
    eventually,
    join,
    nominated,
    pods,
    ready,
    round_of,
    running,
    web_pod,
    write_config,
)

from hpscaler.testing import FakeApiServer

MULTI = "spot-ab"
ZONES = (f"{REGION}a", f"{REGION}b")
ZONE_LABEL = "topology.kubernetes.io/zone"
ZONE_ID_LABEL = "topology.k8s.aws/zone-id"
SPREAD = {
    "maxSkew": 1,
    "topologyKey": ZONE_LABEL,
    "whenUnsatisfiable": "DoNotSchedule",
    "labelSelector": {"matchLabels": {"app": "web"}},
}
SETUP = Setup(
    groups=(MULTI,),
    requirements=({"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},),
    cluster_file=False,  # the group comes from DescribeCluster, as `run` reads it
)


@pytest.fixture
async def zones_cloud(admin: Admin, endpoint: str) -> Any:
    """One Spot group of ml.c5.xlarge with a subnet in us-west-2a and one in us-west-2b."""
    cloud = await build_cloud(
        admin, endpoint, [{"Name": MULTI, "Zones": "ab", "Capacity": "Spot", "InstanceType": INSTANCE_TYPE}]
    )
    moto_ext.set_placement_scores(REGION, dict.fromkeys(cloud.zone_ids.values(), 9))
    return cloud


def asked_zones() -> list[tuple[str, int, tuple[str, ...]]]:
    """(group, count, AvailabilityZones) of every BatchAddClusterNodes entry moto received."""
    found = []
    for request in batch_adds():
        check_batch_add(request)
        for entry in request.params["NodesToAdd"]:
            zones = tuple(entry["AvailabilityZones"])
            found.append((entry["InstanceGroupName"], entry["IncrementTargetCountBy"], zones))
    return sorted(found, key=lambda e: e[2])


async def join_all(kube: FakeApiServer, cloud: Any) -> dict[str, str]:
    """Every launched node joins (in the zone HyperPod placed it) and is registered; name -> zone.

    Each registered node's zone id label is its own zone's, whichever order the requests went in.
    """
    zones = {}
    for node in moto_ext.cluster_nodes(REGION, CLUSTER):
        name = join(kube, node)
        registered = await ready(kube, name)
        labels = registered["metadata"]["labels"]
        assert labels[ZONE_LABEL] == node.zone
        assert labels[ZONE_ID_LABEL] == cloud.zone_ids[node.zone]
        zones[name] = node.zone
    return zones


async def test_a_zone_spread_gets_one_request_per_zone_each_naming_its_zone(
    tmp_path: Path, admin: Admin, zones_cloud: Any, kube: FakeApiServer
) -> None:
    names = [f"web-{i}" for i in range(4)]
    for name in names:
        kube.create(web_pod(name, topologySpreadConstraints=[SPREAD]))
    config = await write_config(tmp_path / "config", admin, zones_cloud, kube, SETUP)

    async with running(config) as service:
        await eventually(lambda: len(nominated(kube)) == 4, what="Nominated for every pod")
        # Two ml.c5.xlarge, one per zone, two pods each: never "any of the group's zones".
        assert asked_zones() == [(MULTI, 1, (ZONES[0],)), (MULTI, 1, (ZONES[1],))]
        launched = moto_ext.cluster_nodes(REGION, CLUSTER)
        assert sorted(n.zone for n in launched) == list(ZONES)
        daemon = await eventually(lambda: service.daemon, what="the daemon")
        assert sorted(r.zone for r in daemon.ctx.inflight.values()) == list(ZONES)

        # The pods were told which zone their new node is in: two each.
        told = [z for e in kube.list("events", NAMESPACE) for z in ZONES if f"({z}, spot)" in e["message"]]
        assert sorted(told) == [ZONES[0], ZONES[0], ZONES[1], ZONES[1]]

        node_zones = await join_all(kube, zones_cloud)
        by_zone = {zone: name for name, zone in node_zones.items()}
        for pod, zone in zip(names, sorted(ZONES * 2), strict=True):
            bind(kube, pod, by_zone[zone])
        await eventually(
            lambda: (
                all(daemon.ctx.cache.pods[f"{NAMESPACE}/{p}"].phase == "Running" for p in names)
                and all(daemon.ctx.cache.nodes[n].ready for n in node_zones)
            ),
            what="the daemon to see the pods running",
        )
        plan = await daemon.provisioner.reconcile("e2e-settle")
        assert plan is not None and not plan.new_nodes and not plan.unschedulable
        assert daemon.ctx.inflight == {}

    placed = [node_zones[p["spec"]["nodeName"]] for p in pods(kube).values()]
    assert sorted(placed) == [ZONES[0], ZONES[0], ZONES[1], ZONES[1]]  # the spread holds
    assert len(batch_adds()) == 2


async def test_a_pod_pinned_to_one_zone_is_asked_for_in_that_zone_only(
    tmp_path: Path, admin: Admin, zones_cloud: Any, kube: FakeApiServer
) -> None:
    kube.create(web_pod("web-0", nodeSelector={"tier": "web", ZONE_LABEL: ZONES[1]}))
    config = await write_config(tmp_path / "config", admin, zones_cloud, kube, SETUP)

    async with running(config):
        await eventually(lambda: batch_adds()[:1], what="BatchAddClusterNodes")
        assert asked_zones() == [(MULTI, 1, (ZONES[1],))]
        (node,) = moto_ext.cluster_nodes(REGION, CLUSTER)
        assert node.zone == ZONES[1]
        await join_all(kube, zones_cloud)


async def test_a_gang_is_asked_for_in_a_single_zone_and_waits_for_its_launches_there(
    tmp_path: Path, admin: Admin, zones_cloud: Any, kube: FakeApiServer
) -> None:
    # us-west-2b scores better: the gang goes to the group's second zone.
    moto_ext.set_placement_scores(
        REGION, {zones_cloud.zone_ids[ZONES[0]]: 2, zones_cloud.zone_ids[ZONES[1]]: 9}
    )
    for index in range(4):
        pod = web_pod(f"web-{index}")
        pod["metadata"]["labels"]["hpscaler.io/gang"] = "train"
        pod["metadata"]["annotations"] = {"hpscaler.io/gang-min-member": "4"}
        kube.create(pod)
    config = await write_config(tmp_path / "config", admin, zones_cloud, kube, SETUP)

    async with running(config) as service:
        await eventually(lambda: len(nominated(kube)) == 4, what="Nominated for every member")
        assert asked_zones() == [(MULTI, 2, (ZONES[1],))]
        assert {n.zone for n in moto_ext.cluster_nodes(REGION, CLUSTER)} == {ZONES[1]}
        # While the launches are on their way, later rounds finish the gang on them, in their zone:
        # nothing more is asked for, and nothing is cancelled as "stranded" in another zone.
        daemon = await eventually(lambda: service.daemon, what="the daemon")
        await round_of(daemon)
        await round_of(daemon)
        assert asked_zones() == [(MULTI, 2, (ZONES[1],))]
        assert moto_ext.requests("BatchDeleteClusterNodes") == []
        assert len(daemon.ctx.inflight) == 2


async def test_unequal_requests_per_zone_register_each_node_with_its_own_zone(
    tmp_path: Path, admin: Admin, zones_cloud: Any, kube: FakeApiServer
) -> None:
    # One node's worth of pods pinned to us-west-2a, two nodes' worth to us-west-2b: the request for
    # us-west-2b (2 nodes) goes first, whatever order the plan listed the nodes in.
    for index in range(6):
        zone = ZONES[0] if index < 2 else ZONES[1]
        kube.create(web_pod(f"web-{index}", nodeSelector={"tier": "web", ZONE_LABEL: zone}))
    config = await write_config(tmp_path / "config", admin, zones_cloud, kube, SETUP)

    async with running(config):
        await eventually(lambda: len(nominated(kube)) == 6, what="Nominated for every pod")
        assert asked_zones() == [(MULTI, 1, (ZONES[0],)), (MULTI, 2, (ZONES[1],))]
        # Registration puts on each node the labels planned for a node of its zone.
        node_zones = await join_all(kube, zones_cloud)
        assert sorted(node_zones.values()) == [ZONES[0], ZONES[1], ZONES[1]]


async def test_a_refused_request_marks_out_the_zone_it_asked_for(
    tmp_path: Path, admin: Admin, zones_cloud: Any, kube: FakeApiServer
) -> None:
    kube.create(web_pod("web-0", nodeSelector={"tier": "web", ZONE_LABEL: ZONES[1]}))
    config = await write_config(tmp_path / "config", admin, zones_cloud, kube, SETUP)
    async with running(config) as service:
        daemon = await eventually(lambda: service.daemon, what="the daemon")
        await eventually(lambda: daemon.ctx.cache.synced, what="the watch")
        # HyperPod refuses the group now (InvalidInstanceGroupStatus), before hpscaler re-reads it.
        (group,) = moto_ext.sagemaker_cluster(REGION, CLUSTER).instance_groups
        group["Status"] = "Updating"
        await eventually(lambda: batch_adds()[:1], what="the refused BatchAddClusterNodes")
        assert asked_zones()[0] == (MULTI, 1, (ZONES[1],))
        now = daemon.ctx.clock.now()
        await eventually(
            lambda: daemon.ctx.unavailable.is_unavailable(MULTI, ZONES[1], now), what="us-west-2b marked"
        )
        assert not daemon.ctx.unavailable.is_unavailable(MULTI, ZONES[0], now)  # not the group's first
