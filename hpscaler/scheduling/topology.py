"""Topology bookkeeping: spread constraints and required pod (anti-)affinity, by any node label.

Pods are counted per topology group (topology key, label selector, namespaces) and per domain
(the node's value of the key). Every pod class (pods with the same labels and constraints) is
compiled once into the groups it increments and the checks it must pass, so a placement check is a
handful of dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from hpscaler.model import LabelSelector, Pod, PodAffinityTerm, TopologySpread

GroupKey = tuple[str, LabelSelector, tuple[str, ...]]


@dataclass(slots=True)
class TopologyGroup:
    """Counts of the pods a selector matches, per domain of one topology key."""

    key: str
    selector: LabelSelector
    namespaces: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    # Pods that carry an anti-affinity term of this group, per domain: they repel matching pods.
    owners: dict[str, int] = field(default_factory=dict)
    version: int = 0  # bumped on every change of the counts above: verdicts cached against it stay valid

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether a pod in `namespace` with `labels` counts in this group."""
        return namespace in self.namespaces and self.selector.matches(labels)

    def key_in(self, groups: Mapping[GroupKey, TopologyGroup]) -> bool:
        """Whether `groups` holds this group under its own key."""
        return groups.get((self.key, self.selector, self.namespaces)) is self


@dataclass(slots=True)
class SpreadCheck:
    """One DoNotSchedule spread constraint of a pod class."""

    group: TopologyGroup
    max_skew: int
    self_match: bool
    domains: tuple[str, ...] = ()  # eligible domains; empty for hostname spread
    min_domains: int = 1


@dataclass(slots=True)
class ClassTopology:
    """What placing one pod of a class checks and changes."""

    increments: list[TopologyGroup] = field(default_factory=list)
    owns: list[TopologyGroup] = field(default_factory=list)
    spreads: list[SpreadCheck] = field(default_factory=list)
    anti: list[TopologyGroup] = field(default_factory=list)
    affinity: list[tuple[TopologyGroup, bool]] = field(default_factory=list)
    repelled_by: list[TopologyGroup] = field(default_factory=list)
    watched: tuple[TopologyGroup, ...] = ()  # every group a check reads
    host_keyed: bool = False  # whether a check reads the hostname (else nodes of one domain agree)

    def stamp(self) -> int:
        """Changes whenever a count the checks read changes."""
        return sum(g.version for g in self.watched)

    @property
    def constrained(self) -> bool:
        """Whether any check applies (unconstrained classes skip the per-placement work)."""
        return bool(self.spreads or self.anti or self.affinity or self.repelled_by)

    @property
    def host_affine(self) -> bool:
        """Whether a required pod affinity is keyed by hostname (only hosts its targets use open)."""
        return any(g.key == HOSTNAME for g, _ in self.affinity)

    @property
    def zonal(self) -> bool:
        """Whether a zone-keyed check applies (the choice of zone for a new node matters)."""
        return any(s.group.key != HOSTNAME for s in self.spreads) or any(
            g.key != HOSTNAME for g in (*self.anti, *(a for a, _ in self.affinity))
        )


HOSTNAME = "kubernetes.io/hostname"


