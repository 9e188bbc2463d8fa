"""A straightforward pure-Python port of Karpenter's provisioning scheduler (the baseline of W1 and W2).

It follows `kubernetes-sigs/karpenter:pkg/controllers/provisioning/scheduling` closely enough that
its costs grow the way Karpenter's do, while staying plain Python (dicts, sets, lists):

* Pods are queued CPU-descending, then memory-descending, then by creation (`queue.go`,
  `byCPUAndMemoryDescending`); a pod that fails goes to the back of the queue, and the round ends
  when a whole pass over the queue places nothing.
* Per pod (`scheduler.go` `add`): existing nodes first, then the in-flight NodeClaims **re-sorted by
  pod count ascending on every pod**, then a new NodeClaim from the NodePool's template.
* A NodeClaim carries its requirements (label key -> allowed values) and the instance types that
  can still hold all of its pods. `CanAdd` checks requirements, asks the topology for the domains
  the pod may use, intersects, and **filters every remaining instance type** by requirements,
  offering availability and fit (`filterInstanceTypesByRequirements`).
* Topology (`topology.go`, `topologygroup.go`): one group per (type, key, selector, namespaces), a
  count per domain, every new NodeClaim's hostname registered as an empty domain of every hostname
  group. Spread picks the least-loaded domain within max skew (`nextDomainTopologySpread`, linear in
  the domains), anti-affinity scans the domains for empty ones while any exist
  (`nextDomainAntiAffinity`), self-affinity bootstraps on the first domain. A pod is recorded in a
  domain only when its NodeClaim's requirement pins that domain to one value (`Topology.Record`).
* When the round ends, each NodeClaim launches as the cheapest offering of its remaining types.

Not ported (the benchmark workloads do not use them): preferences and their relaxation, host ports,
volume limits, reserved capacity, minValues, DaemonSet overhead, NodePool limits and weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hpscaler.model import LABEL_HOSTNAME, LABEL_ZONE, LabelSelector, Node, Pod, tolerates_all

LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_CAPACITY_TYPE = "karpenter.sh/capacity-type"

Requirements = dict[str, frozenset[str]]
"""Label key -> allowed values ("In" requirements only: all the benchmark pods produce)."""


@dataclass(frozen=True, slots=True)
class Offering:
    zone: str
    capacity_type: str
    price: float
    available: bool = True


@dataclass(slots=True)
class InstanceType:
    name: str
    allocatable: dict[str, int]
    offerings: tuple[Offering, ...]
    requirements: Requirements = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.requirements:
            self.requirements = {
                LABEL_INSTANCE_TYPE: frozenset((self.name,)),
                LABEL_ZONE: frozenset(o.zone for o in self.offerings),
                LABEL_CAPACITY_TYPE: frozenset(o.capacity_type for o in self.offerings),
            }


def _compatible(a: Mapping[str, frozenset[str]], b: Mapping[str, frozenset[str]]) -> bool:
    """Requirements.Compatible: every key both constrain must share a value."""
    for key, values in b.items():
        mine = a.get(key)
        if mine is not None and not (mine & values):
            return False
    return True


def _merge(a: Requirements, b: Mapping[str, frozenset[str]]) -> Requirements:
    """Requirements.Add: intersect key by key."""
    merged = dict(a)
    for key, values in b.items():
        mine = merged.get(key)
        merged[key] = values if mine is None else (mine & values)
    return merged


def _fits(requests: Mapping[str, int], allocatable: Mapping[str, int]) -> bool:
    return all(amount <= allocatable.get(name, 0) for name, amount in requests.items())


def _add_requests(total: Mapping[str, int], extra: Mapping[str, int]) -> dict[str, int]:
    merged = dict(total)
    for name, amount in extra.items():
        merged[name] = merged.get(name, 0) + amount
    return merged


def _has_offering(it: InstanceType, reqs: Requirements) -> bool:
    zones = reqs.get(LABEL_ZONE)
    capacity_types = reqs.get(LABEL_CAPACITY_TYPE)
    for offering in it.offerings:
        if not offering.available:
            continue
        if zones is not None and offering.zone not in zones:
            continue
        if capacity_types is not None and offering.capacity_type not in capacity_types:
            continue
        return True
    return False


def filter_instance_types(
    options: Sequence[InstanceType], reqs: Requirements, requests: Mapping[str, int]
) -> list[InstanceType]:
    """filterInstanceTypesByRequirements: compatible, has an available offering, fits the requests."""
    return [
        it
        for it in options
        if _compatible(it.requirements, reqs) and _has_offering(it, reqs) and _fits(requests, it.allocatable)
    ]


# --- topology ----------------------------------------------------------------------------------------

SPREAD, AFFINITY, ANTI = "spread", "affinity", "anti-affinity"


@dataclass(slots=True, eq=False)
class TopologyGroup:
    kind: str
    key: str
    selector: LabelSelector
    namespaces: frozenset[str]
    max_skew: int = 0
    domains: dict[str, int] = field(default_factory=dict)
    empty: set[str] = field(default_factory=set)
    owners: set[str] = field(default_factory=set)  # pod uids whose constraint this is

    def selects(self, pod: Pod) -> bool:
        return pod.namespace in self.namespaces and self.selector.matches(pod.labels)

    def register(self, *domains: str) -> None:
        for domain in domains:
            if domain not in self.domains:
                self.domains[domain] = 0
                self.empty.add(domain)

    def record(self, *domains: str) -> None:
        for domain in domains:
            self.domains[domain] = self.domains.get(domain, 0) + 1
            self.empty.discard(domain)

    def _min_count(self, pod_domains: frozenset[str] | None) -> int:
        if self.key == LABEL_HOSTNAME:
            return 0  # a new node is always an empty hostname domain
        low = None
        for domain, count in self.domains.items():  # linear in the domains, as Karpenter
            if (pod_domains is None or domain in pod_domains) and (low is None or count < low):
                low = count
        return 0 if low is None else low

    def next_domain(
        self, pod: Pod, pod_domains: frozenset[str] | None, node_domains: frozenset[str]
    ) -> frozenset[str]:
        """The domains one more pod of this group's owner may go to (empty: none)."""
        if self.kind == SPREAD:
            low = self._min_count(pod_domains)
            self_selecting = self.selects(pod)
            best, best_count = "", None
            for domain in node_domains if len(node_domains) < len(self.domains) else self.domains:
                if domain not in node_domains or domain not in self.domains:
                    continue
                count = self.domains[domain] + (1 if self_selecting else 0)
                if count - low <= self.max_skew and (best_count is None or count < best_count):
                    best, best_count = domain, count
            return frozenset((best,)) if best_count is not None else frozenset()
        if self.kind == AFFINITY:
            options = {
                d for d, c in self.domains.items() if c > 0 and (pod_domains is None or d in pod_domains)
            }
            if not options and self.selects(pod):
                for domain in self.domains:
                    if (pod_domains is None or domain in pod_domains) and domain in node_domains:
                        return frozenset((domain,))
            return frozenset(options)
        # anti-affinity: only empty domains, scanned linearly while any exist
        if not self.empty:
            return frozenset()
        return frozenset(
            d for d, c in self.domains.items() if c == 0 and (pod_domains is None or d in pod_domains)
        )


