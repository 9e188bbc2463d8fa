"""The frozen index of one scheduling round: its inputs, worked out once, and caches over them.

As Karpenter's scheduler computes its NodePool templates, instance types and topology once per round
before it adds a pod, `RoundIndex` holds what does not change while pods are placed: the launch options
and their resource vectors, the pending pods grouped into classes, shapes and demand groups, the
targets of existing and in-flight nodes (their labels and taints, or their launch option), and the
topology registry. Its caches (compatibility of a class with a node signature, option tables, probes)
are memos of functions of those inputs. What placing pods changes lives in `placement.Packing`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_ZONE,
    PODS_RESOURCE,
    Node,
    Pod,
    Taint,
    TopologySpread,
    tolerates_all,
)
from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.optionmemo import MEMO
from hpscaler.scheduling.options import Option
from hpscaler.scheduling.packing import EPS, PodClass, Shape, Vector, demand_groups
from hpscaler.scheduling.ranking import OptionTable
from hpscaler.scheduling.requirements import KeySets, first_conflict, pod_terms, term_fits_labels
from hpscaler.scheduling.signatures import (
    constraints_signature,
    gang_key,
    label_signature,
    node_target,
    options_signature,
)
from hpscaler.scheduling.types import InFlightNode, SchedulingInput

_PROBE_HOST = "\x00probe"  # hostname of a node that does not exist yet: an empty hostname domain
_NO_DEMAND: Vector = np.zeros(0)  # a shape's demand until every pending pod is read

DomainsOf = Callable[[PodClass, TopologySpread], frozenset[str]]  # a class's domains of a spread
NodeTarget = tuple[dict[str, str], tuple[Taint, ...]]  # an existing node's labels and effective taints


class RoundIndex:
    """What one scheduling round works from (see the module docstring). Built once; never reassigned."""

    def __init__(self, inp: SchedulingInput) -> None:
        self.inp = inp
        # Shared with the other rounds of this configuration (see `optionmemo`): read-only.
        self.options = MEMO.options(
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
        self.classes: list[PodClass] = []
        self.shapes: list[Shape] = []
        # Per options signature (see `options_signature`): compatible options, their ids, node terms.
        self.option_sets: list[list[Option]] = []
        self.option_id_sets: list[frozenset[int]] = []
        self.option_terms: list[tuple[KeySets, ...]] = []
        self.sizes: list[float] = []
        # Set by `_group_pods`: the distinct demands, and per shape the number of its demand and its class.
        self.demands: Vector = np.zeros((0, len(self.dims)))
        self.shape_demands: list[int] = []
        self.shape_classes: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._register_pods()
        self.topology_keys = tuple(sorted(self.topology.keys() - {LABEL_HOSTNAME}))
        self._build_classes()
        self.group_demand = demand_groups(self.shapes, self.demands, self.shape_demands)
        self._size_shapes()
        # Existing nodes alike share a signature (numbered after the options); in-flight nodes use the
        # signature of the option they were planned as.
        self.node_signatures: dict[tuple[object, ...], int] = {}
        self.node_targets: list[tuple[Node, int, dict[str, str]]] = []
        self.signature_targets: dict[int, NodeTarget | Option] = {}
        self.existing_zones: dict[int, str] = {}  # existing-node signature -> zone
        self._index_nodes()
        self.inflight = self._resolve_inflight()
        for option in self.options:
            self.signature_targets[option.index] = option
        self._single_class, self._class_groups = _group_classes(self)
        self._watchers: dict[int, list[int]] = {}  # filled by `compile_topology`
        # Per class, the classes whose checks read a count a pod of the class changes, with repeats, in
        # the order of its groups (what `Packing.note_change` records); set by `compile_topology`.
        self.notified: list[tuple[int, ...]] = [()] * len(self.classes)
        # Caches (memos of the inputs above).
        self._option_tables: dict[int, OptionTable] = {}
        self._compat: dict[tuple[int, int], bool] = {}
        self._bin_zones: dict[int, frozenset[str]] = {}
        self._domain_probes: dict[tuple[str | None, ...], dict[str, str]] = {}
        self._signature_probes: dict[int, dict[str, str]] = {}
        # Per option, the number of its topology domains; per number, a probe in them.
        numbers: dict[tuple[str | None, ...], int] = {}
        self._domain_probe_list: list[dict[str, str]] = []
        self._domain_ids: list[int] = []
        keys = self.topology_keys
        for option in self.options:
            domains = tuple(map(option.labels.get, keys))
            number = numbers.get(domains)
            if number is None:
                number = numbers[domains] = len(numbers)
                self._domain_probe_list.append(self.probe(option.labels))
            self._domain_ids.append(number)

    # -- building -------------------------------------------------------------------------------

    def _register_pods(self) -> None:
        """Register the topology groups pods' constraints refer to; number the pending pods' distinct
        constraints (`constraints_signature`), registering one pod of each: the others refer to the same
        groups, and each group is still created at the first pod that refers to it."""
        by_constraints: dict[tuple[object, ...], int] = {}
        self.pod_constraints: list[int] = []  # per pending pod, the number of its constraints
        for pod in self.pending:
            key = constraints_signature(pod)
            number = by_constraints.get(key)
            if number is None:
                number = by_constraints[key] = len(by_constraints)
                if pod.topology_spread or pod.pod_affinity or pod.pod_anti_affinity:  # else nothing to do
                    self.topology.register(pod)
            self.pod_constraints.append(number)
        for node in self.inp.nodes:
            for pod in node.pods:
                self.topology.register(pod)
        for flight in self.inp.inflight:
            for pod in flight.pods:
                self.topology.register(pod)

    def _build_classes(self) -> None:
        """Group the pending pods into classes and shapes; set each class's smallest demand."""
        if not _group_pods(self, by_value=False):
            # Equal demands written as different requests (another key order, an explicit zero): group
            # the pods by the demand's value instead, which costs a row of floats per pod.
            _group_pods(self, by_value=True)
        shapes = self.shapes
        rows = list(self.demands)
        for shape, number in zip(shapes, self.shape_demands, strict=True):
            shape.demand = rows[number]
        if shapes:
            # Each class's elementwise minimum over its shapes: shapes in class order, reduced per class.
            by_class = np.argsort(self.shape_classes, kind="stable")
            in_order = np.asarray(self.shape_classes)[by_class]
            starts = np.flatnonzero(np.r_[True, in_order[1:] != in_order[:-1]])
            lows = np.minimum.reduceat(self.demands[np.asarray(self.shape_demands)[by_class]], starts)
            for low, index in zip(lows, in_order[starts].tolist(), strict=True):
                self.classes[index].min_demand = low

    def _add_class(self, pod: Pod, by_options: dict[tuple[object, ...], int]) -> PodClass:
        """A new class for pods constrained like `pod` (`by_options`: options signature -> key)."""
        osig = options_signature(pod)
        okey = by_options.get(osig)
        if okey is None:
            okey = by_options[osig] = self._add_option_set(pod)
        cls = PodClass(len(self.classes), pod, self.option_terms[okey], okey)
        cls.options = self.option_sets[okey]
        cls.option_ids = self.option_id_sets[okey]
        self.classes.append(cls)
        return cls

    def _add_option_set(self, pod: Pod) -> int:
        """Memoise the launch options pods constrained like `pod` are compatible with."""
        terms = pod_terms(pod)
        options = compatible_options(self.options, pod, terms)
        self.option_sets.append(options)
        self.option_id_sets.append(frozenset(o.index for o in options))
        self.option_terms.append(terms)
        return len(self.option_sets) - 1

    def _size_shapes(self) -> None:
        """Per shape, its largest share of any resource of its best launch option (all shapes at once)."""
        self.shape_sizes: Vector = np.zeros(0)  # `sizes` as an array
        if not self.shapes:
            return
        ones = np.ones(len(self.dims))
        vectors = self.option_vectors
        caps = np.array([vectors[c.options[0].index] if c.options else ones for c in self.classes])
        caps = caps[self.shape_classes]
        demands = self.demands[self.shape_demands]
        shares = np.where(caps > 0, demands / np.maximum(caps, EPS), 0.0)
        self.shape_sizes = shares.max(axis=1)
        self.sizes.extend(self.shape_sizes.tolist())

    def _index_nodes(self) -> None:
        for node in self.inp.nodes:
            key, labels, taints = node_target(node)
            signature = self.node_signatures.get(key)
            if signature is None:
                signature = len(self.options) + len(self.node_signatures)
                self.node_signatures[key] = signature
                self.signature_targets[signature] = (labels, taints)
                self.existing_zones[signature] = labels.get(LABEL_ZONE, "")
            self.node_targets.append((node, signature, labels))

    def _resolve_inflight(self) -> list[tuple[InFlightNode, Option]]:
        """Each in-flight node with the launch option it was planned as (unknown ones are left out)."""
        if not self.inp.inflight:
            return []
        by_key: dict[tuple[str, str, str, str], list[Option]] = {}
        for o in self.options:
            by_key.setdefault((o.node_pool.name, o.group.name, o.spec.name, o.zone), []).append(o)
        found: list[tuple[InFlightNode, Option]] = []
        for flight in self.inp.inflight:
            variants = by_key.get(
                (flight.node_pool, flight.instance_group, flight.instance_type, flight.zone)
            )
            if not variants:
                continue
            # The variant the launch was planned as (the value it chose for each open key).
            planned = flight.labels.items()
            found.append((flight, next((o for o in variants if planned <= o.labels.items()), variants[0])))
        return found

    def compile_topology(self, domains: DomainsOf) -> None:
        """Compile every class's topology checks (after the cluster's pods are seeded)."""
        for cls in self.classes:

            def of_class(spread: TopologySpread, cls: PodClass = cls) -> frozenset[str]:
                return domains(cls, spread)

            cls.topology = self.topology.compile(cls.pod, of_class)
        for cls in self.classes:
            for group in cls.topology.watched:
                self._watchers.setdefault(id(group), []).append(cls.index)
        watchers = self._watchers
        self.notified = [
            tuple(c for g in (*cls.topology.increments, *cls.topology.owns) for c in watchers.get(id(g), ()))
            for cls in self.classes
        ]

    # -- lookups --------------------------------------------------------------------------------

    def vector(self, resources: dict[str, int], pods: int = 0) -> Vector:
        """`resources` as a row over the round's resource dimensions, plus `pods` pods."""
        vec = np.zeros(len(self.dims))
        for name, amount in resources.items():
            index = self.dim_index.get(name)
            if index is not None:
                vec[index] += amount
        vec[self.dim_index[PODS_RESOURCE]] += pods
        return vec

    def option_table(self, key: int) -> OptionTable:
        """The ranked options of options signature `key`."""
        table = self._option_tables.get(key)
        if table is None:
            options = self.option_sets[key]
            usable = [(o.group.name, o.zone) not in self.inp.unavailable for o in options]
            table = self._option_tables[key] = OptionTable(options, self.option_vectors, usable)
        return table

    def compatible(self, cls: PodClass, signature: int) -> bool:
        """Whether pods of `cls` may run on nodes of `signature` (labels and taints; not topology)."""
        key = (cls.options_key, signature)
        found = self._compat.get(key)
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
            self._compat[key] = found
        return found

    def bin_zones(self, cls: PodClass) -> frozenset[str]:
        """Zones of the existing and in-flight nodes pods of `cls` may run on."""
        zones = self._bin_zones.get(cls.options_key)
        if zones is None:
            found = {zone for sig, zone in self.existing_zones.items() if zone and self.compatible(cls, sig)}
            found.update(
                zone
                for _, o in self.inflight
                if (zone := o.labels.get(LABEL_ZONE, "")) and self.compatible(cls, o.index)
            )
            zones = self._bin_zones[cls.options_key] = frozenset(found)
        return zones

    def probe(self, labels: dict[str, str]) -> dict[str, str]:
        """Labels of a node that does not exist yet in the same topology domains as `labels`."""
        domains = tuple(labels.get(k) for k in self.topology_keys)
        found = self._domain_probes.get(domains)
        if found is None:
            found = {k: v for k, v in zip(self.topology_keys, domains, strict=True) if v is not None}
            found[LABEL_HOSTNAME] = _PROBE_HOST
            self._domain_probes[domains] = found
        return found

    def signature_probe(self, signature: int, labels: dict[str, str]) -> dict[str, str]:
        """`probe` of a node of `signature` (whose labels are `labels`)."""
        found = self._signature_probes.get(signature)
        if found is None:
            found = self._signature_probes[signature] = self.probe(labels)
        return found

    def option_domains(self, option: Option) -> int:
        """The number of the option's topology domains (its value of every topology key); see
        `domain_probe`."""
        return self._domain_ids[option.index]

    def domain_probe(self, number: int) -> dict[str, str]:
        """Labels of a node that does not exist yet in the topology domains numbered `number`."""
        return self._domain_probe_list[number]

    def larger_options(self, key: int, option: Option) -> list[int]:
        """Options of options signature `key` with at least `option`'s allocatable of every resource and
        more of some (their indexes)."""
        table = self.option_table(key)
        size = self.option_vectors[option.index]
        larger = np.all(table.alloc >= size, axis=1) & np.any(table.alloc > size, axis=1)
        return [table.options[i].index for i in np.flatnonzero(larger).tolist()]

    def watchers(self) -> dict[int, list[int]]:
        """Topology group id -> the classes whose checks read the group."""
        return self._watchers

    def group_classes(self) -> tuple[npt.NDArray[np.int64], dict[int, set[int]]]:
        """Per demand group, the class of its only shape (-1: it has several); and per class, the
        groups of several shapes it has a shape in."""
        return self._single_class, self._class_groups


