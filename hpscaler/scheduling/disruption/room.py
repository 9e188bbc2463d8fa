"""The nodes that stay during one consolidation decision, with their free capacity as a matrix.

Consolidation asks, once per candidate, whether a handful of pods fit on the other nodes. Asking the
scheduler from scratch each time rebuilds every node's state, which made a decision over N nodes cost
O(N^2 x pods per node). The free capacity here is built once and updated as pods are simulated onto
nodes, so a candidate costs one vectorised pass over the nodes plus the few nodes that take its pods.

Pods without topology constraints (the common case), and pods whose only constraints are
DoNotSchedule spreads over a key other than the hostname, are placed by `fill` as the scheduler
places pods on existing nodes. Pods with other topology constraints or gangs, or that some pod's
anti-affinity selects, or whose node affinity names a hostname, go to the scheduler itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from hpscaler.model import (
    LABEL_HOSTNAME,
    PODS_RESOURCE,
    LabelSelector,
    Node,
    Pod,
    Taint,
    as_pending,
    tolerates_all,
)
from hpscaler.scheduling.disruption.fill import fill
from hpscaler.scheduling.disruption.spreads import SpreadCounts
from hpscaler.scheduling.packing import EPS
from hpscaler.scheduling.requirements import pod_terms, term_fits_labels
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.signatures import class_signature, node_target
from hpscaler.scheduling.types import SchedulingInput

Vector = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float64]
Placement = dict[int, list[Pod]]
"""Row of a node that stays -> the pods simulated onto it."""


class Room:
    """The nodes that stay: their pods, free capacity, and the spread counts read so far."""

    def __init__(self, nodes: Sequence[Node], base: SchedulingInput) -> None:
        """`base` supplies the catalogue for the scheduler's fit checks."""
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
        # Pods only move between nodes that hold them, so a pod's id names it throughout.
        self.vectors: dict[int, Vector] = {}
        self.classes: dict[int, tuple[tuple[object, ...], npt.NDArray[np.bool_]]] = {}
        self.loads: dict[tuple[int, ...], Vector] = {}  # per set of resource columns: `load(cols)`
        self.fill_ok: dict[int, bool] = {}
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
        # How `fill` weighs each resource of a node when it picks the pod that fits best (the
        # scheduler's `1 / capacity^2`; 0 where a node has none of it).
        self.scale: Matrix = np.divide(
            1.0, self.capacity**2, out=np.zeros_like(self.capacity), where=self.capacity > 0
        )
        self.alive = np.ones(count, dtype=bool)
        # Nodes whose free capacity counts as room: Ready and schedulable; and their free capacity
        # summed (exact: requests and capacities are whole numbers, well within a float's 53 bits).
        self.open = np.array([n.ready and not n.unschedulable for n in self.nodes], dtype=bool)
        self.spare: Vector = self.residual[self.open].sum(axis=0)
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
        # Nodes that stay per signature: the domains a spread may use are those with some left.
        self.live = np.bincount(self.signature, minlength=len(self.targets))
        self.domains: dict[tuple[str, int], frozenset[str]] = {}
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
        self.spreads = SpreadCounts(self.nodes, self.pods, self.alive)

    def vector(self, pod: Pod) -> Vector:
        """The pod's requests (and one pod) over the room's resources (not to be written to)."""
        vec = self.vectors.get(id(pod))
        if vec is None:
            vec = np.zeros(len(self.dims))
            for name, amount in pod.requests.items():
                vec[self.col[name]] += amount
            vec[self.col[PODS_RESOURCE]] += 1
            self.vectors[id(pod)] = vec
        return vec

    def remove(self, row: int) -> None:
        """The node leaves, with whatever pods are on it."""
        if not self.alive[row]:
            return
        self.spreads.add(row, self.pods[row], -1)
        self.alive[row] = False
        if self.open[row]:
            self.spare -= self.residual[row]
        signature = self.signature[row]
        self.live[signature] -= 1
        if not self.live[signature]:
            self.domains.clear()  # the last node of its kind: its domains may be gone

    def eligible_domains(self, topology_key: str, compatible: npt.NDArray[np.bool_]) -> frozenset[str]:
        """The `topology_key` domains of the nodes that stay whose signature `compatible` allows.
        (`compatible` is one of the arrays `compatible()` keeps, so its id names it.)"""
        key = (topology_key, id(compatible))
        found = self.domains.get(key)
        if found is None:
            found = self.domains[key] = frozenset(
                labels[topology_key]
                for sig, (labels, _) in enumerate(self.targets)
                if self.live[sig] and compatible[sig] and topology_key in labels
            )
        return found

    def move(self, placement: Placement) -> None:
        """Put the pods where the simulation placed them, so later candidates see the fuller nodes."""
        for row, pods in placement.items():
            self.spreads.add(row, pods, 1)
            self.pods[row].extend(pods)
            for pod in pods:
                self.residual[row] -= self.vector(pod)
                if self.open[row]:
                    self.spare -= self.vector(pod)
            if self.loads:
                free, capacity = self.residual[row].tolist(), self.capacity[row].tolist()
                for cols, load in self.loads.items():
                    load[row] = sum(free[c] / max(capacity[c], 1.0) for c in cols)

    def place(self, row: int, pods: Sequence[Pod]) -> Placement | None:
        """Where the other nodes that stay take `pods`, or None if some pod finds no room."""
        requested = sorted({PODS_RESOURCE, "cpu", "memory"}.union(*(p.requests for p in pods)))
        cols = np.array([self.col[name] for name in requested], dtype=np.int64)
        need = sum((self.vector(p) for p in pods), np.zeros(len(self.dims)))[cols]
        # Cheap necessary condition first: the other nodes' free capacity, summed, must cover the
        # pods. On a busy cluster it rules out nearly every candidate without a simulation.
        spare = self.spare[cols]
        if self.alive[row] and self.open[row]:
            spare = spare - self.residual[row, cols]
        if np.any(need > spare + EPS):
            return None
        others = self.alive.copy()
        others[row] = False
        if not all(self.fillable(p) for p in pods):
            # Every other node, full or not: its pods count in the topology domains.
            return self.solve(np.flatnonzero(others), pods)
        # Only nodes with room for the smallest of the pods can take any of them.
        for name in ("cpu", "memory"):
            smallest = min(p.requests.get(name, 0) for p in pods)
            others &= self.residual[:, self.col[name]] >= smallest
        return fill(self, np.flatnonzero(others), cols, pods, row)

    def fillable(self, pod: Pod) -> bool:
        """Whether `fill` may place the pod: no constraints, or zone spreads only (remembered: what
        decides it does not change while the pod moves)."""
        found = self.fill_ok.get(id(pod))
        if found is None:
            found = self.fill_ok[id(pod)] = self.unconstrained(pod) or self.spread_only(pod)
        return found

    def unconstrained(self, pod: Pod, zone_spreads: bool = False) -> bool:
        """Whether `fill` may place the pod (`zone_spreads`: DoNotSchedule spreads over a key other
        than the hostname are allowed, `fill` checks them)."""
        if pod.gang or pod.pod_affinity or pod.pod_anti_affinity:
            return False
        if any(
            s.when_unsatisfiable == "DoNotSchedule" and (not zone_spreads or s.topology_key == LABEL_HOSTNAME)
            for s in pod.topology_spread
        ):
            return False
        if LABEL_HOSTNAME in pod.node_selector or any(
            r.key == LABEL_HOSTNAME for term in pod.node_affinity for r in term
        ):
            return False
        return not any(
            pod.namespace in namespaces and selector.matches(pod.labels)
            for selector, namespaces in self.repellers
        )

    def spread_only(self, pod: Pod) -> bool:
        """Whether the pod's only constraints are DoNotSchedule spreads over a key other than the
        hostname (zone spreads): `fill` checks those against counts kept per domain, so the pod does
        not need a full scheduler pass over every node."""
        return any(
            s.when_unsatisfiable == "DoNotSchedule" for s in pod.topology_spread
        ) and self.unconstrained(pod, zone_spreads=True)

    def pod_class(self, pod: Pod) -> tuple[tuple[object, ...], npt.NDArray[np.bool_]]:
        """What tells the pod apart for the scheduler (`class_signature`), and `compatible(pod)`."""
        found = self.classes.get(id(pod))
        if found is None:
            found = self.classes[id(pod)] = (class_signature(pod, self.label_keys), self.compatible(pod))
        return found

    def load(self, cols: npt.NDArray[np.int64]) -> Vector:
        """Per node: how much of its capacity is free, summed over the resources `cols` (0 = full)."""
        key = tuple(cols.tolist())
        found = self.loads.get(key)
        if found is None:
            free = self.residual[:, cols] / np.maximum(self.capacity[:, cols], 1.0)
            found = self.loads[key] = free.sum(axis=1)
        return found

    def compatible(self, pod: Pod) -> npt.NDArray[np.bool_]:
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

    def solve(self, rows: npt.NDArray[np.int64], pods: Sequence[Pod]) -> Placement | None:
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
