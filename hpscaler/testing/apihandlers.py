"""The fake API server's REST handlers: discovery, and get, list, create, update, patch and delete on
resources (with paginated lists and the Eviction subresource)."""

from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING

from aiohttp import web

from hpscaler.testing.apieviction import evict
from hpscaler.testing.apiobjects import ApiError, Obj
from hpscaler.testing.apiresources import ResourceTable, ResourceType
from hpscaler.testing.apiroutes import Route, query_selectors
from hpscaler.testing.apistore import Store
from hpscaler.testing.watchstream import WatchStreams

if TYPE_CHECKING:
    from hpscaler.testing.fakeapiserver import RecordedRequest

_MAX_CONTINUES = 256


class ResourceHandlers:
    """Answers the requests that are not watches; keeps the continue tokens of paginated lists."""

    def __init__(self, store: Store, table: ResourceTable, watches: WatchStreams) -> None:
        self.store = store
        self.table = table
        self.watches = watches
        self._continues: dict[str, tuple[int, list[Obj], str]] = {}
        self._tokens = itertools.count(1)

    def discovery(self, method: str, segments: list[str]) -> web.StreamResponse:
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

    def _resolve(self, route: Route, method: str) -> ResourceType:
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

    async def serve(self, request: web.Request, route: Route, record: RecordedRequest) -> web.StreamResponse:
        rtype = self._resolve(route, request.method)
        store, query, body = self.store, record.query, record.body
        namespace = route.namespace or ""
        verb = record.verb
        if verb == "watch":
            return await self.watches.serve(request, rtype, route.namespace, query, record)
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
            evict(store, namespace, route.name, body)
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
            labels, fields = query_selectors(rtype, query)
            gone = [
                store.delete(rtype, o["metadata"].get("namespace", ""), o["metadata"]["name"], options)
                for o in list(store.select(rtype, route.namespace, labels, fields))
            ]
            return web.json_response(self._list_body(rtype, gone, ""))
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def _list_body(self, rtype: ResourceType, items: list[Obj], token: str, remaining: int = 0) -> Obj:
        shown = []
        for obj in items:
            item = copy.deepcopy(self.store.present(rtype, obj))
            if rtype.builtin:  # the API server leaves kind and apiVersion off built-in list items
                item.pop("kind", None)
                item.pop("apiVersion", None)
            shown.append(item)
        metadata: Obj = {"resourceVersion": str(self.store.events.rv)}
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
            if saved is None or saved[0] < self.store.events.horizon or saved[2] != rtype.key:
                raise ApiError(
                    410,
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                    "Expired",
                )
            rv, items, _ = saved
        else:
            labels, fields = query_selectors(rtype, query)
            rv, items = (
                self.store.events.rv,
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
