"""One small interface per outside system. The daemon only ever talks to these.

Implementations: the in-memory fakes in `hpscaler.fake` (which also power the simulator), the real
AWS and Kubernetes backends, and third-party backends found through the `hpscaler.backends` entry
point group. Every method may raise `BackendError` (see `hpscaler.backends.errors` for what its
subclasses tell the caller to do).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from hpscaler.backends.errors import BackendError as BackendError
from hpscaler.backends.errors import CapacityError as CapacityError
from hpscaler.backends.errors import InvalidRequestError as InvalidRequestError
from hpscaler.backends.errors import NotFoundError as NotFoundError
from hpscaler.backends.types import (
    AddResult,
    ClusterDescription,
    ClusterEvent,
    ClusterNodeConfig,
    DeleteResult,
    DisruptionBudgetStatus,
    EvictionOutcome,
    HyperPodNode,
    InterruptionMessage,
    JunkMessage,
    Lease,
    WatchEvent,
)
from hpscaler.model import InstanceGroup, Pod, Taint
from hpscaler.provisioning.batching import AddRequest
from hpscaler.provisioning.provreq import RequestCondition, RequestSet


@runtime_checkable
class KubernetesCluster(Protocol):
    """The EKS cluster's API server."""

    def watch(self) -> AsyncIterator[WatchEvent]:
        """Pods, nodes and DaemonSets: ADDED for each current object, then SYNCED, then live changes.

        After a lost stream the backend lists again and repeats ADDED... SYNCED; the consumer
        replaces its cache at SYNCED.
        """
        ...

    async def taint_node(self, name: str, add: Sequence[Taint] = (), remove: Sequence[str] = ()) -> None:
        """Add taints and remove taints by key, leaving the node's other taints alone."""
        ...

    async def register_node(self, name: str, labels: Mapping[str, str], taints: Sequence[Taint]) -> None:
        """Registration, in one write: set these labels and add these taints (keeping the others)."""
        ...

    async def annotate_node(self, name: str, annotations: Mapping[str, str | None]) -> None:
        """Set (or with None remove) node annotations."""
        ...

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        """Set (or with None remove) pod annotations."""
        ...

    async def evict_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> EvictionOutcome:
        """Ask the Eviction API to evict a pod; "blocked" when a PodDisruptionBudget forbids it now."""
        ...

    async def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> bool:
        """Delete a pod gracefully without a PodDisruptionBudget check; False if it was gone.

        Only for pods whose node disappears anyway: a graceful stop beats being killed.
        """
        ...

    async def delete_node(self, name: str) -> None:
        """Delete the Node object (its instance is gone or going)."""
        ...

    async def list_disruption_budgets(self) -> Sequence[DisruptionBudgetStatus]:
        """PodDisruptionBudgets with their currently allowed disruptions."""
        ...

    async def record_event(self, pod: Pod, reason: str, message: str, *, warning: bool = False) -> None:
        """Emit a Kubernetes Event on a pod so `kubectl describe pod` shows the decision."""
        ...


@runtime_checkable
class LeaseStore(Protocol):
    """coordination.k8s.io/v1 Leases, for leader election between replicas (`service.leader`).

    Kubernetes backends implement it next to `KubernetesCluster`; `hpscaler run` refuses a
    Kubernetes backend that does not.
    """

    async def acquire_lease(self, name: str, holder: str, duration_seconds: float) -> Lease:
        """Take or renew the named Lease if it is free, expired or ours; return who holds it now."""
        ...


@runtime_checkable
class HyperPodCluster(Protocol):
    """The SageMaker HyperPod cluster (continuous provisioning mode)."""

    async def describe_cluster(self) -> ClusterDescription:
        """Instance groups with their current and target counts."""
        ...

    async def list_nodes(self) -> Sequence[HyperPodNode]:
        """Every node of the cluster, all pages."""
        ...

    async def batch_add_nodes(self, request: AddRequest) -> AddResult:
        """BatchAddClusterNodes for `request` (ClientToken included); the backend builds the body."""
        ...

    async def batch_delete_nodes(
        self, logical_ids: Sequence[str], instance_ids: Sequence[str] = ()
    ) -> DeleteResult:
        """BatchDeleteClusterNodes by NodeLogicalIds, and by instance ids (`NodeIds`) for nodes
        listed without a logical id; the backend splits them into calls of at most 50 ids.
        Never pass an instance id as a logical id: HyperPod would not find it."""
        ...

    async def list_events(self, since: float) -> Sequence[ClusterEvent]:
        """ListClusterEvents newer than `since`."""
        ...


@runtime_checkable
class PlacementScores(Protocol):
    """EC2 Spot placement scores."""

    async def scores(self, instance_types: Sequence[str], target_capacity: int) -> Mapping[str, float]:
        """Score (1-10) per availability zone id for launching `target_capacity` of these types."""
        ...


@runtime_checkable
class InterruptionSource(Protocol):
    """Spot interruption, rebalance, scheduled-change and state-change signals (SQS in production)."""

    async def receive(self) -> Sequence[InterruptionMessage | JunkMessage]:
        """Wait (long poll) for the next batch of messages; may return an empty batch."""
        ...

    async def acknowledge(self, message: InterruptionMessage | JunkMessage) -> None:
        """Delete a message once it has been handled (or is known to be junk)."""
        ...


@runtime_checkable
class SpotPriceSource(Protocol):
    """Current Spot prices (EC2 DescribeSpotPriceHistory in production)."""

    async def prices(self, instance_types: Sequence[str]) -> Mapping[tuple[str, str], float]:
        """USD per hour by (instance type, zone name); types without a price are left out."""
        ...


@runtime_checkable
class NodeConfigSource(Protocol):
    """NodePools and HyperpodNodeClasses kept in the cluster, with their status written back.

    Implemented by Kubernetes backends that can read custom resources; the daemon then follows what
    users `kubectl apply`, as Karpenter does, instead of only the files it was started with.
    """

    async def node_config(self) -> ClusterNodeConfig:
        """Read and validate the objects (invalid ones are listed and skipped)."""
        ...

    async def publish_status(self, groups: Mapping[str, InstanceGroup] | None) -> int:
        """Write the status conditions of the objects last read; returns how many changed."""
        ...


@runtime_checkable
class ProvisioningRequestSource(Protocol):
    """ProvisioningRequests (`autoscaling.x-k8s.io/v1`) and the PodTemplates they reference, with their
    status written back through the status subresource. Implemented by Kubernetes backends."""

    async def provisioning_requests(self) -> RequestSet:
        """Every ProvisioningRequest and the PodTemplates of their namespaces."""
        ...

    async def write_provisioning_request_status(
        self, namespace: str, name: str, conditions: Sequence[RequestCondition]
    ) -> bool:
        """Merge `conditions` into the request's status; False when nothing changed (or it is gone)."""
        ...
