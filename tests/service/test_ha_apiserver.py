"""Two replicas against the HTTP fake API server, through the real Kubernetes backend.

Each replica is a full `Service` (elector, daemon, health server) whose Kubernetes backend speaks
HTTP to one `FakeApiServer`; the Lease lives there. Both share one in-memory HyperPod, and each
replica's calls to it are recorded separately, so the tests see exactly who acted. Real time with
short leases (the backend rounds leaseDurationSeconds up to whole seconds); every wait is a poll
with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from kubernetes_asyncio.client import ApiClient
from service_harness import (
    LEASE,
    CountingHyperPod,
    eventually,
    get,
    make_service,
    make_world,
    opener,
    service_config,
    start,
)

from hpscaler.backends.protocols import BackendError, KubernetesCluster
from hpscaler.backends.types import Lease
from hpscaler.clock import SystemClock
from hpscaler.config import LoadedConfig
from hpscaler.kube.backend import KubernetesBackend
from hpscaler.kube.convert import format_micro_time
from hpscaler.service.run import Service
from hpscaler.testing import FakeApiServer
from hpscaler.testing.fakeapiserver import RecordedRequest


class MortalBackend(KubernetesBackend):
    """The real backend; once `dead`, its lease calls fail, as for a process that is gone."""

    dead = False

    async def acquire_lease(self, name: str, holder: str, duration_seconds: float) -> Lease:
        if self.dead:
            raise BackendError("the process is dead", retryable=False)
        return await super().acquire_lease(name, holder, duration_seconds)


def pod(name: str) -> dict[str, Any]:
    """A pending Pod asking for one CPU."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "1", "memory": "256Mi"}}}]},
        "status": {"phase": "Pending"},
    }


class Replica:
    """One Service on the fake API server, with its own view of the shared HyperPod."""

    def __init__(self, server: FakeApiServer, config: LoadedConfig, hyperpod: CountingHyperPod, name: str):
        self.name = name
        self.hyperpod = hyperpod
        self.kube: MortalBackend | None = None
        self.service: Service = make_service(
            config, opener(self._kube(server), hyperpod), holder=name, clock=SystemClock()
        )

    def _kube(self, server: FakeApiServer) -> Callable[[], AbstractAsyncContextManager[KubernetesCluster]]:
        @asynccontextmanager
        async def open_() -> AsyncIterator[KubernetesCluster]:
            settings = self.service.config.settings.kubernetes
            async with ApiClient(server.configuration()) as api:
                backend = MortalBackend(
                    api,
                    settings,
                    identity=self.name,
                    retry_base=0.01,
                    retry_max_wait=0.05,
                    relist_backoff=0.05,
                )
                async with backend:
                    self.kube = backend
                    yield backend

        return open_

    @property
    def leading(self) -> bool:
        return self.service.elector is not None and self.service.elector.is_leader


def lease_of(server: FakeApiServer) -> dict[str, Any]:
    lease = server.get("leases", LEASE, "kube-system")
    assert lease is not None
    spec: dict[str, Any] = lease["spec"]
    return spec


def lease_writes(server: FakeApiServer, holder: str) -> list[RecordedRequest]:
    return [
        r
        for r in server.requests
        if r.resource == "leases"
        and r.verb in ("create", "update")
        and r.body["spec"]["holderIdentity"] == holder
    ]


