"""What every daemon loop shares: backends, configuration, caches, and the state they change.

State several loops change (launches in flight, nodes being disrupted, displaced pods, booked
capacity) is private and changed only through named operations, as Karpenter's `state.Cluster`
does (`MarkForDeletion`, `UnmarkForDeletion`); loops read it through read-only views. What the
loops do is recorded as typed events (`daemon.events`), which the log and the metrics consume.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import anyio
import structlog

from hpscaler.backends.protocols import (
    HyperPodCluster,
    InterruptionSource,
    KubernetesCluster,
    PlacementScores,
    SpotPriceSource,
)
from hpscaler.backends.types import HyperPodNode, NodeStatus
from hpscaler.catalogue import Catalogue
from hpscaler.clock import Clock
from hpscaler.config import LoadedConfig
from hpscaler.daemon.batcher import Batcher
from hpscaler.daemon.events import DaemonEvent, EventCounts, EventHook, log_hook
from hpscaler.daemon.state import ClusterCache
from hpscaler.model import InstanceGroup, NodePool, Pod
from hpscaler.provisioning.launches import InFlight
from hpscaler.scheduling.unavailable import UnavailableOfferings


@dataclass(slots=True)
class Backends:
    """One implementation of each outside system."""

    kubernetes: KubernetesCluster
    hyperpod: HyperPodCluster
    scores: PlacementScores | None = None
    interruptions: InterruptionSource | None = None
    prices: SpotPriceSource | None = None


SAMPLES = 10_000


@dataclass(slots=True)
class Stats:
    """Event counts and latency samples the simulator reports and the metrics endpoint exposes."""

    events: EventCounts = field(default_factory=EventCounts)
    # pod key -> when hpscaler first saw it pending (for pending -> running latency)
    _first_pending: dict[str, float] = field(default_factory=dict, init=False)
    # Recent samples only: a daemon runs for months, its memory must not grow with uptime.
    pending_to_running: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    decision_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    taint_latency: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    violations: list[str] = field(default_factory=list)

    def pod_pending(self, key: str, now: float) -> None:
        """The pod waits for a node; the first time it was seen waiting counts."""
        self._first_pending.setdefault(key, now)

    def pod_running(self, key: str, now: float) -> None:
        """The pod runs on a node: one pending -> running sample, if it was seen waiting."""
        started = self._first_pending.pop(key, None)
        if started is not None:
            self.pending_to_running.append(now - started)

    def pod_gone(self, key: str) -> None:
        """The pod was deleted: no sample."""
        self._first_pending.pop(key, None)


@dataclass(slots=True)
class DaemonContext:
    """Shared state of one daemon; loops read and write it only from the event loop thread."""

    config: LoadedConfig
    backends: Backends
    catalogue: Catalogue
    clock: Clock
    cache: ClusterCache = field(default_factory=ClusterCache)
    unavailable: UnavailableOfferings = field(default_factory=UnavailableOfferings)
    scores: dict[str, float] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    batcher: Batcher = field(default_factory=Batcher)
    plan_lock: anyio.Lock = field(default_factory=anyio.Lock)
    # The cluster's instance groups as DescribeCluster last answered, when they come from the live
    # cluster (`hpscaler run`); None when the configuration's groups are used (plan, simulate).
    live_groups: tuple[InstanceGroup, ...] | None = None
    cluster_refresh: anyio.Event = field(default_factory=anyio.Event)  # set: describe the cluster now
    changed: anyio.Event = field(default_factory=anyio.Event)
    log: structlog.typing.FilteringBoundLogger = field(
        default_factory=lambda: structlog.get_logger("hpscaler")
    )
    # Receive every recorded event (`record`); the first two are the counts and the log.
    hooks: list[EventHook] = field(default_factory=list)
    # Launches asked for and not joined yet, by NodeLogicalId.
    _inflight: dict[str, InFlight] = field(default_factory=dict, init=False)
    # Nodes being drained (interruption or consolidation) -> why; they take no new pods.
    _disrupting: dict[str, str] = field(default_factory=dict, init=False)
    # Pods on disrupted nodes that will need a new home (pending twins), until they are evicted.
    _displaced: dict[str, Pod] = field(default_factory=dict, init=False)
    # HyperPod nodes seen ShuttingDown or deleted by hpscaler (logical ids): never adopted again,
    # even when a failed termination shows them as Failure. Pruned once HyperPod no longer lists them.
    _gone: set[str] = field(default_factory=set, init=False)
    # Instance id -> HyperPod status, from the provisioner's last ListClusterNodes.
    _node_states: dict[str, NodeStatus] = field(default_factory=dict, init=False)
    # Node or in-flight node -> pods holding capacity booked for ProvisioningRequests there.
    _held: dict[str, list[Pod]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.hooks[:0] = [self.stats.events, log_hook(lambda: self.log)]

    def record(self, event: DaemonEvent) -> None:
        """Hand one event to every hook (counts, log, and any added later)."""
        for hook in self.hooks:
            hook(event)

    # -- launches in flight (read: `inflight`) --------------------------------------------------

    @property
    def inflight(self) -> Mapping[str, InFlight]:
        """Launches asked for and not joined yet, by NodeLogicalId (read-only)."""
        return MappingProxyType(self._inflight)

    def track_launch(self, record: InFlight) -> None:
        """A launch to follow until its node joins (asked for now, or adopted after a restart)."""
        self._inflight[record.logical_id] = record

    def settle_launch(self, logical_id: str) -> InFlight | None:
        """Stop following a launch whose node joined or vanished; its record, if it was followed."""
        return self._inflight.pop(logical_id, None)

    def cancel_launch(self, logical_id: str) -> None:
        """hpscaler deleted the launch's node: stop following it and never adopt it again."""
        self._inflight.pop(logical_id, None)
        self._gone.add(logical_id)

    def mark_health_checked(self, logical_id: str, now: float) -> None:
        """The launch's node is in HyperPod's deep health check (which may take hours)."""
        self._inflight[logical_id].health_checked_at = now

    # -- HyperPod's node list ------------------------------------------------------------------

    @property
    def node_states(self) -> Mapping[str, NodeStatus]:
        """Instance id -> HyperPod status, from the last ListClusterNodes (read-only)."""
        return MappingProxyType(self._node_states)

    @property
    def gone(self) -> frozenset[str]:
        """Logical ids of nodes going away or deleted by hpscaler: never adopted again."""
        return frozenset(self._gone)

    def hyperpod_listed(self, nodes: Sequence[HyperPodNode], going: Iterable[str]) -> None:
        """Take in a ListClusterNodes answer: node states, and the nodes now seen going away
        (gone nodes that HyperPod no longer lists are forgotten)."""
        self._node_states = {n.instance_id: n.status for n in nodes if n.instance_id}
        listed = {n.logical_id for n in nodes}
        self._gone = {i for i in self._gone if i in listed} | set(going)

    def mark_gone(self, logical_id: str) -> None:
        """hpscaler deleted this HyperPod node: never adopt it again."""
        self._gone.add(logical_id)

    # -- disruption (read: `disrupting`, `displaced`) --------------------------------------------

    @property
    def disrupting(self) -> Mapping[str, str]:
        """Nodes being drained -> why (read-only); they take no new pods."""
        return MappingProxyType(self._disrupting)

    def mark_for_deletion(self, node: str, reason: str) -> None:
        """The node is being drained (interruption or consolidation): plan no pod onto it."""
        self._disrupting[node] = reason

    def unmark_for_deletion(self, node: str) -> None:
        """The node stays after all, or is gone."""
        self._disrupting.pop(node, None)

    @property
    def displaced(self) -> Mapping[str, Pod]:
        """Pending twins of pods that must leave disrupted nodes, by pod key (read-only)."""
        return MappingProxyType(self._displaced)

    def displace(self, twin: Pod) -> None:
        """Plan a new home for a pod that must leave its node (`twin` is its pending copy)."""
        self._displaced[twin.key] = twin

    def undisplace(self, keys: Iterable[str]) -> None:
        """These pods need no new home from hpscaler any more (gone, or their node stays)."""
        for key in keys:
            self._displaced.pop(key, None)

    # -- capacity booked for ProvisioningRequests (read: `held`) ---------------------------------

    @property
    def held(self) -> Mapping[str, Sequence[Pod]]:
        """Node or in-flight node -> pods holding booked capacity there (read-only)."""
        return MappingProxyType(self._held)

    def book(self, holders: Mapping[str, Sequence[Pod]]) -> None:
        """Replace the booked capacity (empty: nothing booked)."""
        self._held = {name: list(pods) for name, pods in holders.items()}

    def replace_config(self, config: LoadedConfig) -> None:
        """Put a reloaded configuration in force, keeping the live cluster's groups if there are any."""
        if self.live_groups is not None and config.instance_groups != self.live_groups:
            config = replace(config, instance_groups=self.live_groups)
        self.config = config

    def notify(self) -> None:
        """Wake every `wait_until`: the cache or the in-flight set changed."""
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        """Wait until `predicate()` holds (re-checked on every change) or `within` seconds pass."""
        with anyio.move_on_after(within):
            while not predicate():
                await self.changed.wait()
            return True
        return predicate()

    @property
    def groups(self) -> dict[str, InstanceGroup]:
        """Instance groups by name."""
        return {g.name: g for g in self.config.instance_groups}

    def managed_groups(self) -> set[str]:
        """Instance groups referenced by a NodeClass that a NodePool uses."""
        classes = {c.name: c for c in self.config.node_classes}
        names: set[str] = set()
        for pool in self.config.node_pools:
            node_class = classes.get(pool.node_class)
            if node_class is not None:
                names.update(node_class.instance_groups)
        return names

    def pool_for_group(self, group: str) -> NodePool | None:
        """The highest-weight NodePool whose NodeClass lists `group` (for adopted nodes)."""
        classes = {c.name: c for c in self.config.node_classes}
        pools = [
            p
            for p in self.config.node_pools
            if group in getattr(classes.get(p.node_class), "instance_groups", ())
        ]
        return max(pools, key=lambda p: p.weight) if pools else None