def _group_pods(index: RoundIndex, by_value: bool) -> bool:
    """Group the pending pods into classes, and each class's pods into shapes by their requests (or
    with `by_value`, by their demand's value); number the distinct demands (`demands`). False if two
    shapes of a class have equal demands (the caller groups by value then)."""
    index.classes, index.shapes = [], []
    index.option_sets, index.option_id_sets, index.option_terms = [], [], []
    label_keys = index.topology.selector_keys()
    # (constraints number, labels) -> class: equal for pods of equal `class_signature`.
    by_signature: dict[tuple[int, tuple[tuple[str, str], ...]], PodClass] = {}
    by_options: dict[tuple[object, ...], int] = {}
    shapes_of: list[dict[int, Shape]] = []  # per class, its shapes by the number of their demand
    numbers: dict[tuple[object, ...], int] = {}  # requests (or demand) -> the number of the demand
    requests_of: list[dict[str, int]] = []  # per number, the requests of its first pod
    shapes = index.shapes
    shape_demands: list[int] = []  # per shape, the number of its demand
    index.shape_demands = shape_demands
    shape_classes: list[int] = []  # per shape, the index of its class
    pods_at = index.dim_index[PODS_RESOURCE]
    for pod, constraints in zip(index.pending, index.pod_constraints, strict=True):
        labels = pod.labels
        sig = (constraints, label_signature(pod, label_keys) if labels else ())
        cls = by_signature.get(sig)
        if cls is None:
            cls = by_signature[sig] = index._add_class(pod, by_options)
            shapes_of.append({})
        requests = pod.requests
        key = _demand_row(requests, index.dim_index, pods_at) if by_value else tuple(requests.items())
        number = numbers.get(key)
        if number is None:
            number = numbers[key] = len(requests_of)
            requests_of.append(requests)
        of_class = shapes_of[cls.index]
        shape = of_class.get(number)
        if shape is None:
            shape = of_class[number] = Shape(len(shapes), cls, _NO_DEMAND, [], gang=gang_key(pod))
            shapes.append(shape)
            shape_demands.append(number)
            shape_classes.append(cls.index)
        shape.pods.append(pod)
        cls.left += 1
    # The demands as a matrix, a column per resource at once (as `vector(requests, pods=1)`).
    columns = [[requests.get(name, 0) for requests in requests_of] for name in index.dims]
    index.demands = np.array(columns, dtype=np.float64).reshape(len(index.dims), -1).T.copy()
    index.demands[:, pods_at] += 1
    index.shape_classes = np.asarray(shape_classes, dtype=np.int64)  # per shape, its class's index
    return by_value or _distinct_rows(index.demands)