async def test_only_the_leader_acts_and_a_standby_takes_over_within_the_lease_when_it_dies() -> None:
    lease_seconds = 3.0
    config = service_config(kubernetes={"lease_seconds": lease_seconds, "renew_seconds": 1.0})
    async with FakeApiServer() as server, anyio.create_task_group() as tg:
        world = make_world(config)
        await tg.start(world.run)
        a = Replica(server, config, CountingHyperPod(world.hyperpod), "a")
        b = Replica(server, config, CountingHyperPod(world.hyperpod), "b")
        for i in range(3):
            server.create(pod(f"web-{i}"))
        running_a = await start(tg, a.service)
        await eventually(lambda: a.leading, 10)
        running_b = await start(tg, b.service)
        with anyio.fail_after(10):
            await a.service.ready.wait()
            await b.service.ready.wait()
        assert a.service.port is not None and b.service.port is not None
        assert await get(a.service.port, "/readyz") == (200, "ready: leader\n")
        assert await get(b.service.port, "/readyz") == (200, "ready: standby (leader: a)\n")
        assert len(a.hyperpod.adds) == 1

        # Two lease durations of steady state: a renews, b only reads; b never acts.
        for i in range(3, 10):
            server.create(pod(f"web-{i}"))
        await eventually(lambda: len(a.hyperpod.adds) == 2, 10)
        await anyio.sleep(2 * lease_seconds)
        assert a.leading and not b.leading and b.service.daemon is None
        assert b.hyperpod.adds == [] and lease_writes(server, "b") == []
        assert len(lease_writes(server, "a")) >= 2 * lease_seconds  # renewed every second
        assert lease_of(server)["holderIdentity"] == "a"

        # a dies without a word: its lease calls fail from now on (so it cannot release either).
        assert a.kube is not None
        a.kube.dead = True
        died = anyio.current_time()
        running_a.kill()
        taken = await eventually(lambda: b.leading, 3 * lease_seconds)
        assert lease_seconds - 1.5 <= taken <= lease_seconds + b.service.elector.retry_seconds + 1.0  # type: ignore[union-attr]
        assert lease_of(server)["holderIdentity"] == "b" and lease_of(server)["leaseTransitions"] == 1
        assert len(lease_writes(server, "a")) >= 1 and anyio.current_time() - died < 3 * lease_seconds

        # The new leader acts: new pods get nodes through b, and a (dead) never calls again.
        adds_by_a = len(a.hyperpod.adds)
        for i in range(10, 20):
            server.create(pod(f"web-{i}"))
        await eventually(lambda: len(b.hyperpod.adds) >= 1, 10)
        with anyio.fail_after(10):
            await b.service.ready.wait()
        await eventually(lambda: b.service.readiness() == (True, "leader"), 10)
        assert len(a.hyperpod.adds) == adds_by_a
        await running_b.stop(within=10)
        tg.cancel_scope.cancel()


async def test_graceful_stop_releases_the_lease_and_the_standby_takes_over_at_once() -> None:
    lease_seconds = 10.0
    config = service_config(kubernetes={"lease_seconds": lease_seconds, "renew_seconds": 2.0})
    async with FakeApiServer() as server, anyio.create_task_group() as tg:
        world = make_world(config)
        await tg.start(world.run)
        a = Replica(server, config, CountingHyperPod(world.hyperpod), "a")
        b = Replica(server, config, CountingHyperPod(world.hyperpod), "b")
        server.create(pod("web-0"))
        running_a = await start(tg, a.service)
        with anyio.fail_after(10):
            await a.service.ready.wait()
        running_b = await start(tg, b.service)
        with anyio.fail_after(10):
            await b.service.ready.wait()
        assert not b.leading

        stopped = anyio.current_time()
        await running_a.stop(within=10)
        assert a.service.elector is not None and a.service.elector.released == 1
        released = lease_of(server)
        assert released["holderIdentity"] == "a" and released["leaseDurationSeconds"] == 1
        taken = await eventually(lambda: b.leading, lease_seconds)
        taken_after = anyio.current_time() - stopped
        # Without the release b would wait out the 10 s lease; with it, ~1 s plus one poll.
        assert taken_after < lease_seconds / 2, (taken, taken_after)
        assert lease_of(server)["holderIdentity"] == "b"
        await running_b.stop(within=10)
        tg.cancel_scope.cancel()


async def test_a_leader_whose_lease_is_taken_stops_acting_at_once() -> None:
    config = service_config(kubernetes={"lease_seconds": 5.0, "renew_seconds": 1.0})
    async with FakeApiServer() as server, anyio.create_task_group() as tg:
        world = make_world(config)
        await tg.start(world.run)
        a = Replica(server, config, CountingHyperPod(world.hyperpod), "a")
        server.create(pod("web-0"))
        running_a = await start(tg, a.service)
        with anyio.fail_after(10):
            await a.service.ready.wait()
        assert len(a.hyperpod.adds) == 1

        # Someone else holds the lease now (e.g. a partition healed after a takeover).
        lease = server.get("leases", LEASE, "kube-system")
        assert lease is not None
        lease["spec"]["holderIdentity"] = "intruder"
        lease["spec"]["renewTime"] = format_micro_time(time.time())
        lease["spec"]["leaseDurationSeconds"] = 3600
        server.update(lease)
        lost = await eventually(lambda: not a.leading and a.service.daemon is None, 5)
        assert lost <= 1.0 + 0.5  # the next renewal (every second) sees it
        for i in range(1, 10):
            server.create(pod(f"web-{i}"))
        await anyio.sleep(1.0)
        assert len(a.hyperpod.adds) == 1  # stopped acting: the new pods are not its business
        assert a.service.readiness() == (True, "standby (leader: intruder)")
        await running_a.stop(within=10)
        assert a.service.elector is not None and a.service.elector.released == 0  # not ours to release
        assert lease_of(server)["holderIdentity"] == "intruder"
        tg.cancel_scope.cancel()
