"""W7: the hard mix. 10k pods on 3 zones, every pod a different size, 1,000 zone-spread groups, 500
hostname anti-affinity groups, 300 hostname-spread groups, with 2,000 existing nodes.

Timed in CPU seconds (`time.process_time`, the median of repeats) against the plain mix measured in
the same run: the same pod count on the same 6 instance groups with Karpenter's 30 request sizes and
no topology constraints. Every plan goes through `hard_mix.check_end_state` (capacity on new and
existing nodes, hostname anti-affinity, the skew of every self-selecting spread).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import Result, Row, karpenter_catalogue, karpenter_specs, pool_and_class
from bench.hard_mix import (
    EXISTING_TYPE,
    EndNode,
    check_end_state,
    existing_nodes,
    hard_mix_groups,
    hard_pods,
    plain_pods,
)
from hpscaler.model import Node, Pod
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import Plan, SchedulingInput

TARGET_RATIO = 4.0


def cpu_seconds(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float], Any]:
    """Median CPU time of `repeat` calls (GC collected before each), all the times, and the last result."""
    times = []
    result: Any = None
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        result = fn()
        times.append(time.process_time() - start)
    return statistics.median(times), times, result


def scheduling_input(pods: Sequence[Pod], nodes: Sequence[Node] = ()) -> SchedulingInput:
    groups = hard_mix_groups()
    pool, node_class = pool_and_class(groups)
    return SchedulingInput(
        pods=pods,
        node_pools=[pool],
        node_classes=[node_class],
        groups=groups,
        catalogue=karpenter_catalogue(),
        nodes=nodes,
    )


def end_state(plan: Plan, pods: Sequence[Pod], nodes: Sequence[Node]) -> list[EndNode]:
    by_key = {p.key: p for p in pods}
    out = [EndNode(n.name, n.zone, n.allocatable, [by_key[k] for k in n.pods]) for n in plan.new_nodes]
    for node in nodes:
        placed = [by_key[k] for k in plan.existing.get(node.name, ())]
        out.append(EndNode(node.name, node.zone, dict(node.allocatable), [*node.pods, *placed]))
    return out


def run(quick: bool = False) -> Result:
    n = 2000 if quick else 10000
    node_count = 400 if quick else 2000
    repeat = 1 if quick else 3
    allocatable = {s.name: s for s in karpenter_specs()}[EXISTING_TYPE].allocatable()
    plain, hard = (
        plain_pods(n),
        hard_pods(n, zone_groups=n // 10, anti_groups=n // 20, host_spread_groups=(3 * n) // 100),
    )
    nodes = existing_nodes(node_count, allocatable)
    solve(scheduling_input(plain_pods(200, seed=1)))  # warm-up: first-call costs out of the timings
    cases = {
        "plain": (plain, ()),
        "hard": (hard, ()),
        "hard+nodes": (hard, nodes),
    }
    measured: dict[str, dict[str, Any]] = {}
    for name, (pods, cluster) in cases.items():
        inp = scheduling_input(pods, cluster)
        median, times, plan = cpu_seconds(lambda inp=inp: solve(inp), repeat)
        problems = check_end_state(end_state(plan, pods, cluster), pods)
        measured[name] = {
            "cpu_seconds": median,
            "runs": times,
            "new_nodes": len(plan.new_nodes),
            "on_existing": sum(len(v) for v in plan.existing.values()),
            "unschedulable": len(plan.unschedulable),
            "problems": problems[:5],
        }
        print(
            f"  W7 {name:<10} {n} pods: {median:.2f} CPU s (runs {', '.join(f'{t:.2f}' for t in times)}), "
            f"{len(plan.new_nodes)} new nodes, {measured[name]['on_existing']} on existing, "
            f"{len(plan.unschedulable)} unschedulable, checks {problems[:2] or 'ok'}",
            flush=True,
        )
    result = Result("W7")
    result.data = {"pods": n, "existing_nodes": node_count, "cases": measured}
    base = measured["plain"]["cpu_seconds"]
    with_nodes = f", {node_count:,} nodes"
    for name in ("hard", "hard+nodes"):
        m = measured[name]
        ok = not m["problems"] and m["unschedulable"] == 0
        ratio = m["cpu_seconds"] / base
        target = f"<= {TARGET_RATIO:g}x plain" if name == "hard+nodes" else "(no target)"
        result.rows.append(
            Row(
                "W7",
                f"CPU s, {name} ({n:,} pods{with_nodes if name == 'hard+nodes' else ''}) vs plain mix",
                m["cpu_seconds"],
                base,
                ratio,
                target,
                (ratio <= TARGET_RATIO and ok) if name == "hard+nodes" else None,
                "CPU s",
                f"plan checks: {m['problems'] or 'ok'}; {m['new_nodes']} new nodes, "
                f"{m['on_existing']} pods on existing nodes",
            )
        )
    return result
