"""The kinds the fake API server serves, and the discovery documents that describe them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_OBJECT_FIELDS = ("metadata.name", "metadata.namespace")
_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One served resource: where it lives, how it is named, and what it supports."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool = False  # has a status subresource
    builtin: bool = True  # strategic merge patch works only on built-in kinds
    fields: tuple[str, ...] = _OBJECT_FIELDS  # fieldSelector allowlist
    short_names: tuple[str, ...] = ()
    extra_subresources: tuple[str, ...] = ()  # e.g. pods/eviction

    @property
    def api_version(self) -> str:
        """ "v1" or "group/version"."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """ "group/version/plural" ("v1/pods" for core kinds): the store's name for the resource."""
        return f"{self.api_version}/{self.plural}"

    @property
    def singular(self) -> str:
        """The lowercase kind."""
        return self.kind.lower()

    def discovery(self) -> list[dict[str, Any]]:
        """APIResourceList entries: the resource and its subresources."""
        entries = [
            {
                "name": self.plural,
                "singularName": self.singular,
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": list(_ALL_VERBS),
                **({"shortNames": list(self.short_names)} if self.short_names else {}),
            }
        ]
        if self.status:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        for sub in self.extra_subresources:
            entries.append(
                {
                    "name": f"{self.plural}/{sub}",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "policy",
                    "version": "v1",
                    "kind": "Eviction",
                    "verbs": ["create"],
                }
            )
        return entries


PODS = ResourceType(
    "",
    "v1",
    "pods",
    "Pod",
    True,
    status=True,
    fields=(
        *_OBJECT_FIELDS,
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    short_names=("po",),
    extra_subresources=("eviction",),
)
NODES = ResourceType(
    "",
    "v1",
    "nodes",
    "Node",
    False,
    status=True,
    fields=(*_OBJECT_FIELDS, "spec.unschedulable"),
    short_names=("no",),
)
NAMESPACES = ResourceType(
    "",
    "v1",
    "namespaces",
    "Namespace",
    False,
    status=True,
    fields=(*_OBJECT_FIELDS, "status.phase"),
    short_names=("ns",),
)
EVENTS = ResourceType(
    "",
    "v1",
    "events",
    "Event",
    True,
    fields=(
        *_OBJECT_FIELDS,
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "type",
    ),
    short_names=("ev",),
)
PDBS = ResourceType(
    "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, status=True, short_names=("pdb",)
)
DAEMONSETS = ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, status=True, short_names=("ds",))
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True)
NODEPOOLS = ResourceType("karpenter.sh", "v1", "nodepools", "NodePool", False, status=True, builtin=False)
NODECLAIMS = ResourceType("karpenter.sh", "v1", "nodeclaims", "NodeClaim", False, status=True, builtin=False)
NODECLASSES = ResourceType(
    "karpenter.sagemaker.amazonaws.com",
    "v1",
    "hyperpodnodeclasses",
    "HyperpodNodeClass",
    False,
    status=True,
    builtin=False,
)

PODTEMPLATES = ResourceType("", "v1", "podtemplates", "PodTemplate", True)
# Cluster Autoscaler's CRD (apis/config/crd/autoscaling.x-k8s.io_provisioningrequests.yaml): namespaced,
# status subresource, short name "provreq".
PROVISIONINGREQUESTS = ResourceType(
    "autoscaling.x-k8s.io",
    "v1",
    "provisioningrequests",
    "ProvisioningRequest",
    True,
    status=True,
    builtin=False,
    short_names=("provreq", "provreqs"),
)

DEFAULT_RESOURCES = (
    PODS,
    NODES,
    NAMESPACES,
    EVENTS,
    PDBS,
    DAEMONSETS,
    LEASES,
    PODTEMPLATES,
    NODEPOOLS,
    NODECLAIMS,
    NODECLASSES,
    PROVISIONINGREQUESTS,
)
CUSTOM_RESOURCES = (NODEPOOLS, NODECLAIMS, NODECLASSES, PROVISIONINGREQUESTS)


class ResourceTable:
    """The installed resource types, found by key, plural, kind or short name."""

    def __init__(self, types: Iterable[ResourceType]) -> None:
        self._types: dict[str, ResourceType] = {}
        for rtype in types:
            self.install(rtype)

    def install(self, rtype: ResourceType) -> None:
        """Serve `rtype` (like applying its CRD)."""
        self._types[rtype.key] = rtype

    def uninstall(self, rtype: ResourceType) -> None:
        """Stop serving `rtype` (like deleting its CRD); its URLs answer 404."""
        self._types.pop(rtype.key, None)

    def __iter__(self) -> Any:
        return iter(list(self._types.values()))

    def at(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at /api(s)/group/version/plural."""
        return self._types.get(f"{group}/{version}/{plural}" if group else f"{version}/{plural}")

    def find(self, name: str) -> ResourceType:
        """By key ("policy/v1/poddisruptionbudgets"), plural, kind, "Kind.group" or short name."""
        if name in self._types:
            return self._types[name]
        for rtype in self._types.values():
            if name in (rtype.plural, rtype.kind, f"{rtype.kind}.{rtype.group}", *rtype.short_names):
                return rtype
        raise KeyError(f"unknown resource {name!r}")

    def for_object(self, obj: dict[str, Any]) -> ResourceType:
        """The type of an object by its apiVersion and kind."""
        api, kind = obj.get("apiVersion"), obj.get("kind")
        for rtype in self._types.values():
            if rtype.api_version == api and rtype.kind == kind:
                return rtype
        raise KeyError(f"no resource serves apiVersion {api!r} kind {kind!r}")

    def groups(self) -> dict[str, list[str]]:
        """Named API groups and their versions (the core group excluded)."""
        found: dict[str, list[str]] = {}
        for rtype in self._types.values():
            if rtype.group and rtype.version not in found.setdefault(rtype.group, []):
                found[rtype.group].append(rtype.version)
        return found

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        """The APIResourceList of one group version, or None if nothing is served there."""
        entries = [
            entry
            for rtype in self._types.values()
            if rtype.group == group and rtype.version == version
            for entry in rtype.discovery()
        ]
        if not entries:
            return None
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": entries,
        }

    def group_document(self, group: str) -> dict[str, Any] | None:
        """The APIGroup document of one named group."""
        versions = self.groups().get(group)
        if not versions:
            return None
        listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": listed,
            "preferredVersion": listed[0],
        }

    def group_list(self) -> dict[str, Any]:
        """The APIGroupList served at /apis."""
        groups = [self.group_document(g) for g in sorted(self.groups())]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in groups if g]}
