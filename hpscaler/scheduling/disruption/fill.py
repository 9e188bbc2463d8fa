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

_CHUNK = 64  # nodes ordered and checked at a time


@dataclass(frozen=True, slots=True)
class ShapeSpread:
    """A DoNotSchedule spread (not by hostname) of a shape's pods, as `fill` checks it."""

    constraint: TopologySpread
    domains: frozenset[str]  # the domains of the nodes that stay which the shape may use
    self_match: bool  # the spread's selector selects the shape's own pods
    counts: dict[str, int]  # matching pods per domain: the nodes that stay, and the pods placed so far


@dataclass(slots=True, eq=False)
class Shape:
    """Pods of a candidate with the same constraints and requests."""

    demand: tuple[float, ...]
    compatible: npt.NDArray[np.bool_]  # per node signature
    pods: list[Pod] = field(default_factory=list)
    left: int = 0
    spreads: list[ShapeSpread] = field(default_factory=list)


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
    _local_counts(room, shapes, leaving)
    demands = np.array([s.demand for s in shapes])
    spreads = _SpreadCheck(room, shapes)
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
            spreads.placed(best, row)
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

    def __init__(self, room: Room, shapes: list[Shape]) -> None:
        self.room = room
        self.shapes = shapes
        self.known: list[dict[int, bool]] = [{} for _ in shapes]
        self.readers: dict[int, list[int]] = {}  # id of a counts dict -> the shapes that read it
        for k, shape in enumerate(shapes):
            for spread in shape.spreads:
                self.readers.setdefault(id(spread.counts), []).append(k)

    def allows(self, shape: int, row: int, signature: int) -> bool:
        """Whether shape `shape` may go onto node `row` (of `signature`) with the counts as they are."""
        if not self.shapes[shape].spreads:
            return True
        known = self.known[shape]
        found = known.get(signature)
        if found is None:
            found = known[signature] = _spread_allows(self.room, self.shapes[shape], row)
        return found

    def placed(self, shape: Shape, row: int) -> None:
        """Count a pod of `shape`, placed onto node `row`, in the spreads it counts in."""
        # `self_match` holds for every pod of the shape: they share the labels selectors read.
        for spread in shape.spreads:
            domain = self.room.nodes[row].labels.get(spread.constraint.topology_key)
            if domain is not None and spread.self_match:
                spread.counts[domain] = spread.counts.get(domain, 0) + 1
                for reader in self.readers[id(spread.counts)]:
                    self.known[reader].clear()


def _local_counts(room: Room, shapes: list[Shape], leaving: int) -> None:
    """Give each shape its DoNotSchedule spreads: the counts they read, without the pods of the node
    they leave (one dict per spread, shared by the shapes that read it), and the domains of the
    nodes that stay which the shape may use."""
    counts: dict[SpreadKey, dict[str, int]] = {}
    gone = Tally(room.pods[leaving]) if room.alive[leaving] else None
    for shape in shapes:
        pod = shape.pods[0]
        for spread in pod.topology_spread:
            if spread.when_unsatisfiable != "DoNotSchedule":
                continue
            key = (spread.topology_key, spread.selector, pod.namespace)
            local = counts.get(key)
            if local is None:
                local = counts[key] = dict(room.spreads.counts(spread, pod.namespace))
                domain = room.nodes[leaving].labels.get(spread.topology_key)
                if gone is not None and domain is not None:
                    matched = gone.matching(spread.selector, pod.namespace)
                    if matched:
                        local[domain] = local.get(domain, 0) - matched
            domains = room.eligible_domains(spread.topology_key, shape.compatible)
            shape.spreads.append(ShapeSpread(spread, domains, spread.selector.matches(pod.labels), local))


def _spread_allows(room: Room, shape: Shape, row: int) -> bool:
    for spread in shape.spreads:
        constraint, domains, local = spread.constraint, spread.domains, spread.counts
        domain = room.nodes[row].labels.get(constraint.topology_key)
        if domain is None or domain not in domains:
            return False
        low = 0 if len(domains) < constraint.min_domains else min(local.get(d, 0) for d in domains)
        if local.get(domain, 0) + (1 if spread.self_match else 0) - low > constraint.max_skew:
            return False
    return True