class Topology:
    """Karpenter's Topology: groups for every constraint of the pods, counted per domain."""

    def __init__(self, pods: Sequence[Pod], zones: Iterable[str], nodes: Sequence[Node] = ()) -> None:
        self.groups: dict[tuple[object, ...], TopologyGroup] = {}
        self.zones = tuple(sorted(set(zones)))
        for pod in pods:
            for spread in pod.topology_spread:
                if spread.when_unsatisfiable == "DoNotSchedule":
                    group = self._group(SPREAD, spread.topology_key, spread.selector, pod, spread.max_skew)
                    group.owners.add(pod.uid or pod.key)
            for term in pod.pod_affinity:
                group = self._group(AFFINITY, term.topology_key, term.selector, pod, 0, term.namespaces)
                group.owners.add(pod.uid or pod.key)
            for term in pod.pod_anti_affinity:
                group = self._group(ANTI, term.topology_key, term.selector, pod, 0, term.namespaces)
                group.owners.add(pod.uid or pod.key)
        for node in nodes:
            self.register(LABEL_HOSTNAME, node.name)
            for pod in node.pods:
                self.record(
                    pod,
                    {k: frozenset((v,)) for k, v in node.labels.items()}
                    | {LABEL_HOSTNAME: frozenset((node.name,))},
                )

    def _group(
        self,
        kind: str,
        key: str,
        selector: LabelSelector,
        pod: Pod,
        skew: int,
        namespaces: tuple[str, ...] = (),
    ) -> TopologyGroup:
        ns = frozenset(namespaces or (pod.namespace,))
        gkey = (kind, key, selector, ns, skew)
        group = self.groups.get(gkey)
        if group is None:
            group = self.groups[gkey] = TopologyGroup(kind, key, selector, ns, skew)
            if key == LABEL_ZONE:
                group.register(*self.zones)
        return group

    def register(self, key: str, domain: str) -> None:
        for group in self.groups.values():
            if group.key == key:
                group.register(domain)

    def add_requirements(self, pod: Pod, node_reqs: Requirements) -> Requirements | None:
        """Topology.AddRequirements: the domains the pod may use on a node with `node_reqs` (None: none)."""
        uid = pod.uid or pod.key
        reqs: Requirements = {}
        for group in self.groups.values():  # getMatchingTopologies: linear in the groups
            owned = uid in group.owners
            inverse = group.kind == ANTI and not owned and group.selects(pod)
            if not owned and not inverse:
                continue
            node_domains = node_reqs.get(group.key)
            if node_domains is None:
                node_domains = frozenset(group.domains)
            if inverse:
                # a pod others repel may only go where none of them is
                allowed = frozenset(d for d in node_domains if group.domains.get(d, 0) == 0)
            else:
                allowed = group.next_domain(pod, None, node_domains)
            current = reqs.get(group.key)
            allowed = allowed if current is None else current & allowed
            if not allowed:
                return None
            reqs[group.key] = allowed
        return reqs

    def record(self, pod: Pod, reqs: Requirements) -> None:
        """Topology.Record: count the pod in every group selecting it, where its domain is pinned."""
        for group in self.groups.values():
            if not group.selects(pod):
                continue
            domains = reqs.get(group.key)
            if domains is None:
                continue
            if group.kind == ANTI:
                group.record(*domains)
            elif len(domains) == 1:
                group.record(next(iter(domains)))


