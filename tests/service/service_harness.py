"""Helpers of the service tests: configurations, backends the test controls, a Service running in a task.

The in-process tests run `Service.serve` itself (backends, elector, health server, daemon) with the
backends injected, so they can look inside the world and at the lease while probing over HTTP.
"""

from __future__ import annotations

import functools
import json
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from anyio.abc import TaskGroup

from hpscaler.backends.protocols import HyperPodCluster, KubernetesCluster
from hpscaler.backends.registry import BackendSet
from hpscaler.backends.types import AddResult, ClusterDescription, ClusterEvent, DeleteResult, HyperPodNode
from hpscaler.catalogue import load_catalogue
from hpscaler.clock import Clock, LoopClock
from hpscaler.config import LoadedConfig, default_config_path, load_config
from hpscaler.fake import World
from hpscaler.model import Pod
from hpscaler.provisioning.batching import AddRequest
from hpscaler.service.run import Service

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SPOT_AZ1 = "auto-spot-c5-2x-az1"
LEASE = "hpscaler-leader"


@functools.cache
def seed_config() -> LoadedConfig:
    """The embedded example cluster (ml.c5.2xlarge Spot in us-west-2a first), loaded once."""
    return load_config(default_config_path())


def service_config(**sections: Mapping[str, Any]) -> LoadedConfig:
    """The seed with quick batching, the health server on a free port and the given settings sections."""
    base: dict[str, Mapping[str, Any]] = {
        "batching": {"idle_seconds": 0.05, "max_seconds": 0.5},
        "health": {"bind": "127.0.0.1", "port": 0},
    }
    base.update(sections)
    config = seed_config()
    settings = config.settings
    update = {name: getattr(settings, name).model_copy(update=dict(values)) for name, values in base.items()}
    return replace(config, settings=settings.model_copy(update=update))


def with_shutdown(config: LoadedConfig, seconds: float) -> LoadedConfig:
    """The config with `spec.shutdownSeconds` changed."""
    return replace(config, settings=config.settings.model_copy(update={"shutdown_seconds": seconds}))


def web_pod(name: str, cpu: int = 1000) -> Pod:
    """A pending Deployment pod asking for `cpu` millicores (7 fit an ml.c5.2xlarge)."""
    return Pod(
        "default",
        name,
        {"cpu": cpu, "memory": 256 * 1024**2},
        labels={"app": "web"},
        owner_kind="ReplicaSet",
        owner_name="web",
    )


def make_world(config: LoadedConfig) -> World:
    """An in-memory world with the config's instance groups (call inside the event loop)."""
    return World(config.cluster_name, config.instance_groups, clock=LoopClock(EPOCH))


class CountingHyperPod:
    """A replica's view of a shared HyperPod: records its own BatchAdd bodies; can be made to hang."""

    def __init__(self, inner: HyperPodCluster) -> None:
        self.inner = inner
        self.adds: list[AddRequest] = []
        self.gate: anyio.Event | None = None  # while set to an unset Event, calls wait on it
        self.hang: set[str] = set()  # names of the calls the gate holds

    async def _pass(self, call: str) -> None:
        if self.gate is not None and call in self.hang:
            await self.gate.wait()

    async def describe_cluster(self) -> ClusterDescription:
        await self._pass("describe_cluster")
        return await self.inner.describe_cluster()

    async def list_nodes(self) -> Sequence[HyperPodNode]:
        await self._pass("list_nodes")
        return await self.inner.list_nodes()

    async def batch_add_nodes(self, request: AddRequest) -> AddResult:
        await self._pass("batch_add_nodes")
        result = await self.inner.batch_add_nodes(request)
        self.adds.append(request)
        return result

    async def batch_delete_nodes(self, logical_ids: Sequence[str]) -> DeleteResult:
        await self._pass("batch_delete_nodes")
        return await self.inner.batch_delete_nodes(logical_ids)

    async def list_events(self, since: float) -> Sequence[ClusterEvent]:
        await self._pass("list_events")
        return await self.inner.list_events(since)

    def hold(self, *calls: str) -> anyio.Event:
        """From now on the named calls wait until the returned event is set."""
        self.gate = anyio.Event()
        self.hang = set(calls)
        return self.gate

    def nodes_requested(self) -> int:
        """Nodes asked for in this replica's BatchAdd calls."""
        return sum(request.node_count for request in self.adds)


