"""Kubernetes Pod / Node manifests (plain dicts from YAML or API JSON) -> `hpscaler.model` objects.

Only what kube-scheduler and Karpenter read when placing a pod is kept: effective requests, node
selector, required node affinity, tolerations, topology spread, required pod (anti-)affinity,
priority and gang membership. Each problem is a `ManifestError` that names the object, the field
path and a fix. Fields are validated as the API server would, so a file `kubectl apply` rejects is
not silently planned for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from hpscaler.model import (
    LABEL_HOSTNAME,
    PODS_RESOURCE,
    Gang,
    LabelSelector,
    Node,
    Operator,
    Pod,
    PodAffinityTerm,
    Requirement,
    Resources,
    Taint,
    Toleration,
    TopologySpread,
    add_resources,
)
from hpscaler.quantity import QuantityError, parse_resource
from hpscaler.yamlio import YamlInputError, read_documents

GANG_LABEL = "hpscaler.io/gang"
GANG_MIN_MEMBER_ANNOTATION = "hpscaler.io/gang-min-member"
COSCHEDULING_LABEL = "scheduling.x-k8s.io/pod-group"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"

_NODE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
_LABEL_OPERATORS = _NODE_OPERATORS[:4]
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_QUANTITY_FIX = "write a non-negative quantity such as 500m, 2, 1.5Gi or 256M"
# A spread constraint or affinity term without a labelSelector selects no pods in Kubernetes; an empty
# LabelSelector would select every pod, so use a requirement no label value can satisfy.
_SELECT_NOTHING = LabelSelector(match_expressions=(Requirement("hpscaler.io/select-nothing", "In", ()),))
# Controllers that create pods from `spec.template`, and the owner kind their pods carry in a cluster
# (Deployment pods are owned by a ReplicaSet), so synthetic pods look like real ones to consolidation.
_WORKLOAD_OWNERS = {
    "Deployment": "ReplicaSet",
    "ReplicaSet": "ReplicaSet",
    "StatefulSet": "StatefulSet",
    "Job": "Job",
}
_KINDS = "Pod, Node, List, PodList, NodeList, DaemonSet, " + ", ".join(_WORKLOAD_OWNERS)
# The apiVersion each built-in kind is served under; a typo (`bacth/v1`, `v2`) is an error, not a guess.
_API_VERSIONS = {
    **dict.fromkeys(("Pod", "Node", "List", "PodList", "NodeList"), "v1"),
    **dict.fromkeys(("DaemonSet", "Deployment", "ReplicaSet", "StatefulSet"), "apps/v1"),
    "Job": "batch/v1",
}
# `plan` and `simulate` build every pod in memory: above this many, the input is a mistake
# (`replicas: 1000000000`), not a cluster. `hpscaler plan --max-pods` raises it.
MAX_PODS = 100_000


class ManifestError(ValueError):
    """A manifest hpscaler cannot use; names the object (kind namespace/name), the field path and the fix."""

    def __init__(self, obj: str, field: str, message: str, fix: str = "", *, source: str = "") -> None:
        self.obj = obj
        self.field = field
        self.message = message
        self.fix = fix
        self.source = source
        super().__init__(self._text())

    def _text(self) -> str:
        text = ": ".join(part for part in (self.source, self.obj, self.field, self.message) if part)
        return f"{text.rstrip('.')}. Fix: {self.fix}" if self.fix else text

    def __str__(self) -> str:
        return self._text()


@dataclass(frozen=True, slots=True)
class _At:
    """Where fields are read from: the object label, the file, and a path prefix for templates."""

    obj: str
    source: str = ""
    prefix: str = ""

    def error(self, path: str, message: str, fix: str = "") -> ManifestError:
        return ManifestError(self.obj, self.prefix + path, message, fix, source=self.source)


# --- typed field access; None counts as absent because API JSON writes nulls for unset fields ---


def _map(at: _At, value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise at.error(path, f"expected a mapping, got {type(value).__name__} {value!r}")
    return value


def _seq(at: _At, value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise at.error(path, f"expected a list, got {type(value).__name__} {value!r}")
    return list(value)


def _text(at: _At, value: Any, path: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise at.error(path, f"expected a string, got {value!r}", f'quote the value: "{value}"')
    return value


def _integer(at: _At, value: Any, path: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise at.error(path, f"expected an integer, got {value!r}", "write a whole number without quotes")
    return value


def _strings(at: _At, value: Any, path: str) -> dict[str, str]:
    # Label and annotation values are strings in the API; YAML turns `version: 1` into an int.
    return {key: _text(at, item, f"{path}[{key}]") for key, item in _map(at, value, path).items()}


def _key(path: str, name: str) -> str:
    return f"{path}[{name}]" if "." in name or "/" in name else f"{path}.{name}"


def _timestamp(at: _At, value: Any, path: str) -> float:
    if value is None:
        return 0.0
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if not isinstance(moment, datetime):
        raise at.error(path, f"{value!r} is not an RFC 3339 timestamp", "write it like 2024-05-01T12:00:00Z")
    if moment.tzinfo is None:  # YAML timestamps without an offset are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _label(kind: str, meta: Mapping[str, Any], where: str, namespaced: bool = True) -> str:
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return f"{kind} ({where})" if where else f"{kind} <unnamed>"
    if not namespaced:
        return f"{kind} {name}"
    namespace = meta.get("namespace")
    return f"{kind} {namespace if isinstance(namespace, str) and namespace else 'default'}/{name}"


def _quantities(at: _At, value: Any, path: str) -> Resources:
    amounts: Resources = {}
    for name, raw in _map(at, value, path).items():
        try:
            amounts[name] = parse_resource(name, raw)
        except QuantityError as exc:
            raise at.error(_key(path, name), str(exc), _QUANTITY_FIX) from None
    return amounts


# --- pods ---


def _container_requests(at: _At, container: Mapping[str, Any], path: str) -> Resources:
    """A container's (or the pod-level `spec.resources`) requests after Kubernetes defaulting."""
    resources = _map(at, container.get("resources"), f"{path}.resources")
    requests = _quantities(at, resources.get("requests"), f"{path}.resources.requests")
    limits = _quantities(at, resources.get("limits"), f"{path}.resources.limits")
    for name, limit in limits.items():
        # The API server defaults a missing request to the limit.
        requests.setdefault(name, limit)
        if requests[name] > limit:
            raise at.error(
                _key(f"{path}.resources.requests", name),
                "the request is larger than the limit",
                "lower the request or raise the limit; the API server rejects this pod",
            )
    return requests


