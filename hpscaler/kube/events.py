"""Posting core/v1 Events on pods, so `kubectl describe pod` shows hpscaler's decisions.

A repeat of the same event (same pod, reason, message and type) patches the count of the one
already posted, as client-go's event correlator does, from a bounded cache of recent events.
A pod the watch cannot use gets one FailedScaling warning per pod and reason.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import structlog
from anyio.abc import TaskGroup

from hpscaler.backends.protocols import BackendError
from hpscaler.clock import Clock
from hpscaler.kube.api import ApiCalls
from hpscaler.kube.convert import MERGE_PATCH, KubeApiError, event_body, format_time, metadata
from hpscaler.model import Pod

log = structlog.get_logger("hpscaler.kube")

_EVENT_CACHE = 4096
_MAX_MESSAGE = 1024
_MAX_UNUSABLE = 10_000


class PodEvents:
    """Posts Events on pods for one reporting instance (`identity`)."""

    def __init__(self, calls: ApiCalls, clock: Clock, identity: str) -> None:
        self.calls = calls
        self.clock = clock
        self.identity = identity
        self._events: OrderedDict[tuple[str, ...], tuple[str, int]] = OrderedDict()
        self._unusable: dict[str, str] = {}  # pod key -> why it was skipped (reported once)

    async def record(self, pod: Pod, reason: str, message: str, *, warning: bool = False) -> None:
        """A core/v1 Event on the pod; a repeat of the same event patches its count."""
        kind = "Warning" if warning else "Normal"
        message = message[:_MAX_MESSAGE]
        key = (pod.namespace, pod.name, pod.uid, reason, message, kind)
        now = format_time(self.clock.now())
        cached = self._events.get(key)
        if cached is not None:
            name, count = cached
            try:
                await self.calls.call(
                    f"update event {pod.namespace}/{name}",
                    self.calls.core.patch_namespaced_event,
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
                self._remember(key, name, count + 1)
                return
        name = f"{pod.name}.{secrets.token_hex(8)}"
        body = event_body(pod, name, reason, message, kind, now, self.identity)
        await self.calls.call(
            f"create event {pod.namespace}/{name}",
            self.calls.core.create_namespaced_event,
            pod.namespace,
            body,
            retry=False,
        )
        self._remember(key, name, 1)

    def _remember(self, key: tuple[str, ...], name: str, count: int) -> None:
        self._events[key] = (name, count)
        self._events.move_to_end(key)
        while len(self._events) > _EVENT_CACHE:
            self._events.popitem(last=False)

    def report_unusable(self, obj: Mapping[str, Any], error: str, tg: TaskGroup | None) -> None:
        """A FailedScaling warning, posted in the background, on a pod hpscaler skips (once per reason)."""
        meta = metadata(obj)
        key = f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"
        if tg is None or not meta.get("name") or self._unusable.get(key) == error:
            return
        if len(self._unusable) > _MAX_UNUSABLE:  # bounded: forget the oldest reports
            self._unusable.pop(next(iter(self._unusable)))
        self._unusable[key] = error
        pod = Pod(
            str(meta.get("namespace") or "default"), str(meta["name"]), {}, uid=str(meta.get("uid") or "")
        )
        message = f"hpscaler skips this pod and provisions nothing for it: {error}"

        async def report() -> None:
            with contextlib.suppress(BackendError):
                await self.record(pod, "FailedScaling", message, warning=True)

        tg.start_soon(report, name=f"event {key}")
