"""Registration over the wire: a node hpscaler launched joins carrying only what HyperPod puts on it
(its group's KubernetesConfig labels and taints included); hpscaler patches on it, in one patch,
what its plan assumed: the NodePool's labels, taints and startup taints, `karpenter.sh/*` and the
well-known instance labels. Startup taints are put on once and never again. A node of a managed
group that joined before hpscaler ran belongs to the NodePool of its group and counts against its
limits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import moto_ext
import pytest
from aws_harness import CLUSTER, REGION, Admin
from e2e_harness import (
    DEFAULT_GROUPS,
    NAMESPACE,
    SPOT_GROUP,
    Setup,
    batch_adds,
    build_cloud,
    check_batch_add,
    eventually,
    hyperpod_provider_id,
    join,
    joined_before,
    ready,
    round_of,
    running,
    web_pod,
    write_config,
)

from hpscaler.testing import FakeApiServer

GROUP_TAINT = {"Key": "example.com/ml", "Value": "true", "Effect": "NoSchedule"}
GROUP_LABELS = {"example.com/team": "ml"}
POOL_TAINT = {"key": "dedicated", "value": "web", "effect": "NoSchedule"}
STARTUP_TAINT = {"key": "example.com/agent-not-ready", "effect": "NoExecute"}
TOLERATIONS = [
    {"key": "example.com/ml", "operator": "Exists"},
    {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
]


def taint_keys(node: dict[str, Any]) -> set[str]:
    return {t["key"] for t in node["spec"].get("taints") or []}


async def test_a_joining_node_gets_the_pools_labels_taints_and_startup_taints_in_one_patch(
    tmp_path: Path, admin: Admin, endpoint: str, kube: FakeApiServer
) -> None:
    spot, on_demand = DEFAULT_GROUPS
    cloud = await build_cloud(
        admin, endpoint, [{**spot, "Labels": GROUP_LABELS, "Taints": [GROUP_TAINT]}, on_demand]
    )
    setup = Setup(taints=(POOL_TAINT,), startup_taints=(STARTUP_TAINT,))
    config = await write_config(tmp_path / "config", admin, cloud, kube, setup)
    kube.create(web_pod("web-0", tolerations=TOLERATIONS))

    async with running(config) as service:
        (add,) = await eventually(lambda: batch_adds()[:1], what="BatchAddClusterNodes")
        assert check_batch_add(add) == {SPOT_GROUP: 1}  # planned as if the startup taint were not there
        (launched,) = moto_ext.cluster_nodes(REGION, CLUSTER)
        name = join(kube, launched)
        joined = kube.get("nodes", name)
        assert not any(k.startswith("karpenter.") for k in joined["metadata"]["labels"])  # HyperPod's only
        node = await ready(kube, name)

        (patch,) = [p for p in kube.requests_for("patch", "nodes") if p.name == name]
        assert {"tier", "karpenter.sh/nodepool", "karpenter.sh/capacity-type"} <= patch.body["metadata"][
            "labels"
        ].keys()
        labels = node["metadata"]["labels"]
        assert {
            **GROUP_LABELS,  # the group's, where HyperPod put them
            "tier": "web",
            "karpenter.sh/nodepool": "default",
            "karpenter.sh/capacity-type": "spot",
            "karpenter.sh/registered": "true",
            "karpenter.k8s.aws/instance-family": "c5",
            "karpenter.k8s.aws/instance-cpu": "4",
            "topology.k8s.aws/zone-id": cloud.zone_id,
        }.items() <= labels.items()
        # The pool's taint and startup taint added, the group's own kept (HyperPod reconciles it).
        assert {"dedicated", "example.com/agent-not-ready", "example.com/ml"} <= taint_keys(node)

        # The node agent removes the startup taint once the node is ready for work: never put back.
        current = kube.get("nodes", name)
        kube.patch(
            "nodes",
            name,
            {"spec": {"taints": [t for t in current["spec"]["taints"] if t["key"] != STARTUP_TAINT["key"]]}},
        )
        daemon = await eventually(lambda: service.daemon, what="the daemon")
        await eventually(
            lambda: not any(t.key == STARTUP_TAINT["key"] for t in daemon.ctx.cache.nodes[name].taints),
            what="the daemon to see the taint gone",
        )
        await round_of(daemon)
        await round_of(daemon)
        assert STARTUP_TAINT["key"] not in taint_keys(kube.get("nodes", name))
        assert len([p for p in kube.requests_for("patch", "nodes") if p.name == name]) == 1  # not repeated
        assert len(batch_adds()) == 1


@pytest.mark.parametrize(
    ("provider_id", "name"),
    [
        (hyperpod_provider_id, ""),  # aws:///<zone id>/sagemaker/cluster/hyperpod-<cluster>-<instance>
        (lambda _: "", ""),  # by the instance id in HyperPod's node name, hyperpod-<instance>
        (lambda _: "", "ip-10-0-0-17.us-west-2.compute.internal"),  # by instance-group-name alone
    ],
    ids=["hyperpod-provider-id", "node-name", "instance-group"],
)
async def test_a_joining_node_is_found_by_provider_id_name_or_instance_group(
    tmp_path: Path,
    admin: Admin,
    endpoint: str,
    kube: FakeApiServer,
    provider_id: Callable[[moto_ext.NodeFacts], str],
    name: str,
) -> None:
    cloud = await build_cloud(admin, endpoint)
    config = await write_config(tmp_path / "config", admin, cloud, kube)
    kube.create(web_pod("web-0"))

    async with running(config):
        await eventually(lambda: batch_adds()[:1], what="BatchAddClusterNodes")
        (launched,) = moto_ext.cluster_nodes(REGION, CLUSTER)
        name = join(kube, launched, provider_id=provider_id, name=name)
        node = await ready(kube, name)
        assert node["metadata"]["labels"]["karpenter.sh/nodepool"] == "default"


async def test_a_node_that_joined_before_hpscaler_ran_counts_against_its_pools_limits(
    tmp_path: Path, admin: Admin, endpoint: str, kube: FakeApiServer
) -> None:
    cloud = await build_cloud(admin, endpoint)
    # A node of the Spot group that joined before hpscaler ran, with two pods filling it.
    _, name = await joined_before(admin, kube, SPOT_GROUP)
    for pod in ("web-0", "web-1"):
        kube.create(web_pod(pod, node=name))
    kube.create(web_pod("web-2"))  # needs a node of its own
    config = await write_config(tmp_path / "config", admin, cloud, kube, Setup(limits={"cpu": "4"}))

    async with running(config) as service:
        daemon = await eventually(lambda: service.daemon, what="the daemon")
        await eventually(lambda: daemon.ctx.cache.synced, what="the watch")
        await round_of(daemon)
        await round_of(daemon)
        # One ml.c5.xlarge (4 CPUs) of the NodePool's group already takes the NodePool's limit.
        assert [r for r in batch_adds() if r.from_hpscaler] == []
        plan = daemon.provisioner.last_plan
        assert plan is not None and [u.pod for u in plan.unschedulable] == [f"{NAMESPACE}/web-2"]
        assert "limit" in plan.unschedulable[0].reason
        # Registered the same way as hpscaler's own nodes, without a taint that would evict its pods.
        node = kube.get("nodes", name)
        assert node["metadata"]["labels"]["karpenter.sh/nodepool"] == "default"
        assert not node["spec"].get("taints")
