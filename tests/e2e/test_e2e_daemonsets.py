"""`hpscaler run` against moto and the fake API server: DaemonSets watched over HTTP shrink the room
every new node has, so the first BatchAddClusterNodes asks for enough nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import moto_ext
from aws_harness import CLUSTER, REGION, Admin
from e2e_harness import (
    SPOT_GROUP,
    WEB,
    Cloud,
    batch_adds,
    bind,
    check_batch_add,
    eventually,
    join,
    ready,
    running,
    web_pod,
    write_config,
)

from hpscaler.testing import FakeApiServer


def agent(cpu: str, **spec: Any) -> dict[str, Any]:
    """A node agent DaemonSet requesting `cpu`."""
    container = {
        "name": "agent",
        "image": "agent",
        "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": f"agent-{cpu}", "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [container], **spec},
            },
        },
    }


async def test_new_nodes_reserve_the_daemonsets_watched_over_http(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    # 1500m web pods, two per ml.c5.xlarge (3920m) without agents. An agent on every node (800m)
    # and one on the NodePool's nodes (200m, by the template label registration puts on) leave
    # 2920m: room for one.
    kube.create(agent("800m", tolerations=[{"operator": "Exists"}]))
    kube.create(agent("200m", nodeSelector={"tier": "web"}))
    # Select nodes no NodePool makes here: they reserve nothing (else nothing would fit).
    kube.create(agent("3", nodeSelector={"karpenter.k8s.aws/instance-gpu-count": "8"}))
    on_demand_only = {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}
                ]
            }
        ]
    }
    kube.create(
        agent(
            "2", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": on_demand_only}}
        )
    )
    for name in WEB:
        kube.create(web_pod(name))
    config = await write_config(tmp_path / "config", admin, cloud, kube)

    async with running(config) as service:
        (add,) = await eventually(lambda: batch_adds()[:1], what="BatchAddClusterNodes")
        assert check_batch_add(add) == {SPOT_GROUP: 4}
        daemon = await eventually(lambda: service.daemon, what="the daemon")
        assert len(daemon.ctx.cache.daemonsets) == 4
        launched = moto_ext.cluster_nodes(REGION, CLUSTER)
        names = [join(kube, node) for node in launched]
        for name in names:
            await ready(kube, name)
        for pod, node in zip(WEB, names, strict=True):
            bind(kube, pod, node)
        await eventually(
            lambda: all(daemon.ctx.cache.pods[f"default/{p}"].phase == "Running" for p in WEB),
            what="the daemon to see the pods running",
        )
        plan = await daemon.provisioner.reconcile("e2e-settle")
        assert plan is not None and not plan.new_nodes and not plan.unschedulable
    assert len(batch_adds()) == 1  # no second round
