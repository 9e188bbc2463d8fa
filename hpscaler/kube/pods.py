"""Pod manifests -> `hpscaler.model.Pod`: what kube-scheduler and Karpenter read when placing a pod.

Effective requests (init containers, sidecars, pod-level resources, overhead), node selector,
required and preferred node affinity, tolerations, topology spread, required and preferred pod
(anti-)affinity, priority and gang membership. Fields are validated as the API server would, so a
pod `kubectl apply` rejects is not silently planned for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from hpscaler.kube.fields import (
    TAINT_EFFECTS,
    At,
    field_key,
    is_integer,
    read_int,
    read_list,
    read_map,
    read_quantities,
    read_strings,
    read_text,
    read_time,
)
from hpscaler.kube.jobkinds import controller_gang
from hpscaler.model import (
    LABEL_HOSTNAME,
    PODS_RESOURCE,
    Gang,
    LabelSelector,
    Operator,
    Pod,
    PodAffinityTerm,
    Requirement,
    Resources,
    Toleration,
    TopologySpread,
    add_resources,
)

GANG_LABEL = "hpscaler.io/gang"
GANG_MIN_MEMBER_ANNOTATION = "hpscaler.io/gang-min-member"
COSCHEDULING_LABEL = "scheduling.x-k8s.io/pod-group"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"

_NODE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
_LABEL_OPERATORS = _NODE_OPERATORS[:4]
# A spread constraint or affinity term without a labelSelector selects no pods in Kubernetes; an empty
# LabelSelector would select every pod, so use a requirement no label value can satisfy.
_SELECT_NOTHING = LabelSelector(match_expressions=(Requirement("hpscaler.io/select-nothing", "In", ()),))


def _container_requests(at: At, container: Mapping[str, Any], path: str) -> Resources:
    """A container's (or the pod-level `spec.resources`) requests after Kubernetes defaulting."""
    resources = read_map(at, container.get("resources"), f"{path}.resources")
    requests = read_quantities(at, resources.get("requests"), f"{path}.resources.requests")
    limits = read_quantities(at, resources.get("limits"), f"{path}.resources.limits")
    for name, limit in limits.items():
        # The API server defaults a missing request to the limit.
        requests.setdefault(name, limit)
        if requests[name] > limit:
            raise at.error(
                field_key(f"{path}.resources.requests", name),
                "the request is larger than the limit",
                "lower the request or raise the limit; the API server rejects this pod",
            )
    return requests


def _raise_to(total: Resources, other: Mapping[str, int]) -> None:
    for name, amount in other.items():
        total[name] = max(total.get(name, 0), amount)


def _pod_requests(at: At, spec: Mapping[str, Any]) -> Resources:
    """Effective pod requests, as kube-scheduler's `resource.PodRequests` computes them."""
    containers = read_list(at, spec.get("containers"), "spec.containers")
    if not containers:
        raise at.error("spec.containers", "a pod needs at least one container", "add spec.containers")
    requests: Resources = {}
    for i, container in enumerate(containers):
        path = f"spec.containers[{i}]"
        add_resources(requests, _container_requests(at, read_map(at, container, path), path))
    # Init containers run one at a time before the app containers, so the pod needs the largest of
    # them, not their sum. Sidecars (restartPolicy Always) keep running: they add to the app
    # containers and to every init container that starts after them.
    init_peak: Resources = {}
    sidecars: Resources = {}
    for i, raw in enumerate(read_list(at, spec.get("initContainers"), "spec.initContainers")):
        path = f"spec.initContainers[{i}]"
        container = read_map(at, raw, path)
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
    add_resources(requests, read_quantities(at, spec.get("overhead"), "spec.overhead"))
    # The scheduler counts the pod slot itself.
    return {name: amount for name, amount in requests.items() if amount > 0 and name != PODS_RESOURCE}


