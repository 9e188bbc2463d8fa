"""An in-memory Kubernetes API server with stand-ins for the default scheduler and workload controllers.

Besides the `KubernetesCluster` interface it offers test- and world-facing methods (`add_pod`,
`add_node`, `remove_node`...). It also hosts `Timers` and `FaultInjector`, which every fake shares.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from types import MappingProxyType
from typing import NamedTuple

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import DisruptionBudgetStatus, EvictionOutcome, Lease, WatchEvent, WatchKind
from hpscaler.clock import Clock
from hpscaler.model import LABEL_HOSTNAME, PODS_RESOURCE, LabelSelector, Node, Pod, Taint, fits, tolerates_all

DEFAULT_MAX_PODS = 110
_EPSILON = 1e-9
_NODE_BOUND = ("DaemonSet", "Node")  # pods that live and die with their node
_UNCONTROLLED = ("", *_NODE_BOUND)


class Timers:
    """Callbacks due after a delay in loop time (virtual under looptime), fired by `run()`.

    A single heap instead of one task per delay keeps the firing order deterministic: by due time,
    then by scheduling order.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._deferred: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake = anyio.Event()

    def __len__(self) -> int:
        return len(self._heap) + len(self._deferred)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run `callback` once `delay` seconds of loop time have passed."""
        seq = next(self._seq)
        try:
            due = anyio.current_time() + max(0.0, delay)
        except RuntimeError:
            # Set-up code outside the event loop: the delay counts from when run() starts.
            self._deferred.append((delay, seq, callback))
            return
        heapq.heappush(self._heap, (due, seq, callback))
        self._wake.set()

    async def run(self) -> None:
        """Fire callbacks as they fall due, forever (cancel to stop)."""
        while True:
            now = anyio.current_time()
            for delay, seq, callback in self._deferred:
                heapq.heappush(self._heap, (now + max(0.0, delay), seq, callback))
            self._deferred.clear()
            while self._heap and self._heap[0][0] <= now + _EPSILON:
                heapq.heappop(self._heap)[2]()
            # No await since the heap was last read, so no call_later can be missed here.
            self._wake = anyio.Event()
            timeout = self._heap[0][0] - now if self._heap else math.inf
            with anyio.move_on_after(timeout):
                await self._wake.wait()


class FaultInjector:
    """Errors queued per operation name, raised by the next calls of that operation."""

    def __init__(self) -> None:
        self._queued: dict[str, list[BackendError]] = {}

    def fail_next(self, operation: str, error: BackendError | None = None, times: int = 1) -> None:
        """Make the next `times` calls of `operation` raise `error` (a retryable error by default)."""
        error = error or BackendError(f"injected failure of {operation}", code="InjectedFailure")
        self._queued.setdefault(operation, []).extend([error] * times)

    def check(self, operation: str) -> None:
        """Raise the next queued error for `operation`, if any."""
        queued = self._queued.get(operation)
        if queued:
            raise queued.pop(0)


def copy_pod(pod: Pod) -> Pod:
    """A copy sharing no mutable state (the tuples inside are immutable)."""
    return replace(
        pod,
        requests=dict(pod.requests),
        labels=dict(pod.labels),
        annotations=dict(pod.annotations),
        node_selector=dict(pod.node_selector),
    )


def copy_node(node: Node, pods: Iterable[Pod] = ()) -> Node:
    """A copy sharing no mutable state, with `pods` (copied) as its bound pods."""
    return replace(
        node,
        labels=dict(node.labels),
        allocatable=dict(node.allocatable),
        annotations=dict(node.annotations),
        pods=[copy_pod(p) for p in pods],
    )


class RecordedEvent(NamedTuple):
    """A Kubernetes Event the daemon emitted on a pod."""

    pod: str
    reason: str
    message: str
    warning: bool


@dataclass(frozen=True, slots=True)
class PodKill:
    """A pod that died with its node instead of being evicted gracefully."""

    key: str
    time: float
    reason: str
    terminating: bool  # it had been evicted and was still inside its grace period


@dataclass(frozen=True, slots=True)
class NodeRemoval:
    """A Node that went away, with the pods bound to it at that moment (copies)."""

    name: str
    time: float
    reason: str
    pods: tuple[Pod, ...]


@dataclass(frozen=True, slots=True)
class PodTermination:
    """A graceful end asked for through the API: an eviction or a DELETE of a pod."""

    key: str
    time: float
    node: str  # the node the pod was bound to ("" if pending)
    via: str  # "evict" or "delete"
    pod: Pod


@dataclass(slots=True)
class KubeCounters:
    """What happened in the fake cluster, for assertions and simulator reports."""

    binds: int = 0
    evictions: int = 0
    evictions_blocked: int = 0
    deletions: int = 0  # graceful deletes that bypassed PodDisruptionBudgets
    pods_killed: int = 0
    pods_recreated: int = 0
    pods_completed: int = 0


@dataclass(slots=True)
class _Budget:
    namespace: str
    name: str
    selector: LabelSelector
    min_available: int | str | None
    max_unavailable: int | str | None
    pinned: int | None = None


@dataclass(slots=True)
class _PodState:
    pod: Pod
    template: Pod  # what the controller recreates the pod from
    seq: int
    origin: str  # the name before any "-r<n>" suffix
    run_seconds: float | None = None
    terminating_since: float | None = None


def _scaled(value: int | str, total: int) -> int:
    """An IntOrString against `total`, percentages rounded up as the disruption controller does."""
    if isinstance(value, int):
        return value
    if value.endswith("%"):
        return math.ceil(total * int(value[:-1]) / 100)
    return int(value)


def _domain(node: Node, topology_key: str) -> str | None:
    value = node.labels.get(topology_key)
    if value is None and topology_key == LABEL_HOSTNAME:
        return node.name
    return value


class FakeKubernetes:
    """In-memory `KubernetesCluster`: pods, nodes, PodDisruptionBudgets, leases and events."""

    def __init__(self, clock: Clock, *, timers: Timers | None = None) -> None:
        self.clock = clock
        self.timers = timers if timers is not None else Timers()
        self.faults = FaultInjector()
        self.counters = KubeCounters()
        self.events: list[RecordedEvent] = []
        self.kills: list[PodKill] = []
        self.evicted_at: dict[str, float] = {}
        self.completions: list[tuple[str, float]] = []
        self.node_removals: list[NodeRemoval] = []
        self.terminations: list[PodTermination] = []
        self.finished_origins: dict[str, float] = {}  # origin key -> when its Job pod Succeeded
        self._live: dict[str, str] = {}  # origin key -> key of its live pod
        self._pods: dict[str, _PodState] = {}
        self._pending: set[str] = set()
        self._nodes: dict[str, Node] = {}
        self._budgets: dict[tuple[str, str], _Budget] = {}
        self._leases: dict[str, Lease] = {}
        self._daemonsets: list[Pod] = []
        self._subscribers: list[MemoryObjectSendStream[WatchEvent]] = []
        self._restarts: dict[str, int] = {}
        self._seq = itertools.count()
        self._holding = 0  # > 0 while a multi-step change runs: schedule once at its end

    async def run(self) -> None:
        """Run the delayed behaviours (grace periods, job completions) until cancelled."""
        await self.timers.run()

    # --- the KubernetesCluster interface -------------------------------------------------------

    async def watch(self) -> AsyncIterator[WatchEvent]:
        """ADDED for every pod and node, SYNCED, then live changes.

        Events carry copies; nodes come with empty `pods`, as Node objects from the API do.
        """
        send, receive = anyio.create_memory_object_stream[WatchEvent](math.inf)
        # Snapshot and subscription happen without an await in between, so nothing is lost.
        self._send_snapshot(send)
        self._subscribers.append(send)
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

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
            raise BackendError(f"pod {namespace}/{name} not found", retryable=False, code="NotFound")
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
            budgets = [b for b in self._budgets.values() if _selects(b, pod)]
            if len(budgets) > 1:
                raise BackendError(
                    f"pod {key} has more than one PodDisruptionBudget", retryable=False, code="InternalError"
                )
            if budgets:
                if self._disruptions_allowed(budgets[0]) <= 0:
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

    def _terminate(self, key: str, state: _PodState, grace_seconds: int | None) -> None:
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

    async def delete_node(self, name: str) -> None:
        """Delete the Node object; its pods die with it. Deleting a missing node is a no-op."""
        self.faults.check("delete_node")
        self.remove_node(name, "node-deleted")

    async def list_disruption_budgets(self) -> Sequence[DisruptionBudgetStatus]:
        """Every PDB with the disruptions it allows now."""
        self.faults.check("list_disruption_budgets")
        return [
            DisruptionBudgetStatus(b.namespace, b.name, b.selector, self._disruptions_allowed(b))
            for b in self._budgets.values()
        ]

    async def record_event(self, pod: Pod, reason: str, message: str, *, warning: bool = False) -> None:
        """Remember the event for assertions."""
        self.faults.check("record_event")
        self.events.append(RecordedEvent(pod.key, reason, message, warning))

    async def acquire_lease(self, name: str, holder: str, duration_seconds: float) -> Lease:
        """Take the lease if free, expired or ours; otherwise return the other holder's lease."""
        self.faults.check("acquire_lease")
        now = self.clock.now()
        current = self._leases.get(name)
        if (
            current is not None
            and current.holder != holder
            and now < current.renewed + current.duration_seconds
        ):
            return current
        transitions = 0 if current is None else current.transitions + (current.holder != holder)
        lease = Lease(holder, now, duration_seconds, transitions)
        self._leases[name] = lease
        return lease

    # --- test- and world-facing methods --------------------------------------------------------

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
        self._insert(_PodState(pod, template, next(self._seq), pod.name, run_seconds))
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
        if (min_available is None) == (max_unavailable is None):
            raise ValueError("set exactly one of min_available and max_unavailable")
        self._budgets[(namespace, name)] = _Budget(namespace, name, selector, min_available, max_unavailable)

    def pin_disruptions_allowed(self, namespace: str, name: str, allowed: int | None) -> None:
        """Fix a PDB's disruptionsAllowed (None: compute it from pods again)."""
        self._budgets[(namespace, name)].pinned = allowed

    def add_daemonset(self, template: Pod) -> None:
        """A DaemonSet: one copy of `template` bound to every current and future node it tolerates."""
        self._daemonsets.append(replace(copy_pod(template), owner_kind="DaemonSet"))
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
        bound = sorted((s for s in self._pods.values() if s.pod.node_name == name), key=lambda s: s.seq)
        self.node_removals.append(NodeRemoval(name, now, reason, tuple(copy_pod(s.pod) for s in bound)))
        self._holding += 1
        try:
            for state in sorted(self._pods.values(), key=lambda s: s.seq):
                if state.pod.node_name != name:
                    continue
                if state.pod.owner_kind not in _NODE_BOUND:
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
        for send in list(self._subscribers):
            self._send_snapshot(send)

    def pods(self) -> list[Pod]:
        """Copies of all pods, oldest first."""
        return [copy_pod(s.pod) for s in sorted(self._pods.values(), key=lambda s: s.seq)]

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

    def lease(self, name: str) -> Lease | None:
        """The named lease as stored."""
        return self._leases.get(name)

    # --- internals -----------------------------------------------------------------------------

    def _node_view(self, node: Node) -> Node:
        bound = (
            s.pod for s in sorted(self._pods.values(), key=lambda s: s.seq) if s.pod.node_name == node.name
        )
        return copy_node(node, bound)

    def _require_node(self, name: str) -> Node:
        node = self._nodes.get(name)
        if node is None:
            raise BackendError(f"node {name} not found", retryable=False, code="NotFound")
        return node

    def _send_snapshot(self, send: MemoryObjectSendStream[WatchEvent]) -> None:
        for state in sorted(self._pods.values(), key=lambda s: s.seq):
            send.send_nowait(WatchEvent(WatchKind.ADDED, pod=copy_pod(state.pod)))
        for node in sorted(self._nodes.values(), key=lambda n: n.name):
            send.send_nowait(WatchEvent(WatchKind.ADDED, node=copy_node(node)))
        send.send_nowait(WatchEvent(WatchKind.SYNCED))

    def _emit(self, kind: WatchKind, *, pod: Pod | None = None, node: Node | None = None) -> None:
        for send in list(self._subscribers):
            # One copy per watcher so that watchers cannot affect each other either.
            event = WatchEvent(
                kind, pod=copy_pod(pod) if pod else None, node=copy_node(node) if node else None
            )
            try:
                send.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove(send)

    def _insert(self, state: _PodState) -> None:
        self._pods[state.pod.key] = state
        self._live[f"{state.pod.namespace}/{state.origin}"] = state.pod.key
        if not state.pod.node_name and state.pod.phase == "Pending":
            self._pending.add(state.pod.key)
        self._emit(WatchKind.ADDED, pod=state.pod)

    def _place_daemon(self, template: Pod, node: Node) -> None:
        if tolerates_all(template.tolerations, node.taints) is not None:
            return
        if any(node.labels.get(k) != v for k, v in template.node_selector.items()):
            return
        pod = replace(copy_pod(template), name=f"{template.name}-{node.name}", node_name=node.name)
        if pod.key not in self._pods:
            self.add_pod(pod)

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
        pod = state.pod
        if recreate and pod.owner_kind not in _UNCONTROLLED and pod.phase != "Succeeded":
            origin_key = f"{pod.namespace}/{state.origin}"
            count = self._restarts[origin_key] = self._restarts.get(origin_key, 0) + 1
            fresh = replace(
                copy_pod(state.template),
                name=f"{state.origin}-r{count}",
                uid=f"uid-{next(self._seq)}",
                created=self.clock.now(),
            )
            self.counters.pods_recreated += 1
            self._insert(_PodState(fresh, state.template, next(self._seq), state.origin, state.run_seconds))
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

    def _disruptions_allowed(self, budget: _Budget) -> int:
        if budget.pinned is not None:
            return max(0, budget.pinned)
        matching = [s for s in self._pods.values() if _selects(budget, s.pod)]
        expected = len(matching)
        healthy = sum(1 for s in matching if s.pod.phase == "Running" and s.terminating_since is None)
        if budget.max_unavailable is not None:
            desired = expected - _scaled(budget.max_unavailable, expected)
        else:
            assert budget.min_available is not None
            desired = _scaled(budget.min_available, expected)
        return max(0, healthy - desired)

    def _schedule(self) -> None:
        """The default scheduler: bind pending pods, highest priority then oldest first."""
        if not self._pending or self._holding:
            return
        nodes = [
            n for n in sorted(self._nodes.values(), key=lambda n: n.name) if n.ready and not n.unschedulable
        ]
        if not nodes:
            return
        used: dict[str, dict[str, int]] = {n: {} for n in self._nodes}
        bound: dict[str, list[Pod]] = {n: [] for n in self._nodes}
        anti_bound: list[tuple[Pod, Node]] = []
        for state in self._pods.values():
            if state.pod.node_name in used:
                _add_usage(used[state.pod.node_name], state.pod)
                bound[state.pod.node_name].append(state.pod)
                if state.pod.pod_anti_affinity:
                    anti_bound.append((state.pod, self._nodes[state.pod.node_name]))
        order = sorted(
            (self._pods[k] for k in self._pending), key=lambda s: (-s.pod.priority, s.pod.created, s.seq)
        )
        # Binding only uses capacity up, so a shape that fits nowhere stays unplaceable this pass.
        failed: set[object] = set()
        waiting_for_peers = False  # a pod with pod affinity failed: a later binding may let it in
        bound_any = False
        for state in order:
            pod = state.pod
            shape = _shape(pod)
            if shape in failed:
                continue
            target = next((n for n in nodes if self._fits(pod, n, used, bound, anti_bound)), None)
            if target is None:
                failed.add(shape)
                waiting_for_peers = waiting_for_peers or bool(pod.pod_affinity)
                continue
            bound_any = True
            pod.node_name, pod.phase = target.name, "Running"
            _add_usage(used[target.name], pod)
            bound[target.name].append(pod)
            if pod.pod_anti_affinity:
                anti_bound.append((pod, target))
            self._pending.discard(pod.key)
            self.counters.binds += 1
            self._emit(WatchKind.MODIFIED, pod=pod)
            if state.run_seconds is not None:
                self.timers.call_later(state.run_seconds, partial(self._complete, pod.key, pod.uid))
        if waiting_for_peers and bound_any:
            self._schedule()  # the pods just bound may be the peers an affine pod waits for

    def _fits(
        self,
        pod: Pod,
        node: Node,
        used: dict[str, dict[str, int]],
        bound: dict[str, list[Pod]],
        anti_bound: list[tuple[Pod, Node]],
    ) -> bool:
        if tolerates_all(pod.tolerations, node.taints) is not None:
            return False
        if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
            return False
        if pod.node_affinity and not any(all(r.matches(node.labels) for r in t) for t in pod.node_affinity):
            return False
        allocatable = {PODS_RESOURCE: DEFAULT_MAX_PODS, **node.allocatable}
        node_used = used[node.name]
        free = {name: amount - node_used.get(name, 0) for name, amount in allocatable.items()}
        if not fits({**pod.requests, PODS_RESOURCE: 1}, free):
            return False
        if not self._affinity_met(pod, node, bound):
            return False
        return not self._anti_affinity_conflict(pod, node, bound, anti_bound)

    def _affinity_met(self, pod: Pod, node: Node, bound: dict[str, list[Pod]]) -> bool:
        """Required pod affinity: a matching pod runs in the node's domain. As in the real scheduler,
        the first pod of a group whose selector matches the pod itself may go anywhere."""
        for term in pod.pod_affinity:
            domain = _domain(node, term.topology_key)
            if domain is None:
                return False
            namespaces = term.namespaces or (pod.namespace,)
            matching = [
                other_name
                for other_name, others in bound.items()
                if any(o.namespace in namespaces and term.selector.matches(o.labels) for o in others)
            ]
            if not matching:
                if not (pod.namespace in namespaces and term.selector.matches(pod.labels)):
                    return False
                continue
            if all(_domain(self._nodes[n], term.topology_key) != domain for n in matching):
                return False
        return True

    def _anti_affinity_conflict(
        self, pod: Pod, node: Node, bound: dict[str, list[Pod]], anti_bound: list[tuple[Pod, Node]]
    ) -> bool:
        """Required pod anti-affinity in both directions, for any topology key."""
        for term in pod.pod_anti_affinity:
            domain = _domain(node, term.topology_key)
            if domain is None:
                continue
            namespaces = term.namespaces or (pod.namespace,)
            for other_name, others in bound.items():
                if _domain(self._nodes[other_name], term.topology_key) != domain:
                    continue
                if any(o.namespace in namespaces and term.selector.matches(o.labels) for o in others):
                    return True
        # Pods already placed may refuse the newcomer: the real scheduler checks that direction too.
        for other, other_node in anti_bound:
            for term in other.pod_anti_affinity:
                domain = _domain(other_node, term.topology_key)
                if (
                    domain is not None
                    and _domain(node, term.topology_key) == domain
                    and pod.namespace in (term.namespaces or (other.namespace,))
                    and term.selector.matches(pod.labels)
                ):
                    return True
        return False


def _selects(budget: _Budget, pod: Pod) -> bool:
    return (
        pod.namespace == budget.namespace
        and pod.phase not in ("Succeeded", "Failed")
        and budget.selector.matches(pod.labels)
    )


def _add_usage(total: dict[str, int], pod: Pod) -> None:
    for name, amount in pod.requests.items():
        total[name] = total.get(name, 0) + amount
    total[PODS_RESOURCE] = total.get(PODS_RESOURCE, 0) + 1


def _shape(pod: Pod) -> object:
    return (
        pod.namespace,
        tuple(sorted(pod.requests.items())),
        tuple(sorted(pod.labels.items())),
        tuple(sorted(pod.node_selector.items())),
        pod.node_affinity,
        pod.tolerations,
        pod.pod_anti_affinity,
    )


def _apply_annotations(target: dict[str, str], changes: Mapping[str, str | None]) -> None:
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
