"""The fake API server's state: objects, resourceVersions, a bounded event history and open watches.

Everything here is synchronous: one call is one atomic step of the event loop, so a watch's snapshot
and its subscription to later changes can never let an event slip between them.
"""

from __future__ import annotations

import asyncio
import copy
import math
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hpscaler.testing.apiresources import NAMESPACES, PDBS, PODS, ResourceTable, ResourceType
from hpscaler.testing.patching import PatchError, apply_patch
from hpscaler.testing.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    fields_match,
    label_selector_from_spec,
    labels_match,
)

Obj = dict[str, Any]
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_TERMINAL = ("Succeeded", "Failed")


class ApiError(Exception):
    """A failed request, answered with a metav1.Status of `code`."""

    def __init__(self, code: int, message: str, reason: str = "", details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> Obj:
        """The metav1.Status body."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(rtype: ResourceType, name: str) -> ApiError:
    """404 in the API server's words."""
    plural = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
    return ApiError(404, f'{plural} "{name}" not found', details={"name": name, "kind": rtype.plural})


def timestamp(moment: float, *, micro: bool = False) -> str:
    """RFC 3339 in UTC, as metav1.Time (seconds) or metav1.MicroTime."""
    text = datetime.fromtimestamp(moment, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%f" if micro else "%Y-%m-%dT%H:%M:%S"
    )
    return text + "Z"


def meta(obj: Obj) -> Obj:
    """obj["metadata"], created if missing."""
    value = obj.setdefault("metadata", {})
    if not isinstance(value, dict):
        raise ApiError(400, "metadata must be an object")
    return value


def _scaled(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(total * int(value[:-1]) / 100)
    return int(value)


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


class Store:
    """Objects by resource, namespace and name, with etcd-like global resourceVersions."""

    def __init__(self, table: ResourceTable, *, history_limit: int, now: Callable[[], float]) -> None:
        self.table = table
        self.now = now
        self.rv = 0
        self.history: deque[Change] = deque()
        self.history_limit = history_limit
        self.horizon = 0  # a watch may resume from any resourceVersion >= horizon
        self.watches: set[Watch] = set()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}

    # --- reads ------------------------------------------------------------------------------------

    def _bucket(self, rtype: ResourceType) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault(rtype.key, {})

    def raw(self, rtype: ResourceType, namespace: str, name: str) -> Obj | None:
        """The stored object itself (do not mutate), or None."""
        return self._bucket(rtype).get((namespace, name))

    def present(self, rtype: ResourceType, obj: Obj) -> Obj:
        """The object as clients see it: PodDisruptionBudget status computed unless pinned."""
        if rtype.key != PDBS.key or "disruptionsAllowed" in (obj.get("status") or {}):
            return obj
        return {**obj, "status": self.pdb_status(obj)}

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        """A copy of one object; 404 if missing."""
        obj = self.raw(rtype, namespace, name)
        if obj is None:
            raise not_found(rtype, name)
        return copy.deepcopy(self.present(rtype, obj))

    def select(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector = (),
        fields: FieldSelector = (),
    ) -> list[Obj]:
        """Stored objects (not copies) matching, ordered by namespace and name."""
        probe = Watch(rtype, namespace, labels, fields, False)
        bucket = self._bucket(rtype)
        return [bucket[key] for key in sorted(bucket) if probe.matches(bucket[key])]

    # --- writes -----------------------------------------------------------------------------------

    def _commit(self, kind: str, rtype: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        self.rv += 1
        metadata = meta(obj)
        metadata["resourceVersion"] = str(self.rv)
        key = (metadata.get("namespace", ""), metadata["name"])
        if kind == "DELETED":
            self._bucket(rtype).pop(key, None)
        else:
            self._bucket(rtype)[key] = obj
        change = Change(self.rv, kind, rtype, obj, old)
        if len(self.history) >= self.history_limit:
            self.horizon = self.history.popleft().rv
        self.history.append(change)
        for watch in list(self.watches):
            if watch.rtype.key == rtype.key:
                watch.offer(change)
        return obj

    def create(self, rtype: ResourceType, namespace: str, body: Obj, *, from_api: bool) -> Obj:
        """POST: fill in server-set metadata, 409 if the name is taken."""
        obj = copy.deepcopy(body)
        metadata = meta(obj)
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + secrets.token_hex(3)[:5]
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(
                422,
                f"{rtype.kind} is invalid: metadata.name: Required value: name or generateName is required",
            )
        if rtype.namespaced:
            if metadata.get("namespace") not in (None, namespace):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            if from_api and self.raw(NAMESPACES, "", namespace) is None:
                raise not_found(NAMESPACES, namespace)
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if self.raw(rtype, metadata.get("namespace", ""), name) is not None:
            raise ApiError(
                409,
                f'{rtype.plural} "{name}" already exists',
                "AlreadyExists",
                {"name": name, "kind": rtype.plural},
            )
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=timestamp(self.now()), generation=1)
        for server_set in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            metadata.pop(server_set, None)
        if from_api and rtype.status and not rtype.builtin:
            obj.pop("status", None)  # custom resources take status only through /status
        if rtype.key == PODS.key:
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        if rtype.key == NAMESPACES.key:
            obj.setdefault("status", {}).setdefault("phase", "Active")
        return copy.deepcopy(self._commit("ADDED", rtype, obj, None))

    def replace(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        body: Obj,
        *,
        subresource: str = "",
        from_api: bool = True,
    ) -> Obj:
        """PUT (or a patched object): 409 on a stale resourceVersion; no-ops change nothing."""
        current = self.raw(rtype, namespace, name)
        if current is None:
            raise not_found(rtype, name)
        new = copy.deepcopy(body)
        metadata = meta(new)
        if metadata.get("name", name) != name:
            raise ApiError(
                400,
                f"the name of the object ({metadata.get('name')}) does not match the name on the URL "
                f"({name})",
            )
        wanted_rv = metadata.get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {rtype.plural} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                details={"name": name, "kind": rtype.plural},
            )
        if subresource == "status":
            new = {**copy.deepcopy(current), "status": new.get("status")}
            if new["status"] is None:
                del new["status"]
        elif rtype.status and from_api:
            new.pop("status", None)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        metadata = meta(new)
        for kept in (
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if kept in current["metadata"]:
                metadata[kept] = current["metadata"][kept]
            else:
                metadata.pop(kept, None)
        metadata["name"] = name
        if rtype.namespaced:
            metadata["namespace"] = namespace
        metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        if new == current:
            return copy.deepcopy(self.present(rtype, current))
        if _spec_of(new) != _spec_of(current):
            metadata["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            return copy.deepcopy(self._commit("DELETED", rtype, new, current))
        return copy.deepcopy(self.present(rtype, self._commit("MODIFIED", rtype, new, current)))

    def patch(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str = "",
        from_api: bool = True,
    ) -> Obj:
        """PATCH in the flavour named by `content_type`; a resourceVersion in it is a precondition."""
        current = self.raw(rtype, namespace, name)
        if current is None:
            raise not_found(rtype, name)
        try:
            patched = apply_patch(content_type, copy.deepcopy(current), body, builtin=rtype.builtin)
        except PatchError as exc:
            raise ApiError(exc.code, str(exc)) from None
        if not isinstance(patched, dict):
            raise ApiError(422, "the patch turned the object into a non-object")
        return self.replace(rtype, namespace, name, patched, subresource=subresource, from_api=from_api)

    def delete(self, rtype: ResourceType, namespace: str, name: str, options: Obj | None = None) -> Obj:
        """DELETE: objects with finalizers only get a deletionTimestamp; others go at once."""
        current = self.raw(rtype, namespace, name)
        if current is None:
            raise not_found(rtype, name)
        options = options or {}
        preconditions = options.get("preconditions") or {}
        for key in ("uid", "resourceVersion"):
            if preconditions.get(key) and preconditions[key] != current["metadata"].get(key):
                raise ApiError(
                    409,
                    f"Precondition failed: {key} in precondition: {preconditions[key]}, "
                    f"{key} in object meta: {current['metadata'].get(key)}",
                )
        gone = copy.deepcopy(current)
        metadata = gone["metadata"]
        metadata.setdefault("deletionTimestamp", timestamp(self.now()))
        grace = options.get("gracePeriodSeconds")
        if grace is None and rtype.key == PODS.key:
            grace = (current.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        if grace is not None:
            metadata["deletionGracePeriodSeconds"] = int(grace)
        if metadata.get("finalizers"):
            if "deletionTimestamp" in current["metadata"]:
                return copy.deepcopy(current)
            return copy.deepcopy(self._commit("MODIFIED", rtype, gone, current))
        return copy.deepcopy(self._commit("DELETED", rtype, gone, current))

    # --- watches ----------------------------------------------------------------------------------

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        since: str,
        *,
        bookmarks: bool,
    ) -> Watch:
        """Open a watch: synthetic ADDED for "" / "0", else the history after `since` (410 if compacted)."""
        watch = Watch(rtype, namespace, labels, fields, bookmarks)
        if since in ("", "0"):
            for obj in self.select(rtype, namespace, labels, fields):
                watch.queue.put_nowait(("ADDED", obj))
        else:
            try:
                start = int(since)
            except ValueError:
                raise ApiError(400, f"invalid resource version {since!r}") from None
            if start < self.horizon:
                raise ApiError(410, f"too old resource version: {start} ({self.horizon})", "Expired")
            for change in self.history:
                if change.rv > start and change.rtype.key == rtype.key:
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

    # --- PodDisruptionBudgets and eviction --------------------------------------------------------

    def _selected_pods(self, pdb: Obj) -> list[Obj]:
        namespace = pdb["metadata"].get("namespace", "")
        try:
            selector = label_selector_from_spec((pdb.get("spec") or {}).get("selector"))
        except SelectorError:
            return []
        return [
            pod
            for pod in self.select(PODS, namespace)
            if (pod.get("status") or {}).get("phase") not in _TERMINAL
            and labels_match(selector, pod["metadata"].get("labels") or {})
        ]

    def pdb_status(self, pdb: Obj) -> Obj:
        """What the disruption controller would write: healthy pods against minAvailable/maxUnavailable."""
        pods = self._selected_pods(pdb)
        expected = len(pods)
        healthy = sum(1 for pod in pods if _healthy(pod))
        spec = pdb.get("spec") or {}
        if spec.get("maxUnavailable") is not None:
            desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
        elif spec.get("minAvailable") is not None:
            desired = _scaled(spec["minAvailable"], expected)
        else:
            desired = 0
        allowed = max(0, healthy - desired)
        return {
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "disruptionsAllowed": allowed,
            "conditions": [
                {
                    "type": "DisruptionAllowed",
                    "status": "True" if allowed > 0 else "False",
                    "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
                    "message": "",
                    "lastTransitionTime": pdb["metadata"].get("creationTimestamp"),
                    "observedGeneration": pdb["metadata"].get("generation", 1),
                }
            ],
        }

    def evict(self, namespace: str, name: str, body: Obj) -> None:
        """The Eviction subresource: PDB check for pods that count, then deletion."""
        pod = self.raw(PODS, namespace, name)
        if pod is None:
            raise not_found(PODS, name)
        options = body.get("deleteOptions") or {}
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if phase in (*_TERMINAL, "Pending") or pod["metadata"].get("deletionTimestamp"):
            self.delete(PODS, namespace, name, options)
            return
        labels = pod["metadata"].get("labels") or {}
        budgets = [b for b in self.select(PDBS, namespace) if _selects(b, labels)]
        if len(budgets) > 1:
            raise ApiError(
                500,
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not "
                "support.",
            )
        if budgets:
            budget = budgets[0]
            status = self.present(PDBS, budget)["status"]
            if int(status.get("disruptionsAllowed", 0)) <= 0:
                raise ApiError(
                    429,
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    details={
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {budget['metadata']['name']} needs "
                                f"{status.get('desiredHealthy', 0)} healthy pods and has "
                                f"{status.get('currentHealthy', 0)} currently",
                            }
                        ]
                    },
                )
            if "disruptionsAllowed" in (budget.get("status") or {}):  # pinned: the apiserver decrements it
                pinned = copy.deepcopy(budget)
                pinned["status"]["disruptionsAllowed"] -= 1
                self.replace(PDBS, namespace, budget["metadata"]["name"], pinned, subresource="status")
        self.delete(PODS, namespace, name, options)


def _selects(pdb: Obj, labels: dict[str, str]) -> bool:
    try:
        return labels_match(label_selector_from_spec((pdb.get("spec") or {}).get("selector")), labels)
    except SelectorError:
        return False


def _healthy(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
        return False
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    return ready is None or ready.get("status") == "True"


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
