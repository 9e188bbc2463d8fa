"""What tells pods and nodes apart for the scheduler: the keys pods and nodes are grouped by."""

from __future__ import annotations

from hpscaler.model import LABEL_HOSTNAME, Node, Pod, Taint


def gang_key(pod: Pod) -> str:
    """`namespace/name` of the pod's gang ("" if none). Parsers qualify the name already (a Kubernetes
    name holds no "/"); a bare name is qualified with the pod's namespace."""
    if pod.gang is None:
        return ""
    name = pod.gang.name
    return name if "/" in name else f"{pod.namespace}/{name}"


def class_signature(pod: Pod, label_keys: frozenset[str]) -> tuple[object, ...]:
    """What tells two pods apart for the scheduler: pods with equal signatures form one class."""
    return (label_signature(pod, label_keys), constraints_signature(pod))


def label_signature(pod: Pod, label_keys: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """The pod's labels that some topology selector reads (`label_keys`), sorted."""
    labels = pod.labels  # called per pending pod: no work for a pod without labels
    return tuple(sorted([item for item in labels.items() if item[0] in label_keys])) if labels else ()


def constraints_signature(pod: Pod) -> tuple[object, ...]:
    """Everything of `class_signature` but the labels: the namespace and every scheduling constraint."""
    selector = pod.node_selector
    return (
        pod.namespace,
        tuple(sorted(selector.items())) if selector else (),
        pod.node_affinity,
        pod.tolerations,
        pod.avoids_prefer_no_schedule,
        pod.topology_spread,
        pod.pod_affinity,
        pod.pod_anti_affinity,
        pod.preferred_pod_anti_affinity,
        gang_key(pod) if pod.gang is not None else "",
    )


def options_signature(pod: Pod) -> tuple[object, ...]:
    """What decides which launch options and nodes a pod is compatible with."""
    return (
        tuple(sorted(pod.node_selector.items())),
        pod.node_affinity,
        pod.tolerations,
        pod.avoids_prefer_no_schedule,
    )


_UNSCHEDULABLE = Taint("node.kubernetes.io/unschedulable", "NoSchedule")


def node_target(node: Node) -> tuple[tuple[object, ...], dict[str, str], tuple[Taint, ...]]:
    """What decides which pods may go onto `node`: a key equal for nodes alike (all labels but the
    hostname, taints, whether it is closed), its labels (with its hostname) and its effective taints
    (a cordoned or not Ready node takes no pods)."""
    labels = dict(node.labels)
    labels.setdefault(LABEL_HOSTNAME, node.name)
    closed = node.unschedulable or not node.ready
    key = (tuple(sorted((k, v) for k, v in labels.items() if k != LABEL_HOSTNAME)), node.taints, closed)
    return key, labels, (*node.taints, _UNSCHEDULABLE) if closed else node.taints
