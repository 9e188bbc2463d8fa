"""What the packer works on (pod classes, shapes, bins) and how it picks the next run of pods for a bin.

A bin is filled bin-centrically: the next pods are those whose demand has the largest dot product with
the bin's residual capacity (each resource normalised by the bin's capacity). Shapes of different
classes with equal requests score the same, so scoring works on distinct demands ("demand groups"),
and the packer places a whole run of one demand at once: placing demand s lowers every score t by
G[t, s] = d_t . diag(scale) . d_s, so how long s stays the best choice (against the demands that still
fit) has a closed form, and a run gives the same sequence as placing one pod at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hpscaler.model import LABEL_ZONE, Pod
from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.options import Option
from hpscaler.scheduling.requirements import KeySets

Vector = npt.NDArray[np.float64]
EPS = 1e-9
_RUN_SLACK = 1e-9  # relative: float noise must not end a run one pod early or late


def fits(demand: Vector, free: Vector) -> bool:
    """Whether `demand` fits into `free` on every resource."""
    return bool((demand <= free + EPS).all())  # the method: np.all's wrapper costs more than the test


@dataclass(slots=True)
class PodClass:
    """Pods that share every scheduling constraint and the labels selectors read (requests may differ)."""

    index: int
    pod: Pod
    terms: tuple[KeySets, ...]
    options_key: int  # classes with one key are compatible with the same launch options
    topology: topo.ClassTopology = field(default_factory=topo.ClassTopology)
    options: list[Option] = field(default_factory=list)  # compatible launch options, best first
    option_ids: frozenset[int] = frozenset()
    # Bins with room that topology closed to the class at the level of a domain (zone), which later
    # placements may reopen: bin signature -> bin name -> bin.
    parked: dict[int, dict[str, Bin]] = field(default_factory=dict)
    min_demand: Vector | None = None  # elementwise minimum over the class's shapes
    left: int = 0  # pods of the class not placed yet


@dataclass(slots=True, eq=False)
class Bin:
    """A node pods can be packed onto: existing, in flight, or new."""

    name: str
    kind: str
    labels: dict[str, str]
    residual: Vector
    capacity: Vector
    signature: int  # bins with one signature have the same labels (but hostname) and taints
    option: Option | None = None
    placed: list[Pod] = field(default_factory=list)
    classes: set[int] = field(default_factory=set)  # indexes of the classes placed here

    @property
    def zone(self) -> str:
        """The node's availability zone ("" if unknown)."""
        return self.labels.get(LABEL_ZONE, "")

    def fits(self, demand: Vector) -> bool:
        """Whether one pod of `demand` fits into what is left."""
        return fits(demand, self.residual)

    def add(self, shape: Shape, count: int = 1) -> None:
        """Put `count` pods of `shape` (its next ones) onto this node: its own state only."""
        start = shape.next
        self.residual -= shape.demand * count if count > 1 else shape.demand
        self.placed.extend(shape.pods[start : start + count])
        self.classes.add(shape.cls.index)

    def remove(self, shape: Shape, count: int) -> None:
        """Undo the last `add` of `count` pods of `shape`."""
        self.residual += shape.demand * count
        del self.placed[len(self.placed) - count :]


@dataclass(slots=True, eq=False)
class Shape:
    """Pods of one class with identical requests: the unit the packer chooses between."""

    index: int
    cls: PodClass
    demand: Vector
    pods: list[Pod]
    next: int = 0
    gang: str = ""  # namespace/name of the pods' gang
    group: int = -1  # demand group (shapes of any class with equal requests); -1 for gang members

    @property
    def remaining(self) -> int:
        """Pods of this shape not placed yet."""
        return len(self.pods) - self.next


@dataclass(slots=True)
class Candidates:
    """What may go onto the bins of one signature, compacted as shapes and classes run out of pods."""

    lists: list[list[int]]  # per demand group: shape indexes, in shape order
    live: set[int]  # indexes of the classes with pods left
    plain: bool  # no class has topology checks: what fits depends on resources alone
    groups: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    stale: bool = True  # `groups` may still hold groups whose list ran empty
    nonempty: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))  # per group
    spent_seen: int = 0  # how far into `Packing.spent` `live` is current


def demand_groups(shapes: list[Shape], demands: Vector, numbers: Sequence[int]) -> Vector:
    """Number the distinct demands of the shapes outside gangs (sets `Shape.group`); their demand rows.

    `numbers[i]` is the row of `demands` that is the demand of `shapes[i]` (equal demands share a row).
    """
    group_of: dict[int, int] = {}
    rows: list[int] = []
    for shape, number in zip(shapes, numbers, strict=True):
        if shape.gang:
            continue
        group = group_of.get(number)
        if group is None:
            group = group_of[number] = len(rows)
            rows.append(number)
        shape.group = group
    return demands[rows] if rows else np.zeros((0, demands.shape[1]))


def choose_run(demand: Vector, residual: Vector, scale: Vector) -> tuple[int, int]:
    """Which row of `demand` (all fitting `residual`) to place next, and how many times in a row."""
    row, scores = best_row(demand, residual, scale)
    return row, run_length(demand, residual, scale, row, scores)


def best_row(demand: Vector, residual: Vector, scale: Vector) -> tuple[int, Vector]:
    """The row of `demand` with the largest normalised dot product with `residual` (first of equals), and
    every row's score."""
    scores = demand @ (residual * scale)
    return int(scores.argmax()), scores


def run_length(demand: Vector, residual: Vector, scale: Vector, best: int, scores: Vector) -> int:
    """How many one-at-a-time placements in a row would pick row `best` (as `argmax` does, the first of
    equal scores), capped by what fits."""
    chosen = demand[best]
    # A handful of resources: plain floats are cheaper than numpy calls here.
    wanted = chosen.tolist()
    room = min(
        (int((free + EPS) // need) for free, need in zip(residual.tolist(), wanted, strict=True) if need > 0),
        default=1 << 30,
    )
    if room <= 1 or len(scores) == 1:
        return max(1, room)
    # After j more placements of `chosen`, every score t has dropped by j * drop[t].
    drop = demand @ (scale * chosen)
    top = float(drop[best])
    gain = top - drop  # how much faster the chosen score falls than each other one
    faster = np.flatnonzero(gain > _RUN_SLACK * max(1.0, abs(top)))
    if not faster.size:
        return room
    # Row t overtakes once (scores[best] - scores[t]) / gain[t] more are placed (rows before `best` win
    # a tie, rows after it lose one), unless it no longer fits by then. Only rows that overtake within
    # `room` placements can cut the run: usually a few, worked out in plain floats.
    limit = (scores[best] - scores[faster]) / gain[faster]
    near = np.flatnonzero(limit < room + 1)
    if not near.size:
        return room
    run = room
    free = residual.tolist()
    needed = [d for d, need in enumerate(wanted) if need > 0]
    for at, overtake_at in zip(faster[near].tolist(), limit[near].tolist(), strict=True):
        tolerance = _RUN_SLACK * (1.0 + abs(overtake_at))
        overtakes = (
            math.ceil(overtake_at - tolerance) if at < best else math.floor(overtake_at + tolerance) + 1
        )
        if overtakes >= run:
            continue
        row = demand[at].tolist()
        # How many more placements of `chosen` leave room for one pod of row t.
        still_fits = min(math.floor((free[d] + EPS - row[d]) / wanted[d]) for d in needed)
        if overtakes <= still_fits:
            run = overtakes
    return max(1, run)
