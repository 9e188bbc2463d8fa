"""Consolidation decisions: which nodes can go, and why the others stay. Pure: no I/O.

A node is removed when it is empty, or when every pod on it fits on the nodes that stay (placed by
the scheduler's rules, with no new nodes allowed), or when it outlived its NodePool's expireAfter.
Candidates are tried one after the other, and the pods of a removed node are simulated onto the
nodes that stay: a later candidate must find room for those too. Nodes whose pods must not be
disrupted stay: `karpenter.sh/do-not-disrupt` (true, or a duration still running), running jobs
unless the NodePool allows moving them, pods no controller would recreate, and pods a
PodDisruptionBudget protects right now. Disruption budgets cap how many nodes of a pool are in
disruption at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from hpscaler.backends.types import DisruptionBudgetStatus
from hpscaler.config.durations import DurationError, parse_duration
from hpscaler.model import (
    ANNOTATION_DO_NOT_DISRUPT,
    LABEL_HOSTNAME,
    PODS_RESOURCE,
    LabelSelector,
    Node,
    NodePool,
    Pod,
    Taint,
    as_pending,
    tolerates_all,
)
from hpscaler.scheduling.requirements import pod_terms, term_fits_labels
from hpscaler.scheduling.scheduler import class_signature, node_target, solve
from hpscaler.scheduling.types import SchedulingInput

Vector = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float64]

JOB_KINDS = frozenset(
    {
        "Job",
        "PyTorchJob",
        "TFJob",
        "MPIJob",
        "XGBoostJob",
        "PaddleJob",
        "JAXJob",
        "RayJob",
        "TrainJob",
        "HyperPodPyTorchJob",
        "JobSet",
        "Workflow",
    }
)


@dataclass(frozen=True, slots=True)
class Removal:
    """A node to remove and the reason (Karpenter's: Empty, Underutilized, Expired)."""

    node: str
    reason: str
    node_pool: str


@dataclass(slots=True)
class ConsolidationDecision:
    """Nodes to remove now, why every other candidate stays, and when time alone could change that."""

    remove: list[Removal] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    recheck_at: float = math.inf


def _protected_for(pod: Pod) -> float | None:
    """Seconds of `karpenter.sh/do-not-disrupt: <duration>` protection, if the pod has a duration."""
    value = pod.annotations.get(ANNOTATION_DO_NOT_DISRUPT, "")
    if not value or value.lower() == "true":
        return None
    try:
        return parse_duration(value)
    except DurationError:
        return None


def pod_blocker(pod: Pod, pool: NodePool, now: float, pdbs: Sequence[DisruptionBudgetStatus]) -> str | None:
    """Why moving this pod is not allowed right now, or None."""
    value = pod.annotations.get(ANNOTATION_DO_NOT_DISRUPT, "")
    if value:
        if value.lower() == "true":
            return f"pod {pod.key} has {ANNOTATION_DO_NOT_DISRUPT}=true"
        seconds = _protected_for(pod)
        if seconds is not None and now - pod.created < seconds:
            return f"pod {pod.key} has {ANNOTATION_DO_NOT_DISRUPT}={value}, not yet elapsed"
    if pod.owner_kind in JOB_KINDS and not pool.consolidate_running_jobs:
        return f"pod {pod.key} belongs to running {pod.owner_kind} {pod.owner_name}"
    if not pod.owner_kind:
        return f"pod {pod.key} has no controller to recreate it"
    for pdb in pdbs:
        if (
            pdb.namespace == pod.namespace
            and pdb.selector.matches(pod.labels)
            and pdb.disruptions_allowed <= 0
        ):
            return f"pod {pod.key} is protected by PodDisruptionBudget {pdb.namespace}/{pdb.name}"
    return None


def allowed_disruptions(pool: NodePool, reason: str, pool_nodes: int, disrupting: int) -> int:
    """How many more nodes of `pool` may be disrupted for `reason` now (the tightest budget wins)."""
    allowed = pool_nodes
    for budget in pool.disruption.budgets:
        if budget.reasons and reason not in budget.reasons:
            continue
        # Scheduled budgets are treated as always active: stricter than the schedule, never looser.
        text = budget.nodes.strip()
        cap = math.ceil(pool_nodes * float(text[:-1]) / 100) if text.endswith("%") else int(text)
        allowed = min(allowed, cap)
    return max(0, allowed - disrupting)


def decide_consolidation(
    *,
    nodes: Sequence[Node],
    pending: Sequence[Pod],
    pool_of: Callable[[Node], NodePool | None],
    base: SchedulingInput,
    pdbs: Sequence[DisruptionBudgetStatus],
    now: float,
    last_pod_change: Mapping[str, float],
    disrupting: Mapping[str, str],
) -> ConsolidationDecision:
    """Choose nodes to remove. `base` supplies the catalogue and groups for the fit simulation."""
    decision = ConsolidationDecision()
    if pending:
        decision.kept = {n.name: "pods are pending; consolidation waits" for n in nodes}
        return decision
    per_pool_nodes: dict[str, int] = {}
    per_pool_disrupting: dict[str, int] = {}
    pools: dict[str, NodePool] = {}
    for node in nodes:
        pool = pool_of(node)
        if pool is None:
            continue
        pools[node.name] = pool
        per_pool_nodes[pool.name] = per_pool_nodes.get(pool.name, 0) + 1
        if node.name in disrupting:
            per_pool_disrupting[pool.name] = per_pool_disrupting.get(pool.name, 0) + 1

    candidates: list[tuple[tuple[int, float, str], Node, str]] = []
    for node in nodes:
        pool = pools.get(node.name)
        if pool is None or node.name in disrupting or not node.ready:
            continue
        movable = [p for p in node.pods if not p.is_daemonset]
        expire = pool.expire_after_seconds
        expired = expire is not None and now - node.created >= expire
        if expire is not None and not expired:
            decision.recheck_at = min(decision.recheck_at, node.created + expire)
        after = pool.disruption.consolidate_after_seconds
        if not expired:
            if after is None:
                decision.kept[node.name] = "consolidateAfter is Never"
                continue
            settled_at = last_pod_change.get(node.name, node.created) + after
            if now < settled_at:
                decision.kept[node.name] = "pods changed less than consolidateAfter ago"
                decision.recheck_at = min(decision.recheck_at, settled_at)
                continue
        if node.annotations.get(ANNOTATION_DO_NOT_DISRUPT, "").lower() == "true":
            decision.kept[node.name] = f"node has {ANNOTATION_DO_NOT_DISRUPT}=true"
            continue
        for pod in movable:
            seconds = _protected_for(pod)
            if seconds is not None and now < pod.created + seconds:
                decision.recheck_at = min(decision.recheck_at, pod.created + seconds)
        blocker = next((b for b in (pod_blocker(p, pool, now, pdbs) for p in movable) if b), None)
        if blocker is not None:
            decision.kept[node.name] = blocker
            continue
        reason = "Expired" if expired else "Empty" if not movable else "Underutilized"
        if reason == "Underutilized" and pool.disruption.consolidation_policy == "WhenEmpty":
            decision.kept[node.name] = "consolidationPolicy is WhenEmpty"
            continue
        load = sum(p.requests.get("cpu", 0) for p in movable) / max(1, node.allocatable.get("cpu", 1))
        candidates.append(((len(movable), load, node.name), node, reason))
    candidates.sort(key=lambda c: c[0])

    room = _Room([n for n in nodes if n.name not in disrupting], base)
    for _, node, reason in candidates:
        pool = pools[node.name]
        row = room.row[node.name]
        # The node's pods now, including those earlier removals were simulated onto it: they need a
        # place too, or the nodes that stay end up overbooked.
        movable = [p for p in room.pods[row] if not p.is_daemonset]
        used = per_pool_disrupting.get(pool.name, 0)
        if allowed_disruptions(pool, reason, per_pool_nodes[pool.name], used) <= 0:
            decision.kept[node.name] = f"disruption budget of NodePool {pool.name} is used up"
            continue
        if movable and reason != "Expired":
            placement = room.place(row, movable)
            if placement is None:
                decision.kept[node.name] = "its pods do not fit on the other nodes"
                continue
            room.move(placement)
        room.remove(row)
        per_pool_disrupting[pool.name] = used + 1
        decision.remove.append(Removal(node.name, reason, pool.name))
    return decision


_EPS = 1e-9
Placement = dict[int, list[Pod]]
"""Row of a node that stays -> the pods simulated onto it."""


class _Room:
    """The nodes that stay during one decision, with their free capacity as a matrix.

    Consolidation asks, once per candidate, whether a handful of pods fit on the other nodes. Asking
    the scheduler from scratch each time rebuilds every node's state, which made a decision over N
    nodes cost O(N^2 x pods per node). The free capacity here is built once and updated as pods are
    simulated onto nodes, so a candidate costs one vectorised pass over the nodes plus the few nodes
    that actually take its pods.

    Pods without topology constraints (the common case) are placed here as the scheduler places pods
    on existing nodes: fullest node first, each filled with the pod whose demand best
    matches the node's free capacity. Pods with topology constraints or gangs, or that some pod's
    anti-affinity selects, or whose node affinity names a hostname, go to the scheduler itself.
    """

    def __init__(self, nodes: Sequence[Node], base: SchedulingInput) -> None:
        self.base = base
        self.nodes = list(nodes)
        self.row = {n.name: i for i, n in enumerate(self.nodes)}
        self.pods = [list(n.pods) for n in self.nodes]
        names = {PODS_RESOURCE, "cpu", "memory"}
        for node in self.nodes:
            for pod in node.pods:
                names.update(pod.requests)
        self.dims = sorted(names)
        self.col = {name: i for i, name in enumerate(self.dims)}
        count, width = len(self.nodes), len(self.dims)
        self.capacity: Matrix = np.zeros((count, width))
        used: Matrix = np.zeros((count, width))
        for i, node in enumerate(self.nodes):
            for name, amount in node.allocatable.items():
                if name in self.col:
                    self.capacity[i, self.col[name]] = amount
            for pod in node.pods:
                used[i] += self.vector(pod)
        self.residual: Matrix = np.maximum(self.capacity - used, 0.0)
        self.alive = np.ones(count, dtype=bool)
        # Nodes whose free capacity counts as room: Ready and schedulable.
        self.open = np.array([n.ready and not n.unschedulable for n in self.nodes], dtype=bool)
        self.signature = np.zeros(count, dtype=np.int64)
        self.targets: list[tuple[dict[str, str], tuple[Taint, ...]]] = []
        seen: dict[tuple[object, ...], int] = {}
        for i, node in enumerate(self.nodes):
            key, labels, taints = node_target(node)
            found = seen.get(key)
            if found is None:
                found = seen[key] = len(self.targets)
                self.targets.append((labels, taints))
            self.signature[i] = found
        self.compat: dict[tuple[object, ...], npt.NDArray[np.bool_]] = {}
        # What makes the scheduler treat pods apart: the labels topology selectors read, and the
        # anti-affinity terms that could repel a moved pod. Pods only move, so this holds throughout.
        self.repellers: set[tuple[LabelSelector, tuple[str, ...]]] = set()
        label_keys: set[str] = set()
        for node in self.nodes:
            for pod in node.pods:
                for term in pod.pod_anti_affinity:
                    self.repellers.add((term.selector, term.namespaces or (pod.namespace,)))
                selectors = [
                    s.selector for s in pod.topology_spread if s.when_unsatisfiable == "DoNotSchedule"
                ]
                selectors += [t.selector for t in (*pod.pod_affinity, *pod.pod_anti_affinity)]
                for selector in selectors:
                    label_keys.update(k for k, _ in selector.match_labels)
                    label_keys.update(r.key for r in selector.match_expressions)
        self.label_keys = frozenset(label_keys)

    def vector(self, pod: Pod) -> Vector:
        vec = np.zeros(len(self.dims))
        for name, amount in pod.requests.items():
            vec[self.col[name]] += amount
        vec[self.col[PODS_RESOURCE]] += 1
        return vec

    def remove(self, row: int) -> None:
        self.alive[row] = False

    def move(self, placement: Placement) -> None:
        """Put the pods where the simulation placed them, so later candidates see the fuller nodes."""
        for row, pods in placement.items():
            self.pods[row].extend(pods)
            for pod in pods:
                self.residual[row] -= self.vector(pod)

    def place(self, row: int, pods: Sequence[Pod]) -> Placement | None:
        """Where the other nodes that stay take `pods`, or None if some pod finds no room."""
        requested = sorted({PODS_RESOURCE, "cpu", "memory"}.union(*(p.requests for p in pods)))
        cols = np.array([self.col[name] for name in requested], dtype=np.int64)
        need = sum((self.vector(p) for p in pods), np.zeros(len(self.dims)))[cols]
        # Cheap necessary condition first: the other nodes' free capacity, summed, must cover the
        # pods. On a busy cluster it rules out nearly every candidate without a simulation.
        spare = self.residual[self.alive & self.open][:, cols].sum(axis=0)
        if self.alive[row] and self.open[row]:
            spare -= self.residual[row, cols]
        if np.any(need > spare + _EPS):
            return None
        others = self.alive.copy()
        others[row] = False
        if not all(self._unconstrained(p) for p in pods):
            # Every other node, full or not: its pods count in the topology domains.
            return self._solve(np.flatnonzero(others), pods)
        # Only nodes with room for the smallest of the pods can take any of them.
        for name in ("cpu", "memory"):
            smallest = min(p.requests.get(name, 0) for p in pods)
            others &= self.residual[:, self.col[name]] >= smallest
        return self._fill(np.flatnonzero(others), cols, pods)

    def _unconstrained(self, pod: Pod) -> bool:
        if pod.gang or pod.pod_affinity or pod.pod_anti_affinity:
            return False
        if any(s.when_unsatisfiable == "DoNotSchedule" for s in pod.topology_spread):
            return False
        if LABEL_HOSTNAME in pod.node_selector or any(
            r.key == LABEL_HOSTNAME for term in pod.node_affinity for r in term
        ):
            return False
        return not any(
            pod.namespace in namespaces and selector.matches(pod.labels)
            for selector, namespaces in self.repellers
        )

    def _compatible(self, pod: Pod) -> npt.NDArray[np.bool_]:
        """Per node signature: whether the pod tolerates its taints and its labels satisfy the pod."""
        key = (pod.tolerations, tuple(sorted(pod.node_selector.items())), pod.node_affinity)
        found = self.compat.get(key)
        if found is None:
            terms = pod_terms(pod)
            found = np.array(
                [
                    tolerates_all(pod.tolerations, taints) is None
                    and any(term_fits_labels(term, labels) for term in terms)
                    for labels, taints in self.targets
                ],
                dtype=bool,
            )
            self.compat[key] = found
        return found

    def _fill(
        self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64], pods: Sequence[Pod]
    ) -> Placement | None:
        """The scheduler's placement on existing nodes (`place_on_existing` + `fill`), for few pods."""
        shapes: list[_Shape] = []
        by_key: dict[tuple[object, ...], _Shape] = {}
        for pod in sorted(pods, key=lambda p: (p.created, p.key)):
            demand = tuple(float(x) for x in self.vector(pod)[cols])
            key = (class_signature(pod, self.label_keys), demand)
            shape = by_key.get(key)
            if shape is None:
                shape = by_key[key] = _Shape(demand, self._compatible(pod))
                shapes.append(shape)
            shape.pods.append(pod)
            shape.left += 1
        residual = self.residual[np.ix_(rows, cols)]
        signatures = self.signature[rows]
        # A node no shape fits now can take nothing later: its free capacity only changes when it is
        # filled, and the pods left to place only get fewer. Skip those nodes up front.
        useful = np.zeros(len(rows), dtype=bool)
        for shape in shapes:
            fit = np.all(np.array(shape.demand) <= residual + _EPS, axis=1)
            useful |= shape.compatible[signatures] & fit
        # Fullest nodes first (the scheduler's order), ties in the order the nodes were given.
        load = (residual / np.maximum(self.capacity[np.ix_(rows, cols)], 1.0)).sum(axis=1)
        kept = np.flatnonzero(useful)
        order = kept[np.lexsort((rows[kept], load[kept]))].tolist()
        placement: Placement = {}
        left = len(pods)
        for i in order:
            row, signature = int(rows[i]), int(signatures[i])
            free = residual[i].tolist()
            scale = [1.0 / c**2 if c > 0 else 0.0 for c in self.capacity[row, cols].tolist()]
            weight = [f * s for f, s in zip(free, scale, strict=True)]
            open_shapes = [s for s in shapes if s.left and s.compatible[signature]]
            while open_shapes:
                open_shapes = [
                    s
                    for s in open_shapes
                    if s.left and all(d <= f + _EPS for d, f in zip(s.demand, free, strict=True))
                ]
                if not open_shapes:
                    break
                best = max(
                    open_shapes, key=lambda s: sum(d * w for d, w in zip(s.demand, weight, strict=True))
                )
                placement.setdefault(row, []).append(best.pods[len(best.pods) - best.left])
                best.left -= 1
                left -= 1
                free = [f - d for f, d in zip(free, best.demand, strict=True)]
                weight = [f * s for f, s in zip(free, scale, strict=True)]
            if not left:
                return placement
        return None

    def _solve(self, rows: npt.NDArray[np.int64], pods: Sequence[Pod]) -> Placement | None:
        """Ask the scheduler, with the nodes that stay as they are now and no new nodes allowed."""
        others = [replace(self.nodes[i], pods=list(self.pods[i])) for i in rows.tolist()]
        inp = SchedulingInput(
            pods=[as_pending(p) for p in pods],
            nodes=others,
            node_pools=(),
            node_classes=(),
            groups=(),
            catalogue=self.base.catalogue,
        )
        plan = solve(inp, preferences=False)  # a fit check, run per candidate: preferences are not tried
        if plan.unschedulable or plan.new_nodes:
            return None
        by_key = {p.key: p for p in pods}
        return {self.row[name]: [by_key[k] for k in keys] for name, keys in plan.existing.items()}


@dataclass(slots=True, eq=False)
class _Shape:
    """Pods of a candidate with the same constraints and requests."""

    demand: tuple[float, ...]
    compatible: npt.NDArray[np.bool_]  # per node signature
    pods: list[Pod] = field(default_factory=list)
    left: int = 0
