"""Pod-centric placement onto existing and in-flight nodes, for rounds with many distinct pod sizes.

The bin-centric fill (`fill`) scores every demand that may still go onto a node, so filling the
cluster's nodes costs nodes x demands; with every pod a different size there are as many demands as
pods (10,000 pods on 2,000 nodes: 20 million scores). Here each pod goes, largest first (Karpenter's
queue order), to the best-fitting node that can take it: of the nodes that hold the pod on every
resource and whose labels and taints admit it (`Target.admits`), the one with the least room left on
the round's dominant resource whose topology allows one more pod of its class (what `Target.can_add`
checks). The targets are kept sorted by room left on that resource: a pod bisects to the first with
room enough and walks on, least room first (2-9 us a pod); past `WALK` targets, numpy passes over
what every target has left (a matrix, a row per resource) take over and give the same answer.

The scheduler uses the same `BestFit` for the new nodes of such a round (`_Solver.place_on_new_podwise`):
a pod no node takes opens a node of the best option for it, and once every pod is placed each new
node is resized to the cheapest option that holds what it got, as Karpenter launches a NodeClaim.

Nodes topology closed to a class whose pod found no node are parked for it (`TopologyVerdicts`), as
the fill parks them, so `Filler.place_on_parked` can reopen them once new nodes move the counts.
"""

from __future__ import annotations

from bisect import bisect_left
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
# Targets the sorted walk of `BestFit.best` looks at before numpy passes over all of them take over.
WALK = 24


def many_demands(index: RoundIndex) -> bool:
    """Whether the round has so many distinct pod sizes that placement onto existing nodes goes pod by
    pod (see the module docstring)."""
    return len(index.group_demand) >= MANY_DEMANDS


def dominant_dim(left: npt.NDArray[np.int64], residuals: Vector, demand: Vector) -> int:
    """The resource the pending pods outside gangs ask the most of, relative to what the targets have left
    (`left`: pods left per demand group, `demand`: the groups' demands)."""
    asked = (demand * left[:, None]).sum(axis=0)
    free = residuals.sum(axis=0)
    share = np.where(free > 0, asked / np.maximum(free, EPS), 0.0)
    return int(share.argmax())


def queue(index: RoundIndex, shapes: Sequence[Shape]) -> list[Shape]:
    """`shapes` in the order their pods are placed: largest first (Karpenter's queue order); at equal
    size, constrained shapes first (they need more distinct nodes, which the others can then fill)."""
    if not shapes:
        return []
    loose = np.array([not cls.topology.constrained for cls in index.classes], dtype=bool)
    positions = np.fromiter((s.index for s in shapes), dtype=np.int64, count=len(shapes))
    size = index.shape_sizes[positions]
    order = np.lexsort((positions, loose[index.shape_classes[positions]], -size))
    return [shapes[i] for i in order.tolist()]


def place_podwise(index: RoundIndex, packing: Packing, verdicts: TopologyVerdicts) -> None:
    """Place the pending pods outside gangs onto the existing and in-flight nodes, pod by pod."""
    targets = packing.bins
    if not targets:
        return
    shapes = queue(index, [s for s in index.shapes if s.group >= 0 and s.remaining > 0])
    if not shapes:
        return
    residuals = np.array([t.residual for t in targets])
    fitter = BestFit(
        index, targets, verdicts, dominant_dim(packing.group_left, residuals, index.group_demand)
    )
    for shape in shapes:
        while shape.remaining > 0:
            at = fitter.best(shape)
            if at is None:
                break
            packing.place(shape, targets[at])
            fitter.placed(at)


