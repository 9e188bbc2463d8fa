"""Properties of every plan the scheduler makes for random pods and clusters, and packing quality."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpscaler.catalogue import Catalogue, load_catalogue
from hpscaler.model import (
    LABEL_CAPACITY_TYPE,
    LABEL_HOSTNAME,
    LABEL_INSTANCE_GROUP,
    LABEL_INSTANCE_TYPE,
    LABEL_NODEPOOL,
    LABEL_ZONE,
    PODS_RESOURCE,
    CapacityType,
    InstanceGroup,
    LabelSelector,
    Node,
    NodeClass,
    NodePool,
    Pod,
    PodAffinityTerm,
    Requirement,
    Taint,
    Toleration,
    tolerates_all,
)
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import InFlightNode, Plan, SchedulingInput

# ml.c5.xlarge holds only 8 pods here, so that pod slots run out before CPU or memory do.
CAT = Catalogue.from_specs(
    replace(spec, max_pods=8) if spec.name == "ml.c5.xlarge" else spec for spec in load_catalogue()
)
MI = 2**20
ZONES = ("us-west-2a", "us-west-2b", "us-west-2c")
SPOT, ON_DEMAND = CapacityType.SPOT, CapacityType.ON_DEMAND

POOL_TAINT = Taint("pool", "NoSchedule", "reserved")
GROUP_TAINT = Taint("dedicated", "NoSchedule", "batch")
NODE_TAINT = Taint("maintenance", "NoExecute")
TOLERATIONS = (
    Toleration("pool", "Exists"),
    Toleration("dedicated", "Equal", "batch"),
    Toleration("maintenance", "Exists", effect="NoExecute"),
)

GROUPS = [
    InstanceGroup("spot-a", ("ml.c5.xlarge",), SPOT, (ZONES[0],)),
    InstanceGroup("spot-b", ("ml.c5.2xlarge",), SPOT, (ZONES[1],), labels=(("team", "ml"),)),
    InstanceGroup("od-c", ("ml.m5.2xlarge",), ON_DEMAND, (ZONES[2],), taints=(GROUP_TAINT,)),
    InstanceGroup("spot-c", ("ml.c5.2xlarge",), SPOT, (ZONES[2],)),
]
CLASSES = [
    NodeClass("all", tuple(g.name for g in GROUPS)),
    NodeClass("ab", ("spot-a", "spot-b")),
]
RESERVED_LIMIT = 3
POOLS = [
    NodePool("default", "all", labels=(("tier", "general"),)),
    NodePool(
        "reserved",
        "ab",
        (Requirement(LABEL_ZONE, "In", ZONES[:2]),),
        taints=(POOL_TAINT,),
        weight=10,
        limits=(("nodes", RESERVED_LIMIT),),
    ),
]
DAEMONSET = Pod(
    "kube-system",
    "node-agent",
    {"cpu": 100, "memory": 128 * MI},
    owner_kind="DaemonSet",
    tolerations=(Toleration(operator="Exists"),),
)


# -- strategies ----------------------------------------------------------------------------------


@st.composite
def pod_strategy(draw: st.DrawFn, name: str) -> Pod:
    app = draw(st.sampled_from(["", "web", "db"]))
    labels = {"app": app} if app else {}
    anti: tuple[PodAffinityTerm, ...] = ()
    if app and draw(st.booleans()):
        anti = (PodAffinityTerm(LABEL_HOSTNAME, LabelSelector((("app", app),))),)
    selector = draw(
        st.sampled_from(
            [{}, {}, {LABEL_ZONE: ZONES[0]}, {LABEL_ZONE: ZONES[2]}, {"team": "ml"}, {"tier": "general"}]
        )
    )
    affinity: tuple[tuple[Requirement, ...], ...] = ()
    if draw(st.integers(0, 4)) == 0:
        affinity = (
            (Requirement(LABEL_ZONE, "NotIn", (ZONES[0],)),),
            (Requirement(LABEL_INSTANCE_TYPE, "In", ("ml.c5.xlarge",)),),
        )
    tolerations = tuple(t for t in TOLERATIONS if draw(st.integers(0, 2)) == 0)
    return Pod(
        "default",
        name,
        {
            "cpu": draw(st.sampled_from([10, 50, 100, 250, 500, 1000, 2000, 3500])),
            "memory": draw(st.sampled_from([64, 256, 1024, 4096, 7000])) * MI,
        },
        labels=labels,
        node_selector=selector,
        node_affinity=affinity,
        tolerations=tolerations,
        pod_anti_affinity=anti,
        owner_kind="ReplicaSet",
    )


def _fill(budget: Mapping[str, int], candidates: Sequence[Pod]) -> list[Pod]:
    """The candidates that fit into `budget` (pods counted), in order: bound pods never overcommit."""
    left = dict(budget)
    kept = []
    for pod in candidates:
        need = {**pod.requests, PODS_RESOURCE: 1}
        if all(left.get(k, 0) >= v for k, v in need.items()):
            for k, v in need.items():
                left[k] -= v
            kept.append(pod)
    return kept


@st.composite
def node_strategy(draw: st.DrawFn, index: int) -> Node:
    itype = draw(st.sampled_from(["ml.c5.xlarge", "ml.c5.2xlarge"]))
    zone = draw(st.sampled_from(ZONES))
    name = f"node-{index}"
    labels = {
        LABEL_INSTANCE_TYPE: itype,
        LABEL_ZONE: zone,
        LABEL_HOSTNAME: name,
        LABEL_CAPACITY_TYPE: "spot",
        LABEL_NODEPOOL: draw(st.sampled_from(["default", "reserved", ""])),
        LABEL_INSTANCE_GROUP: "spot-b",
    }
    if draw(st.booleans()):
        labels["team"] = "ml"
    allocatable = CAT.get(itype).allocatable()
    candidates = draw(st.lists(pod_strategy(f"{name}-bound"), max_size=6))
    bound = [
        Pod(
            p.namespace,
            f"{name}-bound-{i}",
            p.requests,
            labels=p.labels,
            pod_anti_affinity=p.pod_anti_affinity,
        )
        for i, p in enumerate(candidates)
    ]
    bound = _fill(allocatable, _without_anti_conflicts(bound))
    for pod in bound:
        pod.node_name, pod.phase = name, "Running"
    return Node(
        name,
        labels,
        allocatable,
        taints=(NODE_TAINT,) if draw(st.integers(0, 4)) == 0 else (),
        pods=bound,
        unschedulable=draw(st.integers(0, 5)) == 0,
        ready=draw(st.integers(0, 5)) != 0,
    )


def _without_anti_conflicts(pods: Sequence[Pod]) -> list[Pod]:
    kept: list[Pod] = []
    for pod in pods:
        if not any(_repels(pod, other) or _repels(other, pod) for other in kept):
            kept.append(pod)
    return kept


@dataclass
class World:
    pending: list[Pod]
    nodes: list[Node]
    inflight: list[InFlightNode]
    unavailable: dict[tuple[str, str], str]
    daemonsets: list[Pod]

    def input(self) -> SchedulingInput:
        return SchedulingInput(
            pods=self.pending,
            node_pools=POOLS,
            node_classes=CLASSES,
            groups=GROUPS,
            catalogue=CAT,
            nodes=self.nodes,
            inflight=self.inflight,
            daemonsets=self.daemonsets,
            placement_scores={ZONES[0]: 7, ZONES[1]: 9},
            unavailable=self.unavailable,
        )


@st.composite
def world_strategy(draw: st.DrawFn) -> World:
    count = draw(st.integers(0, 40))
    pending = [draw(pod_strategy(f"p{i:02d}")) for i in range(count)]
    nodes = [draw(node_strategy(i)) for i in range(draw(st.integers(0, 4)))]
    daemonsets = [DAEMONSET] if draw(st.booleans()) else []
    inflight = []
    for i in range(draw(st.integers(0, 2))):
        group = draw(st.sampled_from([GROUPS[0], GROUPS[1], GROUPS[3]]))
        pool = "default"
        budget = _net_allocatable(group, pool, daemonsets)
        nominated = draw(st.lists(pod_strategy(f"f{i}-nominated"), max_size=3))
        nominated = [
            Pod(
                p.namespace,
                f"f{i}-nominated-{j}",
                p.requests,
                labels=p.labels,
                pod_anti_affinity=p.pod_anti_affinity,
            )
            for j, p in enumerate(nominated)
        ]
        nominated = _fill(budget, _without_anti_conflicts(nominated))
        inflight.append(
            InFlightNode(
                f"flight-{i}",
                pool,
                group.name,
                group.instance_types[0],
                group.zones[0],
                group.capacity_type,
                nominated,
            )
        )
    offerings = [(g.name, g.zones[0]) for g in GROUPS]
    unavailable = {o: "ICE" for o in offerings if draw(st.integers(0, 3)) == 0}
    return World(pending, nodes, inflight, unavailable, daemonsets)


# -- independent re-derivation of node facts ---------------------------------------------------


def _pool(name: str) -> NodePool:
    return next(p for p in POOLS if p.name == name)


def _group(name: str) -> InstanceGroup:
    return next(g for g in GROUPS if g.name == name)


def _new_node_labels(group: InstanceGroup, pool: NodePool, hostname: str) -> dict[str, str]:
    labels = CAT.get(group.instance_types[0]).labels()
    labels.update(
        {
            LABEL_ZONE: group.zones[0],
            LABEL_CAPACITY_TYPE: group.capacity_type.value,
            LABEL_NODEPOOL: pool.name,
            LABEL_INSTANCE_GROUP: group.name,
            LABEL_HOSTNAME: hostname,
        }
    )
    labels.update(dict(group.labels))
    labels.update(dict(pool.labels))
    return labels


def _net_allocatable(group: InstanceGroup, pool: str, daemonsets: Sequence[Pod]) -> dict[str, int]:
    allocatable = CAT.get(group.instance_types[0]).allocatable()
    for ds in daemonsets:  # the test DaemonSet tolerates everything and selects every node
        for k, v in {**ds.requests, PODS_RESOURCE: 1}.items():
            allocatable[k] -= v
    return allocatable


def _accepts(pod: Pod, labels: Mapping[str, str], taints: Sequence[Taint]) -> bool:
    if tolerates_all(pod.tolerations, taints) is not None:
        return False
    if any(labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    return not pod.node_affinity or any(all(r.matches(labels) for r in term) for term in pod.node_affinity)


def _repels(pod: Pod, other: Pod) -> bool:
    return any(
        other.namespace in (t.namespaces or (pod.namespace,)) and t.selector.matches(other.labels)
        for t in pod.pod_anti_affinity
        if t.topology_key == LABEL_HOSTNAME
    )


@dataclass
class Target:
    allocatable: dict[str, int]
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    resident: list[Pod]  # already bound or nominated
    placed: list[Pod]


def targets(world: World, plan: Plan) -> dict[str, Target]:
    by_key = {p.key: p for p in world.pending}
    out: dict[str, Target] = {}
    for node in plan.new_nodes:
        group, pool = _group(node.instance_group), _pool(node.node_pool)
        assert group.name in next(c for c in CLASSES if c.name == pool.node_class).instance_groups
        labels = _new_node_labels(group, pool, node.name)
        assert all(r.matches(labels) for r in pool.requirements)
        assert node.zone == group.zones[0] and node.instance_type == group.instance_types[0]
        assert node.capacity_type is group.capacity_type
        assert (group.name, node.zone) not in world.unavailable
        assert node.allocatable == _net_allocatable(group, pool.name, world.daemonsets)
        out[node.name] = Target(
            node.allocatable, labels, (*pool.taints, *group.taints), [], [by_key[k] for k in node.pods]
        )
    for n in world.nodes:
        taints = (
            (*n.taints, Taint("node.kubernetes.io/unschedulable", "NoSchedule"))
            if n.unschedulable or not n.ready
            else n.taints
        )
        placed = [by_key[k] for k in plan.existing.get(n.name, [])]
        out[n.name] = Target(n.allocatable, n.labels, taints, list(n.pods), placed)
    for f in world.inflight:
        group, pool = _group(f.instance_group), _pool(f.node_pool)
        labels = _new_node_labels(group, pool, f.name)
        placed = [by_key[k] for k in plan.inflight.get(f.name, [])]
        out[f.name] = Target(
            _net_allocatable(group, pool.name, world.daemonsets),
            labels,
            (*pool.taints, *group.taints),
            list(f.pods),
            placed,
        )
    unknown = (set(plan.existing) | set(plan.inflight)) - set(out)
    assert not unknown, unknown
    return out


def check_plan(world: World, plan: Plan) -> None:
    # Every pending pod exactly once: on a node or unschedulable.
    placed_keys = [k for n in plan.new_nodes for k in n.pods]
    placed_keys += [k for keys in (*plan.existing.values(), *plan.inflight.values()) for k in keys]
    all_keys = placed_keys + [u.pod for u in plan.unschedulable]
    assert Counter(all_keys) == Counter(p.key for p in world.pending)
    assert all(u.reason for u in plan.unschedulable)
    assert len({n.name for n in plan.new_nodes}) == len(plan.new_nodes)
    assert not {n.name for n in plan.new_nodes} & (
        {n.name for n in world.nodes} | {f.name for f in world.inflight}
    )
    assert all(n.pods for n in plan.new_nodes), "a planned node without pods"

    for name, target in targets(world, plan).items():
        # Capacity, pod slots included, counting pods already there.
        used = Counter[str]()
        for pod in (*target.resident, *target.placed):
            used.update({**pod.requests, PODS_RESOURCE: 1})
        for resource, amount in used.items():
            assert amount <= target.allocatable.get(resource, 0), (name, resource, amount, target.allocatable)
        # Labels and taints.
        for pod in target.placed:
            assert _accepts(pod, target.labels, target.taints), (name, pod.key)
        # Hostname anti-affinity, both ways, among everything on the node.
        everyone = [*target.resident, *target.placed]
        for pod in target.placed:
            for other in everyone:
                if other is not pod:
                    assert not _repels(pod, other) and not _repels(other, pod), (name, pod.key, other.key)

    # NodePool limits: the reserved pool never exceeds its node count.
    reserved = sum(1 for n in plan.new_nodes if n.node_pool == "reserved")
    reserved += sum(1 for n in world.nodes if n.labels.get(LABEL_NODEPOOL) == "reserved")
    reserved += sum(1 for f in world.inflight if f.node_pool == "reserved")
    existing_reserved = reserved - sum(1 for n in plan.new_nodes if n.node_pool == "reserved")
    assert reserved <= max(RESERVED_LIMIT, existing_reserved)


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(world_strategy())
def test_every_plan_is_valid(world: World) -> None:
    plan = solve(world.input())
    check_plan(world, plan)
    # Pure and deterministic: the same input gives the same plan.
    assert solve(world.input()) == plan


@settings(max_examples=60, deadline=None, derandomize=True)
@given(world_strategy())
def test_unschedulable_pods_really_fit_nowhere_new(world: World) -> None:
    """A pod refused while an unconstrained, tolerable, available, unlimited offering exists is a bug."""
    plan = solve(world.input())
    by_key = {p.key: p for p in world.pending}
    for item in plan.unschedulable:
        pod = by_key[item.pod]
        if pod.pod_anti_affinity:
            continue
        for group in GROUPS:
            if (group.name, group.zones[0]) in world.unavailable:
                continue
            labels = _new_node_labels(group, _pool("default"), "x")
            taints = group.taints
            free = _net_allocatable(group, "default", world.daemonsets)
            fits = all(v <= free.get(k, 0) for k, v in {**pod.requests, PODS_RESOURCE: 1}.items())
            assert not (fits and _accepts(pod, labels, taints)), (item, group.name)


# -- packing quality ---------------------------------------------------------------------------

PACK_TYPE = "ml.c5.4xlarge"
PACK_ALLOC = CAT.get(PACK_TYPE).allocatable()
PACK_RESOURCES = ("cpu", "memory", PODS_RESOURCE)
BENCH_CPU = (100, 250, 500, 1000, 1500)
BENCH_MEMORY_MI = (100, 256, 512, 1024, 2048, 4096)


def lower_bound(requests: Sequence[Mapping[str, int]], allocatable: Mapping[str, int]) -> int:
    totals = Counter[str]()
    for r in requests:
        totals.update({**r, PODS_RESOURCE: 1})
    return max(math.ceil(totals[k] / allocatable[k]) for k in PACK_RESOURCES)


def pack(requests: Sequence[dict[str, int]]) -> Plan:
    group = InstanceGroup("pack", (PACK_TYPE,), SPOT, (ZONES[0],))
    pending = [Pod("default", f"p{i:05d}", r, owner_kind="ReplicaSet") for i, r in enumerate(requests)]
    inp = SchedulingInput(
        pods=pending,
        node_pools=[NodePool("default", "nc")],
        node_classes=[NodeClass("nc", ("pack",))],
        groups=[group],
        catalogue=CAT,
    )
    plan = solve(inp)
    assert plan.unschedulable == []
    return plan


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.sampled_from((*BENCH_CPU, 2000, 3000)), st.sampled_from((*BENCH_MEMORY_MI, 6144, 8192))),
        min_size=20,
        max_size=400,
    )
)
def test_packing_close_to_lower_bound(shapes: list[tuple[int, int]]) -> None:
    requests = [{"cpu": cpu, "memory": mem * MI} for cpu, mem in shapes]
    plan = pack(requests)
    bound = lower_bound(requests, PACK_ALLOC)
    assert len(plan.new_nodes) <= math.ceil(1.05 * bound) + 1, (len(plan.new_nodes), bound)


def karpenter_style_node_count(requests: Sequence[Mapping[str, int]], allocatable: Mapping[str, int]) -> int:
    """Karpenter's order: pods by CPU then memory, descending; each onto the first node with room."""
    order = sorted(requests, key=lambda r: (r["cpu"], r["memory"]), reverse=True)
    nodes: list[dict[str, int]] = []
    for request in order:
        need = {**request, PODS_RESOURCE: 1}
        for free in nodes:
            if all(free[k] >= v for k, v in need.items()):
                break
        else:
            free = {k: allocatable[k] for k in PACK_RESOURCES}
            nodes.append(free)
        for k, v in need.items():
            free[k] -= v
    return len(nodes)


def test_beats_karpenter_order_on_the_benchmark_distribution() -> None:
    rng = random.Random(20240601)
    requests = [
        {"cpu": rng.choice(BENCH_CPU), "memory": rng.choice(BENCH_MEMORY_MI) * MI} for _ in range(2000)
    ]
    plan = pack(requests)
    baseline = karpenter_style_node_count(requests, PACK_ALLOC)
    bound = lower_bound(requests, PACK_ALLOC)
    ours = len(plan.new_nodes)
    assert bound <= ours < baseline, (bound, ours, baseline)
    assert ours <= math.ceil(1.05 * bound) + 1, (bound, ours, baseline)
