"""Pod-centric placement onto existing and in-flight nodes, for rounds with many distinct pod sizes.

The bin-centric fill (`fill`) scores every demand that may still go onto a node, so filling the
cluster's nodes costs nodes x demands; with every pod a different size there are as many demands as
pods (10,000 pods on 2,000 nodes: 20 million scores). Here each pod goes, largest first (Karpenter's
queue order), to the best-fitting node that can take it: of the nodes that hold the pod on every
resource and whose labels and taints admit it (`Target.admits`), the one with the least room left on
the round's dominant resource whose topology allows one more pod of its class (what `Target.can_add`
checks). What every node has left is one matrix, a row per resource, so the search is a few numpy
passes over the nodes per pod (about 10 us at 2,000 nodes), and a node's column is updated when it
takes a pod.

The scheduler uses the same `BestFit` for the new nodes of such a round (`_Solver.place_on_new_podwise`):
a pod no node takes opens a node of the best option for it, and once every pod is placed each new
node is resized to the cheapest option that holds what it got, as Karpenter launches a NodeClaim.

Nodes topology closed to a class whose pod found no node are parked for it (`TopologyVerdicts`), as
the fill parks them, so `Filler.place_on_parked` can reopen them once new nodes move the counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.index import RoundIndex
from hpscaler.scheduling.packing import EPS, PodClass, Shape, Vector
from hpscaler.scheduling.placement import Packing
from hpscaler.scheduling.targets import Target
from hpscaler.scheduling.verdicts import TopologyVerdicts

# From this many distinct demands on, nodes x demands scoring costs more than a walk per pod.
MANY_DEMANDS = 512


def many_demands(index: RoundIndex) -> bool:
    """Whether the round has so many distinct pod sizes that placement onto existing nodes goes pod by
    pod (see the module docstring)."""
    return len(index.group_demand) >= MANY_DEMANDS


def dominant_dim(shapes: Sequence[Shape], residuals: Vector) -> int:
    """The resource the pending pods ask the most of, relative to what the targets have left."""
    asked = np.sum([s.demand * s.remaining for s in shapes], axis=0)
    free = residuals.sum(axis=0)
    share = np.where(free > 0, asked / np.maximum(free, EPS), 0.0)
    return int(share.argmax())


def place_podwise(index: RoundIndex, packing: Packing, verdicts: TopologyVerdicts) -> None:
    """Place the pending pods outside gangs onto the existing and in-flight nodes, pod by pod."""
    targets = packing.bins
    sizes = index.sizes
    # Largest first; at equal size, constrained shapes first (as new nodes are opened).
    shapes = sorted(
        (s for s in index.shapes if s.group >= 0 and s.remaining > 0),
        key=lambda s: (-sizes[s.index], not s.cls.topology.constrained, s.index),
    )
    if not targets or not shapes:
        return
    fitter = BestFit(index, targets, verdicts, dominant_dim(shapes, np.array([t.residual for t in targets])))
    for shape in shapes:
        while shape.remaining > 0:
            at = fitter.best(shape)
            if at is None:
                break
            packing.place(shape, targets[at])
            fitter.placed(at)


class BestFit:
    """Finds the target a pod goes to, with what every target has left as one matrix."""

    def __init__(
        self,
        index: RoundIndex,
        targets: Sequence[Target],
        verdicts: TopologyVerdicts | None,
        dim: int,
    ) -> None:
        self.index = index
        self.targets = list(targets)
        self.verdicts = verdicts  # None: targets topology closes are not parked
        self.dim = dim
        # Arrays over the targets have room for `capacity` of them, so a new node is added in place.
        self.capacity = max(16, len(self.targets))
        # What the targets have left, one row per resource, kept in step as pods are placed (`placed`).
        self.free = np.zeros((len(index.dims), self.capacity))
        for i, target in enumerate(self.targets):
            self.free[:, i] = target.residual
        # Options key -> which targets admit its classes, worked out for the first `admitted[key]`.
        self.admitting: dict[int, npt.NDArray[np.bool_]] = {}
        self.admitted: dict[int, int] = {}
        # Targets in the same topology domains (all keys but the hostname) get one verdict from a class
        # whose checks ignore the hostname.
        self.numbers: dict[tuple[str | None, ...], int] = {}
        self.domains = np.zeros(self.capacity, dtype=np.int64)
        for i, target in enumerate(self.targets):
            self.domains[i] = self.domain(target)
        # Class index -> the targets its topology closes for the rest of the pass (see `best`).
        self.shut: dict[int, npt.NDArray[np.bool_]] = {}

    def domain(self, target: Target) -> int:
        """The number of `target`'s topology domains."""
        values = tuple(target.labels.get(k) for k in self.index.topology_keys)
        return self.numbers.setdefault(values, len(self.numbers))

    def append(self, target: Target) -> None:
        """Add a target (a new node just opened)."""
        at = len(self.targets)
        if at == self.capacity:
            self.capacity *= 2
            self.free = _grown(self.free, self.capacity)
            self.domains = _grown(self.domains, self.capacity)
            self.admitting = {k: _grown(a, self.capacity) for k, a in self.admitting.items()}
            self.shut = {k: _grown(a, self.capacity) for k, a in self.shut.items()}
        self.targets.append(target)
        self.free[:, at] = target.residual
        self.domains[at] = self.domain(target)

    def refresh(self) -> None:
        """Take in what every target has left (after placements made without `placed`)."""
        for i, target in enumerate(self.targets):
            self.free[:, i] = target.residual

    def placed(self, at: int) -> None:
        """Take in what the target at `at` has left after a placement."""
        self.free[:, at] = self.targets[at].residual

    def admits(self, cls: PodClass) -> npt.NDArray[np.bool_]:
        """Which targets admit `cls` (labels, taints); False past the last target."""
        key = cls.options_key
        found = self.admitting.get(key)
        if found is None:
            found = self.admitting[key] = np.zeros(self.capacity, dtype=bool)
        done = self.admitted.get(key, 0)
        if done < len(self.targets):
            found[done : len(self.targets)] = [t.admits(cls, self.index) for t in self.targets[done:]]
            self.admitted[key] = len(self.targets)
        return found

    def best(self, shape: Shape) -> int | None:
        """The position of the target the next pod of `shape` goes to: of those that admit it, hold it and
        whose topology allows it, the one with the least room left on the dominant resource (the first of
        equals). None if there is none; then the targets only topology closed are parked for the class."""
        if not self.targets:
            return None
        cls = shape.cls
        free = self.free
        fit = self.admits(cls).copy()
        shut = self.shut.get(cls.index)
        if shut is not None:
            fit &= ~shut
        # Resource by resource over contiguous rows: numpy's `all(axis=1)` on a narrow matrix is slower.
        for dim, need in enumerate(shape.demand.tolist()):
            if need > 0:
                fit &= free[dim] >= need - EPS
        room = np.where(fit, free[self.dim], np.inf)
        if not cls.topology.constrained:
            at = int(room.argmin())
            return at if fit[at] else None
        checks = cls.topology
        # Anti-affinity and hostname spreads (no eligible domains: the minimum is 0) only count up while
        # pods are placed, so a target they close stays closed: it is not looked at again.
        lasting = not checks.affinity and all(not spread.domains for spread in checks.spreads)
        closed = np.zeros(len(fit), dtype=bool)  # targets with room that topology closes to the class
        while True:
            at = int(room.argmin())
            if not fit[at]:
                if self.verdicts is not None:  # new nodes may move the counts that close them
                    for i in np.flatnonzero(closed).tolist():
                        self.verdicts.park_closed(self.targets[i], cls)
                return None
            if topo.allowed(checks, self.targets[at].labels):
                return at
            if checks.host_keyed:
                closed[at] = True
                if lasting:
                    if shut is None:
                        shut = self.shut[cls.index] = np.zeros(self.capacity, dtype=bool)
                    shut[at] = True
            else:
                closed |= fit & (self.domains == self.domains[at])
            fit &= ~closed
            room[closed] = np.inf


def _grown(array: npt.NDArray[np.generic], capacity: int) -> npt.NDArray[Any]:
    """`array` with its last axis extended to `capacity` (zeros, False)."""
    grown = np.zeros((*array.shape[:-1], capacity), dtype=array.dtype)
    grown[..., : array.shape[-1]] = array
    return grown
