"""Shared pieces of the benchmarks: Karpenter's fake catalogue and pod mix, timing, result rows."""

from __future__ import annotations

import gc
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hpscaler.catalogue import Catalogue, InstanceSpec
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_ZONE,
    CapacityType,
    InstanceGroup,
    LabelSelector,
    NodeClass,
    NodePool,
    Pod,
    PodAffinityTerm,
    TopologySpread,
)

MIB = 1 << 20
GIB = 1 << 30
ZONES = ("test-zone-1", "test-zone-2", "test-zone-3")
SPOT_ZONES = ZONES[:2]
KARPENTER_CPU_M = (100, 250, 500, 1000, 1500)
KARPENTER_MEM_MI = (100, 256, 512, 1024, 2048, 4096)
LABEL_VALUES = ("a", "b", "c", "d", "e", "f", "g")
SEED = 42
TYPES_PER_GROUP = 20  # HyperPod InstanceRequirements.InstanceTypes holds 1-20 types


# --- Karpenter's fake.InstanceTypes(400) as HyperPod instance types ---------------------------------


class KarpenterFakeSpec(InstanceSpec):
    """Karpenter's fake instance type: allocatable is capacity minus 100m CPU and 10Mi (kube-reserved).

    hpscaler's own catalogue computes the EKS AMI's reservation; the benchmark overrides it so the
    instance types are exactly the ones Karpenter's scheduling benchmark uses.
    """

    __slots__ = ()

    def capacity(self) -> dict[str, int]:
        return {"cpu": self.vcpu * 1000, "memory": self.memory_mib * MIB, "pods": self.max_pods}

    def allocatable(self) -> dict[str, int]:
        cap = self.capacity()
        cap["cpu"] -= 100
        cap["memory"] -= 10 * MIB
        return cap


def karpenter_price(cpu: int, memory_bytes: int) -> float:
    """fake.InstanceTypes' price: 0.1 * cpu + 0.1 * memory in GB (decimal)."""
    return 0.1 * cpu + 0.1 * memory_bytes / 1e9


def fake_type_name(i: int) -> str:
    return f"fake-it-{i}"


def karpenter_specs(count: int = 400) -> list[InstanceSpec]:
    """Type i (1..count): cpu = i, memory = 2i GiB, pods = 10i; spot price = on-demand price."""
    specs: list[InstanceSpec] = []
    for i in range(1, count + 1):
        price = karpenter_price(i, 2 * i * GIB)
        specs.append(
            KarpenterFakeSpec(
                name=fake_type_name(i),
                family="fake",
                vcpu=i,
                memory_mib=2 * i * 1024,
                gpus=0,
                gpu_name="",
                gpu_memory_mib=0,
                neuron_devices=0,
                efa=0,
                max_pods=10 * i,
                arch="amd64",
                on_demand_price=price,
                spot_price=price,
            )
        )
    return specs


def offerings() -> list[tuple[str, CapacityType]]:
    """Karpenter's 5 offerings per type: spot in zones 1-2, on-demand in zones 1-3."""
    return [(z, CapacityType.SPOT) for z in SPOT_ZONES] + [(z, CapacityType.ON_DEMAND) for z in ZONES]


def karpenter_groups(count: int = 400, per_group: int = TYPES_PER_GROUP) -> list[InstanceGroup]:
    """The 400 types x 5 offerings as HyperPod instance groups.

    HyperPod fixes an instance group's capacity type at creation and lets a flexible group list
    1-20 instance types; the group's subnets fix its zones. So each (zone, capacity type) offering
    becomes count/per_group groups of `per_group` consecutive types: 20 x 5 = 100 groups for 400 types.
    """
    names = [fake_type_name(i) for i in range(1, count + 1)]
    groups: list[InstanceGroup] = []
    for zone, capacity_type in offerings():
        short = "spot" if capacity_type is CapacityType.SPOT else "od"
        for start in range(0, count, per_group):
            chunk = tuple(names[start : start + per_group])
            groups.append(
                InstanceGroup(
                    name=f"{short}-{zone[-1]}-t{start + 1:03d}",
                    instance_types=chunk,
                    capacity_type=capacity_type,
                    zones=(zone,),
                )
            )
    return groups


def pool_and_class(groups: Sequence[InstanceGroup], name: str = "default") -> tuple[NodePool, NodeClass]:
    """One NodePool with no limits over one NodeClass listing every group (as Karpenter's benchmark)."""
    node_class = NodeClass(name, tuple(g.name for g in groups))
    return NodePool(name, node_class=name), node_class


def karpenter_catalogue(count: int = 400) -> Catalogue:
    return Catalogue.from_specs(karpenter_specs(count))


# --- makeDiversePods --------------------------------------------------------------------------------


def _requests(rng: random.Random) -> dict[str, int]:
    return {"cpu": rng.choice(KARPENTER_CPU_M), "memory": rng.choice(KARPENTER_MEM_MI) * MIB}


def _pod(index: int, kind: str, rng: random.Random, **fields: Any) -> Pod:
    return Pod(
        namespace="default",
        name=f"{kind}-{index:06d}",
        requests=_requests(rng),
        uid=f"uid-{kind}-{index}",
        owner_kind="ReplicaSet",
        owner_name=kind,
        created=float(index),
        **fields,
    )


