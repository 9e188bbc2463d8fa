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
from hpscaler.scheduling.signatures import class_signature, gang_key, node_target, options_signature
from hpscaler.scheduling.types import InFlightNode, SchedulingInput

_PROBE_HOST = "\x00probe"  # hostname of a node that does not exist yet: an empty hostname domain

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
        self._register_pods()
        self.topology_keys = tuple(sorted(self.topology.keys() - {LABEL_HOSTNAME}))
        self._build_classes()
        self.group_demand = demand_groups(self.shapes, len(self.dims))
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
        self._single_class, self._class_groups = self._group_classes()
        self._watchers: dict[int, list[int]] = {}  # filled by `compile_topology`
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
        for pod in self.pending:
            self.topology.register(pod)
        for node in self.inp.nodes:
            for pod in node.pods:
                self.topology.register(pod)
        for flight in self.inp.inflight:
            for pod in flight.pods:
                self.topology.register(pod)

    def _build_classes(self) -> None:
        label_keys = self.topology.selector_keys()
        by_signature: dict[tuple[object, ...], PodClass] = {}
        by_options: dict[tuple[object, ...], int] = {}
        by_shape: dict[tuple[int, tuple[float, ...]], Shape] = {}
        demands: dict[tuple[tuple[str, int], ...], tuple[Vector, tuple[float, ...]]] = {}
        for pod in self.pending:
            sig = class_signature(pod, label_keys)
            cls = by_signature.get(sig)
            if cls is None:
                osig = options_signature(pod)
                okey = by_options.get(osig)
                if okey is None:
                    okey = by_options[osig] = self._add_option_set(pod)
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
        if not self.shapes:
            return
        ones = np.ones(len(self.dims))
        caps = np.array(
            [self.option_vectors[s.cls.options[0].index] if s.cls.options else ones for s in self.shapes]
        )
        demands = np.array([s.demand for s in self.shapes])
        shares = np.where(caps > 0, demands / np.maximum(caps, EPS), 0.0)
        self.sizes.extend(shares.max(axis=1).tolist())

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

    def _group_classes(self) -> tuple[npt.NDArray[np.int64], dict[int, set[int]]]:
        single = np.full(len(self.group_demand), -1, dtype=np.int64)
        count = np.zeros(len(self.group_demand), dtype=np.int64)
        for shape in self.shapes:
            if shape.group >= 0:
                count[shape.group] += 1
                single[shape.group] = shape.cls.index
        single[count != 1] = -1
        multi: dict[int, set[int]] = {}
        for shape in self.shapes:
            if shape.group >= 0 and count[shape.group] > 1:
                multi.setdefault(shape.cls.index, set()).add(shape.group)
        return single, multi

    def compile_topology(self, domains: DomainsOf) -> None:
        """Compile every class's topology checks (after the cluster's pods are seeded)."""
        for cls in self.classes:

            def of_class(spread: TopologySpread, cls: PodClass = cls) -> frozenset[str]:
                return domains(cls, spread)

            cls.topology = self.topology.compile(cls.pod, of_class)
        for cls in self.classes:
            for group in cls.topology.watched:
                self._watchers.setdefault(id(group), []).append(cls.index)

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