def _raise_to(total: Resources, other: Mapping[str, int]) -> None:
    for name, amount in other.items():
        total[name] = max(total.get(name, 0), amount)


def _pod_requests(at: _At, spec: Mapping[str, Any]) -> Resources:
    """Effective pod requests, as kube-scheduler's `resource.PodRequests` computes them."""
    containers = _seq(at, spec.get("containers"), "spec.containers")
    if not containers:
        raise at.error("spec.containers", "a pod needs at least one container", "add spec.containers")
    requests: Resources = {}
    for i, container in enumerate(containers):
        path = f"spec.containers[{i}]"
        add_resources(requests, _container_requests(at, _map(at, container, path), path))
    # Init containers run one at a time before the app containers, so the pod needs the largest of
    # them, not their sum. Sidecars (restartPolicy Always) keep running: they add to the app
    # containers and to every init container that starts after them.
    init_peak: Resources = {}
    sidecars: Resources = {}
    for i, raw in enumerate(_seq(at, spec.get("initContainers"), "spec.initContainers")):
        path = f"spec.initContainers[{i}]"
        container = _map(at, raw, path)
        own = _container_requests(at, container, path)
        if container.get("restartPolicy") == "Always":
            add_resources(requests, own)
            add_resources(sidecars, own)
            _raise_to(init_peak, sidecars)
        else:
            running = dict(sidecars)
            add_resources(running, own)
            _raise_to(init_peak, running)
    _raise_to(requests, init_peak)
    # Pod-level resources (KEP-2837) replace the container sum for the resources they name.
    requests.update(_container_requests(at, spec, "spec"))
    add_resources(requests, _quantities(at, spec.get("overhead"), "spec.overhead"))
    # The scheduler counts the pod slot itself.
    return {name: amount for name, amount in requests.items() if amount > 0 and name != PODS_RESOURCE}


