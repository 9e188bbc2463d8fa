"""The scheduler, one constraint at a time: each kind placed when it can be and refused, with the
cause named, when it cannot. Then ranking, NodePools, existing and in-flight nodes, gangs, and the
seed acceptance case."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from hpscaler.catalogue import Catalogue, InstanceSpec, PriceOverride, load_catalogue
from hpscaler.model import (
    LABEL_CAPACITY_TYPE,
    LABEL_HOSTNAME,
    LABEL_INSTANCE_CPU,
    LABEL_INSTANCE_GPU_COUNT,
    LABEL_INSTANCE_GPU_NAME,
    LABEL_INSTANCE_GROUP,
    LABEL_INSTANCE_TYPE,
    LABEL_NODEPOOL,
    LABEL_ZONE,
    CapacityType,
    Gang,
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
    TopologySpread,
)
from hpscaler.quantity import EFA, EPHEMERAL_STORAGE, NEURON, NVIDIA_GPU
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import InFlightNode, Plan, PlannedNode, SchedulingInput

CAT = load_catalogue()
MI = 2**20
GI = 2**30
ZA, ZB, ZC = "us-west-2a", "us-west-2b", "us-west-2c"
ZONE_IDS = {ZA: "usw2-az2", ZB: "usw2-az1", ZC: "usw2-az3"}
C5_2X = "ml.c5.2xlarge"
C5_2X_ALLOC = CAT.get(C5_2X).allocatable()

SPOT = CapacityType.SPOT
ON_DEMAND = CapacityType.ON_DEMAND


# -- builders ---------------------------------------------------------------------------------


def group(
    name: str,
    itype: str = C5_2X,
    zone: str = ZA,
    capacity: CapacityType = SPOT,
    **changes: Any,
) -> InstanceGroup:
    return InstanceGroup(name, (itype,), capacity, (zone,), (ZONE_IDS.get(zone, ""),), **changes)


def three_zone_groups(itype: str = C5_2X) -> list[InstanceGroup]:
    return [group(f"spot-{z[-1]}", itype, z) for z in (ZA, ZB, ZC)]


def pool(name: str = "default", *requirements: Requirement, **changes: Any) -> NodePool:
    return NodePool(name, changes.pop("node_class", "nc"), tuple(requirements), **changes)


def pod(name: str, cpu: int = 1000, memory: int = 256 * MI, **changes: Any) -> Pod:
    extra = changes.pop("extra", {})
    return Pod("default", name, {"cpu": cpu, "memory": memory, **extra}, owner_kind="ReplicaSet", **changes)


def pods(prefix: str, count: int, **changes: Any) -> list[Pod]:
    return [pod(f"{prefix}-{i:03d}", **changes) for i in range(count)]


def run(
    pending: Sequence[Pod],
    groups: Sequence[InstanceGroup],
    pools: Sequence[NodePool] | None = None,
    classes: Sequence[NodeClass] | None = None,
    **changes: Any,
) -> Plan:
    if classes is None:
        classes = [NodeClass("nc", tuple(g.name for g in groups))]
    inp = SchedulingInput(
        pods=pending,
        node_pools=list(pools) if pools is not None else [pool()],
        node_classes=classes,
        groups=groups,
        catalogue=changes.pop("catalogue", CAT),
        **changes,
    )
    return solve(inp)


def where(plan: Plan) -> dict[str, str]:
    """Pod key -> node name (new, existing or in-flight)."""
    out: dict[str, str] = {}
    for node in plan.new_nodes:
        for key in node.pods:
            out[key] = node.name
    for mapping in (plan.existing, plan.inflight):
        for name, keys in mapping.items():
            for key in keys:
                out[key] = name
    return out


def new_node_of(plan: Plan, key: str) -> PlannedNode:
    return next(n for n in plan.new_nodes if key in n.pods)


def reasons(plan: Plan) -> dict[str, str]:
    return {u.pod: u.reason for u in plan.unschedulable}


def only_reason(plan: Plan) -> str:
    texts = set(reasons(plan).values())
    assert len(texts) == 1, texts
    return texts.pop()


def assert_all_placed(plan: Plan, pending: Sequence[Pod]) -> None:
    assert plan.unschedulable == []
    assert sorted(where(plan)) == sorted(p.key for p in pending)


def existing_node(
    name: str,
    itype: str = C5_2X,
    zone: str = ZA,
    bound: Sequence[Pod] = (),
    **changes: Any,
) -> Node:
    labels = {
        LABEL_INSTANCE_TYPE: itype,
        LABEL_ZONE: zone,
        LABEL_HOSTNAME: name,
        LABEL_CAPACITY_TYPE: "spot",
        LABEL_NODEPOOL: "default",
        LABEL_INSTANCE_GROUP: f"spot-{zone[-1]}",
        **changes.pop("labels", {}),
    }
    allocatable = changes.pop("allocatable", CAT.get(itype).allocatable())
    bound_pods = [
        Pod(p.namespace, p.name, p.requests, labels=p.labels, node_name=name, phase="Running", **_extra(p))
        for p in bound
    ]
    return Node(name, labels, allocatable, pods=bound_pods, **changes)


def _extra(p: Pod) -> dict[str, Any]:
    return {"pod_anti_affinity": p.pod_anti_affinity, "gang": p.gang, "owner_kind": p.owner_kind}


def synthetic(name: str, vcpu: int, memory_mib: int, **changes: Any) -> InstanceSpec:
    base: dict[str, Any] = {
        "family": name.split(".")[1],
        "gpus": 0,
        "gpu_name": "",
        "gpu_memory_mib": 0,
        "neuron_devices": 0,
        "efa": 0,
        "max_pods": 110,
        "arch": "amd64",
        "on_demand_price": 1.0,
        "spot_price": 0.3,
    }
    base.update(changes)
    return InstanceSpec(name=name, vcpu=vcpu, memory_mib=memory_mib, **base)


# -- resources ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "fits", "too_big"),
    [
        ("cpu", C5_2X_ALLOC["cpu"], C5_2X_ALLOC["cpu"] + 1),
        ("memory", C5_2X_ALLOC["memory"], C5_2X_ALLOC["memory"] + 1),
        (EPHEMERAL_STORAGE, 80 * GI, 90 * GI),
    ],
)
def test_core_resource_requests(resource: str, fits: int, too_big: int) -> None:
    groups = [group("spot-a")]
    small = Pod("default", "fits", {"cpu": 100, resource: fits})
    plan = run([small], groups)
    assert_all_placed(plan, [small])
    assert plan.new_nodes[0].instance_type == C5_2X

    big = Pod("default", "big", {"cpu": 100, resource: too_big})
    plan = run([big], groups)
    assert plan.new_nodes == []
    reason = reasons(plan)["default/big"]
    assert "too large" in reason and f"{resource} " in reason and C5_2X in reason


@pytest.mark.parametrize(
    ("resource", "itype", "have"),
    [
        (NVIDIA_GPU, "ml.g5.12xlarge", 4),
        (EFA, "ml.p4d.24xlarge", 4),
        (NEURON, "ml.trn1.32xlarge", 16),
    ],
)
def test_device_requests(resource: str, itype: str, have: int) -> None:
    assert CAT.get(itype).allocatable()[resource] == have
    groups = [group("spot-cpu", C5_2X), group("spot-dev", itype)]
    device_pod = pod("dev", extra={resource: have})
    cpu_pod = pod("plain")
    plan = run([device_pod, cpu_pod], groups)
    assert_all_placed(plan, [device_pod, cpu_pod])
    assert new_node_of(plan, device_pod.key).instance_type == itype
    # The CPU-only pod does not ride on the expensive device node's spare CPU... unless it is free:
    # it is placed by price per pod, and packing fills the device node that is open anyway.
    assert len(plan.new_nodes) == 1

    greedy = pod("greedy", extra={resource: have + 1})
    plan = run([greedy], groups)
    assert plan.new_nodes == []
    reason = reasons(plan)[greedy.key]
    assert "too large" in reason and resource in reason


def test_device_pod_on_cpu_only_pool_names_the_device() -> None:
    gpu_pod = pod("gpu", extra={NVIDIA_GPU: 1})
    plan = run([gpu_pod], [group("spot-a")])
    assert plan.new_nodes == []
    assert f"{NVIDIA_GPU} 1 > 0" in reasons(plan)[gpu_pod.key]


def test_cpu_pods_prefer_cheaper_cpu_type_over_gpu_type() -> None:
    groups = [group("spot-gpu", "ml.g5.xlarge"), group("spot-cpu", C5_2X)]
    pending = pods("web", 10)
    plan = run(pending, groups)
    assert_all_placed(plan, pending)
    assert {n.instance_group for n in plan.new_nodes} == {"spot-cpu"}


def test_max_pods_limits_pods_per_node() -> None:
    max_pods = C5_2X_ALLOC["pods"]
    pending = pods("tiny", 100, cpu=10, memory=1 * MI)
    plan = run(pending, [group("spot-a")])
    assert_all_placed(plan, pending)
    assert sorted(len(n.pods) for n in plan.new_nodes) == [100 - max_pods, max_pods]


def test_no_pod_slots_left_after_daemonsets_is_unschedulable() -> None:
    catalogue = Catalogue.from_specs([synthetic("ml.tiny.large", 8, 32768, max_pods=2)])
    daemonsets = [
        Pod(
            "kube-system",
            f"ds-{i}",
            {"cpu": 10},
            owner_kind="DaemonSet",
            tolerations=(Toleration(operator="Exists"),),
        )
        for i in range(2)
    ]
    plan = run([pod("p")], [group("g", "ml.tiny.large")], catalogue=catalogue, daemonsets=daemonsets)
    assert plan.new_nodes == []
    assert "pod slots" in reasons(plan)["default/p"]

    plan = run([pod("p")], [group("g", "ml.tiny.large")], catalogue=catalogue, daemonsets=daemonsets[:1])
    assert [n.pods for n in plan.new_nodes] == [["default/p"]]


def test_daemonset_overhead_on_new_nodes() -> None:
    ds = Pod("kube-system", "agent", {"cpu": 500, "memory": 200 * MI}, owner_kind="DaemonSet")
    almost_full = pod("big", cpu=C5_2X_ALLOC["cpu"] - 100)
    only_small = [group("spot-a")]
    # Without the DaemonSet the pod fits an empty node...
    assert run([almost_full], only_small).unschedulable == []
    # ...with it, it does not, and the reason says why.
    plan = run([almost_full], only_small, daemonsets=[ds])
    assert plan.new_nodes == []
    reason = reasons(plan)[almost_full.key]
    assert "cpu" in reason and "DaemonSet" in reason
    # With a bigger type available, it goes there instead.
    plan = run([almost_full], [*only_small, group("spot-a-4x", "ml.c5.4xlarge")], daemonsets=[ds])
    assert new_node_of(plan, almost_full.key).instance_type == "ml.c5.4xlarge"
    # Planned allocatable is net of the overhead.
    assert plan.new_nodes[0].allocatable["cpu"] == CAT.get("ml.c5.4xlarge").allocatable()["cpu"] - 500
    assert plan.new_nodes[0].allocatable["pods"] == CAT.get("ml.c5.4xlarge").allocatable()["pods"] - 1


def test_daemonset_overhead_only_where_the_daemonset_runs() -> None:
    almost_full = pod("big", cpu=C5_2X_ALLOC["cpu"] - 100)
    groups = [group("spot-a", taints=(Taint("dedicated", "NoSchedule", "web"),))]
    tolerant = pod(
        "big", cpu=C5_2X_ALLOC["cpu"] - 100, tolerations=(Toleration("dedicated", "Equal", "web"),)
    )
    untolerating_ds = Pod("kube-system", "agent", {"cpu": 500}, owner_kind="DaemonSet")
    gpu_only_ds = Pod(
        "kube-system",
        "dcgm",
        {"cpu": 500},
        owner_kind="DaemonSet",
        node_selector={LABEL_INSTANCE_GPU_COUNT: "1"},
    )
    plan = run([tolerant], groups, daemonsets=[untolerating_ds, gpu_only_ds])
    assert_all_placed(plan, [tolerant])
    assert plan.new_nodes[0].allocatable["cpu"] == C5_2X_ALLOC["cpu"]
    assert almost_full.key == tolerant.key


# -- node selectors and required node affinity -------------------------------------------------


def test_node_selector_on_zone_and_group_label() -> None:
    groups = [*three_zone_groups(), group("team-ml", zone=ZA, labels=(("team", "ml"),))]
    zonal = pod("zonal", node_selector={LABEL_ZONE: ZB})
    team = pod("team", node_selector={"team": "ml"})
    plan = run([zonal, team], groups)
    assert_all_placed(plan, [zonal, team])
    assert new_node_of(plan, zonal.key).zone == ZB
    assert new_node_of(plan, team.key).instance_group == "team-ml"

    lost = pod("lost", node_selector={"team": "web"})
    plan = run([lost], groups)
    assert plan.new_nodes == []
    reason = reasons(plan)[lost.key]
    assert "incompatible" in reason and "team" in reason and "web" in reason


def test_node_selector_against_nodepool_requirements() -> None:
    pools = [pool("default", Requirement(LABEL_ZONE, "In", (ZA,)))]
    plan = run([pod("b", node_selector={LABEL_ZONE: ZB})], three_zone_groups(), pools)
    assert plan.new_nodes == []
    reason = only_reason(plan)
    assert f"NodePool default: requires {LABEL_ZONE} in [{ZB}]" in reason and ZA in reason


def affinity(*terms: Sequence[Requirement]) -> tuple[tuple[Requirement, ...], ...]:
    return tuple(tuple(t) for t in terms)


def mixed_groups() -> list[InstanceGroup]:
    return [
        group("gpu", "ml.g5.xlarge", ZA),
        group("small", "ml.c5.xlarge", ZB),
        group("large", C5_2X, ZC),
    ]


@pytest.mark.parametrize(
    ("requirement", "expected_group"),
    [
        (Requirement(LABEL_ZONE, "In", (ZB, ZC)), {"small", "large"}),
        (Requirement(LABEL_ZONE, "NotIn", (ZA, ZB)), {"large"}),
        (Requirement(LABEL_INSTANCE_GPU_NAME, "Exists"), {"gpu"}),
        (Requirement(LABEL_INSTANCE_GPU_COUNT, "DoesNotExist"), {"small", "large"}),
        (Requirement(LABEL_INSTANCE_CPU, "Gt", ("4",)), {"large"}),
        (Requirement(LABEL_INSTANCE_CPU, "Lt", ("8",)), {"gpu", "small"}),
    ],
)
def test_required_node_affinity_operators(requirement: Requirement, expected_group: set[str]) -> None:
    groups = mixed_groups()
    pending = pods("p", 4, cpu=500, node_affinity=affinity([requirement]))
    plan = run(pending, groups)
    assert_all_placed(plan, pending)
    assert {n.instance_group for n in plan.new_nodes} <= expected_group
    # Every group outside the expected set really is excluded: pin the pod to it and watch it fail.
    for other in {g.name for g in groups} - expected_group:
        pinned = pod(
            "pinned",
            cpu=500,
            node_affinity=affinity([requirement, Requirement(LABEL_INSTANCE_GROUP, "In", (other,))]),
        )
        blocked = run([pinned], groups)
        assert blocked.new_nodes == []
        assert (
            requirement.key in reasons(blocked)[pinned.key]
            or LABEL_INSTANCE_GROUP in reasons(blocked)[pinned.key]
        )


@pytest.mark.parametrize(
    "requirement",
    [
        Requirement(LABEL_ZONE, "In", ("us-west-2z",)),
        Requirement(LABEL_ZONE, "NotIn", (ZA, ZB, ZC)),
        Requirement("example.com/rack", "Exists"),
        Requirement(LABEL_INSTANCE_TYPE, "DoesNotExist"),
        Requirement(LABEL_INSTANCE_CPU, "Gt", ("64",)),
        Requirement(LABEL_INSTANCE_CPU, "Lt", ("2",)),
    ],
)
def test_required_node_affinity_unsatisfiable(requirement: Requirement) -> None:
    lost = pod("lost", node_affinity=affinity([requirement]))
    plan = run([lost], mixed_groups())
    assert plan.new_nodes == []
    reason = reasons(plan)[lost.key]
    assert reason.startswith("incompatible with every NodePool") and requirement.key in reason


def test_node_affinity_terms_are_ored() -> None:
    impossible = [Requirement(LABEL_ZONE, "In", ("us-west-2z",))]
    small_only = [Requirement(LABEL_INSTANCE_TYPE, "In", ("ml.c5.xlarge",))]
    either = pod("either", node_affinity=affinity(impossible, small_only))
    plan = run([either], mixed_groups())
    assert new_node_of(plan, either.key).instance_group == "small"

    neither = pod(
        "neither", node_affinity=affinity(impossible, [Requirement(LABEL_ZONE, "In", ("us-east-1a",))])
    )
    plan = run([neither], mixed_groups())
    assert plan.new_nodes == [] and neither.key in reasons(plan)


def test_node_affinity_and_node_selector_are_anded() -> None:
    contradicting = pod(
        "x",
        node_selector={LABEL_ZONE: ZA},
        node_affinity=affinity([Requirement(LABEL_ZONE, "In", (ZB,))]),
    )
    plan = run([contradicting], three_zone_groups())
    assert plan.new_nodes == [] and LABEL_ZONE in reasons(plan)[contradicting.key]


# -- taints and tolerations ---------------------------------------------------------------------

GPU_TAINT = Taint("dedicated", "NoSchedule", "gpu")


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        (None, False),
        (Toleration("dedicated", "Equal", "gpu", "NoSchedule"), True),
        (Toleration("dedicated", "Equal", "gpu"), True),
        (Toleration("dedicated", "Exists"), True),
        (Toleration(operator="Exists"), True),
        (Toleration("dedicated", "Equal", "cpu"), False),
        (Toleration("dedicated", "Equal", "gpu", "NoExecute"), False),
        (Toleration("other", "Exists"), False),
    ],
)
def test_nodepool_taints(toleration: Toleration | None, tolerated: bool) -> None:
    pools = [pool("gpu", taints=(GPU_TAINT,))]
    p = pod("p", tolerations=(toleration,) if toleration else ())
    plan = run([p], [group("spot-a")], pools)
    if tolerated:
        assert_all_placed(plan, [p])
    else:
        assert plan.new_nodes == []
        assert "does not tolerate taint dedicated=gpu:NoSchedule" in reasons(plan)[p.key]


def test_instance_group_taints_steer_pods() -> None:
    tainted = group("tainted", zone=ZA, taints=(GPU_TAINT,))
    plain = group("plain", zone=ZB)
    scores = {ZA: 9, ZB: 1}  # the tainted group ranks first
    tolerant = pod("tolerant", tolerations=(Toleration("dedicated", "Exists"),))
    intolerant = pod("intolerant", cpu=C5_2X_ALLOC["cpu"] - 500)
    plan = run([tolerant, intolerant], [tainted, plain], placement_scores=scores)
    assert_all_placed(plan, [tolerant, intolerant])
    assert new_node_of(plan, tolerant.key).instance_group == "tainted"
    assert new_node_of(plan, intolerant.key).instance_group == "plain"

    plan = run([intolerant], [tainted])
    assert "does not tolerate taint dedicated=gpu:NoSchedule" in reasons(plan)[intolerant.key]


def test_no_execute_taint_needs_a_matching_toleration() -> None:
    groups = [group("evicting", taints=(Taint("maintenance", "NoExecute"),))]
    wrong_effect = pod("wrong", tolerations=(Toleration("maintenance", "Exists", effect="NoSchedule"),))
    any_effect = pod("any", tolerations=(Toleration("maintenance", "Exists"),))
    right_effect = pod("right", tolerations=(Toleration("maintenance", "Exists", effect="NoExecute"),))
    plan = run([wrong_effect, any_effect, right_effect], groups)
    assert set(reasons(plan)) == {wrong_effect.key}
    assert "maintenance=:NoExecute" in reasons(plan)[wrong_effect.key]
    assert set(where(plan)) == {any_effect.key, right_effect.key}


def test_prefer_no_schedule_and_startup_taints_do_not_block() -> None:
    groups = [group("soft", taints=(Taint("soft", "PreferNoSchedule"),))]
    pools = [pool(startup_taints=(Taint("node.example.com/initialising", "NoSchedule"),))]
    p = pod("p")
    assert_all_placed(run([p], groups, pools), [p])


# -- topology spread ------------------------------------------------------------------------------

WEB = LabelSelector((("app", "web"),))


def zone_counts(plan: Plan, zone_of: dict[str, str] | None = None) -> Counter[str]:
    counts: Counter[str] = Counter()
    for node in plan.new_nodes:
        counts[node.zone] += len(node.pods)
    for name, keys in plan.existing.items():
        counts[(zone_of or {})[name]] += len(keys)
    return counts


def spread(key: str = LABEL_ZONE, skew: int = 1, when: str = "DoNotSchedule") -> TopologySpread:
    return TopologySpread(key, skew, when, WEB)  # type: ignore[arg-type]


@pytest.mark.parametrize(("count", "expected"), [(30, [10, 10, 10]), (31, [10, 10, 11]), (2, [0, 1, 1])])
def test_zone_spread_balances_and_packs(count: int, expected: list[int]) -> None:
    pending = pods("web", count, labels={"app": "web"}, topology_spread=(spread(),))
    plan = run(pending, three_zone_groups(), placement_scores={ZA: 2, ZB: 9, ZC: 5})
    assert_all_placed(plan, pending)
    counts = zone_counts(plan)
    assert sorted(counts[z] for z in (ZA, ZB, ZC)) == expected
    if count == 2:
        assert set(counts) == {ZB, ZC}  # the best-scored zones first
    # Balanced, but still packed: no more nodes than each zone's share needs.
    per_node = C5_2X_ALLOC["cpu"] // 1000
    assert len(plan.new_nodes) == sum(math.ceil(n / per_node) for n in counts.values())


def test_zone_spread_counts_pods_already_running() -> None:
    running = existing_node(
        "full-a", zone=ZA, bound=[pod(f"old-{i}", cpu=3900, labels={"app": "web"}) for i in range(2)]
    )
    pending = pods("web", 4, labels={"app": "web"}, topology_spread=(spread(),))
    plan = run(pending, three_zone_groups(), nodes=[running])
    assert_all_placed(plan, pending)
    counts = zone_counts(plan)
    assert counts[ZA] == 0 and counts[ZB] == 2 and counts[ZC] == 2


def test_zone_spread_do_not_schedule_vs_schedule_anyway() -> None:
    # Zone b exists (a full node runs there) but new nodes can only go to zone a.
    full_b = existing_node("full-b", zone=ZB, bound=[pod("filler", cpu=C5_2X_ALLOC["cpu"])])
    groups = [group("spot-a", zone=ZA)]
    strict = pods("web", 3, labels={"app": "web"}, topology_spread=(spread(),))
    plan = run(strict, groups, nodes=[full_b])
    assert len(where(plan)) == 1
    assert len(plan.unschedulable) == 2
    assert all("topology spread" in r for r in reasons(plan).values())

    relaxed = pods("web", 3, labels={"app": "web"}, topology_spread=(spread(when="ScheduleAnyway"),))
    plan = run(relaxed, groups, nodes=[full_b])
    assert_all_placed(plan, relaxed)
    assert len(plan.new_nodes) == 1


@pytest.mark.parametrize(("min_domains", "placed"), [(1, 6), (3, 6), (4, 3)])
def test_zone_spread_min_domains(min_domains: int, placed: int) -> None:
    """With fewer eligible zones (3) than minDomains, each zone takes at most maxSkew matching pods."""
    constraint = replace(spread(), min_domains=min_domains)
    pending = pods("web", 6, labels={"app": "web"}, topology_spread=(constraint,))
    plan = run(pending, three_zone_groups())
    assert len(where(plan)) == placed
    assert sorted(zone_counts(plan).values()) == [placed // 3] * 3
    assert all("topology spread" in r for r in reasons(plan).values())


def test_schedule_anyway_spreads_while_it_can() -> None:
    # Karpenter tries a ScheduleAnyway spread as DoNotSchedule first (issue 12.2): with room in every
    # zone, the pods are balanced even though zone a scores best.
    pending = pods("web", 30, labels={"app": "web"}, topology_spread=(spread(when="ScheduleAnyway"),))
    plan = run(pending, three_zone_groups(), placement_scores={ZA: 9})
    assert_all_placed(plan, pending)
    per_zone = Counter(n.zone for n in plan.new_nodes for _ in n.pods)
    assert sorted(per_zone.values()) == [10, 10, 10]


@pytest.mark.parametrize("skew", [1, 2, 3])
def test_hostname_spread(skew: int) -> None:
    web = pods("web", 7, labels={"app": "web"}, topology_spread=(spread(LABEL_HOSTNAME, skew),))
    others = pods("other", 7)
    plan = run([*web, *others], [group("spot-a")])
    assert_all_placed(plan, [*web, *others])
    per_node = [sum(1 for k in n.pods if "web" in k) for n in plan.new_nodes]
    assert max(per_node) <= skew
    assert len(plan.new_nodes) == max(math.ceil(7 / skew), 2)


# -- pod affinity and anti-affinity ------------------------------------------------------------


def anti(key: str, app: str = "db") -> tuple[PodAffinityTerm, ...]:
    return (PodAffinityTerm(key, LabelSelector((("app", app),))),)


def test_hostname_anti_affinity_one_per_node() -> None:
    db = pods("db", 5, labels={"app": "db"}, pod_anti_affinity=anti(LABEL_HOSTNAME))
    filler = pods("filler", 20)
    plan = run([*db, *filler], [group("spot-a")])
    assert_all_placed(plan, [*db, *filler])
    per_node = [sum(1 for k in n.pods if "/db-" in k) for n in plan.new_nodes]
    assert sorted(per_node) == [1, 1, 1, 1, 1]
    assert len(plan.new_nodes) == 5  # the fillers share the db nodes


def test_hostname_anti_affinity_against_running_pods_both_ways() -> None:
    holder = existing_node(
        "holder", bound=[pod("db-old", labels={"app": "db"}, pod_anti_affinity=anti(LABEL_HOSTNAME, "web"))]
    )
    web = pod("web", labels={"app": "web"})
    plan = run([web], [group("spot-a")], nodes=[holder])
    assert plan.existing == {} and len(plan.new_nodes) == 1

    peaceful = existing_node("holder", bound=[pod("db-old", labels={"app": "db"})])
    db = pod("db", labels={"app": "db"}, pod_anti_affinity=anti(LABEL_HOSTNAME))
    plan = run([db], [group("spot-a")], nodes=[peaceful])
    assert plan.existing == {} and len(plan.new_nodes) == 1
    plan = run([web], [group("spot-a")], nodes=[peaceful])
    assert plan.existing == {"holder": [web.key]} and plan.new_nodes == []


def test_anti_affinity_of_pods_nominated_to_in_flight_nodes() -> None:
    flight = InFlightNode(
        "i-flight",
        "default",
        "spot-a",
        C5_2X,
        ZA,
        SPOT,
        pods=[pod("db-old", labels={"app": "db"}, pod_anti_affinity=anti(LABEL_HOSTNAME, "web"))],
    )
    web = pod("web", labels={"app": "web"})
    plan = run([web], [group("spot-a")], inflight=[flight])
    assert plan.inflight == {} and len(plan.new_nodes) == 1


def test_zone_anti_affinity_one_per_zone() -> None:
    db = pods("db", 4, labels={"app": "db"}, pod_anti_affinity=anti(LABEL_ZONE))
    plan = run(db, three_zone_groups())
    assert len(plan.new_nodes) == 3
    assert sorted(n.zone for n in plan.new_nodes) == [ZA, ZB, ZC]
    assert len(plan.unschedulable) == 1
    assert "anti-affinity" in only_reason(plan)


def test_zone_affinity_follows_running_pods() -> None:
    cache_node = existing_node(
        "cache-b", zone=ZB, bound=[pod("cache", cpu=C5_2X_ALLOC["cpu"], labels={"app": "cache"})]
    )
    web = pods("web", 10, pod_affinity=anti(LABEL_ZONE, "cache"))
    plan = run(web, three_zone_groups(), nodes=[cache_node], placement_scores={ZA: 9})
    assert_all_placed(plan, web)
    assert {n.zone for n in plan.new_nodes} == {ZB}


def test_zone_affinity_to_pods_of_the_same_batch() -> None:
    cache = pods("cache", 2, cpu=100, labels={"app": "cache"}, node_selector={LABEL_ZONE: ZC})
    web = pods("web", 4, cpu=4000, pod_affinity=anti(LABEL_ZONE, "cache"))
    plan = run([*web, *cache], three_zone_groups(), placement_scores={ZA: 9})
    assert_all_placed(plan, [*web, *cache])
    assert {n.zone for n in plan.new_nodes} == {ZC}


def test_self_affinity_keeps_a_group_in_one_zone() -> None:
    team = pods("team", 20, labels={"app": "team"}, pod_affinity=anti(LABEL_ZONE, "team"))
    plan = run(team, three_zone_groups())
    assert_all_placed(plan, team)
    assert len({n.zone for n in plan.new_nodes}) == 1


def test_affinity_to_missing_pods_is_unschedulable() -> None:
    web = pod("web", pod_affinity=anti(LABEL_ZONE, "nowhere"))
    plan = run([web], three_zone_groups())
    assert plan.new_nodes == []
    assert "pod affinity" in reasons(plan)[web.key]


# -- NodePools: limits, weights, NodeClass order ---------------------------------------------


def test_nodepool_cpu_limit() -> None:
    capacity_cpu = CAT.get(C5_2X).capacity()["cpu"]
    pools = [pool(limits=(("cpu", 2 * capacity_cpu),))]
    pending = pods("web", 30)
    plan = run(pending, [group("spot-a")], pools)
    assert len(plan.new_nodes) == 2
    assert len(where(plan)) == 14 and len(plan.unschedulable) == 16
    assert only_reason(plan) == "NodePool limits reached for default"


def test_nodepool_node_limit_counts_existing_and_in_flight_nodes() -> None:
    pools = [pool(limits=(("nodes", 2),))]
    full = existing_node("full", bound=[pod("filler", cpu=C5_2X_ALLOC["cpu"])])
    flight = InFlightNode(
        "i-1", "default", "spot-a", C5_2X, ZA, SPOT, pods=[pod("nominated", cpu=C5_2X_ALLOC["cpu"])]
    )
    plan = run(pods("web", 3), [group("spot-a")], pools, nodes=[full], inflight=[flight])
    assert plan.new_nodes == []
    assert only_reason(plan) == "NodePool limits reached for default"
    plan = run(pods("web", 3), [group("spot-a")], pools, nodes=[full])
    assert len(plan.new_nodes) == 1


def test_higher_weight_pool_wins_then_falls_back_at_its_limit() -> None:
    groups = three_zone_groups()
    pools = [
        pool("cheap", Requirement(LABEL_ZONE, "In", (ZA,))),
        pool("preferred", Requirement(LABEL_ZONE, "In", (ZC,)), weight=50, limits=(("nodes", 1),)),
    ]
    scores = {ZA: 10, ZC: 1}
    plan = run(pods("web", 7), groups, pools, placement_scores=scores)
    assert [(n.node_pool, n.zone) for n in plan.new_nodes] == [("preferred", ZC)]
    plan = run(pods("web", 10), groups, pools, placement_scores=scores)
    assert sorted((n.node_pool, n.zone, len(n.pods)) for n in plan.new_nodes) == [
        ("cheap", ZA, 3),
        ("preferred", ZC, 7),
    ]


@pytest.mark.parametrize("order", [("first", "second"), ("second", "first")])
def test_nodeclass_order_breaks_ties(order: tuple[str, str]) -> None:
    groups = [group("first"), group("second")]
    plan = run(pods("web", 3), groups, classes=[NodeClass("nc", order)])
    assert {n.instance_group for n in plan.new_nodes} == {order[0]}


# -- ranking -------------------------------------------------------------------------------------


def test_spot_ranked_by_placement_score_by_zone_name() -> None:
    groups = three_zone_groups()
    for best in (ZA, ZB, ZC):
        scores = {z: (9 if z == best else 3) for z in (ZA, ZB, ZC)}
        plan = run(pods("web", 3), groups, placement_scores=scores)
        assert {n.zone for n in plan.new_nodes} == {best}


def test_spot_ranked_by_placement_score_by_zone_id() -> None:
    plan = run(pods("web", 3), three_zone_groups(), placement_scores={ZONE_IDS[ZC]: 8, ZONE_IDS[ZA]: 2})
    assert {n.zone for n in plan.new_nodes} == {ZC}


def test_placement_score_beats_price_and_price_breaks_score_ties() -> None:
    groups = [group("m5-a", "ml.m5.2xlarge", ZA), group("c5-a", C5_2X, ZA), group("c5-b", C5_2X, ZB)]
    assert CAT.get("ml.m5.2xlarge").spot_price > CAT.get(C5_2X).spot_price
    plan = run(pods("web", 3), groups, placement_scores={ZA: 9, ZB: 2})
    assert {n.instance_group for n in plan.new_nodes} == {"c5-a"}  # m5 is listed first but costs more
    plan = run(pods("web", 3), [groups[0], groups[2]], placement_scores={ZA: 9, ZB: 2})
    assert {n.instance_group for n in plan.new_nodes} == {"m5-a"}  # the better zone, though pricier


def test_price_is_per_pod_not_per_node() -> None:
    # 3 pods of 2.5 CPU: one c5.2xlarge (3 pods, 0.1428/h) beats two c5.xlarge (1 pod each).
    groups = [group("x", "ml.c5.xlarge"), group("2x", C5_2X)]
    plan = run(pods("web", 3, cpu=2500), groups)
    assert [n.instance_group for n in plan.new_nodes] == ["2x"]


def test_on_demand_only_as_fallback() -> None:
    groups = [group("od-a", zone=ZA, capacity=ON_DEMAND), group("spot-b", zone=ZB)]
    plan = run(pods("web", 3), groups, placement_scores={ZA: 10})
    assert {(n.instance_group, n.capacity_type) for n in plan.new_nodes} == {("spot-b", SPOT)}
    plan = run(pods("web", 3), groups, unavailable={("spot-b", ZB): "InsufficientCapacity"})
    assert {(n.instance_group, n.capacity_type) for n in plan.new_nodes} == {("od-a", ON_DEMAND)}


def test_spot_before_cheaper_on_demand() -> None:
    cheap_on_demand = CAT.with_prices({C5_2X: PriceOverride(on_demand=0.01)})
    groups = [group("od-a", zone=ZA, capacity=ON_DEMAND), group("spot-a", zone=ZA)]
    plan = run(pods("web", 3), groups, catalogue=cheap_on_demand)
    assert plan.nodes_by_group() == {"spot-a": 1}


def test_unavailable_offerings_are_skipped_and_named() -> None:
    groups = three_zone_groups()
    unavailable = {("spot-a", ZA): "ICE"}
    plan = run(pods("web", 3), groups, placement_scores={ZA: 9, ZB: 5}, unavailable=unavailable)
    assert {n.zone for n in plan.new_nodes} == {ZB}
    everything = {(g.name, g.zones[0]): "ICE" for g in groups}
    plan = run(pods("web", 3), groups, unavailable=everything)
    assert plan.new_nodes == []
    reason = only_reason(plan)
    assert "out of capacity" in reason and "spot-a in us-west-2a: ICE" in reason


def test_no_nodepool_or_no_usable_group_is_explained() -> None:
    plan = run([pod("p")], [group("spot-a")], pools=[])
    assert only_reason(plan) == "no NodePool is configured"
    plan = run([pod("p")], [group("spot-a", status="Failed")])
    assert "instance group" in only_reason(plan)


# -- existing and in-flight nodes -----------------------------------------------------------


def test_existing_nodes_before_new_ones_fullest_first() -> None:
    emptier = existing_node("emptier", bound=[pod("a", cpu=1000)])
    fuller = existing_node("fuller", bound=[pod("b", cpu=5000)])
    plan = run(pods("web", 2), [group("spot-a")], nodes=[emptier, fuller])
    assert plan.new_nodes == []
    assert plan.existing == {"fuller": ["default/web-000", "default/web-001"]}
    plan = run(pods("web", 9), [group("spot-a")], nodes=[emptier, fuller])
    assert len(plan.existing["fuller"]) == 2 and len(plan.existing["emptier"]) == 6
    assert [len(n.pods) for n in plan.new_nodes] == [1]


def test_existing_nodes_count_their_bound_pods() -> None:
    busy = existing_node("busy", bound=[pod(f"b{i}") for i in range(7)])  # 7 of 7.91 CPUs
    plan = run(pods("web", 1), [group("spot-a")], nodes=[busy])
    assert plan.existing == {} and len(plan.new_nodes) == 1

    slots = dict(C5_2X_ALLOC, pods=3)
    crowded = existing_node(
        "crowded", bound=[pod(f"t{i}", cpu=10, memory=MI) for i in range(3)], allocatable=slots
    )
    plan = run(pods("web", 1, cpu=10, memory=MI), [group("spot-a")], nodes=[crowded])
    assert plan.existing == {} and len(plan.new_nodes) == 1
    roomy = existing_node(
        "roomy", bound=[pod(f"t{i}", cpu=10, memory=MI) for i in range(2)], allocatable=slots
    )
    plan = run(pods("web", 2, cpu=10, memory=MI), [group("spot-a")], nodes=[roomy])
    assert plan.existing == {"roomy": ["default/web-000"]} and len(plan.new_nodes) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"unschedulable": True},
        {"ready": False},
        {"taints": (Taint("maintenance", "NoSchedule"),)},
        {"taints": (Taint("maintenance", "NoExecute"),)},
    ],
    ids=["cordoned", "not-ready", "no-schedule", "no-execute"],
)
def test_unusable_existing_nodes_are_avoided(changes: dict[str, Any]) -> None:
    bad = existing_node("bad", **changes)
    plan = run(pods("web", 2), [group("spot-a")], nodes=[bad])
    assert plan.existing == {} and len(plan.new_nodes) == 1


def test_tolerated_taint_on_existing_node_is_used() -> None:
    tainted = existing_node("tainted", taints=(Taint("maintenance", "NoSchedule"),))
    web = pod("web", tolerations=(Toleration("maintenance", "Exists"),))
    plan = run([web], [group("spot-a")], nodes=[tainted])
    assert plan.existing == {"tainted": [web.key]} and plan.new_nodes == []


def test_existing_node_labels_checked_against_selectors() -> None:
    in_b = existing_node("in-b", zone=ZB)
    plan = run([pod("web", node_selector={LABEL_ZONE: ZA})], [group("spot-a")], nodes=[in_b])
    assert plan.existing == {} and len(plan.new_nodes) == 1
    plan = run([pod("web", node_selector={LABEL_ZONE: ZB})], [group("spot-a")], nodes=[in_b])
    assert plan.existing == {"in-b": ["default/web"]}


def test_in_flight_nodes_before_new_ones() -> None:
    flight = InFlightNode("i-1", "default", "spot-a", C5_2X, ZA, SPOT, pods=[pod("nominated", cpu=3000)])
    pending = pods("web", 6)
    plan = run(pending, [group("spot-a")], inflight=[flight])
    assert plan.inflight == {"i-1": [p.key for p in pending[:4]]}
    assert [len(n.pods) for n in plan.new_nodes] == [2]


def test_existing_before_in_flight() -> None:
    node = existing_node("node")
    flight = InFlightNode("i-1", "default", "spot-a", C5_2X, ZA, SPOT)
    plan = run(pods("web", 3), [group("spot-a")], nodes=[node], inflight=[flight])
    assert set(plan.existing) == {"node"} and plan.inflight == {} and plan.new_nodes == []


def test_planned_names_do_not_collide_with_in_flight_or_existing_nodes() -> None:
    flight = InFlightNode("spot-a-0001", "default", "spot-a", C5_2X, ZA, SPOT, pods=[pod("old", cpu=7000)])
    node = existing_node("spot-a-0002", bound=[pod("old2", cpu=7000)])
    plan = run(pods("web", 8, cpu=3500), [group("spot-a")], inflight=[flight], nodes=[node])
    names = [n.name for n in plan.new_nodes]
    assert len(names) == 4 and len(set(names)) == 4
    assert not {"spot-a-0001", "spot-a-0002"} & set(names)


# -- gangs ------------------------------------------------------------------------------------


def gang_pods(name: str, count: int, min_member: int | None = None, **changes: Any) -> list[Pod]:
    gang = Gang(name, count if min_member is None else min_member)
    return pods(name, count, gang=gang, **changes)


def test_gang_placed_in_one_zone() -> None:
    members = gang_pods("train", 6, cpu=3000, labels={"app": "train"})
    plan = run(members, three_zone_groups(), placement_scores={ZB: 9})
    assert_all_placed(plan, members)
    assert {n.zone for n in plan.new_nodes} == {ZB} and len(plan.new_nodes) == 3


def test_gang_with_different_shapes_shares_a_zone() -> None:
    gang = Gang("mixed", 4)
    members = [
        pod("leader", cpu=6000, gang=gang),
        *[pod(f"worker-{i}", cpu=2000, gang=gang) for i in range(3)],
    ]
    plan = run(members, three_zone_groups())
    assert_all_placed(plan, members)
    assert len({n.zone for n in plan.new_nodes}) == 1


def test_gang_moves_to_the_next_zone_and_leaves_nothing_behind() -> None:
    # Zone a ranks first but has no GPU type: the CPU members fit there, the GPU member does not.
    groups = [
        group("small-a", "ml.c5.xlarge", ZA),
        group("cpu-b", C5_2X, ZB),
        group("gpu-b", "ml.g5.xlarge", ZB),
    ]
    gang = Gang("train", 3)
    members = [pod("cpu-0", cpu=3000, gang=gang), pod("cpu-1", cpu=3000, gang=gang)]
    members.append(pod("gpu", cpu=500, gang=gang, extra={NVIDIA_GPU: 1}))
    plan = run(members, groups, placement_scores={ZA: 9, ZB: 1})
    assert_all_placed(plan, members)
    assert {n.zone for n in plan.new_nodes} == {ZB}
    assert new_node_of(plan, "default/gpu").instance_group == "gpu-b"
    assert len(plan.new_nodes) == 2


def test_gang_too_big_for_any_zone_places_nothing() -> None:
    # Zones a and b each have room for two members on existing nodes; no new nodes can be made.
    nodes = [existing_node(f"node-{z[-1]}", zone=z) for z in (ZA, ZB)]
    members = gang_pods("train", 4, cpu=3500)
    groups = three_zone_groups()
    ice = {(g.name, g.zones[0]): "ICE" for g in groups}
    plan = run(members, groups, nodes=nodes, unavailable=ice)
    assert plan.existing == {} and plan.new_nodes == []
    assert sorted(reasons(plan)) == sorted(p.key for p in members)
    assert "single availability zone" in only_reason(plan)
    # A gang of two fits one zone's existing node.
    plan = run(gang_pods("train", 2, cpu=3500), groups, nodes=nodes, unavailable=ice)
    assert plan.unschedulable == [] and len(plan.existing) == 1


def test_gang_rollback_frees_nodes_and_limits() -> None:
    pools = [pool(limits=(("nodes", 1),))]
    members = gang_pods("train", 2, cpu=7000)
    loner = pod("loner", cpu=500)
    plan = run([*members, loner], [group("spot-a")], pools)
    assert sorted(reasons(plan)) == sorted(p.key for p in members)
    # The gang's tentative node was rolled back; the loner gets the one node the limit allows.
    assert [n.pods for n in plan.new_nodes] == [[loner.key]]
    assert plan.new_nodes[0].name == "spot-a-0001"


def test_incomplete_gang_waits() -> None:
    members = gang_pods("train", 3, min_member=4)
    plan = run(members, three_zone_groups())
    assert plan.new_nodes == []
    assert sorted(reasons(plan)) == sorted(p.key for p in members)
    assert "incomplete" in only_reason(plan) and "3 of 4" in only_reason(plan)


def test_gang_counts_running_members_and_joins_their_zone() -> None:
    gang = Gang("train", 4)
    running = existing_node("busy-c", zone=ZC, bound=[pod("train-old", cpu=C5_2X_ALLOC["cpu"], gang=gang)])
    members = gang_pods("train", 3, min_member=4)
    plan = run(members, three_zone_groups(), nodes=[running], placement_scores={ZA: 9})
    assert_all_placed(plan, members)
    assert {n.zone for n in plan.new_nodes} == {ZC}


def test_gang_with_an_incompatible_member_explains_it() -> None:
    gang = Gang("train", 3)
    members = [pod(f"w{i}", gang=gang) for i in range(2)]
    members.append(pod("odd", gang=gang, node_selector={"example.com/rack": "r1"}))
    plan = run(members, three_zone_groups())
    assert plan.new_nodes == []
    assert sorted(reasons(plan)) == sorted(p.key for p in members)
    assert "example.com/rack" in only_reason(plan)


def test_gang_nodes_are_shared_with_other_pods() -> None:
    members = gang_pods("train", 2, cpu=3000)
    others = pods("web", 3)
    plan = run([*members, *others], [group("spot-a")])
    assert_all_placed(plan, [*members, *others])
    assert len(plan.new_nodes) == 2  # 6 + 3 CPUs on two 7.91-CPU nodes


# -- the seed acceptance case -------------------------------------------------------------------


def seed_inputs() -> tuple[list[InstanceGroup], NodePool, NodeClass]:
    groups = [
        InstanceGroup("auto-spot-c5-2x-az1", (C5_2X,), SPOT, (ZA,), ("usw2-az2",)),
        InstanceGroup("auto-spot-c5-2x-az2", (C5_2X,), SPOT, (ZB,), ("usw2-az1",)),
        InstanceGroup("auto-spot-c5-x-az3", ("ml.c5.xlarge",), SPOT, (ZC,), ("usw2-az3",)),
        InstanceGroup("auto-ondemand-c5-2x-az1", (C5_2X,), ON_DEMAND, (ZA,), ("usw2-az2",)),
    ]
    node_class = NodeClass("multiazg6", tuple(g.name for g in groups))
    node_pool = NodePool(
        "gpunodepool",
        "multiazg6",
        (
            Requirement(LABEL_INSTANCE_TYPE, "Exists"),
            Requirement(LABEL_INSTANCE_TYPE, "In", (C5_2X,)),
            Requirement(LABEL_ZONE, "In", (ZA,)),
        ),
        expire_after_seconds=None,
    )
    return groups, node_pool, node_class


def seed_pods() -> list[Pod]:
    return [
        Pod(
            "default",
            f"inflate-{i}",
            {"cpu": 1000, "memory": 256 * 10**6},
            labels={"app": "inflate"},
            owner_kind="ReplicaSet",
        )
        for i in range(30)
    ]


@pytest.mark.parametrize("scores", [{}, {ZA: 9, ZB: 6}, {ZB: 10}])
def test_seed_plans_spot_in_us_west_2a(scores: dict[str, float]) -> None:
    groups, node_pool, node_class = seed_inputs()
    pending = seed_pods()
    plan = run(pending, groups, [node_pool], [node_class], placement_scores=scores)
    assert_all_placed(plan, pending)
    assert plan.nodes_by_group() == {"auto-spot-c5-2x-az1": 5}
    assert {(n.zone, n.capacity_type, n.instance_type) for n in plan.new_nodes} == {(ZA, SPOT, C5_2X)}
    assert sorted(len(n.pods) for n in plan.new_nodes) == [2, 7, 7, 7, 7]


def test_seed_falls_back_to_on_demand_then_explains() -> None:
    groups, node_pool, node_class = seed_inputs()
    pending = seed_pods()
    ice = {("auto-spot-c5-2x-az1", ZA): "InsufficientCapacity"}
    plan = run(pending, groups, [node_pool], [node_class], unavailable=ice)
    assert_all_placed(plan, pending)
    assert plan.nodes_by_group() == {"auto-ondemand-c5-2x-az1": 5}
    assert {n.capacity_type for n in plan.new_nodes} == {ON_DEMAND}

    both = {**ice, ("auto-ondemand-c5-2x-az1", ZA): "InsufficientCapacity"}
    plan = run(pending, groups, [node_pool], [node_class], unavailable=both)
    assert plan.new_nodes == [] and len(plan.unschedulable) == 30
    reason = only_reason(plan)
    assert (
        "out of capacity" in reason
        and "auto-ondemand-c5-2x-az1" in reason
        and "auto-spot-c5-2x-az1" in reason
    )
