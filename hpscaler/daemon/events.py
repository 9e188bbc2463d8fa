"""What the daemon's loops report as they work: typed events, handed to hooks.

A loop records one event (`DaemonContext.record`) and every hook receives it, as stamina's
instrumentation hooks receive each retry: `log_hook` writes it to the structured log, and
`EventCounts` tallies it for the metrics endpoint (`service.metrics`) and the simulator's report.
Nobody parses strings back: an event's type says what happened and its `LABELS` name the fields
it is counted by.

An event whose `LEVEL` is "debug" is told in more detail by a log line of the loop itself (which
carries context an event does not need); the others are the log line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, Protocol

import structlog

Level = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True, slots=True)
class DaemonEvent:
    """Something a daemon loop did or saw; subclasses are frozen dataclasses."""

    LEVEL: ClassVar[Level] = "debug"
    LABELS: ClassVar[tuple[str, ...]] = ()  # the fields it is counted by
    NAME: ClassVar[str] = ""  # the log event name

    def log_level(self) -> Level:
        """The log level of this occurrence."""
        return self.LEVEL

    def key(self) -> tuple[str, ...]:
        """The values of its `LABELS`."""
        return tuple(str(getattr(self, name)) for name in self.LABELS)


class EventHook(Protocol):
    """Receives every event a daemon records."""

    def __call__(self, event: DaemonEvent, /) -> None:
        """Handle one event; must not block (hooks run on the event loop)."""


# -- provisioning ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReconcileRan(DaemonEvent):
    """A provisioning round ran (also when HyperPod could not be read: the loop is alive)."""

    NAME = "reconcile_ran"
    reason: str


@dataclass(frozen=True, slots=True)
class ReconcileCoalesced(DaemonEvent):
    """A provisioning request was answered by a round that already covered it."""

    NAME = "reconcile_coalesced"


@dataclass(frozen=True, slots=True)
class CloudProviderError(DaemonEvent):
    """A call to AWS (HyperPod, EC2) failed."""

    NAME = "cloudprovider_error"
    LABELS = ("provider",)
    operation: str
    error: str
    provider: str = "hyperpod"


@dataclass(frozen=True, slots=True)
class ApiCalled(DaemonEvent):
    """A call that changes the cluster went through (its answer may still refuse some nodes)."""

    NAME = "api_called"
    LABELS = ("operation",)
    operation: Literal["BatchAddClusterNodes", "BatchDeleteClusterNodes"]


@dataclass(frozen=True, slots=True)
class NodeCreated(DaemonEvent):
    """HyperPod accepted a node hpscaler asked for."""

    NAME = "node_created"
    LABELS = ("group",)
    group: str
    logical_id: str


@dataclass(frozen=True, slots=True)
class LaunchFailed(DaemonEvent):
    """A launch was given up (out of capacity or launch timeout) and is cancelled."""

    NAME = "launch_failed"
    LABELS = ("group",)
    group: str
    logical_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CancelRefused(DaemonEvent):
    """HyperPod refused to delete a launch being cancelled; the next round tries again."""

    NAME = "cancel_refused"
    logical_id: str
    code: str


@dataclass(frozen=True, slots=True)
class NodeRegistered(DaemonEvent):
    """A joining node got what its plan assumed (labels, taints)."""

    NAME = "node_registered"
    LEVEL = "info"
    LABELS = ("node_pool",)
    node: str
    instance: str
    node_pool: str
    labels: int
    taints: tuple[str, ...]
    ready: bool


@dataclass(frozen=True, slots=True)
class RegistrationFailed(DaemonEvent):
    """The registration patch could not be written; the next sweep tries again."""

    NAME = "node_registration_failed"
    LEVEL = "warning"
    node: str
    error: str


@dataclass(frozen=True, slots=True)
class PodEventDropped(DaemonEvent):
    """A pod Event was dropped: the queue to the API server is full (`daemon.posting`)."""

    NAME = "pod_event_dropped"
    pod: str
    reason: str


# -- consolidation and drains ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeDisrupted(DaemonEvent):
    """Consolidation removed a node (Empty, Underutilized, Expired)."""

    NAME = "node_consolidated"
    LEVEL = "info"
    LABELS = ("reason",)
    node: str
    reason: str
    pool: str


@dataclass(frozen=True, slots=True)
class NodeDeleteRefused(DaemonEvent):
    """HyperPod answered a node deletion with a per-node failure (it is retried)."""

    NAME = "node_delete_refused"
    LEVEL = "warning"
    node: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class NodeDeleteFailed(DaemonEvent):
    """A drained node could not be deleted after every retry; its taint is removed."""

    NAME = "node_delete_failed"
    LEVEL = "error"
    node: str
    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class OrphanedTaintCleared(DaemonEvent):
    """A consolidation taint a previous incarnation left behind was removed."""

    NAME = "orphaned_taint_cleared"
    LEVEL = "info"
    node: str
    taint: str


@dataclass(frozen=True, slots=True)
class PodEvicted(DaemonEvent):
    """A pod was evicted from a node being drained."""

    NAME = "pod_evicted"
    LEVEL = "info"
    pod: str
    node: str
    grace: float


@dataclass(frozen=True, slots=True)
class EvictionBlocked(DaemonEvent):
    """A PodDisruptionBudget refused an eviction; the drain retries with backoff."""

    NAME = "eviction_blocked"
    pod: str
    node: str


@dataclass(frozen=True, slots=True)
class PdbOverridden(DaemonEvent):
    """At the interruption deadline a pod was deleted although its budget blocked the eviction."""

    NAME = "pdb_overridden_at_deadline"
    LEVEL = "warning"
    pod: str
    node: str


# -- the cluster -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchLost(DaemonEvent):
    """The Kubernetes watch broke; it is listed again."""

    NAME = "watch_lost"
    LEVEL = "warning"
    error: str


@dataclass(frozen=True, slots=True)
class WatchResynced(DaemonEvent):
    """The periodic fresh list ran."""

    NAME = "watch_resynced"


@dataclass(frozen=True, slots=True)
class ClusterRefreshed(DaemonEvent):
    """The instance groups were read again from DescribeCluster."""

    NAME = "cluster_refreshed"


@dataclass(frozen=True, slots=True)
class HyperPodEventSeen(DaemonEvent):
    """An event of HyperPod's ListClusterEvents; Warn and Error are logged as warnings."""

    NAME = "hyperpod_event"
    LABELS = ("level",)
    group: str
    instance: str
    level: str  # EventLevel: Info, Warn or Error
    description: str

    def log_level(self) -> Level:
        """Warn and Error are warnings, the rest information."""
        return "warning" if self.level.lower() in ("warn", "warning", "error") else "info"


