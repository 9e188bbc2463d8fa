"""Node registration, as Karpenter does it: put on a joining node what its plan assumed. Pure: no I/O.

BatchAddClusterNodes takes no labels, and HyperPod puts on a joining node only its own labels
(instance type, zone, hostname, instance group) and its group's `KubernetesConfig` labels and
taints. The plan, though, placed pods on a node carrying the NodePool template's labels and taints,
`karpenter.sh/nodepool`, `karpenter.sh/capacity-type` and the well-known instance labels. When a node
hpscaler launched joins, the registration patch adds exactly those, in one write, and marks the node
`karpenter.sh/registered=true`. NodePool `startupTaints` are added then too and never again: a
DaemonSet or agent removes them once the node is ready for work (Karpenter's semantics).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hpscaler.backends.types import HyperPodNode
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_INSTANCE_GROUP,
    LABEL_INSTANCE_TYPE,
    LABEL_REGISTERED,
    LABEL_ZONE,
    InstanceGroup,
    Node,
    NodePool,
    Pod,
    Taint,
    instance_id_of,
)
from hpscaler.scheduling.options import template_labels

# Karpenter's `karpenter.sh/unregistered` counterpart. hpscaler does NOT use it: HyperPod reconciles
# a group's KubernetesConfig taints onto its nodes, so a group taint cannot be removed from one node
# (README, "Node registration"). A managed group that carries it keeps every pod off its nodes.
UNREGISTERED_TAINT_KEY = "hpscaler.io/unregistered"


@dataclass(frozen=True, slots=True)
class Registration:
    """The one patch that registers a node: labels to set and taints to add."""

    node: str
    node_pool: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]


def is_registered(node: Node) -> bool:
    """Whether hpscaler (or Karpenter) has registered the node already."""
    return node.labels.get(LABEL_REGISTERED) == "true"


def registration(
    node: Node,
    pool: NodePool,
    group: InstanceGroup,
    spec_labels: Mapping[str, str],
    region: str,
    bound: Iterable[Pod] = (),
    planned: Mapping[str, str] | None = None,
) -> Registration:
    """What registers `node` for `pool`: every label the plan assumed that the node lacks, and the
    NodePool's taints and startup taints the node does not carry yet.

    `spec_labels` are the catalogue's labels of the node's instance type; `planned` the labels the
    plan gave this very node (a value it chose for a key the NodePool leaves open), which win. A node
    that already runs pods (one that joined before hpscaler was there) gets no NoExecute taint: that
    would evict them.
    """
    zone = node.labels.get(LABEL_ZONE) or (group.zones[0] if len(group.zones) == 1 else "")
    zone_ids = dict(zip(group.zones, group.zone_ids, strict=False))
    wanted = template_labels(pool, group, spec_labels, zone, zone_ids.get(zone, ""), region)
    if not zone:
        wanted.pop(LABEL_ZONE, None)
    # The planned labels, except what the joined node says of itself (where HyperPod put it).
    own = (LABEL_ZONE, LABEL_INSTANCE_TYPE, LABEL_INSTANCE_GROUP)
    wanted.update(
        {
            k: v
            for k, v in (planned or {}).items()
            if k != LABEL_HOSTNAME and (k not in own or k not in node.labels)
        }
    )
    wanted[LABEL_REGISTERED] = "true"
    labels = {key: value for key, value in wanted.items() if node.labels.get(key) != value}
    running = any(not p.is_daemonset for p in bound)
    present = {(t.key, t.effect) for t in node.taints}
    taints: list[Taint] = []
    for taint in (*pool.taints, *pool.startup_taints):
        if (taint.key, taint.effect) in present or (running and taint.effect == "NoExecute"):
            continue
        present.add((taint.key, taint.effect))
        taints.append(taint)
    return Registration(node.name, pool.name, labels, tuple(taints))


def instance_type_of(node: Node, launched: HyperPodNode | None = None) -> str:
    """The node's instance type: its label, else what HyperPod reports."""
    return node.labels.get(LABEL_INSTANCE_TYPE) or (launched.instance_type if launched else "")


def match_nodes(launched: Sequence[HyperPodNode], nodes: Iterable[Node]) -> dict[str, Node]:
    """HyperPod node (by NodeLogicalId) -> the Kubernetes node it became.

    Found by instance id in the providerID, else in the node name (HyperPod names nodes
    `hyperpod-i-...`), else by `sagemaker.amazonaws.com/instance-group-name` when a group has exactly
    one joined node not yet matched and one launched node not yet found. A node whose group label
    names another group is never matched.
    """
    by_instance = {n.instance_id: n for n in launched if n.instance_id}
    found: dict[str, Node] = {}
    unmatched: dict[str, list[Node]] = {}
    for node in nodes:
        instance = instance_id_of(node) or _instance_in_name(node.name, by_instance)
        hp = by_instance.get(instance) if instance else None
        group = node.labels.get(LABEL_INSTANCE_GROUP, "")
        if hp is not None and (not group or group == hp.group):
            found[hp.logical_id] = node
        elif group and not instance_id_of(node) and not is_registered(node):
            unmatched.setdefault(group, []).append(node)
    missing: dict[str, list[HyperPodNode]] = {}
    for hp in launched:
        if hp.logical_id not in found:
            missing.setdefault(hp.group, []).append(hp)
    for group, candidates in unmatched.items():
        waiting = missing.get(group, [])
        if len(candidates) == 1 and len(waiting) == 1:
            found[waiting[0].logical_id] = candidates[0]
    return found


def _instance_in_name(name: str, instances: Mapping[str, HyperPodNode]) -> str:
    head, _, tail = name.rpartition("i-")
    candidate = f"i-{tail}" if head or tail else ""
    return candidate if candidate in instances else ""
