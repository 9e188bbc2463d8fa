"""An HTTP fake of the Kubernetes API server, for testing the real backend over the wire.

    async with FakeApiServer() as server:
        server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        async with ApiClient(server.configuration()) as api:
            ...

It serves /api/v1 and /apis/<group>/<version> (namespaced and cluster-scoped), discovery and
/version, for pods, nodes, namespaces, events, PodDisruptionBudgets, Leases, NodePools, NodeClaims
and HyperpodNodeClasses (status subresources included). Semantics follow the real server where
hpscaler depends on them: resourceVersion preconditions, the three PATCH flavours, selectors,
paginated lists, watches with history replay, 410, bookmarks and timeouts, and the Eviction
subresource with live PodDisruptionBudget math. The test side reads and writes objects directly
(`create`, `get`, `update`, `patch`, `delete`, `list`), sees every request (`requests`), and
injects faults (`fail_next`, `drop_watches`, `outage`, `compact`).

Not covered: server-side apply (415), admission, authentication/authorisation, protobuf, graceful
pod termination (pods go at once; the DELETED object carries deletionGracePeriodSeconds).
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from hpscaler.testing.apiresources import DEFAULT_RESOURCES, NAMESPACES, ResourceTable, ResourceType
from hpscaler.testing.apistore import ApiError, Obj, Store, Watch, meta
from hpscaler.testing.patching import MERGE_PATCH
from hpscaler.testing.selectors import SelectorError, parse_field_selector, parse_label_selector

_TRUE = ("true", "True", "TRUE", "1", "t", "T")
_INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_MAX_CONTINUES = 256
_List = list  # `FakeApiServer.list` shadows the builtin inside the class


@dataclass(slots=True)
class RecordedRequest:
    """One HTTP request as the server saw it, with its Kubernetes verb and resource."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any
    verb: str = ""  # get, list, watch, create, update, patch, delete, deletecollection ("" for discovery)
    group: str = ""
    resource: str = ""  # "pods", "pods/eviction", "nodepools/status"
    namespace: str = ""
    name: str = ""
    status: int = 0
    time: float = 0.0  # time.monotonic() on arrival: orders requests against other servers' logs


@dataclass(slots=True)
class _Fault:
    method: str | None
    path: str
    status: int
    times: int
    message: str
    delay: float

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return path == self.path or fnmatch.fnmatchcase(path, self.path)


@dataclass(frozen=True, slots=True)
class _Route:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str
    subresource: str


def _parse_route(segments: list[str]) -> _Route | None:
    if segments[0] == "api":
        group, version, rest = "", segments[1], segments[2:]
    else:
        group, version, rest = segments[1], segments[2], segments[3:]
    namespace = None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    rest = rest + [""] * (3 - len(rest))
    return _Route(group, version, rest[0], namespace, rest[1], rest[2])


def _verb(method: str, route: _Route, query: dict[str, str]) -> str:
    if method == "GET":
        if route.name:
            return "get"
        return "watch" if query.get("watch") in _TRUE else "list"
    collection = {"POST": "create", "DELETE": "deletecollection"}
    single = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    return (single if route.name else collection).get(method, method.lower())


