"""Registration patches and DaemonSets through the Kubernetes backend, over HTTP to the fake API server."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

from kube_harness import (
    ManualClock,
    eventually,
    hosted,
    make_backend,
    next_event,
    node_manifest,
    until_synced,
)

from hpscaler.backends.types import WatchKind
from hpscaler.kube.backend import KubernetesBackend
from hpscaler.model import Requirement, Taint, Toleration
from hpscaler.testing import FakeApiServer

MERGE = "application/merge-patch+json"


def daemonset_manifest(name: str, cpu: str = "250m", memory: str = "256Mi", **spec: Any) -> dict[str, Any]:
    """An apps/v1 DaemonSet with one container requesting `cpu` and `memory`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
                    **spec,
                },
            },
        },
    }


async def test_register_node_sets_labels_and_taints_in_one_patch(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    server.create(node_manifest("n1", taints=[{"key": "group", "effect": "NoSchedule"}]))
    labels = {"karpenter.sh/nodepool": "ml", "team": "ml", "karpenter.sh/registered": "true"}
    await backend.register_node(
        "n1", labels, [Taint("gpu", "NoSchedule", "true"), Taint("init", "NoExecute")]
    )
    (patch,) = server.requests_for("patch", "nodes")
    assert patch.content_type == MERGE
    assert patch.body["metadata"]["resourceVersion"]
    assert patch.body["metadata"]["labels"] == labels
    node = server.get("nodes", "n1")
    assert node is not None
    assert {k: node["metadata"]["labels"][k] for k in labels} == labels
    assert node["spec"]["taints"] == [
        {"key": "group", "effect": "NoSchedule"},
        {"key": "gpu", "effect": "NoSchedule", "value": "true"},
        {"key": "init", "effect": "NoExecute"},
    ]
    # Registered already: nothing to write.
    await backend.register_node("n1", labels, [Taint("gpu", "NoSchedule", "true")])
    assert len(server.requests_for("patch", "nodes")) == 1


async def test_register_node_retries_a_conflict(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.create(node_manifest("n1"))
    server.fail_next("/api/v1/nodes/n1", 409, method="PATCH")
    await backend.register_node("n1", {"team": "ml"}, [])
    assert [p.status for p in server.requests_for("patch", "nodes")] == [409, 200]
    node = server.get("nodes", "n1")
    assert node is not None and node["metadata"]["labels"]["team"] == "ml"
    assert "taints" not in node["spec"]


async def test_daemonsets_are_listed_and_watched(server: FakeApiServer, api: Any, clock: ManualClock) -> None:
    server.create(
        daemonset_manifest(
            "agent",
            nodeSelector={"kubernetes.io/os": "linux"},
            tolerations=[{"operator": "Exists"}],
        )
    )
    async with hosted(make_backend(api, clock)) as kube, aclosing(kube.watch()) as events:
        listed = [e for e in await until_synced(events) if e.daemonset is not None]
        assert len(listed) == 1
        agent = listed[0].daemonset
        assert agent is not None and agent.key == "kube-system/agent"
        assert agent.requests == {"cpu": 250, "memory": 256 * 2**20}
        assert agent.node_selector == {"kubernetes.io/os": "linux"}
        assert agent.tolerations == (Toleration(operator="Exists"),)
        assert agent.is_daemonset
        await eventually(lambda: server.active_watches == 3)
        server.create(
            daemonset_manifest(
                "gpu-plugin",
                "100m",
                "64Mi",
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Exists"}
                                    ]
                                }
                            ]
                        }
                    }
                },
            )
        )
        event = await next_event(events)
        assert event.kind is WatchKind.ADDED and event.daemonset is not None
        assert event.daemonset.node_affinity == (
            (Requirement("karpenter.k8s.aws/instance-gpu-count", "Exists"),),
        )
        server.delete("daemonsets", "agent", "kube-system")
        event = await next_event(events)
        assert event.kind is WatchKind.DELETED and event.daemonset is not None
        assert event.daemonset.key == "kube-system/agent"
    assert server.requests_for("list", "daemonsets") and server.requests_for("watch", "daemonsets")
