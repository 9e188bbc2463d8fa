"""The fake API server's watch streams over HTTP: events as JSON lines, bookmarks, timeouts and cuts."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from aiohttp import web

from hpscaler.testing.apievents import Watch
from hpscaler.testing.apiobjects import ApiError, Obj
from hpscaler.testing.apiresources import ResourceType
from hpscaler.testing.apiroutes import TRUE, query_selectors
from hpscaler.testing.apistore import Store

if TYPE_CHECKING:
    from hpscaler.testing.fakeapiserver import RecordedRequest


class WatchStreams:
    """Serves `?watch=true` requests from the store's watches."""

    def __init__(self, store: Store, *, bookmark_interval: float | None, max_watch_seconds: float) -> None:
        self.store = store
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds

    def bookmark(self, rtype: ResourceType, rv: int | None = None) -> Obj:
        """A BOOKMARK object at `rv` (default: the current resourceVersion)."""
        version = str(self.store.events.rv if rv is None else rv)
        return {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": {"resourceVersion": version}}

    def send_bookmarks(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to every watch that allows bookmarks."""
        for watch in self.store.events.watches:
            if watch.bookmarks:
                watch.queue.put_nowait(("BOOKMARK", self.bookmark(watch.rtype)))

    async def serve(
        self,
        request: web.Request,
        rtype: ResourceType,
        namespace: str | None,
        query: dict[str, str],
        record: RecordedRequest,
    ) -> web.StreamResponse:
        """Open a watch and stream it until it times out, is closed or the client goes away."""
        labels, fields = query_selectors(rtype, query)
        try:
            timeout = min(
                float(query.get("timeoutSeconds") or self.max_watch_seconds), self.max_watch_seconds
            )
        except ValueError:
            raise ApiError(400, "timeoutSeconds must be a number") from None
        bookmarks = query.get("allowWatchBookmarks") in TRUE
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            watch = self.store.watch(
                rtype, namespace, labels, fields, query.get("resourceVersion", ""), bookmarks=bookmarks
            )
        except ApiError as err:
            if err.code != 410:
                raise
            await response.prepare(request)
            await response.write(json.dumps({"type": "ERROR", "object": err.status()}).encode() + b"\n")
            await response.write_eof()
            return response
        record.status = 200  # the stream may end by cancellation, before _handle sees the response
        try:
            await response.prepare(request)
            await self._stream(request, response, watch, timeout)
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self.store.events.watches.discard(watch)
        return response

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, watch: Watch, seconds: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        interval = self.bookmark_interval if watch.bookmarks else None
        next_bookmark = loop.time() + interval if interval else float("inf")
        while True:
            now = loop.time()
            if now >= deadline:
                break
            try:
                item = await asyncio.wait_for(watch.queue.get(), min(deadline, next_bookmark) - now)
            except TimeoutError:
                if interval and loop.time() >= next_bookmark:
                    item = ("BOOKMARK", self.bookmark(watch.rtype))
                    next_bookmark = loop.time() + interval
                else:
                    continue
            if item is None:
                if watch.aborted:
                    if request.transport is not None:
                        request.transport.abort()
                    return
                break
            kind, obj = item
            shown = obj if kind == "BOOKMARK" else self.store.present(watch.rtype, obj)
            await response.write(json.dumps({"type": kind, "object": shown}).encode() + b"\n")
        # A bookmark promises every event up to its resourceVersion was sent: after a close that is
        # the version at the close; after a timeout, the current one if nothing is still queued.
        if watch.bookmarks and (watch.closed_at is not None or watch.queue.empty()):
            bookmark = self.bookmark(watch.rtype, watch.closed_at)
            await response.write(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
        await response.write_eof()
