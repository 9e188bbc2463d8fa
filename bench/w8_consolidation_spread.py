"""W8: consolidation of 1,000 nodes whose pods carry DoNotSchedule zone spreads.

W5's cluster (ml.c5.4xlarge at 25-35% CPU requests, 20 apps with PodDisruptionBudgets, 1% of the
pods blocked by their budget, 5% of the nodes with a do-not-disrupt pod) spread over 3 zones, with
every pod carrying its app's `topologySpreadConstraints` (zone, maxSkew 1, DoNotSchedule). The apps
are dealt to the zones in turn, so every app starts balanced within its skew.

Timed: one `decide_consolidation()` call at a 100% budget (CPU seconds, median of repeats). The
decision is checked by replaying it: removal by removal, the full scheduler (which enforces the
spreads) must place every pod of the removed node on the nodes that stay.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

from bench.common import Result, Row
from bench.w5_consolidation import BLOCKED_APP, decide
from bench.w5_consolidation import cluster as w5_cluster
from hpscaler.catalogue import load_catalogue
from hpscaler.model import LABEL_ZONE, LabelSelector, Node, TopologySpread, as_pending
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import SchedulingInput

TARGET_SECONDS = 2.0
ZONES = ("us-west-2a", "us-west-2b", "us-west-2c")


def cluster(n_nodes: int) -> tuple[list[Node], Any]:
    """W5's cluster over 3 zones; each pod's app is the one whose count in the pod's zone is lowest
    against its other zones, so every app starts within its skew (the blocked app keeps its pods)."""
    nodes, pdbs = w5_cluster(n_nodes)
    apps = sorted({p.labels["app"] for n in nodes for p in n.pods} - {BLOCKED_APP})
    counts = {a: dict.fromkeys(ZONES, 0) for a in [*apps, BLOCKED_APP]}
    out = []
    for i, node in enumerate(nodes):
        zone = ZONES[i % len(ZONES)]
        pods = []
        for pod in node.pods:
            app = pod.labels["app"]
            if app != BLOCKED_APP:
                app = min(apps, key=lambda a: (counts[a][zone] - min(counts[a].values()), counts[a][zone]))
            counts[app][zone] += 1
            spread = TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", LabelSelector((("app", app),)))
            pods.append(
                replace(
                    pod,
                    name=f"{app}-{pod.name.split('-')[-1]}",
                    labels={"app": app},
                    topology_spread=(spread,),
                )
            )
        out.append(replace(node, labels={**node.labels, LABEL_ZONE: zone}, pods=pods))
    return out, pdbs


def replay(nodes: list[Node], decision: Any) -> int:
    """Pods the full scheduler cannot place when the removals are replayed in the decision's order.

    Each removed node's pods (with those moved onto it earlier) go through `solve()` onto the nodes
    that stay, no new nodes allowed, and stay where it puts them. The scheduler checks every
    constraint (capacity, spreads against the counts at that moment), independently of the fast
    path consolidation takes.
    """
    staying = {n.name: replace(n, pods=list(n.pods)) for n in nodes}
    failed = 0
    for removal in decision.remove:
        node = staying.pop(removal.node)
        inp = SchedulingInput(
            pods=[as_pending(p) for p in node.pods],
            nodes=list(staying.values()),
            node_pools=(),
            node_classes=(),
            groups=(),
            catalogue=load_catalogue(),
        )
        plan = solve(inp)
        failed += len(plan.unschedulable) + sum(len(n.pods) for n in plan.new_nodes)
        by_key = {p.key: p for p in node.pods}
        for name, keys in plan.existing.items():
            staying[name].pods.extend(replace(by_key[k], node_name=name, phase="Running") for k in keys)
    return failed


def start_skew(nodes: list[Node]) -> int:
    counts: dict[str, dict[str, int]] = {}
    for node in nodes:
        for pod in node.pods:
            per = counts.setdefault(pod.labels["app"], {z: 0 for z in ZONES})
            per[node.labels[LABEL_ZONE]] += 1
    return max(max(c.values()) - min(c.values()) for c in counts.values())


def run(quick: bool = False) -> Result:
    n_nodes = 200 if quick else 1000
    repeat = 1 if quick else 3
    nodes, pdbs = cluster(n_nodes)
    times = []
    decision: Any = None
    for _ in range(repeat):
        start = time.process_time()
        decision = decide(nodes, pdbs, "100%")
        times.append(time.process_time() - start)
    seconds = statistics.median(times)
    homeless = replay(nodes, decision)
    skew = start_skew(nodes)
    print(
        f"  W8 {n_nodes} nodes with zone spreads (start skew up to {skew}): decision {seconds:.2f} CPU s "
        f"(runs {', '.join(f'{t:.2f}' for t in times)}), removes {len(decision.remove)}; "
        f"{homeless} of the moved pods fit nowhere",
        flush=True,
    )
    result = Result("W8")
    result.data = {
        "nodes": n_nodes,
        "cpu_seconds": seconds,
        "runs": times,
        "removed": len(decision.remove),
        "unplaced_pods": homeless,
        "start_skew": skew,
    }
    result.rows.append(
        Row(
            "W8",
            f"decision CPU s, {n_nodes:,} nodes, zone spreads (100% budget)",
            seconds,
            None,
            None,
            f"<= {TARGET_SECONDS:g} s, plan valid",
            seconds <= TARGET_SECONDS and homeless == 0,
            "s",
            f"removes {len(decision.remove)} nodes; replayed removal by removal through the full scheduler, "
            f"{homeless} of their pods find no place",
        )
    )
    return result
