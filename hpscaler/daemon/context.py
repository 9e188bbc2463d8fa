"""What every daemon loop shares: backends, configuration, caches and counters."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import anyio
import structlog

from hpscaler.backends.protocols import (
    HyperPodCluster,
    InterruptionSource,
    KubernetesCluster,
    PlacementScores,
    SpotPriceSource,
)
from hpscaler.backends.types import NodeStatus
from hpscaler.catalogue import Catalogue
from hpscaler.clock import Clock
from hpscaler.config import LoadedConfig
from hpscaler.daemon.batcher import Batcher
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
    """Counters and latency samples the simulator reports and the metrics endpoint exposes."""

    counters: Counter[str] = field(default_factory=Counter)
    # pod key -> when hpscaler first saw it pending (for pending -> running latency)
    first_pending: dict[str, float] = field(default_factory=dict)
    # Recent samples only: a daemon runs for months, its memory must not grow with uptime.
    pending_to_running: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    decision_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    taint_latency: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    violations: list[str] = field(default_factory=list)


@dataclass(slots=True)
class DaemonContext:
    """Shared state of one daemon; loops read and write it only from the event loop thread."""

    config: LoadedConfig
    backends: Backends
    catalogue: Catalogue
    clock: Clock
    cache: ClusterCache = field(default_factory=ClusterCache)
    inflight: dict[str, InFlight] = field(default_factory=dict)
    unavailable: UnavailableOfferings = field(default_factory=UnavailableOfferings)
    scores: dict[str, float] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    batcher: Batcher = field(default_factory=Batcher)
    synced: anyio.Event = field(default_factory=anyio.Event)
    plan_lock: anyio.Lock = field(default_factory=anyio.Lock)
    # Nodes being drained (interruption or consolidation) -> why; they take no new pods.
    disrupting: dict[str, str] = field(default_factory=dict)
    # Pods on disrupted nodes that will need a new home (pending twins), until they are evicted.
    displaced: dict[str, Pod] = field(default_factory=dict)
    # HyperPod nodes seen ShuttingDown or deleted by hpscaler (logical ids): never adopted again,
    # even when a failed termination shows them as Failure. Pruned once HyperPod no longer lists them.
    gone: set[str] = field(default_factory=set)
    # Instance id -> HyperPod status, from the provisioner's last ListClusterNodes.
    node_states: dict[str, NodeStatus] = field(default_factory=dict)
    # The cluster's instance groups as DescribeCluster last answered, when they come from the live
    # cluster (`hpscaler run`); None when the configuration's groups are used (plan, simulate).
    live_groups: tuple[InstanceGroup, ...] | None = None
    cluster_refresh: anyio.Event = field(default_factory=anyio.Event)  # set: describe the cluster now
    changed: anyio.Event = field(default_factory=anyio.Event)
    # Node or in-flight node -> pods holding capacity booked for ProvisioningRequests there.
    held: dict[str, list[Pod]] = field(default_factory=dict)
    log: structlog.typing.FilteringBoundLogger = field(
        default_factory=lambda: structlog.get_logger("hpscaler")
    )

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
