"""Plain data that the pure core works on: pods, nodes, taints, selectors, instance groups.

Everything here is built from Kubernetes or SageMaker objects by thin adapters
(`hpscaler.kube.objects`, `hpscaler.config`), so the scheduler, consolidation and reconcile decisions
never see a client library type. Resource amounts are integers in canonical units
(see `hpscaler.quantity`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

Resources = dict[str, int]
"""Resource name -> amount in canonical units (CPU in millicores, bytes, counts)."""


def add_resources(total: Resources, extra: Mapping[str, int]) -> None:
    """Add `extra` into `total` in place."""
    for name, amount in extra.items():
        total[name] = total.get(name, 0) + amount


def sum_resources(items: Iterable[Mapping[str, int]]) -> Resources:
    """The sum of several resource maps."""
    total: Resources = {}
    for item in items:
        add_resources(total, item)
    return total


def fits(request: Mapping[str, int], free: Mapping[str, int]) -> bool:
    """Whether `request` fits into `free` on every resource it asks for."""
    return all(amount <= free.get(name, 0) for name, amount in request.items() if amount > 0)


class CapacityType(StrEnum):
    """HyperPod instance-group capacity, fixed when the group is created."""

    SPOT = "spot"
    ON_DEMAND = "on-demand"


Operator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]


@dataclass(frozen=True, slots=True)
class Requirement:
    """One node-selector requirement (`key operator values`), as in NodePool and node affinity."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a node with `labels` satisfies this requirement."""
        value = labels.get(self.key)
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        if self.operator == "Exists":
            return value is not None
        if self.operator == "DoesNotExist":
            return value is None
        if value is None:
            return False
        try:
            number = int(value)
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if self.operator == "Gt" else number < bound


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A Kubernetes label selector: matchLabels ANDed with matchExpressions."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with `labels` is selected."""
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )


TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


@dataclass(frozen=True, slots=True)
class Taint:
    """A node taint."""

    key: str
    effect: TaintEffect
    value: str = ""