def _requirement(at: _At, value: Any, path: str, operators: tuple[str, ...]) -> Requirement:
    expr = _map(at, value, path)
    key = _text(at, expr.get("key"), f"{path}.key")
    if not key:
        raise at.error(f"{path}.key", "is required", "name the label key the expression tests")
    operator = expr.get("operator")
    if operator not in operators:
        raise at.error(
            f"{path}.operator", f"{operator!r} is not a valid operator", f"use one of {', '.join(operators)}"
        )
    values = tuple(
        _text(at, v, f"{path}.values[{i}]")
        for i, v in enumerate(_seq(at, expr.get("values"), f"{path}.values"))
    )
    if operator in ("In", "NotIn") and not values:
        raise at.error(
            f"{path}.values", f"operator {operator} needs at least one value", "list the label values"
        )
    if operator in ("Exists", "DoesNotExist") and values:
        raise at.error(f"{path}.values", f"operator {operator} takes no values", "remove values")
    if operator in ("Gt", "Lt") and (len(values) != 1 or not _is_integer(values[0])):
        raise at.error(
            f"{path}.values",
            f"operator {operator} needs exactly one integer value",
            'write e.g. values: ["4"]',
        )
    return Requirement(key, cast(Operator, operator), values)


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _selector(at: _At, owner: Mapping[str, Any], path: str, labels: Mapping[str, str]) -> LabelSelector:
    """The `labelSelector` of a spread constraint or affinity term at `path`.

    `matchLabelKeys` / `mismatchLabelKeys` add `key In/NotIn (the pod's own value)`, as Kubernetes does.
    """
    if owner.get("labelSelector") is None:
        return _SELECT_NOTHING
    raw = _map(at, owner["labelSelector"], f"{path}.labelSelector")
    match_labels = _strings(at, raw.get("matchLabels"), f"{path}.labelSelector.matchLabels")
    expr_path = f"{path}.labelSelector.matchExpressions"
    expressions = [
        _requirement(at, expr, f"{expr_path}[{i}]", _LABEL_OPERATORS)
        for i, expr in enumerate(_seq(at, raw.get("matchExpressions"), expr_path))
    ]
    modes: tuple[tuple[str, Operator], ...] = (("matchLabelKeys", "In"), ("mismatchLabelKeys", "NotIn"))
    for field, operator in modes:
        for i, raw_key in enumerate(_seq(at, owner.get(field), f"{path}.{field}")):
            key = _text(at, raw_key, f"{path}.{field}[{i}]")
            if key in labels:
                expressions.append(Requirement(key, operator, (labels[key],)))
    return LabelSelector(tuple(sorted(match_labels.items())), tuple(expressions))


def _node_term(at: _At, term: Mapping[str, Any], tpath: str) -> tuple[Requirement, ...]:
    """One nodeSelectorTerm: its matchExpressions and matchFields, ANDed."""
    reqs = [
        _requirement(at, e, f"{tpath}.matchExpressions[{j}]", _NODE_OPERATORS)
        for j, e in enumerate(_seq(at, term.get("matchExpressions"), f"{tpath}.matchExpressions"))
    ]
    for j, raw_field in enumerate(_seq(at, term.get("matchFields"), f"{tpath}.matchFields")):
        fpath = f"{tpath}.matchFields[{j}]"
        req = _requirement(at, raw_field, fpath, ("In", "NotIn"))
        if req.key != "metadata.name":
            raise at.error(f"{fpath}.key", f"{req.key!r} is not a supported field", "use metadata.name")
        # Node names equal their hostname label on EKS / HyperPod nodes.
        reqs.append(Requirement(LABEL_HOSTNAME, req.operator, req.values))
    return tuple(reqs)


def _weight(at: _At, item: Mapping[str, Any], path: str) -> int:
    weight = _integer(at, item.get("weight"), f"{path}.weight", 0)
    if not 1 <= weight <= 100:
        raise at.error(f"{path}.weight", f"must be from 1 to 100, got {weight}", "set weight: 1 to 100")
    return weight


def _preferred_node_affinity(
    at: _At, affinity: Mapping[str, Any]
) -> tuple[tuple[int, tuple[Requirement, ...]], ...]:
    """Weighted preferred node terms (Karpenter tries them as requirements, heaviest first)."""
    path = "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution"
    node_affinity = _map(at, affinity.get("nodeAffinity"), "spec.affinity.nodeAffinity")
    terms = []
    for i, raw in enumerate(
        _seq(at, node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution"), path)
    ):
        item = _map(at, raw, f"{path}[{i}]")
        term = _node_term(
            at, _map(at, item.get("preference"), f"{path}[{i}].preference"), f"{path}[{i}].preference"
        )
        if term:  # an empty preference matches every node: nothing to prefer
            terms.append((_weight(at, item, f"{path}[{i}]"), term))
    return tuple(terms)


def _node_affinity(at: _At, affinity: Mapping[str, Any]) -> tuple[tuple[Requirement, ...], ...]:
    path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    node_affinity = _map(at, affinity.get("nodeAffinity"), "spec.affinity.nodeAffinity")
    required = _map(at, node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), path)
    if not required:
        return ()
    raw_terms = _seq(at, required.get("nodeSelectorTerms"), f"{path}.nodeSelectorTerms")
    terms = []
    for i, raw in enumerate(raw_terms):
        tpath = f"{path}.nodeSelectorTerms[{i}]"
        reqs = _node_term(at, _map(at, raw, tpath), tpath)
        # An empty term matches no node, so it adds nothing to the ORed terms.
        if reqs:
            terms.append(reqs)
    if not terms:
        raise at.error(
            f"{path}.nodeSelectorTerms",
            "no term has an expression, so no node matches",
            "add matchExpressions",
        )
    return tuple(terms)


