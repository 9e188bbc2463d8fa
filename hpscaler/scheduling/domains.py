"""The domains of a topology spread: which values of its key count, as Kubernetes and Karpenter define them.

Kubernetes counts the domains of the nodes a spread's policies admit: with `nodeAffinityPolicy: Honor`
(the default) only nodes the pod's nodeSelector and required node affinity admit, with
`nodeTaintsPolicy: Ignore` (the default) nodes whatever their taints. Karpenter adds the nodes it could
launch: the values every NodePool's templates may take (its requirements, labels, instance types and
zones). Here those are the launch options (an offering out of capacity is no domain: no node can come
from it), the existing nodes and the nodes in flight. Any label key works, not only the zone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from hpscaler.model import LABEL_HOSTNAME, Taint, TopologySpread, tolerates_all
from hpscaler.scheduling.index import RoundIndex
from hpscaler.scheduling.packing import PodClass
from hpscaler.scheduling.requirements import first_conflict, term_fits_labels


def _nodes(index: RoundIndex) -> Iterator[tuple[Mapping[str, str], Sequence[Taint]]]:
    """Labels and taints of every existing and in-flight node (one per existing-node signature)."""
    for target in index.signature_targets.values():
        if isinstance(target, tuple):
            yield target
    for flight, option in index.inflight:
        yield {**option.labels, LABEL_HOSTNAME: flight.name}, option.taints


def spread_domains(index: RoundIndex, cls: PodClass, spread: TopologySpread) -> frozenset[str]:
    """The values of `spread`'s key on the nodes its policies count, for pods of `cls`."""
    key = spread.topology_key
    pod = cls.pod
    honor_affinity = spread.node_affinity_policy == "Honor"
    honor_taints = spread.node_taints_policy == "Honor"
    found: set[str] = set()
    for option in index.options:
        value = option.labels.get(key)
        if value is None or value in found or (option.group.name, option.zone) in index.inp.unavailable:
            continue
        if honor_affinity and all(first_conflict(term, option.node_sets) is not None for term in cls.terms):
            continue
        if honor_taints and tolerates_all(
            pod.tolerations, option.taints, prefer=pod.avoids_prefer_no_schedule
        ):
            continue
        found.add(value)
    for labels, taints in _nodes(index):
        value = labels.get(key)
        if value is None or value in found:
            continue
        if honor_affinity and not any(term_fits_labels(term, labels) for term in cls.terms):
            continue
        if (
            honor_taints
            and tolerates_all(pod.tolerations, taints, prefer=pod.avoids_prefer_no_schedule) is not None
        ):
            continue
        found.add(value)
    return frozenset(found)