class FakeApiServer:
    """The fake API server on 127.0.0.1 and a random port; use as an async context manager."""

    def __init__(
        self,
        resources: Iterable[ResourceType] = DEFAULT_RESOURCES,
        *,
        history_limit: int = 1000,
        bookmark_interval: float | None = None,
        max_watch_seconds: float = 1800.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.table = ResourceTable(resources)
        self.store = Store(self.table, history_limit=history_limit, now=now)
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds
        self.requests: list[RecordedRequest] = []
        self.url = ""
        self._faults: list[_Fault] = []
        self._outage_until: float | None = None
        self._continues: dict[str, tuple[int, list[Obj], str]] = {}
        self._tokens = itertools.count(1)
        self._runner: web.AppRunner | None = None
        for name in _INITIAL_NAMESPACES:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 (random port); `url` is set afterwards."""
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """End every watch and stop listening."""
        self.store.close_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def configuration(self) -> Any:
        """A kubernetes_asyncio `Configuration` pointing at this server."""
        from kubernetes_asyncio.client import Configuration

        return Configuration(host=self.url)

    # --- test-side object API (no HTTP; changes reach watches like any other) ---------------------

    def _namespace(self, rtype: ResourceType, namespace: str) -> str:
        return (namespace or "default") if rtype.namespaced else ""

    def create(self, obj: Obj) -> Obj:
        """Store a new object (status kept as given); its namespace is created if missing."""
        rtype = self.table.for_object(obj)
        namespace = self._namespace(rtype, (obj.get("metadata") or {}).get("namespace", ""))
        if rtype.namespaced and self.store.raw(NAMESPACES, "", namespace) is None:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        return self.store.create(rtype, namespace, obj, from_api=False)

    def get(self, resource: str, name: str, namespace: str = "") -> Obj | None:
        """A copy of the object as clients see it, or None."""
        rtype = self.table.find(resource)
        try:
            return self.store.get(rtype, self._namespace(rtype, namespace), name)
        except ApiError:
            return None

    def update(self, obj: Obj) -> Obj:
        """Replace an object, status included, without a resourceVersion check."""
        rtype = self.table.for_object(obj)
        body = copy.deepcopy(obj)
        meta(body).pop("resourceVersion", None)
        namespace = self._namespace(rtype, body["metadata"].get("namespace", ""))
        return self.store.replace(rtype, namespace, body["metadata"]["name"], body, from_api=False)

    def patch(self, resource: str, name: str, patch: Obj, namespace: str = "") -> Obj:
        """JSON-merge-patch an object, status included."""
        rtype = self.table.find(resource)
        return self.store.patch(
            rtype, self._namespace(rtype, namespace), name, MERGE_PATCH, patch, from_api=False
        )

    def delete(self, resource: str, name: str, namespace: str = "", grace_seconds: int | None = None) -> bool:
        """Delete an object (finalizers honoured); False if it did not exist."""
        rtype = self.table.find(resource)
        options = {} if grace_seconds is None else {"gracePeriodSeconds": grace_seconds}
        try:
            self.store.delete(rtype, self._namespace(rtype, namespace), name, options)
        except ApiError:
            return False
        return True

    def list(
        self, resource: str, namespace: str | None = None, label_selector: str = "", field_selector: str = ""
    ) -> list[Obj]:
        """Copies of the matching objects, ordered by namespace and name."""
        rtype = self.table.find(resource)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rtype.fields)
        return [
            copy.deepcopy(self.store.present(rtype, o))
            for o in self.store.select(rtype, namespace, labels, fields)
        ]

    def install(self, rtype: ResourceType) -> None:
        """Serve a resource type (like applying a CRD)."""
        self.table.install(rtype)

    def uninstall(self, resource: str) -> None:
        """Stop serving a resource type (like deleting a CRD): its URLs answer 404."""
        rtype = self.table.find(resource)
        self.store.close_watches(rtype=rtype)
        self.table.uninstall(rtype)

    # --- faults and observation ---------------------------------------------------------------------

    def fail_next(
        self,
        path: str,
        status: int = 500,
        *,
        times: int = 1,
        method: str | None = None,
        message: str = "",
        delay: float = 0.0,
    ) -> None:
        """The next `times` requests to `path` (exact or fnmatch pattern) get `status` (0: served normally
        after `delay` seconds)."""
        self._faults.append(
            _Fault(method, path, status, times, message or f"injected failure {status}", delay)
        )

    def drop_watches(self, *, abort: bool = True) -> int:
        """End every open watch stream; `abort` cuts the connection instead of ending it cleanly."""
        return self.store.close_watches(abort=abort)

    def send_bookmarks(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to every watch that allows bookmarks."""
        for watch in self.store.watches:
            if watch.bookmarks:
                watch.queue.put_nowait(("BOOKMARK", self._bookmark(watch.rtype)))

    def outage(self, seconds: float | None = None) -> None:
        """Answer every request with 503 (for `seconds`, or until `restore()`); open watches are cut."""
        loop = asyncio.get_running_loop()
        self._outage_until = float("inf") if seconds is None else loop.time() + seconds
        self.drop_watches(abort=True)

    def restore(self) -> None:
        """End an outage."""
        self._outage_until = None

    def compact(self) -> None:
        """Forget the event history: watches resuming from any older resourceVersion get 410 Gone."""
        self.store.compact()

    @property
    def active_watches(self) -> int:
        """How many watch streams are open."""
        return len(self.store.watches)

    @property
    def resource_version(self) -> int:
        """The latest resourceVersion."""
        return self.store.rv

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self.requests.clear()

    def requests_for(self, verb: str | None = None, resource: str | None = None) -> _List[RecordedRequest]:
        """Recorded requests filtered by verb and resource ("pods", "nodes/status"...)."""
        return [
            r
            for r in self.requests
            if (verb is None or r.verb == verb) and (resource is None or r.resource == resource)
        ]

    # --- HTTP -------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        record = RecordedRequest(
            request.method, request.path, query, request.content_type, body, time=time.monotonic()
        )
        self.requests.append(record)
        try:
            response = await self._serve(request, record, raw)
        except ApiError as err:
            response = web.json_response(err.status(), status=err.code)
        record.status = response.status
        return response

    async def _serve(self, request: web.Request, record: RecordedRequest, raw: bytes) -> web.StreamResponse:
        segments = [s for s in request.path.split("/") if s]
        route = None
        if (len(segments) >= 3 and segments[0] == "api") or (len(segments) >= 4 and segments[0] == "apis"):
            route = _parse_route(segments)
            if route is not None:
                record.verb = _verb(request.method, route, record.query)
                record.group = route.group
                record.resource = route.plural + (f"/{route.subresource}" if route.subresource else "")
                record.namespace, record.name = route.namespace or "", route.name
        for fault in self._faults:
            if fault.times > 0 and fault.matches(request.method, request.path):
                fault.times -= 1
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status:
                    raise ApiError(fault.status, fault.message)
                break
        self._faults = [f for f in self._faults if f.times > 0]
        if self._outage_until is not None:
            if asyncio.get_running_loop().time() < self._outage_until:
                raise ApiError(503, "the server is currently unable to handle the request")
            self._outage_until = None
        if isinstance(record.body, str):
            raise ApiError(400, "the request body is not valid JSON")
        if route is None:
            return self._discovery(request.method, segments)
        return await self._serve_resource(request, route, record)

    def _discovery(self, method: str, segments: _List[str]) -> web.StreamResponse:
        if method != "GET":
            raise ApiError(405, "the server does not allow this method on the requested resource")
        doc: Obj | None = None
        if segments == ["version"]:
            doc = {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0-hpscaler-fake",
                "platform": "linux/amd64",
            }
        elif segments == ["api"]:
            doc = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        elif segments == ["apis"]:
            doc = self.table.group_list()
        elif len(segments) == 2 and segments[0] == "api":
            doc = self.table.resource_list("", segments[1])
        elif len(segments) == 2 and segments[0] == "apis":
            doc = self.table.group_document(segments[1])
        elif len(segments) == 3 and segments[0] == "apis":
            doc = self.table.resource_list(segments[1], segments[2])
        elif segments in (["healthz"], ["readyz"], ["livez"]):
            return web.Response(text="ok")
        if doc is None:
            raise ApiError(404, "the server could not find the requested resource")
        return web.json_response(doc)

    def _resolve(self, route: _Route, method: str) -> ResourceType:
        rtype = self.table.at(route.group, route.version, route.plural)
        missing = ApiError(404, "the server could not find the requested resource")
        if rtype is None or (route.namespace is not None and not rtype.namespaced):
            raise missing
        if rtype.namespaced and route.name and route.namespace is None:
            raise missing
        if route.subresource and not (
            (route.subresource == "status" and rtype.status)
            or (route.subresource in rtype.extra_subresources and method == "POST")
        ):
            raise missing
        return rtype

    async def _serve_resource(
        self, request: web.Request, route: _Route, record: RecordedRequest
    ) -> web.StreamResponse:
        rtype = self._resolve(route, request.method)
        store, query, body = self.store, record.query, record.body
        namespace = route.namespace or ""
        verb = record.verb
        if verb == "watch":
            return await self._watch(request, rtype, route.namespace, query, record)
        if verb == "list":
            return web.json_response(self._list(rtype, route.namespace, query))
        if verb == "get":
            return web.json_response(store.get(rtype, namespace, route.name))
        if (verb in ("create", "update") and not isinstance(body, dict)) or (
            verb == "patch" and body is None
        ):
            raise ApiError(400, "a request body is required")
        if verb == "create" and route.subresource == "eviction":
            if (body.get("metadata") or {}).get("name", route.name) != route.name:
                raise ApiError(400, "name in URL does not match name in Eviction object")
            store.evict(namespace, route.name, body)
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
                status=201,
            )
        if verb == "create":
            if route.name:
                raise ApiError(405, "the server does not allow this method on the requested resource")
            return web.json_response(store.create(rtype, namespace, body, from_api=True), status=201)
        if verb == "update":
            return web.json_response(
                store.replace(rtype, namespace, route.name, body, subresource=route.subresource)
            )
        if verb == "patch":
            patched = store.patch(
                rtype, namespace, route.name, request.content_type, body, subresource=route.subresource
            )
            return web.json_response(patched)
        options = dict(body) if isinstance(body, dict) else {}
        if "gracePeriodSeconds" in query:
            options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
        if verb == "delete":
            return web.json_response(store.delete(rtype, namespace, route.name, options))
        if verb == "deletecollection":
            labels, fields = self._selectors(rtype, query)
            gone = [
                store.delete(rtype, o["metadata"].get("namespace", ""), o["metadata"]["name"], options)
                for o in list(store.select(rtype, route.namespace, labels, fields))
            ]
            return web.json_response(self._list_body(rtype, gone, ""))
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def _selectors(self, rtype: ResourceType, query: dict[str, str]) -> tuple[Any, Any]:
        try:
            return (
                parse_label_selector(query.get("labelSelector", "")),
                parse_field_selector(query.get("fieldSelector", ""), rtype.fields),
            )
        except SelectorError as exc:
            raise ApiError(400, str(exc)) from None

    def _list_body(self, rtype: ResourceType, items: _List[Obj], token: str, remaining: int = 0) -> Obj:
        shown = []
        for obj in items:
            item = copy.deepcopy(self.store.present(rtype, obj))
            if rtype.builtin:  # the API server leaves kind and apiVersion off built-in list items
                item.pop("kind", None)
                item.pop("apiVersion", None)
            shown.append(item)
        metadata: Obj = {"resourceVersion": str(self.store.rv)}
        if token:
            metadata["continue"] = token
            metadata["remainingItemCount"] = remaining
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": metadata,
            "items": shown,
        }

    def _list(self, rtype: ResourceType, namespace: str | None, query: dict[str, str]) -> Obj:
        token = query.get("continue", "")
        if token:
            saved = self._continues.pop(token, None)
            if saved is None or saved[0] < self.store.horizon or saved[2] != rtype.key:
                raise ApiError(
                    410,
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                    "Expired",
                )
            rv, items, _ = saved
        else:
            labels, fields = self._selectors(rtype, query)
            rv, items = (
                self.store.rv,
                [copy.deepcopy(o) for o in self.store.select(rtype, namespace, labels, fields)],
            )
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise ApiError(400, "limit must be an integer") from None
        page, rest = (items[:limit], items[limit:]) if limit > 0 else (items, [])
        next_token = ""
        if rest:
            next_token = f"c{next(self._tokens)}"
            self._continues[next_token] = (rv, rest, rtype.key)
            while len(self._continues) > _MAX_CONTINUES:
                self._continues.pop(next(iter(self._continues)))
        body = self._list_body(rtype, page, next_token, len(rest))
        body["metadata"]["resourceVersion"] = str(rv)
        return body

    def _bookmark(self, rtype: ResourceType, rv: int | None = None) -> Obj:
        version = str(self.store.rv if rv is None else rv)
        return {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": {"resourceVersion": version}}

    async def _watch(
        self,
        request: web.Request,
        rtype: ResourceType,
        namespace: str | None,
        query: dict[str, str],
        record: RecordedRequest,
    ) -> web.StreamResponse:
        labels, fields = self._selectors(rtype, query)
        try:
            timeout = min(
                float(query.get("timeoutSeconds") or self.max_watch_seconds), self.max_watch_seconds
            )
        except ValueError:
            raise ApiError(400, "timeoutSeconds must be a number") from None
        bookmarks = query.get("allowWatchBookmarks") in _TRUE
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
            self.store.watches.discard(watch)
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
                    item = ("BOOKMARK", self._bookmark(watch.rtype))
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
            bookmark = self._bookmark(watch.rtype, watch.closed_at)
            await response.write(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
        await response.write_eof()
