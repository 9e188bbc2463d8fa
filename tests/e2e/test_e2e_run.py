"""`hpscaler run` end to end: the real Kubernetes and AWS backends over HTTP, against the fake API server
and moto, with the test playing HyperPod, the kubelet, kube-scheduler and the ReplicaSet controller.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import moto_ext
import pytest
from aws_harness import CLUSTER, POLICY_PATH, REGION, Admin
from e2e_harness import (
    INTERRUPTED_TAINT,
    NAMESPACE,
    ON_DEMAND_GROUP,
    SPOT_GROUP,
    Cloud,
    batch_adds,
    bind,
    check_batch_add,
    eks_provider_id,
    eventually,
    hyperpod_provider_id,
    join,
    nominated,
    pods,
    running,
    spot_warning,
    validate_request,
    web_pod,
    write_config,
)
from kube_harness import granted

from hpscaler.service.run import Service
from hpscaler.testing import FakeApiServer

WEB = [f"web-{i}" for i in range(4)]


async def scale_up(
    kube: FakeApiServer,
    service: Service,
    *,
    settle: bool = True,
    provider_id: Callable[[moto_ext.NodeFacts], str] = eks_provider_id,
) -> dict[str, list[str]]:
    """Pending pods -> one BatchAddClusterNodes -> nodes join -> pods bound; node -> its pods.

    With `settle`, a provisioning round then runs (the launch monitor's, run now instead of within
    its 10 s period), and it must find nothing to do.
    """
    request = await eventually(lambda: batch_adds()[:1], what="BatchAddClusterNodes")
    (add,) = request
    # Two 1500m pods fit an ml.c5.xlarge: four need two nodes, in the best (Spot) group.
    assert check_batch_add(add) == {SPOT_GROUP: 2}
    assert add.params["NodesToAdd"][0].get("AvailabilityZones", ["us-west-2a"]) == ["us-west-2a"]

    # hpscaler tells the pods where they are going before any node exists.
    messages = await eventually(lambda: len(nominated(kube)) == 4 and nominated(kube), what="Nominated")
    assert set(messages) == set(WEB)
    assert all(f"new ml.c5.xlarge node in {SPOT_GROUP}" in m for m in messages.values())

    launched = moto_ext.cluster_nodes(REGION, CLUSTER)
    assert [(n.group, n.status, n.capacity_type) for n in launched] == [(SPOT_GROUP, "Pending", "Spot")] * 2
    names = [join(kube, node, provider_id) for node in launched]
    placement = {names[0]: WEB[:2], names[1]: WEB[2:]}
    for node, members in placement.items():
        for pod in members:
            bind(kube, pod, node)

    daemon = await eventually(lambda: service.daemon, what="the daemon")
    ctx = daemon.ctx
    await eventually(
        lambda: (
            all(ctx.cache.nodes.get(n) and ctx.cache.nodes[n].ready for n in names)
            and all(ctx.cache.pods[f"{NAMESPACE}/{p}"].phase == "Running" for p in WEB)
        ),
        what="the daemon to see the nodes and the running pods",
    )
    if settle:
        plan = await daemon.provisioner.reconcile("e2e-settle")
        assert plan is not None and not plan.new_nodes and not plan.unschedulable
        assert ctx.inflight == {}  # both launches seen through to joined nodes
    return placement


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
        counters = service.daemon.ctx.stats.counters
        assert counters["interruptions_handled"] == 1 and counters["evictions_blocked"] >= 1

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
