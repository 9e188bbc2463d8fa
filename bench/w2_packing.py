"""W2: packing quality on fixed-size HyperPod instance groups (CPU, memory and GPU pods).

Real HyperPod types from the packaged catalogue (allocatable as hpscaler computes it, catalogue
prices): ml.c5.4xlarge (16 vCPU / 32 GiB), ml.g5.12xlarge (48 / 192 GiB / 4 GPU) and
ml.p5.48xlarge (192 / 2 TiB / 8 GPU), each as an On-Demand and a Spot group in one zone.

Scenarios:
* cpu->c5, gpu->g5, gpu->p5: one fixed-type group each. Nodes against the per-resource volume bound
  max_d ceil(sum demand_d / allocatable_d), which no packing can beat; where a node holds at most four
  of the pods (g5), also against the exact optimum (`pattern_optimum`), which shows how loose that
  bound is there.
* mixed: CPU and GPU pods over all six groups. Cost against an LP relaxation (scipy HiGHS) in which
  each pod class (CPU pods; GPU pods by GPU count) may use only the node kinds it fits on.
The baseline is `karpenter_port` on the same pods and the same node kinds.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from bench import karpenter_port as kp
from bench.bounds import NodeKind, class_lp, ffd_nodes, l2_bound, volume_bound
from bench.common import MIB, SEED, Result, Row, make_generic_pods, timed
from hpscaler.catalogue import InstanceSpec, load_catalogue
from hpscaler.model import CapacityType, InstanceGroup, NodeClass, NodePool, Pod
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import SchedulingInput

ZONE = "us-west-2a"
C5, G5, P5 = "ml.c5.4xlarge", "ml.g5.12xlarge", "ml.p5.48xlarge"
GPU = "nvidia.com/gpu"
TARGET_NODES = 1.02
TARGET_COST = 1.03
TARGET_SOLVE_SECONDS = 0.3  # research proposal: 20k CPU pods on one fixed group in <= 300 ms


def gpu_pods(
    n: int, sizes: tuple[int, ...], seed: int = SEED + 1, prefix: str = "gpu", share: str = G5
) -> list[Pod]:
    """Pods asking for g GPUs (uniform over `sizes`), with CPU and memory not in proportion to the GPUs.

    Per GPU a pod asks 0.25-2x (independently for CPU and for memory) of the `share` type's CPU and
    memory per GPU (ml.g5.12xlarge: 12 vCPU, 48 GiB; ml.p5.48xlarge: 24 vCPU, 256 GiB), capped at
    what the smallest node with g GPUs can allocate. So some pods
    are CPU-heavy, some memory-heavy and some GPU-bound, and packing them well means mixing them.
    """
    catalogue = load_catalogue()
    caps = {
        g: min(
            (s.allocatable() for s in (catalogue.get(G5), catalogue.get(P5)) if s.gpus >= g),
            key=lambda a: a["cpu"],
        )
        for g in sizes
    }
    ref = catalogue.get(share)
    cpu_per_gpu, mem_per_gpu = ref.vcpu * 1000 // ref.gpus, ref.memory_mib * MIB // ref.gpus
    rng = random.Random(seed)
    factors = (0.25, 0.5, 1.0, 1.5, 2.0)
    pods = []
    for i in range(n):
        g = rng.choice(sizes)
        requests = {
            "cpu": min(caps[g]["cpu"], int(g * cpu_per_gpu * rng.choice(factors))),
            "memory": min(caps[g]["memory"], int(g * mem_per_gpu * rng.choice(factors))),
            GPU: g,
        }
        pods.append(
            Pod(
                "default",
                f"{prefix}-{i:05d}",
                requests,
                owner_kind="ReplicaSet",
                owner_name=prefix,
                created=float(i),
            )
        )
    return pods


def groups_for(types: list[str], capacity_types: tuple[CapacityType, ...]) -> list[InstanceGroup]:
    return [
        InstanceGroup(f"{ct.value}-{t.split('.')[1]}", (t,), ct, (ZONE,))
        for t in types
        for ct in capacity_types
    ]


def hpscaler_plan(pods: list[Pod], groups: list[InstanceGroup]) -> tuple[float, Any]:
    node_class = NodeClass("w2", tuple(g.name for g in groups))
    inp = SchedulingInput(
        pods=pods,
        node_pools=[NodePool("w2", "w2")],
        node_classes=[node_class],
        groups=groups,
        catalogue=load_catalogue(),
    )
    return timed(lambda: solve(inp))


def port_types(specs: list[InstanceSpec], capacity_types: tuple[CapacityType, ...]) -> list[kp.InstanceType]:
    return [
        kp.InstanceType(
            s.name, s.allocatable(), tuple(kp.Offering(ZONE, ct.value, s.price(ct)) for ct in capacity_types)
        )
        for s in specs
    ]


def pattern_optimum(pods: list[Pod], allocatable: dict[str, int], max_pods: int = 4) -> int | None:
    """The least number of nodes of `allocatable` that hold `pods`, exactly: every node pattern (multiset
    of distinct requests that fits) as a column of a covering integer program, solved by HiGHS.

    Only for GPU pods on nodes that hold at most `max_pods` of them (every pod asks a GPU), where the
    patterns are few; None otherwise or if HiGHS does not prove optimality within the time limit.
    """
    gpus = allocatable.get(GPU, 0)
    if not pods or gpus <= 0 or min(p.requests.get(GPU, 0) for p in pods) * max_pods < gpus:
        return None
    dims = ["cpu", "memory", GPU, "pods"]
    cap = np.array([allocatable.get(d, 0) for d in dims], dtype=np.float64)
    counts = Counter(tuple(p.requests.get(d, 0) if d != "pods" else 1 for d in dims) for p in pods)
    types = np.array(list(counts), dtype=np.float64)
    columns: list[list[int]] = []

    def extend(start: int, used: np.ndarray, pattern: list[int]) -> None:
        if pattern:
            columns.append(pattern)
        if len(pattern) == max_pods:
            return
        room = np.flatnonzero(np.all(types[start:] <= cap - used, axis=1)) + start
        for i in room.tolist():
            extend(i, used + types[i], [*pattern, i])

    extend(0, np.zeros(len(dims)), [])
    matrix = np.zeros((len(types), len(columns)))
    for j, pattern in enumerate(columns):
        for i in pattern:
            matrix[i, j] += 1
    result = milp(
        np.ones(len(columns)),
        constraints=LinearConstraint(matrix, lb=np.array(list(counts.values()), dtype=np.float64), ub=np.inf),
        integrality=np.ones(len(columns)),
        bounds=Bounds(0, np.inf),
        options={"time_limit": 60},
    )
    return round(result.fun) if result.status == 0 else None


def single_group(name: str, pods: list[Pod], type_name: str) -> dict[str, Any]:
    spec = load_catalogue().get(type_name)
    seconds, plan = hpscaler_plan(pods, groups_for([type_name], (CapacityType.ON_DEMAND,)))
    base_seconds, base = timed(lambda: kp.solve(pods, port_types([spec], (CapacityType.ON_DEMAND,))))
    bound = volume_bound(pods, spec.allocatable())
    l2 = l2_bound(pods, spec.allocatable())
    return {
        "scenario": name,
        "pods": len(pods),
        "hpscaler_nodes": len(plan.new_nodes),
        "baseline_nodes": len(base.claims),
        "lower_bound": bound,
        "l2_bound": l2,
        "best_ffd_nodes": ffd_nodes(pods, spec.allocatable()) if len(pods) <= 5000 else None,
        "optimum": pattern_optimum(pods, spec.allocatable()),
        "hpscaler_unschedulable": len(plan.unschedulable),
        "baseline_unschedulable": len(base.errors),
        "hpscaler_seconds": seconds,
        "baseline_seconds": base_seconds,
    }


def mixed(cpu: list[Pod], gpus: list[Pod]) -> dict[str, Any]:
    catalogue = load_catalogue()
    specs = [catalogue.get(t) for t in (C5, G5, P5)]
    both = (CapacityType.SPOT, CapacityType.ON_DEMAND)
    pods = cpu + gpus
    seconds, plan = hpscaler_plan(pods, groups_for([C5, G5, P5], both))
    base_seconds, base = timed(lambda: kp.solve(pods, port_types(specs, both)))
    kinds = [NodeKind(f"{s.name}/{ct.value}", s.allocatable(), s.price(ct)) for s in specs for ct in both]
    classes: list[tuple[list[Pod], list[int]]] = [(cpu, list(range(len(kinds))))]
    for g in sorted({p.requests[GPU] for p in gpus}):
        members = [p for p in gpus if p.requests[GPU] == g]
        allowed = [k for k, kind in enumerate(kinds) if kind.allocatable.get(GPU, 0) >= g]
        classes.append((members, allowed))
    return {
        "scenario": "mixed",
        "pods": len(pods),
        "hpscaler_cost": plan.cost_per_hour,
        "baseline_cost": base.cost,
        "lp_cost": class_lp(classes, kinds, "cost"),
        "hpscaler_nodes": len(plan.new_nodes),
        "baseline_nodes": len(base.claims),
        "lp_nodes": class_lp(classes, kinds, "nodes"),
        "hpscaler_by_group": plan.nodes_by_group(),
        "hpscaler_unschedulable": len(plan.unschedulable),
        "baseline_unschedulable": len(base.errors),
        "hpscaler_seconds": seconds,
        "baseline_seconds": base_seconds,
    }


def run(quick: bool = False) -> Result:
    n_cpu = 2000 if quick else 20000
    n_gpu = 200 if quick else 1000
    result = Result("W2")
    cpu = make_generic_pods(n_cpu)
    scenarios = [
        single_group("cpu->c5.4xlarge", cpu, C5),
        single_group("gpu->g5.12xlarge", gpu_pods(n_gpu, (1, 2, 4)), G5),
        single_group("gpu->p5.48xlarge", gpu_pods(n_gpu, (1, 2, 4, 8), seed=SEED + 2, share=P5), P5),
    ]
    mix = mixed(
        make_generic_pods(n_cpu // 2, seed=SEED + 3), gpu_pods(n_gpu // 2, (1, 2, 4, 8), seed=SEED + 4)
    )
    result.data = {"single": scenarios, "mixed": mix}
    for s in scenarios:
        ratio = s["hpscaler_nodes"] / s["lower_bound"]
        base_ratio = s["baseline_nodes"] / s["lower_bound"]
        ok = s["hpscaler_unschedulable"] == 0
        print(
            f"  W2 {s['scenario']}: hpscaler {s['hpscaler_nodes']} nodes "
            f"({ratio:.3f}x LB {s['lower_bound']}), "
            f"port {s['baseline_nodes']} ({base_ratio:.3f}x), "
            f"{s['hpscaler_seconds']:.2f}s vs {s['baseline_seconds']:.2f}s",
            flush=True,
        )
        notes = [f"Karpenter port: {s['baseline_nodes']:,} nodes = {base_ratio:.3f}x LB"]
        if s["l2_bound"] > s["lower_bound"]:
            notes.append(f"L2 bound {s['l2_bound']}: {s['hpscaler_nodes'] / s['l2_bound']:.3f}x")
        if s["best_ffd_nodes"]:
            notes.append(f"best plain FFD {s['best_ffd_nodes']:,} nodes")
        if s["optimum"]:
            notes.append(
                f"exact optimum (pattern MILP) {s['optimum']:,} nodes "
                f"= {s['optimum'] / s['lower_bound']:.3f}x LB"
            )
        if not ok:
            notes.append(f"{s['hpscaler_unschedulable']} pods unschedulable")
        result.rows.append(
            Row(
                "W2",
                f"nodes vs volume LB, {s['scenario']} ({s['pods']:,} pods)",
                s["hpscaler_nodes"],
                s["lower_bound"],
                ratio,
                f"<= {TARGET_NODES}x LB",
                ratio <= TARGET_NODES and ok,
                "nodes",
                "; ".join(notes),
            )
        )
    for s in scenarios:
        if s["optimum"]:
            result.rows.append(
                Row(
                    "W2",
                    f"nodes vs exact optimum, {s['scenario']} ({s['pods']:,} pods)",
                    s["hpscaler_nodes"],
                    s["optimum"],
                    s["hpscaler_nodes"] / s["optimum"],
                    "(no target)",
                    None,
                    "nodes",
                    "optimum by a pattern MILP (HiGHS): every node pattern of <= 4 GPU pods; "
                    f"no packing can beat {s['optimum'] / s['lower_bound']:.3f}x the volume LB here",
                )
            )
    first = scenarios[0]
    result.rows.append(
        Row(
            "W2",
            f"solve time cpu->c5.4xlarge ({first['pods']:,} pods) vs port",
            first["hpscaler_seconds"],
            first["baseline_seconds"],
            first["hpscaler_seconds"] / first["baseline_seconds"],
            f"<= {TARGET_SOLVE_SECONDS} s @ 20k (research)",
            first["hpscaler_seconds"] <= TARGET_SOLVE_SECONDS if first["pods"] >= 20000 else None,
            "s",
        )
    )
    cost_ratio = mix["hpscaler_cost"] / mix["lp_cost"]
    base_cost_ratio = mix["baseline_cost"] / mix["lp_cost"]
    print(
        f"  W2 mixed: hpscaler ${mix['hpscaler_cost']:.1f}/h ({cost_ratio:.3f}x LP ${mix['lp_cost']:.1f}), "
        f"port ${mix['baseline_cost']:.1f}/h ({base_cost_ratio:.3f}x); nodes {mix['hpscaler_nodes']} vs "
        f"{mix['baseline_nodes']} (LP {mix['lp_nodes']:.1f}) {mix['hpscaler_by_group']}",
        flush=True,
    )
    ok = mix["hpscaler_unschedulable"] == 0
    result.rows.append(
        Row(
            "W2",
            f"cost vs LP, mixed CPU+GPU on 6 groups ({mix['pods']:,} pods)",
            mix["hpscaler_cost"],
            mix["lp_cost"],
            cost_ratio,
            f"<= {TARGET_COST}x LP",
            cost_ratio <= TARGET_COST and ok,
            "$/h",
            f"Karpenter port: ${mix['baseline_cost']:,.0f}/h = {base_cost_ratio:.3f}x LP"
            + ("" if ok else f"; {mix['hpscaler_unschedulable']} pods unschedulable"),
        )
    )
    result.rows.append(
        Row(
            "W2",
            "nodes vs LP (min-nodes objective), mixed",
            mix["hpscaler_nodes"],
            mix["lp_nodes"],
            mix["hpscaler_nodes"] / mix["lp_nodes"],
            "(no target)",
            None,
            "nodes",
            f"Karpenter port: {mix['baseline_nodes']} nodes; hpscaler by group {mix['hpscaler_by_group']}",
        )
    )
    return result