def _spreads(at: _At, spec: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[TopologySpread, ...]:
    spreads = []
    for i, raw in enumerate(
        _seq(at, spec.get("topologySpreadConstraints"), "spec.topologySpreadConstraints")
    ):
        path = f"spec.topologySpreadConstraints[{i}]"
        item = _map(at, raw, path)
        key = _text(at, item.get("topologyKey"), f"{path}.topologyKey")
        if not key:
            raise at.error(f"{path}.topologyKey", "is required", "e.g. topology.kubernetes.io/zone")
        max_skew = _integer(at, item.get("maxSkew"), f"{path}.maxSkew", 0)
        if max_skew < 1:
            raise at.error(f"{path}.maxSkew", f"must be at least 1, got {max_skew}", "set maxSkew: 1 or more")
        when = item.get("whenUnsatisfiable")
        if when not in ("DoNotSchedule", "ScheduleAnyway"):
            raise at.error(
                f"{path}.whenUnsatisfiable", f"{when!r} is not valid", "use DoNotSchedule or ScheduleAnyway"
            )
        min_domains = _integer(at, item.get("minDomains"), f"{path}.minDomains", 1)
        if min_domains < 1:
            raise at.error(
                f"{path}.minDomains", f"must be at least 1, got {min_domains}", "remove it or set 1 or more"
            )
        selector = _selector(at, item, path, labels)
        policies = []
        for name, default in (("nodeAffinityPolicy", "Honor"), ("nodeTaintsPolicy", "Ignore")):
            policy = item.get(name, default)
            if policy not in ("Honor", "Ignore"):
                raise at.error(f"{path}.{name}", f"{policy!r} is not valid", "use Honor or Ignore")
            policies.append(policy)
        spreads.append(TopologySpread(key, max_skew, when, selector, min_domains, policies[0], policies[1]))
    return tuple(spreads)


def _affinity_term(
    at: _At, term: Mapping[str, Any], tpath: str, namespace: str, labels: Mapping[str, str]
) -> PodAffinityTerm:
    # namespaceSelector cannot be resolved without the cluster's Namespace objects, so only the
    # listed namespaces count.
    key = _text(at, term.get("topologyKey"), f"{tpath}.topologyKey")
    if not key:
        raise at.error(
            f"{tpath}.topologyKey",
            "is required",
            "e.g. kubernetes.io/hostname or topology.kubernetes.io/zone",
        )
    selector = _selector(at, term, tpath, labels)
    namespaces = tuple(
        _text(at, n, f"{tpath}.namespaces[{j}]")
        for j, n in enumerate(_seq(at, term.get("namespaces"), f"{tpath}.namespaces"))
    )
    return PodAffinityTerm(key, selector, namespaces or (namespace,))


def _affinity_terms(
    at: _At, affinity: Mapping[str, Any], kind: str, namespace: str, labels: Mapping[str, str]
) -> tuple[PodAffinityTerm, ...]:
    path = f"spec.affinity.{kind}.requiredDuringSchedulingIgnoredDuringExecution"
    section = _map(at, affinity.get(kind), f"spec.affinity.{kind}")
    return tuple(
        _affinity_term(at, _map(at, raw, f"{path}[{i}]"), f"{path}[{i}]", namespace, labels)
        for i, raw in enumerate(_seq(at, section.get("requiredDuringSchedulingIgnoredDuringExecution"), path))
    )


def _preferred_affinity_terms(
    at: _At, affinity: Mapping[str, Any], kind: str, namespace: str, labels: Mapping[str, str]
) -> tuple[tuple[int, PodAffinityTerm], ...]:
    """Weighted preferred pod (anti-)affinity terms (tried as requirements first, then relaxed)."""
    path = f"spec.affinity.{kind}.preferredDuringSchedulingIgnoredDuringExecution"
    section = _map(at, affinity.get(kind), f"spec.affinity.{kind}")
    terms = []
    for i, raw in enumerate(_seq(at, section.get("preferredDuringSchedulingIgnoredDuringExecution"), path)):
        item = _map(at, raw, f"{path}[{i}]")
        tpath = f"{path}[{i}].podAffinityTerm"
        term = _affinity_term(at, _map(at, item.get("podAffinityTerm"), tpath), tpath, namespace, labels)
        terms.append((_weight(at, item, f"{path}[{i}]"), term))
    return tuple(terms)


def _tolerations(at: _At, spec: Mapping[str, Any]) -> tuple[Toleration, ...]:
    tolerations = []
    for i, raw in enumerate(_seq(at, spec.get("tolerations"), "spec.tolerations")):
        path = f"spec.tolerations[{i}]"
        item = _map(at, raw, path)
        key = _text(at, item.get("key"), f"{path}.key")
        operator = _text(at, item.get("operator"), f"{path}.operator") or "Equal"
        value = _text(at, item.get("value"), f"{path}.value")
        effect = _text(at, item.get("effect"), f"{path}.effect")
        if operator not in ("Equal", "Exists"):
            raise at.error(f"{path}.operator", f"{operator!r} is not valid", "use Equal or Exists")
        if effect and effect not in _EFFECTS:
            raise at.error(
                f"{path}.effect", f"{effect!r} is not valid", f"use {', '.join(_EFFECTS)} or leave it empty"
            )
        if operator == "Exists" and value:
            raise at.error(
                f"{path}.value", "must be empty when operator is Exists", "remove value or use Equal"
            )
        if not key and operator == "Equal":
            raise at.error(
                f"{path}.operator", "an empty key needs operator Exists", "set a key or operator: Exists"
            )
        tolerations.append(Toleration(key, "Exists" if operator == "Exists" else "Equal", value, effect))
    return tuple(tolerations)


def _gang(at: _At, namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str]) -> Gang | None:
    """Gang membership from the first convention the pod uses; min_member 0 means "all in the input"."""
    conventions = (
        (labels.get(GANG_LABEL), GANG_MIN_MEMBER_ANNOTATION),
        (labels.get(COSCHEDULING_LABEL), ""),  # minMember lives on the PodGroup object
        (labels.get(KUEUE_GROUP_LABEL), KUEUE_COUNT_ANNOTATION),
        (annotations.get(VOLCANO_GROUP_ANNOTATION), ""),  # minMember lives on the PodGroup object
    )
    for name, count_key in conventions:
        if not name:
            continue
        min_member = 0
        if count_key and count_key in annotations:
            text = annotations[count_key]
            min_member = int(text) if _is_integer(text) else -1
            if min_member < 0:
                raise at.error(
                    f"metadata.annotations[{count_key}]",
                    f"{text!r} is not a non-negative integer",
                    f'write e.g. {count_key}: "8"',
                )
        return Gang(f"{namespace}/{name}", min_member)
    return None