def _requirement(at: At, value: Any, path: str, operators: tuple[str, ...]) -> Requirement:
    expr = read_map(at, value, path)
    key = read_text(at, expr.get("key"), f"{path}.key")
    if not key:
        raise at.error(f"{path}.key", "is required", "name the label key the expression tests")
    operator = expr.get("operator")
    if operator not in operators:
        raise at.error(
            f"{path}.operator", f"{operator!r} is not a valid operator", f"use one of {', '.join(operators)}"
        )
    values = tuple(
        read_text(at, v, f"{path}.values[{i}]")
        for i, v in enumerate(read_list(at, expr.get("values"), f"{path}.values"))
    )
    if operator in ("In", "NotIn") and not values:
        raise at.error(
            f"{path}.values", f"operator {operator} needs at least one value", "list the label values"
        )
    if operator in ("Exists", "DoesNotExist") and values:
        raise at.error(f"{path}.values", f"operator {operator} takes no values", "remove values")
    if operator in ("Gt", "Lt") and (len(values) != 1 or not is_integer(values[0])):
        raise at.error(
            f"{path}.values",
            f"operator {operator} needs exactly one integer value",
            'write e.g. values: ["4"]',
        )
    return Requirement(key, cast(Operator, operator), values)


def _selector(at: At, owner: Mapping[str, Any], path: str, labels: Mapping[str, str]) -> LabelSelector:
    """The `labelSelector` of a spread constraint or affinity term at `path`.

    `matchLabelKeys` / `mismatchLabelKeys` add `key In/NotIn (the pod's own value)`, as Kubernetes does.
    """
    if owner.get("labelSelector") is None:
        return _SELECT_NOTHING
    raw = read_map(at, owner["labelSelector"], f"{path}.labelSelector")
    match_labels = read_strings(at, raw.get("matchLabels"), f"{path}.labelSelector.matchLabels")
    expr_path = f"{path}.labelSelector.matchExpressions"
    expressions = [
        _requirement(at, expr, f"{expr_path}[{i}]", _LABEL_OPERATORS)
        for i, expr in enumerate(read_list(at, raw.get("matchExpressions"), expr_path))
    ]
    modes: tuple[tuple[str, Operator], ...] = (("matchLabelKeys", "In"), ("mismatchLabelKeys", "NotIn"))
    for field, operator in modes:
        for i, raw_key in enumerate(read_list(at, owner.get(field), f"{path}.{field}")):
            key = read_text(at, raw_key, f"{path}.{field}[{i}]")
            if key in labels:
                expressions.append(Requirement(key, operator, (labels[key],)))
    return LabelSelector(tuple(sorted(match_labels.items())), tuple(expressions))


def _node_term(at: At, term: Mapping[str, Any], tpath: str) -> tuple[Requirement, ...]:
    """One nodeSelectorTerm: its matchExpressions and matchFields, ANDed."""
    reqs = [
        _requirement(at, e, f"{tpath}.matchExpressions[{j}]", _NODE_OPERATORS)
        for j, e in enumerate(read_list(at, term.get("matchExpressions"), f"{tpath}.matchExpressions"))
    ]
    for j, raw_field in enumerate(read_list(at, term.get("matchFields"), f"{tpath}.matchFields")):
        fpath = f"{tpath}.matchFields[{j}]"
        req = _requirement(at, raw_field, fpath, ("In", "NotIn"))
        if req.key != "metadata.name":
            raise at.error(f"{fpath}.key", f"{req.key!r} is not a supported field", "use metadata.name")
        # Node names equal their hostname label on EKS / HyperPod nodes.
        reqs.append(Requirement(LABEL_HOSTNAME, req.operator, req.values))
    return tuple(reqs)


def _weight(at: At, item: Mapping[str, Any], path: str) -> int:
    weight = read_int(at, item.get("weight"), f"{path}.weight", 0)
    if not 1 <= weight <= 100:
        raise at.error(f"{path}.weight", f"must be from 1 to 100, got {weight}", "set weight: 1 to 100")
    return weight