@dataclass(frozen=True, slots=True)
class Toleration:
    """A pod toleration."""

    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        """Kubernetes' ToleratesTaint: empty key with Exists tolerates everything."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return bool(self.key) and self.value == taint.value


def tolerates_all(
    tolerations: Iterable[Toleration], taints: Iterable[Taint], *, prefer: bool = False
) -> Taint | None:
    """The first scheduling-relevant taint that no toleration tolerates, or None.

    `prefer`: PreferNoSchedule taints count too (a pod's first try, before its preferences relax)."""
    tolerations = tuple(tolerations)
    for taint in taints:
        if taint.effect == "PreferNoSchedule" and not prefer:
            continue
        if not any(t.tolerates(taint) for t in tolerations):
            return taint
    return None


@dataclass(frozen=True, slots=True)
class TopologySpread:
    """A pod topology spread constraint."""

    topology_key: str
    max_skew: int
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    selector: LabelSelector
    min_domains: int = 1
    # Which nodes' domains count (Kubernetes' defaults): nodes the pod's node affinity and
    # nodeSelector admit, and nodes whatever their taints.
    node_affinity_policy: Literal["Honor", "Ignore"] = "Honor"
    node_taints_policy: Literal["Honor", "Ignore"] = "Ignore"


@dataclass(frozen=True, slots=True)
class PodAffinityTerm:
    """A required pod (anti-)affinity term."""

    topology_key: str
    selector: LabelSelector
    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Gang:
    """Pods that must be placed all-or-nothing, in one availability zone."""

    name: str
    min_member: int


@dataclass(slots=True)
class Pod:
    """The scheduling-relevant part of a Kubernetes Pod."""

    namespace: str
    name: str
    requests: Resources
    uid: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    # Required node affinity: the terms are ORed, the requirements inside a term ANDed.
    node_affinity: tuple[tuple[Requirement, ...], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    topology_spread: tuple[TopologySpread, ...] = ()
    pod_affinity: tuple[PodAffinityTerm, ...] = ()
    pod_anti_affinity: tuple[PodAffinityTerm, ...] = ()
    # Preferences, each with its weight (1-100): tried as requirements first, then relaxed.
    preferred_node_affinity: tuple[tuple[int, tuple[Requirement, ...]], ...] = ()
    preferred_pod_affinity: tuple[tuple[int, PodAffinityTerm], ...] = ()
    preferred_pod_anti_affinity: tuple[tuple[int, PodAffinityTerm], ...] = ()
    # Whether PreferNoSchedule taints keep the pod off a node (set while its preferences are tried).
    avoids_prefer_no_schedule: bool = False
    owner_kind: str = ""
    owner_name: str = ""
    priority: int = 0
    termination_grace_seconds: int = 30
    gang: Gang | None = None
    node_name: str = ""
    phase: str = "Pending"
    created: float = 0.0
    terminating: bool = False  # metadata.deletionTimestamp is set: the pod is already on its way out

    @property
    def key(self) -> str:
        """`namespace/name`, the pod's identity in plans and reports."""
        return f"{self.namespace}/{self.name}"

    @property
    def is_daemonset(self) -> bool:
        """DaemonSet pods follow their node and never trigger provisioning."""
        return self.owner_kind == "DaemonSet"


def as_pending(pod: Pod) -> Pod:
    """A pending, unbound twin of a pod: what must find room elsewhere if its node goes away."""
    return replace(pod, node_name="", phase="Pending")


def is_provisionable(pod: Pod) -> bool:
    """Pods worth provisioning for (Karpenter's IsProvisionable): pending, unbound, not DaemonSet-owned."""
    return (
        pod.phase == "Pending"
        and not pod.node_name
        and not pod.is_daemonset
        and pod.owner_kind != "Node"
        and not pod.terminating
    )


@dataclass(slots=True)
class Node:
    """A Kubernetes node as the scheduler and consolidation see it."""

    name: str
    labels: dict[str, str]
    allocatable: Resources
    taints: tuple[Taint, ...] = ()
    pods: list[Pod] = field(default_factory=list)
    unschedulable: bool = False
    ready: bool = True
    annotations: dict[str, str] = field(default_factory=dict)
    provider_id: str = ""
    created: float = 0.0

    @property
    def instance_group(self) -> str:
        """The HyperPod instance group the node belongs to ("" if unknown)."""
        return self.labels.get(LABEL_INSTANCE_GROUP, "")

    @property
    def zone(self) -> str:
        """The node's availability zone ("" if unknown)."""
        return self.labels.get(LABEL_ZONE, "")

    def used(self) -> Resources:
        """Sum of the requests of the pods bound to the node, counting one pod slot each."""
        total = sum_resources(p.requests for p in self.pods)
        total[PODS_RESOURCE] = total.get(PODS_RESOURCE, 0) + len(self.pods)
        return total

    def free(self) -> Resources:
        """Allocatable minus what the node's pods request (never below zero)."""
        used = self.used()
        return {name: max(0, amount - used.get(name, 0)) for name, amount in self.allocatable.items()}


_INSTANCE_ID = re.compile(r"(i-[0-9a-f]+)$")


def instance_id_of(node: Node) -> str:
    """The EC2 instance id behind a node: the providerID's trailing `i-...`.

    EKS nodes have `aws:///us-west-2a/i-0abc...`; HyperPod nodes register as
    `aws:///usw2-az1/sagemaker/cluster/hyperpod-<cluster id>-i-0abc...`.
    """
    match = _INSTANCE_ID.search(node.provider_id)
    return match.group(1) if match else ""


@dataclass(frozen=True, slots=True)
class InstanceGroup:
    """A HyperPod instance group, as DescribeCluster reports it plus its subnets' zones."""

    name: str
    instance_types: tuple[str, ...]
    capacity_type: CapacityType
    zones: tuple[str, ...]
    zone_ids: tuple[str, ...] = ()
    subnets: tuple[str, ...] = ()
    current_count: int = 0
    target_count: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    taints: tuple[Taint, ...] = ()
    status: str = "InService"
    # (subnet id, zone, zone id) of each subnet, as DescribeSubnets reports them (NodeClass status).
    subnet_zones: tuple[tuple[str, str, str], ...] = ()


PODS_RESOURCE = "pods"
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_ZONE = "topology.kubernetes.io/zone"
LABEL_ZONE_ID = "topology.k8s.aws/zone-id"
LABEL_REGION = "topology.kubernetes.io/region"
LABEL_ARCH = "kubernetes.io/arch"
LABEL_OS = "kubernetes.io/os"
LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_CAPACITY_TYPE = "karpenter.sh/capacity-type"
LABEL_NODEPOOL = "karpenter.sh/nodepool"
LABEL_INSTANCE_GROUP = "sagemaker.amazonaws.com/instance-group-name"
# Set by hpscaler's registration (as Karpenter sets it): the node carries what its plan assumed.
LABEL_REGISTERED = "karpenter.sh/registered"
LABEL_INSTANCE_FAMILY = "karpenter.k8s.aws/instance-family"
LABEL_INSTANCE_CPU = "karpenter.k8s.aws/instance-cpu"
LABEL_INSTANCE_MEMORY = "karpenter.k8s.aws/instance-memory"
LABEL_INSTANCE_GPU_COUNT = "karpenter.k8s.aws/instance-gpu-count"
LABEL_INSTANCE_GPU_NAME = "karpenter.k8s.aws/instance-gpu-name"
ANNOTATION_DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"


@dataclass(frozen=True, slots=True)
class DisruptionBudget:
    """A NodePool disruption budget: at most `nodes` (count or percent) disrupted at once."""

    nodes: str = "10%"
    reasons: tuple[str, ...] = ()
    schedule: str = ""
    duration_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Disruption:
    """NodePool `spec.disruption`."""

    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = "WhenEmptyOrUnderutilized"
    consolidate_after_seconds: float | None = 0.0  # None = "Never"
    budgets: tuple[DisruptionBudget, ...] = (DisruptionBudget(),)


@dataclass(frozen=True, slots=True)
class NodePool:
    """A Karpenter `karpenter.sh/v1` NodePool reduced to what the core decides with."""

    name: str
    node_class: str
    requirements: tuple[Requirement, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    taints: tuple[Taint, ...] = ()
    startup_taints: tuple[Taint, ...] = ()
    limits: tuple[tuple[str, int], ...] = ()  # resource -> canonical amount; "nodes" counts nodes
    weight: int = 0
    disruption: Disruption = Disruption()
    expire_after_seconds: float | None = 720 * 3600.0  # None = "Never"
    termination_grace_seconds: float | None = None
    # hpscaler extension: may consolidation move pods owned by Jobs / training jobs?
    consolidate_running_jobs: bool = False


@dataclass(frozen=True, slots=True)
class NodeClass:
    """A `karpenter.sagemaker.amazonaws.com/v1` HyperpodNodeClass: an ordered list of instance groups."""

    name: str
    instance_groups: tuple[str, ...]
