"""The scheduler: a pure function from pending pods and cluster state to a provisioning plan.

Order of work, as in Karpenter's simulator: existing nodes first, then in-flight nodes, then new
nodes. Two things differ:

* Packing is bin-centric. Karpenter sorts pods by CPU then memory and puts each on the first claim
  that fits; with fixed-size HyperPod instance types that leaves one resource idle (measured
  1.21-1.24x the lower bound in node count). Here a node is opened for the largest pod left and then
  filled, one pod at a time, with the pod whose demand best matches what the node has left (largest
  dot product of normalised demand and residual capacity).
* Pods are grouped into shapes (same constraints, same requests), so the work per placement depends
  on the number of distinct shapes, not on the number of pods. Labels only split pods into different
  shapes when some topology selector reads them.

Topology can close a node to a pod for a while: a zone spread closes a zone until the others catch
up, a pod affinity until a matching pod arrives. A node with room that was closed that way is
remembered (parked) for the pod's shape and tried again before a new node is opened for it, and pods
left over are retried while placements keep opening domains to them.

Gangs are placed first, all-or-nothing and in a single zone (the zone of members already running,
if any), with every tentative placement undone when a gang does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_NODEPOOL,
    LABEL_ZONE,
    PODS_RESOURCE,
    Node,
    Pod,
    Taint,
    tolerates_all,
)
from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.explain import explain_unschedulable, static_reason
from hpscaler.scheduling.options import Option, build_options
from hpscaler.scheduling.requirements import KeySets, first_conflict, pod_terms, term_fits_labels
from hpscaler.scheduling.types import InFlightNode, Plan, PlannedNode, SchedulingInput, Unschedulable

Vector = npt.NDArray[np.float64]
_EPS = 1e-9
_PROBE_HOST = "\x00probe"  # hostname of a node that does not exist yet: an empty hostname domain


def _fits(demand: Vector, free: Vector) -> bool:
    return bool(np.all(demand <= free + _EPS))


@dataclass(slots=True)
class PodClass:
    """Pods that share every scheduling constraint and the labels selectors read (requests may differ)."""

    index: int
    pod: Pod
    terms: tuple[KeySets, ...]
    topology: topo.ClassTopology = field(default_factory=topo.ClassTopology)
    options: list[Option] = field(default_factory=list)  # compatible launch options, best first
    option_ids: frozenset[int] = frozenset()


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

    @property
    def zone(self) -> str:
        """The node's availability zone ("" if unknown)."""
        return self.labels.get(LABEL_ZONE, "")


@dataclass(slots=True, eq=False)
class Shape:
    """Pods of one class with identical requests: the unit the packer chooses between."""

    index: int
    cls: PodClass
    demand: Vector
    pods: list[Pod]
    next: int = 0
    gang: str = ""  # namespace/name of the pods' gang
    # Bins with room that topology closed to the shape at the level of a domain (zone), which later
    # placements may reopen: bin signature -> bin name -> bin.
    parked: dict[int, dict[str, Bin]] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        """Pods of this shape not placed yet."""
        return len(self.pods) - self.next


