"""The real Kubernetes backend: `KubernetesCluster` over kubernetes-asyncio.

    async with kubernetes_backend(settings) as kube:
        async with aclosing(kube.watch()) as events:
            async for event in events: ...

`KubernetesBackend` is a facade over one module per verb, as kopf's `clients/` is: `watching`
(list and watch pods, nodes and DaemonSets), `patching` (taints, registration, annotations),
`deleting` (evictions and deletes), `fetching` (PodDisruptionBudgets), `events` (pod Events),
`leases` (leader election), `resources` and `provreqs` (custom resources), over `api` (the typed
APIs, timeouts and retries) and `auth` (loading the configuration).

The watch streams run in the backend's own task group, so the iterator holds no cancel scope across
`yield`: closing it (or letting it be collected) stops them.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup, TaskStatus
from kubernetes_asyncio import client

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.registry import BackendSet, serves
from hpscaler.backends.types import (
    ClusterNodeConfig,
    DisruptionBudgetStatus,
    EvictionOutcome,
    Lease,
    WatchEvent,
)
from hpscaler.clock import Clock, SystemClock
from hpscaler.config import LoadedConfig
from hpscaler.config.settings import Kubernetes, Settings
from hpscaler.kube import deleting, fetching, leases, patching
from hpscaler.kube.api import ApiCalls
from hpscaler.kube.auth import load_configuration, needs_token_refresh, refresh_token
from hpscaler.kube.events import PodEvents
from hpscaler.kube.provreqs import ProvisioningRequestClient
from hpscaler.kube.resources import ClusterObject, ClusterResources, CustomResources
from hpscaler.kube.watching import ClusterWatch, WatchItem
from hpscaler.model import InstanceGroup, Pod, Taint
from hpscaler.provisioning.provreq import RequestCondition, RequestSet


class KubernetesBackend:
    """`KubernetesCluster`, `NodeConfigSource` and `ProvisioningRequestSource` on a kubernetes-asyncio
    `ApiClient`.

    `watch()` needs the backend entered (`async with`) or hosted (`await tg.start(backend.run)`);
    every other method works on a bare instance.
    """

    def __init__(
        self,
        api_client: Any,
        settings: Kubernetes | None = None,
        *,
        clock: Clock | None = None,
        identity: str = "",
        page_size: int = 500,
        watch_timeout_seconds: int = 300,
        request_timeout_seconds: float = 30.0,
        retry_attempts: int = 4,
        retry_max_wait: float = 5.0,
        retry_base: float = 0.2,
        relist_backoff: float = 0.5,
    ) -> None:
        self.api = api_client
        self.settings = settings or Kubernetes()
        self.clock = clock or SystemClock()
        self.identity = identity or socket.gethostname()
        self.page_size = page_size
        self.calls = ApiCalls(
            api_client,
            request_timeout_seconds=request_timeout_seconds,
            retry_attempts=retry_attempts,
            retry_max_wait=retry_max_wait,
            retry_base=retry_base,
        )
        self.events = PodEvents(self.calls, self.clock, self.identity)
        self.watcher = ClusterWatch(
            self.calls,
            on_unusable=lambda obj, error: self.events.report_unusable(obj, error, self._tg),
            page_size=page_size,
            watch_timeout_seconds=watch_timeout_seconds,
            relist_backoff=relist_backoff,
        )
        self.custom_resources = CustomResources(
            api_client,
            clock=self.clock,
            request_timeout_seconds=request_timeout_seconds,
            retry_attempts=retry_attempts,
            retry_max_wait=retry_max_wait,
            retry_base=retry_base,
        )
        self.provisioning = ProvisioningRequestClient(api_client, self.custom_resources)
        self._tg: TaskGroup | None = None
        self._resources: ClusterResources | None = None

    # --- lifecycle: the task group the watch streams and background reports run in -----------------

    @property
    def running(self) -> bool:
        """Whether the backend is entered (or `run()` is running), so `watch()` can be used."""
        return self._tg is not None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the watch streams until cancelled: `await tg.start(backend.run)` instead of `async with`."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg, self._tg = self._tg, None
        if tg is None:
            return None
        tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if exc is not None and list(group.exceptions) == [exc]:
                return False  # the body's own error: let it through unwrapped
            raise

    def start_soon(self, function: Any, *args: Any, name: str) -> None:
        """Run `function(*args)` in the backend's task group (entered or hosted)."""
        if self._tg is None:
            raise RuntimeError("enter the KubernetesBackend (async with) or start run() first")
        self._tg.start_soon(function, *args, name=name)

    # --- watch ------------------------------------------------------------------------------------

    async def watch(self) -> AsyncIterator[WatchEvent]:
        """Pods, nodes and DaemonSets: ADDED... SYNCED, then live changes (see `hpscaler.kube.watching`)."""
        if self._tg is None:
            raise RuntimeError("enter the KubernetesBackend (async with) or start run() before watching")
        send, receive = anyio.create_memory_object_stream[WatchItem](256)
        scope = anyio.CancelScope()
        self._tg.start_soon(self.watcher.pump, send, scope, name="kube watch")
        try:
            async with receive:
                async for item in receive:
                    if isinstance(item, BackendError):
                        raise item
                    yield item
            raise BackendError("the Kubernetes backend was closed", retryable=False, code="Closed")
        finally:
            scope.cancel()

    # --- patch, delete, fetch, events, leases ------------------------------------------------------

    async def taint_node(self, name: str, add: Sequence[Taint] = (), remove: Sequence[str] = ()) -> None:
        """Add taints and remove taints by key (`patching.taint_node`)."""
        await patching.taint_node(self.calls, name, add, remove)

    async def register_node(self, name: str, labels: Mapping[str, str], taints: Sequence[Taint]) -> None:
        """Labels and taints in one patch (`patching.register_node`)."""
        await patching.register_node(self.calls, name, labels, taints)

    async def annotate_node(self, name: str, annotations: Mapping[str, str | None]) -> None:
        """Merge-patch metadata.annotations (None removes)."""
        await patching.annotate_node(self.calls, name, annotations)

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        """Merge-patch metadata.annotations (None removes)."""
        await patching.annotate_pod(self.calls, namespace, name, annotations)

    async def evict_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> EvictionOutcome:
        """POST the policy/v1 Eviction (`deleting.evict_pod`)."""
        return await deleting.evict_pod(self.calls, namespace, name, grace_seconds)

    async def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> bool:
        """DELETE the pod (no PDB check); False if it was already gone."""
        return await deleting.delete_pod(self.calls, namespace, name, grace_seconds)

    async def delete_node(self, name: str) -> None:
        """DELETE the Node object; a missing node is fine."""
        await deleting.delete_node(self.calls, name)

    async def list_disruption_budgets(self) -> Sequence[DisruptionBudgetStatus]:
        """Every PodDisruptionBudget and its disruptionsAllowed (`fetching.list_disruption_budgets`)."""
        return await fetching.list_disruption_budgets(self.calls, self.page_size)

    async def record_event(self, pod: Pod, reason: str, message: str, *, warning: bool = False) -> None:
        """A core/v1 Event on the pod; a repeat of the same event patches its count."""
        await self.events.record(pod, reason, message, warning=warning)

    async def acquire_lease(self, name: str, holder: str, duration_seconds: float) -> Lease:
        """Create, renew or take over (when expired) the Lease in settings.namespace; never waits."""
        return await leases.acquire_lease(
            self.calls, self.clock, self.settings.namespace, name, holder, duration_seconds
        )

    # --- custom resources ---------------------------------------------------------------------------

    async def node_config(self) -> ClusterNodeConfig:
        """`NodeConfigSource`: the NodePools and HyperpodNodeClasses applied to the cluster."""
        found = await self.custom_resources.read()
        self._resources = found
        objects: list[ClusterObject[Any]] = [*found.node_pools, *found.node_classes]
        invalid = tuple(
            f"{obj.kind} {obj.name}: " + "; ".join(str(issue) for issue in obj.errors)
            for obj in objects
            if obj.model is None
        )
        return ClusterNodeConfig(found.pools(), found.classes(), bool(found.crds), invalid)

    async def publish_status(self, groups: Mapping[str, InstanceGroup] | None) -> int:
        """`NodeConfigSource`: write the conditions of the objects `node_config` last read."""
        if self._resources is None:
            return 0
        return await self.custom_resources.publish(self._resources, groups)

    async def provisioning_requests(self) -> RequestSet:
        """`ProvisioningRequestSource`: every ProvisioningRequest and the PodTemplates (listed, then
        watched while the backend is entered or hosted)."""
        if self._tg is not None and not self.provisioning.watching:
            self.provisioning.watching = True
            self._tg.start_soon(self.provisioning.keep_watching, name="kube provisioningrequest watch")
        return await self.provisioning.read()

    async def write_provisioning_request_status(
        self, namespace: str, name: str, conditions: Sequence[RequestCondition]
    ) -> bool:
        """`ProvisioningRequestSource`: merge conditions through the status subresource."""
        return await self.provisioning.write(namespace, name, conditions)


@contextlib.asynccontextmanager
async def kubernetes_backend(
    settings: Settings, *, clock: Clock | None = None
) -> AsyncIterator[KubernetesBackend]:
    """The backend for `settings.kubernetes`: in-cluster config in a pod, else kubeconfig/context."""
    kube = settings.kubernetes
    configuration, loader = await load_configuration(kube)
    async with client.ApiClient(configuration) as api, KubernetesBackend(api, kube, clock=clock) as backend:
        if needs_token_refresh(loader):
            backend.start_soon(refresh_token, loader, configuration, name="kube token refresh")
        yield backend


@serves("kubernetes")
@contextlib.asynccontextmanager
async def kubernetes_backends(config_: LoadedConfig) -> AsyncIterator[BackendSet]:
    """The `kubernetes` entry-point factory (group `hpscaler.backends`)."""
    async with kubernetes_backend(config_.settings) as backend:
        yield BackendSet(kubernetes=backend)
