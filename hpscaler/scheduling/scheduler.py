"""The scheduler: a pure function from pending pods and cluster state to a provisioning plan.

Order of work, as in Karpenter's simulator: existing nodes first, then in-flight nodes, then new
nodes. Three things differ:

* Packing is bin-centric. Karpenter sorts pods by CPU then memory and puts each on the first claim
  that fits; with fixed-size HyperPod instance types that leaves one resource idle (measured
  1.21-1.24x the lower bound in node count). Here a node is opened for the largest pod left and then
  filled with the pods whose demand best matches what the node has left (largest dot product of
  normalised demand and residual capacity; see `packing`).
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

from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_NODEPOOL,
    LABEL_ZONE,
    Node,
    Pod,
    Taint,
    TopologySpread,
    tolerates_all,
)
from hpscaler.scheduling.domains import spread_domains
from hpscaler.scheduling.explain import explain_unschedulable
from hpscaler.scheduling.gangs import GangPlacer, gang_key
from hpscaler.scheduling.options import Option
from hpscaler.scheduling.packing import EPS, Bin, PodClass, Shape, Vector, demand_groups
from hpscaler.scheduling.preferences import (
    Relaxation,
    avoids_prefer_no_schedule,
    harden,
    has_preferences,
    relax,
)
from hpscaler.scheduling.requirements import first_conflict, pod_terms
from hpscaler.scheduling.resize import Sizer, right_size
from hpscaler.scheduling.types import InFlightNode, Plan, PlannedNode, SchedulingInput, Unschedulable


def class_signature(pod: Pod, label_keys: frozenset[str]) -> tuple[object, ...]:
    """What tells two pods apart for the scheduler: pods with equal signatures form one class."""
    return (
        pod.namespace,
        tuple(sorted((k, v) for k, v in pod.labels.items() if k in label_keys)),
        tuple(sorted(pod.node_selector.items())),
        pod.node_affinity,
        pod.tolerations,
        pod.avoids_prefer_no_schedule,
        pod.topology_spread,
        pod.pod_affinity,
        pod.pod_anti_affinity,
        pod.preferred_pod_anti_affinity,
        gang_key(pod),
    )


_UNSCHEDULABLE = Taint("node.kubernetes.io/unschedulable", "NoSchedule")


def node_target(node: Node) -> tuple[tuple[object, ...], dict[str, str], tuple[Taint, ...]]:
    """What decides which pods may go onto `node`: a key equal for nodes alike (all labels but the
    hostname, taints, whether it is closed), its labels (with its hostname) and its effective taints
    (a cordoned or not Ready node takes no pods)."""
    labels = dict(node.labels)
    labels.setdefault(LABEL_HOSTNAME, node.name)
    closed = node.unschedulable or not node.ready
    key = (tuple(sorted((k, v) for k, v in labels.items() if k != LABEL_HOSTNAME)), node.taints, closed)
    return key, labels, (*node.taints, _UNSCHEDULABLE) if closed else node.taints


def _options_signature(pod: Pod) -> tuple[object, ...]:
    """What decides which launch options and nodes a pod is compatible with."""
    return (
        tuple(sorted(pod.node_selector.items())),
        pod.node_affinity,
        pod.tolerations,
        pod.avoids_prefer_no_schedule,
    )


class _Solver(GangPlacer):
    """One scheduling round; `solve` is the public entry point."""

    def __init__(self, inp: SchedulingInput) -> None:
        super().__init__(inp)
        self._sizer: Sizer | None = None

    # -- setup --------------------------------------------------------------------------------

    def build_classes(self) -> None:
        for pod in self.pending:
            self.topology.register(pod)
        for node in self.inp.nodes:
            for pod in node.pods:
                self.topology.register(pod)
        for flight in self.inp.inflight:
            for pod in flight.pods:
                self.topology.register(pod)
        self.topology_keys = tuple(sorted(self.topology.keys() - {LABEL_HOSTNAME}))
        label_keys = self.topology.selector_keys()
        by_signature: dict[tuple[object, ...], PodClass] = {}
        by_options: dict[tuple[object, ...], int] = {}
        by_shape: dict[tuple[int, tuple[float, ...]], Shape] = {}
        demands: dict[tuple[tuple[str, int], ...], tuple[Vector, tuple[float, ...]]] = {}
        for pod in self.pending:
            sig = class_signature(pod, label_keys)
            cls = by_signature.get(sig)
            if cls is None:
                osig = _options_signature(pod)
                okey = by_options.get(osig)
                if okey is None:
                    okey = by_options[osig] = self.add_option_set(pod)
                cls = PodClass(len(self.classes), pod, self.option_terms[okey], okey)
                cls.options = self.option_sets[okey]
                cls.option_ids = self.option_id_sets[okey]
                by_signature[sig] = cls
                self.classes.append(cls)
            requests = tuple(pod.requests.items())
            demand_key = demands.get(requests)
            if demand_key is None:
                demand = self.vector(pod.requests, pods=1)
                demand_key = demands[requests] = (demand, tuple(demand.tolist()))
            demand = demand_key[0]
            skey = (cls.index, demand_key[1])
            shape = by_shape.get(skey)
            if shape is None:
                shape = Shape(len(self.shapes), cls, demand, [], gang=gang_key(pod))
                by_shape[skey] = shape
                self.shapes.append(shape)
                low = cls.min_demand
                cls.min_demand = demand if low is None else np.minimum(low, demand)
            shape.pods.append(pod)
            cls.left += 1
        self.group_demand = demand_groups(self.shapes, len(self.dims))
        self.group_left = np.zeros(len(self.group_demand), dtype=np.int64)
        for shape in self.shapes:
            if shape.group >= 0:
                self.group_left[shape.group] += shape.remaining
        sizes: dict[tuple[int, int], float] = {}  # (options signature, demand group) -> size
        for shape in self.shapes:
            key = (shape.cls.options_key, shape.group)
            size = sizes.get(key) if shape.group >= 0 else None
            if size is None:
                size = sizes[key] = self.shape_size(shape)
            self.sizes.append(size)

    def add_option_set(self, pod: Pod) -> int:
        """Memoise the launch options pods constrained like `pod` are compatible with."""
        terms = pod_terms(pod)
        prefer = pod.avoids_prefer_no_schedule
        if not any(terms):  # no node selector or affinity: only taints can rule an option out
            options = [
                o
                for o in self.options
                if not o.taints or tolerates_all(pod.tolerations, o.taints, prefer=prefer) is None
            ]
        else:
            options = [
                o
                for o in self.options
                if tolerates_all(pod.tolerations, o.taints, prefer=prefer) is None
                and any(first_conflict(term, o.node_sets) is None for term in terms)
            ]
        self.option_sets.append(options)
        self.option_id_sets.append(frozenset(o.index for o in options))
        self.option_terms.append(terms)
        return len(self.option_sets) - 1

    def shape_size(self, shape: Shape) -> float:
        """The shape's largest share of any resource of its best launch option."""
        options = shape.cls.options
        cap = self.option_vectors[options[0].index] if options else np.ones(len(self.dims))
        return float(np.max(np.where(cap > 0, shape.demand / np.maximum(cap, EPS), 0.0)))

    def add_bin(self, b: Bin) -> None:
        self.bins.append(b)
        self.zone_bins.setdefault(b.zone, []).append(b)

    def build_bins(self) -> None:
        for node in self.inp.nodes:
            self.taken_names.add(node.name)
            key, labels, taints = node_target(node)
            used = self.vector(node.used())
            cap = self.vector(node.allocatable)
            signature = self.node_signatures.get(key)
            if signature is None:
                signature = len(self.options) + len(self.node_signatures)
                self.node_signatures[key] = signature
                self.signature_targets[signature] = (labels, taints)
                self.existing_zones[signature] = labels.get(LABEL_ZONE, "")
            self.add_bin(Bin(node.name, "existing", labels, np.maximum(cap - used, 0.0), cap, signature))
            self.add_usage(node.labels.get(LABEL_NODEPOOL, ""), self.node_capacity(node))
            for pod in node.pods:
                self.topology.seed(pod, labels)
        by_key = {(o.node_pool.name, o.group.name, o.spec.name, o.zone): o for o in self.options}
        for flight in self.inp.inflight:
            self.taken_names.add(flight.name)
            option = by_key.get((flight.node_pool, flight.instance_group, flight.instance_type, flight.zone))
            if option is None:
                continue
            self.add_bin(self.inflight_bin(flight, option))
            self.add_usage(option.node_pool.name, option.capacity)
        for option in self.options:
            self.signature_targets[option.index] = option

    def inflight_bin(self, flight: InFlightNode, option: Option) -> Bin:
        labels = {**option.labels, LABEL_HOSTNAME: flight.name}
        cap = self.option_vectors[option.index]
        used = self.vector({}, pods=0)
        for pod in flight.pods:
            used += self.vector(pod.requests, pods=1)
            self.topology.seed(pod, labels)
        return Bin(flight.name, "inflight", labels, np.maximum(cap - used, 0.0), cap, option.index, option)

    def node_capacity(self, node: Node) -> dict[str, int]:
        type_name = node.labels.get("node.kubernetes.io/instance-type", "")
        if type_name in self.inp.catalogue:
            return self.inp.catalogue.get(type_name).capacity()
        return dict(node.allocatable)

    def compile_topology(self) -> None:
        cache: dict[tuple[int, str, str, str], frozenset[str]] = {}
        for cls in self.classes:

            def domains(spread: TopologySpread, cls: PodClass = cls) -> frozenset[str]:
                key = (
                    cls.options_key,
                    spread.topology_key,
                    spread.node_affinity_policy,
                    spread.node_taints_policy,
                )
                found = cache.get(key)
                if found is None:
                    found = cache[key] = spread_domains(self, cls, spread)
                return found

            cls.topology = self.topology.compile(cls.pod, domains)

    # -- rounds -------------------------------------------------------------------------------

    def place_on_existing(self) -> None:
        # Fullest nodes first, so emptier ones stay free for consolidation; then in-flight nodes, then
        # the room left on nodes opened for gangs.
        order = sorted(
            self.bins,
            key=lambda b: (b.kind != "existing", float(np.sum(b.residual / np.maximum(b.capacity, 1.0)))),
        )
        for b in (*order, *self.new_bins):
            self.fill(b)

    def place_on_new(self) -> None:
        # Largest first; at equal size, constrained shapes first (they need more distinct nodes, which
        # the unconstrained ones can then fill).
        order = sorted(
            (s for s in self.shapes if not s.gang),
            key=lambda s: (-self.sizes[s.index], not s.cls.topology.constrained, s.index),
        )
        while order:
            progress = False
            for shape in order:
                while shape.remaining > 0:
                    if shape.cls.parked and self.place_on_parked(shape):
                        progress = True
                        continue
                    option = self.best_option(shape)
                    if option is None:
                        break
                    self.open_and_fill(shape, option)
                    progress = True
            if not progress:
                return
            # What was placed may open domains (pod affinity, spread) to constrained pods left over.
            order = [s for s in order if s.remaining > 0 and s.cls.topology.constrained]

    def open_and_fill(self, shape: Shape, option: Option) -> None:
        """Open a node of `option` for a pod of `shape` and fill it.

        The option is ranked by what it costs per pod of this shape alone, and what the fill then adds
        may cost less on several nodes of a cheaper option than on any single node (a p5 opened for a
        memory-heavy 1-GPU pod, then filled with small GPU pods that two or three g5 hold for a third of
        the price). So the first node of each (demand, option) is a trial: in that case it is undone and
        the option is not opened for that demand again, and the pods go where they pack better.
        """
        key = (shape.cls.options_key, shape.group, option.index)
        trial = key not in self.vetted
        if trial:
            self.vetted.add(key)
            self.journal = []
        b = self.open_bin(option)
        self.place(shape, b)
        self.fill(b)
        if trial:
            if self.sizer().split_beats_resize(b):
                self.rollback(0)
                self.excluded.setdefault(key[:2], set()).add(option.index)
            self.journal = None

    def sizer(self) -> Sizer:
        if self._sizer is None:
            self._sizer = Sizer(self)
        return self._sizer

    def solve(self) -> Plan:
        self.build_classes()
        self.build_bins()
        self.compile_topology()
        self.place_gangs()
        self.place_on_existing()
        self.place_on_new()
        if self.new_bins:
            right_size(self.sizer())
        plan = Plan(unschedulable=self.unschedulable)
        for b in self.bins:
            if b.placed:
                target = plan.existing if b.kind == "existing" else plan.inflight
                target[b.name] = [p.key for p in b.placed]
        for b in self.new_bins:
            option = b.option
            assert option is not None
            plan.new_nodes.append(
                PlannedNode(
                    name=b.name,
                    node_pool=option.node_pool.name,
                    instance_group=option.group.name,
                    instance_type=option.spec.name,
                    zone=option.zone,
                    capacity_type=option.capacity_type,
                    allocatable=dict(option.allocatable),
                    price_per_hour=option.price,
                    pods=[p.key for p in b.placed],
                    labels={k: v for k, v in b.labels.items() if k != LABEL_HOSTNAME},
                )
            )
        for shape in self.shapes:
            if shape.remaining <= 0:
                continue
            reason = explain_unschedulable(
                shape.pods[shape.next], self.inp, self.options, shape.cls.options, self.within_limits
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
