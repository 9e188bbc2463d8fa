"""The fake API server's objects: storage by resource, namespace and name, and the REST writes on them.

Everything here is synchronous: one call is one atomic step of the event loop, so a watch's snapshot
and its subscription to later changes can never let an event slip between them. The history and the
open watches are in `apievents`, PodDisruptionBudgets and eviction in `apieviction`.
"""

from __future__ import annotations

import copy
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from hpscaler.testing.apievents import EventLog, Watch
from hpscaler.testing.apieviction import pdb_status
from hpscaler.testing.apiobjects import ApiError, Obj, meta, not_found, timestamp
from hpscaler.testing.apiresources import NAMESPACES, PDBS, PODS, ResourceTable, ResourceType
from hpscaler.testing.patching import PatchError, apply_patch
from hpscaler.testing.selectors import FieldSelector, LabelSelector


class Store:
    """Objects by resource, namespace and name, with etcd-like global resourceVersions."""

    def __init__(self, table: ResourceTable, *, history_limit: int, now: Callable[[], float]) -> None:
        self.table = table
        self.now = now
        self.events = EventLog(history_limit)
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
        return {**obj, "status": pdb_status(self, obj)}

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
        self.events.commit(kind, rtype, obj, old)
        metadata = meta(obj)
        key = (metadata.get("namespace", ""), metadata["name"])
        if kind == "DELETED":
            self._bucket(rtype).pop(key, None)
        else:
            self._bucket(rtype)[key] = obj
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
        return self.events.open(watch, since, lambda: self.select(rtype, namespace, labels, fields))


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