def make_diverse_pods(n: int, seed: int = SEED) -> list[Pod]:
    """Karpenter's makeDiversePods(n): five equal fifths, the remainder generic, requests uniform.

    Go's math/rand sequence cannot be reproduced; the distributions can (seeded `random.Random`).
    """
    rng = random.Random(seed)
    fifth = n // 5
    pods: list[Pod] = []
    counter = 0

    def label() -> dict[str, str]:
        return {"my-label": rng.choice(LABEL_VALUES)}

    def generic(count: int) -> None:
        nonlocal counter
        for _ in range(count):
            pods.append(_pod(counter, "generic", rng, labels=label()))
            counter += 1

    def spread(count: int, key: str, kind: str) -> None:
        nonlocal counter
        for _ in range(count):
            selector = LabelSelector(match_labels=(("my-label", rng.choice(LABEL_VALUES)),))
            constraint = TopologySpread(key, 1, "DoNotSchedule", selector)
            pods.append(_pod(counter, kind, rng, labels=label(), topology_spread=(constraint,)))
            counter += 1

    generic(fifth)
    spread(fifth, LABEL_ZONE, "spread-zone")
    spread(fifth, LABEL_HOSTNAME, "spread-host")
    for _ in range(fifth):  # self pod-affinity on zone ("my-affininity" is Karpenter's spelling)
        labels = {"my-affininity": rng.choice(LABEL_VALUES)}
        term = PodAffinityTerm(LABEL_ZONE, LabelSelector(match_labels=tuple(labels.items())))
        pods.append(_pod(counter, "affinity-zone", rng, labels=labels, pod_affinity=(term,)))
        counter += 1
    nginx = {"app": "nginx"}
    for _ in range(fifth):  # hostname anti-affinity to each other: one per node
        term = PodAffinityTerm(LABEL_HOSTNAME, LabelSelector(match_labels=tuple(nginx.items())))
        pods.append(_pod(counter, "anti-host", rng, labels=dict(nginx), pod_anti_affinity=(term,)))
        counter += 1
    generic(n - len(pods))
    return pods


# --- timing and result rows -------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Median wall time of `repeat` calls (GC collected before, disabled during), and the last result."""
    times: list[float] = []
    result: Any = None
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return statistics.median(times), result


@dataclass
class Row:
    """One line of the results table."""

    workload: str
    metric: str
    hpscaler: float | None
    baseline: float | None
    ratio: float | None
    target: str
    met: bool | None
    unit: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Result:
    """What one workload module returns: rows for the table plus raw data for JSON and plots."""

    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on sorted data (no interpolation)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# --- checking a placement ---------------------------------------------------------------------------


@dataclass
class PlacedNode:
    """A node of a finished plan, as the checks see it."""

    hostname: str
    zone: str
    instance_type: str
    price: float
    allocatable: dict[str, int]
    pods: list[Pod]


def check_placement(nodes: Sequence[PlacedNode], pods: Sequence[Pod]) -> list[str]:
    """Problems with a plan: pods missing or placed twice, overfull nodes, broken required constraints.

    Checked: capacity on every resource (plus one pod slot each), required hostname anti-affinity
    (no two selected pods on a host) and self pod-affinity on zone (each group ends up in one zone).
    Spread skew is checked at placement time by both schedulers and is not re-derivable from the end
    state (most spread pods in the mix do not select themselves), so it is not checked here.
    """
    problems: list[str] = []
    seen: dict[str, str] = {}
    for node in nodes:
        used: dict[str, int] = {"pods": len(node.pods)}
        for pod in node.pods:
            if pod.key in seen:
                problems.append(f"{pod.key} placed on {seen[pod.key]} and {node.hostname}")
            seen[pod.key] = node.hostname
            for name, amount in pod.requests.items():
                used[name] = used.get(name, 0) + amount
        for name, amount in used.items():
            if amount > node.allocatable.get(name, 0):
                problems.append(
                    f"{node.hostname}: {name} {amount} > allocatable {node.allocatable.get(name, 0)}"
                )
        for pod in node.pods:
            for term in pod.pod_anti_affinity:
                if term.topology_key == LABEL_HOSTNAME:
                    clash = [p for p in node.pods if p is not pod and term.selector.matches(p.labels)]
                    if clash:
                        problems.append(f"{pod.key}: anti-affinity broken on {node.hostname}")
                        break
    missing = [p.key for p in pods if p.key not in seen]
    if missing:
        problems.append(f"{len(missing)} pods not placed, e.g. {missing[:3]}")
    zone_of = {p.key: n.zone for n in nodes for p in n.pods}
    affinity_zones: dict[object, set[str]] = {}
    for pod in pods:
        for term in pod.pod_affinity:
            if term.topology_key == LABEL_ZONE and term.selector.matches(pod.labels) and pod.key in zone_of:
                affinity_zones.setdefault(term.selector, set()).add(zone_of[pod.key])
    for selector, zones in affinity_zones.items():
        if len(zones) > 1:
            problems.append(f"self-affinity group {selector} spans zones {sorted(zones)}")
    return problems


def make_generic_pods(n: int, seed: int = SEED, prefix: str = "cpu") -> list[Pod]:
    """Pods with Karpenter's request distribution and no constraints (a Deployment's pods)."""
    rng = random.Random(seed)
    return [_pod(i, prefix, rng, labels={"app": prefix}) for i in range(n)]