def _class_signature(pod: Pod, label_keys: frozenset[str]) -> tuple[object, ...]:
    return (
        pod.namespace,
        tuple(sorted((k, v) for k, v in pod.labels.items() if k in label_keys)),
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
        self.option_vectors = [self.vector(o.allocatable) for o in self.options]
        self.option_probes = [{**o.labels, LABEL_HOSTNAME: _PROBE_HOST} for o in self.options]
        self.topology = topo.Topology()
        self.classes: list[PodClass] = []
        self.shapes: list[Shape] = []
        self.demand: Vector = np.zeros((0, len(self.dims)))
        self.left: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)  # Shape.remaining, vectorised
        self.shape_class: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)  # Shape.cls.index
        self.sizes: list[float] = []
        self.bins: list[Bin] = []  # existing and in-flight nodes
        self.zone_bins: dict[str, list[Bin]] = {}
        self.new_bins: list[Bin] = []
        self.new_zone_bins: dict[str, list[Bin]] = {}
        self.taken_names: set[str] = set()
        self.journal: list[tuple[str, int, Bin]] = []
        self.mask_cache: dict[int, npt.NDArray[np.bool_]] = {}
        self.compat_cache: dict[tuple[int, int], bool] = {}
        self.bin_zone_cache: dict[int, frozenset[str]] = {}
        self.node_signatures: dict[tuple[object, ...], int] = {}
        self.existing_zones: dict[int, str] = {}  # existing-node signature -> zone
        self.signature_targets: dict[int, tuple[dict[str, str], tuple[Taint, ...]] | Option] = {}
        self.usage: dict[str, dict[str, int]] = {}
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
        for pod in self.pending:
            self.topology.register(pod)
        for node in self.inp.nodes:
            for pod in node.pods:
                self.topology.register(pod)
        for flight in self.inp.inflight:
            for pod in flight.pods:
                self.topology.register(pod)
        label_keys = self.topology.selector_keys()
        by_signature: dict[tuple[object, ...], PodClass] = {}
        by_shape: dict[tuple[int, tuple[float, ...]], Shape] = {}
        for pod in self.pending:
            sig = _class_signature(pod, label_keys)
            cls = by_signature.get(sig)
            if cls is None:
                cls = PodClass(len(self.classes), pod, pod_terms(pod))
                cls.options = [o for o in self.options if self.option_fits_class(o, cls)]
                cls.option_ids = frozenset(o.index for o in cls.options)
                by_signature[sig] = cls
                self.classes.append(cls)
            demand = self.vector(pod.requests, pods=1)
            skey = (cls.index, tuple(demand))
            shape = by_shape.get(skey)
            if shape is None:
                gang = f"{pod.namespace}/{pod.gang.name}" if pod.gang else ""
                shape = Shape(len(self.shapes), cls, demand, [], gang=gang)
                by_shape[skey] = shape
                self.shapes.append(shape)
            shape.pods.append(pod)
        if self.shapes:
            self.demand = np.array([s.demand for s in self.shapes])
        self.left = np.array([s.remaining for s in self.shapes], dtype=np.int64)
        self.shape_class = np.array([s.cls.index for s in self.shapes], dtype=np.int64)
        self.sizes = [self.shape_size(s) for s in self.shapes]

    def shape_size(self, shape: Shape) -> float:
        """The shape's largest share of any resource of its best launch option."""
        options = shape.cls.options
        cap = self.option_vectors[options[0].index] if options else np.ones(len(self.dims))
        return float(np.max(np.where(cap > 0, shape.demand / np.maximum(cap, _EPS), 0.0)))

    def option_fits_class(self, option: Option, cls: PodClass) -> bool:
        if tolerates_all(cls.pod.tolerations, option.taints) is not None:
            return False
        return any(first_conflict(term, option.node_sets) is None for term in cls.terms)

    def add_bin(self, b: Bin) -> None:
        self.bins.append(b)
        self.zone_bins.setdefault(b.zone, []).append(b)

    def build_bins(self) -> None:
        for node in self.inp.nodes:
            self.taken_names.add(node.name)
            labels = dict(node.labels)
            labels.setdefault(LABEL_HOSTNAME, node.name)
            used = self.vector(node.used())
            cap = self.vector(node.allocatable)
            closed = node.unschedulable or not node.ready
            key = (
                tuple(sorted((k, v) for k, v in labels.items() if k != LABEL_HOSTNAME)),
                node.taints,
                closed,
            )
            signature = self.node_signatures.get(key)
            if signature is None:
                signature = len(self.options) + len(self.node_signatures)
                self.node_signatures[key] = signature
                taints = (
                    (*node.taints, Taint("node.kubernetes.io/unschedulable", "NoSchedule"))
                    if closed
                    else node.taints
                )
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
            cls.topology = self.topology.compile(cls.pod, zones | self.bin_zones(cls))

    # -- compatibility ------------------------------------------------------------------------

    def compatible(self, cls: PodClass, signature: int) -> bool:
        key = (cls.index, signature)
        found = self.compat_cache.get(key)
        if found is None:
            target = self.signature_targets[signature]
            if isinstance(target, Option):
                found = target.index in cls.option_ids
            else:
                labels, taints = target
                found = tolerates_all(cls.pod.tolerations, taints) is None and any(
                    term_fits_labels(term, labels) for term in cls.terms
                )
            self.compat_cache[key] = found
        return found

    def bin_zones(self, cls: PodClass) -> frozenset[str]:
        """Zones of the existing and in-flight nodes pods of `cls` may run on."""
        zones = self.bin_zone_cache.get(cls.index)
        if zones is None:
            found = {zone for sig, zone in self.existing_zones.items() if zone and self.compatible(cls, sig)}
            found.update(
                b.zone
                for b in self.bins
                if b.kind == "inflight" and b.zone and self.compatible(cls, b.signature)
            )
            zones = self.bin_zone_cache[cls.index] = frozenset(found)
        return zones

    def shape_mask(self, signature: int) -> npt.NDArray[np.bool_]:
        mask = self.mask_cache.get(signature)
        if mask is None:
            by_class = [self.compatible(c, signature) for c in self.classes]
            mask = np.array([by_class[s.cls.index] and not s.gang for s in self.shapes], dtype=bool)
            self.mask_cache[signature] = mask
        return mask

    # -- placement ----------------------------------------------------------------------------

    def place(self, shape: Shape, b: Bin) -> None:
        pod = shape.pods[shape.next]
        shape.next += 1
        self.left[shape.index] -= 1
        b.residual -= shape.demand
        b.placed.append(pod)
        topo.record(shape.cls.topology, b.labels, 1)
        self.journal.append(("place", shape.index, b))

    def open_bin(self, option: Option) -> Bin:
        number = len(self.new_bins) + 1
        name = f"{option.group.name}-{number:04d}"
        while name in self.taken_names:  # never reuse an existing or in-flight node's hostname
            number += 1
            name = f"{option.group.name}-{number:04d}"
        cap = self.option_vectors[option.index]
        b = Bin(name, "new", {**option.labels, LABEL_HOSTNAME: name}, cap.copy(), cap, option.index, option)
        self.new_bins.append(b)
        self.new_zone_bins.setdefault(b.zone, []).append(b)
        self.taken_names.add(name)
        self.add_usage(option.node_pool.name, option.capacity)
        self.journal.append(("open", -1, b))
        return b

    def rollback(self, mark: int) -> None:
        while len(self.journal) > mark:
            op, index, b = self.journal.pop()
            if op == "place":
                shape = self.shapes[index]
                shape.next -= 1
                self.left[index] += 1
                b.residual += shape.demand
                b.placed.pop()
                topo.record(shape.cls.topology, b.labels, -1)
            else:
                self.new_bins.pop()
                self.new_zone_bins[b.zone].pop()
                self.taken_names.discard(b.name)
                assert b.option is not None
                self.add_usage(b.option.node_pool.name, b.option.capacity, sign=-1)

    def can_place(self, shape: Shape, b: Bin) -> bool:
        if shape.remaining <= 0 or not _fits(shape.demand, b.residual):
            return False
        return not shape.cls.topology.constrained or topo.allowed(shape.cls.topology, b.labels)

    def fill(self, b: Bin) -> None:
        """Fill a bin with the shapes whose demand best matches its residual capacity."""
        if not self.shapes:
            return
        scale = np.where(b.capacity > 0, 1.0 / np.maximum(b.capacity, _EPS) ** 2, 0.0)
        # Candidates only shrink while the bin fills: work on them, not on every shape.
        candidates = np.flatnonzero(self.shape_mask(b.signature) & (self.left > 0))
        while candidates.size:
            demand = self.demand[candidates]
            keep = (self.left[candidates] > 0) & np.all(demand <= b.residual + _EPS, axis=1)
            if not keep.all():
                candidates, demand = candidates[keep], demand[keep]
                if not candidates.size:
                    return
            shape = self.shapes[int(candidates[np.argmax(demand @ (b.residual * scale))])]
            if shape.cls.topology.constrained and not topo.allowed(shape.cls.topology, b.labels):
                # Topology is a property of the class: the bin is closed to all its shapes.
                same = self.shape_class[candidates] == shape.cls.index
                self.park(b, [self.shapes[i] for i in candidates[same]])
                candidates = candidates[~same]
                continue
            self.place(shape, b)

    def park(self, b: Bin, shapes: list[Shape]) -> None:
        """Remember a bin topology closed to `shapes` (of one class), unless only its host is closed."""
        probe = {**b.labels, LABEL_HOSTNAME: _PROBE_HOST}
        if topo.allowed(shapes[0].cls.topology, probe):
            return  # a fresh node in the same domain would do: this host stays closed for good
        for shape in shapes:
            shape.parked.setdefault(b.signature, {})[b.name] = b

    def place_on_parked(self, shape: Shape) -> bool:
        """Place one pod of `shape` on a parked bin that topology has reopened; existing nodes first."""
        for signature in sorted(shape.parked, key=lambda s: (s < len(self.options), s)):
            bins = shape.parked[signature]
            probe = {**next(iter(bins.values())).labels, LABEL_HOSTNAME: _PROBE_HOST}
            if not topo.allowed(shape.cls.topology, probe):
                continue  # the domain is still closed
            for name, b in list(bins.items()):
                if self.can_place(shape, b):
                    self.place(shape, b)
                    self.fill(b)
                    return True
                del bins[name]  # full for the shape, or its host is closed to it: for good
            del shape.parked[signature]
        return False

    def best_option(self, shape: Shape, zone: str = "") -> Option | None:
        """The best-ranked launch option that can take one pod of `shape` on a new node now."""
        best: tuple[tuple[object, ...], Option] | None = None
        constrained = shape.cls.topology.constrained
        needed = shape.demand > 0
        for option in shape.cls.options:
            if zone and option.zone != zone:
                continue
            if (option.group.name, option.zone) in self.inp.unavailable or not self.within_limits(option):
                continue
            alloc = self.option_vectors[option.index]
            if not _fits(shape.demand, alloc):
                continue
            if constrained and not topo.allowed(shape.cls.topology, self.option_probes[option.index]):
                continue
            per_node = max(1.0, float(np.floor(np.min(alloc[needed] / shape.demand[needed]))))
            key = (*option.rank_key()[:3], option.price / per_node, option.class_position, option.index)
            if best is None or key < best[0]:
                best = (key, option)
        return best[1] if best else None

    # -- gangs --------------------------------------------------------------------------------

    def place_gangs(self) -> None:
        gangs: dict[str, list[Shape]] = {}
        for shape in self.shapes:
            if shape.gang:
                gangs.setdefault(shape.gang, []).append(shape)
        running: dict[str, int] = {}
        running_zones: dict[str, set[str]] = {}
        for node in self.inp.nodes:
            for pod in node.pods:
                if pod.gang:
                    key = f"{pod.namespace}/{pod.gang.name}"
                    running[key] = running.get(key, 0) + 1
                    if node.zone:
                        running_zones.setdefault(key, set()).add(node.zone)
        for name in sorted(gangs, key=lambda g: (-sum(s.remaining for s in gangs[g]), g)):
            shapes = sorted(gangs[name], key=lambda s: (-self.sizes[s.index], s.index))
            members = sum(s.remaining for s in shapes)
            have = members + running.get(name, 0)
            min_member = max(p.gang.min_member for s in shapes for p in s.pods[:1] if p.gang)
            if have < min_member:
                self.fail_gang(
                    shapes,
                    f"gang {name} incomplete: {have} of {min_member} members exist; "
                    "waiting for the rest before provisioning",
                )
                continue
            zones = self.gang_zones(shapes)
            fixed = running_zones.get(name)
            if fixed:
                zones = [z for z in zones if z in fixed]
            if not self.place_gang(shapes, zones):
                self.fail_gang(shapes, self.gang_failure(name, shapes, zones, fixed))

    def gang_zones(self, shapes: list[Shape]) -> list[str]:
        """Zones every member could use, best-ranked first."""
        ranked: dict[str, tuple[object, ...]] = {}
        common: set[str] | None = None
        for shape in shapes:
            zones = {o.zone for o in shape.cls.options} | self.bin_zones(shape.cls)
            zones.discard("")
            common = zones if common is None else common & zones
            for option in shape.cls.options:
                if (option.group.name, option.zone) in self.inp.unavailable:
                    continue
                key = option.rank_key()
                if option.zone not in ranked or key < ranked[option.zone]:
                    ranked[option.zone] = key
        return sorted(common or set(), key=lambda z: (z not in ranked, ranked.get(z, ()), z))

    def place_gang(self, shapes: list[Shape], zones: list[str]) -> bool:
        for zone in zones:
            mark = len(self.journal)
            if all(self.place_gang_shape(shape, zone) for shape in shapes):
                return True
            self.rollback(mark)
        return False

    def place_gang_shape(self, shape: Shape, zone: str) -> bool:
        bins = [*self.zone_bins.get(zone, ()), *self.new_zone_bins.get(zone, ())]
        if bins:
            # One vectorised pass finds the nodes of the zone with room, instead of a check per node.
            residual = np.array([b.residual for b in bins])
            for i in np.flatnonzero(np.all(shape.demand <= residual + _EPS, axis=1)):
                b = bins[i]
                if self.compatible(shape.cls, b.signature):
                    while self.can_place(shape, b):
                        self.place(shape, b)
                    if shape.remaining <= 0:
                        return True
        while shape.remaining > 0:
            option = self.best_option(shape, zone)
            if option is None:
                return False
            b = self.open_bin(option)
            self.place(shape, b)
            while self.can_place(shape, b):
                self.place(shape, b)
        return True

    def gang_failure(self, name: str, shapes: list[Shape], zones: list[str], fixed: set[str] | None) -> str:
        for shape in shapes:
            pod = shape.pods[shape.next]
            reason = static_reason(pod, self.inp, self.options, shape.cls.options)
            if reason is not None and not self.bin_zones(shape.cls):
                return f"gang {name}: member {pod.key} cannot be placed: {reason}"
        members = sum(s.remaining for s in shapes)
        if fixed:
            where = ", ".join(sorted(fixed))
            return f"gang {name}: its {members} pending pods do not fit in {where}, where its members run"
        if not zones:
            return f"gang {name}: its members have no availability zone in common"
        return f"gang {name}: its {members} pods do not all fit in any single availability zone"

    def fail_gang(self, shapes: list[Shape], reason: str) -> None:
        for shape in shapes:
            while shape.remaining > 0:
                self.unschedulable.append(Unschedulable(shape.pods[shape.next].key, reason))
                shape.next += 1
            self.left[shape.index] = 0

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
                    if shape.parked and self.place_on_parked(shape):
                        progress = True
                        continue
                    option = self.best_option(shape)
                    if option is None:
                        break
                    b = self.open_bin(option)
                    self.place(shape, b)
                    self.fill(b)
                    progress = True
            if not progress:
                return
            # What was placed may open domains (pod affinity, spread) to constrained pods left over.
            order = [s for s in order if s.remaining > 0 and s.cls.topology.constrained]

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
            if shape.remaining <= 0:
                continue
            reason = explain_unschedulable(
                shape.pods[shape.next], self.inp, self.options, shape.cls.options, self.within_limits
            )
            plan.unschedulable.extend(Unschedulable(pod.key, reason) for pod in shape.pods[shape.next :])
        return plan


def solve(inp: SchedulingInput) -> Plan:
    """Plan where every pending pod of `inp` goes: existing, in-flight or new nodes, or nowhere and why."""
    return _Solver(inp).solve()