def _pod(at: _At, obj: Mapping[str, Any], name: str, namespace: str) -> Pod:
    meta = _map(at, obj.get("metadata"), "metadata")
    spec = _map(at, obj.get("spec"), "spec")
    status = _map(at, obj.get("status"), "status")
    labels = _strings(at, meta.get("labels"), "metadata.labels")
    annotations = _strings(at, meta.get("annotations"), "metadata.annotations")
    owners = [
        _map(at, o, f"metadata.ownerReferences[{i}]")
        for i, o in enumerate(_seq(at, meta.get("ownerReferences"), "metadata.ownerReferences"))
    ]
    owner = next((o for o in owners if o.get("controller") is True), owners[0] if owners else {})
    affinity = _map(at, spec.get("affinity"), "spec.affinity")
    # priorityClassName needs the PriorityClass objects; the admission controller copies the value
    # into spec.priority, which is what live pods carry.
    return Pod(
        namespace=namespace,
        name=name,
        requests=_pod_requests(at, spec),
        uid=_text(at, meta.get("uid"), "metadata.uid"),
        labels=labels,
        annotations=annotations,
        node_selector=_strings(at, spec.get("nodeSelector"), "spec.nodeSelector"),
        node_affinity=_node_affinity(at, affinity),
        tolerations=_tolerations(at, spec),
        topology_spread=_spreads(at, spec, labels),
        pod_affinity=_affinity_terms(at, affinity, "podAffinity", namespace, labels),
        pod_anti_affinity=_affinity_terms(at, affinity, "podAntiAffinity", namespace, labels),
        preferred_node_affinity=_preferred_node_affinity(at, affinity),
        preferred_pod_affinity=_preferred_affinity_terms(at, affinity, "podAffinity", namespace, labels),
        preferred_pod_anti_affinity=_preferred_affinity_terms(
            at, affinity, "podAntiAffinity", namespace, labels
        ),
        owner_kind=_text(at, owner.get("kind"), "metadata.ownerReferences.kind"),
        owner_name=_text(at, owner.get("name"), "metadata.ownerReferences.name"),
        priority=_integer(at, spec.get("priority"), "spec.priority", 0),
        termination_grace_seconds=_integer(
            at, spec.get("terminationGracePeriodSeconds"), "spec.terminationGracePeriodSeconds", 30
        ),
        gang=_gang(at, namespace, labels, annotations),
        node_name=_text(at, spec.get("nodeName"), "spec.nodeName"),
        phase=_text(at, status.get("phase"), "status.phase", "Pending") or "Pending",
        created=_timestamp(at, meta.get("creationTimestamp"), "metadata.creationTimestamp"),
        terminating=meta.get("deletionTimestamp") is not None,
    )


