"""Plain data that crosses the backend interfaces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from hpscaler.model import CapacityType, InstanceGroup, LabelSelector, Node, NodeClass, NodePool, Pod


class NodeStatus(StrEnum):
    """HyperPod `ClusterInstanceStatus`."""

    PENDING = "Pending"
    RUNNING = "Running"
    FAILURE = "Failure"
    SHUTTING_DOWN = "ShuttingDown"
    SYSTEM_UPDATING = "SystemUpdating"
    DEEP_HEALTH_CHECK = "DeepHealthCheckInProgress"
    NOT_FOUND = "NotFound"


@dataclass(frozen=True, slots=True)
class ClusterDescription:
    """DescribeCluster, reduced: the instance groups with their counts and zones.

    `document` is the DescribeCluster answer itself, with the groups' subnets in DescribeSubnets'
    shape under "Subnets" (what `hpscaler export-cluster` writes and the prerequisites read).
    """

    name: str
    groups: tuple[InstanceGroup, ...]
    provisioning_mode: str = "Continuous"
    document: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HyperPodNode:
    """One ListClusterNodes entry."""

    logical_id: str
    group: str
    status: NodeStatus
    instance_id: str = ""  # empty until an EC2 instance backs the node
    instance_type: str = ""
    zone: str = ""
    capacity_type: CapacityType = CapacityType.ON_DEMAND
    launch_time: float = 0.0
    message: str = ""


@dataclass(frozen=True, slots=True)
class AddedNode:
    """A node BatchAddClusterNodes accepted."""

    logical_id: str
    group: str
    status: NodeStatus


@dataclass(frozen=True, slots=True)
class AddFailure:
    """A group BatchAddClusterNodes refused (ErrorCode as in the API)."""

    group: str
    error_code: str
    count: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class AddResult:
    """The answer to one BatchAddClusterNodes call."""

    successful: tuple[AddedNode, ...] = ()
    failed: tuple[AddFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class DeleteFailure:
    """A node BatchDeleteClusterNodes could not delete."""

    logical_id: str
    code: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """The answer to one BatchDeleteClusterNodes call."""

    deleted: tuple[str, ...] = ()
    failed: tuple[DeleteFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """One ListClusterEvents entry."""

    event_id: str
    time: float
    group: str = ""
    instance_id: str = ""
    level: str = "Info"  # Info, Warn or Error (the API's EventLevel)
    description: str = ""
    resource_type: str = ""  # Cluster, InstanceGroup or Instance
    failure_message: str = ""  # EventMetadata.Instance.FailureMessage, when known


class InterruptionKind(StrEnum):
    """The interruption signals the handler acts on, whatever source delivered them."""

    SPOT_INTERRUPTION = "spot-interruption"
    REBALANCE = "rebalance-recommendation"
    SCHEDULED_CHANGE = "scheduled-change"
    STATE_CHANGE = "state-change"
    CAPACITY_RESERVATION = "capacity-reservation-interruption"
    HYPERPOD_EVENT = "hyperpod-event"


class HyperPodEventKind(StrEnum):
    """What a HyperPod cluster event means to hpscaler (`InterruptionMessage.state` of a hyperpod-event)."""

    INSTANCE_LOST = "instance-lost"  # an instance went away without notice
    CAPACITY_FAILURE = "capacity-failure"  # a launch failed for lack of capacity
    CLUSTER_CHANGED = "cluster-changed"  # instance groups changed (UpdateCluster, scaling)
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class InterruptionMessage:
    """A parsed interruption signal; `receipt` is what acknowledging it needs."""

    message_id: str
    kind: InterruptionKind
    instance_id: str
    time: float
    deadline: float | None = None  # when the instance goes away, if known
    state: str = ""  # state-change: the EC2 state; hyperpod-event: a `HyperPodEventKind`
    receipt: str = ""
    group: str = ""  # the instance group, when the source knows it (HyperPod events)
    zone: str = ""
    source: str = ""  # which source delivered it: sqs, hyperpod-events, agent, taint
    detail: str = ""  # what the source said, for logs and `interruption parse`


EvictionOutcome = Literal["evicted", "blocked", "not-found"]


class WatchKind(StrEnum):
    """What changed in the Kubernetes cache."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    SYNCED = "SYNCED"  # the initial list (or a re-list) is complete


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change to a pod, node or DaemonSet (a DaemonSet travels as its template pod)."""

    kind: WatchKind
    pod: Pod | None = None
    node: Node | None = None
    daemonset: Pod | None = None


@dataclass(slots=True)
class KubeSnapshot:
    """Pods and nodes as the Kubernetes backend lists them."""

    pods: list[Pod] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class JunkMessage:
    """A queue message that is not an interruption signal hpscaler understands."""

    message_id: str
    error: str
    receipt: str = ""


@dataclass(frozen=True, slots=True)
class DisruptionBudgetStatus:
    """A PodDisruptionBudget with the disruptions it allows right now."""

    namespace: str
    name: str
    selector: LabelSelector
    disruptions_allowed: int


@dataclass(frozen=True, slots=True)
class Lease:
    """A coordination.k8s.io/v1 Lease as leader election sees it."""

    holder: str
    renewed: float
    duration_seconds: float
    transitions: int = 0


@dataclass(frozen=True, slots=True)
class ClusterNodeConfig:
    """NodePools and HyperpodNodeClasses as applied to the cluster (`kubectl apply`).

    `present` is False when neither CRD is installed; `invalid` names the objects skipped and why.
    """

    node_pools: tuple[NodePool, ...] = ()
    node_classes: tuple[NodeClass, ...] = ()
    present: bool = False
    invalid: tuple[str, ...] = ()
