"""The fake API server's change history and open watches, with etcd-like global resourceVersions.

Everything here is synchronous: one call is one atomic step of the event loop, so a watch's snapshot
and its subscription to later changes can never let an event slip between them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hpscaler.testing.apiobjects import ApiError, Obj, meta
from hpscaler.testing.apiresources import ResourceType
from hpscaler.testing.selectors import FieldSelector, LabelSelector, fields_match, labels_match


@dataclass(slots=True)
class Change:
    """One committed change: the history entry watches replay."""

    rv: int
    type: str
    rtype: ResourceType
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class Watch:
    """One open watch stream: its filter and the queue its HTTP handler drains."""

    rtype: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    bookmarks: bool
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)
    aborted: bool = False
    closed_at: int | None = None  # the resourceVersion every queued event was at when the stream was closed

    def matches(self, obj: Obj | None) -> bool:
        """Whether `obj` is inside this watch's namespace and selectors."""
        if obj is None:
            return False
        metadata = obj.get("metadata") or {}
        if self.namespace is not None and metadata.get("namespace", "") != self.namespace:
            return False
        return labels_match(self.labels, metadata.get("labels") or {}) and fields_match(self.fields, obj)

    def offer(self, change: Change) -> None:
        """Queue the event this watch sees, with selector transitions turned into ADDED/DELETED."""
        now, before = self.matches(change.obj), self.matches(change.old)
        if change.type == "MODIFIED" and now != before:
            self.queue.put_nowait(("ADDED" if now else "DELETED", change.obj))
        elif now:
            self.queue.put_nowait((change.type, change.obj))

    def close(self, rv: int, *, abort: bool = False) -> None:
        """End the stream cleanly after the queued events (`rv`: the store's version now), or cut it."""
        self.aborted = self.aborted or abort
        if self.closed_at is None:
            self.closed_at = rv
        self.queue.put_nowait(None)


class EventLog:
    """The global resourceVersion, the bounded history of changes and the open watches they reach."""

    def __init__(self, history_limit: int) -> None:
        self.rv = 0
        self.history: deque[Change] = deque()
        self.history_limit = history_limit
        self.horizon = 0  # a watch may resume from any resourceVersion >= horizon
        self.watches: set[Watch] = set()

    def commit(self, kind: str, rtype: ResourceType, obj: Obj, old: Obj | None) -> Change:
        """Give `obj` the next resourceVersion, keep the change and offer it to the watches."""
        self.rv += 1
        meta(obj)["resourceVersion"] = str(self.rv)
        change = Change(self.rv, kind, rtype, obj, old)
        if len(self.history) >= self.history_limit:
            self.horizon = self.history.popleft().rv
        self.history.append(change)
        for watch in list(self.watches):
            if watch.rtype.key == rtype.key:
                watch.offer(change)
        return change

    def open(self, watch: Watch, since: str, snapshot: Callable[[], list[Obj]]) -> Watch:
        """Start `watch`: synthetic ADDED for "" / "0" (the `snapshot`), else the history after `since`
        (410 if compacted)."""
        if since in ("", "0"):
            for obj in snapshot():
                watch.queue.put_nowait(("ADDED", obj))
        else:
            try:
                start = int(since)
            except ValueError:
                raise ApiError(400, f"invalid resource version {since!r}") from None
            if start < self.horizon:
                raise ApiError(410, f"too old resource version: {start} ({self.horizon})", "Expired")
            for change in self.history:
                if change.rv > start and change.rtype.key == watch.rtype.key:
                    watch.offer(change)
        self.watches.add(watch)
        return watch

    def close_watches(self, *, abort: bool = False, rtype: ResourceType | None = None) -> int:
        """End the open watches (of one resource type, or all); how many there were."""
        chosen = [w for w in self.watches if rtype is None or w.rtype.key == rtype.key]
        for watch in chosen:
            watch.close(self.rv, abort=abort)
        return len(chosen)

    def compact(self) -> None:
        """Forget the event history, like etcd compaction: watches from older versions get 410."""
        self.history.clear()
        self.horizon = self.rv