def _identity(at: _At, meta: Mapping[str, Any]) -> tuple[str, str]:
    name = _text(at, meta.get("name"), "metadata.name")
    if not name:
        raise at.error("metadata.name", "is required", "give the object a metadata.name")
    return name, _text(at, meta.get("namespace"), "metadata.namespace") or "default"


def _check_kind(at: _At, obj: Mapping[str, Any], kind: str) -> None:
    found = obj.get("kind")
    if found is not None and found != kind:
        raise at.error("kind", f"expected {kind}, got {found!r}", f"pass a {kind} manifest")


def pod_from_manifest(obj: Mapping[str, Any], *, source: str = "") -> Pod:
    """Build a `Pod` from a Pod manifest or API object; raises `ManifestError`."""
    return _pod_from(obj, source, "")


def _pod_from(obj: Mapping[str, Any], source: str, where: str) -> Pod:
    meta = obj.get("metadata")
    at = _At(_label("Pod", meta if isinstance(meta, Mapping) else {}, where), source)
    _check_kind(at, obj, "Pod")
    name, namespace = _identity(at, _map(at, meta, "metadata"))
    return _pod(at, obj, name, namespace)


def node_from_manifest(obj: Mapping[str, Any], pods: Iterable[Pod] = (), *, source: str = "") -> Node:
    """Build a `Node` from a Node manifest or API object, with the `pods` bound to it."""
    return _node_from(obj, pods, source, "")


def _node_from(obj: Mapping[str, Any], pods: Iterable[Pod], source: str, where: str) -> Node:
    raw_meta = obj.get("metadata")
    at = _At(
        _label("Node", raw_meta if isinstance(raw_meta, Mapping) else {}, where, namespaced=False), source
    )
    _check_kind(at, obj, "Node")
    meta = _map(at, raw_meta, "metadata")
    spec = _map(at, obj.get("spec"), "spec")
    status = _map(at, obj.get("status"), "status")
    name, _ = _identity(at, meta)
    allocatable = _quantities(at, status.get("allocatable"), "status.allocatable")
    for resource in ("cpu", "memory"):
        if resource not in allocatable:
            raise at.error(
                f"status.allocatable.{resource}",
                "is required",
                "copy status.allocatable from `kubectl get node -o yaml`",
            )
    taints = []
    for i, raw in enumerate(_seq(at, spec.get("taints"), "spec.taints")):
        path = f"spec.taints[{i}]"
        item = _map(at, raw, path)
        key = _text(at, item.get("key"), f"{path}.key")
        if not key:
            raise at.error(f"{path}.key", "is required", "name the taint key")
        effect = item.get("effect")
        if effect not in _EFFECTS:
            raise at.error(f"{path}.effect", f"{effect!r} is not valid", f"use one of {', '.join(_EFFECTS)}")
        taints.append(Taint(key, effect, _text(at, item.get("value"), f"{path}.value")))
    ready = True  # a node without conditions (a hand-written manifest) is taken as Ready
    for i, raw in enumerate(_seq(at, status.get("conditions"), "status.conditions")):
        condition = _map(at, raw, f"status.conditions[{i}]")
        if condition.get("type") == "Ready":
            ready = condition.get("status") == "True"
    unschedulable = spec.get("unschedulable")
    if unschedulable is not None and not isinstance(unschedulable, bool):
        raise at.error(
            "spec.unschedulable",
            f"expected true or false, got {unschedulable!r}",
            "write true or false without quotes",
        )
    return Node(
        name=name,
        labels=_strings(at, meta.get("labels"), "metadata.labels"),
        allocatable=allocatable,
        taints=tuple(taints),
        pods=[p for p in pods if p.node_name == name],
        unschedulable=bool(unschedulable),
        ready=ready,
        annotations=_strings(at, meta.get("annotations"), "metadata.annotations"),
        provider_id=_text(at, spec.get("providerID"), "spec.providerID"),
        created=_timestamp(at, meta.get("creationTimestamp"), "metadata.creationTimestamp"),
    )


