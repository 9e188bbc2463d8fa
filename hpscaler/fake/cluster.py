"""The state of an in-memory Kubernetes cluster, and what its controllers do to it.

Pods, nodes, PodDisruptionBudgets and DaemonSets as the API server stores them, with the changes
streamed to watchers (`fake.watch`). What the rest of a cluster does is decided elsewhere, as pure
functions, and applied here:
- which pending pod binds where: kube-scheduler (`fake.kubescheduler`);
- DaemonSet pods and the replacements of deleted pods: the workload controllers (`fake.controllers`);
- disruptionsAllowed: the disruption controller (`fake.budgets`);
- grace periods and Job completions: timers in loop time (`fake.timers`).
Tests, the World and the simulator drive it through `add_pod`, `add_node`, `remove_node` and the
like; the daemon reaches it only through the protocol fake, `fake.kubernetes.FakeKubernetes`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from types import MappingProxyType

from hpscaler.backends.errors import NotFoundError
from hpscaler.backends.types import WatchEvent, WatchKind
from hpscaler.clock import Clock
from hpscaler.fake.budgets import DisruptionBudget
from hpscaler.fake.controllers import (
    Replacements,
    daemon_pod,
    daemonset_template,
    dies_with_node,
    is_replaced,
)
from hpscaler.fake.copies import copy_node, copy_pod
from hpscaler.fake.kubescheduler import bind_pending
from hpscaler.fake.records import KubeCounters, NodeRemoval, PodKill, PodTermination
from hpscaler.fake.timers import Timers
from hpscaler.fake.watch import WatchHub
from hpscaler.model import LabelSelector, Node, Pod, Taint


@dataclass(slots=True)
class PodState:
    """A stored pod with what the fake needs to know beyond the object itself."""

    pod: Pod
    template: Pod  # what the controller recreates the pod from
    seq: int
    origin: str  # the name before any "-r<n>" suffix
    run_seconds: float | None = None
    terminating_since: float | None = None


class SimulatedCluster:
    """Pods, nodes, budgets and DaemonSets, kept moving by the scheduler and controller stand-ins."""

    def __init__(self, clock: Clock, *, timers: Timers | None = None) -> None:
        self.clock = clock
        self.timers = timers if timers is not None else Timers()
        self.counters = KubeCounters()
        self.kills: list[PodKill] = []
        self.completions: list[tuple[str, float]] = []
        self.node_removals: list[NodeRemoval] = []
        self.terminations: list[PodTermination] = []
        self.finished_origins: dict[str, float] = {}  # origin key -> when its Job pod Succeeded
        self._live: dict[str, str] = {}  # origin key -> key of its live pod
        self._pods: dict[str, PodState] = {}  # in creation order
        self._pending: set[str] = set()
        self._nodes: dict[str, Node] = {}
        self._budgets: dict[tuple[str, str], DisruptionBudget] = {}
        self._daemonsets: list[Pod] = []
        self._replacements = Replacements()
        self._watches = WatchHub(self._snapshot)
        self._emit = self._watches.emit
        self._seq = itertools.count()
        self._holding = 0  # > 0 while a multi-step change runs: schedule once at its end

    async def run(self) -> None:
        """Run the delayed behaviours (grace periods, job completions) until cancelled."""
        await self.timers.run()

    # --- changes from tests, the World and the simulator ------------------------------------------

    def add_pod(self, pod: Pod, *, run_seconds: float | None = None) -> Pod:
        """Create a pod (a copy); with `run_seconds` it Succeeds that long after it starts running."""
        if pod.key in self._pods:
            raise ValueError(f"pod {pod.key} already exists")
        pod = copy_pod(pod)
        pod.uid = pod.uid or f"uid-{next(self._seq)}"
        pod.created = pod.created or self.clock.now()
        if pod.node_name:
            pod.phase = "Running"
        template = replace(copy_pod(pod), node_name="", phase="Pending")
        self._insert(PodState(pod, template, next(self._seq), pod.name, run_seconds))
        self._schedule()
        return copy_pod(pod)

    def remove_pod(self, key: str, *, recreate: bool = False) -> None:
        """Delete a pod at once; by default as if its controller scaled down (no replacement)."""
        if key in self._pods:
            self._delete(key, recreate=recreate)

    def add_pdb(
        self,
        namespace: str,
        name: str,
        selector: LabelSelector,
        min_available: int | str | None = None,
        max_unavailable: int | str | None = None,
    ) -> None:
        """Create a PodDisruptionBudget with exactly one of minAvailable / maxUnavailable."""
        budget = DisruptionBudget(namespace, name, selector, min_available, max_unavailable)
        self._budgets[(namespace, name)] = budget

    def pin_disruptions_allowed(self, namespace: str, name: str, allowed: int | None) -> None:
        """Fix a PDB's disruptionsAllowed (None: compute it from pods again)."""
        self._budgets[(namespace, name)].pinned = allowed

    def add_daemonset(self, template: Pod) -> None:
        """A DaemonSet: one copy of `template` bound to every current and future node it tolerates.

        Watchers see the DaemonSet itself (as its template pod), as a watch on apps/v1 daemonsets does.
        """
        self._daemonsets.append(daemonset_template(template))
        self._emit(WatchKind.ADDED, daemonset=self._daemonsets[-1])
        for node in sorted(self._nodes.values(), key=lambda n: n.name):
            self._place_daemon(self._daemonsets[-1], node)

    def add_node(self, node: Node) -> Node:
        """Register a node (a copy; its `pods` are ignored)."""
        if node.name in self._nodes:
            raise ValueError(f"node {node.name} already exists")
        node = copy_node(node)
        node.created = node.created or self.clock.now()
        self._nodes[node.name] = node
        self._emit(WatchKind.ADDED, node=node)
        for template in self._daemonsets:
            self._place_daemon(template, node)
        self._schedule()
        return copy_node(node)

    def remove_node(self, name: str, reason: str = "instance-terminated") -> None:
        """The node vanished (instance gone or Node deleted): its pods die, controllers replace them."""
        node = self._nodes.pop(name, None)
        if node is None:
            return
        self._emit(WatchKind.DELETED, node=node)
        now = self.clock.now()
        bound = [s for s in self._pods.values() if s.pod.node_name == name]
        self.node_removals.append(NodeRemoval(name, now, reason, tuple(copy_pod(s.pod) for s in bound)))
        self._holding += 1
        try:
            for state in bound:
                if not dies_with_node(state.pod):
                    self.kills.append(
                        PodKill(state.pod.key, now, reason, state.terminating_since is not None)
                    )
                    self.counters.pods_killed += 1
                self._delete(state.pod.key, recreate=True)
        finally:
            self._holding -= 1
        self._schedule()

    def set_node_ready(self, name: str, ready: bool = True) -> None:
        """Flip the node's Ready condition (missing nodes are ignored: they may have just died)."""
        node = self._nodes.get(name)
        if node is None or node.ready == ready:
            return
        node.ready = ready
        self._emit(WatchKind.MODIFIED, node=node)
        self._schedule()

    def mark_node(
        self, name: str, *, taints: Sequence[Taint] = (), annotations: Mapping[str, str] | None = None
    ) -> None:
        """What another controller does to a node (HyperPod's taint, the node agent's annotation)."""
        node = self._nodes.get(name)
        if node is None:
            return
        node.taints = (*[t for t in node.taints if t not in taints], *taints)
        node.annotations.update(annotations or {})
        self._emit(WatchKind.MODIFIED, node=node)
        self._schedule()

    def relist(self) -> None:
        """Simulate a lost watch: every watcher receives ADDED... SYNCED again."""
        self._watches.relist()

    def pods(self) -> list[Pod]:
        """Copies of all pods, oldest first."""
        return [copy_pod(s.pod) for s in self._pods.values()]

    def pod(self, key: str) -> Pod | None:
        """A copy of one pod, or None."""
        state = self._pods.get(key)
        return copy_pod(state.pod) if state else None

    def origin(self, key: str) -> str | None:
        """The key of the pod a live pod replaces (its own key unless a controller recreated it)."""
        state = self._pods.get(key)
        return f"{state.pod.namespace}/{state.origin}" if state else None

    def live_origins(self) -> Mapping[str, str]:
        """Origin key -> key of the live pod that stands for it now (a read-only view, no copies)."""
        return MappingProxyType(self._live)

    def pending_keys(self) -> set[str]:
        """Keys of the pods waiting to be bound (neither bound nor terminating)."""
        return set(self._pending)

    def is_terminating(self, key: str) -> bool:
        """Whether the pod has been evicted and is inside its grace period."""
        state = self._pods.get(key)
        return state is not None and state.terminating_since is not None

    def nodes(self) -> list[Node]:
        """Copies of all nodes by name, with their bound pods filled in."""
        return [self._node_view(n) for n in sorted(self._nodes.values(), key=lambda n: n.name)]

    def node(self, name: str) -> Node | None:
        """A copy of one node with its bound pods, or None."""
        node = self._nodes.get(name)
        return self._node_view(node) if node else None

    # --- internals -----------------------------------------------------------------------------

    def _all_pods(self) -> list[Pod]:
        return [s.pod for s in self._pods.values()]

    def _node_view(self, node: Node) -> Node:
        return copy_node(node, (s.pod for s in self._pods.values() if s.pod.node_name == node.name))

    def _require_node(self, name: str) -> Node:
        node = self._nodes.get(name)
        if node is None:
            raise NotFoundError(f"node {name} not found", code="NotFound")
        return node

    def _snapshot(self) -> Iterator[WatchEvent]:
        for state in self._pods.values():
            yield WatchEvent(WatchKind.ADDED, pod=copy_pod(state.pod))
        for node in sorted(self._nodes.values(), key=lambda n: n.name):
            yield WatchEvent(WatchKind.ADDED, node=copy_node(node))
        for template in self._daemonsets:
            yield WatchEvent(WatchKind.ADDED, daemonset=copy_pod(template))

    def _insert(self, state: PodState) -> None:
        self._pods.pop(state.pod.key, None)  # keep the dict in creation order
        self._pods[state.pod.key] = state
        self._live[f"{state.pod.namespace}/{state.origin}"] = state.pod.key
        if not state.pod.node_name and state.pod.phase == "Pending":
            self._pending.add(state.pod.key)
        self._emit(WatchKind.ADDED, pod=state.pod)

    def _place_daemon(self, template: Pod, node: Node) -> None:
        pod = daemon_pod(template, node)
        if pod is not None and pod.key not in self._pods:
            self.add_pod(pod)

    def _terminate(self, key: str, state: PodState, grace_seconds: int | None) -> None:
        pod = state.pod
        grace = pod.termination_grace_seconds if grace_seconds is None else grace_seconds
        state.terminating_since = self.clock.now()
        state.pod.terminating = True
        self._emit(WatchKind.MODIFIED, pod=state.pod)  # as the API shows deletionTimestamp
        self._pending.discard(key)
        if grace <= 0:
            self._delete(key, recreate=True)
        else:
            self.timers.call_later(grace, partial(self._finish_termination, key, pod.uid))

    def _finish_termination(self, key: str, uid: str) -> None:
        state = self._pods.get(key)
        if state is not None and state.pod.uid == uid:
            self._delete(key, recreate=True)

    def _delete(self, key: str, *, recreate: bool) -> None:
        state = self._pods.pop(key)
        self._pending.discard(key)
        origin_key = f"{state.pod.namespace}/{state.origin}"
        if self._live.get(origin_key) == key:
            del self._live[origin_key]
        self._emit(WatchKind.DELETED, pod=state.pod)
        if recreate and is_replaced(state.pod):
            uid = f"uid-{next(self._seq)}"
            fresh = self._replacements.replacement(
                state.template, state.origin, uid=uid, now=self.clock.now()
            )
            self.counters.pods_recreated += 1
            self._insert(PodState(fresh, state.template, next(self._seq), state.origin, state.run_seconds))
        self._schedule()

    def _complete(self, key: str, uid: str) -> None:
        state = self._pods.get(key)
        if state is None or state.pod.uid != uid or state.terminating_since is not None:
            return
        state.pod.phase = "Succeeded"
        self.counters.pods_completed += 1
        self.completions.append((key, self.clock.now()))
        self.finished_origins[f"{state.pod.namespace}/{state.origin}"] = self.clock.now()
        self._delete(key, recreate=False)

    def _schedule(self) -> None:
        """Bind what kube-scheduler would bind now, and start the Job clocks of bound pods."""
        if not self._pending or self._holding or not self._nodes:
            return  # nothing to bind, or nowhere to bind it
        # Keyed by pod key already: no `Pod.key` string per pod (this runs on every pod added).
        pending = [s.pod for key, s in self._pods.items() if key in self._pending]
        bound = [s.pod for s in self._pods.values() if s.pod.node_name]
        for binding in bind_pending(pending, self._nodes.values(), bound):
            state = self._pods[binding.pod]
            pod = state.pod
            pod.node_name, pod.phase = binding.node, "Running"
            self._pending.discard(pod.key)
            self.counters.binds += 1
            self._emit(WatchKind.MODIFIED, pod=pod)
            if state.run_seconds is not None:
                self.timers.call_later(state.run_seconds, partial(self._complete, pod.key, pod.uid))
