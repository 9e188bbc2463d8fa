"""Placement primitives of one scheduling round: the state the packer works on and how it changes.

`Placer` holds the round's launch options, pod classes, shapes and bins, and places pods: onto a bin
(`place`), onto a new node (`open_bin`, ranked by `best_option`), in bulk onto a bin (`fill`: the
bin-centric packing of `packing`), and onto bins topology closed for a while and has reopened
(`place_on_parked`). While gangs are placed, and while a new node is on trial, every change is
journaled so it can be undone.

Topology can close a node to a pod for a while: a zone spread closes a zone until the others catch
up, a pod affinity until a matching pod arrives. A node with room that was closed that way is
remembered (parked) for the pod's class and tried again before a new node is opened for it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hpscaler.model import LABEL_HOSTNAME, PODS_RESOURCE, Taint, tolerates_all
from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.options import Option, build_options
from hpscaler.scheduling.packing import (
    EPS,
    Bin,
    Candidates,
    PodClass,
    Shape,
    Vector,
    best_row,
    fits,
    run_length,
)
from hpscaler.scheduling.ranking import OptionTable
from hpscaler.scheduling.requirements import KeySets, term_fits_labels
from hpscaler.scheduling.types import SchedulingInput, Unschedulable

_PROBE_HOST = "\x00probe"  # hostname of a node that does not exist yet: an empty hostname domain


class Placer:
    """The state of one scheduling round and the ways to place pods (see the module docstring)."""

    def __init__(self, inp: SchedulingInput) -> None:
        self.inp = inp
        self.options = build_options(
            inp.node_pools,
            inp.node_classes,
            inp.groups,
            inp.catalogue,
            inp.daemonsets,
            inp.placement_scores,
            inp.region,
        )
        self.pending = [p for p in inp.pods if not p.node_name and not p.is_daemonset]
        self.pending.sort(key=lambda p: (p.created, p.key))
        names = {PODS_RESOURCE, "cpu", "memory"}
        for pod in self.pending:
            names.update(pod.requests)
        self.dims = sorted(names)
        self.dim_index = {name: i for i, name in enumerate(self.dims)}
        vectors: dict[int, Vector] = {}  # options of one instance type usually share one allocatable
        self.option_vectors: list[Vector] = []
        for o in self.options:
            vec = vectors.get(id(o.allocatable))
            if vec is None:
                vec = vectors[id(o.allocatable)] = self.vector(o.allocatable)
            self.option_vectors.append(vec)
        self.topology = topo.Topology()
        self.topology_keys: tuple[str, ...] = ()
        self.classes: list[PodClass] = []
        self.shapes: list[Shape] = []
        # Per options signature (see `_options_signature`): compatible options, their table, node terms.
        self.option_sets: list[list[Option]] = []
        self.option_id_sets: list[frozenset[int]] = []
        self.option_terms: list[tuple[KeySets, ...]] = []
        self.option_tables: dict[int, OptionTable] = {}
        self.group_demand: Vector = np.zeros((0, len(self.dims)))
        self.group_left: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self.sizes: list[float] = []
        self.bins: list[Bin] = []  # existing and in-flight nodes
        self.zone_bins: dict[str, list[Bin]] = {}
        self.new_bins: list[Bin] = []
        self.new_zone_bins: dict[str, list[Bin]] = {}
        self.taken_names: set[str] = set()
        # Changes to undo: kept only while gangs are placed and while a new node is on trial.
        self.journal: list[tuple[str, int, Bin, int]] | None = None
        # Per bin signature: the shapes (by demand group) and classes that may go onto such bins.
        self.candidates: dict[int, Candidates] = {}
        self.candidate_sets: dict[tuple[bool, ...], Candidates] = {}  # by which classes are compatible
        # (signature, capacity, residual, demands with pods) -> the runs a fill placed from that state.
        self.patterns: dict[tuple[int, bytes, bytes, bytes], list[tuple[int, int]]] = {}
        # (class, bin signature) -> (topology stamp, closed?) for classes whose checks ignore the hostname.
        self.verdicts: dict[tuple[int, int], tuple[int, bool]] = {}
        self.compat_cache: dict[tuple[int, int], bool] = {}
        self.bin_zone_cache: dict[int, frozenset[str]] = {}
        self.node_signatures: dict[tuple[object, ...], int] = {}
        self.existing_zones: dict[int, str] = {}  # existing-node signature -> zone
        self.signature_targets: dict[int, tuple[dict[str, str], tuple[Taint, ...]] | Option] = {}
        self.signature_probes: dict[int, dict[str, str]] = {}
        self.domain_probes: dict[tuple[str | None, ...], dict[str, str]] = {}
        self.option_domains: dict[int, tuple[str | None, ...]] = {}
        self.usage: dict[str, dict[str, int]] = {}
        self.unschedulable: list[Unschedulable] = []
        # (options signature, demand group) -> options not to open for it; and the (signature, group,
        # option) triples tried already (see `_Solver.open_and_fill`).
        self.excluded: dict[tuple[int, int], set[int]] = {}
        self.vetted: set[tuple[int, int, int]] = set()
        self.ignore_limits = False  # set only to find out whether limits are what keeps a gang out

    def vector(self, resources: dict[str, int], pods: int = 0) -> Vector:
        vec = np.zeros(len(self.dims))
        for name, amount in resources.items():
            index = self.dim_index.get(name)
            if index is not None:
                vec[index] += amount
        vec[self.dim_index[PODS_RESOURCE]] += pods
        return vec

    def option_table(self, key: int) -> OptionTable:
        table = self.option_tables.get(key)
        if table is None:
            options = self.option_sets[key]
            usable = [(o.group.name, o.zone) not in self.inp.unavailable for o in options]
            table = self.option_tables[key] = OptionTable(options, self.option_vectors, usable)
        return table

    def add_usage(self, pool: str, capacity: dict[str, int], sign: int = 1) -> None:
        if not pool:
            return
        usage = self.usage.setdefault(pool, {})
        for name, amount in capacity.items():
            usage[name] = usage.get(name, 0) + sign * amount
        usage["nodes"] = usage.get("nodes", 0) + sign

    def within_limits(self, option: Option) -> bool:
        usage = self.usage.get(option.node_pool.name, {})
        for name, limit in option.node_pool.limits:
            extra = 1 if name == "nodes" else option.capacity.get(name, 0)
            if usage.get(name, 0) + extra > limit:
                return False
        return True

    def compatible(self, cls: PodClass, signature: int) -> bool:
        key = (cls.options_key, signature)
        found = self.compat_cache.get(key)
        if found is None:
            target = self.signature_targets[signature]
            if isinstance(target, Option):
                found = target.index in cls.option_ids
            else:
                labels, taints = target
                prefer = cls.pod.avoids_prefer_no_schedule
                found = tolerates_all(cls.pod.tolerations, taints, prefer=prefer) is None and any(
                    term_fits_labels(term, labels) for term in cls.terms
                )
            self.compat_cache[key] = found
        return found

    def bin_zones(self, cls: PodClass) -> frozenset[str]:
        """Zones of the existing and in-flight nodes pods of `cls` may run on."""
        zones = self.bin_zone_cache.get(cls.options_key)
        if zones is None:
            found = {zone for sig, zone in self.existing_zones.items() if zone and self.compatible(cls, sig)}
            found.update(
                b.zone
                for b in self.bins
                if b.kind == "inflight" and b.zone and self.compatible(cls, b.signature)
            )
            zones = self.bin_zone_cache[cls.options_key] = frozenset(found)
        return zones

    def candidates_for(self, signature: int) -> Candidates:
        """The shapes and classes with pods left that may go onto bins of `signature`."""
        found = self.candidates.get(signature)
        if found is None:
            by_class = tuple(self.compatible(c, signature) for c in self.classes)
            # Signatures that admit the same classes (most launch options) share one set of lists.
            found = self.candidate_sets.get(by_class)
            if found is None:
                lists: list[list[int]] = [[] for _ in range(len(self.group_demand))]
                classes: set[int] = set()
                for shape in self.shapes:
                    if shape.group >= 0 and by_class[shape.cls.index] and shape.remaining > 0:
                        lists[shape.group].append(shape.index)
                        classes.add(shape.cls.index)
                plain = not any(self.classes[c].topology.constrained for c in classes)
                found = self.candidate_sets[by_class] = Candidates(lists, sorted(classes), plain)
            self.candidates[signature] = found
        if found.stale:
            found.stale = False
            found.groups = np.array([g for g, members in enumerate(found.lists) if members], dtype=np.int64)
        return found

    def probe(self, labels: dict[str, str]) -> dict[str, str]:
        """Labels of a node that does not exist yet in the same topology domains as `labels`."""
        domains = tuple(labels.get(k) for k in self.topology_keys)
        found = self.domain_probes.get(domains)
        if found is None:
            found = {k: v for k, v in zip(self.topology_keys, domains, strict=True) if v is not None}
            found[LABEL_HOSTNAME] = _PROBE_HOST
            self.domain_probes[domains] = found
        return found

    def signature_probe(self, b: Bin) -> dict[str, str]:
        found = self.signature_probes.get(b.signature)
        if found is None:
            found = self.signature_probes[b.signature] = self.probe(b.labels)
        return found

    def place(self, shape: Shape, b: Bin, count: int = 1) -> None:
        start = shape.next
        shape.next += count
        shape.cls.left -= count
        if shape.group >= 0:
            self.group_left[shape.group] -= count
        b.residual -= shape.demand * count if count > 1 else shape.demand
        b.placed.extend(shape.pods[start : start + count])
        b.classes.add(shape.cls.index)
        topo.record(shape.cls.topology, b.labels, count)
        if self.journal is not None:
            self.journal.append(("place", shape.index, b, count))

    def fresh_name(self, group: str, number: int) -> str:
        """An unused hostname for a new node of `group`, numbered `number` or the next free number."""
        name = f"{group}-{number:04d}"
        while name in self.taken_names:  # never reuse an existing or in-flight node's hostname
            number += 1
            name = f"{group}-{number:04d}"
        self.taken_names.add(name)
        return name

    def open_bin(self, option: Option) -> Bin:
        name = self.fresh_name(option.group.name, len(self.new_bins) + 1)
        cap = self.option_vectors[option.index]
        b = Bin(name, "new", {**option.labels, LABEL_HOSTNAME: name}, cap.copy(), cap, option.index, option)
        self.new_bins.append(b)
        self.new_zone_bins.setdefault(b.zone, []).append(b)
        self.add_usage(option.node_pool.name, option.capacity)
        if self.journal is not None:
            self.journal.append(("open", -1, b, 0))
        return b

    def rollback(self, mark: int) -> None:
        assert self.journal is not None
        while len(self.journal) > mark:
            op, index, b, count = self.journal.pop()
            if op == "place":
                shape = self.shapes[index]
                shape.next -= count
                shape.cls.left += count
                if shape.group >= 0:
                    self.group_left[shape.group] += count
                b.residual += shape.demand * count
                del b.placed[len(b.placed) - count :]
                topo.record(shape.cls.topology, b.labels, -count)
            else:
                self.new_bins.pop()
                self.new_zone_bins[b.zone].pop()
                self.taken_names.discard(b.name)
                assert b.option is not None
                self.add_usage(b.option.node_pool.name, b.option.capacity, sign=-1)
                for cls in self.classes:
                    cls.parked.get(b.signature, {}).pop(b.name, None)
        # Shapes may have pods again: the candidate lists dropped the ones that ran out.
        self.candidates.clear()
        self.candidate_sets.clear()

    def can_place(self, shape: Shape, b: Bin) -> bool:
        if shape.remaining <= 0 or not fits(shape.demand, b.residual):
            return False
        return not shape.cls.topology.constrained or topo.allowed(shape.cls.topology, b.labels)

    def fill(self, b: Bin) -> None:
        """Fill a bin with the shapes whose demand best matches its residual capacity."""
        candidates = self.candidates_for(b.signature)
        active = candidates.groups
        if not active.size:
            return
        closed = self.closed_classes(b, candidates)
        if closed is None:
            return
        cursor: dict[int, int] = {}  # demand group -> first shape of its list not ruled out for this bin
        # Only this bin's placements change what is left while it fills: drop demands with no pods now,
        # and afterwards only the one just placed can run out.
        active = active[self.group_left[active] > 0]
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
                active = active[self.group_left[active] > 0]  # the replay placed some of them
        runs: list[tuple[int, int]] | None = [] if key is not None else None
        demand = self.group_demand[active]
        scale = np.where(b.capacity > 0, 1.0 / np.maximum(b.capacity, EPS) ** 2, 0.0)
        while active.size:
            keep = np.all(demand <= b.residual + EPS, axis=1)
            if not keep.all():
                active, demand = active[keep], demand[keep]
                if not active.size:
                    break
            row, scores = best_row(demand, b.residual, scale)
            group = int(active[row])
            if not self.head_open(b, group, candidates, cursor, closed):
                # Nothing of this demand may go onto the bin any more. Classes topology closed to it rule
                # out shapes of other demands too: drop every demand that has nothing else left.
                runs = None
                keep = self.still_open(active, candidates, cursor, closed)
                active, demand = active[keep], demand[keep]
                continue
            count = run_length(demand, b.residual, scale, row, scores)
            placed = self.place_run(b, group, count, candidates, cursor, closed, checked=True)
            if runs is not None and placed == count:
                runs.append((group, count))
            else:
                runs = None
            if self.group_left[group] <= 0:
                runs = None  # the sequence depended on how many pods of this demand were left
                active, demand = np.delete(active, row), np.delete(demand, row, axis=0)
        if key is not None and runs is not None:
            self.patterns[key] = runs

    def closed_classes(self, b: Bin, candidates: Candidates) -> set[int] | None:
        """The classes with pods left that topology closes `b` to now (None: all of them).

        Checking each class once up front is cheaper than finding out shape by shape, and a bin that
        is closed to everything left (common once only constrained pods remain) is done at once.
        """
        live = candidates.classes
        if any(self.classes[c].left <= 0 for c in live):
            live[:] = [c for c in live if self.classes[c].left > 0]
        closed: set[int] = set()
        for index in live:
            cls = self.classes[index]
            if cls.topology.constrained and self.closed_to(cls, b):
                closed.add(index)
                self.park(b, cls)
        return closed if len(closed) < len(live) else None

    def closed_to(self, cls: PodClass, b: Bin) -> bool:
        """Whether topology forbids one more pod of `cls` on `b` now."""
        checks = cls.topology
        if checks.host_keyed:
            return not topo.allowed(checks, b.labels)
        # Without hostname checks every bin of a signature gets the same verdict until a count changes.
        key = (cls.index, b.signature)
        stamp = checks.stamp()
        found = self.verdicts.get(key)
        if found is None or found[0] != stamp:
            found = self.verdicts[key] = (stamp, not topo.allowed(checks, b.labels))
        return found[1]

    def place_run(
        self,
        b: Bin,
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
                if not checked and self.closed_to(cls, b):
                    # Topology is a property of the class: the bin is closed to all its shapes.
                    closed.add(cls.index)
                    self.park(b, cls)
                    at += 1
                    continue
                self.place(shape, b)
                placed += 1
            else:
                take = min(count - placed, shape.remaining)
                self.place(shape, b, take)
                placed += take
            checked = False
        cursor[group] = at
        return placed

    def live_shape(self, candidates: Candidates, group: int, at: int) -> Shape | None:
        """The shape at position `at` of `group`'s list once spent shapes there are dropped (None: past
        the end)."""
        members = candidates.lists[group]
        while at < len(members):
            shape = self.shapes[members[at]]
            if shape.remaining > 0:
                return shape
            del members[at]  # for every bin of the signature: shapes never get pods back
            candidates.stale = True
        return None

    def head_open(
        self, b: Bin, group: int, candidates: Candidates, cursor: dict[int, int], closed: set[int]
    ) -> bool:
        """Move the cursor of `group` to its first shape that may go onto `b` now; whether there is one."""
        at = cursor.get(group, 0)
        while (shape := self.live_shape(candidates, group, at)) is not None:
            cls = shape.cls
            if cls.index not in closed:
                if not cls.topology.constrained or not self.closed_to(cls, b):
                    break
                closed.add(cls.index)
                self.park(b, cls)
            at += 1
        cursor[group] = at
        return shape is not None

    def still_open(
        self,
        active: npt.NDArray[np.int64],
        candidates: Candidates,
        cursor: dict[int, int],
        closed: set[int],
    ) -> npt.NDArray[np.bool_]:
        """Which demand groups of `active` have a shape left whose class is not known to be closed."""
        keep = np.ones(len(active), dtype=bool)
        for row, group in enumerate(active.tolist()):
            at = cursor.get(group, 0)
            while (shape := self.live_shape(candidates, group, at)) is not None and shape.cls.index in closed:
                at += 1
            cursor[group] = at
            keep[row] = shape is not None
        return keep

    def park(self, b: Bin, cls: PodClass) -> None:
        """Remember a bin topology closed to `cls`, unless only its host is closed."""
        if cls.topology.host_keyed and topo.allowed(cls.topology, self.signature_probe(b)):
            return  # a fresh node in the same domain would do: this host stays closed for good
        cls.parked.setdefault(b.signature, {})[b.name] = b

    def place_on_parked(self, shape: Shape) -> bool:
        """Place one pod of `shape` on a parked bin that topology has reopened; existing nodes first."""
        cls = shape.cls
        for signature in sorted(cls.parked, key=lambda s: (s < len(self.options), s)):
            bins = cls.parked[signature]
            if not bins:
                del cls.parked[signature]
                continue
            # A hostname affinity opens single hosts (the ones its targets went to), never a fresh one.
            host_affine = cls.topology.host_affine
            if not host_affine and not topo.allowed(
                cls.topology, self.signature_probe(next(iter(bins.values())))
            ):
                continue  # the domain is still closed
            for name, b in list(bins.items()):
                if cls.min_demand is not None and not fits(cls.min_demand, b.residual):
                    del bins[name]  # full for every shape of the class: for good
                    continue
                if not fits(shape.demand, b.residual):
                    continue
                if not topo.allowed(cls.topology, b.labels):
                    if not host_affine:
                        del bins[name]  # its host is closed to the class: for good
                    continue
                self.place(shape, b)
                self.fill(b)
                return True
        return False

    def best_option(self, shape: Shape, zone: str = "") -> Option | None:
        """The best-ranked launch option that can take one pod of `shape` on a new node now."""
        constrained = shape.cls.topology.constrained
        verdicts: dict[tuple[str | None, ...], bool] = {}
        excluded = self.excluded.get((shape.cls.options_key, shape.group), ())
        for option in self.option_table(shape.cls.options_key).ranked(shape.demand):
            if (zone and option.zone != zone) or option.index in excluded:
                continue
            if option.node_pool.limits and not self.ignore_limits and not self.within_limits(option):
                continue
            if constrained:
                domains = self.option_domains.get(option.index)
                if domains is None:
                    domains = tuple(option.labels.get(k) for k in self.topology_keys)
                    self.option_domains[option.index] = domains
                ok = verdicts.get(domains)
                if ok is None:
                    ok = verdicts[domains] = topo.allowed(shape.cls.topology, self.probe(option.labels))
                if not ok:
                    continue
            return option
        return None
