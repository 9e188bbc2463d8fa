"""The daemon's view of the cluster: pods and nodes from the watch, nodes in flight from HyperPod."""

from __future__ import annotations

import copy
from collections.abc import Collection
from dataclasses import dataclass, field

from hpscaler.backends.types import HyperPodNode, NodeStatus, WatchEvent, WatchKind
from hpscaler.model import LABEL_REGISTERED, Node, Pod
from hpscaler.model import instance_id_of as instance_id_of  # re-exported: moved to the model
from hpscaler.model import is_provisionable as is_provisionable


@dataclass(slots=True)
class ClusterCache:
    """Pods and nodes kept current by the Kubernetes watch."""

    pods: dict[str, Pod] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    daemonsets: dict[str, Pod] = field(default_factory=dict)  # namespace/name -> template pod
    synced: bool = False
    generation: int = 0  # bumped on every applied event: decisions over an unchanged cache can be reused
    node_generation: int = 0  # bumped when a node (or the whole list) changes
    _staging: tuple[dict[str, Pod], dict[str, Node], dict[str, Pod]] | None = None
    # When a node's set of pods last changed: consolidateAfter counts from here.
    pod_change: dict[str, float] = field(default_factory=dict)

    def apply(self, event: WatchEvent, now: float) -> bool:
        """Apply one watch event; True if it makes a new provisionable pod appear."""
        self.generation += 1
        if event.kind is WatchKind.SYNCED:
            if self._staging is not None:
                self.pods, self.nodes, self.daemonsets = self._staging
                self._staging = None
                self.node_generation += 1
            self.synced = True
            return any(is_provisionable(p) for p in self.pods.values())
        pods, nodes, daemonsets = (
            (self.pods, self.nodes, self.daemonsets) if self._staging is None else self._staging
        )
        if event.daemonset is not None:
            if event.kind is WatchKind.DELETED:
                daemonsets.pop(event.daemonset.key, None)
            else:
                daemonsets[event.daemonset.key] = event.daemonset
            return False
        if event.pod is not None:
            pod = event.pod
            old = pods.get(pod.key)
            if event.kind is WatchKind.DELETED:
                pods.pop(pod.key, None)
                if old is not None and old.node_name:
                    self.pod_change[old.node_name] = now
                return False
            pods[pod.key] = pod
            if pod.node_name and (old is None or old.node_name != pod.node_name):
                self.pod_change[pod.node_name] = now
            return is_provisionable(pod) and (old is None or not is_provisionable(old))
        if event.node is not None:
            self.node_generation += 1
            if event.kind is WatchKind.DELETED:
                nodes.pop(event.node.name, None)
                self.pod_change.pop(event.node.name, None)
            else:
                nodes[event.node.name] = event.node
                self.pod_change.setdefault(event.node.name, now)
        return False

    def assume_node(self, node: Node) -> None:
        """A change hpscaler wrote to a node, applied before the watch brings it back, so that
        nothing decided meanwhile repeats the write. The watch's version replaces it."""
        if node.name in self.nodes:
            self.nodes[node.name] = node
            self.node_generation += 1

    def begin_relist(self) -> None:
        """A new list is coming: collect it aside and swap it in at SYNCED, so readers never see half."""
        self._staging = ({}, {}, {})

    def snapshot(self) -> tuple[list[Node], list[Pod]]:
        """Nodes with their bound pods attached, and the provisionable pods (deep copies)."""
        nodes = {name: copy.copy(node) for name, node in self.nodes.items()}
        for node in nodes.values():
            node.pods = []
        pending: list[Pod] = []
        for pod in self.pods.values():
            if pod.node_name and pod.node_name in nodes:
                if pod.phase not in ("Succeeded", "Failed"):
                    nodes[pod.node_name].pods.append(pod)
            elif is_provisionable(pod):
                pending.append(pod)
        return list(nodes.values()), pending

    def node_for_instance(self, instance_id: str) -> Node | None:
        """The node backed by an EC2 instance, if it has joined."""
        for node in self.nodes.values():
            if instance_id_of(node) == instance_id:
                return node
        return None


def joined_instance_ids(cache: ClusterCache, managed_groups: Collection[str] = ()) -> set[str]:
    """EC2 instances that are Ready Kubernetes nodes, registered if their group is managed; until
    then they count as capacity in flight."""
    return {
        i
        for i in (
            instance_id_of(n)
            for n in cache.nodes.values()
            if n.ready
            and (n.labels.get(LABEL_REGISTERED) == "true" or n.instance_group not in managed_groups)
        )
        if i
    }


def still_in_flight(node: HyperPodNode, joined: set[str]) -> bool:
    """A HyperPod node that counts as capacity on its way: launching, retrying, or up but not joined."""
    if node.status in (NodeStatus.PENDING, NodeStatus.FAILURE, NodeStatus.DEEP_HEALTH_CHECK):
        return True
    return node.status is NodeStatus.RUNNING and node.instance_id not in joined
