"""How the fake API server reads a request: the resource route of a URL, its verb and its query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpscaler.testing.apiobjects import ApiError
from hpscaler.testing.apiresources import ResourceType
from hpscaler.testing.selectors import SelectorError, parse_field_selector, parse_label_selector

TRUE = ("true", "True", "TRUE", "1", "t", "T")


@dataclass(frozen=True, slots=True)
class Route:
    """The resource a URL names: group, version, plural, namespace, name and subresource."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str
    subresource: str


def parse_route(segments: list[str]) -> Route | None:
    """The route of /api/<version>/... or /apis/<group>/<version>/... (None if too long)."""
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
    return Route(group, version, rest[0], namespace, rest[1], rest[2])


def verb_of(method: str, route: Route, query: dict[str, str]) -> str:
    """The Kubernetes verb of an HTTP method on a route."""
    if method == "GET":
        if route.name:
            return "get"
        return "watch" if query.get("watch") in TRUE else "list"
    collection = {"POST": "create", "DELETE": "deletecollection"}
    single = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    return (single if route.name else collection).get(method, method.lower())


def query_selectors(rtype: ResourceType, query: dict[str, str]) -> tuple[Any, Any]:
    """The labelSelector and fieldSelector of a query; 400 if malformed."""
    try:
        return (
            parse_label_selector(query.get("labelSelector", "")),
            parse_field_selector(query.get("fieldSelector", ""), rtype.fields),
        )
    except SelectorError as exc:
        raise ApiError(400, str(exc)) from None
