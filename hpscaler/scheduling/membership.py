"""Which NodePool a node belongs to: its `karpenter.sh/nodepool` label, or else its instance group.

A node hpscaler has not registered yet (or one that joined before hpscaler ran) carries only what
HyperPod puts on it. It still belongs to the NodePool whose NodeClass lists its instance group, so
that NodePool limits count it and consolidation may manage it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from hpscaler.model import LABEL_INSTANCE_GROUP, LABEL_NODEPOOL, Node, NodeClass, NodePool


class PoolMembership:
    """Looks up a node's NodePool (by label first, then by instance group and NodeClass)."""

    def __init__(self, node_pools: Sequence[NodePool], node_classes: Sequence[NodeClass]) -> None:
        self.by_name = {p.name: p for p in node_pools}
        classes = {c.name: c for c in node_classes}
        self.by_group: dict[str, NodePool] = {}
        # The highest-weight NodePool wins a group several NodePools draw from (then the first listed).
        for pool in sorted(node_pools, key=lambda p: -p.weight):
            node_class = classes.get(pool.node_class)
            for group in node_class.instance_groups if node_class is not None else ():
                self.by_group.setdefault(group, pool)

    def pool_of(self, node: Node) -> NodePool | None:
        """The node's NodePool, or None for nodes outside every NodePool."""
        name = node.labels.get(LABEL_NODEPOOL)
        if name is not None:
            return self.by_name.get(name)
        return self.by_group.get(node.labels.get(LABEL_INSTANCE_GROUP, ""))

    def pool_name_of(self, node: Node) -> str:
        """The node's NodePool name ("" outside every NodePool)."""
        pool = self.pool_of(node)
        return pool.name if pool is not None else node.labels.get(LABEL_NODEPOOL, "")


def planning_nodes(nodes: Sequence[Node], membership: PoolMembership) -> list[Node]:
    """Nodes as the scheduler should see them: without their NodePool's startup taints.

    Karpenter's semantics: pods are planned as if startup taints were absent (an agent removes them
    once the node is ready for work), so a node still carrying one is not closed to its pods.
    """
    planned: list[Node] = []
    for node in nodes:
        pool = membership.pool_of(node)
        if pool is not None and pool.startup_taints and any(t in pool.startup_taints for t in node.taints):
            node = replace(node, taints=tuple(t for t in node.taints if t not in pool.startup_taints))
        planned.append(node)
    return planned
