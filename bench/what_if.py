"""What-if: two scheduler fixes BENCHMARKS.md proposes for W1, tried by monkeypatching (not in `-m bench`).

`python -m bench.what_if [SIZES]` runs W1's workload with hpscaler's scheduler as it is, then with
`best_option` replaced by a per-shape ranking computed once (the proposed fix), checks that both give
the same plan, and estimates what right-sizing each new node after packing would cost.
Nothing in `hpscaler/` is changed: the patch lives in this process only.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from bench import karpenter_port as kp
from bench.common import check_placement, make_diverse_pods
from bench.w1_throughput import hpscaler_nodes, port_instance_types, scheduling_input
from hpscaler.scheduling import scheduler as sched
from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.options import Option, build_options
from hpscaler.scheduling.types import Plan

ORIGINAL_BEST_OPTION = sched._Solver.best_option


def ranked_best_option(self: Any, shape: Any, zone: str = "") -> Option | None:
    """`_Solver.best_option` with the static part of the ranking done once per shape.

    Everything in the ranking key but the dynamic checks (unavailable offerings, NodePool limits,
    topology) depends only on the shape and the option, so the options that fit the shape are sorted
    once; each call walks that list and returns the first option that passes the dynamic checks,
    evaluating topology once per zone. Same key, same answer, O(1) amortised instead of O(options).
    """
    cache: dict[int, list[Option]] = self.__dict__.setdefault("_ranked", {})
    ranked = cache.get(shape.index)
    if ranked is None:
        options = shape.cls.options
        ranked = []
        if options:
            alloc = np.array([self.option_vectors[o.index] for o in options])
            demand = shape.demand
            fits = np.all(demand <= alloc + sched._EPS, axis=1)
            needed = demand > 0
            per_node = np.maximum(1.0, np.floor(np.min(alloc[:, needed] / demand[needed], axis=1)))
            keys = [
                (*o.rank_key()[:3], o.price / per_node[i], o.class_position, o.index)
                for i, o in enumerate(options)
            ]
            ranked = [
                options[i] for i in sorted((i for i in range(len(options)) if fits[i]), key=keys.__getitem__)
            ]
        cache[shape.index] = ranked
    constrained = shape.cls.topology.constrained
    zone_ok: dict[str, bool] = {}
    for option in ranked:
        if zone and option.zone != zone:
            continue
        if (option.group.name, option.zone) in self.inp.unavailable or not self.within_limits(option):
            continue
        if constrained:
            ok = zone_ok.get(option.zone)
            if ok is None:
                ok = zone_ok[option.zone] = topo.allowed(shape.cls.topology, self.option_probes[option.index])
            if not ok:
                continue
        return option
    return None


def right_sized_cost(plan: Plan, inp: Any) -> float:
    """The plan's cost if every new node were the cheapest option of its zone and capacity type that holds
    what was packed onto it (Karpenter's "cheapest type that fits the claim", applied after packing)."""
    options = build_options(inp.node_pools, inp.node_classes, inp.groups, inp.catalogue, [], {})
    by_key = {p.key: p for p in inp.pods}
    total = 0.0
    for node in plan.new_nodes:
        used = {"pods": len(node.pods)}
        for key in node.pods:
            for name, amount in by_key[key].requests.items():
                used[name] = used.get(name, 0) + amount
        total += min(
            o.price
            for o in options
            if o.zone == node.zone
            and o.capacity_type == node.capacity_type
            and all(amount <= o.allocatable.get(name, 0) for name, amount in used.items())
        )
    return total


def main(sizes: list[int]) -> None:
    its = port_instance_types()
    for n in sizes:
        pods = make_diverse_pods(n)
        inp = scheduling_input(pods)
        row: dict[str, Any] = {"pods": n}
        plans = {}
        for label, method in (("as is", ORIGINAL_BEST_OPTION), ("ranked", ranked_best_option)):
            sched._Solver.best_option = method  # type: ignore[method-assign]
            start = time.perf_counter()
            plans[label] = sched.solve(inp)
            row[label] = time.perf_counter() - start
        sched._Solver.best_option = ORIGINAL_BEST_OPTION  # type: ignore[method-assign]
        start = time.perf_counter()
        port = kp.solve(pods, its)
        row["port"] = time.perf_counter() - start
        same = [(x.instance_group, x.instance_type, x.zone, x.pods) for x in plans["as is"].new_nodes] == [
            (x.instance_group, x.instance_type, x.zone, x.pods) for x in plans["ranked"].new_nodes
        ]
        problems = check_placement(hpscaler_nodes(plans["ranked"], pods), pods)
        print(
            f"{n:>6} pods: as is {row['as is']:.2f}s ({n / row['as is']:.0f} pods/s), ranked best_option "
            f"{row['ranked']:.2f}s ({n / row['ranked']:.0f} pods/s), port {row['port']:.2f}s "
            f"({n / row['port']:.0f} pods/s) -> ranked/port {row['port'] / row['ranked']:.1f}x; "
            f"same plan: {same}; checks: {problems or 'ok'}; "
            f"cost as planned ${plans['ranked'].cost_per_hour:,.0f}/h, "
            f"right-sized ${right_sized_cost(plans['ranked'], inp):,.0f}/h, port ${port.cost:,.0f}/h",
            flush=True,
        )


if __name__ == "__main__":
    main([int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "1000,5000,10000,20000").split(",")])
