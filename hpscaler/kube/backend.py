"""The real Kubernetes backend: `KubernetesCluster` over kubernetes-asyncio.

    async with kubernetes_backend(settings) as kube:
        async with aclosing(kube.watch()) as events:
            async for event in events: ...

`watch()` lists pods and nodes, emits ADDED for each and SYNCED, then follows both watches from the
lists' resourceVersion (bookmarks keep it fresh; a watch that times out resumes from it). A 410 or a
dropped stream lists again: DELETED for objects gone meanwhile, ADDED for every current one, SYNCED.
An API error ends the iterator with `BackendError`. The watch streams run in the backend's own task
group, so the iterator holds no cancel scope across `yield`: closing it (or letting it be
collected) stops them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from kubernetes_asyncio import client, config

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.registry import BackendSet
from hpscaler.backends.types import (
    ClusterNodeConfig,
    DisruptionBudgetStatus,
    EvictionOutcome,
    Lease,
    WatchEvent,
    WatchKind,
)
from hpscaler.clock import Clock, SystemClock
from hpscaler.config import LoadedConfig
from hpscaler.config.settings import Kubernetes, Settings
from hpscaler.kube.convert import (
    JSON,
    MERGE_PATCH,
    KubeApiError,
    api_error,
    call_json,
    event_body,
    format_time,
    is_budget_refusal,
    label_selector,
    lease_from_spec,
    lease_spec,
    merge_taints,
    metadata,
    parse_time,
    retrying,
    watch_lines,
)
from hpscaler.kube.objects import node_from_manifest, pod_from_manifest
from hpscaler.kube.resources import ClusterObject, ClusterResources, CustomResources
from hpscaler.model import InstanceGroup, Node, Pod, Taint

log = structlog.get_logger("hpscaler.kube")

_Item = WatchEvent | BackendError
_Model = Pod | Node
_CONFLICT_ATTEMPTS = 5
_EVENT_CACHE = 4096
_MAX_MESSAGE = 1024


class _Relist(Exception):
    """A watch lost its place (410 Gone, or the stream dropped): list again."""


class KubernetesBackend:
    """`KubernetesCluster` on a kubernetes-asyncio `ApiClient`.

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
        self.watch_timeout_seconds = watch_timeout_seconds
        self.timeout = request_timeout_seconds
        self.relist_backoff = relist_backoff
        self._retry = (retry_attempts, retry_max_wait, retry_base)
        self.core = client.CoreV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.custom_resources = CustomResources(
            api_client,
            clock=self.clock,
            request_timeout_seconds=request_timeout_seconds,
            retry_attempts=retry_attempts,
            retry_max_wait=retry_max_wait,
            retry_base=retry_base,
        )
        self._events: OrderedDict[tuple[str, ...], tuple[str, int]] = OrderedDict()
        self._unusable: dict[str, str] = {}  # pod key -> why it was skipped (reported once)
        self._tg: TaskGroup | None = None
        self._resources: ClusterResources | None = None

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

    async def _call(self, operation: str, method: Any, *args: Any, retry: bool = True, **kwargs: Any) -> JSON:
        if not retry:
            return await call_json(operation, method, *args, seconds=self.timeout, **kwargs)
        attempts, max_wait, base = self._retry
        result: JSON = await retrying(attempts, max_wait, base=base)(
            call_json, operation, method, *args, seconds=self.timeout, **kwargs
        )
        return result

    # --- watch ------------------------------------------------------------------------------------

    async def watch(self) -> AsyncIterator[WatchEvent]:
        """Pods and nodes: ADDED... SYNCED, then live changes (see the module docstring)."""
        if self._tg is None:
            raise RuntimeError("enter the KubernetesBackend (async with) or start run() before watching")
        send, receive = anyio.create_memory_object_stream[_Item](256)
        scope = anyio.CancelScope()
        self._tg.start_soon(self._pump, send, scope)
        try:
            async with receive:
                async for item in receive:
                    if isinstance(item, BackendError):
                        raise item
                    yield item
            raise BackendError("the Kubernetes backend was closed", retryable=False, code="Closed")
        finally:
            scope.cancel()

    async def _pump(self, send: MemoryObjectSendStream[_Item], scope: anyio.CancelScope) -> None:
        """Run one watch() in the backend's task group; nothing may escape into that group."""
        with scope, send:
            error: BackendError | None = None
            try:
                await self._list_and_watch(send)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the consumer stopped iterating
            except BackendError as exc:
                log.warning("kube_watch_failed", error=str(exc), retryable=exc.retryable)
                error = exc
            except Exception as exc:  # a bug must end the stream visibly, not hang it
                log.exception("kube_watch_crashed")
                error = BackendError(f"watch failed: {exc!r}", code="InternalError")
            if error is not None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await send.send(error)

    def _parse(self, kind: str, obj: Any, *, deleted: bool = False) -> tuple[str, _Model] | None:
        """`_parse`, and a FailedScaling Event (once per pod and reason) on a pod that cannot be used."""
        try:
            return _parse_model(kind, obj)
        except Exception as exc:  # one bad object must never end the stream
            name = _key(kind, obj) if isinstance(obj, Mapping) else "?"
            log.warning("kube_object_skipped", kind=kind, name=name, error=str(exc))
            if kind == "pods" and not deleted and isinstance(obj, Mapping):
                self._report_unusable_pod(obj, str(exc))
            return None

    def _report_unusable_pod(self, obj: Mapping[str, Any], error: str) -> None:
        meta = metadata(obj)
        key = _key("pods", obj)
        if self._tg is None or not meta.get("name") or self._unusable.get(key) == error:
            return
        if len(self._unusable) > 10_000:  # bounded: forget the oldest reports
            self._unusable.pop(next(iter(self._unusable)))
        self._unusable[key] = error
        pod = Pod(
            str(meta.get("namespace") or "default"), str(meta["name"]), {}, uid=str(meta.get("uid") or "")
        )
        message = f"hpscaler skips this pod and provisions nothing for it: {error}"

        async def report() -> None:
            with contextlib.suppress(BackendError):
                await self.record_event(pod, "FailedScaling", message, warning=True)

        self._tg.start_soon(report, name=f"event {key}")

    async def _list_and_watch(self, send: MemoryObjectSendStream[_Item]) -> None:
        known: dict[str, dict[str, _Model]] = {"pods": {}, "nodes": {}}
        drops = 0
        while True:
            versions: dict[str, str] = {}
            fresh: dict[str, dict[str, _Model]] = {}
            for kind in ("pods", "nodes"):
                items, versions[kind] = await self._list_all(kind)
                fresh[kind] = dict(parsed for obj in items if (parsed := self._parse(kind, obj)) is not None)
            for kind in ("pods", "nodes"):
                for key in known[kind].keys() - fresh[kind].keys():
                    await send.send(_event(WatchKind.DELETED, known[kind][key]))
            for kind in ("pods", "nodes"):
                for model in fresh[kind].values():
                    await send.send(_event(WatchKind.ADDED, model))
            await send.send(WatchEvent(WatchKind.SYNCED))
            known = fresh
            log.info(
                "kube_synced",
                pods=len(known["pods"]),
                nodes=len(known["nodes"]),
                pods_version=versions["pods"],
                nodes_version=versions["nodes"],
            )
            received = [0]
            try:
                async with anyio.create_task_group() as tg:
                    for kind in ("pods", "nodes"):
                        tg.start_soon(self._follow, kind, versions[kind], known[kind], send, received)
            except BaseExceptionGroup as group:
                reason = _unwrap(group)
                log.info("kube_relist", reason=str(reason))
            # A relist right after a relist (nothing received in between) waits, with jitter, so a
            # server that keeps cutting streams is not hammered with lists.
            drops = 0 if received[0] else drops + 1
            if drops > 1:
                backoff = min(10.0, self.relist_backoff * 2 ** (drops - 2))
                await anyio.sleep(backoff * (0.5 + secrets.randbelow(1000) / 1000))

    async def _list_all(self, kind: str) -> tuple[list[JSON], str]:
        method: Any = self.core.list_pod_for_all_namespaces if kind == "pods" else self.core.list_node
        for _ in range(3):
            items: list[JSON] = []
            token = ""
            try:
                while True:
                    page = await self._call(
                        f"list {kind}", method, limit=self.page_size, _continue=token or None
                    )
                    items.extend(page.get("items") or [])
                    token = str(metadata(page).get("continue") or "")
                    if not token:
                        return items, str(metadata(page).get("resourceVersion") or "")
            except KubeApiError as exc:
                if exc.status != 410:  # an expired continue token: start the list again
                    raise
        raise BackendError(f"list {kind}: the list kept expiring", code="Expired")

    async def _follow(
        self,
        kind: str,
        version: str,
        known: dict[str, _Model],
        send: MemoryObjectSendStream[_Item],
        received: list[int],
    ) -> None:
        """Watch one kind from `version` until a relist is needed (raises _Relist) or an error."""
        method: Any = self.core.list_pod_for_all_namespaces if kind == "pods" else self.core.list_node
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=self.watch_timeout_seconds + 30
        )
        while True:
            try:
                response = await method(
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self.watch_timeout_seconds,
                    _preload_content=False,
                    _request_timeout=timeout,
                )
            except (aiohttp.ClientError, OSError) as exc:
                raise KubeApiError(
                    f"watch {kind}: {type(exc).__name__}: {exc}", reason="ConnectionError"
                ) from exc
            async with response:
                if response.status == 410:
                    raise _Relist(f"watch {kind}: 410 Gone")
                if response.status >= 400:
                    raise api_error(f"watch {kind}", response.status, await response.read())
                try:
                    async with contextlib.aclosing(watch_lines(response)) as lines:
                        async for line in lines:
                            version = await self._on_line(kind, line, version, known, send)
                            received[0] += 1
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raise _Relist(f"watch {kind} dropped: {type(exc).__name__}") from exc
            log.debug("kube_watch_resumed", kind=kind, resource_version=version)

    async def _on_line(
        self,
        kind: str,
        line: bytes,
        version: str,
        known: dict[str, _Model],
        send: MemoryObjectSendStream[_Item],
    ) -> str:
        try:
            event = json.loads(line)
            kind_of_event, obj = event["type"], event["object"]
        except (ValueError, KeyError, TypeError):
            log.warning("kube_watch_bad_line", kind=kind, line=line[:200].decode("utf-8", "replace"))
            return version
        if kind_of_event == "ERROR":
            if obj.get("code") == 410:
                raise _Relist(f"watch {kind}: {obj.get('message', '410 Gone')}")
            raise KubeApiError(
                f"watch {kind}: {obj.get('message')}",
                status=int(obj.get("code") or 500),
                reason=str(obj.get("reason") or ""),
            )
        version = str(metadata(obj).get("resourceVersion") or version)
        if kind_of_event == "BOOKMARK":
            return version
        parsed = self._parse(kind, obj, deleted=kind_of_event == "DELETED")
        if kind_of_event == "DELETED":
            key = parsed[0] if parsed else _key(kind, obj)
            model = known.pop(key, None)
            model = parsed[1] if parsed else model
            if model is not None:
                await send.send(_event(WatchKind.DELETED, model))
        elif parsed and kind_of_event in ("ADDED", "MODIFIED"):
            known[parsed[0]] = parsed[1]
            await send.send(_event(WatchKind(kind_of_event), parsed[1]))
        return version

    # --- writes -----------------------------------------------------------------------------------

    async def taint_node(self, name: str, add: Sequence[Taint] = (), remove: Sequence[str] = ()) -> None:
        """Read-modify-write of spec.taints with a resourceVersion precondition, retried on 409."""
        for _ in range(_CONFLICT_ATTEMPTS):
            node = await self._call(f"read node {name}", self.core.read_node, name)
            current = list((node.get("spec") or {}).get("taints") or [])
            wanted = merge_taints(current, tuple(add), tuple(remove))
            if wanted == current:
                return
            body = {
                "metadata": {"resourceVersion": metadata(node).get("resourceVersion")},
                "spec": {"taints": wanted or None},
            }
            try:
                await self._call(
                    f"taint node {name}", self.core.patch_node, name, body, _content_type=MERGE_PATCH
                )
            except KubeApiError as exc:
                if exc.status == 409:
                    log.debug("kube_taint_conflict", node=name)
                    continue
                raise
            log.info("kube_node_tainted", node=name, added=[t.key for t in add], removed=list(remove))
            return
        raise BackendError(f"taint node {name}: the node kept changing", code="Conflict")

    async def annotate_node(self, name: str, annotations: Mapping[str, str | None]) -> None:
        """Merge-patch metadata.annotations (None removes)."""
        body = {"metadata": {"annotations": dict(annotations)}}
        await self._call(f"annotate node {name}", self.core.patch_node, name, body, _content_type=MERGE_PATCH)

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        """Merge-patch metadata.annotations (None removes)."""
        body = {"metadata": {"annotations": dict(annotations)}}
        await self._call(
            f"annotate pod {namespace}/{name}",
            self.core.patch_namespaced_pod,
            name,
            namespace,
            body,
            _content_type=MERGE_PATCH,
        )

    async def evict_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> EvictionOutcome:
        """POST the policy/v1 Eviction: 201 evicted, 429 blocked by a PDB, 404 not found."""
        body: JSON = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if grace_seconds is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_seconds}
        operation = f"evict pod {namespace}/{name}"
        try:
            await self._call(
                operation, self.core.create_namespaced_pod_eviction, name, namespace, body, retry=False
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return "not-found"
            if exc.status == 429 and is_budget_refusal(exc):
                log.info("kube_eviction_blocked", pod=f"{namespace}/{name}", message=str(exc))
                return "blocked"
            if exc.status == 500 and "more than one" in str(exc):
                raise BackendError(str(exc), retryable=False, code="MultiplePodDisruptionBudgets") from exc
            raise
        log.info("kube_pod_evicted", pod=f"{namespace}/{name}", grace_seconds=grace_seconds)
        return "evicted"

    async def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> bool:
        """DELETE the pod (no PDB check); False if it was already gone."""
        try:
            await self._call(
                f"delete pod {namespace}/{name}",
                self.core.delete_namespaced_pod,
                name,
                namespace,
                grace_period_seconds=grace_seconds,
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        log.info("kube_pod_deleted", pod=f"{namespace}/{name}", grace_seconds=grace_seconds)
        return True

    async def delete_node(self, name: str) -> None:
        """DELETE the Node object; a missing node is fine."""
        try:
            await self._call(f"delete node {name}", self.core.delete_node, name)
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            return
        log.info("kube_node_deleted", node=name)

    async def list_disruption_budgets(self) -> Sequence[DisruptionBudgetStatus]:
        """Every policy/v1 PodDisruptionBudget and its disruptionsAllowed (0 while the status is stale)."""
        budgets: list[DisruptionBudgetStatus] = []
        token = ""
        while True:
            page = await self._call(
                "list poddisruptionbudgets",
                self.policy.list_pod_disruption_budget_for_all_namespaces,
                limit=self.page_size,
                _continue=token or None,
            )
            for pdb in page.get("items") or []:
                meta, status = metadata(pdb), pdb.get("status") or {}
                allowed = int(status.get("disruptionsAllowed") or 0)
                if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
                    allowed = 0  # the disruption controller has not seen the current spec yet
                budgets.append(
                    DisruptionBudgetStatus(
                        str(meta.get("namespace", "")),
                        str(meta.get("name", "")),
                        label_selector((pdb.get("spec") or {}).get("selector")),
                        allowed,
                    )
                )
            token = str(metadata(page).get("continue") or "")
            if not token:
                return budgets

    async def record_event(self, pod: Pod, reason: str, message: str, *, warning: bool = False) -> None:
        """A core/v1 Event on the pod; a repeat of the same event patches its count."""
        kind = "Warning" if warning else "Normal"
        message = message[:_MAX_MESSAGE]
        key = (pod.namespace, pod.name, pod.uid, reason, message, kind)
        now = format_time(self.clock.now())
        cached = self._events.get(key)
        if cached is not None:
            name, count = cached
            try:
                await self._call(
                    f"update event {pod.namespace}/{name}",
                    self.core.patch_namespaced_event,
                    name,
                    pod.namespace,
                    {"count": count + 1, "lastTimestamp": now},
                    retry=False,
                    _content_type=MERGE_PATCH,
                )
            except KubeApiError as exc:
                if exc.status != 404:  # a 404 means the event expired: create a new one
                    raise
            else:
                self._remember_event(key, name, count + 1)
                return
        name = f"{pod.name}.{secrets.token_hex(8)}"
        body = event_body(pod, name, reason, message, kind, now, self.identity)
        await self._call(
            f"create event {pod.namespace}/{name}",
            self.core.create_namespaced_event,
            pod.namespace,
            body,
            retry=False,
        )
        self._remember_event(key, name, 1)

    def _remember_event(self, key: tuple[str, ...], name: str, count: int) -> None:
        self._events[key] = (name, count)
        self._events.move_to_end(key)
        while len(self._events) > _EVENT_CACHE:
            self._events.popitem(last=False)

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

    async def acquire_lease(self, name: str, holder: str, duration_seconds: float) -> Lease:
        """Create, renew or take over (when expired) the Lease in settings.namespace; never waits."""
        namespace = self.settings.namespace
        seconds = max(1, math.ceil(duration_seconds))
        for _ in range(_CONFLICT_ATTEMPTS):
            now = self.clock.now()
            try:
                lease = await self._call(
                    f"read lease {namespace}/{name}", self.coordination.read_namespaced_lease, name, namespace
                )
            except KubeApiError as exc:
                if exc.status != 404:
                    raise
                spec = lease_spec(holder, seconds, now, now, 0)
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": spec,
                }
                try:
                    await self._call(
                        f"create lease {namespace}/{name}",
                        self.coordination.create_namespaced_lease,
                        namespace,
                        body,
                        retry=False,
                    )
                except KubeApiError as conflict:
                    if conflict.status == 409:
                        continue  # someone created it first: read theirs
                    raise
                log.info("kube_lease_created", lease=name, holder=holder)
                return Lease(holder, now, float(seconds), 0)
            spec = lease.get("spec") or {}
            current = lease_from_spec(spec)
            if (
                current.holder
                and current.holder != holder
                and now < current.renewed + current.duration_seconds
            ):
                return current
            takeover = current.holder != holder
            acquired = now if takeover else (parse_time(spec.get("acquireTime")) or now)
            transitions = current.transitions + (1 if takeover else 0)
            lease["spec"] = lease_spec(holder, seconds, acquired, now, transitions)
            try:
                await self._call(
                    f"update lease {namespace}/{name}",
                    self.coordination.replace_namespaced_lease,
                    name,
                    namespace,
                    lease,
                    retry=False,
                )
            except KubeApiError as exc:
                if exc.status == 409:
                    continue  # changed under us: look again
                raise
            if takeover:
                log.info("kube_lease_taken", lease=name, holder=holder, previous=current.holder)
            return Lease(holder, now, float(seconds), transitions)
        raise BackendError(f"lease {namespace}/{name} kept changing", code="Conflict")


def _key(kind: str, obj: Mapping[str, Any]) -> str:
    meta = metadata(obj)
    name = str(meta.get("name", ""))
    return f"{meta.get('namespace') or 'default'}/{name}" if kind == "pods" else name


def _parse_model(kind: str, obj: Any) -> tuple[str, _Model]:
    """(key, model) of a pod or node object; raises when it cannot be used."""
    if kind == "pods":
        pod = pod_from_manifest(obj)
        return pod.key, pod
    node = node_from_manifest(obj)
    return node.name, node


def _event(kind: WatchKind, model: _Model) -> WatchEvent:
    return WatchEvent(kind, pod=model) if isinstance(model, Pod) else WatchEvent(kind, node=model)


def _unwrap(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first real error of a watch task group; a _Relist is returned, anything else raised."""
    relist: BaseException | None = None
    for exc in group.exceptions:
        inner = _unwrap(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if isinstance(inner, _Relist):
            relist = relist or inner
        else:
            raise inner
    assert relist is not None
    return relist


def _require_kubeconfig(configured: str) -> None:
    """Say plainly that no kubeconfig exists (kubernetes-asyncio only warns, then fails on a key)."""
    listed = configured or os.environ.get("KUBECONFIG") or "~/.kube/config"
    paths = [os.path.expanduser(p) for p in listed.split(os.pathsep) if p]
    if not any(os.path.exists(p) for p in paths):
        raise config.ConfigException(
            f"{', '.join(paths)} does not exist, and this is not a pod (KUBERNETES_SERVICE_HOST is unset); "
            "set spec.kubernetes.kubeconfig or KUBECONFIG to a kubeconfig file"
        )


@contextlib.asynccontextmanager
async def kubernetes_backend(
    settings: Settings, *, clock: Clock | None = None
) -> AsyncIterator[KubernetesBackend]:
    """The backend for `settings.kubernetes`: in-cluster config in a pod, else kubeconfig/context."""
    kube = settings.kubernetes
    configuration = client.Configuration()
    loader: Any = None
    try:
        if not kube.kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
            load_incluster: Any = config.load_incluster_config
            load_incluster(client_configuration=configuration)
            source = "in-cluster"
        else:
            _require_kubeconfig(kube.kubeconfig)
            loader = await config.load_kube_config(
                config_file=kube.kubeconfig or None,
                context=kube.context or None,
                client_configuration=configuration,
                persist_config=False,
            )
            source = kube.kubeconfig or "~/.kube/config"
    except (config.ConfigException, OSError) as exc:
        raise BackendError(
            f"cannot load the Kubernetes configuration: {exc}", retryable=False, code="Config"
        ) from exc
    log.info("kube_config_loaded", source=source, host=configuration.host, context=kube.context or None)
    async with client.ApiClient(configuration) as api, KubernetesBackend(api, kube, clock=clock) as backend:
        if loader is not None and "exec" in getattr(loader, "_user", {}):
            # EKS tokens from `aws eks get-token` last 15 minutes: refresh them in the background.
            assert backend._tg is not None
            backend._tg.start_soon(_refresh_token, loader, configuration)
        yield backend


@contextlib.asynccontextmanager
async def kubernetes_backends(config_: LoadedConfig) -> AsyncIterator[BackendSet]:
    """The `kubernetes` entry-point factory (group `hpscaler.backends`)."""
    async with kubernetes_backend(config_.settings) as backend:
        yield BackendSet(kubernetes=backend)


async def _refresh_token(loader: Any, configuration: Any) -> None:
    try:
        await config.refresh_token(loader, configuration, interval=300)
    except Exception:
        log.exception("kube_token_refresh_failed")
