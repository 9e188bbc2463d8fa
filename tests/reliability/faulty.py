"""Running daemons behind `Chaos` proxies on a fake world, and the invariants every fault test checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from daemon_harness import Harness, wait_for, web_pod

from hpscaler.daemon.app import Daemon
from hpscaler.daemon.drain import DISRUPTED_TAINT, INTERRUPTED_TAINT
from hpscaler.daemon.state import instance_id_of
from hpscaler.testing.chaos import Chaos, ProcessKilled


@dataclass
class Ledger:
    """What every daemon incarnation did to the world, across restarts."""

    evictions: Counter[str] = field(default_factory=Counter)  # pod key -> successful evictions

    def wrap_evictions(self, kubernetes: object) -> None:
        """Count every eviction the Eviction API admitted (a second one would shorten grace periods)."""
        inner = kubernetes.evict_pod  # type: ignore[attr-defined]

        async def evict_pod(namespace: str, name: str, grace_seconds: int | None = None) -> str:
            terminating = kubernetes.is_terminating(f"{namespace}/{name}")  # type: ignore[attr-defined]
            outcome: str = await inner(namespace, name, grace_seconds)
            if outcome == "evicted":
                self.evictions[f"{namespace}/{name}" + (" (again)" if terminating else "")] += 1
            return outcome

        kubernetes.evict_pod = evict_pod  # type: ignore[attr-defined]

    def evicted_twice(self) -> list[str]:
        """Pods the Eviction API admitted more than once, or admitted while already terminating."""
        return [k for k, n in self.evictions.items() if n > 1 or k.endswith("(again)")]


def faulty_daemon(h: Harness, chaos: Chaos) -> Daemon:
    """A daemon on the harness's world whose every backend call goes through `chaos`."""
    world = h.world
    return h.new_daemon(
        kubernetes=chaos.wrap("kubernetes", world.kubernetes),
        hyperpod=chaos.wrap("hyperpod", world.hyperpod),
        scores=chaos.wrap("placement", world.placement),
        interruptions=chaos.wrap("interruptions", world.interruptions),
    )


@asynccontextmanager
async def incarnation(h: Harness, chaos: Chaos) -> AsyncIterator[Daemon]:
    """Run a faulty daemon for the body of the `async with`; a kill ends it as SIGKILL would."""
    daemon = faulty_daemon(h, chaos)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            yield daemon
            daemon.stop()
    except* ProcessKilled:
        pass


async def run_until_killed(h: Harness, chaos: Chaos, within: float) -> bool:
    """Run a daemon until `chaos` kills it (True) or `within` virtual seconds pass (False)."""
    daemon = faulty_daemon(h, chaos)
    killed = False
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            with anyio.move_on_after(within):
                await daemon.stopped.wait()
            daemon.stop()
    except* ProcessKilled:
        killed = True
    return killed


def add_pods(h: Harness, count: int, prefix: str = "w") -> None:
    """`count` Deployment pods of 2 CPUs: three fit on an ml.c5.2xlarge."""
    for i in range(count):
        h.world.kubernetes.add_pod(web_pod(f"{prefix}-{i}", cpu=2000))


async def scale_to_zero(h: Harness) -> None:
    """Delete every pod and wait until every node is gone."""
    for pod in h.world.kubernetes.pods():
        h.world.kubernetes.remove_pod(pod.key)
    await wait_for(lambda: not h.world.hyperpod.nodes() and not h.world.kubernetes.nodes(), 1800)


def launched(h: Harness) -> int:
    """Instances HyperPod ever launched for this cluster (each is billed from its start)."""
    return len({r.logical_id for r in h.world.hyperpod.meter_records()})


def tainted_live_nodes(h: Harness) -> list[str]:
    """Nodes still carrying one of hpscaler's disruption taints although their instance lives on."""
    alive = {n.instance_id for n in h.world.hyperpod.nodes() if n.status.value == "Running"}
    keys = {DISRUPTED_TAINT.key, INTERRUPTED_TAINT.key}
    return [
        n.name
        for n in h.world.kubernetes.nodes()
        if instance_id_of(n) in alive and any(t.key in keys for t in n.taints)
    ]


def all_running(h: Harness, count: int) -> bool:
    """`count` pods exist and every one is bound and Running."""
    pods = h.world.kubernetes.pods()
    return len(pods) == count and all(p.phase == "Running" and p.node_name for p in pods)
