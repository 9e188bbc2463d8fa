"""A faithful pure-Python port of Karpenter's provisioning scheduler (the baseline of W1, W2, W7).

Ported from `kubernetes-sigs/karpenter` at commit 2266468104f36373ed002241afaee2d3bbc26078
(2026-08-20), `pkg/controllers/provisioning/scheduling`:

* `queue.go`: pods sorted by CPU, then memory, descending, then creation time and UID. A pod that
  fails goes to the back; the round ends when the queue comes back to a pod that failed with the
  queue at the same length (`Queue.Pop`'s `lastLen`).
* `scheduler.go` `add`: existing nodes first (`addToExistingNode`, first that fits in order), then
  the in-flight NodeClaims **re-sorted by pod count on every pod** (`sort.Slice`), then a new
  NodeClaim from each NodePool template in weight order (`addToNewNodeClaim`). NodePool limits:
  `remainingResources` starts at the NodePool's limits minus the existing nodes' capacity; a new
  NodeClaim's types are filtered by `filterByRemainingResources` and, once it is added, the
  maximum capacity of its remaining types is subtracted (`subtractMax`).
* `nodeclaimtemplate.go`: a template's instance types are those compatible with the NodePool's
  requirements, computed once when the scheduler is built (not per pod).
* `nodeclaim.go` `CanAdd`: taints, requirement compatibility, topology requirements, then
  `filterInstanceTypesByRequirements` over the NodeClaim's remaining types (requirements
  intersect, an available offering compatible with the requirements, the summed requests fit).
  Each instance type's requirements and offerings are built once, as `cloudprovider.InstanceType`
  caches them.
* `existingnode.go` `CanAdd`: taints, summed requests fit the node's available resources, node
  requirements compatible, topology requirements.
* `topology.go`, `topologygroup.go`: one group per (type, key, selector, namespaces, max skew),
  owned by the pods whose constraint it is; inverse anti-affinity groups from the existing pods'
  anti-affinity terms. `AddRequirements` walks the groups the pod owns plus the inverse groups that
  select it (`getMatchingTopologies`). `nextDomainTopologySpread`, `nextDomainAffinity` and
  `nextDomainAntiAffinity` special-case `kubernetes.io/hostname` with one node domain (a new
  NodeClaim's own hostname, O(1)), walk the node's own domains when it names fewer of them than
  the group has (PR #959), and otherwise walk the group's (empty) domains. `domainMinCount` is
  linear in the domains and honours `minDomains`. `Record` counts a pod in every group that
  selects it where its NodeClaim pins one domain (every allowed domain for anti-affinity).
* When the round ends, each NodeClaim launches as the cheapest available offering of its
  remaining types that meets its requirements (the cloud provider's choice).

Not ported (no workload here uses them): preference relaxation, host ports, volume limits and
topology, reserved capacity, minValues, DRA, DaemonSet overhead, and the node-inclusion policies
of topology spread (every node counts).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hpscaler.model import LABEL_HOSTNAME, LABEL_ZONE, LabelSelector, Node, Pod, Taint, tolerates_all

KARPENTER_COMMIT = "2266468104f36373ed002241afaee2d3bbc26078"
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_CAPACITY_TYPE = "karpenter.sh/capacity-type"
WELL_KNOWN = frozenset((LABEL_INSTANCE_TYPE, LABEL_CAPACITY_TYPE, LABEL_ZONE, LABEL_HOSTNAME))

Requirements = dict[str, frozenset[str]]
"""Label key -> allowed values ("In" requirements: all the benchmark pods and NodePools produce)."""


@dataclass(frozen=True, slots=True)
class Offering:
    zone: str
    capacity_type: str
    price: float
    available: bool = True


@dataclass(slots=True, eq=False)
class InstanceType:
    name: str
    allocatable: dict[str, int]
    offerings: tuple[Offering, ...]
    requirements: Requirements = field(default_factory=dict)
    capacity: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.requirements:
            self.requirements = {
                LABEL_INSTANCE_TYPE: frozenset((self.name,)),
                LABEL_ZONE: frozenset(o.zone for o in self.offerings),
                LABEL_CAPACITY_TYPE: frozenset(o.capacity_type for o in self.offerings),
            }
        if not self.capacity:
            self.capacity = dict(self.allocatable)


def _intersects(a: Mapping[str, frozenset[str]], b: Mapping[str, frozenset[str]]) -> bool:
    """Requirements.Intersects: every key both constrain shares a value."""
    if len(a) > len(b):
        a, b = b, a
    for key, values in a.items():
        other = b.get(key)
        if other is not None and values.isdisjoint(other):
            return False
    return True


def _compatible(node: Mapping[str, frozenset[str]], incoming: Mapping[str, frozenset[str]]) -> bool:
    """Requirements.Compatible with AllowUndefinedWellKnownLabels: custom keys must be defined."""
    for key in incoming:
        if key not in node and key not in WELL_KNOWN:
            return False
    return _intersects(node, incoming)


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


TYPE_KEYS = (LABEL_INSTANCE_TYPE, LABEL_ZONE, LABEL_CAPACITY_TYPE)


def filter_instance_types(
    options: Sequence[InstanceType],
    reqs: Requirements,
    requests: Mapping[str, int],
    kept_under: Requirements | None = None,
) -> list[InstanceType]:
    """filterInstanceTypesByRequirements: compatible, has an available offering, fits the requests.

    `options` were all kept under `kept_under` before; when the keys an instance type or offering
    constrains are unchanged since, compatibility and offerings cannot have changed and only the fit
    is checked again (in Go these checks are a few map lookups; re-running them here would make the
    port slower than Karpenter for no change in the result).
    """
    if kept_under is not None and all(reqs.get(k) == kept_under.get(k) for k in TYPE_KEYS):
        wanted = tuple(requests.items())
        kept = []
        for it in options:
            alloc = it.allocatable
            for name, amount in wanted:
                if amount > alloc.get(name, 0):
                    break
            else:
                kept.append(it)
        return kept
    return [
        it
        for it in options
        if _intersects(it.requirements, reqs) and _fits(requests, it.allocatable) and _has_offering(it, reqs)
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
    min_domains: int = 1
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

    def get(
        self, pod: Pod, pod_domains: frozenset[str] | None, node_domains: frozenset[str] | None
    ) -> frozenset[str]:
        """TopologyGroup.Get: the domains the pod may use (None domains: the key is unconstrained)."""
        if self.kind == SPREAD:
            return self._spread(pod, pod_domains, node_domains)
        if self.kind == AFFINITY:
            return self._affinity(pod, pod_domains, node_domains)
        return self._anti(pod_domains, node_domains)

    def _min_count(self, pod_domains: frozenset[str] | None) -> int:
        """domainMinCount: linear in the domains."""
        if self.key == LABEL_HOSTNAME:
            return 0
        low: int | None = None
        supported = 0
        for domain, count in self.domains.items():
            if pod_domains is None or domain in pod_domains:
                supported += 1
                if low is None or count < low:
                    low = count
        if supported < self.min_domains:
            return 0
        return 0 if low is None else low

    def _spread(
        self, pod: Pod, pod_domains: frozenset[str] | None, node_domains: frozenset[str] | None
    ) -> frozenset[str]:
        low = self._min_count(pod_domains)
        self_selecting = self.selects(pod)
        if self.key == LABEL_HOSTNAME and node_domains is not None and len(node_domains) == 1:
            (host,) = node_domains
            count = self.domains.get(host, 0) + (1 if self_selecting else 0)
            return node_domains if count <= self.max_skew else frozenset()
        best, best_count = "", None
        walk: Iterable[str] = node_domains if node_domains is not None else self.domains
        for domain in walk:
            count_now = self.domains.get(domain)
            if count_now is None or (node_domains is not None and domain not in node_domains):
                continue
            count = count_now + (1 if self_selecting else 0)
            if count - low <= self.max_skew and (best_count is None or count < best_count):
                best, best_count = domain, count
        return frozenset((best,)) if best_count is not None else frozenset()

    def _any_compatible(self, pod_domains: frozenset[str] | None) -> bool:
        return any(c > 0 and (pod_domains is None or d in pod_domains) for d, c in self.domains.items())

    def _affinity(
        self, pod: Pod, pod_domains: frozenset[str] | None, node_domains: frozenset[str] | None
    ) -> frozenset[str]:
        def pod_has(d: str) -> bool:
            return pod_domains is None or d in pod_domains

        if self.key == LABEL_HOSTNAME and node_domains is not None and len(node_domains) == 1:
            (host,) = node_domains
            if not pod_has(host):
                return frozenset()
            if self.domains.get(host, 0) > 0:
                return node_domains
            if self.selects(pod) and (
                len(self.domains) == len(self.empty) or not self._any_compatible(pod_domains)
            ):
                return node_domains
            return frozenset()
        if node_domains is not None:
            options = {d for d in node_domains if pod_has(d) and self.domains.get(d, 0) > 0}
        else:
            options = {d for d, c in self.domains.items() if pod_has(d) and c > 0}
        if options:
            return frozenset(options)
        if self.selects(pod) and (
            len(self.domains) == len(self.empty) or not self._any_compatible(pod_domains)
        ):
            for domain in self.domains:  # first try the pod and node domains' intersection
                if pod_has(domain) and (node_domains is None or domain in node_domains):
                    options.add(domain)
                    break
            for domain in self.domains:
                if pod_has(domain):
                    options.add(domain)
                    break
        return frozenset(options)

    def _anti(
        self, pod_domains: frozenset[str] | None, node_domains: frozenset[str] | None
    ) -> frozenset[str]:
        if self.key == LABEL_HOSTNAME and node_domains is not None and len(node_domains) == 1:
            (host,) = node_domains
            return node_domains if self.domains.get(host, 0) == 0 else frozenset()
        if node_domains is not None and len(node_domains) < len(self.empty):
            return frozenset(
                d for d in node_domains if d in self.empty and (pod_domains is None or d in pod_domains)
            )
        return frozenset(
            d
            for d in self.empty
            if (node_domains is None or d in node_domains) and (pod_domains is None or d in pod_domains)
        )


class Topology:
    """Karpenter's Topology: groups for every constraint of the pods, counted per domain."""

    def __init__(
        self, pods: Sequence[Pod], domains: Mapping[str, Iterable[str]], nodes: Sequence[Node] = ()
    ) -> None:
        self.groups: dict[tuple[object, ...], TopologyGroup] = {}
        self.inverse: dict[tuple[object, ...], TopologyGroup] = {}
        self.universe = {key: frozenset(values) for key, values in domains.items()}  # domainGroups
        for pod in pods:
            self._add_owner(pod)
        for node in nodes:
            node_reqs = node_requirements(node)
            for pod in node.pods:  # updateInverseAntiAffinity: existing pods that repel others
                for term in pod.pod_anti_affinity:
                    group = self._group(
                        self.inverse, ANTI, term.topology_key, term.selector, pod, 0, 1, term.namespaces
                    )
                    group.owners.add(pod.uid or pod.key)
                    group.record(*node_reqs.get(term.topology_key, ()))
        for node in nodes:  # countDomains: existing pods count where they run
            node_reqs = node_requirements(node)
            for group in self.groups.values():
                for domain in node_reqs.get(group.key, ()):
                    group.register(domain)
            for pod in node.pods:
                self.record(pod, node_reqs)

    def _add_owner(self, pod: Pod) -> None:
        uid = pod.uid or pod.key
        for spread in pod.topology_spread:
            if spread.when_unsatisfiable == "DoNotSchedule":
                self._group(
                    self.groups,
                    SPREAD,
                    spread.topology_key,
                    spread.selector,
                    pod,
                    spread.max_skew,
                    spread.min_domains,
                ).owners.add(uid)
        for term in pod.pod_affinity:
            self._group(
                self.groups, AFFINITY, term.topology_key, term.selector, pod, 0, 1, term.namespaces
            ).owners.add(uid)
        for term in pod.pod_anti_affinity:
            self._group(
                self.groups, ANTI, term.topology_key, term.selector, pod, 0, 1, term.namespaces
            ).owners.add(uid)

    def _group(
        self,
        into: dict[tuple[object, ...], TopologyGroup],
        kind: str,
        key: str,
        selector: LabelSelector,
        pod: Pod,
        skew: int,
        min_domains: int,
        namespaces: tuple[str, ...] = (),
    ) -> TopologyGroup:
        ns = frozenset(namespaces or (pod.namespace,))
        gkey = (kind, key, selector, ns, skew, min_domains)
        group = into.get(gkey)
        if group is None:
            group = into[gkey] = TopologyGroup(kind, key, selector, ns, skew, min_domains)
            group.register(*sorted(self.universe.get(key, ())))
        return group

    def register(self, key: str, domain: str) -> None:
        """Topology.Register: linear in the groups."""
        for group in self.groups.values():
            if group.key == key:
                group.register(domain)

    def add_requirements(
        self, pod: Pod, pod_reqs: Requirements, node_reqs: Requirements
    ) -> Requirements | None:
        """Topology.AddRequirements: the node's requirements narrowed by the pod's topologies (None: none)."""
        uid = pod.uid or pod.key
        reqs: Requirements = dict(node_reqs)
        matching = [g for g in self.groups.values() if uid in g.owners]  # getMatchingTopologies
        matching += [g for g in self.inverse.values() if g.selects(pod)]
        for group in matching:
            domains = group.get(pod, pod_reqs.get(group.key), node_reqs.get(group.key))
            if not domains:
                return None
            current = reqs.get(group.key)
            reqs[group.key] = domains if current is None else current & domains
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
        uid = pod.uid or pod.key
        for group in self.inverse.values():
            if uid in group.owners:
                group.record(*reqs.get(group.key, ()))


