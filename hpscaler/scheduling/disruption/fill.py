"""The scheduler's placement of a few pods on existing nodes (`place_on_existing` + `fill`), on a `Room`.

Nodes are tried fullest first; each takes, one pod at a time, the pod whose demand best matches its
free capacity (`packing.best_row`, the scheduler's own choice). Zone spreads are checked as the
scheduler checks them: a node's domain may hold at most maxSkew more matching pods than the emptiest
domain the pods may use, counting the pods on the nodes that stay (not those of the node that
leaves) and the ones placed so far.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from hpscaler.model import Pod, TopologySpread
from hpscaler.scheduling.disruption.spreads import SpreadKey, Tally
from hpscaler.scheduling.packing import EPS, best_row

if TYPE_CHECKING:
    from hpscaler.scheduling.disruption.room import Matrix, Placement, Room

Counts = dict[SpreadKey, dict[str, int]]
_CHUNK = 64  # nodes ordered and checked at a time


@dataclass(slots=True, eq=False)
class Shape:
    """Pods of a candidate with the same constraints and requests."""

    demand: tuple[float, ...]
    compatible: npt.NDArray[np.bool_]  # per node signature
    pods: list[Pod] = field(default_factory=list)
    left: int = 0
    # DoNotSchedule spreads (not by hostname): (constraint, eligible domains, selects its own pods)
    spreads: list[tuple[TopologySpread, frozenset[str], bool]] = field(default_factory=list)


def fill(
    room: Room, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64], pods: Sequence[Pod], leaving: int
) -> Placement | None:
    """Where the nodes `rows` take `pods` (resources `cols`), or None if some pod finds no room."""
    shapes: list[Shape] = []
    by_key: dict[tuple[object, ...], Shape] = {}
    for pod in sorted(pods, key=lambda p: (p.created, p.key)):
        demand = tuple(room.vector(pod)[cols].tolist())
        signature, compatible = room.pod_class(pod)
        key = (signature, demand)
        shape = by_key.get(key)
        if shape is None:
            shape = by_key[key] = Shape(demand, compatible)
            shapes.append(shape)
        shape.pods.append(pod)
        shape.left += 1
    counts = _local_counts(room, shapes, leaving)
    demands = np.array([s.demand for s in shapes])
    spreads = _SpreadCheck(room, shapes, counts)
    placement: Placement = {}
    left = len(pods)
    for chunk in _fullest_first(room, rows, cols):
        left = _fill_nodes(room, chunk, cols, shapes, demands, spreads, placement, left)
        if not left:
            return placement
    return None


def _fullest_first(
    room: Room, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
) -> Iterator[npt.NDArray[np.int64]]:
    """`rows` fullest first (the scheduler's order), ties in the order given, a few dozen at a time:
    the pods of a candidate nearly always find room on the first few, so most are never sorted."""
    load = room.load(cols)[rows]
    remaining = np.arange(len(rows))
    while remaining.size:
        if remaining.size > _CHUNK:
            # Every node as full as the chunk's emptiest, so ties stay in the order given.
            threshold = np.partition(load[remaining], _CHUNK - 1)[_CHUNK - 1]
            take = load[remaining] <= threshold
            part, remaining = remaining[take], remaining[~take]
        else:
            part, remaining = remaining, remaining[:0]
        yield rows[part[np.lexsort((part, load[part]))]]


def _fill_nodes(
    room: Room,
    nodes: npt.NDArray[np.int64],
    cols: npt.NDArray[np.int64],
    shapes: list[Shape],
    demands: Matrix,
    spreads: _SpreadCheck,
    placement: Placement,
    left: int,
) -> int:
    """Fill `nodes` in their order with what fits of the shapes' pods; the pods still left."""
    at = (nodes[:, None], cols)
    residual, scales = room.residual[at], room.scale[at]
    signatures = room.signature[nodes]
    # Which shape each node could take at the start. A node's free capacity changes only when it is
    # filled, and each node is filled once, so this holds when its turn comes; and a node no shape
    # fits now can take nothing later (the pods left only get fewer).
    fit = np.all(demands[:, None, :] <= residual[None, :, :] + EPS, axis=2)
    fit &= np.array([s.compatible[signatures] for s in shapes])
    takers = fit.T.tolist()
    for i in np.flatnonzero(fit.any(axis=0)).tolist():
        row, signature = int(nodes[i]), int(signatures[i])
        open_shapes = [
            k
            for k, fits in enumerate(takers[i])
            if fits and shapes[k].left and spreads.allows(k, row, signature)
        ]
        if not open_shapes:
            continue
        free, scale = residual[i].copy(), scales[i]
        while open_shapes:
            chosen = open_shapes[0]
            if len(open_shapes) > 1:
                chosen = open_shapes[best_row(demands[open_shapes], free, scale)[0]]
            best = shapes[chosen]
            moved = best.pods[len(best.pods) - best.left]
            spreads.placed(best, moved, row)
            placement.setdefault(row, []).append(moved)
            best.left -= 1
            left -= 1
            free -= demands[chosen]
            room_left = (free + EPS).tolist()
            open_shapes = [
                k
                for k in open_shapes
                if shapes[k].left
                and all(d <= f for d, f in zip(shapes[k].demand, room_left, strict=True))
                and spreads.allows(k, row, signature)
            ]
        if not left:
            break
    return left


class _SpreadCheck:
    """Whether a shape's spreads let it onto a node, remembered per node signature (which fixes every
    domain but the hostname's, and `fill` checks no hostname spread) until a placement changes the
    counts the shape reads."""

    def __init__(self, room: Room, shapes: list[Shape], counts: Counts) -> None:
        self.room = room
        self.shapes = shapes
        self.counts = counts
        self.known: list[dict[int, bool]] = [{} for _ in shapes]
        self.readers: dict[SpreadKey, list[int]] = {}
        for k, shape in enumerate(shapes):
            for spread, _, _ in shape.spreads:
                key = (spread.topology_key, spread.selector, shape.pods[0].namespace)
                self.readers.setdefault(key, []).append(k)

    def allows(self, shape: int, row: int, signature: int) -> bool:
        """Whether shape `shape` may go onto node `row` (of `signature`) with the counts as they are."""
        if not self.shapes[shape].spreads:
            return True
        known = self.known[shape]
        found = known.get(signature)
        if found is None:
            found = known[signature] = _spread_allows(self.room, self.shapes[shape], row, self.counts)
        return found

    def placed(self, shape: Shape, pod: Pod, row: int) -> None:
        """Count `pod`, placed onto node `row`, in the spreads of its shape."""
        # `self_match` holds for every pod of the shape: they share the labels selectors read.
        for spread, _, self_match in shape.spreads:
            domain = self.room.nodes[row].labels.get(spread.topology_key)
            if domain is not None and self_match:
                key = (spread.topology_key, spread.selector, pod.namespace)
                local = self.counts[key]
                local[domain] = local.get(domain, 0) + 1
                for reader in self.readers[key]:
                    self.known[reader].clear()


def _local_counts(room: Room, shapes: list[Shape], leaving: int) -> Counts:
    """The spread counts the shapes read, without the pods of the node they leave; and each
    spread's eligible domains (the domains of the nodes that stay which the shape may use)."""
    counts: Counts = {}
    gone = Tally(room.pods[leaving]) if room.alive[leaving] else None
    for shape in shapes:
        pod = shape.pods[0]
        for spread in pod.topology_spread:
            if spread.when_unsatisfiable != "DoNotSchedule":
                continue
            key = (spread.topology_key, spread.selector, pod.namespace)
            if key not in counts:
                counts[key] = dict(room.spreads.counts(spread, pod.namespace))
                domain = room.nodes[leaving].labels.get(spread.topology_key)
                if gone is not None and domain is not None:
                    matched = gone.matching(spread.selector, pod.namespace)
                    if matched:
                        counts[key][domain] = counts[key].get(domain, 0) - matched
            domains = room.eligible_domains(spread.topology_key, shape.compatible)
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
