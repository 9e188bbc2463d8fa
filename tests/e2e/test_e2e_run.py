"""`hpscaler run` end to end: the real Kubernetes and AWS backends over HTTP, against the fake API server
and moto, with the test playing HyperPod, the kubelet, kube-scheduler and the ReplicaSet controller.
"""

from __future__ import annotations

import json
from pathlib import Path

import moto_ext
import pytest
from aws_harness import CLUSTER, POLICY_PATH, REGION, Admin
from e2e_harness import (
    INTERRUPTED_TAINT,
    NAMESPACE,
    ON_DEMAND_GROUP,
    WEB,
    Cloud,
    batch_adds,
    check_batch_add,
    eventually,
    hyperpod_provider_id,
    join,
    pods,
    ready,
    running,
    scale_up,
    spot_warning,
    validate_request,
    web_pod,
    write_config,
)
from kube_harness import granted

from hpscaler.daemon.events import EvictionBlocked, InterruptionOutcome
from hpscaler.testing import FakeApiServer


async def test_pending_pods_become_nodes_and_the_cluster_converges(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    for name in WEB:
        kube.create(web_pod(name))
    config = await write_config(tmp_path / "config", admin, cloud, kube)

    async with running(config) as service:
        await eventually(service.ready.is_set, what="the service to be ready")
        assert service.elector is not None and service.elector.is_leader
        placement = await scale_up(kube, service)
        listed = moto_ext.cluster_nodes(REGION, CLUSTER)
        assert sorted(n.instance_id for n in listed) == sorted(n.removeprefix("hyperpod-") for n in placement)
        assert {n.status for n in listed} == {"Running"}
        # Each joining node was registered in one patch, with what the plan assumed of it.
        patches = kube.requests_for("patch", "nodes")
        assert sorted(p.name for p in patches if "labels" in p.body.get("metadata", {})) == sorted(placement)
        for name in placement:
            labels = kube.get("nodes", name)["metadata"]["labels"]
            assert {
                "tier": "web",
                "karpenter.sh/nodepool": "default",
                "karpenter.sh/capacity-type": "spot",
                "karpenter.sh/registered": "true",
                "karpenter.k8s.aws/instance-family": "c5",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/region": REGION,
            }.items() <= labels.items()

    assert len(batch_adds()) == 1
    assert {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods(kube).values()} == {
        pod: node for node, members in placement.items() for pod in members
    }
    assert kube.get("leases", "hpscaler-leader", "kube-system") is not None
    check_contract(kube)


async def test_spot_interruption_drains_through_the_eviction_api_and_replaces_capacity(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    for name in WEB:
        kube.create(web_pod(name))
    # Three of the four web replicas must stay up: only one eviction at a time is allowed.
    kube.create(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": NAMESPACE},
            "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}},
        }
    )
    config = await write_config(tmp_path / "config", admin, cloud, kube)

    async with running(config) as service:
        placement = await scale_up(kube, service)
        doomed, survivor = list(placement)
        instance = doomed.removeprefix("hyperpod-")
        await admin.sqs.send_message(QueueUrl=cloud.queue_url, MessageBody=spot_warning(instance))

        # The node is tainted at once, and replacement capacity is asked for before it dies: the
        # interrupted Spot offering is avoided, so the replacement is On-Demand.
        await eventually(lambda: INTERRUPTED_TAINT in taints(kube, doomed), what="the interruption taint")
        await eventually(lambda: len(batch_adds()) == 2, what="the replacement BatchAddClusterNodes")
        assert check_batch_add(batch_adds()[1]) == {ON_DEMAND_GROUP: 1}
        assert batch_adds()[1].params["ClientToken"] != batch_adds()[0].params["ClientToken"]
        replacement = next(n for n in moto_ext.cluster_nodes(REGION, CLUSTER) if n.group == ON_DEMAND_GROUP)
        fresh = join(kube, replacement)
        await ready(kube, fresh)

        # One pod may go (201); the budget holds the other (429) until its replacement runs.
        evictions = lambda: kube.requests_for("create", "pods/eviction")  # noqa: E731
        first = await eventually(
            lambda: [r for r in evictions() if r.status == 201][:1], what="the first eviction"
        )
        gone = first[0].name
        assert gone in placement[doomed]
        held = next(p for p in placement[doomed] if p != gone)
        await eventually(
            lambda: any(r.name == held and r.status == 429 for r in evictions()), what="a refused eviction"
        )
        annotations = kube.get("pods", held, NAMESPACE)["metadata"]["annotations"]
        assert "hpscaler.io/interruption-deadline" in annotations
        assert kube.get("pods", gone, NAMESPACE) is None
        # The ReplicaSet replaces the evicted pod; it runs on the replacement node.
        kube.create(web_pod("web-4", node=fresh))
        await eventually(
            lambda: any(r.name == held and r.status == 201 for r in evictions()), what="the second eviction"
        )
        kube.create(web_pod("web-5", node=fresh))

        # The notice is deleted from the queue only once handled: after the last eviction.
        deleted = await eventually(lambda: moto_ext.requests("DeleteMessage"), what="the DeleteMessage")
        assert len(deleted) == 1
        last_eviction = max(r.time for r in evictions() if r.status == 201)
        assert deleted[0].time > last_eviction > batch_adds()[1].time
        assert service.daemon is not None
        events = service.daemon.ctx.stats.events
        assert (
            events.count(InterruptionOutcome, outcome="handled") == 1 and events.count(EvictionBlocked) >= 1
        )

    attributes = await admin.sqs.get_queue_attributes(
        QueueUrl=cloud.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    assert set(attributes["Attributes"].values()) == {"0"}
    # Every eviction went through the Eviction API; nothing was deleted behind the budget's back.
    assert kube.requests_for("delete", "pods") == []
    assert [r.name for r in evictions() if r.status == 201] == [gone, held]
    running_pods = {n: p["spec"]["nodeName"] for n, p in pods(kube).items()}
    assert running_pods == {**{p: survivor for p in placement[survivor]}, "web-4": fresh, "web-5": fresh}
    assert len(batch_adds()) == 2
    check_contract(kube)


def taints(kube: FakeApiServer, node: str) -> set[str]:
    """Keys of the node's taints."""
    return {t["key"] for t in kube.get("nodes", node)["spec"].get("taints", [])}


def check_contract(kube: FakeApiServer) -> None:
    """What the daemon did is valid for the AWS service models, and allowed by the shipped IAM policy
    and RBAC rules."""
    calls = [c for c in moto_ext.requests() if c.from_hpscaler]
    assert {"BatchAddClusterNodes", "ListClusterNodes", "ReceiveMessage"} <= {c.operation for c in calls}
    for call in calls:
        validate_request(call)
    policy = json.loads(POLICY_PATH.read_text())
    allowed = {a for s in policy["Statement"] for a in s["Action"]}
    # IAM's service prefixes are botocore's service names for these three.
    assert {f"{c.service}:{c.operation}" for c in calls} <= allowed
    rules = granted()
    daemon_requests = {(r.group, r.resource, r.verb) for r in kube.requests if r.verb}
    assert daemon_requests <= rules.keys()


async def test_interruption_before_the_next_round_still_avoids_the_interrupted_spot_offering(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    for name in WEB:
        kube.create(web_pod(name))
    config = await write_config(tmp_path / "config", admin, cloud, kube)

    async with running(config) as service:
        placement = await scale_up(kube, service, settle=False)
        assert service.daemon is not None
        if not service.daemon.ctx.inflight:
            pytest.skip("the launch monitor's round settled the joins first: the race did not happen")
        doomed = next(iter(placement))
        await admin.sqs.send_message(
            QueueUrl=cloud.queue_url, MessageBody=spot_warning(doomed.removeprefix("hyperpod-"))
        )
        await eventually(lambda: len(batch_adds()) == 2, what="the replacement BatchAddClusterNodes")

    assert check_batch_add(batch_adds()[1]) == {ON_DEMAND_GROUP: 1}


async def test_interruption_of_a_node_with_a_hyperpod_provider_id_is_handled(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    for name in WEB:
        kube.create(web_pod(name))
    config = await write_config(tmp_path / "config", admin, cloud, kube)

    async with running(config) as service:
        placement = await scale_up(kube, service, settle=False, provider_id=hyperpod_provider_id)
        doomed = next(iter(placement))
        await admin.sqs.send_message(
            QueueUrl=cloud.queue_url, MessageBody=spot_warning(doomed.removeprefix("hyperpod-"))
        )
        # Deleted once handled, whichever way it was handled.
        await eventually(lambda: moto_ext.requests("DeleteMessage"), what="the DeleteMessage")

    assert INTERRUPTED_TAINT in taints(kube, doomed)