def opener(
    kube: Callable[[], AbstractAsyncContextManager[KubernetesCluster]], hyperpod: HyperPodCluster
) -> Callable[[LoadedConfig], AbstractAsyncContextManager[BackendSet]]:
    """A `Service.backends_opener` that yields the given backends (the Kubernetes one opened per call)."""

    @asynccontextmanager
    async def open_(_: LoadedConfig) -> AsyncIterator[BackendSet]:
        async with kube() as cluster:
            yield BackendSet(kubernetes=cluster, hyperpod=hyperpod)

    return open_


def in_memory(world: World) -> Callable[[], AbstractAsyncContextManager[KubernetesCluster]]:
    """The world's FakeKubernetes, as an opener for `opener`."""

    @asynccontextmanager
    async def open_() -> AsyncIterator[KubernetesCluster]:
        yield world.kubernetes

    return open_


def make_service(
    config: LoadedConfig,
    backends: Callable[[LoadedConfig], AbstractAsyncContextManager[BackendSet]],
    *,
    holder: str,
    clock: Clock,
    config_path: Path | None = None,
    **options: Any,
) -> Service:
    """A Service on injected backends that handles no signals (the test calls `stop` and `reload`)."""
    return Service(
        config_path or default_config_path(),
        config,
        load_catalogue(),
        holder=holder,
        clock=clock,
        backends_opener=backends,
        handle_signals=False,
        **options,
    )


@dataclass
class Running:
    """A Service serving in a task of the test's task group; `done` is set once `serve` returned."""

    service: Service
    scope: anyio.CancelScope
    done: anyio.Event = field(default_factory=anyio.Event)

    async def stop(self, within: float) -> None:
        """Stop gracefully and wait until `serve` returned."""
        self.service.stop("test")
        with anyio.fail_after(within):
            await self.done.wait()

    def kill(self) -> None:
        """Cancel the service's task (the process dies; the lease may still be released on the way)."""
        self.scope.cancel()


async def start(tg: TaskGroup, service: Service) -> Running:
    """Serve in the background and wait until the health port is bound."""
    running = Running(service, anyio.CancelScope())

    async def serve() -> None:
        try:
            with running.scope:
                await service.serve()
        finally:
            running.done.set()

    tg.start_soon(serve)
    with anyio.fail_after(10):
        await service.started.wait()
    return running


async def eventually(predicate: Callable[[], bool], within: float, step: float = 0.02) -> float:
    """Poll `predicate` until it holds; the seconds it took; fails after `within` seconds."""
    start_at = anyio.current_time()
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - the condition lives in other components
            await anyio.sleep(step)
    return anyio.current_time() - start_at


async def get(port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path: (status, body)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text exposition -> {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(metrics: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """One sample's value (KeyError naming what is there when it is missing)."""
    key = (name, frozenset(labels.items()))
    if key not in metrics:
        near = sorted(str(dict(k[1])) for k in metrics if k[0] == name)
        raise KeyError(f"{name}{labels} not exposed; {name} has {near}")
    return metrics[key]


@contextmanager
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET: (path, bound socket)."""
    directory = tempfile.mkdtemp(prefix="hps", dir="/tmp")  # short: unix socket paths max 107 bytes
    path = str(Path(directory) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield path, sock
    finally:
        sock.close()
        Path(path).unlink(missing_ok=True)
        Path(directory).rmdir()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the socket (sd_notify messages, e.g. "READY=1\\nSTATUS=leader")."""
    messages: list[str] = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def json_lines(text: str) -> list[dict[str, Any]]:
    """Each line of a log as a JSON object (fails on a line that is not one)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
