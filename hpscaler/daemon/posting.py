"""Pod Events are posted in the background, as kopf's `engines/posting.py` does.

A provisioning round decides for many pods at once and tells each of them through a Kubernetes
Event (`Nominated`, `FailedScaling`). Sent one by one from the round, a slow or failing API server
would hold the round, and with it `plan_lock`, for as long as it takes. Instead the round puts its
events on a bounded queue and one background task sends them. Events are advice to users: when
the queue is full (the API server has stalled for a long time) new ones are dropped and counted,
never waited for; when the daemon stops, the ones not sent yet are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hpscaler.backends.protocols import BackendError
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import PodEventDropped
from hpscaler.model import Pod

QUEUE_SIZE = 10_000  # a round's worth of decisions for a very large burst


@dataclass(frozen=True, slots=True)
class PodEvent:
    """A Kubernetes Event to post on a pod."""

    pod: Pod
    reason: str
    message: str
    warning: bool = False


class EventPoster:
    """A bounded queue of pod Events and the task that drains it (`run`)."""

    def __init__(self, ctx: DaemonContext, size: int = QUEUE_SIZE) -> None:
        self.ctx = ctx
        self._send: MemoryObjectSendStream[PodEvent]
        self._receive: MemoryObjectReceiveStream[PodEvent]
        self._send, self._receive = anyio.create_memory_object_stream[PodEvent](size)

    def post(self, event: PodEvent) -> bool:
        """Queue an event without waiting; False when the queue is full and it was dropped."""
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.ctx.record(PodEventDropped(event.pod.key, event.reason))
            return False
        return True

    async def run(self) -> None:
        """Send queued events one at a time until cancelled; a failed one is logged and skipped."""
        async for event in self._receive:
            try:
                await self.ctx.backends.kubernetes.record_event(
                    event.pod, event.reason, event.message, warning=event.warning
                )
            except BackendError as exc:
                self.ctx.log.debug("event_failed", pod=event.pod.key, error=str(exc))
