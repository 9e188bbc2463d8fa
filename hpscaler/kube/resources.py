"""NodePools and HyperpodNodeClasses read from the cluster, and their status conditions written back.

Objects are validated with the same document models as configuration files, so a NodePool applied
to the cluster is held to the rules `hpscaler validate` applies. A missing CRD (404) means none of
that kind. Conditions follow Karpenter: NodeClass `InstanceGroupReady`, `SubnetsReady`, `Ready`;
NodePool `ValidationSucceeded`, `NodeClassReady`, `Ready`; `lastTransitionTime` only moves when a
condition's status changes. Status is written through the status subresource with a JSON merge
patch (kubernetes-asyncio would otherwise send a JSON patch, which the API server rejects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from hpscaler.backends.protocols import BackendError
from hpscaler.clock import Clock, SystemClock
from hpscaler.config.documents import HyperpodNodeClassDocument, NodePoolDocument
from hpscaler.config.validate import ConfigIssue, Origin, translate
from hpscaler.kube.convert import JSON, MERGE_PATCH, KubeApiError, call_json, format_time, metadata, retrying
from hpscaler.model import CapacityType, InstanceGroup, NodeClass, NodePool

log = structlog.get_logger("hpscaler.kube")

M = TypeVar("M", NodePool, NodeClass)
Kind = Literal["NodePool", "HyperpodNodeClass"]
Status = Literal["True", "False", "Unknown"]
# kind -> (group, version, plural)
RESOURCES: dict[Kind, tuple[str, str, str]] = {
    "NodePool": ("karpenter.sh", "v1", "nodepools"),
    "HyperpodNodeClass": ("karpenter.sagemaker.amazonaws.com", "v1", "hyperpodnodeclasses"),
}
_MAX_MESSAGE = 1024
_CONFLICT_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Condition:
    """A status condition to publish (lastTransitionTime and observedGeneration are added on write)."""

    type: str
    status: Status
    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class ClusterObject(Generic[M]):
    """One custom resource as read: its model when valid, and what is wrong with it otherwise."""

    kind: Kind
    name: str
    generation: int
    model: M | None
    issues: tuple[ConfigIssue, ...] = ()

    @property
    def errors(self) -> tuple[ConfigIssue, ...]:
        """The issues that make the object unusable."""
        return tuple(i for i in self.issues if i.severity == "error")


@dataclass(frozen=True, slots=True)
class ClusterResources:
    """Everything read in one pass; `crds` names the kinds whose CRD is installed."""

    node_pools: tuple[ClusterObject[NodePool], ...] = ()
    node_classes: tuple[ClusterObject[NodeClass], ...] = ()
    crds: frozenset[str] = frozenset()

    def pools(self) -> tuple[NodePool, ...]:
        """The valid NodePools."""
        return tuple(o.model for o in self.node_pools if o.model is not None)

    def classes(self) -> tuple[NodeClass, ...]:
        """The valid HyperpodNodeClasses."""
        return tuple(o.model for o in self.node_classes if o.model is not None)


def _convert(kind: Kind, model: type[BaseModel], item: JSON) -> tuple[str, int, Any, tuple[ConfigIssue, ...]]:
    meta = metadata(item)
    name = str(meta.get("name", ""))
    origin = Origin("cluster", f"{kind} {name}")
    try:
        doc: Any = model.model_validate(item)
    except ValidationError as exc:
        issues = translate(exc, model, origin)
        if model is NodePoolDocument:
            issues += [origin.problem(p) for p in NodePoolDocument.partial_problems(item)]
        return name, int(meta.get("generation") or 0), None, tuple(issues)
    issues = [origin.problem(p) for p in doc.problems()]
    converted = None
    if not any(i.severity == "error" for i in issues):
        try:
            converted = doc.to_model()
        except ValueError as exc:
            issues.append(origin.issue((), str(exc), "correct the object"))
    return name, int(meta.get("generation") or 0), converted, tuple(issues)


class CustomResources:
    """Reads NodePools and HyperpodNodeClasses and writes their status conditions."""

    def __init__(
        self,
        api_client: Any,
        *,
        clock: Clock | None = None,
        request_timeout_seconds: float = 30.0,
        retry_attempts: int = 4,
        retry_max_wait: float = 5.0,
        retry_base: float = 0.2,
    ) -> None:
        from kubernetes_asyncio import client

        self.api = client.CustomObjectsApi(api_client)
        self.clock = clock or SystemClock()
        self.timeout = request_timeout_seconds
        self._retry = (retry_attempts, retry_max_wait, retry_base)

    async def call(self, operation: str, method: Any, *args: Any, **kwargs: Any) -> JSON:
        """One API call, retried with jittered backoff when it may help."""
        attempts, max_wait, base = self._retry
        result: JSON = await retrying(attempts, max_wait, base=base)(
            call_json, operation, method, *args, seconds=self.timeout, **kwargs
        )
        return result

    async def _list(self, kind: Kind) -> list[JSON] | None:
        """Every object of `kind` (paginated); None when the CRD is not installed."""
        group, version, plural = RESOURCES[kind]
        items: list[JSON] = []
        token = ""
        while True:
            try:
                page = await self.call(
                    f"list {plural}",
                    self.api.list_cluster_custom_object,
                    group,
                    version,
                    plural,
                    limit=500,
                    _continue=token or None,
                )
            except KubeApiError as exc:
                if exc.status == 404:
                    return None
                raise
            items.extend(page.get("items") or [])
            token = str(metadata(page).get("continue") or "")
            if not token:
                return items

    async def read(self) -> ClusterResources:
        """NodePools and HyperpodNodeClasses, validated and converted; invalid objects carry issues."""
        found = {kind: await self._list(kind) for kind in RESOURCES}
        pools: list[ClusterObject[NodePool]] = []
        classes: list[ClusterObject[NodeClass]] = []
        for item in found["NodePool"] or []:
            name, generation, model, issues = _convert("NodePool", NodePoolDocument, item)
            pools.append(ClusterObject("NodePool", name, generation, model, issues))
        for item in found["HyperpodNodeClass"] or []:
            name, generation, model, issues = _convert("HyperpodNodeClass", HyperpodNodeClassDocument, item)
            classes.append(ClusterObject("HyperpodNodeClass", name, generation, model, issues))
        crds = frozenset(kind for kind, items in found.items() if items is not None)
        everything: list[ClusterObject[Any]] = [*pools, *classes]
        for obj in everything:
            if obj.errors:
                log.warning(
                    "kube_custom_resource_invalid", kind=obj.kind, name=obj.name, errors=len(obj.errors)
                )
        return ClusterResources(tuple(pools), tuple(classes), crds)

    async def write_conditions(
        self, kind: Kind, name: str, conditions: Sequence[Condition], extra: Mapping[str, Any] | None = None
    ) -> bool:
        """Merge `conditions` (and the `extra` status fields) into the object's status; False when
        nothing changed (no write)."""
        group, version, plural = RESOURCES[kind]
        for _ in range(_CONFLICT_ATTEMPTS):
            obj = await self.call(
                f"read {plural} {name}", self.api.get_cluster_custom_object, group, version, plural, name
            )
            meta = metadata(obj)
            status = obj.get("status") or {}
            current = list(status.get("conditions") or [])
            merged = merge_conditions(current, conditions, int(meta.get("generation") or 0), self.clock.now())
            fields = dict(extra or {})
            if merged == current and all(status.get(k) == v for k, v in fields.items()):
                return False
            body = {
                "metadata": {"resourceVersion": meta.get("resourceVersion")},
                "status": {"conditions": merged, **fields},
            }
            try:
                await self.call(
                    f"update {plural} {name} status",
                    self.api.patch_cluster_custom_object_status,
                    group,
                    version,
                    plural,
                    name,
                    body,
                    _content_type=MERGE_PATCH,
                )
            except KubeApiError as exc:
                if exc.status == 409:
                    continue
                raise
            log.info(
                "kube_status_written", kind=kind, name=name, conditions={c.type: c.status for c in conditions}
            )
            return True
        raise BackendError(f"{plural} {name} kept changing while its status was written", code="Conflict")

    async def publish(self, resources: ClusterResources, groups: Mapping[str, InstanceGroup] | None) -> int:
        """Compute and write every object's conditions (`groups`: the cluster's instance groups, None if
        unknown); the number of objects whose status changed."""
        changed = 0
        ready: dict[str, bool] = {}
        for node_class in resources.node_classes:
            conditions = node_class_conditions(node_class, groups)
            ready[node_class.name] = conditions[-1].status == "True"
            extra = None
            if node_class.model is not None and groups is not None:
                extra = {"instanceGroups": node_class_groups(node_class.model, groups)}
            changed += await self.write_conditions("HyperpodNodeClass", node_class.name, conditions, extra)
        for pool in resources.node_pools:
            changed += await self.write_conditions("NodePool", pool.name, node_pool_conditions(pool, ready))
        return changed


def node_class_groups(node_class: NodeClass, groups: Mapping[str, InstanceGroup]) -> list[JSON]:
    """NodeClass `status.instanceGroups` as HyperPod's own controller writes it (the autoscaling page
    of the HyperPod Spot documentation): per group its instance types, its subnets with zone and zone
    id, and its capacity, `{"Spot": {}}` or `{"OnDemand": {}}`. Groups the cluster lacks are left out
    (InstanceGroupReady says which)."""
    listed: list[JSON] = []
    for name in node_class.instance_groups:
        group = groups.get(name)
        if group is None:
            continue
        subnets = group.subnet_zones or tuple(
            (subnet, group.zones[0], group.zone_ids[0] if group.zone_ids else "")
            for subnet in group.subnets
            if len(group.zones) == 1
        )
        listed.append(
            {
                "name": name,
                "instanceTypes": list(group.instance_types),
                "subnets": [{"id": s, "zone": z, "zoneId": zone_id} for s, z, zone_id in subnets],
                "capacities": {"Spot" if group.capacity_type is CapacityType.SPOT else "OnDemand": {}},
            }
        )
    return listed


def merge_conditions(
    current: Sequence[Mapping[str, Any]], wanted: Sequence[Condition], generation: int, now: float
) -> list[JSON]:
    """`current` with `wanted` replacing conditions of the same type (other types kept, order kept)."""
    by_type = {c.type: c for c in wanted}
    merged: list[JSON] = []
    for old in current:
        condition = by_type.pop(str(old.get("type")), None)
        merged.append(dict(old) if condition is None else _condition(condition, old, generation, now))
    merged += [_condition(c, None, generation, now) for c in by_type.values()]
    return merged


def _condition(condition: Condition, old: Mapping[str, Any] | None, generation: int, now: float) -> JSON:
    unchanged = old is not None and old.get("status") == condition.status
    return {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message[:_MAX_MESSAGE],
        "lastTransitionTime": old.get("lastTransitionTime") if unchanged and old else format_time(now),
        "observedGeneration": generation,
    }


def _ready(parts: Sequence[Condition], what: str) -> Condition:
    failing = next((c for c in parts if c.status == "False"), None)
    if failing is not None:
        return Condition("Ready", "False", failing.reason, failing.message)
    unknown = next((c for c in parts if c.status == "Unknown"), None)
    if unknown is not None:
        return Condition("Ready", "Unknown", unknown.reason, unknown.message)
    return Condition("Ready", "True", "Ready", f"{what} is ready")


def _issue_text(issues: Sequence[ConfigIssue]) -> str:
    return "; ".join(f"{i.field}: {i.message}" if i.field else i.message for i in issues)


def node_class_conditions(
    obj: ClusterObject[NodeClass], groups: Mapping[str, InstanceGroup] | None
) -> list[Condition]:
    """InstanceGroupReady (every group exists and is InService), SubnetsReady (one zone each), Ready."""
    if obj.model is None:
        reason, message = "ValidationFailed", _issue_text(obj.errors)
        parts = [
            Condition("InstanceGroupReady", "Unknown", reason, message),
            Condition("SubnetsReady", "Unknown", reason, message),
        ]
        return [*parts, Condition("Ready", "False", reason, message)]
    if groups is None:
        parts = [
            Condition(
                t, "Unknown", "InstanceGroupsUnknown", "the cluster's instance groups are not known yet"
            )
            for t in ("InstanceGroupReady", "SubnetsReady")
        ]
        return [*parts, _ready(parts, "the node class")]
    names = obj.model.instance_groups
    missing = [g for g in names if g not in groups]
    stopped = [g for g in names if g in groups and groups[g].status != "InService"]
    if missing:
        group_ready = Condition(
            "InstanceGroupReady",
            "False",
            "InstanceGroupNotFound",
            f"instance groups not found in the cluster: {', '.join(missing)}",
        )
    elif stopped:
        group_ready = Condition(
            "InstanceGroupReady",
            "False",
            "InstanceGroupNotInService",
            ", ".join(f"{g} is {groups[g].status}" for g in stopped),
        )
    else:
        group_ready = Condition("InstanceGroupReady", "True", "InstanceGroupsReady", "")
    present = [groups[g] for g in names if g in groups]
    no_zone = [g.name for g in present if not g.zones]
    spread = [g.name for g in present if len(g.zones) > 1]
    if no_zone:
        subnets = Condition(
            "SubnetsReady", "False", "SubnetsNotFound", f"no subnet with a known zone: {', '.join(no_zone)}"
        )
    elif spread:
        subnets = Condition(
            "SubnetsReady",
            "False",
            "SubnetsSpanZones",
            f"subnets span several availability zones: {', '.join(spread)}",
        )
    else:
        subnets = Condition("SubnetsReady", "True", "SubnetsReady", "")
    return [group_ready, subnets, _ready([group_ready, subnets], "the node class")]


def node_pool_conditions(obj: ClusterObject[NodePool], classes_ready: Mapping[str, bool]) -> list[Condition]:
    """ValidationSucceeded, NodeClassReady (the referenced HyperpodNodeClass is Ready), Ready."""
    if obj.model is None:
        validation = Condition("ValidationSucceeded", "False", "ValidationFailed", _issue_text(obj.errors))
        node_class = Condition("NodeClassReady", "Unknown", "ValidationFailed", "")
    else:
        validation = Condition("ValidationSucceeded", "True", "ValidationSucceeded", "")
        name = obj.model.node_class
        if name not in classes_ready:
            node_class = Condition(
                "NodeClassReady", "False", "NodeClassNotFound", f"HyperpodNodeClass {name} does not exist"
            )
        elif not classes_ready[name]:
            node_class = Condition(
                "NodeClassReady", "False", "NodeClassNotReady", f"HyperpodNodeClass {name} is not ready"
            )
        else:
            node_class = Condition("NodeClassReady", "True", "NodeClassReady", "")
    return [validation, node_class, _ready([validation, node_class], "the node pool")]
