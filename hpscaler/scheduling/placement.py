"""The packing state of one scheduling round, and the changes placing pods makes to it.

`Packing` holds what placing pods changes: the targets (existing, in-flight and new nodes, see
`targets`), the pods left per demand group, NodePool usage, the pods that cannot be placed, and a log
of the classes whose topology verdicts placements may have changed. A placement (`place`) adds pods to
a target and counts them in topology; `open_node` adds a new node. While gangs are placed, and while a
new node is on trial, every change is journaled so it can be undone (`rollback`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np
import numpy.typing as npt

from hpscaler.model import Node
from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.index import RoundIndex
from hpscaler.scheduling.membership import PoolMembership
from hpscaler.scheduling.options import Option
from hpscaler.scheduling.packing import PodClass, Shape
from hpscaler.scheduling.targets import ExistingNode, InFlightTarget, NewNode, Target
from hpscaler.scheduling.types import Unschedulable

Journal = list[tuple[str, int, Target, int]]  # ("place", shape, target, count) or ("open", -1, node, 0)


class Packing:
    """What placing pods changes in one round (see the module docstring)."""

    def __init__(self, index: RoundIndex) -> None:
        self.index = index
        self.bins: list[Target] = []  # existing and in-flight nodes
        self.zone_bins: dict[str, list[Target]] = {}
        self.new_bins: list[NewNode] = []
        self.new_zone_bins: dict[str, list[NewNode]] = {}
        self.taken_names: set[str] = set()
        self.usage: dict[str, dict[str, int]] = {}
        self.unschedulable: list[Unschedulable] = []
        grouped = [(s.group, s.remaining) for s in index.shapes if s.group >= 0]
        self.group_left: npt.NDArray[np.int64] = np.bincount(
            np.array([g for g, _ in grouped], dtype=np.int64),
            np.array([n for _, n in grouped], dtype=np.float64),
            minlength=len(index.group_demand),
        ).astype(np.int64)
        self.spent: list[int] = []  # classes placed in full, in order (a rollback may give one pods again)
        # Classes whose checks read a count that changed, in order (see `verdicts`).
        self.changed: list[int] = []
        # Changes to undo: kept only while gangs are placed and while a new node is on trial.
        self.journal: Journal | None = None
        self.rollbacks = 0  # how many rollbacks were made: shapes may have pods again after one
        self.on_rollback: list[Callable[[], None]] = []  # called before a rollback
        self.ignore_limits = False  # set only to find out whether limits are what keeps a gang out

    def add_cluster(self) -> None:
        """Add the existing and in-flight nodes, count their NodePool usage and seed their pods."""
        index = self.index
        membership = PoolMembership(index.inp.node_pools, index.inp.node_classes)
        for node, signature, labels in index.node_targets:
            self.taken_names.add(node.name)
            self._add_target(ExistingNode.of(node, signature, labels, index))
            self.add_usage(membership.pool_name_of(node), self._node_capacity(node))
            for pod in node.pods:
                index.topology.seed(pod, labels)
        for flight in index.inp.inflight:
            self.taken_names.add(flight.name)
        for flight, option in index.inflight:
            target = InFlightTarget.of(flight, option, index)
            for pod in flight.pods:
                index.topology.seed(pod, target.labels)
            self._add_target(target)
            self.add_usage(option.node_pool.name, option.capacity)

    def _add_target(self, target: Target) -> None:
        self.bins.append(target)
        self.zone_bins.setdefault(target.zone, []).append(target)

    def _node_capacity(self, node: Node) -> dict[str, int]:
        type_name = node.labels.get("node.kubernetes.io/instance-type", "")
        catalogue = self.index.inp.catalogue
        if type_name in catalogue:
            return catalogue.get(type_name).capacity()
        return dict(node.allocatable)

    # -- NodePool limits ------------------------------------------------------------------------

    def add_usage(self, pool: str, capacity: dict[str, int], sign: int = 1) -> None:
        """Count (or with `sign=-1`, un-count) a node of `capacity` in `pool`'s usage."""
        if not pool:
            return
        usage = self.usage.setdefault(pool, {})
        for name, amount in capacity.items():
            usage[name] = usage.get(name, 0) + sign * amount
        usage["nodes"] = usage.get("nodes", 0) + sign

    def within_limits(self, option: Option) -> bool:
        """Whether one more node of `option` keeps its NodePool within its limits."""
        usage = self.usage.get(option.node_pool.name, {})
        for name, limit in option.node_pool.limits:
            extra = 1 if name == "nodes" else option.capacity.get(name, 0)
            if usage.get(name, 0) + extra > limit:
                return False
        return True

    # -- changes --------------------------------------------------------------------------------

    def place(self, shape: Shape, target: Target, count: int = 1) -> None:
        """Add the next `count` pods of `shape` to `target`."""
        target.add(shape, count)
        shape.next += count
        shape.cls.left -= count
        if shape.cls.left <= 0:
            self.spent.append(shape.cls.index)
        if shape.group >= 0:
            self.group_left[shape.group] -= count
        topo.record(shape.cls.topology, target.labels, count)
        self.note_change(shape.cls)
        if self.journal is not None:
            self.journal.append(("place", shape.index, target, count))

    def note_change(self, cls: PodClass) -> None:
        """Record that the counts `cls` changes were changed: classes reading them may see new verdicts."""
        notified = self.index.notified[cls.index]
        if notified:
            self.changed.extend(notified)

    def fresh_name(self, group: str, number: int) -> str:
        """An unused hostname for a new node of `group`, numbered `number` or the next free number."""
        name = f"{group}-{number:04d}"
        while name in self.taken_names:  # never reuse an existing or in-flight node's hostname
            number += 1
            name = f"{group}-{number:04d}"
        self.taken_names.add(name)
        return name

    def open_node(self, option: Option) -> NewNode:
        """Add an empty new node of `option`."""
        node = NewNode.of(self.fresh_name(option.group.name, len(self.new_bins) + 1), option, self.index)
        self.new_bins.append(node)
        self.new_zone_bins.setdefault(node.zone, []).append(node)
        self.add_usage(option.node_pool.name, option.capacity)
        if self.journal is not None:
            self.journal.append(("open", -1, node, 0))
        return node

    def rollback(self, mark: int) -> None:
        """Undo the journaled changes after the first `mark`."""
        assert self.journal is not None
        for hook in self.on_rollback:
            hook()
        shapes = self.index.shapes
        while len(self.journal) > mark:
            op, position, target, count = self.journal.pop()
            if op == "place":
                shape = shapes[position]
                shape.next -= count
                shape.cls.left += count
                if shape.group >= 0:
                    self.group_left[shape.group] += count
                target.remove(shape, count)
                topo.record(shape.cls.topology, target.labels, -count)
                self.note_change(shape.cls)
            else:
                self.new_bins.pop()
                self.new_zone_bins[target.zone].pop()
                self.taken_names.discard(target.name)
                assert target.option is not None
                self.add_usage(target.option.node_pool.name, target.option.capacity, sign=-1)
                for cls in self.index.classes:
                    cls.parked.get(target.signature, {}).pop(target.name, None)
        self.rollbacks += 1

    def fail(self, shape: Shape, reason: str) -> None:
        """Report the pods of `shape` left as unschedulable for `reason`."""
        while shape.remaining > 0:
            self.unschedulable.append(Unschedulable(shape.pods[shape.next].key, reason))
            shape.next += 1
            shape.cls.left -= 1

    # -- new nodes ------------------------------------------------------------------------------

    def best_option(self, shape: Shape, zone: str = "", excluded: Collection[int] = ()) -> Option | None:
        """The best-ranked launch option (in `zone`, if given; not in `excluded`) that can take one pod
        of `shape` on a new node now."""
        index = self.index
        checks = shape.cls.topology
        constrained = checks.constrained
        verdicts: dict[int, bool] = {}  # per topology domains (see `RoundIndex.option_domains`)
        for option in index.option_table(shape.cls.options_key).ranked(shape.demand):
            if (zone and option.zone != zone) or option.index in excluded:
                continue
            if constrained:
                domains = index.option_domains(option)
                ok = verdicts.get(domains)
                if ok is None:
                    ok = verdicts[domains] = topo.allowed(checks, index.domain_probe(domains))
                if not ok:
                    continue
            if option.node_pool.limits and not self.ignore_limits and not self.within_limits(option):
                continue
            return option
        return None
