"""A stand-in for kube-scheduler's binding decisions, as a pure function over plain data.

What it models, from the Kubernetes documentation:
- the scheduling queue: "the scheduler orders pending Pods by their priority", then oldest first
  (https://kubernetes.io/docs/concepts/scheduling-eviction/pod-priority-preemption/, the
  PrioritySort plugin);
- the filter plugins a node must pass
  (https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/ and
  .../taint-and-toleration/): NodeUnschedulable and Ready, TaintToleration (NoSchedule and
  NoExecute taints), NodeAffinity (nodeSelector and required node affinity), NodeResourcesFit
  (requests against allocatable, with the kubelet's default of 110 pods when a node states no pod
  limit) and InterPodAffinity (required pod affinity and anti-affinity in both directions, on any
  topology key). As in the real plugin (kubernetes/kubernetes#91168), the first pod of a group whose
  own labels match its affinity term may go to any node that has the topology key.

It does not score: of the nodes that pass, it takes the first by name. It does not preempt. Pods
that fit nowhere stay pending until something changes and the caller asks again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hpscaler.model import LABEL_HOSTNAME, PODS_RESOURCE, Node, Pod, fits, tolerates_all

DEFAULT_MAX_PODS = 110  # the kubelet's default --max-pods


@dataclass(frozen=True, slots=True)
class Binding:
    """A pending pod bound to a node (`spec.nodeName`), in the order the scheduler decided."""

    pod: str  # namespace/name
    node: str


def bind_pending(pending: Sequence[Pod], nodes: Iterable[Node], bound: Iterable[Pod]) -> list[Binding]:
    """The bindings the scheduler makes now, in order.

    `pending` are the pods waiting for a node, in creation order (the last tie-breaker after priority
    and creation time); `bound` are the pods already on a node (`node_name`), terminating ones
    included: they hold their requests until they are gone. Nothing passed in is changed.
    """
    all_nodes = {n.name: n for n in sorted(nodes, key=lambda n: n.name)}
    state = _ClusterState(all_nodes)
    for pod in bound:
        if pod.node_name in all_nodes:
            state.add(pod, pod.node_name)
    candidates = [n for n in all_nodes.values() if n.ready and not n.unschedulable]
    if not candidates:
        return []
    order = sorted(range(len(pending)), key=lambda i: (-pending[i].priority, pending[i].created, i))
    waiting = [pending[i] for i in order]
    bindings: list[Binding] = []
    while waiting:
        # Binding only uses capacity up, so a shape that fits nowhere stays unplaceable this pass.
        failed: set[object] = set()
        left: list[Pod] = []
        waiting_for_peers = False  # a pod with pod affinity failed: a later binding may let it in
        for pod in waiting:
            shape = _shape(pod)
            target = None if shape in failed else next((n for n in candidates if state.fits(pod, n)), None)
            if target is None:
                failed.add(shape)
                waiting_for_peers = waiting_for_peers or bool(pod.pod_affinity)
                left.append(pod)
                continue
            state.add(pod, target.name)
            bindings.append(Binding(pod.key, target.name))
        if not (waiting_for_peers and len(left) < len(waiting)):
            break
        waiting = left  # the pods just bound may be the peers an affine pod waits for
    return bindings


class _ClusterState:
    """Requests in use, bound pods per node and anti-affine pods, as bindings are decided."""

    def __init__(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes
        self.used: dict[str, dict[str, int]] = {n: {} for n in nodes}
        self.bound: dict[str, list[Pod]] = {n: [] for n in nodes}
        self.anti_bound: list[tuple[Pod, Node]] = []

    def add(self, pod: Pod, node: str) -> None:
        total = self.used[node]
        for name, amount in pod.requests.items():
            total[name] = total.get(name, 0) + amount
        total[PODS_RESOURCE] = total.get(PODS_RESOURCE, 0) + 1
        self.bound[node].append(pod)
        if pod.pod_anti_affinity:
            self.anti_bound.append((pod, self.nodes[node]))

    def fits(self, pod: Pod, node: Node) -> bool:
        if tolerates_all(pod.tolerations, node.taints) is not None:
            return False
        if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
            return False
        if pod.node_affinity and not any(all(r.matches(node.labels) for r in t) for t in pod.node_affinity):
            return False
        allocatable = {PODS_RESOURCE: DEFAULT_MAX_PODS, **node.allocatable}
        node_used = self.used[node.name]
        free = {name: amount - node_used.get(name, 0) for name, amount in allocatable.items()}
        if not fits({**pod.requests, PODS_RESOURCE: 1}, free):
            return False
        return self._affinity_met(pod, node) and not self._anti_affinity_conflict(pod, node)

    def _affinity_met(self, pod: Pod, node: Node) -> bool:
        """Required pod affinity: a matching pod runs in the node's domain."""
        for term in pod.pod_affinity:
            domain = _domain(node, term.topology_key)
            if domain is None:
                return False
            namespaces = term.namespaces or (pod.namespace,)
            matching = [
                name
                for name, others in self.bound.items()
                if any(o.namespace in namespaces and term.selector.matches(o.labels) for o in others)
            ]
            if not matching:
                if not (pod.namespace in namespaces and term.selector.matches(pod.labels)):
                    return False
                continue
            if all(_domain(self.nodes[n], term.topology_key) != domain for n in matching):
                return False
        return True

    def _anti_affinity_conflict(self, pod: Pod, node: Node) -> bool:
        """Required pod anti-affinity in both directions, for any topology key."""
        for term in pod.pod_anti_affinity:
            domain = _domain(node, term.topology_key)
            if domain is None:
                continue
            namespaces = term.namespaces or (pod.namespace,)
            for name, others in self.bound.items():
                if _domain(self.nodes[name], term.topology_key) != domain:
                    continue
                if any(o.namespace in namespaces and term.selector.matches(o.labels) for o in others):
                    return True
        # Pods already placed may refuse the newcomer: the real scheduler checks that direction too.
        for other, other_node in self.anti_bound:
            for term in other.pod_anti_affinity:
                domain = _domain(other_node, term.topology_key)
                if (
                    domain is not None
                    and _domain(node, term.topology_key) == domain
                    and pod.namespace in (term.namespaces or (other.namespace,))
                    and term.selector.matches(pod.labels)
                ):
                    return True
        return False


def _domain(node: Node, topology_key: str) -> str | None:
    value = node.labels.get(topology_key)
    if value is None and topology_key == LABEL_HOSTNAME:
        return node.name
    return value


def _shape(pod: Pod) -> object:
    return (
        pod.namespace,
        tuple(sorted(pod.requests.items())),
        tuple(sorted(pod.labels.items())),
        tuple(sorted(pod.node_selector.items())),
        pod.node_affinity,
        pod.tolerations,
        pod.pod_anti_affinity,
    )
