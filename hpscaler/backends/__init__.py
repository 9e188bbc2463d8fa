"""Interfaces to outside systems, and the data that crosses them.

Rules of this package:
- One small `typing.Protocol` per outside system (`protocols`); the daemon talks only to these.
- The data crossing them (`types`) is plain dataclasses and enums over `hpscaler.model`, so the
  pure core may import it; nothing here does I/O.
- A failed call raises `BackendError` (`errors`); `retryable` says whether trying again may help, and
  its subclasses what happened: `CapacityError`, `NotFoundError`, `InvalidRequestError`.
- Implementations live elsewhere: `hpscaler.fake` (a first-class backend, tested like the others),
  `hpscaler.aws`, `hpscaler.kube`, and plugins found through the `hpscaler.backends` entry points
  (`registry`, the only module here that reads the configuration).
"""

from typing import TYPE_CHECKING

from hpscaler.lazy import lazy_exports

if TYPE_CHECKING:
    from hpscaler.backends.errors import BackendError, CapacityError, InvalidRequestError, NotFoundError
    from hpscaler.backends.protocols import (
        HyperPodCluster,
        InterruptionSource,
        KubernetesCluster,
        LeaseStore,
        NodeConfigSource,
        PlacementScores,
        ProvisioningRequestSource,
        SpotPriceSource,
    )
    from hpscaler.backends.registry import (
        ENTRY_POINT_GROUP,
        BackendNotFound,
        BackendSet,
        check_backends,
        declared_roles,
        discover,
        load_factory,
        open_backends,
        serves,
    )
    from hpscaler.backends.types import (
        AddedNode,
        AddFailure,
        AddResult,
        ClusterDescription,
        ClusterEvent,
        ClusterNodeConfig,
        DeleteFailure,
        DeleteResult,
        DisruptionBudgetStatus,
        EvictionOutcome,
        HyperPodEventKind,
        HyperPodNode,
        InterruptionKind,
        InterruptionMessage,
        JunkMessage,
        Lease,
        NodeStatus,
        WatchEvent,
        WatchKind,
    )

__all__ = [
    "ENTRY_POINT_GROUP",
    "AddFailure",
    "AddResult",
    "AddedNode",
    "BackendError",
    "BackendNotFound",
    "BackendSet",
    "CapacityError",
    "ClusterDescription",
    "ClusterEvent",
    "ClusterNodeConfig",
    "DeleteFailure",
    "DeleteResult",
    "DisruptionBudgetStatus",
    "EvictionOutcome",
    "HyperPodCluster",
    "HyperPodEventKind",
    "HyperPodNode",
    "InterruptionKind",
    "InterruptionMessage",
    "InterruptionSource",
    "InvalidRequestError",
    "JunkMessage",
    "KubernetesCluster",
    "Lease",
    "LeaseStore",
    "NodeConfigSource",
    "NodeStatus",
    "NotFoundError",
    "PlacementScores",
    "ProvisioningRequestSource",
    "SpotPriceSource",
    "WatchEvent",
    "WatchKind",
    "check_backends",
    "declared_roles",
    "discover",
    "load_factory",
    "open_backends",
    "serves",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "errors": ("BackendError", "CapacityError", "InvalidRequestError", "NotFoundError"),
        "protocols": (
            "HyperPodCluster",
            "InterruptionSource",
            "KubernetesCluster",
            "LeaseStore",
            "NodeConfigSource",
            "PlacementScores",
            "ProvisioningRequestSource",
            "SpotPriceSource",
        ),
        "registry": (
            "ENTRY_POINT_GROUP",
            "BackendNotFound",
            "BackendSet",
            "check_backends",
            "declared_roles",
            "discover",
            "load_factory",
            "open_backends",
            "serves",
        ),
        "types": (
            "AddFailure",
            "AddResult",
            "AddedNode",
            "ClusterDescription",
            "ClusterEvent",
            "ClusterNodeConfig",
            "DeleteFailure",
            "DeleteResult",
            "DisruptionBudgetStatus",
            "EvictionOutcome",
            "HyperPodEventKind",
            "HyperPodNode",
            "InterruptionKind",
            "InterruptionMessage",
            "JunkMessage",
            "Lease",
            "NodeStatus",
            "WatchEvent",
            "WatchKind",
        ),
    },
)
