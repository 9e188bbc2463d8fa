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
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from hpscaler.testing.apihandlers import ResourceHandlers
from hpscaler.testing.apiobjects import ApiError, Obj, meta
from hpscaler.testing.apiresources import DEFAULT_RESOURCES, NAMESPACES, ResourceTable, ResourceType
from hpscaler.testing.apiroutes import parse_route, verb_of
from hpscaler.testing.apistore import Store
from hpscaler.testing.patching import MERGE_PATCH
from hpscaler.testing.selectors import parse_field_selector, parse_label_selector
from hpscaler.testing.watchstream import WatchStreams

_INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
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
        self.watches = WatchStreams(
            self.store, bookmark_interval=bookmark_interval, max_watch_seconds=max_watch_seconds
        )
        self.handlers = ResourceHandlers(self.store, self.table, self.watches)
        self.requests: list[RecordedRequest] = []
        self.url = ""
        self._faults: list[_Fault] = []
        self._outage_until: float | None = None
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
        self.store.events.close_watches()
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
        self.store.events.close_watches(rtype=rtype)
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
        return self.store.events.close_watches(abort=abort)

    def send_bookmarks(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to every watch that allows bookmarks."""
        self.watches.send_bookmarks()

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
        self.store.events.compact()

    @property
    def active_watches(self) -> int:
        """How many watch streams are open."""
        return len(self.store.events.watches)

    @property
    def resource_version(self) -> int:
        """The latest resourceVersion."""
        return self.store.events.rv

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
            route = parse_route(segments)
            if route is not None:
                record.verb = verb_of(request.method, route, record.query)
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
            return self.handlers.discovery(request.method, segments)
        return await self.handlers.serve(request, route, record)
