"""The scheduler: a pure function from pending pods and cluster state to a provisioning plan.

Order of work, as in Karpenter's simulator: existing nodes first, then in-flight nodes, then new
nodes. Three things differ:

* Packing is bin-centric. Karpenter sorts pods by CPU then memory and puts each on the first claim
  that fits; with fixed-size HyperPod instance types that leaves one resource idle (measured
  1.21-1.24x the lower bound in node count). Here a node is opened for the largest pod left and then
  filled with the pods whose demand best matches what the node has left (largest dot product of
  normalised demand and residual capacity; see `packing`). With many distinct pod sizes, filling the
  cluster's nodes that way costs nodes x sizes: the pods are then placed one by one, largest first,
  each on the best-fitting existing or in-flight node, else the best-fitting new node opened so far,
  else a new node (see `podwise` and `place_on_new_podwise`).
* Pods are grouped into shapes (same constraints, same requests), and shapes with equal requests into
  demand groups, so the work per placement depends on the number of distinct demands, not on the
  number of pods or classes. Labels only split pods into different classes when some topology
  selector reads them.
* A new node is opened with the option that is cheapest per pod of the shape that opens it (which
  favours large instance types), and once everything is packed it is resized to the cheapest option
  of the same NodePool, rank tier and domains that still holds what was packed onto it, as Karpenter
  picks the cheapest instance type that fits a NodeClaim when it launches; a node whose pods several
  nodes of a cheaper option hold for less is split (see `resize`, and `_Solver.open_and_fill`).

Topology can close a node to a pod for a while: a zone spread closes a zone until the others catch
up, a pod affinity until a matching pod arrives. A node with room that was closed that way is
remembered (parked) for the pod's class and tried again before a new node is opened for it, and pods
left over are retried while placements keep opening domains to them.

Gangs are placed first, all-or-nothing and in a single zone (the zone of members already running,
if any), with every tentative placement undone when a gang does not fit.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hpscaler.model import LABEL_HOSTNAME, TopologySpread
from hpscaler.scheduling.domains import spread_domains
from hpscaler.scheduling.explain import explain_unschedulable
from hpscaler.scheduling.fill import Filler
from hpscaler.scheduling.gangs import GangPlacer
from hpscaler.scheduling.index import RoundIndex
from hpscaler.scheduling.options import Option
from hpscaler.scheduling.packing import PodClass, Shape
from hpscaler.scheduling.placement import Packing
from hpscaler.scheduling.podwise import BestFit, dominant_dim, many_demands, place_podwise, queue
from hpscaler.scheduling.preferences import (
    Relaxation,
    avoids_prefer_no_schedule,
    harden,
    has_preferences,
    relax,
)
from hpscaler.scheduling.resize import Sizer, right_size
from hpscaler.scheduling.signatures import class_signature, node_target
from hpscaler.scheduling.targets import Target
from hpscaler.scheduling.types import Plan, PlannedNode, SchedulingInput, Unschedulable
from hpscaler.scheduling.verdicts import TopologyVerdicts

__all__ = ["class_signature", "node_target", "solve"]


class _Solver:
    """One scheduling round; `solve` is the public entry point.

    It composes the round's parts: the frozen `RoundIndex`, the `Packing` state with its targets, the
    topology `verdicts`, the `Filler`, the `GangPlacer` and, once nodes are opened, the `Sizer`.
    """

    def __init__(self, inp: SchedulingInput) -> None:
        self.index = index = RoundIndex(inp)
        self.packing = packing = Packing(index)
        packing.add_cluster()
        cache: dict[tuple[int, str, str, str], frozenset[str]] = {}

        def domains(cls: PodClass, spread: TopologySpread) -> frozenset[str]:
            key = (
                cls.options_key,
                spread.topology_key,
                spread.node_affinity_policy,
                spread.node_taints_policy,
            )
            found = cache.get(key)
            if found is None:
                found = cache[key] = spread_domains(index, cls, spread)
            return found

        index.compile_topology(domains)
        self.verdicts = TopologyVerdicts(index, packing)
        self.filler = Filler(index, packing, self.verdicts)
        self.gangs = GangPlacer(index, packing)
        self._sizer: Sizer | None = None
        # (options signature, demand group) -> options not to open for it; and the (signature, group,
        # option) triples tried already (see `open_and_fill`).
        self.excluded: dict[tuple[int, int], set[int]] = {}
        self.vetted: set[tuple[int, int, int]] = set()

    # -- rounds -------------------------------------------------------------------------------

    def place_on_existing(self) -> None:
        # Fullest nodes first, so emptier ones stay free for consolidation; then in-flight nodes, then
        # the room left on nodes opened for gangs.
        packing = self.packing
        if many_demands(self.index):
            # Nodes x distinct demands would dominate the round: pod by pod instead (see `podwise`).
            place_podwise(self.index, packing, self.verdicts)
            order: list[Target] = []
        else:
            order = sorted(
                packing.bins,
                key=lambda b: (b.kind != "existing", float(np.sum(b.residual / np.maximum(b.capacity, 1.0)))),
            )
        for b in (*order, *packing.new_bins):
            self.filler.fill(b)

    def place_on_new(self) -> None:
        # Largest first; at equal size, constrained shapes first (they need more distinct nodes, which
        # the unconstrained ones can then fill).
        if many_demands(self.index):
            self.place_on_new_podwise(queue(self.index, [s for s in self.index.shapes if not s.gang]))
            return
        sizes = self.index.sizes
        order = sorted(
            (s for s in self.index.shapes if not s.gang),
            key=lambda s: (-sizes[s.index], not s.cls.topology.constrained, s.index),
        )
        while order:
            progress = False
            for shape in order:
                while shape.remaining > 0:
                    if self.filler.place_on_parked(shape):
                        progress = True
                        continue
                    excluded = self.excluded.get((shape.cls.options_key, shape.group), ())
                    option = self.packing.best_option(shape, excluded=excluded)
                    if option is None:
                        break
                    self.open_and_fill(shape, option)
                    progress = True
            if not progress:
                return
            # What was placed may open domains (pod affinity, spread) to constrained pods left over.
            order = [s for s in order if s.remaining > 0 and s.cls.topology.constrained]

    def place_on_new_podwise(self, order: list[Shape]) -> None:
        """With many distinct pod sizes: each pod in `order` to the best-fitting new node opened so far,
        else to a parked node, else to a new node of the best option for it (as Karpenter adds pods to
        NodeClaims, and without the trial fills of `open_and_fill`, which cost nodes x demands here);
        `right_size` then launches each as the cheapest option that holds what it got."""
        packing = self.packing
        index = self.index
        # Per class, its demand groups: ranked at once (`OptionTable.prepare`) once it opens a node (with
        # pods of distinct sizes, a class that opens one opens several, each for another demand).
        unranked: dict[int, list[int]] = {}
        for shape in order:
            if shape.next < len(shape.pods):
                unranked.setdefault(shape.cls.index, []).append(shape.group)
        dim = dominant_dim(packing.group_left, np.array(index.option_vectors), index.group_demand)
        fitter = BestFit(index, packing.new_bins, None, dim)
        best, placed, targets = fitter.best, fitter.placed, fitter.targets
        while order:
            progress = False
            for shape in order:
                pods = shape.pods
                while shape.next < len(pods):
                    at = best(shape)
                    if at is not None:
                        packing.place(shape, targets[at])
                        placed(at)
                    elif self.filler.place_on_parked(shape):
                        fitter.refresh()  # the parked node may be one of the fitter's, and was filled
                    else:
                        groups = unranked.pop(shape.cls.index, None)
                        if groups is not None:
                            index.option_table(shape.cls.options_key).prepare(index.group_demand[groups])
                        option = packing.best_option(shape)
                        if option is None:
                            break
                        node = packing.open_node(option)
                        packing.place(shape, node)
                        fitter.append(node)
                    progress = True
            if not progress:
                return
            # What was placed may open domains (pod affinity, spread) to constrained pods left over.
            order = [s for s in order if s.next < len(s.pods) and s.cls.topology.constrained]

    def open_and_fill(self, shape: Shape, option: Option) -> None:
        """Open a node of `option` for a pod of `shape` and fill it.

        The option is ranked by what it costs per pod of this shape alone, and what the fill then adds
        may cost less on several nodes of a cheaper option than on any single node (a p5 opened for a
        memory-heavy 1-GPU pod, then filled with small GPU pods that two or three g5 hold for a third of
        the price). So the first node of each (demand, option) is a trial: in that case it is undone and
        the option is not opened for that demand again, and the pods go where they pack better.
        """
        packing = self.packing
        key = (shape.cls.options_key, shape.group, option.index)
        trial = key not in self.vetted
        if trial:
            self.vetted.add(key)
            packing.journal = []
        node = packing.open_node(option)
        packing.place(shape, node)
        self.filler.fill(node)
        if trial:
            if self.sizer().beating_split(node) is not None:
                packing.rollback(0)
                # A node at least as large, filled for the same demand, would be split as well: those
                # are not opened for it either (rather than tried one by one).
                excluded = self.excluded.setdefault(key[:2], set())
                excluded.add(option.index)
                excluded.update(self.index.larger_options(shape.cls.options_key, option))
            packing.journal = None

    def sizer(self) -> Sizer:
        if self._sizer is None:
            self._sizer = Sizer(self.index, self.packing)
        return self._sizer

    def solve(self) -> Plan:
        packing = self.packing
        self.gangs.place_gangs()
        self.place_on_existing()
        self.place_on_new()
        if packing.new_bins:
            # Pod by pod, each new node is a NodeClaim: launched as the cheapest option that holds what it
            # got, not split into several (that would add nodes the pods' order did not ask for).
            right_size(self.sizer(), split=not many_demands(self.index))
        plan = Plan(unschedulable=packing.unschedulable)
        for b in packing.bins:
            if b.placed:
                target = plan.existing if b.kind == "existing" else plan.inflight
                target[b.name] = [p.key for p in b.placed]
        for node in packing.new_bins:
            option = node.option
            assert option is not None
            plan.new_nodes.append(
                PlannedNode(
                    name=node.name,
                    node_pool=option.node_pool.name,
                    instance_group=option.group.name,
                    instance_type=option.spec.name,
                    zone=option.zone,
                    capacity_type=option.capacity_type,
                    allocatable=dict(option.allocatable),
                    price_per_hour=option.price,
                    pods=[p.key for p in node.placed],
                    labels={k: v for k, v in node.labels.items() if k != LABEL_HOSTNAME},
                )
            )
        index = self.index
        for shape in index.shapes:
            if shape.next >= len(shape.pods):
                continue
            reason = explain_unschedulable(
                shape.pods[shape.next], index.inp, index.options, shape.cls.options, packing.within_limits
            )
            plan.unschedulable.extend(Unschedulable(pod.key, reason) for pod in shape.pods[shape.next :])
        return plan


def solve(inp: SchedulingInput, *, preferences: bool = True) -> Plan:
    """Plan where every pending pod of `inp` goes: existing, in-flight or new nodes, or nowhere and why.

    Pods with preferences are placed with them as requirements first; each pod that then finds no
    node has one preference relaxed, and the round is planned again (see `preferences`), until every
    pod is placed or has nothing left to relax. `preferences=False` ignores them (a quick fit check).
    """
    if not preferences:
        return _Solver(inp).solve()
    taints = [t for p in inp.node_pools for t in p.taints]
    taints += [t for g in inp.groups for t in g.taints]
    taints += [t for n in inp.nodes for t in n.taints]
    avoid = avoids_prefer_no_schedule(taints)
    originals = {p.key: p for p in inp.pods if not p.node_name and has_preferences(p, avoid)}
    if not originals:
        return _Solver(inp).solve()
    states = dict.fromkeys(originals, Relaxation())
    while True:
        pods = [harden(p, states[p.key], avoid) if p.key in states else p for p in inp.pods]
        plan = _Solver(replace(inp, pods=pods)).solve()
        relaxed = False
        for failed in plan.unschedulable:
            state = states.get(failed.pod)
            if state is not None:
                following = relax(originals[failed.pod], state, avoid)
                if following is not None:
                    states[failed.pod] = following
                    relaxed = True
        if not relaxed:
            return plan
