"""Watching pods, nodes and DaemonSets: list, then follow the watches from the lists' resourceVersion.

`ClusterWatch.pump` runs one watch() stream: it lists each kind (all pages), sends ADDED for every
object and SYNCED, then follows the three watches (bookmarks keep the resourceVersion fresh; a
watch that times out resumes from it). A 410 or a dropped stream lists again: DELETED for objects
gone meanwhile, ADDED for every current one, SYNCED. An object that cannot be parsed is skipped
(and an unusable pod reported through `on_unusable`), so one bad object never ends the stream.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import WatchEvent, WatchKind
from hpscaler.kube.api import ApiCalls
from hpscaler.kube.convert import JSON, KubeApiError, api_error, metadata, watch_lines
from hpscaler.kube.objects import daemonset_from_manifest, node_from_manifest, pod_from_manifest
from hpscaler.model import Node, Pod

log = structlog.get_logger("hpscaler.kube")

WatchItem = WatchEvent | BackendError
_Model = Pod | Node
# What the cache follows: DaemonSets too, since every new node reserves room for their pods.
_KINDS = ("pods", "nodes", "daemonsets")


class _Relist(Exception):
    """A watch lost its place (410 Gone, or the stream dropped): list again."""


class ClusterWatch:
    """Lists and watches pods, nodes and DaemonSets into a stream of `WatchEvent`s."""

    def __init__(
        self,
        calls: ApiCalls,
        *,
        on_unusable: Callable[[Mapping[str, Any], str], None],
        page_size: int = 500,
        watch_timeout_seconds: int = 300,
        relist_backoff: float = 0.5,
    ) -> None:
        self.calls = calls
        self.on_unusable = on_unusable
        self.page_size = page_size
        self.watch_timeout_seconds = watch_timeout_seconds
        self.relist_backoff = relist_backoff

    async def pump(self, send: MemoryObjectSendStream[WatchItem], scope: anyio.CancelScope) -> None:
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
        """`_parse_model`, and `on_unusable` for a pod that cannot be used."""
        try:
            return _parse_model(kind, obj)
        except Exception as exc:  # one bad object must never end the stream
            name = _key(kind, obj) if isinstance(obj, Mapping) else "?"
            log.warning("kube_object_skipped", kind=kind, name=name, error=str(exc))
            if kind == "pods" and not deleted and isinstance(obj, Mapping):
                self.on_unusable(obj, str(exc))
            return None

    async def _list_and_watch(self, send: MemoryObjectSendStream[WatchItem]) -> None:
        known: dict[str, dict[str, _Model]] = {kind: {} for kind in _KINDS}
        drops = 0
        while True:
            versions: dict[str, str] = {}
            fresh: dict[str, dict[str, _Model]] = {}
            for kind in _KINDS:
                items, versions[kind] = await self._list_all(kind)
                fresh[kind] = dict(parsed for obj in items if (parsed := self._parse(kind, obj)) is not None)
            for kind in _KINDS:
                for key in known[kind].keys() - fresh[kind].keys():
                    await send.send(_event(WatchKind.DELETED, kind, known[kind][key]))
            for kind in _KINDS:
                for model in fresh[kind].values():
                    await send.send(_event(WatchKind.ADDED, kind, model))
            await send.send(WatchEvent(WatchKind.SYNCED))
            known = fresh
            log.info(
                "kube_synced",
                pods=len(known["pods"]),
                nodes=len(known["nodes"]),
                daemonsets=len(known["daemonsets"]),
                pods_version=versions["pods"],
                nodes_version=versions["nodes"],
            )
            received = [0]
            try:
                async with anyio.create_task_group() as tg:
                    for kind in _KINDS:
                        tg.start_soon(
                            self._follow,
                            kind,
                            versions[kind],
                            known[kind],
                            send,
                            received,
                            name=f"kube watch {kind}",
                        )
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
        method = self._lister(kind)
        for _ in range(3):
            items: list[JSON] = []
            token = ""
            try:
                while True:
                    page = await self.calls.call(
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
        send: MemoryObjectSendStream[WatchItem],
        received: list[int],
    ) -> None:
        """Watch one kind from `version` until a relist is needed (raises _Relist) or an error."""
        method = self._lister(kind)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.calls.timeout, sock_read=self.watch_timeout_seconds + 30
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
        send: MemoryObjectSendStream[WatchItem],
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
                await send.send(_event(WatchKind.DELETED, kind, model))
        elif parsed and kind_of_event in ("ADDED", "MODIFIED"):
            known[parsed[0]] = parsed[1]
            await send.send(_event(WatchKind(kind_of_event), kind, parsed[1]))
        return version

    def _lister(self, kind: str) -> Any:
        if kind == "pods":
            return self.calls.core.list_pod_for_all_namespaces
        if kind == "daemonsets":
            return self.calls.apps.list_daemon_set_for_all_namespaces
        return self.calls.core.list_node


def _key(kind: str, obj: Mapping[str, Any]) -> str:
    meta = metadata(obj)
    name = str(meta.get("name", ""))
    return f"{meta.get('namespace') or 'default'}/{name}" if kind != "nodes" else name


def _parse_model(kind: str, obj: Any) -> tuple[str, _Model]:
    """(key, model) of a pod, node or DaemonSet object; raises when it cannot be used."""
    if kind == "pods":
        pod = pod_from_manifest(obj)
        return pod.key, pod
    if kind == "daemonsets":
        template = daemonset_from_manifest(obj)
        return template.key, template
    node = node_from_manifest(obj)
    return node.name, node


def _event(kind: WatchKind, resource: str, model: _Model) -> WatchEvent:
    if isinstance(model, Node):
        return WatchEvent(kind, node=model)
    return WatchEvent(kind, daemonset=model) if resource == "daemonsets" else WatchEvent(kind, pod=model)


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