# --- node claims and the loop ------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class NodeClaim:
    hostname: str
    requirements: Requirements
    instance_types: list[InstanceType]
    requests: dict[str, int] = field(default_factory=dict)
    pods: list[Pod] = field(default_factory=list)

    def can_add(
        self, pod: Pod, pod_reqs: Requirements, pod_requests: dict[str, int], topology: Topology
    ) -> tuple[Requirements, list[InstanceType], dict[str, int]] | None:
        if tolerates_all(pod.tolerations, ()) is not None:
            return None
        if not _compatible(self.requirements, pod_reqs):
            return None
        reqs = _merge(self.requirements, pod_reqs)
        topo = topology.add_requirements(pod, reqs)
        if topo is None or not _compatible(reqs, topo):
            return None
        reqs = _merge(reqs, topo)
        requests = _add_requests(self.requests, pod_requests)
        remaining = filter_instance_types(self.instance_types, reqs, requests)
        if not remaining:
            return None
        return reqs, remaining, requests

    def add(self, pod: Pod, pod_reqs: Requirements, pod_requests: dict[str, int], topology: Topology) -> bool:
        found = self.can_add(pod, pod_reqs, pod_requests, topology)
        if found is None:
            return False
        self.requirements, self.instance_types, self.requests = found
        self.pods.append(pod)
        topology.record(pod, self.requirements)
        return True

    def launch(self) -> tuple[InstanceType, Offering]:
        """The cheapest available offering of the remaining types that meets the requirements."""
        zones = self.requirements.get(LABEL_ZONE)
        capacity_types = self.requirements.get(LABEL_CAPACITY_TYPE)
        best: tuple[float, InstanceType, Offering] | None = None
        for it in self.instance_types:
            for o in it.offerings:
                if not o.available or (zones is not None and o.zone not in zones):
                    continue
                if capacity_types is not None and o.capacity_type not in capacity_types:
                    continue
                if best is None or o.price < best[0]:
                    best = (o.price, it, o)
        assert best is not None
        return best[1], best[2]