# -- interruptions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InterruptionReceived(DaemonEvent):
    """A readable interruption message from one source (duplicates included)."""

    NAME = "interruption_received"
    LABELS = ("kind", "source")
    kind: str  # InterruptionKind's value
    source: str  # sqs, agent, taint, hyperpod-events, other
    instance: str


@dataclass(frozen=True, slots=True)
class InterruptionUnreadable(DaemonEvent):
    """A queue message that is no interruption hpscaler can read; it is acknowledged."""

    NAME = "interruption_message_unreadable"
    LEVEL = "warning"
    message: str
    error: str


@dataclass(frozen=True, slots=True)
class InterruptionReceiveFailed(DaemonEvent):
    """A source could not be read; it is read again in a few seconds."""

    NAME = "interruption_receive_failed"
    LEVEL = "warning"
    source: str
    error: str


InterruptionOutcomeName = Literal[
    "no-action",  # a state change that is no interruption
    "unmanaged-group",  # HyperPod replaces the capacity itself
    "not-ours",  # no node of this cluster runs on the instance
    "duplicate",  # already handled through another source
    "deadline-advanced",  # a later source knew an earlier end
    "replacement-requested",  # capacity for the drained pods was asked for
    "handled",  # drained, or replaced after a loss without notice
    "rebalance-preprovisioned",  # capacity lined up on a rebalance recommendation
    "capacity-failure",  # a HyperPod capacity failure backed an offering off
]


@dataclass(frozen=True, slots=True)
class InterruptionOutcome(DaemonEvent):
    """What became of one interruption signal."""

    NAME = "interruption_outcome"
    LABELS = ("outcome",)
    outcome: InterruptionOutcomeName
    instance: str = ""


# -- ProvisioningRequests --------------------------------------------------------------------

ProvisioningRequestStepName = Literal["read-failed", "scaled-up", "released", "write-failed"]


@dataclass(frozen=True, slots=True)
class ProvisioningRequestStep(DaemonEvent):
    """A step of the ProvisioningRequest loop."""

    NAME = "provisioning_request_step"
    LABELS = ("step",)
    step: ProvisioningRequestStepName
    request: str = ""


# -- hooks -----------------------------------------------------------------------------------


class EventCounts:
    """The hook that counts events by type and labels: what metrics and reports are made of."""

    def __init__(self) -> None:
        self._counts: dict[type[DaemonEvent], Counter[tuple[str, ...]]] = {}

    def __call__(self, event: DaemonEvent) -> None:
        """Count one event."""
        self._counts.setdefault(type(event), Counter())[event.key()] += 1

    def count(self, kind: type[DaemonEvent], /, **labels: str) -> int:
        """How many events of `kind` were recorded, only those whose labels have these values."""
        counts = self._counts.get(kind)
        if not counts:
            return 0
        wanted = [(kind.LABELS.index(name), value) for name, value in labels.items()]
        return sum(n for key, n in counts.items() if all(key[i] == value for i, value in wanted))

    def by(self, kind: type[DaemonEvent], label: str, /) -> dict[str, int]:
        """Counts of `kind` per value of one of its labels, sorted by value."""
        index = kind.LABELS.index(label)
        totals: Counter[str] = Counter()
        for key, n in self._counts.get(kind, Counter()).items():
            totals[key[index]] += n
        return dict(sorted(totals.items()))


def log_hook(log: Callable[[], structlog.typing.FilteringBoundLogger]) -> EventHook:
    """The hook that writes each event to the structured log: its `NAME`, at its level, with its fields.

    `log` returns the logger at the time of the event, so a logger bound later is used.
    """

    def hook(event: DaemonEvent) -> None:
        fields: Mapping[str, Any] = asdict(event)
        getattr(log(), event.log_level())(event.NAME, **fields)

    return hook
