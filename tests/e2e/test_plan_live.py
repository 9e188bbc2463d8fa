"""`plan --live` reads pending pods, nodes and DaemonSets from a cluster, read-only.

The cluster is the fake API server (`hpscaler.testing.FakeApiServer`) run in a thread of its own,
so that the command runs exactly as a user runs it: a kubeconfig, `anyio.run`, the real client.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from e2e_harness import write_kubeconfig

from hpscaler.cli import main
from hpscaler.testing import FakeApiServer
from hpscaler.testing.apiresources import DEFAULT_RESOURCES, ResourceType

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "config" / "examples"
DAEMONSETS = ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, status=True, short_names=("ds",))


class ServerThread:
    """The fake API server on an event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = FakeApiServer(resources=(*DEFAULT_RESOURCES, DAEMONSETS))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result()
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def pod(name: str, cpu: str, node: str = "", phase: str = "Pending") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [
                {"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}
            ],
            **({"nodeName": node} if node else {}),
        },
        "status": {"phase": phase},
    }


def node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "node.kubernetes.io/instance-type": "ml.c5.2xlarge",
                "topology.kubernetes.io/zone": "us-west-2a",
                "karpenter.sh/capacity-type": "on-demand",
            },
        },
        "status": {
            "allocatable": {"cpu": "7910m", "memory": "14Gi", "pods": "58"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeApiServer, Path]]:
    with ServerThread() as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server)
        yield server, kubeconfig


def test_plan_live_plans_the_pending_pods_around_existing_nodes_and_daemonsets(
    cluster: tuple[FakeApiServer, Path],
) -> None:
    server, kubeconfig = cluster
    server.create(node("existing-1"))
    server.create(pod("running-0", "6", node="existing-1", phase="Running"))  # leaves ~1.9 CPU
    server.create(pod("small-0", "1"))  # fits next to it
    for i in range(3):
        server.create(pod(f"big-{i}", "3"))  # needs new nodes
    server.create(pod("done-0", "4", phase="Succeeded"))  # finished pods are not planned
    agent = pod("agent-x", "1")  # a DaemonSet's pod waiting for its node is not provisioned for
    agent["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": True, "uid": "u"}
    ]
    server.create(agent)
    server.create(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "a",
                                "image": "x",
                                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                            }
                        ]
                    },
                },
            },
        }
    )
    before = len(server.requests)
    result = CliRunner().invoke(
        main,
        ["plan", "--config", str(SEED), "--live", "--kubeconfig", str(kubeconfig), "--output", "json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["existingNodes"] == [{"name": "existing-1", "pods": ["default/small-0"]}]
    new_pods = sorted(p for n in plan["newNodes"] for p in n["pods"])
    assert new_pods == ["default/big-0", "default/big-1", "default/big-2"]
    # the DaemonSet's 1 CPU is reserved on each new node: 7910m - 1000m leaves room for two 3-CPU pods
    assert sorted(len(n["pods"]) for n in plan["newNodes"]) == [1, 2]
    calls = server.requests[before:]
    assert {(r.method, r.verb) for r in calls if r.verb} == {("GET", "list")}  # read-only
    assert {r.resource for r in calls if r.verb} == {"pods", "nodes", "daemonsets"}


def test_plan_live_without_a_reachable_cluster_exits_2_naming_the_problem(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["plan", "--config", str(SEED), "--live", "--kubeconfig", str(tmp_path / "missing")]
    )
    assert result.exit_code == 2
    assert "--live: cannot read the cluster" in result.output