class BestFit:
    """Finds the target a pod goes to, with what every target has left kept sorted by the dominant resource.

    The targets are walked from the first with room enough on the dominant resource, least room first:
    the first that admits the pod, holds it on every other resource and whose topology allows it is the
    best fit. Most pods take the first or one of the next few. A pod that walks past `WALK` targets
    (nodes closed by topology, or full on another resource) is found with a few numpy passes over all
    targets instead (`_numpy_best`), which give the same answer.
    """

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
        # What each target has left, as rows of plain floats for the walk, and the targets' positions by
        # room left on `dim` (then position) with those rooms, kept in step as pods are placed (`placed`).
        self.rows: list[list[float]] = []
        self.positions: list[int] = []
        self.rooms: list[float] = []
        self.stale: set[int] = set()  # targets whose column of `free` is behind `rows`
        self.refresh()
        # Per demand group, the least a target must have left of each resource to hold one pod of it; the
        # resources but `dim`, which the walk checks target by target.
        self.least = least_rows(index.group_demand).tolist()
        self.others = [d for d in range(len(index.dims)) if d != dim]
        # The same as a matrix, one row per resource, for `_numpy_best`.
        # Arrays over the targets have room for `capacity` of them, so a new node is added in place.
        self.capacity = max(16, len(self.targets))
        self.free = np.zeros((len(index.dims), self.capacity))
        # Options key -> whether each target admits its classes, as a list and an array (for `_numpy_best`).
        self.admitting: dict[int, list[bool]] = {}
        self.admitting_array: dict[int, npt.NDArray[np.bool_]] = {}
        self.admitted_array: dict[int, int] = {}  # how many targets of `admitting_array[key]` are set
        # Targets in the same topology domains (all keys but the hostname) get one verdict from a class
        # whose checks ignore the hostname.
        self.numbers: dict[tuple[str | None, ...], int] = {}
        self.signature_domains: dict[int, int] = {}
        self.domain_list = [self.domain(t) for t in self.targets]
        self.domains = np.zeros(self.capacity, dtype=np.int64)
        self.domains[: len(self.targets)] = self.domain_list
        # Class index -> the targets its topology closes for the rest of the pass (see `best`), as a set
        # and a mask; and those it has not closed, for classes with few left (`_open_candidates`).
        self.shut: dict[int, set[int]] = {}
        self.shut_mask: dict[int, npt.NDArray[np.bool_]] = {}
        self.unshut: dict[int, set[int]] = {}
        self.unshut_upto: dict[int, int] = {}  # targets before this one are in `unshut` unless shut
        self.unmasked: dict[int, list[int]] = {}  # targets shut and not yet in `shut_mask`
        self.constrained: dict[int, bool] = {}  # class index -> whether it has topology checks
        self.lasting: dict[int, bool] = {}  # class index -> `lasting(its checks)`

    def domain(self, target: Target) -> int:
        """The number of `target`'s topology domains (targets of one signature share them)."""
        number = self.signature_domains.get(target.signature)
        if number is None:
            values = tuple(target.labels.get(k) for k in self.index.topology_keys)
            number = self.signature_domains[target.signature] = self.numbers.setdefault(
                values, len(self.numbers)
            )
        return number

    def append(self, target: Target) -> None:
        """Add a target (a new node just opened)."""
        at = len(self.targets)
        if at == self.capacity:
            self.capacity *= 2
            self.free = _grown(self.free, self.capacity)
            self.domains = _grown(self.domains, self.capacity)
            self.admitting_array = {k: _grown(a, self.capacity) for k, a in self.admitting_array.items()}
            self.shut_mask = {k: _grown(a, self.capacity) for k, a in self.shut_mask.items()}
        self.targets.append(target)
        row = target.residual.tolist()
        self.rows.append(row)
        self._list(row[self.dim], at)
        self.stale.add(at)
        number = self.domain(target)
        self.domain_list.append(number)
        self.domains[at] = number

    def refresh(self) -> None:
        """Take in what every target has left (after placements made without `placed`)."""
        self.rows = [t.residual.tolist() for t in self.targets]
        order = sorted((row[self.dim], i) for i, row in enumerate(self.rows))
        self.rooms = [room for room, _ in order]
        self.positions = [at for _, at in order]
        self.stale.update(range(len(self.targets)))

    def placed(self, at: int) -> None:
        """Take in what the target at `at` has left after a placement."""
        dim = self.dim
        before = self.rows[at][dim]
        row = self.rows[at] = self.targets[at].residual.tolist()
        room = row[dim]
        if room != before:
            rooms, positions = self.rooms, self.positions
            i = bisect_left(rooms, before)
            while positions[i] != at:
                i += 1
            del rooms[i]
            del positions[i]
            i = bisect_left(rooms, room, 0, i if room < before else len(rooms))  # less room: not after
            while i < len(rooms) and rooms[i] == room and positions[i] < at:
                i += 1
            rooms.insert(i, room)
            positions.insert(i, at)
        self.stale.add(at)

    def _list(self, room: float, at: int) -> None:
        """Put the target at `at`, with `room` left on `dim`, in its place in `positions` and `rooms`."""
        rooms, positions = self.rooms, self.positions
        i = bisect_left(rooms, room)
        while i < len(rooms) and rooms[i] == room and positions[i] < at:
            i += 1
        rooms.insert(i, room)
        positions.insert(i, at)

    def admits(self, cls: PodClass) -> list[bool]:
        """Whether each target admits `cls` (labels, taints)."""
        key = cls.options_key
        found = self.admitting.get(key)
        if found is None:
            found = self.admitting[key] = []
        done = len(found)
        if done < len(self.targets):
            found.extend(t.admits(cls, self.index) for t in self.targets[done:])
        return found

    def best(self, shape: Shape) -> int | None:
        """The position of the target the next pod of `shape` goes to: of those that admit it, hold it and
        whose topology allows it, the one with the least room left on the dominant resource (the first of
        equals). None if there is none; then the targets only topology closed are parked for the class."""
        n = len(self.targets)
        if not n:
            return None
        cls = shape.cls
        least = self.least[shape.group] if shape.group >= 0 else least_rows(shape.demand[None, :])[0].tolist()
        admit = self.admitting.get(cls.options_key)
        if admit is None or len(admit) < n:
            admit = self.admits(cls)
        shut = self.shut.get(cls.index)
        candidates = None if shut is None else self._open_candidates(cls, least[self.dim])
        walked_off = False  # whether targets past the `WALK` walked are left
        if candidates is None:
            start = bisect_left(self.rooms, least[self.dim])
            candidates = self.positions[start : start + WALK]
            walked_off = start + WALK < n
        rows = self.rows
        others = self.others
        constrained = self.constrained.get(cls.index)
        if constrained is None:
            constrained = self.constrained[cls.index] = cls.topology.constrained
        if not constrained:
            for at in candidates:
                if admit[at]:
                    row = rows[at]
                    for d in others:
                        if row[d] < least[d]:
                            break
                    else:  # it holds the pod on every resource
                        return at
            return _numpy_best(self, shape, []) if walked_off else None
        checks = cls.topology
        verdicts: dict[int, bool] = {}  # per topology domains, when the checks ignore the hostname
        closed: list[int] = []  # targets with room that topology closes to the class
        # Targets in domains found closed need no look when none are parked (there is nothing to note).
        skip = self.verdicts is None and not checks.host_keyed
        domains = self.domain_list
        for at in candidates:
            if not admit[at] or (shut is not None and at in shut):
                continue
            if skip and verdicts.get(domains[at]) is False:
                continue
            row = rows[at]
            for d in others:
                if row[d] < least[d]:
                    break
            else:  # it holds the pod on every resource
                if checks.host_keyed:
                    if topo.allowed(checks, self.targets[at].labels):
                        return at
                    self._close(cls, at, closed)
                    continue
                number = domains[at]
                ok = verdicts.get(number)
                if ok is None:
                    ok = verdicts[number] = topo.allowed(checks, self.targets[at].labels)
                if ok:
                    return at
                closed.append(at)
        if walked_off:
            return _numpy_best(self, shape, closed)
        if closed and self.verdicts is not None:
            self._park(cls, closed)
        return None

    def _open_candidates(self, cls: PodClass, low: float) -> list[int] | None:
        """For a class whose topology has closed all but a few targets for good, the positions of those
        with room `low` or more on the dominant resource, least room first (None: walk them all)."""
        unshut = self.unshut.get(cls.index)
        if unshut is None:
            return None
        upto = self.unshut_upto[cls.index]
        if upto < len(self.targets):
            unshut.update(range(upto, len(self.targets)))
            self.unshut_upto[cls.index] = len(self.targets)
        if len(unshut) > WALK:
            return None
        if not unshut:
            return []
        rows = self.rows
        dim = self.dim
        listed = sorted((rows[at][dim], at) for at in unshut)
        return [at for room, at in listed if room >= low]

    def _close(self, cls: PodClass, at: int, closed: list[int]) -> None:
        """Note that the class's topology closes the target at `at` (a check that reads the hostname):
        for the rest of the pass if its checks only count up (see `lasting`)."""
        closed.append(at)
        lasts = self.lasting.get(cls.index)
        if lasts is None:
            lasts = self.lasting[cls.index] = lasting(cls.topology)
        if not lasts:
            return
        shut = self.shut.get(cls.index)
        if shut is None:
            shut = self.shut[cls.index] = set()
            self.shut_mask[cls.index] = np.zeros(self.capacity, dtype=bool)
            self.unshut[cls.index] = set(range(len(self.targets)))
            self.unshut_upto[cls.index] = len(self.targets)
            self.unmasked[cls.index] = []
        shut.add(at)
        self.unmasked[cls.index].append(at)
        self.unshut[cls.index].discard(at)

    def _park(self, cls: PodClass, closed: list[int]) -> None:
        """Park the targets topology closed to `cls` (in position order), which new nodes may reopen."""
        if self.verdicts is not None and closed:
            for i in sorted(set(closed)):
                self.verdicts.park_closed(self.targets[i], cls)

    def _free(self) -> Vector:
        """What the targets have left, one row per resource (the stale columns brought up to date)."""
        if self.stale:
            for at in self.stale:
                self.free[:, at] = self.rows[at]
            self.stale.clear()
        return self.free

    def _admitting_array(self, cls: PodClass) -> npt.NDArray[np.bool_]:
        """`admits` as a mask over the targets' arrays (False past the last target)."""
        found = self.admits(cls)
        key = cls.options_key
        array = self.admitting_array.get(key)
        if array is None:
            array = self.admitting_array[key] = np.zeros(self.capacity, dtype=bool)
        done = self.admitted_array.get(key, 0)
        if done < len(found):
            array[done : len(found)] = found[done:]
            self.admitted_array[key] = len(found)
        return array


