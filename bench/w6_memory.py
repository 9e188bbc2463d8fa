"""W6: peak RSS of the daemon holding 10k pods and 1k nodes in its caches.

Each measurement runs in a fresh subprocess (`python -m bench.w6_memory --child PODS NODES`): it
imports the package, builds a `Daemon` (fake-less: nothing but its own state is in the process),
feeds its cluster cache the watch events the watcher would apply (W5's 1,000 ml.c5.4xlarge nodes with
their ~7.3k bound pods, plus pending pods up to 10k in all), then runs one provisioning plan over the cache
(`Provisioner._plan`, the snapshot plus the scheduler) and a consolidation decision with the default
10% disruption budget. Peak RSS is the child's VmHWM (see `peak_rss_kb`).
The baseline is the same child with no pods and no nodes (package imported, daemon built, no state).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from typing import Any

from bench.common import Result, Row

TARGET_MB = 150.0


def _child(n_pods: int, n_nodes: int) -> dict[str, Any]:
    import time
    from dataclasses import replace

    import anyio

    from bench.common import make_generic_pods
    from bench.daemon_env import example_groups, make_config, quiet_logs
    from bench.w5_consolidation import cluster
    from hpscaler.backends.types import WatchEvent, WatchKind
    from hpscaler.catalogue import load_catalogue
    from hpscaler.clock import SystemClock
    from hpscaler.daemon.app import Daemon
    from hpscaler.daemon.context import Backends
    from hpscaler.model import Disruption, DisruptionBudget
    from hpscaler.scheduling.disruption import decide_consolidation
    from hpscaler.scheduling.types import SchedulingInput

    quiet_logs()
    timings: dict[str, float] = {}

    async def main() -> None:
        config = make_config(example_groups())
        daemon = Daemon(config, Backends(None, None), load_catalogue(), SystemClock())  # type: ignore[arg-type]
        if n_nodes == 0 and n_pods == 0:
            return
        nodes, _ = cluster(n_nodes)
        cache = daemon.ctx.cache
        now = time.time()
        started = time.perf_counter()
        serial = 0
        for node in nodes:
            labels = {**node.labels, "karpenter.sh/nodepool": "general"}
            cache.apply(WatchEvent(WatchKind.ADDED, node=replace(node, labels=labels, pods=[])), now)
            for pod in node.pods[: max(0, n_pods - serial)]:
                cache.apply(WatchEvent(WatchKind.ADDED, pod=pod), now)
                serial += 1
        for pod in make_generic_pods(n_pods - serial, prefix="pending"):
            cache.apply(WatchEvent(WatchKind.ADDED, pod=pod), now)
        cache.apply(WatchEvent(WatchKind.SYNCED), now)
        timings["load_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        plan = daemon.provisioner._plan(())
        timings["plan_seconds"] = time.perf_counter() - started
        timings["plan_new_nodes"] = len(plan.new_nodes)
        timings["cached_pods"] = len(cache.pods)
        timings["cached_nodes"] = len(cache.nodes)
        snapshot_nodes, _ = cache.snapshot()
        pool = replace(config.node_pools[0], disruption=Disruption(budgets=(DisruptionBudget("10%"),)))
        started = time.perf_counter()
        decide_consolidation(
            nodes=snapshot_nodes,
            pending=[],
            pool_of=lambda node: pool,
            base=SchedulingInput(
                pods=(), node_pools=(), node_classes=(), groups=(), catalogue=daemon.ctx.catalogue
            ),
            pdbs=[],
            now=now + 3600,
            last_pod_change={},
            disrupting={},
        )
        timings["consolidation_seconds"] = time.perf_counter() - started

    anyio.run(main)
    return {"pods": n_pods, "nodes": n_nodes, "peak_rss_mb": peak_rss_kb() / 1024, **timings}


def peak_rss_kb() -> int:
    """This process's peak RSS: VmHWM of /proc/self/status.

    Not `ru_maxrss`: Linux carries the parent's high-water mark over fork and exec, so a child of a
    big benchmark process would report the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(n_pods: int, n_nodes: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.w6_memory", "--child", str(n_pods), str(n_nodes)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> Result:
    n_pods, n_nodes = (2000, 200) if quick else (10000, 1000)
    empty = measure(0, 0)
    full = measure(n_pods, n_nodes)
    delta = full["peak_rss_mb"] - empty["peak_rss_mb"]
    print(
        f"  W6 {n_pods} pods / {n_nodes} nodes: peak RSS {full['peak_rss_mb']:.1f} MB "
        f"(empty daemon {empty['peak_rss_mb']:.1f} MB, state +{delta:.1f} MB); "
        f"plan {full['plan_seconds']:.2f}s, consolidation {full['consolidation_seconds']:.2f}s",
        flush=True,
    )
    result = Result("W6", data={"empty": empty, "loaded": full})
    result.rows.append(
        Row(
            "W6",
            f"peak RSS, {n_pods:,} pods + {n_nodes:,} nodes",
            full["peak_rss_mb"],
            empty["peak_rss_mb"],
            full["peak_rss_mb"] / empty["peak_rss_mb"],
            f"<= {TARGET_MB:g} MB",
            full["peak_rss_mb"] <= TARGET_MB,
            "MB",
            f"state, one plan and one consolidation pass add {delta:.1f} MB; "
            "baseline = the same child with the package imported and no state",
        )
    )
    return result


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(_child(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        for row in run(quick="--quick" in sys.argv).rows:
            print(row)