# --- whole files ---


def _replica_count(at: _At, kind: str, spec: Mapping[str, Any]) -> int:
    if kind == "DaemonSet":
        return 1
    if kind != "Job":
        count = _integer(at, spec.get("replicas"), "spec.replicas", 1)
    elif spec.get("suspend") is True:
        count = 0  # a suspended Job has no pods
    else:
        # A Job runs `parallelism` pods at once, but never more than it still has completions for.
        count = _integer(at, spec.get("parallelism"), "spec.parallelism", 1)
        completions = spec.get("completions")
        if completions is not None:
            count = min(count, _integer(at, completions, "spec.completions", count))
    if count < 0:
        raise at.error(
            "spec.replicas" if kind != "Job" else "spec.parallelism", "must not be negative", "use 0 or more"
        )
    return count


def _template_pods(
    obj: Mapping[str, Any], kind: str, where: str, source: str, room: int = MAX_PODS
) -> list[Pod]:
    """The pods a workload controller would create from `spec.template`, all pending (at most `room`)."""
    raw_meta = obj.get("metadata")
    at = _At(_label(kind, raw_meta if isinstance(raw_meta, Mapping) else {}, where), source)
    name, namespace = _identity(at, _map(at, raw_meta, "metadata"))
    spec = _map(at, obj.get("spec"), "spec")
    count = _replica_count(at, kind, spec)
    if count > room:
        raise at.error(
            "spec.parallelism" if kind == "Job" else "spec.replicas",
            f"{count} pods would exceed the limit of pods in one plan ({room} left)",
            "lower it, or raise the limit (`hpscaler plan --max-pods`)",
        )
    template = _map(at, spec.get("template"), "spec.template")
    if not template:
        raise at.error("spec.template", "is required", "add the pod template")
    base = replace(
        _pod(replace(at, prefix="spec.template."), template, name, namespace),
        owner_kind=_WORKLOAD_OWNERS.get(kind, kind),
        owner_name=name,
        created=_timestamp(
            at, _map(at, raw_meta, "metadata").get("creationTimestamp"), "metadata.creationTimestamp"
        ),
    )
    if kind == "DaemonSet":
        return [base]
    # Each replica gets its own dicts so that changing one pod's labels cannot change its siblings.
    return [
        replace(
            base,
            name=f"{name}-{i}",
            requests=dict(base.requests),
            labels=dict(base.labels),
            annotations=dict(base.annotations),
            node_selector=dict(base.node_selector),
        )
        for i in range(count)
    ]