def _preferred_node_affinity(
    at: At, affinity: Mapping[str, Any]
) -> tuple[tuple[int, tuple[Requirement, ...]], ...]:
    """Weighted preferred node terms (Karpenter tries them as requirements, heaviest first)."""
    path = "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution"
    node_affinity = read_map(at, affinity.get("nodeAffinity"), "spec.affinity.nodeAffinity")
    terms = []
    for i, raw in enumerate(
        read_list(at, node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution"), path)
    ):
        item = read_map(at, raw, f"{path}[{i}]")
        term = _node_term(
            at, read_map(at, item.get("preference"), f"{path}[{i}].preference"), f"{path}[{i}].preference"
        )
        if term:  # an empty preference matches every node: nothing to prefer
            terms.append((_weight(at, item, f"{path}[{i}]"), term))
    return tuple(terms)


def _node_affinity(at: At, affinity: Mapping[str, Any]) -> tuple[tuple[Requirement, ...], ...]:
    path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    node_affinity = read_map(at, affinity.get("nodeAffinity"), "spec.affinity.nodeAffinity")
    required = read_map(at, node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), path)
    if not required:
        return ()
    raw_terms = read_list(at, required.get("nodeSelectorTerms"), f"{path}.nodeSelectorTerms")
    terms = []
    for i, raw in enumerate(raw_terms):
        tpath = f"{path}.nodeSelectorTerms[{i}]"
        reqs = _node_term(at, read_map(at, raw, tpath), tpath)
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


def _spreads(at: At, spec: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[TopologySpread, ...]:
    spreads = []
    for i, raw in enumerate(
        read_list(at, spec.get("topologySpreadConstraints"), "spec.topologySpreadConstraints")
    ):
        path = f"spec.topologySpreadConstraints[{i}]"
        item = read_map(at, raw, path)
        key = read_text(at, item.get("topologyKey"), f"{path}.topologyKey")
        if not key:
            raise at.error(f"{path}.topologyKey", "is required", "e.g. topology.kubernetes.io/zone")
        max_skew = read_int(at, item.get("maxSkew"), f"{path}.maxSkew", 0)
        if max_skew < 1:
            raise at.error(f"{path}.maxSkew", f"must be at least 1, got {max_skew}", "set maxSkew: 1 or more")
        when = item.get("whenUnsatisfiable")
        if when not in ("DoNotSchedule", "ScheduleAnyway"):
            raise at.error(
                f"{path}.whenUnsatisfiable", f"{when!r} is not valid", "use DoNotSchedule or ScheduleAnyway"
            )
        min_domains = read_int(at, item.get("minDomains"), f"{path}.minDomains", 1)
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
    at: At, term: Mapping[str, Any], tpath: str, namespace: str, labels: Mapping[str, str]
) -> PodAffinityTerm:
    # namespaceSelector cannot be resolved without the cluster's Namespace objects, so only the
    # listed namespaces count.
    key = read_text(at, term.get("topologyKey"), f"{tpath}.topologyKey")
    if not key:
        raise at.error(
            f"{tpath}.topologyKey",
            "is required",
            "e.g. kubernetes.io/hostname or topology.kubernetes.io/zone",
        )
    selector = _selector(at, term, tpath, labels)
    namespaces = tuple(
        read_text(at, n, f"{tpath}.namespaces[{j}]")
        for j, n in enumerate(read_list(at, term.get("namespaces"), f"{tpath}.namespaces"))
    )
    return PodAffinityTerm(key, selector, namespaces or (namespace,))


def _affinity_terms(
    at: At, affinity: Mapping[str, Any], kind: str, namespace: str, labels: Mapping[str, str]
) -> tuple[PodAffinityTerm, ...]:
    path = f"spec.affinity.{kind}.requiredDuringSchedulingIgnoredDuringExecution"
    section = read_map(at, affinity.get(kind), f"spec.affinity.{kind}")
    return tuple(
        _affinity_term(at, read_map(at, raw, f"{path}[{i}]"), f"{path}[{i}]", namespace, labels)
        for i, raw in enumerate(
            read_list(at, section.get("requiredDuringSchedulingIgnoredDuringExecution"), path)
        )
    )


def _preferred_affinity_terms(
    at: At, affinity: Mapping[str, Any], kind: str, namespace: str, labels: Mapping[str, str]
) -> tuple[tuple[int, PodAffinityTerm], ...]:
    """Weighted preferred pod (anti-)affinity terms (tried as requirements first, then relaxed)."""
    path = f"spec.affinity.{kind}.preferredDuringSchedulingIgnoredDuringExecution"
    section = read_map(at, affinity.get(kind), f"spec.affinity.{kind}")
    terms = []
    for i, raw in enumerate(
        read_list(at, section.get("preferredDuringSchedulingIgnoredDuringExecution"), path)
    ):
        item = read_map(at, raw, f"{path}[{i}]")
        tpath = f"{path}[{i}].podAffinityTerm"
        term = _affinity_term(at, read_map(at, item.get("podAffinityTerm"), tpath), tpath, namespace, labels)
        terms.append((_weight(at, item, f"{path}[{i}]"), term))
    return tuple(terms)


