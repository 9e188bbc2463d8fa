"""Invariants checked while a scenario runs, every `checkSeconds` of virtual time, not only at the end.

Definitions (each violation is reported once, with the virtual time it was first seen):

- **Lineage.** Every pod the scenario's driver creates starts a lineage, named by that pod's key
  (its *origin*). When a controller replaces a pod (its node died, it was evicted), the replacement
  carries the lineage on (`web-3` -> `web-3-r1` -> `web-3-r2`). A lineage *ends* when the driver
  removes it (a Deployment scaled down) or when its Job pod Succeeds.
- **Lost pod.** A lineage that has not ended but has no live pod (pending, running or terminating)
  at a check. A pod killed with its node, with or without notice, is not lost as long as its
  controller re-created it; the report counts those re-creations.
- **Killed despite a notice.** A pod that was on an instance when its interruption notice came and
  still died with the instance instead of being evicted within its grace period; and any pod that
  died because hpscaler removed its node (a reason other than a Spot reclaim).
- **Do-not-disrupt.** A node whose instance was not reclaimed must not be removed while a pod
  annotated `karpenter.sh/do-not-disrupt: "true"` is bound to it, and such a pod must not be
  evicted or deleted from a node that was not reclaimed. Every removal other than a Spot reclaim
  (consolidation, expiry, a deleted Node) counts as hpscaler's choice.
- **NodePool limits.** At every check, the nodes (launching or running, not shutting down) of each
  NodePool fit every one of its `limits` (`nodes`, `cpu`, `memory`...); a node still launching
  counts at the largest instance type its group allows.
- **Cost.** At every check, what was billed so far is not above what the same instance-seconds
  would have cost On-Demand.
- **Gang in one zone.** At every check, the bound members of each gang run in one availability zone
  (the report lists each gang with its members and the most zones it ran in at once).
- **Pending while capacity exists.** No pod stays pending longer than `maxPendingSeconds` while
  capacity exists. Capacity exists at a check when some NodePool is below its limits by at least
  one node and one of its instance groups has an offering with room (the simulated capacity). A
  check without capacity restarts the clock of every pending pod. Checks are `checkSeconds`
  apart, so a capacity gap shorter than that between two checks is not seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskStatus

from hpscaler.backends.types import NodeStatus
from hpscaler.clock import Clock
from hpscaler.config import LoadedConfig
from hpscaler.daemon.context import DaemonContext
from hpscaler.fake import World, node_name
from hpscaler.model import ANNOTATION_DO_NOT_DISRUPT, Pod
from hpscaler.scheduling.gangs import gang_key

SPOT_RECLAIM = "spot-interruption"
NATURAL_DEATHS = (SPOT_RECLAIM, "instance-terminated")


def clock_text(seconds: float) -> str:
    """Virtual time since the start as H:MM:SS (hours may pass 24)."""
    total = round(seconds)
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


@dataclass(frozen=True, slots=True)
class Violation:
    """An invariant broken at virtual time `t` (seconds since the start)."""

    t: float
    kind: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"at {clock_text(self.t)}: {self.message}"


@dataclass(slots=True)
class Ledger:
    """The lineages the driver started and ended (see the module docstring)."""

    created: dict[str, float] = field(default_factory=dict)
    removed: dict[str, float] = field(default_factory=dict)
    open: set[str] = field(default_factory=set)

    def create(self, origin: str, t: float) -> None:
        """The driver created the pod `origin`."""
        self.created[origin] = t
        self.open.add(origin)

    def remove(self, origin: str, t: float) -> None:
        """The driver ended the lineage `origin` (a scale-down)."""
        self.removed[origin] = t
        self.open.discard(origin)


def _protected(pod: Pod) -> bool:
    return pod.annotations.get(ANNOTATION_DO_NOT_DISRUPT) == "true"


@dataclass(slots=True)
class InvariantChecker:
    """Checks the world against the invariants every `every` seconds; `violations` keeps the first of each."""

    clock: Clock
    world: World
    config: LoadedConfig
    ctx: DaemonContext
    ledger: Ledger
    every: float = 60.0
    max_pending_seconds: float = 900.0
    noticed_pods: set[str] = field(default_factory=set)  # pods on instances when their notice came
    start: float = 0.0
    checks: int = 0
    violations: list[Violation] = field(default_factory=list)
    lost: int = 0
    peak_nodes: tuple[int, float] = (0, 0.0)  # running nodes, when
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _kills_done: int = 0
    _removals_done: int = 0
    _terminations_done: int = 0
    _pending_since: dict[str, float] = field(default_factory=dict)
    _pools: dict[str, str] = field(default_factory=dict)  # instance group -> its NodePool
    _smallest: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> least of each resource
    _largest: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> most of each resource
    _gang_members: dict[str, int] = field(default_factory=dict)  # gang -> most member pods alive at once
    _gang_zones: dict[str, int] = field(default_factory=dict)  # gang -> most zones its members ran in at once

    def __post_init__(self) -> None:
        for group in self.config.instance_groups:
            pool = self.ctx.pool_for_group(group.name)
            if pool is not None:
                self._pools[group.name] = pool.name
            sizes = [self._capacity(t) for t in group.instance_types]
            names = {r for size in sizes for r in size}
            self._smallest[group.name] = {r: min(s.get(r, 0) for s in sizes) for r in names}
            self._largest[group.name] = {r: max(s.get(r, 0) for s in sizes) for r in names}

    def _capacity(self, instance_type: str) -> dict[str, int]:
        return {**self.ctx.catalogue.get(instance_type).capacity(), "nodes": 1}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Check every `every` seconds of loop time until cancelled."""
        self.start = self.clock.now()
        task_status.started()
        while True:
            await anyio.sleep(self.every)
            self.check()

    def check(self) -> None:
        """One check of every invariant against the world as it is now."""
        self.checks += 1
        now = self.clock.now()
        reclaimed = {node_name(r.instance_id) for r in self.world.hyperpod.reclaims}
        self._check_lineages(now)
        self._check_kills()
        self._check_removals(reclaimed)
        self._check_terminations(reclaimed)
        self._check_limits(now)
        self._check_cost(now)
        self._check_pending(now)
        self._check_gangs(now)

    def violate(self, t: float, kind: str, subject: str, message: str) -> None:
        """Record a violation at epoch time `t`, once per (kind, subject)."""
        if (kind, subject) in self._seen:
            return
        self._seen.add((kind, subject))
        self.violations.append(Violation(t - self.start, kind, subject, message))

    def _check_lineages(self, now: float) -> None:
        kube = self.world.kubernetes
        live = kube.live_origins()
        finished = kube.finished_origins
        for origin in sorted(self.ledger.open):
            if origin in finished:
                self.ledger.open.discard(origin)
            elif origin not in live:
                self.ledger.open.discard(origin)
                self.lost += 1
                self.violate(
                    now,
                    "lost",
                    origin,
                    f"pod {origin} lost: no live pod, not finished, not removed by the driver",
                )

    def _check_kills(self) -> None:
        kills = self.world.kubernetes.kills
        for kill in kills[self._kills_done :]:
            if kill.key in self.noticed_pods:
                self.violate(
                    kill.time,
                    "killed-after-notice",
                    kill.key,
                    f"pod {kill.key} killed ({kill.reason}) before its grace period although a notice came",
                )
            elif kill.reason not in NATURAL_DEATHS:
                self.violate(
                    kill.time,
                    "killed-by-removal",
                    kill.key,
                    f"pod {kill.key} killed by node removal ({kill.reason})",
                )
        self._kills_done = len(kills)

    def _check_removals(self, reclaimed: set[str]) -> None:
        removals = self.world.kubernetes.node_removals
        for removal in removals[self._removals_done :]:
            if removal.reason == SPOT_RECLAIM or removal.name in reclaimed:
                continue
            for pod in removal.pods:
                if _protected(pod):
                    self.violate(
                        removal.time,
                        "do-not-disrupt-node-removed",
                        removal.name,
                        f"node {removal.name} removed ({removal.reason}) while it ran "
                        f"do-not-disrupt pod {pod.key}",
                    )
        self._removals_done = len(removals)

    def _check_terminations(self, reclaimed: set[str]) -> None:
        terminations = self.world.kubernetes.terminations
        for ended in terminations[self._terminations_done :]:
            if ended.node and ended.node not in reclaimed and _protected(ended.pod):
                self.violate(
                    ended.time,
                    "do-not-disrupt-evicted",
                    ended.key,
                    f"do-not-disrupt pod {ended.key} {'evicted' if ended.via == 'evict' else 'deleted'} "
                    f"from node {ended.node}, which was not reclaimed",
                )
        self._terminations_done = len(terminations)

    def _pool_usage(self) -> dict[str, dict[str, int]]:
        """NodePool name -> resources (and "nodes") of its launching and running nodes."""
        usage: dict[str, dict[str, int]] = {}
        for node in self.world.hyperpod.nodes():
            pool = self._pools.get(node.group)
            if node.status is NodeStatus.SHUTTING_DOWN or pool is None:
                continue
            # A launching node has no type yet: count it at the largest its group allows.
            size = self._capacity(node.instance_type) if node.instance_type else self._largest[node.group]
            total = usage.setdefault(pool, {})
            for resource, amount in size.items():
                total[resource] = total.get(resource, 0) + amount
        return usage

    def _check_limits(self, now: float) -> None:
        running = sum(1 for n in self.world.hyperpod.nodes() if n.status is NodeStatus.RUNNING)
        if running > self.peak_nodes[0]:
            self.peak_nodes = (running, now - self.start)
        usage = self._pool_usage()
        for pool in self.config.node_pools:
            used = usage.get(pool.name, {})
            for resource, limit in pool.limits:
                if used.get(resource, 0) > limit:
                    self.violate(
                        now,
                        f"limit:{resource}",
                        pool.name,
                        f"NodePool {pool.name} holds {used.get(resource, 0)} {resource}, limit {limit}",
                    )

    def _check_cost(self, now: float) -> None:
        cost = self.world.hyperpod.cost()
        on_demand = self.world.hyperpod.on_demand_equivalent_cost()
        if cost > on_demand + 1e-9:
            self.violate(
                now, "cost", "cluster", f"cost {cost:.2f} is above the all-On-Demand cost {on_demand:.2f}"
            )

    def capacity_exists(self) -> bool:
        """Some NodePool can still grow by a node and one of its groups has an offering with room."""
        usage = self._pool_usage()
        hyperpod = self.world.hyperpod
        for pool in self.config.node_pools:
            used = usage.get(pool.name, {})
            for group, owner in self._pools.items():
                smallest = self._smallest[group]
                if owner != pool.name or any(
                    used.get(r, 0) + smallest.get(r, 0) > limit for r, limit in pool.limits
                ):
                    continue
                if hyperpod.has_room(group):
                    return True
        return False

    def _check_pending(self, now: float) -> None:
        kube = self.world.kubernetes
        pending = kube.pending_keys()
        for key in [k for k in self._pending_since if k not in pending]:
            del self._pending_since[key]
        if not pending:
            return
        if not self.capacity_exists():
            self._pending_since = dict.fromkeys(pending, now)
            return
        for key in sorted(pending):
            since = self._pending_since.get(key)
            if since is None:
                pod = kube.pod(key)
                since = self._pending_since[key] = pod.created if pod is not None and pod.created else now
            if now - since > self.max_pending_seconds:
                self.violate(
                    now,
                    "stuck-pending",
                    key,
                    f"pod {key} pending for more than {self.max_pending_seconds:.0f}s while capacity existed",
                )

    def _check_gangs(self, now: float) -> None:
        kube = self.world.kubernetes
        node_zones = {node.name: node.zone for node in kube.nodes()}
        running: dict[str, set[str]] = {}
        alive: dict[str, int] = {}
        for pod in kube.pods():
            if pod.gang is None or pod.phase not in ("Pending", "Running"):
                continue
            gang = gang_key(pod)
            alive[gang] = alive.get(gang, 0) + 1
            self._gang_zones.setdefault(gang, 0)
            if pod.node_name:
                running.setdefault(gang, set()).add(node_zones.get(pod.node_name, ""))
        for gang, count in alive.items():
            self._gang_members[gang] = max(self._gang_members.get(gang, 0), count)
        for gang, zones in running.items():
            self._gang_zones[gang] = max(self._gang_zones[gang], len(zones))
            if len(zones) > 1:
                self.violate(
                    now,
                    "gang-zones",
                    gang,
                    f"gang {gang} ran in {len(zones)} zones at once: {', '.join(sorted(zones))}",
                )

    def gangs(self) -> list[dict[str, Any]]:
        """Every gang seen: its name, the most member pods it had at once, and the most zones its bound
        members ran in at once."""
        return [
            {"name": gang, "members": members, "maxZonesAtOnce": self._gang_zones.get(gang, 0)}
            for gang, members in sorted(self._gang_members.items())
        ]

    def summary(self) -> dict[str, Any]:
        """The report's view of the checks and the lineages."""
        kube = self.world.kubernetes
        live = kube.live_origins()
        return {
            "checks": self.checks,
            "checkSeconds": self.every,
            "lineages": {
                "created": len(self.ledger.created),
                "finished": sum(1 for o in self.ledger.created if o in kube.finished_origins),
                "removed": len(self.ledger.removed),
                "live": sum(1 for o in self.ledger.created if o in live),
                "lost": self.lost,
            },
        }
