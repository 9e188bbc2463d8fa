"""BatchDeleteClusterNodes over the wire: at most 50 identifiers a request, logical ids as
NodeLogicalIds (never an instance id there), per-node failures (FailedNodeLogicalIds, codes of
API_BatchDeleteClusterNodeLogicalIdsError) retried and reported, and consolidation that neither
touches a node HyperPod is patching (SystemUpdating) nor leaves its taint behind.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import moto_ext
from aws_harness import CLUSTER, REGION, Admin
from e2e_harness import (
    CAPACITY,
    NAMESPACE,
    ON_DEMAND_GROUP,
    SPOT_GROUP,
    WEB,
    Cloud,
    Setup,
    batch_adds,
    check_batch_add,
    deletes,
    eventually,
    round_of,
    running,
    scale_up,
    set_status,
    web_pod,
    write_config,
)

from hpscaler.daemon.drain import DISRUPTED_TAINT
from hpscaler.daemon.events import CancelRefused, NodeDeleteFailed, NodeDeleteRefused, NodeDisrupted
from hpscaler.testing import FakeApiServer

NODES = 60  # more than one BatchAddClusterNodes (50 nodes) and one BatchDeleteClusterNodes (50 ids)
CONSOLIDATING = Setup(
    settings={"consolidation": {"enabled": True, "pollSeconds": 1, "validationSeconds": 0}},
    disruption={"consolidateAfter": "1s", "budgets": [{"nodes": "100%"}]},
)


def big_pod(name: str) -> dict[str, Any]:
    """A pod of 3 CPUs: one per ml.c5.xlarge (3920m allocatable)."""
    return web_pod(
        name,
        containers=[
            {"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}
        ],
    )


def deleted_ids(request: moto_ext.AwsRequest) -> list[str]:
    """The ids of one delete request; instance ids (NodeIds) must not be there."""
    assert "NodeIds" not in request.params, "a logical id sent as a NodeId, or an instance id sent at all"
    ids: list[str] = request.params["NodeLogicalIds"]
    assert 1 <= len(ids) <= 50
    return ids


async def test_cancelling_60_launches_sends_50_ids_a_request_and_retries_a_refused_one(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    for index in range(NODES):
        kube.create(big_pod(f"web-{index}"))
    config = await write_config(tmp_path / "config", admin, cloud, kube)

    async with running(config) as service:
        await eventually(lambda: len(moto_ext.cluster_nodes(REGION, CLUSTER)) == NODES, what="60 launches")
        assert sorted(sum(check_batch_add(r).values()) for r in batch_adds()) == [10, 50]
        daemon = await eventually(lambda: service.daemon, what="the daemon")
        launched = sorted(n.logical_id for n in moto_ext.cluster_nodes(REGION, CLUSTER))
        await eventually(lambda: sorted(daemon.ctx.inflight) == launched, what="60 launches in flight")
        refused = launched[7]
        moto_ext.refuse_delete(REGION, CLUSTER, refused, "InvalidNodeStatus")

        set_status(launched, "Failure", CAPACITY)
        await round_of(daemon)

        first = [deleted_ids(r) for r in deletes()[:2]]
        assert sorted(map(len, first)) == [10, 50]
        assert sorted(i for ids in first for i in ids) == launched
        # Refused for that node alone: reported, still given up, and cancelled again next round.
        assert daemon.ctx.stats.events.count(CancelRefused) == 1
        assert refused in daemon.ctx.inflight
        assert set(daemon.ctx.inflight) - {refused} == {
            n.logical_id for n in moto_ext.cluster_nodes(REGION, CLUSTER) if n.group == ON_DEMAND_GROUP
        }
        await round_of(daemon)
        assert [deleted_ids(r) for r in deletes()[2:]] == [[refused]]
        assert refused not in daemon.ctx.inflight
        assert not any(n.group == SPOT_GROUP for n in moto_ext.cluster_nodes(REGION, CLUSTER))


async def _empty_one_node(kube: FakeApiServer, service: Any) -> tuple[Any, str, str]:
    """Two nodes running two pods each; the pods of one of them finish. (daemon, node, logical id)"""
    for name in WEB:
        kube.create(web_pod(name))
    placement = await scale_up(kube, service)
    daemon = service.daemon
    empty = next(iter(placement))
    logical_id = next(
        n.logical_id for n in moto_ext.cluster_nodes(REGION, CLUSTER) if empty.endswith(n.instance_id)
    )
    return daemon, empty, logical_id


def finish_pods(kube: FakeApiServer, node: str) -> None:
    """The pods on `node` complete and their controller removes them."""
    for pod in kube.list("pods", NAMESPACE):
        if pod["spec"].get("nodeName") == node:
            kube.delete("pods", pod["metadata"]["name"], NAMESPACE)


def tainted(kube: FakeApiServer, node: str) -> bool:
    found = kube.get("nodes", node)
    return found is not None and any(
        t["key"] == DISRUPTED_TAINT.key for t in found["spec"].get("taints") or []
    )


async def test_a_node_hyperpod_is_patching_is_not_consolidated_until_it_runs_again(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    config = await write_config(tmp_path / "config", admin, cloud, kube, CONSOLIDATING)
    async with running(config) as service:
        daemon, empty, logical_id = await _empty_one_node(kube, service)
        set_status([logical_id], "SystemUpdating")
        await round_of(daemon)  # ListClusterNodes tells the daemon
        finish_pods(kube, empty)
        await eventually(
            lambda: not any(p.node_name == empty for p in daemon.ctx.cache.pods.values()),
            what="the daemon to see the node empty",
        )
        decision = await daemon.consolidator.decide()
        assert empty not in {r.node for r in decision.remove}
        assert deletes() == [] and not tainted(kube, empty)

        set_status([logical_id], "Running")  # patching done
        await round_of(daemon)
        (delete,) = await eventually(lambda: deletes()[:1], what="the consolidation's delete")
        assert deleted_ids(delete) == [logical_id]


async def test_a_delete_hyperpod_keeps_refusing_is_reported_leaves_no_taint_and_is_retried_later(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    consolidation = {"enabled": True, "pollSeconds": 3, "validationSeconds": 0}
    setup = replace(CONSOLIDATING, settings={"consolidation": consolidation})
    config = await write_config(tmp_path / "config", admin, cloud, kube, setup)
    async with running(config) as service:
        daemon, empty, logical_id = await _empty_one_node(kube, service)
        # Four refusals: every attempt of one consolidation (consolidator.DELETE_ATTEMPTS).
        moto_ext.refuse_delete(REGION, CLUSTER, logical_id, "NodeIdInUse", times=4)
        finish_pods(kube, empty)

        events = daemon.ctx.stats.events
        await eventually(lambda: events.count(NodeDeleteFailed) == 1, 60, "the failure reported")
        # Untainted until the next consolidation poll (3 s) takes it up again.
        await eventually(lambda: not tainted(kube, empty), what="the taint removed")
        assert events.count(NodeDeleteRefused) == 4
        assert [deleted_ids(r) for r in deletes()[:4]] == [[logical_id]] * 4
        # The next consolidation deletes it once HyperPod accepts: a drained node is never forgotten.
        await eventually(
            lambda: logical_id not in {n.logical_id for n in moto_ext.cluster_nodes(REGION, CLUSTER)},
            60,
            "the node deleted",
        )
        # Counted when the daemon reads the answer, which may come after moto shows the node gone.
        await eventually(
            lambda: events.count(NodeDisrupted, reason="Empty") == 1, what="the disruption counted"
        )