# --- node claims, existing nodes and the loop ---------------------------------------------------------


def node_requirements(node: Node) -> Requirements:
    return {k: frozenset((v,)) for k, v in node.labels.items()} | {LABEL_HOSTNAME: frozenset((node.name,))}


@dataclass(slots=True)
class Template:
    """NodeClaimTemplate: a NodePool's requirements, taints, limits and its compatible instance types."""

    name: str
    requirements: Requirements
    instance_types: list[InstanceType]
    taints: tuple[Taint, ...] = ()
    limits: dict[str, int] | None = None
    weight: int = 0


@dataclass(slots=True, eq=False)
class NodeClaim:
    template: Template
    hostname: str
    requirements: Requirements
    instance_types: list[InstanceType]
    requests: dict[str, int] = field(default_factory=dict)
    pods: list[Pod] = field(default_factory=list)
    kept_under: Requirements | None = None  # the requirements instance_types were last filtered under

    def can_add(
        self, pod: Pod, pod_reqs: Requirements, pod_requests: dict[str, int], topology: Topology
    ) -> tuple[Requirements, list[InstanceType], dict[str, int]] | None:
        if tolerates_all(pod.tolerations, self.template.taints) is not None:
            return None
        if not _compatible(self.requirements, pod_reqs):
            return None
        reqs = _merge(self.requirements, pod_reqs)
        topo = topology.add_requirements(pod, pod_reqs, reqs)
        if topo is None or not _compatible(reqs, topo):
            return None
        reqs = _merge(reqs, topo)
        requests = _add_requests(self.requests, pod_requests)
        remaining = filter_instance_types(self.instance_types, reqs, requests, self.kept_under)
        if not remaining:
            return None
        return reqs, remaining, requests

    def add(
        self, pod: Pod, found: tuple[Requirements, list[InstanceType], dict[str, int]], topology: Topology
    ) -> None:
        self.requirements, self.instance_types, self.requests = found
        self.kept_under = self.requirements
        self.pods.append(pod)
        topology.register(LABEL_HOSTNAME, self.hostname)
        topology.record(pod, self.requirements)

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
    available: dict[str, int]
    requests: dict[str, int] = field(default_factory=dict)
    pods: list[Pod] = field(default_factory=list)

    def can_add(
        self, pod: Pod, pod_reqs: Requirements, pod_requests: dict[str, int], topology: Topology
    ) -> Requirements | None:
        if tolerates_all(pod.tolerations, self.node.taints) is not None:
            return None
        requests = _add_requests(self.requests, pod_requests)
        if not _fits(requests, self.available):  # checked first: the likeliest reason to fail
            return None
        if not _compatible(self.requirements, pod_reqs):
            return None
        reqs = _merge(self.requirements, pod_reqs)
        topo = topology.add_requirements(pod, pod_reqs, reqs)
        if topo is None or not _compatible(reqs, topo):
            return None
        return _merge(reqs, topo)

    def add(self, pod: Pod, pod_requests: dict[str, int], reqs: Requirements, topology: Topology) -> None:
        self.requests = _add_requests(self.requests, pod_requests)
        self.pods.append(pod)
        topology.record(pod, reqs)


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
                values = frozenset(requirement.values)
                reqs[requirement.key] = reqs.get(requirement.key, values) & values
    return reqs


