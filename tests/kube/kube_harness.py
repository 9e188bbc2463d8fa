"""Helpers shared by the Kubernetes backend tests (imported by conftest and the test modules)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import yaml

from hpscaler.backends.types import WatchEvent, WatchKind
from hpscaler.config.settings import Kubernetes
from hpscaler.kube.backend import KubernetesBackend

USED: set[tuple[str, str, str]] = set()  # (apiGroup, resource, verb) of every request the backend made
RBAC = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "rbac.yaml"


def rbac_documents() -> list[dict[str, Any]]:
    """The documents of deploy/kubernetes/rbac.yaml."""
    return [d for d in yaml.safe_load_all(RBAC.read_text()) if d]


def granted() -> dict[tuple[str, str, str], dict[str, Any]]:
    """(apiGroup, resource, verb) -> the rule (with its Role's namespace) of rbac.yaml granting it."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for doc in rbac_documents():
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in doc["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        key = (group, resource, verb)
                        assert key not in found, f"{key} is granted twice"
                        found[key] = {**rule, "namespace": doc["metadata"].get("namespace")}
    return found


class ManualClock:
    """Wall-clock time the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.time = now

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


def make_backend(api: Any, clock: ManualClock, **options: Any) -> KubernetesBackend:
    """A backend with fast retries, short watch timeouts and the test clock."""
    defaults: dict[str, Any] = {
        "clock": clock,
        "identity": "test-host",
        "retry_base": 0.01,
        "retry_max_wait": 0.02,
        "relist_backoff": 0.01,
        "request_timeout_seconds": 5.0,
        "watch_timeout_seconds": 30,
    }
    defaults.update(options)
    return KubernetesBackend(api, Kubernetes(namespace="kube-system"), **defaults)


@contextlib.asynccontextmanager
async def hosted(kube: KubernetesBackend) -> AsyncIterator[KubernetesBackend]:
    """Run the backend (`async with`) in a task of its own, so fixtures can hand it out."""
    started = asyncio.Event()

    async def host() -> None:
        async with kube:
            started.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(host())
    await started.wait()
    try:
        yield kube
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def eventually(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait until `predicate()` holds (polling), failing after `seconds`."""
    with anyio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 - the condition lives in another component
            await anyio.sleep(0.005)


async def next_event(events: AsyncIterator[WatchEvent], seconds: float = 5.0) -> WatchEvent:
    """The next watch event, failing after `seconds`."""
    with anyio.fail_after(seconds):
        return await anext(events)


async def until_synced(events: AsyncIterator[WatchEvent], seconds: float = 5.0) -> list[WatchEvent]:
    """Events up to and including the next SYNCED."""
    found: list[WatchEvent] = []
    while not found or found[-1].kind is not WatchKind.SYNCED:
        found.append(await next_event(events, seconds))
    return found


def pod_manifest(
    name: str,
    namespace: str = "default",
    *,
    node: str = "",
    phase: str = "Pending",
    labels: dict[str, str] | None = None,
    cpu: str = "1",
) -> dict[str, Any]:
    """A Pod with one container requesting `cpu`."""
    spec: dict[str, Any] = {"containers": [{"name": "app", "resources": {"requests": {"cpu": cpu}}}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": spec,
        "status": {"phase": phase},
    }


def node_manifest(name: str, *, taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A Ready Node with 8 CPUs and 32Gi."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints} if taints else {},
        "status": {
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
