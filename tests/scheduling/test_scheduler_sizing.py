"""Choosing what a new node is: right-sizing after packing, splitting onto cheaper nodes, and the
packer's run placement (each run is what one-at-a-time placement would have done)."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hpscaler.catalogue import Catalogue, InstanceSpec, PriceOverride, load_catalogue
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_INSTANCE_TYPE,
    LABEL_ZONE,
    PODS_RESOURCE,
    CapacityType,
    InstanceGroup,
    LabelSelector,
    NodeClass,
    NodePool,
    Pod,
    PodAffinityTerm,
    TopologySpread,
)
from hpscaler.quantity import NVIDIA_GPU
from hpscaler.scheduling.packing import choose_run
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import Plan, SchedulingInput

CAT = load_catalogue()
MI = 2**20
GI = 2**30
ZA, ZB = "us-west-2a", "us-west-2b"
SPOT, ON_DEMAND = CapacityType.SPOT, CapacityType.ON_DEMAND


def group(name: str, itype: str, zone: str = ZA, capacity: CapacityType = SPOT) -> InstanceGroup:
    return InstanceGroup(name, (itype,), capacity, (zone,))


def pod(name: str, cpu: int = 1000, memory: int = 256 * MI, **changes: Any) -> Pod:
    extra = changes.pop("extra", {})
    return Pod("default", name, {"cpu": cpu, "memory": memory, **extra}, owner_kind="ReplicaSet", **changes)


def run(pending: Sequence[Pod], groups: Sequence[InstanceGroup], **changes: Any) -> Plan:
    pool = changes.pop("pool", NodePool("default", "nc"))
    return solve(
        SchedulingInput(
            pods=pending,
            node_pools=[pool],
            node_classes=[NodeClass("nc", tuple(g.name for g in groups))],
            groups=groups,
            catalogue=changes.pop("catalogue", CAT),
            **changes,
        )
    )


def placed(plan: Plan) -> list[str]:
    return sorted(k for n in plan.new_nodes for k in n.pods)


def gpu_spec(name: str, vcpu: int, memory_gib: int, gpus: int, spot: float) -> InstanceSpec:
    return InstanceSpec(
        name=name,
        family=name.split(".")[1],
        vcpu=vcpu,
        memory_mib=memory_gib * 1024,
        gpus=gpus,
        gpu_name="test",
        gpu_memory_mib=gpus * 1024,
        neuron_devices=0,
        efa=0,
        max_pods=110,
        arch="amd64",
        on_demand_price=spot * 3,
        spot_price=spot,
    )


# Per pod of a memory-heavy 1-GPU pod, the 8-GPU type is the cheaper (8 fit at 1.0 each, against one
# per 4-GPU node at 1.5); for anything else it costs far more per GPU.
GPU_CAT = Catalogue.from_specs(
    [gpu_spec("ml.big.x", 64, 1024, 8, 8.0), gpu_spec("ml.small.x", 16, 64, 4, 1.5)]
)


def gpu_pod(name: str, gpus: int, memory_gib: int) -> Pod:
    return pod(name, cpu=1000, memory=memory_gib * GI, extra={NVIDIA_GPU: gpus})


# -- right-sizing --------------------------------------------------------------------------------


def test_node_is_resized_to_the_cheapest_type_that_holds_its_pods() -> None:
    # Per pod, a c5.4xlarge (15 one-CPU pods) beats a c5.xlarge (3); three pods need only the xlarge.
    groups = [group("big", "ml.c5.4xlarge"), group("small", "ml.c5.xlarge")]
    pending = [pod(f"web-{i}") for i in range(3)]
    plan = run(pending, groups)
    assert [(n.instance_group, n.instance_type) for n in plan.new_nodes] == [("small", "ml.c5.xlarge")]
    assert placed(plan) == sorted(p.key for p in pending)
    assert math.isclose(plan.cost_per_hour, CAT.get("ml.c5.xlarge").spot_price)
    assert plan.new_nodes[0].name.startswith("small-")
    assert plan.new_nodes[0].allocatable == CAT.get("ml.c5.xlarge").allocatable()


def test_full_node_keeps_its_type() -> None:
    groups = [group("big", "ml.c5.4xlarge"), group("small", "ml.c5.xlarge")]
    plan = run([pod(f"web-{i:02d}") for i in range(15)], groups)
    assert [n.instance_type for n in plan.new_nodes] == ["ml.c5.4xlarge"]


def test_resize_keeps_capacity_type_zone_and_node_selector() -> None:
    cheap_od = CAT.with_prices({"ml.c5.xlarge": PriceOverride(on_demand=0.001)})
    pending = [pod(f"web-{i}") for i in range(3)]
    # Never from Spot to On-Demand, and never to another zone, however cheap.
    groups = [group("big", "ml.c5.4xlarge"), group("od-small", "ml.c5.xlarge", capacity=ON_DEMAND)]
    plan = run(pending, groups, catalogue=cheap_od)
    assert [n.instance_type for n in plan.new_nodes] == ["ml.c5.4xlarge"]
    groups = [group("big", "ml.c5.4xlarge", ZA), group("small-b", "ml.c5.xlarge", ZB)]
    plan = run(pending, groups, placement_scores={ZA: 9, ZB: 9})
    assert [(n.instance_type, n.zone) for n in plan.new_nodes] == [("ml.c5.4xlarge", ZA)]
    # Not to a type the pods' node selector excludes.
    pinned = [pod(f"web-{i}", node_selector={LABEL_INSTANCE_TYPE: "ml.c5.4xlarge"}) for i in range(3)]
    plan = run(pinned, [group("big", "ml.c5.4xlarge"), group("small", "ml.c5.xlarge")])
    assert [n.instance_type for n in plan.new_nodes] == ["ml.c5.4xlarge"]


def test_resize_skips_unavailable_offerings() -> None:
    groups = [group("big", "ml.c5.4xlarge"), group("small", "ml.c5.xlarge"), group("mid", "ml.c5.2xlarge")]
    plan = run([pod(f"web-{i}") for i in range(3)], groups, unavailable={("small", ZA): "ICE"})
    assert [n.instance_type for n in plan.new_nodes] == ["ml.c5.2xlarge"]


def test_resize_respects_topology_spread_across_zones() -> None:
    groups = [
        group("big-a", "ml.c5.4xlarge", ZA),
        group("small-a", "ml.c5.xlarge", ZA),
        group("big-b", "ml.c5.4xlarge", ZB),
        group("small-b", "ml.c5.xlarge", ZB),
    ]
    constraint = TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", LabelSelector(match_labels=(("app", "s"),)))
    pending = [pod(f"s-{i}", labels={"app": "s"}, topology_spread=(constraint,)) for i in range(4)]
    plan = run(pending, groups)
    zones = Counter(n.zone for n in plan.new_nodes for _ in n.pods)
    assert zones == {ZA: 2, ZB: 2}
    assert {n.instance_type for n in plan.new_nodes} == {"ml.c5.xlarge"}


# -- splitting onto cheaper nodes ------------------------------------------------------------------


def test_small_gpu_pods_go_to_cheaper_nodes_than_the_one_opened_for_them() -> None:
    # The memory-heavy 1-GPU pods alone would be cheapest on "big" (8 per node); with the 2-GPU pods
    # that fill it, three "small" nodes (4.5/h) hold everything for less than one "big" (8/h).
    groups = [group("big", "ml.big.x"), group("small", "ml.small.x")]
    pending = [gpu_pod(f"heavy-{i}", 1, 40) for i in range(2)] + [gpu_pod(f"duo-{i}", 2, 4) for i in range(3)]
    plan = run(pending, groups, catalogue=GPU_CAT)
    assert placed(plan) == sorted(p.key for p in pending)
    assert Counter(n.instance_type for n in plan.new_nodes) == {"ml.small.x": 3}
    assert math.isclose(plan.cost_per_hour, 4.5)


def test_a_node_that_one_cheaper_node_holds_is_not_split() -> None:
    groups = [group("big", "ml.big.x"), group("small", "ml.small.x")]
    pending = [gpu_pod(f"duo-{i}", 2, 4) for i in range(4)]
    plan = run(pending, groups, catalogue=GPU_CAT)
    assert Counter(n.instance_type for n in plan.new_nodes) == {"ml.small.x": 2}


def test_eight_gpu_pods_stay_on_eight_gpu_nodes() -> None:
    groups = [group("big", "ml.big.x"), group("small", "ml.small.x")]
    pending = [gpu_pod(f"octo-{i}", 8, 100) for i in range(2)] + [gpu_pod("solo", 1, 4)]
    plan = run(pending, groups, catalogue=GPU_CAT)
    assert sorted(n.instance_type for n in plan.new_nodes) == ["ml.big.x", "ml.big.x", "ml.small.x"]


def test_nodepool_node_limit_is_kept_when_splitting() -> None:
    groups = [group("big", "ml.big.x"), group("small", "ml.small.x")]
    pending = [gpu_pod(f"heavy-{i}", 1, 40) for i in range(2)] + [gpu_pod(f"duo-{i}", 2, 4) for i in range(3)]
    plan = run(pending, groups, catalogue=GPU_CAT, pool=NodePool("default", "nc", limits=(("nodes", 1),)))
    assert placed(plan) == sorted(p.key for p in pending)
    assert [n.instance_type for n in plan.new_nodes] == ["ml.big.x"]


def test_pods_with_hostname_affinity_are_not_split_apart() -> None:
    groups = [group("big", "ml.big.x"), group("small", "ml.small.x")]
    leader = gpu_pod("heavy-0", 1, 40)
    leader = Pod(
        leader.namespace, leader.name, leader.requests, labels={"role": "leader"}, owner_kind="ReplicaSet"
    )
    term = PodAffinityTerm(LABEL_HOSTNAME, LabelSelector(match_labels=(("role", "leader"),)))
    followers = [
        Pod("default", f"duo-{i}", {"cpu": 1000, "memory": 4 * GI, NVIDIA_GPU: 2}, pod_affinity=(term,))
        for i in range(3)
    ]
    plan = run([leader, gpu_pod("heavy-1", 1, 40), *followers], groups, catalogue=GPU_CAT)
    host = {k: n.name for n in plan.new_nodes for k in n.pods}
    assert {host[f.key] for f in followers} == {host[leader.key]}


def test_mixed_gpu_pods_on_real_types_use_g5_for_everything_below_eight_gpus() -> None:
    groups = [group("spot-g5", "ml.g5.12xlarge"), group("spot-p5", "ml.p5.48xlarge")]
    rng = random.Random(7)
    pending = [gpu_pod(f"heavy-{i:02d}", 1, 96) for i in range(8)]
    pending += [gpu_pod(f"g{i:02d}", rng.choice((1, 2, 4)), rng.choice((8, 24, 48))) for i in range(24)]
    pending += [gpu_pod(f"octo-{i}", 8, 200) for i in range(2)]
    plan = run(pending, groups)
    assert placed(plan) == sorted(p.key for p in pending)
    by_key = {p.key: p for p in pending}
    for node in plan.new_nodes:
        if node.instance_type == "ml.p5.48xlarge":
            assert any(by_key[k].requests[NVIDIA_GPU] == 8 for k in node.pods), node
    # Ranking by the price per pod of the opening pod alone gave 9 g5 + 5 p5 ($135.78/h).
    assert Counter(n.instance_type for n in plan.new_nodes) == {"ml.p5.48xlarge": 2, "ml.g5.12xlarge": 15}


# -- packing quality on GPU nodes ------------------------------------------------------------------


def test_gpu_packing_on_g5_reaches_a_known_optimum() -> None:
    # 1/2-GPU pods whose CPU and memory are not in proportion to the GPUs: 14 nodes is the volume bound,
    # so no packing does better.
    alloc = CAT.get("ml.g5.12xlarge").allocatable()
    shares = [
        (1, 0.25, 0.75),
        (1, 0.75, 0.25),
        (2, 0.5, 0.5),
        (1, 0.25, 0.25),
        (2, 0.25, 0.75),
        (2, 0.75, 0.2),
    ]
    pending = []
    for i in range(30):
        gpus, cpu, memory = shares[i % len(shares)]
        requests = {"cpu": int(cpu * alloc["cpu"]), "memory": int(memory * alloc["memory"]), NVIDIA_GPU: gpus}
        pending.append(Pod("default", f"gpu-{i:02d}", requests, owner_kind="ReplicaSet"))
    plan = run(pending, [group("g5", "ml.g5.12xlarge")])
    assert placed(plan) == sorted(p.key for p in pending)
    used = [
        {r: sum(next(p for p in pending if p.key == k).requests.get(r, 0) for k in n.pods) for r in alloc}
        for n in plan.new_nodes
    ]
    assert all(u[r] <= alloc[r] for u in used for r in alloc)
    assert len(plan.new_nodes) == 14


# -- runs ------------------------------------------------------------------------------------------


def one_at_a_time(demand: np.ndarray, residual: np.ndarray, scale: np.ndarray) -> tuple[int, int]:
    """The first pick of plain greedy placement and how many times in a row it is picked."""
    first, count = -1, 0
    residual = residual.copy()
    while True:
        fits = np.all(demand <= residual + 1e-9, axis=1)
        if not fits.any():
            return first, count
        scores = np.where(fits, demand @ (residual * scale), -np.inf)
        pick = int(np.argmax(scores))
        if first == -1:
            first = pick
        elif pick != first:
            return first, count
        residual -= demand[pick]
        count += 1


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(st.tuples(*[st.integers(1, 12)] * 3), min_size=1, max_size=8, unique=True),
    st.tuples(*[st.integers(12, 60)] * 3),
)
def test_a_run_is_what_one_at_a_time_placement_does(
    rows: list[tuple[int, int, int]], cap: tuple[int, ...]
) -> None:
    demand = np.array(rows, dtype=np.float64)
    capacity = np.array(cap, dtype=np.float64)
    scale = np.ones(len(cap))  # integer arithmetic: exact ties, decided as argmax does
    residual = capacity.copy()
    # Walk a whole bin run by run: every run must match the plain greedy choice and its length.
    while True:
        fits = np.all(demand <= residual + 1e-9, axis=1)
        if not fits.any():
            break
        index = np.flatnonzero(fits)
        row, count = choose_run(demand[index], residual, scale)
        expected_pick, expected_count = one_at_a_time(demand[index], residual, scale)
        assert (index[row], count) == (index[expected_pick], expected_count)
        residual -= count * demand[index[row]]


def test_many_identical_nodes_pack_the_same_way() -> None:
    # A fixed-size group and one class: bins opened alike replay the same runs; the plan still holds.
    rng = random.Random(3)
    pending = [
        pod(
            f"w-{i:04d}",
            cpu=rng.choice((100, 250, 500, 1000, 1500)),
            memory=rng.choice((256, 512, 1024)) * MI,
        )
        for i in range(1500)
    ]
    plan = run(pending, [group("c5", "ml.c5.4xlarge")])
    alloc = CAT.get("ml.c5.4xlarge").allocatable()
    by_key = {p.key: p for p in pending}
    assert placed(plan) == sorted(by_key)
    for node in plan.new_nodes:
        for resource in ("cpu", "memory"):
            assert sum(by_key[k].requests[resource] for k in node.pods) <= alloc[resource]
        assert len(node.pods) <= alloc[PODS_RESOURCE]
    totals = {r: sum(p.requests[r] for p in pending) for r in ("cpu", "memory")}
    bound = max(math.ceil(totals[r] / alloc[r]) for r in totals)
    assert len(plan.new_nodes) <= math.ceil(1.02 * bound) + 1


# -- every plan stays valid when nodes are resized and split -----------------------------------------

PROPERTY_CAT = Catalogue.from_specs(
    [
        gpu_spec("ml.big.x", 64, 1024, 8, 8.0),
        gpu_spec("ml.small.x", 16, 64, 4, 1.5),
        gpu_spec("ml.tiny.x", 8, 32, 1, 0.5),
        *(CAT.get(t) for t in ("ml.c5.xlarge", "ml.c5.2xlarge", "ml.c5.4xlarge")),
    ]
)
PROPERTY_GROUPS = [
    InstanceGroup(f"{t.split('.')[1]}-{z[-1]}", (t,), SPOT, (z,))
    for t in ("ml.big.x", "ml.small.x", "ml.tiny.x", "ml.c5.xlarge", "ml.c5.2xlarge", "ml.c5.4xlarge")
    for z in (ZA, ZB)
]
APPS = ("a", "b", "c")


@st.composite
def sized_pod(draw: st.DrawFn, name: str) -> Pod:
    gpus = draw(st.sampled_from((0, 0, 1, 2, 4, 8)))
    requests = {
        "cpu": draw(st.sampled_from((250, 1000, 3000, 7000))),
        "memory": draw(st.sampled_from((1, 4, 20, 40))) * GI,
    }
    if gpus:
        requests[NVIDIA_GPU] = gpus
    app = draw(st.sampled_from(APPS))
    selector = LabelSelector(match_labels=(("app", app),))
    kind = draw(st.sampled_from(("plain", "plain", "anti", "spread", "host-affinity", "pinned")))
    changes: dict[str, Any] = {}
    if kind == "anti":
        changes["pod_anti_affinity"] = (PodAffinityTerm(LABEL_HOSTNAME, selector),)
    elif kind == "spread":
        changes["topology_spread"] = (TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", selector),)
    elif kind == "host-affinity":
        other = LabelSelector(match_labels=(("app", draw(st.sampled_from(APPS))),))
        changes["pod_affinity"] = (PodAffinityTerm(LABEL_HOSTNAME, other),)
    elif kind == "pinned":
        changes["node_selector"] = {LABEL_ZONE: draw(st.sampled_from((ZA, ZB)))}
    return Pod("default", name, requests, labels={"app": app}, owner_kind="ReplicaSet", **changes)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.integers(1, 30).flatmap(lambda n: st.tuples(*[sized_pod(f"p{i:02d}") for i in range(n)])))
def test_resized_and_split_plans_stay_valid(pending: tuple[Pod, ...]) -> None:
    limits = (("nodes", 12),)
    plan = run(
        list(pending), PROPERTY_GROUPS, catalogue=PROPERTY_CAT, pool=NodePool("default", "nc", limits=limits)
    )
    assert plan == run(
        list(pending), PROPERTY_GROUPS, catalogue=PROPERTY_CAT, pool=NodePool("default", "nc", limits=limits)
    )
    by_key = {p.key: p for p in pending}
    seen = Counter(k for n in plan.new_nodes for k in n.pods) + Counter(u.pod for u in plan.unschedulable)
    assert seen == Counter(list(by_key))  # every pod once: on a node or refused
    assert len(plan.new_nodes) <= 12
    assert len({n.name for n in plan.new_nodes}) == len(plan.new_nodes)
    for node in plan.new_nodes:
        spec = PROPERTY_CAT.get(node.instance_type)
        assert node.allocatable == spec.allocatable()
        assert node.instance_group.startswith(node.instance_type.split(".")[1])
        assert node.zone == {"a": ZA, "b": ZB}[node.instance_group[-1]]
        assert math.isclose(node.price_per_hour, spec.spot_price)
        pods = [by_key[k] for k in node.pods]
        for resource, amount in node.allocatable.items():
            used = len(pods) if resource == PODS_RESOURCE else sum(p.requests.get(resource, 0) for p in pods)
            assert used <= amount, (node, resource)
        for pod in pods:
            assert all(node.zone == v for k, v in pod.node_selector.items() if k == LABEL_ZONE)
            for term in pod.pod_anti_affinity:
                assert not any(o is not pod and term.selector.matches(o.labels) for o in pods), node
            for term in pod.pod_affinity:
                # A pod its own term selects may start the host (the first of its kind); any other
                # needs a selected pod beside it, which a split must not take away.
                assert term.selector.matches(pod.labels) or any(
                    o is not pod and term.selector.matches(o.labels) for o in pods
                ), node