def _pod_requests(pod: Pod) -> dict[str, int]:
    requests = dict(pod.requests)
    requests["pods"] = requests.get("pods", 0) + 1  # resources.RequestsForPods counts the pod
    return requests


def _subtract_max(remaining: dict[str, int], its: Sequence[InstanceType]) -> dict[str, int]:
    """subtractMax: take the largest capacity any of the NodeClaim's types could have off the limits."""
    if not its:
        return remaining
    out = {}
    for name, amount in remaining.items():
        if name == "nodes":
            out[name] = amount - 1
        else:
            out[name] = amount - max(it.capacity.get(name, 0) for it in its)
    return out


def _within_remaining(its: Sequence[InstanceType], remaining: Mapping[str, int]) -> list[InstanceType]:
    """filterByRemainingResources."""
    return [
        it
        for it in its
        if all(it.capacity.get(n, 0) <= left for n, left in remaining.items() if n != "nodes")
    ]


def make_template(
    name: str,
    instance_types: Sequence[InstanceType],
    requirements: Requirements | None = None,
    taints: tuple[Taint, ...] = (),
    limits: Mapping[str, int] | None = None,
    weight: int = 0,
) -> Template:
    """NewNodeClaimTemplate: the NodePool's requirements and the instance types compatible with them."""
    reqs: Requirements = dict(requirements or {})
    compatible = [
        it for it in instance_types if _intersects(it.requirements, reqs) and _has_offering(it, reqs)
    ]
    reqs.setdefault(LABEL_INSTANCE_TYPE, frozenset(it.name for it in compatible))
    reqs.setdefault(LABEL_ZONE, frozenset(o.zone for it in compatible for o in it.offerings))
    reqs.setdefault(
        LABEL_CAPACITY_TYPE, frozenset(o.capacity_type for it in compatible for o in it.offerings)
    )
    return Template(name, reqs, compatible, taints, dict(limits) if limits else None, weight)