@dataclass(slots=True, eq=False)
class ExistingNode:
    node: Node
    requirements: Requirements
    free: dict[str, int]
    pods: list[Pod] = field(default_factory=list)

    def add(self, pod: Pod, pod_reqs: Requirements, pod_requests: dict[str, int], topology: Topology) -> bool:
        if tolerates_all(pod.tolerations, self.node.taints) is not None:
            return False
        if not _compatible(self.requirements, pod_reqs):
            return False
        topo = topology.add_requirements(pod, self.requirements)
        if topo is None or not _compatible(self.requirements, topo):
            return False
        if not _fits(pod_requests, self.free):
            return False
        for name, amount in pod_requests.items():
            self.free[name] = self.free.get(name, 0) - amount
        self.pods.append(pod)
        topology.record(pod, self.requirements)
        return True


@dataclass(slots=True)
class Result:
    claims: list[NodeClaim]
    existing: list[ExistingNode]
    errors: dict[str, str]

    def launches(self) -> list[tuple[NodeClaim, InstanceType, Offering]]:
        return [(c, *c.launch()) for c in self.claims]

    @property
    def cost(self) -> float:
        return sum(o.price for _, _, o in self.launches())


def _pod_requirements(pod: Pod) -> Requirements:
    reqs: Requirements = {k: frozenset((v,)) for k, v in pod.node_selector.items()}
    if pod.node_affinity:
        for requirement in pod.node_affinity[0]:  # first term only: the benchmark pods have none
            if requirement.operator == "In":
                reqs[requirement.key] = reqs.get(requirement.key, frozenset(requirement.values)) & frozenset(
                    requirement.values
                )
    return reqs


def _pod_requests(pod: Pod) -> dict[str, int]:
    requests = dict(pod.requests)
    requests["pods"] = requests.get("pods", 0) + 1  # resources.RequestsForPods counts the pod
    return requests


def solve(
    pods: Sequence[Pod],
    instance_types: Sequence[InstanceType],
    nodes: Sequence[Node] = (),
    template: Requirements | None = None,
) -> Result:
    """Schedule `pods` the way Karpenter's Scheduler.Solve does (one NodePool, no limits)."""
    zones = {o.zone for it in instance_types for o in it.offerings}
    topology = Topology(pods, zones, nodes)
    base: Requirements = dict(template or {})
    base.setdefault(LABEL_INSTANCE_TYPE, frozenset(it.name for it in instance_types))
    base.setdefault(LABEL_ZONE, frozenset(zones))
    base.setdefault(
        LABEL_CAPACITY_TYPE, frozenset(o.capacity_type for it in instance_types for o in it.offerings)
    )
    existing = [
        ExistingNode(
            n,
            {k: frozenset((v,)) for k, v in n.labels.items()} | {LABEL_HOSTNAME: frozenset((n.name,))},
            {k: v - n.used().get(k, 0) for k, v in n.allocatable.items()},
        )
        for n in nodes
        if not n.unschedulable and n.ready
    ]
    claims: list[NodeClaim] = []
    names = itertools.count(1)
    pod_reqs = {p.key: _pod_requirements(p) for p in pods}
    pod_requests = {p.key: _pod_requests(p) for p in pods}
    queue = sorted(pods, key=lambda p: (-p.requests.get("cpu", 0), -p.requests.get("memory", 0), p.created))
    errors: dict[str, str] = {}

    def add(pod: Pod) -> bool:
        reqs, requests = pod_reqs[pod.key], pod_requests[pod.key]
        for node in existing:
            if node.add(pod, reqs, requests, topology):
                return True
        claims.sort(key=lambda c: len(c.pods))  # every pod, as scheduler.go
        for claim in claims:
            if claim.add(pod, reqs, requests, topology):
                return True
        hostname = f"hostname-placeholder-{next(names):05d}"
        topology.register(LABEL_HOSTNAME, hostname)
        claim = NodeClaim(hostname, {**base, LABEL_HOSTNAME: frozenset((hostname,))}, list(instance_types))
        if claim.add(pod, reqs, requests, topology):
            claims.append(claim)
            return True
        return False

    while queue:
        failed: list[Pod] = []
        for pod in queue:
            if add(pod):
                errors.pop(pod.key, None)
            else:
                errors[pod.key] = "incompatible with every NodeClaim and the template"
                failed.append(pod)
        if len(failed) == len(queue):
            break
        queue = failed
    return Result(claims, existing, errors)
