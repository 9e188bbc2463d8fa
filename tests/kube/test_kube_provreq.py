"""ProvisioningRequests over the wire: the Kubernetes backend against the fake API server, then the
daemon serving each class and condition through it."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from kube_harness import ManualClock, eventually, hosted, make_backend, node_manifest
from kubernetes_asyncio.client import ApiClient

from hpscaler.clock import LoopClock
from hpscaler.config import default_config_path, load_config
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.context import Backends
from hpscaler.fake import World
from hpscaler.kube.backend import KubernetesBackend
from hpscaler.provisioning.provreq import BEST_EFFORT_ATOMIC, CHECK_CAPACITY, RequestCondition, RequestSet
from hpscaler.testing import FakeApiServer

GROUP = "autoscaling.x-k8s.io/v1"


def template(name: str, namespace: str = "ml", cpu: str = "7") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "template": {
            "metadata": {"labels": {"job": name}},
            "spec": {
                "containers": [{"name": "train", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]
            },
        },
    }


def provreq(
    name: str, cls: str, count: int, template_name: str = "", namespace: str = "ml", **params: str
) -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "ProvisioningRequest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "provisioningClassName": cls,
            "podSets": [{"podTemplateRef": {"name": template_name or f"{name}-tpl"}, "count": count}],
            "parameters": params,
        },
    }


def conditions(server: FakeApiServer, name: str, namespace: str = "ml") -> dict[str, dict[str, Any]]:
    obj = server.get("provisioningrequests", name, namespace) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def condition(server: FakeApiServer, name: str, kind: str) -> tuple[str, str] | None:
    found = conditions(server, name).get(kind)
    return (found["status"], found["reason"]) if found else None


async def test_backend_reads_requests_and_templates(
    backend: KubernetesBackend, server: FakeApiServer
) -> None:
    server.create(template("train-tpl"))
    server.create(provreq("train", BEST_EFFORT_ATOMIC, 4, noRetry="false"))
    found = await backend.provisioning_requests()
    (request,) = found.requests
    assert (request.key, request.class_name, request.pod_count) == ("ml/train", BEST_EFFORT_ATOMIC, 4)
    assert request.parameters == {"noRetry": "false"} and request.created > 0
    pod = found.templates["ml/train-tpl"]
    assert pod.requests["cpu"] == 7000 and pod.labels == {"job": "train-tpl"}
    assert not found.invalid


async def read_until(
    backend: KubernetesBackend, predicate: Callable[[RequestSet], bool], seconds: float = 5.0
) -> RequestSet:
    """Read the backend's requests until `predicate` holds (failing after `seconds`)."""
    with anyio.fail_after(seconds):
        while not predicate(found := await backend.provisioning_requests()):  # noqa: ASYNC110 - fed by the watch
            await anyio.sleep(0.01)
    return found


async def test_backend_watches_after_the_first_read(
    backend: KubernetesBackend, server: FakeApiServer
) -> None:
    server.create(template("train-tpl"))
    server.create(provreq("train", BEST_EFFORT_ATOMIC, 2))
    assert len((await backend.provisioning_requests()).requests) == 1
    await eventually(lambda: backend.provisioning.synced)
    await eventually(
        lambda: (
            bool(server.requests_for("watch", "provisioningrequests"))
            and bool(server.requests_for("watch", "podtemplates"))
        )
    )
    lists = len(server.requests_for("list", "provisioningrequests"))
    server.create(template("late-tpl"))
    server.create(provreq("late", CHECK_CAPACITY, 1))
    found = await read_until(backend, lambda f: len(f.requests) == 2)
    assert "ml/late-tpl" in found.templates
    server.delete("provisioningrequests", "train", "ml")
    await read_until(backend, lambda f: [r.name for r in f.requests] == ["late"])
    assert len(server.requests_for("list", "provisioningrequests")) == lists  # all from the watch
    # A dropped watch ends in a fresh list, and the cache is whole again.
    server.drop_watches()
    server.create(provreq("third", CHECK_CAPACITY, 1, template_name="late-tpl"))
    await read_until(backend, lambda f: len(f.requests) == 2, seconds=10)


async def test_backend_writes_conditions_through_the_status_subresource(
    backend: KubernetesBackend, server: FakeApiServer, clock: ManualClock
) -> None:
    server.create(provreq("train", BEST_EFFORT_ATOMIC, 1))
    wanted = [RequestCondition("Provisioned", "False", "CapacityIsNotFound", "no room")]
    assert await backend.write_provisioning_request_status("ml", "train", wanted)
    first = conditions(server, "train")["Provisioned"]
    assert (first["status"], first["reason"], first["message"]) == ("False", "CapacityIsNotFound", "no room")
    assert server.requests_for("patch", "provisioningrequests/status")
    clock.advance(60)
    assert not await backend.write_provisioning_request_status("ml", "train", wanted)  # unchanged: no write
    moved = [RequestCondition("Provisioned", "False", "CapacityIsNotFound", "still no room")]
    assert await backend.write_provisioning_request_status("ml", "train", moved)
    assert conditions(server, "train")["Provisioned"]["lastTransitionTime"] == first["lastTransitionTime"]
    done = [RequestCondition("Provisioned", "True", "CapacityIsProvisioned", "ok")]
    assert await backend.write_provisioning_request_status("ml", "train", done)
    assert conditions(server, "train")["Provisioned"]["lastTransitionTime"] != first["lastTransitionTime"]
    assert not await backend.write_provisioning_request_status("ml", "gone", done)