@dataclass(slots=True)
class _Loader:
    source: str
    pods: list[Pod]
    nodes: list[tuple[Mapping[str, Any], str]]
    daemonsets: list[Pod]
    max_pods: int = MAX_PODS

    def add(self, doc: Any, where: str, default_kind: str = "") -> None:
        if doc is None:  # an empty YAML document, e.g. after a trailing `---`
            return
        if not isinstance(doc, Mapping):
            raise ManifestError(
                where,
                "",
                f"expected a Kubernetes object (a mapping), got {type(doc).__name__}",
                source=self.source,
            )
        kind = doc.get("kind") or default_kind
        if not isinstance(kind, str):
            kind = repr(kind)  # never a supported kind, and hashable for the lookups below
        self._check_api_version(doc, kind, where)
        if len(self.pods) >= self.max_pods and kind in ("Pod", *_WORKLOAD_OWNERS):
            raise ManifestError(
                where,
                "",
                f"more than {self.max_pods} pods in one plan",
                "split the input, or raise the limit (`hpscaler plan --max-pods`)",
                source=self.source,
            )
        if kind == "Pod":
            self.pods.append(_pod_from(doc, self.source, where))
        elif kind == "Node":
            self.nodes.append((doc, where))
        elif kind in ("List", "PodList", "NodeList"):
            at = _At(f"{kind} ({where})", self.source)
            item_kind = kind.removesuffix("List")  # API list items carry no kind of their own
            for i, item in enumerate(_seq(at, doc.get("items"), "items")):
                self.add(item, f"{where} items[{i}]", item_kind)
        elif kind == "DaemonSet":
            self.daemonsets.extend(_template_pods(doc, kind, where, self.source))
        elif kind in _WORKLOAD_OWNERS:
            room = self.max_pods - len(self.pods)
            self.pods.extend(_template_pods(doc, kind, where, self.source, room))
        else:
            meta = doc.get("metadata")
            label = _label(str(kind or "object"), meta if isinstance(meta, Mapping) else {}, where)
            problem = f"unsupported kind {kind!r}" if kind else "kind is missing"
            raise ManifestError(
                label,
                "kind",
                problem,
                f"remove it from the input; supported kinds: {_KINDS}",
                source=self.source,
            )

    def _check_api_version(self, doc: Mapping[str, Any], kind: str, where: str) -> None:
        expected, found = _API_VERSIONS.get(kind), doc.get("apiVersion")
        if expected is None or found is None:
            return  # an API list's items carry no apiVersion of their own, and hand-written input may not

        if found != expected:
            meta = doc.get("metadata")
            raise ManifestError(
                _label(kind, meta if isinstance(meta, Mapping) else {}, where),
                "apiVersion",
                f"{found!r} is not the apiVersion of a {kind}",
                f"use apiVersion: {expected}",
                source=self.source,
            )

    def finish(self) -> tuple[list[Pod], list[Node], list[Pod]]:
        nodes = [_node_from(doc, self.pods, self.source, where) for doc, where in self.nodes]
        # A repeated name would make the plan count one object twice.
        for label, keys in (("Pod", [p.key for p in self.pods]), ("Node", [n.name for n in nodes])):
            seen: set[str] = set()
            for key in keys:
                if key in seen:
                    fix = f"give each {label.lower()} a unique name"
                    raise ManifestError(
                        f"{label} {key}", "metadata.name", "appears twice", fix, source=self.source
                    )
                seen.add(key)
        return self.pods, nodes, self.daemonsets


def load_manifests(
    docs: Iterable[Mapping[str, Any]], *, source: str, max_pods: int = MAX_PODS
) -> tuple[list[Pod], list[Node], list[Pod]]:
    """Turn parsed manifests into (pods, nodes, daemonset_pods); nodes get the pods bound to them.

    Accepts Pod, Node, List / PodList / NodeList, DaemonSet (one template pod for DaemonSet
    overhead on new nodes) and Deployment / ReplicaSet / StatefulSet / Job (`replicas` or
    `parallelism` pending pods named `<name>-<i>`), at most `max_pods` pods. Raises `ManifestError`.
    """
    loader = _Loader(source, [], [], [], max_pods)
    for index, doc in enumerate(docs, 1):
        loader.add(doc, f"document {index}")
    return loader.finish()


def load_manifest_file(path: Path, *, max_pods: int = MAX_PODS) -> tuple[list[Pod], list[Node], list[Pod]]:
    """Load a multi-document YAML or a JSON file with `load_manifests`; errors name the file."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError("", "", f"cannot read the file: {exc}", "check the path", source=source) from None
    try:
        if path.suffix.lower() == ".json":
            docs: list[tuple[Any, int]] = [(json.loads(text), 1)]
        else:
            docs = [(doc.data, doc.line) for doc in read_documents(text, keep_nodes=False)]
    except json.JSONDecodeError as exc:
        raise ManifestError(
            "",
            f"line {exc.lineno}, column {exc.colno}",
            f"invalid JSON: {exc.msg}",
            "fix the JSON syntax",
            source=source,
        ) from None
    except RecursionError:
        raise ManifestError("", "", "invalid JSON: nested too deeply", "flatten it", source=source) from None
    except YamlInputError as exc:
        where = f"line {exc.line}" + (f", column {exc.column}" if exc.column else "") if exc.line else ""
        raise ManifestError(
            "",
            where,
            f"invalid YAML: {exc.problem}",
            "fix the YAML syntax (indentation, quoting, `key: value`)",
            source=source,
        ) from None
    loader = _Loader(source, [], [], [], max_pods)
    for index, (doc, line) in enumerate(docs, 1):
        loader.add(doc, f"document {index}, line {line}")  # the line helps find it in a long file
    return loader.finish()
