"""An in-memory Kubernetes API server: the `KubernetesCluster` and `LeaseStore` protocol fake.

The daemon's calls arrive here: each is checked against the faults a test queued (`faults`), its
effect applied to the simulated cluster (`fake.cluster`, which holds the state and what the
scheduler and controllers do), and what the daemon did is recorded for assertions (`events`,
`evicted_at`, `terminations`, `counters`). Leases live in `fake.leases`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

from hpscaler.backends.errors import BackendError, NotFoundError
from hpscaler.backends.types import DisruptionBudgetStatus, EvictionOutcome, Lease, WatchEvent, WatchKind
from hpscaler.clock import Clock
from hpscaler.fake.cluster import SimulatedCluster
from hpscaler.fake.copies import copy_pod
from hpscaler.fake.faults import FaultInjector
from hpscaler.fake.leases import FakeLeases
from hpscaler.fake.provreqs import ProvisioningRequestsMixin
from hpscaler.fake.records import PodTermination, RecordedEvent
from hpscaler.fake.timers import Timers
from hpscaler.model import Pod, Taint


class FakeKubernetes(SimulatedCluster, ProvisioningRequestsMixin):
    """In-memory `KubernetesCluster` and `LeaseStore`: calls checked for faults, applied, recorded."""

    def __init__(self, clock: Clock, *, timers: Timers | None = None) -> None:
        super().__init__(clock, timers=timers)
        self.faults = FaultInjector()
        self.leases = FakeLeases(clock, self.faults)
        self.events: list[RecordedEvent] = []
        self.evicted_at: dict[str, float] = {}

    # --- the KubernetesCluster interface -------------------------------------------------------

    def watch(self) -> AsyncIterator[WatchEvent]:
        """ADDED for every pod and node, SYNCED, then live changes.

        Events carry copies; nodes come with empty `pods`, as Node objects from the API do.
        """
        return self._watches.watch()

    async def taint_node(self, name: str, add: Sequence[Taint] = (), remove: Sequence[str] = ()) -> None:
        """Add or replace taints (by key and effect) and remove taints by key."""
        self.faults.check("taint_node")
        node = self._require_node(name)
        kept = [
            t
            for t in node.taints
            if t.key not in remove and not any(a.key == t.key and a.effect == t.effect for a in add)
        ]
        node.taints = (*kept, *add)
        self._emit(WatchKind.MODIFIED, node=node)
        self._schedule()

    async def register_node(self, name: str, labels: Mapping[str, str], taints: Sequence[Taint]) -> None:
        """Set labels and add taints in one change; DaemonSets the node now matches get their pod."""
        self.faults.check("register_node")
        node = self._require_node(name)
        node.labels.update(labels)
        node.taints = (*node.taints, *(t for t in taints if t not in node.taints))
        self._emit(WatchKind.MODIFIED, node=node)
        self._holding += 1
        try:
            for template in self._daemonsets:
                self._place_daemon(template, node)
        finally:
            self._holding -= 1
        self._schedule()

    async def annotate_node(self, name: str, annotations: Mapping[str, str | None]) -> None:
        """Set or (with None) remove node annotations."""
        self.faults.check("annotate_node")
        node = self._require_node(name)
        _apply_annotations(node.annotations, annotations)
        self._emit(WatchKind.MODIFIED, node=node)

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        """Set or (with None) remove pod annotations."""
        self.faults.check("annotate_pod")
        state = self._pods.get(f"{namespace}/{name}")
        if state is None:
            raise NotFoundError(f"pod {namespace}/{name} not found", code="NotFound")
        _apply_annotations(state.pod.annotations, annotations)
        self._emit(WatchKind.MODIFIED, pod=state.pod)

    async def evict_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> EvictionOutcome:
        """The Eviction API: PDB check for running pods, then graceful deletion."""
        self.faults.check("evict_pod")
        key = f"{namespace}/{name}"
        state = self._pods.get(key)
        if state is None:
            return "not-found"
        if state.terminating_since is not None:
            return "evicted"
        pod = state.pod
        if pod.phase == "Running":
            budgets = [b for b in self._budgets.values() if b.selects(pod)]
            if len(budgets) > 1:
                raise BackendError(
                    f"pod {key} has more than one PodDisruptionBudget", retryable=False, code="InternalError"
                )
            if budgets:
                if budgets[0].disruptions_allowed(self._all_pods()) <= 0:
                    self.counters.evictions_blocked += 1
                    return "blocked"
                if budgets[0].pinned is not None:
                    # The apiserver decrements status.disruptionsAllowed as it admits an eviction.
                    budgets[0].pinned -= 1
        self.counters.evictions += 1
        self.evicted_at[key] = self.clock.now()
        self.terminations.append(PodTermination(key, self.clock.now(), pod.node_name, "evict", copy_pod(pod)))
        self._terminate(key, state, grace_seconds)
        return "evicted"

    async def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> bool:
        """DELETE with a grace period: no PodDisruptionBudget check. False if the pod is gone."""
        self.faults.check("delete_pod")
        key = f"{namespace}/{name}"
        state = self._pods.get(key)
        if state is None:
            return False
        if state.terminating_since is None:
            self.counters.deletions += 1
            self.terminations.append(
                PodTermination(key, self.clock.now(), state.pod.node_name, "delete", copy_pod(state.pod))
            )
            self._terminate(key, state, grace_seconds)
        return True

    async def delete_node(self, name: str) -> None:
        """Delete the Node object; its pods die with it. Deleting a missing node is a no-op."""
        self.faults.check("delete_node")
        self.remove_node(name, "node-deleted")

    async def list_disruption_budgets(self) -> Sequence[DisruptionBudgetStatus]:
        """Every PDB with the disruptions it allows now."""
        self.faults.check("list_disruption_budgets")
        pods = self._all_pods()
        return [
            DisruptionBudgetStatus(b.namespace, b.name, b.selector, b.disruptions_allowed(pods))
            for b in self._budgets.values()
        ]

    async def record_event(self, pod: Pod, reason: str, message: str, *, warning: bool = False) -> None:
        """Remember the event for assertions."""
        self.faults.check("record_event")
        self.events.append(RecordedEvent(pod.key, reason, message, warning))

    async def acquire_lease(self, name: str, holder: str, duration_seconds: float) -> Lease:
        """`LeaseStore`: see `FakeLeases.acquire_lease` (faults queued on `faults` apply)."""
        return await self.leases.acquire_lease(name, holder, duration_seconds)

    def lease(self, name: str) -> Lease | None:
        """The named lease as stored."""
        return self.leases.lease(name)


def _apply_annotations(target: dict[str, str], changes: Mapping[str, str | None]) -> None:
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