async def test_backend_without_the_crd_and_with_bad_objects(
    backend: KubernetesBackend, server: FakeApiServer
) -> None:
    bad = provreq("bad", BEST_EFFORT_ATOMIC, 1)
    bad["spec"]["podSets"][0]["count"] = 0
    server.create(bad)
    found = await backend.provisioning_requests()
    assert found.requests == () and "spec.podSets[0].count" in found.invalid["ml/bad"]
    server.uninstall("provisioningrequests")
    assert (await backend.provisioning_requests()).requests == ()


# -- the daemon over the wire -------------------------------------------------------------------


def seed_node(name: str, instance: str = "") -> dict[str, Any]:
    node = node_manifest(name)
    node["metadata"]["labels"].update(
        {
            "node.kubernetes.io/instance-type": "ml.c5.2xlarge",
            "topology.kubernetes.io/zone": "us-west-2a",
            "karpenter.sh/nodepool": "gpunodepool",
            "sagemaker.amazonaws.com/instance-group-name": "auto-spot-c5-2x-az1",
        }
    )
    if instance:
        node["spec"]["providerID"] = f"aws:///usw2-az2/sagemaker/cluster/hyperpod-abc-{instance}"
    return node


@asynccontextmanager
async def daemon_on(server: FakeApiServer, clock: ManualClock) -> AsyncIterator[tuple[Daemon, World]]:
    """The daemon with the Kubernetes backend on `server` and the fake HyperPod; decisions every 50 ms."""
    clock.time = time.time()  # the server stamps creationTimestamp from the wall clock
    config = load_config(default_config_path())
    world = World(config.cluster_name, config.instance_groups, clock=LoopClock(time.time()))
    async with ApiClient(server.configuration()) as api, hosted(make_backend(api, clock)) as kube:
        daemon = Daemon(config, Backends(kube, world.hyperpod), config.catalogue(), clock)
        assert daemon.provisioning_requests is not None
        daemon.provisioning_requests.interval = 0.05
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            yield daemon, world
            daemon.stop()


@pytest.mark.usefixtures("api")
async def test_daemon_answers_check_capacity_and_revokes_over_the_wire(
    server: FakeApiServer, clock: ManualClock
) -> None:
    for name in ("n1", "n2"):
        server.create(seed_node(name))
    for name in ("fits", "wait", "once"):
        server.create(template(f"{name}-tpl"))
    async with daemon_on(server, clock):
        server.create(provreq("fits", CHECK_CAPACITY, 2))
        await eventually(lambda: condition(server, "fits", "Provisioned") is not None, 10)
        assert condition(server, "fits", "Provisioned") == ("True", "CapacityIsFound")
        assert condition(server, "fits", "Accepted") == ("True", "Accepted")
        server.create(provreq("wait", CHECK_CAPACITY, 1))
        server.create(provreq("once", CHECK_CAPACITY, 1, noRetry="true"))
        await eventually(lambda: condition(server, "once", "Failed") is not None, 10)
        await eventually(lambda: condition(server, "wait", "Provisioned") is not None, 10)
        assert condition(server, "wait", "Provisioned") == ("False", "CapacityIsNotFound")
        assert condition(server, "once", "Failed") == ("True", "CapacityIsNotFound")
        # A booked node is deleted: the capacity is revoked.
        server.delete("nodes", "n2")
        await eventually(lambda: condition(server, "fits", "CapacityRevoked") is not None, 10)
        assert condition(server, "fits", "CapacityRevoked") == ("True", "CapacityLost")


@pytest.mark.usefixtures("api")
async def test_daemon_provisions_atomically_and_expires_the_booking_over_the_wire(
    server: FakeApiServer, clock: ManualClock
) -> None:
    server.create(template("train-tpl"))
    async with daemon_on(server, clock) as (_, world):
        server.create(provreq("train", BEST_EFFORT_ATOMIC, 3))
        await eventually(lambda: condition(server, "train", "Provisioned") is not None, 10)
        assert condition(server, "train", "Provisioned") == ("False", "CapacityIsBeingProvisioned")
        assert sum(r.node_count for r in world.hyperpod.add_requests) == 3
        assert len(world.hyperpod.add_requests) == 1  # all at once
        # The nodes register with the API server: Provisioned.
        for i in range(3):
            server.create(seed_node(f"hp-{i}"))
        await eventually(
            lambda: condition(server, "train", "Provisioned") == ("True", "CapacityIsProvisioned"), 10
        )
        # No pod consumes it within the reservation time: the booking expires.
        clock.advance(601)
        await eventually(lambda: condition(server, "train", "BookingExpired") is not None, 10)
        assert condition(server, "train", "BookingExpired") == ("True", "CapacityReservationTimeExpired")


@pytest.mark.usefixtures("api")
async def test_daemon_fails_a_request_without_its_template_over_the_wire(
    server: FakeApiServer, clock: ManualClock
) -> None:
    async with daemon_on(server, clock):
        server.create(provreq("broken", BEST_EFFORT_ATOMIC, 1, template_name="missing"))
        await eventually(lambda: condition(server, "broken", "Failed") is not None, 10)
        failed = conditions(server, "broken")["Failed"]
        assert (failed["status"], failed["reason"]) == ("True", "FailedToCreatePods")
        assert "PodTemplate ml/missing not found" in failed["message"]
        assert copy.deepcopy(failed)["observedGeneration"] >= 0
