"""The scheduler: a pure function from pending pods and cluster state to a provisioning plan.

Order of work, as in Karpenter's simulator: existing nodes first, then in-flight nodes, then new
nodes. Two things differ:

* Packing is bin-centric. Karpenter sorts pods by CPU then memory and puts each on the first claim
  that fits; with fixed-size HyperPod instance types that leaves one resource idle (measured
  1.21-1.24x the lower bound in node count). Here a node is opened for the largest pod left and then
  filled, one pod at a time, with the pod whose demand best matches what the node has left (largest
  dot product of normalised demand and residual capacity).
* Pods are grouped into shapes (same constraints, same requests), so the work per placement depends
  on the number of distinct shapes, not on the number of pods.

Gangs are placed first, all-or-nothing and in a single zone, with every tentative placement undone
when a gang does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_NODEPOOL,
    PODS_RESOURCE,
    Node,
    Pod,
    Taint,
    tolerates_all,
)
from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.explain import explain_unschedulable
from hpscaler.scheduling.options import Option, build_options
from hpscaler.scheduling.requirements import KeySets, first_conflict, pod_terms, term_fits_labels
from hpscaler.scheduling.types import InFlightNode, Plan, PlannedNode, SchedulingInput, Unschedulable

Vector = npt.NDArray[np.float64]
_EPS = 1e-9


@dataclass(slots=True)
class PodClass:
    """Pods that share every scheduling constraint and label (their requests may differ)."""

    index: int
    pod: Pod
    terms: tuple[KeySets, ...]
    topology: topo.ClassTopology = field(default_factory=topo.ClassTopology)
    options: list[Option] = field(default_factory=list)  # compatible launch options, best first


@dataclass(slots=True)
class Shape:
    """Pods of one class with identical requests: the unit the packer chooses between."""

    index: int
    cls: PodClass
    demand: Vector
    pods: list[Pod]
    next: int = 0
    gang: str = ""

    @property
    def remaining(self) -> int:
        """Pods of this shape not placed yet."""
        return len(self.pods) - self.next


@dataclass(slots=True)
class Bin:
    """A node pods can be packed onto: existing, in flight, or new."""

    name: str
    kind: str
    labels: dict[str, str]
    residual: Vector
    capacity: Vector
    signature: int
    option: Option | None = None
    placed: list[Pod] = field(default_factory=list)


def _class_signature(pod: Pod) -> tuple[object, ...]:
    return (
        pod.namespace,
        tuple(sorted(pod.labels.items())),
        tuple(sorted(pod.node_selector.items())),
        pod.node_affinity,
        pod.tolerations,
        pod.topology_spread,
        pod.pod_affinity,
        pod.pod_anti_affinity,
        pod.gang.name if pod.gang else "",
    )


class _Solver:
    """One scheduling round; `solve` is the public entry point."""

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
        self.topology = topo.Topology()
        self.classes: list[PodClass] = []
        self.shapes: list[Shape] = []
        self.bins: list[Bin] = []
        self.new_bins: list[Bin] = []
        self.journal: list[tuple[str, int, Bin]] = []
        self.compat_cache: dict[int, npt.NDArray[np.bool_]] = {}
        self.node_signatures: dict[tuple[object, ...], int] = {}
        self.signature_targets: dict[int, tuple[dict[str, str], tuple[Taint, ...]] | Option] = {}
        self.usage: dict[str, dict[str, int]] = {}
        self.failed: dict[int, str] = {}
        self.unschedulable: list[Unschedulable] = []

    # -- setup --------------------------------------------------------------------------------

    def vector(self, resources: dict[str, int], pods: int = 0) -> Vector:
        vec = np.zeros(len(self.dims))
        for name, amount in resources.items():
            index = self.dim_index.get(name)
            if index is not None:
                vec[index] += amount
        vec[self.dim_index[PODS_RESOURCE]] += pods
        return vec

    def build_classes(self) -> None:
        by_signature: dict[tuple[object, ...], PodClass] = {}
        by_shape: dict[tuple[int, tuple[float, ...]], Shape] = {}
        for pod in self.pending:
            self.topology.register(pod)
        for node in self.inp.nodes:
            for pod in node.pods:
                self.topology.register(pod)
        for pod in self.pending:
            sig = _class_signature(pod)
            cls = by_signature.get(sig)
            if cls is None:
                cls = PodClass(len(self.classes), pod, pod_terms(pod))
                cls.options = [o for o in self.options if self.option_fits_class(o, cls)]
                by_signature[sig] = cls
                self.classes.append(cls)
            demand = self.vector(pod.requests, pods=1)
            skey = (cls.index, tuple(demand))
            shape = by_shape.get(skey)
            if shape is None:
                shape = Shape(len(self.shapes), cls, demand, [], gang=pod.gang.name if pod.gang else "")
                by_shape[skey] = shape
                self.shapes.append(shape)
            shape.pods.append(pod)
        self.demand = (
            np.array([s.demand for s in self.shapes]) if self.shapes else np.zeros((0, len(self.dims)))
        )

    def option_fits_class(self, option: Option, cls: PodClass) -> bool:
        if tolerates_all(cls.pod.tolerations, option.taints) is not None:
            return False
        return any(first_conflict(term, option.node_sets) is None for term in cls.terms)

    def build_bins(self) -> None:
        for node in self.inp.nodes:
            labels = dict(node.labels)
            labels.setdefault(LABEL_HOSTNAME, node.name)
            used = self.vector(node.used())
            cap = self.vector(node.allocatable)
            key = (
                tuple(sorted((k, v) for k, v in labels.items() if k != LABEL_HOSTNAME)),
                node.taints,
                node.unschedulable or not node.ready,
            )
            signature = self.node_signatures.get(key)
            if signature is None:
                signature = len(self.options) + len(self.node_signatures)
                self.node_signatures[key] = signature
                taints = (
                    node.taints
                    if not (node.unschedulable or not node.ready)
                    else (*node.taints, Taint("node.kubernetes.io/unschedulable", "NoSchedule"))
                )
                self.signature_targets[signature] = (labels, taints)
            self.bins.append(Bin(node.name, "existing", labels, np.maximum(cap - used, 0.0), cap, signature))
            self.add_usage(node.labels.get(LABEL_NODEPOOL, ""), self.node_capacity(node))
            for pod in node.pods:
                self.topology.seed(pod, labels)
        by_key = {(o.node_pool.name, o.group.name, o.spec.name, o.zone): o for o in self.options}
        for flight in self.inp.inflight:
            option = by_key.get((flight.node_pool, flight.instance_group, flight.instance_type, flight.zone))
            if option is None:
                continue
            self.bins.append(self.inflight_bin(flight, option))
            self.add_usage(option.node_pool.name, option.capacity)
        for option in self.options:
            self.signature_targets[option.index] = option

    def inflight_bin(self, flight: InFlightNode, option: Option) -> Bin:
        labels = {**option.labels, LABEL_HOSTNAME: flight.name}
        cap = self.vector(option.allocatable)
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

    def compile_topology(self) -> None:
        for cls in self.classes:
            zones = {o.zone for o in cls.options if (o.group.name, o.zone) not in self.inp.unavailable}
            for b in self.bins:
                if b.kind == "existing" and self.compatible(cls, b.signature):
                    zone = b.labels.get("topology.kubernetes.io/zone")
                    if zone:
                        zones.add(zone)
            cls.topology = self.topology.compile(cls.pod, zones)

    # -- compatibility ------------------------------------------------------------------------

    def compatible(self, cls: PodClass, signature: int) -> bool:
        target = self.signature_targets[signature]
        if isinstance(target, Option):
            return target in cls.options
        labels, taints = target
        if tolerates_all(cls.pod.tolerations, taints) is not None:
            return False
        return any(term_fits_labels(term, labels) for term in cls.terms)

    def shape_mask(self, signature: int) -> npt.NDArray[np.bool_]:
        mask = self.compat_cache.get(signature)
        if mask is None:
            by_class = [self.compatible(c, signature) for c in self.classes]
            mask = np.array([by_class[s.cls.index] and not s.gang for s in self.shapes], dtype=bool)
            self.compat_cache[signature] = mask
        return mask

    # -- placement ----------------------------------------------------------------------------

    def place(self, shape: Shape, b: Bin) -> None:
        pod = shape.pods[shape.next]
        shape.next += 1
        b.residual -= shape.demand
        b.placed.append(pod)
        topo.record(shape.cls.topology, b.labels, 1)
        self.journal.append(("place", shape.index, b))

    def open_bin(self, option: Option) -> Bin:
        name = f"{option.group.name}-{len(self.new_bins) + 1:04d}"
        cap = self.vector(option.allocatable)
        b = Bin(name, "new", {**option.labels, LABEL_HOSTNAME: name}, cap.copy(), cap, option.index, option)
        self.new_bins.append(b)
        self.add_usage(option.node_pool.name, option.capacity)
        self.journal.append(("open", -1, b))
        return b

    def rollback(self, mark: int) -> None:
        while len(self.journal) > mark:
            op, index, b = self.journal.pop()
            if op == "place":
                shape = self.shapes[index]
                shape.next -= 1
                b.residual += shape.demand
                b.placed.pop()
                topo.record(shape.cls.topology, b.labels, -1)
            else:
                self.new_bins.pop()
                assert b.option is not None
                self.add_usage(b.option.node_pool.name, b.option.capacity, sign=-1)

    def can_place(self, shape: Shape, b: Bin) -> bool:
        if shape.remaining <= 0 or not bool(np.all(shape.demand <= b.residual + _EPS)):
            return False
        return not shape.cls.topology.constrained or topo.allowed(shape.cls.topology, b.labels)

    def fill(self, b: Bin) -> None:
        """Fill a bin with the shapes whose demand best matches its residual capacity."""
        if not self.shapes:
            return
        allowed = self.shape_mask(b.signature).copy()
        remaining = np.array([s.remaining for s in self.shapes])
        scale = np.where(b.capacity > 0, 1.0 / np.maximum(b.capacity, _EPS) ** 2, 0.0)
        while True:
            fits = allowed & (remaining > 0) & np.all(self.demand <= b.residual + _EPS, axis=1)
            if not fits.any():
                return
            score = np.where(fits, self.demand @ (b.residual * scale), -1.0)
            index = int(np.argmax(score))
            shape = self.shapes[index]
            if shape.cls.topology.constrained and not topo.allowed(shape.cls.topology, b.labels):
                allowed[index] = False
                continue
            self.place(shape, b)
            remaining[index] -= 1

    def best_option(self, shape: Shape, zone: str = "") -> Option | None:
        """The best-ranked launch option that can take one pod of `shape` on a new node now."""
        best: tuple[tuple[object, ...], Option] | None = None
        for option in shape.cls.options:
            if zone and option.zone != zone:
                continue
            if (option.group.name, option.zone) in self.inp.unavailable or not self.within_limits(option):
                continue
            alloc = self.vector(option.allocatable)
            if not bool(np.all(shape.demand <= alloc + _EPS)):
                continue
            labels = {**option.labels, LABEL_HOSTNAME: "\x00new"}
            if shape.cls.topology.constrained and not topo.allowed(shape.cls.topology, labels):
                continue
            ratios = [alloc[i] / d for i, d in enumerate(shape.demand) if d > 0]
            per_node = max(1.0, float(np.floor(min(ratios)))) if ratios else 1.0
            key = (*option.rank_key()[:3], option.price / per_node, option.class_position, option.index)
            if best is None or key < best[0]:
                best = (key, option)
        return best[1] if best else None

    # -- rounds -------------------------------------------------------------------------------

    def place_gangs(self) -> None:
        gangs: dict[str, list[Shape]] = {}
        for shape in self.shapes:
            if shape.gang:
                gangs.setdefault(shape.gang, []).append(shape)
        running: dict[str, int] = {}
        for node in self.inp.nodes:
            for pod in node.pods:
                if pod.gang:
                    running[pod.gang.name] = running.get(pod.gang.name, 0) + 1
        for name in sorted(gangs, key=lambda g: -sum(s.remaining for s in gangs[g])):
            shapes = sorted(gangs[name], key=lambda s: -float(s.demand.sum()))
            members = sum(s.remaining for s in shapes)
            min_member = shapes[0].pods[0].gang.min_member if shapes[0].pods[0].gang else 0
            if min_member and members + running.get(name, 0) < min_member:
                self.fail_gang(
                    shapes,
                    f"gang {name} incomplete: {members + running.get(name, 0)} of "
                    f"{min_member} members exist; waiting for the rest before provisioning",
                )
                continue
            if not self.place_gang(shapes):
                self.fail_gang(
                    shapes, f"gang {name}: its {members} pods do not all fit in any single availability zone"
                )

    def gang_zones(self, shapes: list[Shape]) -> list[str]:
        ranked: dict[str, tuple[object, ...]] = {}
        common: set[str] | None = None
        for shape in shapes:
            zones = {o.zone for o in shape.cls.options}
            zones |= {
                b.labels.get("topology.kubernetes.io/zone", "")
                for b in self.bins
                if self.compatible(shape.cls, b.signature)
            }
            common = zones if common is None else common & zones
            for option in shape.cls.options:
                key = option.rank_key()
                if option.zone not in ranked or key < ranked[option.zone]:
                    ranked[option.zone] = key
        return sorted(common or set(), key=lambda z: (z not in ranked, ranked.get(z, ()), z))

    def place_gang(self, shapes: list[Shape]) -> bool:
        for zone in self.gang_zones(shapes):
            mark = len(self.journal)
            opened: list[Bin] = []
            if all(self.place_gang_shape(shape, zone, opened) for shape in shapes):
                return True
            self.rollback(mark)
        return False

    def place_gang_shape(self, shape: Shape, zone: str, opened: list[Bin]) -> bool:
        while shape.remaining > 0:
            target = next(
                (
                    b
                    for b in [*self.bins, *opened]
                    if b.labels.get("topology.kubernetes.io/zone") == zone
                    and self.compatible(shape.cls, b.signature)
                    and self.can_place(shape, b)
                ),
                None,
            )
            if target is None:
                option = self.best_option(shape, zone)
                if option is None:
                    return False
                target = self.open_bin(option)
                opened.append(target)
            self.place(shape, target)
        return True

    def fail_gang(self, shapes: list[Shape], reason: str) -> None:
        for shape in shapes:
            while shape.remaining > 0:
                self.unschedulable.append(Unschedulable(shape.pods[shape.next].key, reason))
                shape.next += 1

    def place_on_existing(self) -> None:
        # Fullest nodes first, so emptier ones stay free for consolidation.
        order = sorted(
            (b for b in self.bins),
            key=lambda b: (b.kind != "existing", float(np.sum(b.residual / np.maximum(b.capacity, 1.0)))),
        )
        for b in order:
            self.fill(b)

    def place_on_new(self) -> None:
        sizes = {}
        for shape in self.shapes:
            best = shape.cls.options[0].allocatable if shape.cls.options else {}
            cap = self.vector(best) if best else np.ones(len(self.dims))
            sizes[shape.index] = float(np.max(np.where(cap > 0, shape.demand / np.maximum(cap, _EPS), 0.0)))
        order = sorted((s for s in self.shapes if not s.gang), key=lambda s: (-sizes[s.index], s.index))
        for shape in order:
            while shape.remaining > 0:
                option = self.best_option(shape)
                if option is None:
                    break
                b = self.open_bin(option)
                self.place(shape, b)
                self.fill(b)

    def solve(self) -> Plan:
        self.build_classes()
        self.build_bins()
        self.compile_topology()
        self.place_gangs()
        self.place_on_existing()
        self.place_on_new()
        self.journal.clear()
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
                )
            )
        for shape in self.shapes:
            for pod in shape.pods[shape.next :]:
                plan.unschedulable.append(
                    Unschedulable(
                        pod.key,
                        explain_unschedulable(
                            pod, self.inp, self.options, shape.cls.options, self.within_limits
                        ),
                    )
                )
        return plan


def solve(inp: SchedulingInput) -> Plan:
    """Plan where every pending pod of `inp` goes: existing, in-flight or new nodes, or nowhere and why."""
    return _Solver(inp).solve()