class Topology:
    """All topology groups of one scheduling round."""

    def __init__(self) -> None:
        self._groups: dict[GroupKey, TopologyGroup] = {}
        self._anti_groups: dict[GroupKey, TopologyGroup] = {}
        # Groups by one (key, value) their selector requires; groups no such pair indexes are in
        # `_unindexed`. Which groups select a pod is then a few lookups, not a scan of every group.
        self._by_label: dict[tuple[str, str], list[TopologyGroup]] | None = None
        self._unindexed: list[TopologyGroup] = []

    def group(self, key: str, selector: LabelSelector, namespaces: tuple[str, ...]) -> TopologyGroup:
        """The group for (key, selector, namespaces), created on first use."""
        gkey = (key, selector, namespaces)
        found = self._groups.get(gkey)
        if found is None:
            found = self._groups[gkey] = TopologyGroup(key, selector, namespaces)
            self._by_label = None
        return found

    def selecting(self, namespace: str, labels: Mapping[str, str]) -> list[TopologyGroup]:
        """The groups that select a pod in `namespace` with `labels`."""
        if self._by_label is None:
            self._by_label, self._unindexed = {}, []
            for group in self._groups.values():
                pairs = group.selector.match_labels
                if pairs:
                    self._by_label.setdefault(pairs[0], []).append(group)
                else:
                    self._unindexed.append(group)
        found = [g for g in self._unindexed if g.selects(namespace, labels)]
        for pair in labels.items():
            found.extend(g for g in self._by_label.get(pair, ()) if g.selects(namespace, labels))
        return found

    def _term_group(self, pod: Pod, term: PodAffinityTerm) -> TopologyGroup:
        return self.group(term.topology_key, term.selector, term.namespaces or (pod.namespace,))

    def register(self, pod: Pod) -> None:
        """Create the groups a pod's constraints refer to (call for every pod before compiling)."""
        for spread in pod.topology_spread:
            if spread.when_unsatisfiable == "DoNotSchedule":
                self.group(spread.topology_key, spread.selector, (pod.namespace,))
        for term in pod.pod_affinity:
            self._term_group(pod, term)
        for term in pod.pod_anti_affinity:
            self._term_group(pod, term)
        for term in _required_anti(pod):
            group = self._term_group(pod, term)
            self._anti_groups.setdefault((group.key, group.selector, group.namespaces), group)

    def keys(self) -> frozenset[str]:
        """Every topology key some group counts by: only these labels decide a node's domains."""
        return frozenset(group.key for group in self._groups.values())

    def selector_keys(self) -> frozenset[str]:
        """Every label key some group's selector reads: only these labels tell pods apart here."""
        keys: set[str] = set()
        for group in self._groups.values():
            keys.update(k for k, _ in group.selector.match_labels)
            keys.update(r.key for r in group.selector.match_expressions)
        return frozenset(keys)

    def compile(self, pod: Pod, domains: Callable[[TopologySpread], Iterable[str]]) -> ClassTopology:
        """The checks and counters for pods like `pod`; `domains` gives a spread constraint's eligible
        domains (the values of its key on the nodes its policies count)."""
        compiled = ClassTopology()
        compiled.increments.extend(self.selecting(pod.namespace, pod.labels))
        compiled.repelled_by.extend(g for g in compiled.increments if g.key_in(self._anti_groups))
        for spread in pod.topology_spread:
            if spread.when_unsatisfiable != "DoNotSchedule":
                continue  # ScheduleAnyway is a preference
            group = self.group(spread.topology_key, spread.selector, (pod.namespace,))
            eligible = () if spread.topology_key == HOSTNAME else tuple(sorted(set(domains(spread))))
            compiled.spreads.append(
                SpreadCheck(
                    group,
                    spread.max_skew,
                    group.selects(pod.namespace, pod.labels),
                    eligible,
                    spread.min_domains,
                )
            )
        for term in pod.pod_anti_affinity:
            compiled.anti.append(self._term_group(pod, term))
        for term in _required_anti(pod):
            compiled.owns.append(self._term_group(pod, term))
        for term in pod.pod_affinity:
            group = self._term_group(pod, term)
            compiled.affinity.append((group, group.selects(pod.namespace, pod.labels)))
        watched = {
            id(g): g
            for g in (
                *(s.group for s in compiled.spreads),
                *compiled.anti,
                *compiled.repelled_by,
                *(a for a, _ in compiled.affinity),
            )
        }
        compiled.watched = tuple(watched.values())
        compiled.host_keyed = any(g.key == HOSTNAME for g in compiled.watched)
        return compiled

    def seed(self, pod: Pod, labels: Mapping[str, str]) -> None:
        """Count a pod that already runs on a node with `labels`."""
        for group in self.selecting(pod.namespace, pod.labels):
            _bump(group.counts, labels.get(group.key), 1)
            group.total += 1
            group.version += 1
        for term in _required_anti(pod):
            gkey = (term.topology_key, term.selector, term.namespaces or (pod.namespace,))
            found = self._groups.get(gkey)
            if found is not None:
                _bump(found.owners, labels.get(found.key), 1)
                found.version += 1


def _required_anti(pod: Pod) -> list[PodAffinityTerm]:
    """The pod's anti-affinity terms that repel other pods: the required ones, not preferences tried as
    requirements (see `preferences.harden`)."""
    if not pod.preferred_pod_anti_affinity:
        return list(pod.pod_anti_affinity)
    preferred = {term for _, term in pod.preferred_pod_anti_affinity}
    return [term for term in pod.pod_anti_affinity if term not in preferred]


def _bump(counts: dict[str, int], domain: str | None, delta: int) -> None:
    if domain is not None:
        counts[domain] = counts.get(domain, 0) + delta


def allowed(topo: ClassTopology, labels: Mapping[str, str]) -> bool:
    """Whether one more pod of the class may go to a node with `labels`."""
    for spread in topo.spreads:
        group = spread.group
        domain = labels.get(group.key)
        if domain is None:
            return False
        after = group.counts.get(domain, 0) + (1 if spread.self_match else 0)
        if spread.domains:
            if domain not in spread.domains:
                return False
            # Fewer eligible domains than minDomains: the global minimum counts as 0 (Kubernetes'
            # rule), so each domain takes at most maxSkew matching pods.
            if len(spread.domains) < spread.min_domains:
                low = 0
            else:
                counts = group.counts
                low = min([counts.get(d, 0) for d in spread.domains])
        else:
            low = 0  # a new node can always open an empty hostname domain
        if after - low > spread.max_skew:
            return False
    for group in topo.anti:
        domain = labels.get(group.key)
        if domain is not None and group.counts.get(domain, 0) > 0:
            return False
    for group in topo.repelled_by:
        domain = labels.get(group.key)
        if domain is not None and group.owners.get(domain, 0) > 0:
            return False
    for group, self_match in topo.affinity:
        domain = labels.get(group.key)
        if domain is None:
            return False
        if group.counts.get(domain, 0) == 0 and not (group.total == 0 and self_match):
            return False
    return True


def record(topo: ClassTopology, labels: Mapping[str, str], delta: int) -> None:
    """Count (delta=1) or un-count (delta=-1) one pod of the class on a node with `labels`."""
    for group in topo.increments:
        _bump(group.counts, labels.get(group.key), delta)
        group.total += delta
        group.version += 1
    for group in topo.owns:
        _bump(group.owners, labels.get(group.key), delta)
        group.version += 1
