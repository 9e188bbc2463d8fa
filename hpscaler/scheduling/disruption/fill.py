"""The scheduler's placement of a few pods on existing nodes (`place_on_existing` + `fill`), on a `Room`.

Nodes are tried fullest first; each takes, one pod at a time, the pod whose demand best matches its
free capacity (`packing.best_row`, the scheduler's own choice). Zone spreads are checked as the
scheduler checks them: a node's domain may hold at most maxSkew more matching pods than the emptiest
domain the pods may use, counting the pods on the nodes that stay (not those of the node that
leaves) and the ones placed so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from hpscaler.model import LabelSelector, Pod, TopologySpread
from hpscaler.scheduling.packing import EPS, best_row
from hpscaler.scheduling.scheduler import class_signature

if TYPE_CHECKING:
    from hpscaler.scheduling.disruption.room import Placement, Room

SpreadKey = tuple[str, LabelSelector, str]
"""A spread's topology key, its selector and the namespace it counts in."""
Counts = dict[SpreadKey, dict[str, int]]


@dataclass(slots=True, eq=False)
class Shape:
    """Pods of a candidate with the same constraints and requests."""

    demand: tuple[float, ...]
    compatible: npt.NDArray[np.bool_]  # per node signature
    pods: list[Pod] = field(default_factory=list)
    left: int = 0
    # DoNotSchedule spreads (not by hostname): (constraint, eligible domains, selects its own pods)
    spreads: list[tuple[TopologySpread, frozenset[str], bool]] = field(default_factory=list)


def matching(pods: Sequence[Pod], selector: LabelSelector, namespace: str) -> int:
    """How many of `pods` in `namespace` the selector selects (a one-label selector without `matches`)."""
    if len(selector.match_labels) == 1 and not selector.match_expressions:
        ((key, value),) = selector.match_labels
        return sum(1 for p in pods if p.labels.get(key) == value and p.namespace == namespace)
    return sum(1 for p in pods if p.namespace == namespace and selector.matches(p.labels))


def fill(
    room: Room, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64], pods: Sequence[Pod], leaving: int
) -> Placement | None:
    """Where the nodes `rows` take `pods` (resources `cols`), or None if some pod finds no room."""
    shapes: list[Shape] = []
    by_key: dict[tuple[object, ...], Shape] = {}
    for pod in sorted(pods, key=lambda p: (p.created, p.key)):
        demand = tuple(float(x) for x in room.vector(pod)[cols])
        key = (class_signature(pod, room.label_keys), demand)
        shape = by_key.get(key)
        if shape is None:
            shape = by_key[key] = Shape(demand, room.compatible(pod))
            shapes.append(shape)
        shape.pods.append(pod)
        shape.left += 1
    counts = _local_counts(room, shapes, leaving)
    residual = room.residual[np.ix_(rows, cols)]
    signatures = room.signature[rows]
    demands = np.array([s.demand for s in shapes])
    # A node no shape fits now can take nothing later: its free capacity only changes when it is
    # filled, and the pods left to place only get fewer. Skip those nodes up front.
    useful = np.zeros(len(rows), dtype=bool)
    for shape in shapes:
        fit = np.all(np.array(shape.demand) <= residual + EPS, axis=1)
        useful |= shape.compatible[signatures] & fit
    # Fullest nodes first (the scheduler's order), ties in the order the nodes were given.
    load = (residual / np.maximum(room.capacity[np.ix_(rows, cols)], 1.0)).sum(axis=1)
    kept = np.flatnonzero(useful)
    order = kept[np.lexsort((rows[kept], load[kept]))].tolist()
    placement: Placement = {}
    left = len(pods)
    for i in order:
        row, signature = int(rows[i]), int(signatures[i])
        free = residual[i].copy()
        capacity = room.capacity[row, cols]
        scale = np.divide(1.0, capacity**2, out=np.zeros_like(capacity), where=capacity > 0)
        open_shapes = [k for k, s in enumerate(shapes) if s.left and s.compatible[signature]]
        while open_shapes:
            open_shapes = [
                k
                for k in open_shapes
                if shapes[k].left
                and all(d <= f + EPS for d, f in zip(shapes[k].demand, free.tolist(), strict=True))
                and (not shapes[k].spreads or _spread_allows(room, shapes[k], row, counts))
            ]
            if not open_shapes:
                break
            chosen = open_shapes[best_row(demands[open_shapes], free, scale)[0]]
            best = shapes[chosen]
            moved = best.pods[len(best.pods) - best.left]
            for spread, _, _ in best.spreads:
                domain = room.nodes[row].labels.get(spread.topology_key)
                if domain is not None and spread.selector.matches(moved.labels):
                    local = counts[(spread.topology_key, spread.selector, moved.namespace)]
                    local[domain] = local.get(domain, 0) + 1
            placement.setdefault(row, []).append(moved)
            best.left -= 1
            left -= 1
            free -= demands[chosen]
        if not left:
            return placement
    return None


def _local_counts(room: Room, shapes: list[Shape], leaving: int) -> Counts:
    """The spread counts the shapes read, without the pods of the node they leave; and each
    spread's eligible domains (the domains of the nodes that stay which the shape may use)."""
    counts: Counts = {}
    alive = set(room.signature[room.alive].tolist())
    for shape in shapes:
        pod = shape.pods[0]
        for spread in pod.topology_spread:
            if spread.when_unsatisfiable != "DoNotSchedule":
                continue
            key = (spread.topology_key, spread.selector, pod.namespace)
            if key not in counts:
                counts[key] = dict(room.spread_counts(spread, pod.namespace))
                if room.alive[leaving]:
                    domain = room.nodes[leaving].labels.get(spread.topology_key)
                    gone = matching(room.pods[leaving], spread.selector, pod.namespace)
                    if domain is not None and gone:
                        counts[key][domain] = counts[key].get(domain, 0) - gone
            domains = frozenset(
                labels[spread.topology_key]
                for sig, (labels, _) in enumerate(room.targets)
                if sig in alive and shape.compatible[sig] and spread.topology_key in labels
            )
            shape.spreads.append((spread, domains, spread.selector.matches(pod.labels)))
    return counts


def _spread_allows(room: Room, shape: Shape, row: int, counts: Counts) -> bool:
    namespace = shape.pods[0].namespace
    for spread, domains, self_match in shape.spreads:
        domain = room.nodes[row].labels.get(spread.topology_key)
        if domain is None or domain not in domains:
            return False
        local = counts[(spread.topology_key, spread.selector, namespace)]
        low = 0 if len(domains) < spread.min_domains else min(local.get(d, 0) for d in domains)
        if local.get(domain, 0) + (1 if self_match else 0) - low > spread.max_skew:
            return False
    return True