def _tolerations(at: At, spec: Mapping[str, Any]) -> tuple[Toleration, ...]:
    tolerations = []
    for i, raw in enumerate(read_list(at, spec.get("tolerations"), "spec.tolerations")):
        path = f"spec.tolerations[{i}]"
        item = read_map(at, raw, path)
        key = read_text(at, item.get("key"), f"{path}.key")
        operator = read_text(at, item.get("operator"), f"{path}.operator") or "Equal"
        value = read_text(at, item.get("value"), f"{path}.value")
        effect = read_text(at, item.get("effect"), f"{path}.effect")
        if operator not in ("Equal", "Exists"):
            raise at.error(f"{path}.operator", f"{operator!r} is not valid", "use Equal or Exists")
        if effect and effect not in TAINT_EFFECTS:
            raise at.error(
                f"{path}.effect",
                f"{effect!r} is not valid",
                f"use {', '.join(TAINT_EFFECTS)} or leave it empty",
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


def _gang(at: At, namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str]) -> Gang | None:
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
            min_member = int(text) if is_integer(text) else -1
            if min_member < 0:
                raise at.error(
                    f"metadata.annotations[{count_key}]",
                    f"{text!r} is not a non-negative integer",
                    f'write e.g. {count_key}: "8"',
                )
        return Gang(f"{namespace}/{name}", min_member)
    found = controller_gang(labels, annotations)  # PyTorchJob, JobSet, LeaderWorkerSet pods
    return Gang(f"{namespace}/{found[0]}", found[1]) if found is not None else None


def pod_from_object(at: At, obj: Mapping[str, Any], name: str, namespace: str) -> Pod:
    """The `Pod` of a Pod manifest (or a pod template, with `at.prefix` set) named `namespace/name`."""
    meta = read_map(at, obj.get("metadata"), "metadata")
    spec = read_map(at, obj.get("spec"), "spec")
    status = read_map(at, obj.get("status"), "status")
    labels = read_strings(at, meta.get("labels"), "metadata.labels")
    annotations = read_strings(at, meta.get("annotations"), "metadata.annotations")
    owners = [
        read_map(at, o, f"metadata.ownerReferences[{i}]")
        for i, o in enumerate(read_list(at, meta.get("ownerReferences"), "metadata.ownerReferences"))
    ]
    owner = next((o for o in owners if o.get("controller") is True), owners[0] if owners else {})
    affinity = read_map(at, spec.get("affinity"), "spec.affinity")
    # priorityClassName needs the PriorityClass objects; the admission controller copies the value
    # into spec.priority, which is what live pods carry.
    return Pod(
        namespace=namespace,
        name=name,
        requests=_pod_requests(at, spec),
        uid=read_text(at, meta.get("uid"), "metadata.uid"),
        labels=labels,
        annotations=annotations,
        node_selector=read_strings(at, spec.get("nodeSelector"), "spec.nodeSelector"),
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
        owner_kind=read_text(at, owner.get("kind"), "metadata.ownerReferences.kind"),
        owner_name=read_text(at, owner.get("name"), "metadata.ownerReferences.name"),
        priority=read_int(at, spec.get("priority"), "spec.priority", 0),
        termination_grace_seconds=read_int(
            at, spec.get("terminationGracePeriodSeconds"), "spec.terminationGracePeriodSeconds", 30
        ),
        gang=_gang(at, namespace, labels, annotations),
        node_name=read_text(at, spec.get("nodeName"), "spec.nodeName"),
        phase=read_text(at, status.get("phase"), "status.phase", "Pending") or "Pending",
        created=read_time(at, meta.get("creationTimestamp"), "metadata.creationTimestamp"),
        terminating=meta.get("deletionTimestamp") is not None,
    )