def _demand_row(requests: dict[str, int], dim_index: dict[str, int], pods_at: int) -> tuple[float, ...]:
    """`RoundIndex.vector(requests, pods=1)` as plain floats (`dim_index`: each resource's position,
    `pods_at`: the pods resource's)."""
    row = [0.0] * len(dim_index)
    for name, amount in requests.items():
        index = dim_index.get(name)
        if index is not None:
            row[index] += amount
    row[pods_at] += 1
    return tuple(row)


def _group_classes(index: RoundIndex) -> tuple[npt.NDArray[np.int64], dict[int, set[int]]]:
    """See `RoundIndex.group_classes`."""
    groups = np.fromiter((s.group for s in index.shapes), dtype=np.int64, count=len(index.shapes))
    classes = np.asarray(index.shape_classes, dtype=np.int64)
    grouped = groups >= 0
    count = np.bincount(groups[grouped], minlength=len(index.group_demand))
    single = np.full(len(index.group_demand), -1, dtype=np.int64)
    single[groups[grouped]] = classes[grouped]  # kept only where the group has one shape
    single[count != 1] = -1
    multi: dict[int, set[int]] = {}
    shared = grouped.copy()
    shared[grouped] = count[groups[grouped]] > 1
    for cls, group in zip(classes[shared].tolist(), groups[shared].tolist(), strict=True):
        multi.setdefault(cls, set()).add(group)
    return single, multi


def _distinct_rows(matrix: Vector) -> bool:
    """Whether no two rows of `matrix` are equal."""
    if len(matrix) < 2:
        return True
    ordered = matrix[np.lexsort(matrix.T[::-1])]
    return bool((ordered[1:] != ordered[:-1]).any(axis=1).all())


def compatible_options(options: list[Option], pod: Pod, terms: tuple[KeySets, ...]) -> list[Option]:
    """The `options` whose taints `pod` tolerates and whose labels one of its node terms admits."""
    prefer = pod.avoids_prefer_no_schedule
    if not any(terms):  # no node selector or affinity: only taints can rule an option out
        return [
            o
            for o in options
            if not o.taints or tolerates_all(pod.tolerations, o.taints, prefer=prefer) is None
        ]
    return [
        o
        for o in options
        if tolerates_all(pod.tolerations, o.taints, prefer=prefer) is None
        and any(first_conflict(term, o.node_sets) is None for term in terms)
    ]