def solve(
    pods: Sequence[Pod],
    instance_types: Sequence[InstanceType] = (),
    nodes: Sequence[Node] = (),
    templates: Sequence[Template] = (),
    limits: Mapping[str, int] | None = None,
) -> Result:
    """Schedule `pods` the way Karpenter's Scheduler.Solve does.

    `templates` are the NodePools (default: one NodePool over `instance_types`, with `limits`).
    """
    if not templates:
        templates = [make_template("default", instance_types, limits=limits)]
    templates = sorted(templates, key=lambda t: -t.weight)
    zones = {z for t in templates for z in t.requirements.get(LABEL_ZONE, ())}
    zones |= {n.labels[LABEL_ZONE] for n in nodes if LABEL_ZONE in n.labels}
    topology = Topology(pods, {LABEL_ZONE: zones}, nodes)
    remaining: dict[str, dict[str, int]] = {t.name: dict(t.limits) for t in templates if t.limits is not None}
    existing = []
    for n in nodes:
        if n.unschedulable or not n.ready:
            continue
        existing.append(
            ExistingNode(n, node_requirements(n), dict(n.allocatable), _pod_requests_total(n.pods))
        )
        pool = n.labels.get("karpenter.sh/nodepool", templates[0].name)
        if pool in remaining:  # updateRemainingResources: existing capacity counts against the limits
            remaining[pool] = {
                k: v - (1 if k == "nodes" else n.allocatable.get(k, 0)) for k, v in remaining[pool].items()
            }
    claims: list[NodeClaim] = []
    names = itertools.count(1)
    pod_reqs = {p.key: _pod_requirements(p) for p in pods}
    pod_requests = {p.key: _pod_requests(p) for p in pods}
    queue = sorted(
        pods, key=lambda p: (-p.requests.get("cpu", 0), -p.requests.get("memory", 0), p.created, p.uid)
    )
    errors: dict[str, str] = {}

    def add(pod: Pod) -> str:
        reqs, requests = pod_reqs[pod.key], pod_requests[pod.key]
        for node in existing:
            found_node = node.can_add(pod, reqs, requests, topology)
            if found_node is not None:
                node.add(pod, requests, found_node, topology)
                return ""
        claims.sort(key=lambda c: len(c.pods))  # every pod, as scheduler.go
        for claim in claims:
            found = claim.can_add(pod, reqs, requests, topology)
            if found is not None:
                claim.add(pod, found, topology)
                return ""
        error = "incompatible with every NodeClaim and NodePool"
        for template in templates:
            its = template.instance_types
            left = remaining.get(template.name)
            if left is not None:
                if left.get("nodes", 1) <= 0:
                    error = f"node limits have been exhausted for nodepool {template.name}"
                    continue
                its = _within_remaining(its, left)
                if not its:
                    error = f"all available instance types exceed limits for nodepool {template.name}"
                    continue
            hostname = f"hostname-placeholder-{next(names):04d}"
            claim = NodeClaim(
                template, hostname, {**template.requirements, LABEL_HOSTNAME: frozenset((hostname,))}, its
            )
            found = claim.can_add(pod, reqs, requests, topology)
            if found is None:
                continue
            claim.add(pod, found, topology)
            claims.append(claim)
            if left is not None:
                remaining[template.name] = _subtract_max(left, claim.instance_types)
            return ""
        return error

    last_len: dict[str, int] = {}
    pending = list(queue)
    head = 0
    while head < len(pending):
        pod = pending[head]
        if last_len.get(pod.key) == len(pending) - head:
            break
        head += 1
        error = add(pod)
        if error:
            errors[pod.key] = error
            pending.append(pod)
            last_len[pod.key] = len(pending) - head
        else:
            errors.pop(pod.key, None)
    return Result(claims, existing, errors)


def _pod_requests_total(pods: Iterable[Pod]) -> dict[str, int]:
    total: dict[str, int] = {}
    for pod in pods:
        for name, amount in _pod_requests(pod).items():
            total[name] = total.get(name, 0) + amount
    return total
