"""Scaling curves: solve time against the number of pods (from W1) and of instance groups.

The groups curve: k fixed-type HyperPod instance groups (k in 4..50), group j holding one of
Karpenter's fake types (sizes spread over 4-400 vCPU) as Spot in zone 1 or 2 or On-Demand in zone
1, 2 or 3 (Karpenter's five offerings, round-robin), and a fixed set of makeDiversePods pods.
"""

from __future__ import annotations

from bench import karpenter_port as kp
from bench.common import (
    Result,
    Row,
    fake_type_name,
    karpenter_catalogue,
    karpenter_specs,
    make_diverse_pods,
    offerings,
    timed,
)
from hpscaler.model import InstanceGroup, NodeClass, NodePool
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import SchedulingInput

FULL_GROUPS = (4, 8, 16, 32, 50)
QUICK_GROUPS = (4, 16, 50)


def groups(k: int) -> list[InstanceGroup]:
    offers = offerings()
    out = []
    for j in range(k):
        size = 4 + (396 * j) // max(1, k - 1)
        zone, capacity_type = offers[j % len(offers)]
        out.append(InstanceGroup(f"g{j:02d}-{size}", (fake_type_name(size),), capacity_type, (zone,)))
    return out


def run(quick: bool = False) -> Result:
    ks = QUICK_GROUPS if quick else FULL_GROUPS
    n = 500 if quick else 2000
    pods = make_diverse_pods(n)
    catalogue = karpenter_catalogue()
    specs = {s.name: s for s in karpenter_specs()}
    points = []
    for k in ks:
        gs = groups(k)
        inp = SchedulingInput(
            pods=pods,
            node_pools=[NodePool("default", "default")],
            node_classes=[NodeClass("default", tuple(g.name for g in gs))],
            groups=gs,
            catalogue=catalogue,
        )
        seconds, plan = timed(lambda inp=inp: solve(inp))
        by_type: dict[str, list[kp.Offering]] = {}
        for g in gs:
            spec = specs[g.instance_types[0]]
            by_type.setdefault(spec.name, []).append(
                kp.Offering(g.zones[0], g.capacity_type.value, spec.price(g.capacity_type))
            )
        its = [kp.InstanceType(name, specs[name].allocatable(), tuple(o)) for name, o in by_type.items()]
        base_seconds, base = timed(lambda its=its: kp.solve(pods, its))
        points.append(
            {
                "groups": k,
                "pods": n,
                "hpscaler_seconds": seconds,
                "baseline_seconds": base_seconds,
                "hpscaler_nodes": len(plan.new_nodes),
                "hpscaler_unschedulable": len(plan.unschedulable),
                "baseline_nodes": len(base.claims),
                "baseline_unschedulable": len(base.errors),
            }
        )
        print(
            f"  scaling {k:>2} groups, {n} pods: hpscaler {seconds:.2f}s ({len(plan.new_nodes)} nodes, "
            f"{len(plan.unschedulable)} unschedulable), port {base_seconds:.2f}s ({len(base.claims)} nodes)",
            flush=True,
        )
    result = Result("scaling", data={"groups": points})
    for p in points:
        ok = p["hpscaler_unschedulable"] == 0
        result.rows.append(
            Row(
                "scaling",
                f"solve time, {p['groups']} groups ({n:,} pods)",
                p["hpscaler_seconds"],
                p["baseline_seconds"],
                p["hpscaler_seconds"] / p["baseline_seconds"],  # hpscaler / baseline, as every row
                "(curve)",
                None,
                "s",
                "" if ok else f"{p['hpscaler_unschedulable']} pods unschedulable",
            )
        )
    first, last = points[0], points[-1]
    result.rows.append(
        Row(
            "scaling",
            f"time growth {first['groups']}->{last['groups']} groups",
            last["hpscaler_seconds"] / first["hpscaler_seconds"],
            last["baseline_seconds"] / first["baseline_seconds"],
            None,
            "(curve)",
            None,
            "x",
        )
    )
    return result
