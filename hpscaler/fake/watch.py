"""Watch streams of the in-memory API server: list (ADDED... SYNCED), then every change.

As a Kubernetes watch after a list does: each watcher first gets the objects as they are, then the
changes in the order they happened. Every watcher gets its own copies, so no watcher can change
what another one, or the store, sees.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from hpscaler.backends.types import WatchEvent, WatchKind
from hpscaler.fake.copies import copy_node, copy_pod
from hpscaler.model import Node, Pod

Snapshot = Callable[[], Iterable[WatchEvent]]  # ADDED for every object, copies


class WatchHub:
    """The open watches; `snapshot` lists the store as ADDED events (SYNCED is added here)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._subscribers: list[MemoryObjectSendStream[WatchEvent]] = []

    async def watch(self) -> AsyncIterator[WatchEvent]:
        """ADDED for every object, SYNCED, then live changes, until the consumer stops."""
        send, receive = anyio.create_memory_object_stream[WatchEvent](math.inf)
        # Snapshot and subscription happen without an await in between, so nothing is lost.
        self._send_snapshot(send)
        self._subscribers.append(send)
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    def relist(self) -> None:
        """A lost watch: every watcher receives ADDED... SYNCED again."""
        for send in list(self._subscribers):
            self._send_snapshot(send)

    def emit(
        self,
        kind: WatchKind,
        *,
        pod: Pod | None = None,
        node: Node | None = None,
        daemonset: Pod | None = None,
    ) -> None:
        """Send a change to every watcher, each its own copy."""
        for send in list(self._subscribers):
            event = WatchEvent(
                kind,
                pod=copy_pod(pod) if pod else None,
                node=copy_node(node) if node else None,
                daemonset=copy_pod(daemonset) if daemonset else None,
            )
            try:
                send.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove(send)

    def _send_snapshot(self, send: MemoryObjectSendStream[WatchEvent]) -> None:
        for event in self._snapshot():
            send.send_nowait(event)
        send.send_nowait(WatchEvent(WatchKind.SYNCED))
