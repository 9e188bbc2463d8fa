"""Launch options: every (NodePool, instance group, instance type, zone) a new node could be.

An option carries the node template the scheduler matches pods against (label value sets, taints,
allocatable after DaemonSet overhead) and the facts ranking uses (capacity type, placement score,
price, position in the NodeClass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hpscaler.catalogue import Catalogue, InstanceSpec
from hpscaler.model import (
    LABEL_CAPACITY_TYPE,
    LABEL_INSTANCE_GROUP,
    LABEL_NODEPOOL,
    LABEL_REGION,
    LABEL_ZONE,
    LABEL_ZONE_ID,
    PODS_RESOURCE,
    CapacityType,
    InstanceGroup,
    NodeClass,
    NodePool,
    Pod,
    Requirement,
    Resources,
    Taint,
    fits,
    sum_resources,
    tolerates_all,
)
from hpscaler.prerequisites import STARTUP_TAINT
from hpscaler.scheduling.requirements import (
    KeySets,
    and_requirements,
    exactly,
    first_conflict,
    key_sets,
    pod_terms,
)

SPOT_TIER = 0
ON_DEMAND_TIER = 1


@dataclass(slots=True, eq=False)
class Option:
    """One way to launch a new node (compared and hashed by identity)."""

    index: int
    node_pool: NodePool
    group: InstanceGroup
    spec: InstanceSpec
    zone: str
    zone_id: str
    node_sets: KeySets  # what the node's labels may be
    labels: dict[str, str]  # the labels the node will carry
    taints: tuple[Taint, ...]
    allocatable: Resources  # after kubelet reserve and DaemonSet overhead
    capacity: Resources  # what NodePool limits count
    price: float
    score: float
    class_position: int

    @property
    def capacity_type(self) -> CapacityType:
        """Spot or On-Demand, fixed by the instance group."""
        return self.group.capacity_type

    def rank_key(self) -> tuple[int, int, float, float, int, str]:
        """NodePool weight first, then Spot before On-Demand, placement score, price, NodeClass order."""
        tier = SPOT_TIER if self.capacity_type is CapacityType.SPOT else ON_DEMAND_TIER
        return (-self.node_pool.weight, tier, -self.score, self.price, self.class_position, self.spec.name)


def _base_template(
    pool: NodePool, group: InstanceGroup, zone: str, zone_id: str, region: str
) -> tuple[dict[str, str], KeySets]:
    """The labels (and their value sets) a node of the group gets in `zone`, whatever its type."""
    labels = {
        LABEL_ZONE: zone,
        LABEL_CAPACITY_TYPE: group.capacity_type.value,
        LABEL_NODEPOOL: pool.name,
        LABEL_INSTANCE_GROUP: group.name,
    }
    if zone_id:
        labels[LABEL_ZONE_ID] = zone_id
    if region:
        labels[LABEL_REGION] = region
    labels.update(dict(group.labels))
    labels.update(dict(pool.labels))
    return labels, key_sets((), labels)


def _constrain(sets: KeySets, labels: dict[str, str], requirements: Sequence[Requirement]) -> None:
    """AND the NodePool's requirements into a template's value sets, and pin the labels they fix."""
    and_requirements(sets, requirements)
    # Keys the NodePool constrains but does not pin stay open: a pod may choose among them.
    for req in requirements:
        if req.key not in labels:
            allowed = sets[req.key]
            value = allowed.pick()
            if value is not None and allowed.values is not None and len(allowed.values) == 1:
                labels[req.key] = value


def template_labels(
    pool: NodePool, group: InstanceGroup, spec_labels: Mapping[str, str], zone: str, zone_id: str, region: str
) -> dict[str, str]:
    """The labels the plan assumes a new node of this offering carries (registration puts them there)."""
    base_labels, base_sets = _base_template(pool, group, zone, zone_id, region)
    labels = {**spec_labels, **base_labels}
    if pool.requirements:
        _constrain({**key_sets((), dict(spec_labels)), **base_sets}, labels, pool.requirements)
    return labels


def _pinned_variants(sets: KeySets, labels: dict[str, str]) -> list[tuple[KeySets, dict[str, str]]]:
    """One template per value of each key the NodePool leaves open among listed values.

    A node carries one value per label (Karpenter narrows a NodeClaim's requirements with every pod
    it adds, and labels the node with the result): pods that need `test-key=a` and `test-key=b` can
    never share a node. Launching a template per value makes every node agree on one value, and lets
    a topology spread on such a key see its domains.
    """
    variants = [(sets, labels)]
    for key in sorted(sets):
        allowed = sets[key]
        if key in labels or allowed.values is None or not allowed.present_ok:
            continue
        values = sorted(v for v in allowed.values if allowed._value_ok(v))
        if len(values) < 2:
            continue
        variants = [
            ({**vs, key: exactly(value)}, {**vl, key: value}) for vs, vl in variants for value in values
        ]
    return variants


def daemon_overhead(daemonsets: Sequence[Pod], sets: KeySets, taints: Sequence[Taint]) -> Resources:
    """Requests of the DaemonSet pods that would land on a node of this template."""
    selected = [
        d.requests
        for d in daemonsets
        if tolerates_all(d.tolerations, taints) is None
        and any(first_conflict(term, sets) is None for term in pod_terms(d))
    ]
    total = sum_resources(selected)
    total[PODS_RESOURCE] = total.get(PODS_RESOURCE, 0) + len(selected)
    return total


def build_options(
    node_pools: Sequence[NodePool],
    node_classes: Sequence[NodeClass],
    groups: Sequence[InstanceGroup],
    catalogue: Catalogue,
    daemonsets: Sequence[Pod],
    placement_scores: Mapping[str, float],
    region: str = "",
) -> list[Option]:
    """Every launch option whose template satisfies its NodePool's own requirements, ranked best first."""
    classes = {c.name: c for c in node_classes}
    by_name = {g.name: g for g in groups}
    # Per instance type, computed once: a type is usually listed by several groups and zones.
    spec_facts: dict[str, tuple[InstanceSpec, dict[str, str], KeySets, Resources, Resources]] = {}
    options: list[Option] = []
    for pool in node_pools:
        node_class = classes.get(pool.node_class)
        if node_class is None:
            continue
        constrained = {r.key for r in pool.requirements}
        for position, group_name in enumerate(node_class.instance_groups):
            group = by_name.get(group_name)
            if group is None or group.status not in ("InService", "Updating", ""):
                continue
            # Like Karpenter's startupTaints, the start-up taint is gone by the time pods bind.
            taints = (*pool.taints, *(t for t in group.taints if t.key != STARTUP_TAINT.key))
            price_type = group.capacity_type
            zone_ids = group.zone_ids or ("",) * len(group.zones)
            bases = [
                (zone, zone_id, *_base_template(pool, group, zone, zone_id, region))
                for zone, zone_id in zip(group.zones, zone_ids, strict=False)
            ]
            for type_name in group.instance_types:
                facts = spec_facts.get(type_name)
                if facts is None:
                    if type_name not in catalogue:
                        continue
                    spec = catalogue.get(type_name)
                    spec_labels = spec.labels()
                    facts = spec_facts[type_name] = (
                        spec,
                        spec_labels,
                        key_sets((), spec_labels),
                        spec.allocatable(),
                        spec.capacity(),
                    )
                spec, spec_labels, spec_sets, spec_allocatable, spec_capacity = facts
                for zone, zone_id, base_labels, base_sets in bases:
                    labels = {**spec_labels, **base_labels}
                    sets = {**spec_sets, **base_sets}
                    variants = [(sets, labels)]
                    if pool.requirements:
                        _constrain(sets, labels, pool.requirements)
                        if any(sets[key].is_empty() for key in constrained):
                            continue  # the NodePool's requirements exclude this offering
                        variants = _pinned_variants(sets, labels)
                    for sets, labels in variants:
                        overhead = daemon_overhead(daemonsets, sets, taints) if daemonsets else {}
                        if not overhead:
                            allocatable = spec_allocatable  # shared: nothing changes an option's allocatable
                        elif fits(overhead, spec_allocatable):
                            allocatable = {n: a - overhead.get(n, 0) for n, a in spec_allocatable.items()}
                        else:
                            continue
                        score = placement_scores.get(zone, placement_scores.get(zone_id, 0.0))
                        options.append(
                            Option(
                                index=0,
                                node_pool=pool,
                                group=group,
                                spec=spec,
                                zone=zone,
                                zone_id=zone_id,
                                node_sets=sets,
                                labels=labels,
                                taints=taints,
                                allocatable=allocatable,
                                capacity=spec_capacity,
                                price=spec.price(price_type),
                                score=score if price_type is CapacityType.SPOT else 0.0,
                                class_position=position,
                            )
                        )
    options.sort(key=Option.rank_key)
    for index, option in enumerate(options):
        option.index = index
    return options
