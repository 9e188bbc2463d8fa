"""The workload controllers' decisions: which pod a DaemonSet runs on a node, and the replacement a
ReplicaSet, StatefulSet or Job creates for a pod that went away.

From the Kubernetes documentation:
- DaemonSet (https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/): "ensures that
  all (or some) Nodes run a copy of a Pod"; a node gets the pod when it matches the template's
  nodeSelector and required node affinity and the pod tolerates its taints. The pod lives and dies
  with its node.
- ReplicaSet and StatefulSet (.../replicaset/, .../statefulset/) keep their replica count: a pod
  that is deleted or lost with its node is replaced by a new pod from the same template.
- Job (.../job/): a pod that failed or was deleted is replaced; one that Succeeded is not.
- A bare pod (no owner) and a static pod (owned by its Node) are never replaced.

The fake names a replacement `<original name>-r<n>`; the real controllers add a random suffix.
"""

from __future__ import annotations

from dataclasses import replace

from hpscaler.fake.copies import copy_pod
from hpscaler.model import Node, Pod, tolerates_all

_NODE_BOUND = ("DaemonSet", "Node")  # pods that live and die with their node
_UNCONTROLLED = ("", *_NODE_BOUND)


def dies_with_node(pod: Pod) -> bool:
    """DaemonSet and static pods: removed with their node, never counted as killed workload."""
    return pod.owner_kind in _NODE_BOUND


def is_replaced(pod: Pod) -> bool:
    """Whether a controller creates a replacement when this pod goes away."""
    return pod.owner_kind not in _UNCONTROLLED and pod.phase != "Succeeded"


def daemon_pod(template: Pod, node: Node) -> Pod | None:
    """The pod the DaemonSet of `template` runs on `node`, or None when the node does not match."""
    if tolerates_all(template.tolerations, node.taints) is not None:
        return None
    if any(node.labels.get(k) != v for k, v in template.node_selector.items()):
        return None
    terms = template.node_affinity
    if terms and not any(all(r.matches(node.labels) for r in t) for t in terms):
        return None
    return replace(copy_pod(template), name=f"{template.name}-{node.name}", node_name=node.name)


def daemonset_template(template: Pod) -> Pod:
    """A DaemonSet's pod template, owned by the DaemonSet of the same name."""
    return replace(copy_pod(template), owner_kind="DaemonSet", owner_name=template.name)


class Replacements:
    """Numbers the replacements of each original pod (`<origin>-r1`, `-r2`, ...)."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}  # origin key -> replacements so far

    def replacement(self, template: Pod, origin: str, *, uid: str, now: float) -> Pod:
        """The pod the controller creates from `template` for the lineage `origin` (a pod name)."""
        origin_key = f"{template.namespace}/{origin}"
        count = self._count[origin_key] = self._count.get(origin_key, 0) + 1
        return replace(copy_pod(template), name=f"{origin}-r{count}", uid=uid, created=now)
