"""Filling a node: the bin-centric packing of one round.

A node is filled with the pods whose demand best matches what it has left (see `packing`): runs of one
demand at a time, skipping the classes topology closes the node to (`verdicts`). Per node signature the
demand groups and classes that may go onto such nodes are kept as `Candidates`, compacted as shapes
run out of pods. Nodes topology closed to a class for a while (parked) are tried again by
`place_on_parked` before a new node is opened for the class.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.index import RoundIndex
from hpscaler.scheduling.packing import EPS, Candidates, Shape, best_row, fits, run_length
from hpscaler.scheduling.placement import Packing
from hpscaler.scheduling.targets import Target
from hpscaler.scheduling.verdicts import TopologyVerdicts


class Filler:
    """Fills nodes with the round's pending pods (see the module docstring)."""

    def __init__(self, index: RoundIndex, packing: Packing, verdicts: TopologyVerdicts) -> None:
        self.index = index
        self.packing = packing
        self.verdicts = verdicts
        # Per bin signature: the shapes (by demand group) and classes that may go onto such bins.
        self.candidates: dict[int, Candidates] = {}
        self.candidate_sets: dict[tuple[bool, ...], Candidates] = {}  # by which classes are compatible
        self.rollbacks_seen = 0
        # (signature, capacity, residual, demands with pods) -> the runs a fill placed from that state.
        self.patterns: dict[tuple[int, bytes, bytes, bytes], list[tuple[int, int]]] = {}

    def candidates_for(self, signature: int) -> Candidates:
        """The shapes and classes with pods left that may go onto bins of `signature`."""
        if self.rollbacks_seen != self.packing.rollbacks:
            # Shapes may have pods again: the candidate lists dropped the ones that ran out.
            self.rollbacks_seen = self.packing.rollbacks
            self.candidates.clear()
            self.candidate_sets.clear()
        found = self.candidates.get(signature)
        if found is None:
            by_class = tuple(self.index.compatible(c, signature) for c in self.index.classes)
            # Signatures that admit the same classes (most launch options) share one set of lists.
            found = self.candidate_sets.get(by_class)
            if found is None:
                lists: list[list[int]] = [[] for _ in range(len(self.index.group_demand))]
                classes: set[int] = set()
                for shape in self.index.shapes:
                    if shape.group >= 0 and by_class[shape.cls.index] and shape.remaining > 0:
                        lists[shape.group].append(shape.index)
                        classes.add(shape.cls.index)
                plain = not any(self.index.classes[c].topology.constrained for c in classes)
                found = self.candidate_sets[by_class] = Candidates(lists, classes, plain)
                found.nonempty = np.array([bool(members) for members in lists], dtype=bool)
            self.candidates[signature] = found
        if found.stale:
            found.stale = False
            found.groups = np.flatnonzero(found.nonempty)
        return found

    def fill(self, b: Target) -> None:
        """Fill a bin with the shapes whose demand best matches its residual capacity."""
        candidates = self.candidates_for(b.signature)
        active = candidates.groups
        if not active.size:
            return
        closed = self.verdicts.closed_classes(b, candidates)
        if closed is None:
            return
        cursor: dict[int, int] = {}  # demand group -> first shape of its list not ruled out for this bin
        # Only this bin's placements change what is left while it fills: drop demands with no pods now,
        # and afterwards only the one just placed can run out.
        active = active[self.packing.group_left[active] > 0]
        # Without topology, the fill is a function of the residual and of which demands have pods left:
        # bins opened alike (most of them, on a fixed-size group) repeat a recorded sequence of runs.
        key: tuple[int, bytes, bytes, bytes] | None = None
        if candidates.plain:
            key = (b.signature, b.capacity.tobytes(), b.residual.tobytes(), active.tobytes())
            recorded = self.patterns.get(key)
            if recorded is not None:
                if all(self.place_run(b, g, n, candidates, cursor, closed) == n for g, n in recorded):
                    return
                key = None
                active = active[self.packing.group_left[active] > 0]  # the replay placed some of them
        runs: list[tuple[int, int]] | None = [] if key is not None else None
        seen_closed: set[int] = set()  # closed classes whose demands `still_open` has dropped already
        if closed:
            # Demands of one shape whose class is closed to the bin go at once (every pod a different
            # size makes most demands so), instead of one by one as they come up; demands of several
            # shapes are looked at when they come up.
            active = active[self.open_demands(active, closed)]
            seen_closed.update(closed)
        demand = self.index.group_demand[active]
        scale = np.where(b.capacity > 0, 1.0 / np.maximum(b.capacity, EPS) ** 2, 0.0)
        # Every demand with one pod left (every pod a different size): no runs to work out, so the
        # demands that no longer fit are dropped only when the best one does not fit, not on every pass.
        lazy = bool(np.all(self.packing.group_left[active] <= 1))
        stale = True
        while active.size:
            if stale or not lazy:
                keep = (demand <= b.residual + EPS).all(axis=1)
                if not keep.all():
                    active, demand = active[keep], demand[keep]
                    if not active.size:
                        break
                stale = False
            row, scores = best_row(demand, b.residual, scale)
            if lazy and not fits(demand[row], b.residual):
                stale = True  # the best score belongs to a demand that no longer fits
                continue
            group = int(active[row])
            if not self.head_open(b, group, candidates, cursor, closed):
                # Nothing of this demand may go onto the bin any more. Classes topology closed to it rule
                # out shapes of other demands too: drop every demand that has nothing else left.
                runs = None
                if closed <= seen_closed:  # no class closed since the last drop: only this demand goes
                    if lazy:
                        active, demand = np.delete(active, row), np.delete(demand, row, axis=0)
                    else:
                        demand[row] = np.inf  # fits nothing: the next filtering pass drops it
                    continue
                keep = self.still_open(active, candidates, cursor, closed, group, seen_closed)
                active, demand = active[keep], demand[keep]
                continue
            # A demand with one pod left places one: no need to work out a run (every pod a
            # different size makes this the common case).
            count = (
                1
                if self.packing.group_left[group] <= 1
                else run_length(demand, b.residual, scale, row, scores)
            )
            placed = self.place_run(b, group, count, candidates, cursor, closed, checked=True)
            if runs is not None and placed == count:
                runs.append((group, count))
            else:
                runs = None
            if self.packing.group_left[group] <= 0:
                runs = None  # the sequence depended on how many pods of this demand were left
                # Fits nothing and scores below everything: the next filtering pass drops it.
                demand[row] = np.inf if not lazy else -1.0
        if key is not None and runs is not None:
            self.patterns[key] = runs

    def place_run(
        self,
        b: Target,
        group: int,
        count: int,
        candidates: Candidates,
        cursor: dict[int, int],
        closed: set[int],
        checked: bool = False,
    ) -> int:
        """Place up to `count` pods of demand `group` onto `b`, shapes in order; how many were placed.

        `checked`: `head_open` has just found the shape at the cursor open to the bin.
        """
        at = cursor.get(group, 0)
        placed = 0
        while placed < count:
            shape = self.live_shape(candidates, group, at)
            if shape is None:
                break
            cls = shape.cls
            if cls.index in closed:
                at += 1
                continue
            if cls.topology.constrained:
                if not checked and self.verdicts.closed_to(cls, b):
                    # Topology is a property of the class: the bin is closed to all its shapes.
                    closed.add(cls.index)
                    self.verdicts.park(b, cls)
                    at += 1
                    continue
                self.packing.place(shape, b)
                placed += 1
            else:
                take = min(count - placed, shape.remaining)
                self.packing.place(shape, b, take)
                placed += take
            checked = False
        cursor[group] = at
        return placed

    def live_shape(self, candidates: Candidates, group: int, at: int) -> Shape | None:
        """The shape at position `at` of `group`'s list once spent shapes there are dropped (None: past
        the end)."""
        members = candidates.lists[group]
        while at < len(members):
            shape = self.index.shapes[members[at]]
            if shape.remaining > 0:
                return shape
            del members[at]  # for every bin of the signature: shapes never get pods back
            if not members:
                candidates.nonempty[group] = False
                candidates.stale = True
        return None

    def head_open(
        self, b: Target, group: int, candidates: Candidates, cursor: dict[int, int], closed: set[int]
    ) -> bool:
        """Move the cursor of `group` to its first shape that may go onto `b` now; whether there is one."""
        at = cursor.get(group, 0)
        while (shape := self.live_shape(candidates, group, at)) is not None:
            cls = shape.cls
            if cls.index not in closed:
                if not cls.topology.constrained or not self.verdicts.closed_to(cls, b):
                    break
                closed.add(cls.index)
                self.verdicts.park(b, cls)
            at += 1
        cursor[group] = at
        return shape is not None

    def open_demands(self, active: npt.NDArray[np.int64], closed: set[int]) -> npt.NDArray[np.bool_]:
        """Which demand groups of `active` are not of a single shape whose class is in `closed`."""
        owner = self.index.group_classes()[0][active]
        by_class = np.zeros(len(self.index.classes) + 1, dtype=bool)
        by_class[list(closed)] = True
        return ~by_class[owner]  # owner -1 (several shapes) reads the last entry, never set

    def still_open(
        self,
        active: npt.NDArray[np.int64],
        candidates: Candidates,
        cursor: dict[int, int],
        closed: set[int],
        group: int,
        seen_closed: set[int],
    ) -> npt.NDArray[np.bool_]:
        """Which demand groups of `active` have a shape left whose class is not known to be closed.

        Only `group` and the demands of classes closed since the last call (not in `seen_closed`) can
        have changed their answer; the others are kept without looking (a demand whose shapes ran out
        is dropped when it is picked next). Demands of a single shape (every pod a different size makes
        most of them so) are decided by their class at once; the others shape by shape.
        """
        fresh = closed - seen_closed
        seen_closed |= fresh
        single, multi = self.index.group_classes()
        keep = np.ones(len(active), dtype=bool)
        suspects = {group}
        if fresh:
            by_class = np.zeros(len(self.index.classes), dtype=bool)
            by_class[list(fresh)] = True
            owner = single[active]
            keep[(owner >= 0) & by_class[np.maximum(owner, 0)]] = False
            for index in fresh:
                suspects.update(multi.get(index, ()))
        suspect = np.zeros(len(self.index.group_demand), dtype=bool)
        suspect[list(suspects)] = True
        for row in np.flatnonzero(suspect[active]).tolist():
            members = int(active[row])
            at = cursor.get(members, 0)
            while (
                shape := self.live_shape(candidates, members, at)
            ) is not None and shape.cls.index in closed:
                at += 1
            cursor[members] = at
            keep[row] = shape is not None
        return keep

    def place_on_parked(self, shape: Shape) -> bool:
        """Place one pod of `shape` on a parked bin that topology has reopened; existing nodes first."""
        cls = shape.cls
        self.verdicts.flush()
        if not cls.parked:
            return False
        for signature in sorted(cls.parked, key=lambda s: (s < len(self.index.options), s)):
            bins = cls.parked[signature]
            if not bins:
                del cls.parked[signature]
                continue
            # A hostname affinity opens single hosts (the ones its targets went to), never a fresh one.
            host_affine = cls.topology.host_affine
            if not host_affine and not topo.allowed(
                cls.topology, self.verdicts.probe(next(iter(bins.values())))
            ):
                continue  # the domain is still closed
            for name, b in list(bins.items()):
                assert isinstance(b, Target)
                if cls.min_demand is not None and not fits(cls.min_demand, b.residual):
                    del bins[name]  # full for every shape of the class: for good
                    continue
                if not fits(shape.demand, b.residual):
                    continue
                if not topo.allowed(cls.topology, b.labels):
                    if not host_affine:
                        del bins[name]  # its host is closed to the class: for good
                    continue
                self.packing.place(shape, b)
                self.fill(b)
                return True
        return False