def _numpy_best(fitter: BestFit, shape: Shape, closed_before: list[int]) -> int | None:
    """`fitter.best` by numpy passes over every target, for a pod the walk did not place within `WALK`
    targets (`closed_before`: the targets the walk found topology closed)."""
    cls = shape.cls
    n = len(fitter.targets)
    free = fitter._free()
    fit = fitter._admitting_array(cls).copy()
    shut = fitter.shut_mask.get(cls.index)
    if shut is not None:
        unmasked = fitter.unmasked[cls.index]
        if unmasked:
            shut[unmasked] = True
            unmasked.clear()
        fit &= ~shut
    # Resource by resource over contiguous rows: numpy's `all(axis=1)` on a narrow matrix is slower.
    for dim, need in enumerate(shape.demand.tolist()):
        if need > 0:
            fit &= free[dim] >= need - EPS
    room = np.where(fit, free[fitter.dim], np.inf)
    checks = cls.topology
    closed = np.zeros(len(fit), dtype=bool)  # targets with room that topology closes to the class
    while True:
        at = int(room.argmin())
        if not fit[at]:
            fitter._park(cls, [*closed_before, *np.flatnonzero(closed[:n]).tolist()])
            return None
        if not checks.constrained or topo.allowed(checks, fitter.targets[at].labels):
            return at
        if checks.host_keyed:
            closed[at] = True
            fitter._close(cls, at, [])
        else:
            closed |= fit & (fitter.domains == fitter.domains[at])
        fit &= ~closed
        room[closed] = np.inf


def least_rows(demand: Vector) -> Vector:
    """Per row of `demand`, the least room on each resource that holds it: the demand less `EPS`, or
    -inf where it asks for none (as `fits`, which a resource not asked for never fails)."""
    return np.where(demand > 0, demand - EPS, -np.inf)


def lasting(checks: topo.ClassTopology) -> bool:
    """Whether the class's checks only count up while pods are placed, so that a target they close stays
    closed for the pass: anti-affinity and hostname spreads (no eligible domains: the minimum is 0)."""
    return not checks.affinity and all(not spread.domains for spread in checks.spreads)


def _grown(array: npt.NDArray[np.generic], capacity: int) -> npt.NDArray[Any]:
    """`array` with its last axis extended to `capacity` (zeros, False)."""
    grown = np.zeros((*array.shape[:-1], capacity), dtype=array.dtype)
    grown[..., : array.shape[-1]] = array
    return grown
