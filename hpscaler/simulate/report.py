"""What a simulation measured: the JSON report, its invariants, and a readable timeline."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskStatus

from hpscaler.backends.types import NodeStatus, WatchKind
from hpscaler.clock import Clock
from hpscaler.config import LoadedConfig
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import InterruptionOutcome, InterruptionReceived, NodeDisrupted
from hpscaler.fake import World
from hpscaler.model import CapacityType
from hpscaler.simulate.chaos import ChaosCounts, ChaosEvent, planned_counts
from hpscaler.simulate.invariants import InvariantChecker
from hpscaler.simulate.kueue import queue_lines
from hpscaler.simulate.scenario import Scenario

REPORT_SCHEMA_VERSION = 1  # raised when a field of `simulate --output json` changes meaning or goes away


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class Recorder:
    """Watches the world as a user would: pod latencies, node counts over time, notable moments."""

    clock: Clock
    world: World
    sample_seconds: float
    first_pending: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    scheduled: set[str] = field(default_factory=set)
    noticed_pods: set[str] = field(default_factory=set)
    noticed_instances: set[str] = field(default_factory=set)
    notes: list[tuple[float, str]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    removed_unscheduled: int = 0  # pods deleted (scaled away) before they were ever bound
    pending_trace: list[tuple[float, int]] = field(default_factory=list)  # (time, pending) at each change
    start: float = 0.0
    on_sample: Callable[[float], None] | None = None  # told the simulated seconds at each sample (progress)

    def note(self, text: str) -> None:
        """Remember a scenario action for the timeline."""
        self.notes.append((self.clock.now() - self.start, text))

    def noticed(self, world: World, instance_id: str) -> None:
        """An interruption notice is about to be sent: its node's pods must not die before their grace."""
        self.noticed_instances.add(instance_id)
        for node in world.kubernetes.nodes():
            if node.provider_id.endswith(instance_id):
                self.noticed_pods.update(p.key for p in world.kubernetes.pods() if p.node_name == node.name)

    def sample(self) -> None:
        """One row of the timeline."""
        nodes = self.world.hyperpod.nodes()
        running = [n for n in nodes if n.status is NodeStatus.RUNNING]
        pods = self.world.kubernetes.pods()
        t = round(self.clock.now() - self.start)
        if self.samples and self.samples[-1]["t"] == t:
            self.samples.pop()  # the end-of-run sample fell on a periodic one: keep the later, once
        self.samples.append(
            {
                "t": t,
                "spotNodes": sum(1 for n in running if n.capacity_type is CapacityType.SPOT),
                "onDemandNodes": sum(1 for n in running if n.capacity_type is CapacityType.ON_DEMAND),
                "launching": sum(1 for n in nodes if n.status in (NodeStatus.PENDING, NodeStatus.FAILURE)),
                "podsRunning": sum(1 for p in pods if p.phase == "Running"),
                "podsPending": sum(1 for p in pods if p.phase == "Pending"),
                "cost": round(self.world.hyperpod.cost(), 4),
            }
        )
        if self.on_sample is not None:
            self.on_sample(self.clock.now() - self.start)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow pods through the watch and sample the cluster every `sample_seconds`."""
        self.start = self.clock.now()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._sampler, name="simulate:sampler")
            task_status.started()
            async for event in self.world.kubernetes.watch():
                pod = event.pod
                if pod is None or pod.is_daemonset:  # DaemonSet pods come with their nodes
                    continue
                now = self.clock.now()
                if event.kind is WatchKind.DELETED:
                    if self.first_pending.pop(pod.key, None) is not None:
                        self.removed_unscheduled += 1
                        self._trace_pending(now)
                    continue
                self.seen.add(pod.key)
                if not pod.node_name:
                    self.first_pending.setdefault(pod.key, now)
                elif pod.key not in self.scheduled:
                    self.scheduled.add(pod.key)
                    started = self.first_pending.pop(pod.key, None)
                    if started is not None:
                        self.latencies.append(now - started)
                self._trace_pending(now)

    def _trace_pending(self, now: float) -> None:
        count = len(self.first_pending)
        if not self.pending_trace or self.pending_trace[-1][1] != count:
            self.pending_trace.append((now, count))

    async def _sampler(self) -> None:
        while True:
            self.sample()
            await anyio.sleep(self.sample_seconds)


def observed_chaos(world: World) -> ChaosCounts:
    """The faults the world went through, read from its own logs (scripted events included)."""
    hyperpod = world.hyperpod
    offerings = {
        (t, z, g.capacity_type): g.name for g in hyperpod.groups() for z in g.zones for t in g.instance_types
    }
    losses = {
        (change.time, offerings.get(change.offering, ""))
        for change in hyperpod.capacity_changes
        if change.count == 0
    }
    return ChaosCounts(
        interruptions_with_notice=sum(1 for r in hyperpod.reclaims if r.notice),
        interruptions_without_notice=sum(1 for r in hyperpod.reclaims if not r.notice),
        rebalances=len(hyperpod.rebalances),
        capacity_losses=len(losses),
    )


def build_report(
    scenario: Scenario,
    config: LoadedConfig,
    world: World,
    ctx: DaemonContext,
    recorder: Recorder,
    checker: InvariantChecker,
    wall: float,
    *,
    plan: Sequence[ChaosEvent] = (),
    deferred: int = 0,
    missed: int = 0,
) -> dict[str, Any]:
    """The JSON report of one run; the invariants were checked while it ran (`checker`)."""
    kube = world.kubernetes
    now = recorder.clock.now()
    noticed_kills = [k for k in kube.kills if k.key in recorder.noticed_pods]
    cost = world.hyperpod.cost()
    on_demand = world.hyperpod.on_demand_equivalent_cost()
    meters = world.hyperpod.meter_records()
    spot_seconds = sum(m.seconds(now) for m in meters if m.capacity_type is CapacityType.SPOT)
    all_seconds = sum(m.seconds(now) for m in meters)
    launched: dict[str, dict[str, int]] = {}
    for (group, capacity_type), count in sorted(world.hyperpod.launched.items()):
        launched.setdefault(group, {})[capacity_type.value] = count
    events = ctx.stats.events
    peak, peak_at = checker.peak_nodes
    report: dict[str, Any] = {
        "schemaVersion": REPORT_SCHEMA_VERSION,
        "scenario": scenario.name,
        "description": scenario.description,
        "virtualSeconds": scenario.duration,
        "wallSeconds": round(wall, 3),
        "podsScheduled": len(recorder.scheduled),
        "podsTotal": len(recorder.seen),
        "podsRemovedBeforeScheduling": recorder.removed_unscheduled,
        "podsPendingAtEnd": sum(1 for p in kube.pods() if p.phase == "Pending"),
        "podsCompleted": kube.counters.pods_completed,
        "podsRecreated": kube.counters.pods_recreated,
        "pendingToRunningSeconds": {
            "p50": round(percentile(recorder.latencies, 50), 3),
            "p99": round(percentile(recorder.latencies, 99), 3),
            "max": round(max(recorder.latencies, default=0.0), 3),
        },
        "nodesLaunched": launched,
        "nodesPeak": {"running": peak, "t": round(peak_at)},
        "batchAddClusterNodesCalls": world.hyperpod.calls.get("batch_add_nodes", 0),
        "batchDeleteClusterNodesCalls": world.hyperpod.calls.get("batch_delete_nodes", 0),
        "interruptionsHandled": events.count(InterruptionOutcome, outcome="handled"),
        "interruptionMessages": world.interruptions.received,
        # Signals received per source (sqs, agent, taint, hyperpod-events), duplicates included.
        "interruptionSignals": events.by(InterruptionReceived, "source"),
        "interruptionDuplicates": events.count(InterruptionOutcome, outcome="duplicate"),
        "podsKilledBeforeGracePeriod": len(noticed_kills),
        "podsKilledWithoutNotice": sum(1 for k in kube.kills if k.key not in recorder.noticed_pods),
        "evictions": kube.counters.evictions,
        "evictionsBlockedByPDB": kube.counters.evictions_blocked,
        "nodesConsolidated": events.by(NodeDisrupted, "reason"),
        "cost": round(cost, 4),
        "costAllOnDemand": round(on_demand, 4),
        "spotShare": round(spot_seconds / all_seconds, 4) if all_seconds else 0.0,
        "decisionSeconds": {
            "p50": round(percentile(ctx.stats.decision_seconds, 50), 5),
            "p99": round(percentile(ctx.stats.decision_seconds, 99), 5),
        },
        "gangs": checker.gangs(),
        "invariants": checker.summary(),
        "violations": [str(v) for v in checker.violations],
        "violationDetails": [
            {"t": round(v.t), "kind": v.kind, "subject": v.subject, "message": v.message}
            for v in checker.violations
        ],
        "timeline": recorder.samples,
        "notes": [{"t": round(t), "text": text} for t, text in recorder.notes],
    }
    if scenario.chaos is not None:
        report["chaos"] = {
            "seed": scenario.seed,
            "planned": planned_counts(plan).as_dict(),
            "happened": observed_chaos(world).as_dict(),
            "deferred": deferred,
            "missed": missed,
        }
    return report


def report_table(report: dict[str, Any]) -> str:
    """The report for people: headline numbers, then the timeline with the scenario's actions."""
    lat = report["pendingToRunningSeconds"]
    lines = [
        f"Scenario {report['scenario']}: {report['description']}",
        f"  simulated {report['virtualSeconds'] / 3600:.1f} h in {report['wallSeconds']:.1f} s",
        f"  pods scheduled {report['podsScheduled']}/{report['podsTotal']}, "
        f"pending at end {report['podsPendingAtEnd']}",
        f"  pending -> running p50 {lat['p50']:.0f}s  p99 {lat['p99']:.0f}s",
        f"  BatchAddClusterNodes calls {report['batchAddClusterNodesCalls']}, "
        f"BatchDeleteClusterNodes calls {report['batchDeleteClusterNodesCalls']}",
        f"  interruptions handled {report['interruptionsHandled']}, pods killed before grace period "
        f"{report['podsKilledBeforeGracePeriod']}, killed without notice {report['podsKilledWithoutNotice']}",
        f"  cost ${report['cost']:.2f} vs ${report['costAllOnDemand']:.2f} all On-Demand "
        f"(Spot share {report['spotShare']:.0%}), peak {report['nodesPeak']['running']} nodes",
        "  nodes launched: "
        + ", ".join(
            f"{g} {'/'.join(f'{n} {c}' for c, n in by.items())}" for g, by in report["nodesLaunched"].items()
        ),
        "",
        f"  {'TIME':>7} {'SPOT':>5} {'OD':>5} {'LAUNCH':>6} {'RUNNING':>8} {'PENDING':>8} "
        f"{'COST':>9}  EVENTS",
    ]
    notes = list(report["notes"])
    for row in report["timeline"]:
        here = [n["text"] for n in notes if n["t"] <= row["t"]]
        notes = [n for n in notes if n["t"] > row["t"]]
        lines.append(
            f"  {row['t'] // 60:>5}m {row['spotNodes']:>5} {row['onDemandNodes']:>5} {row['launching']:>6} "
            f"{row['podsRunning']:>8} {row['podsPending']:>8} {row['cost']:>9.2f}  {'; '.join(here)}"
        )
    lines.append("")
    checks = report["invariants"]
    lineages = checks["lineages"]
    lines.append(
        f"Invariants checked {checks['checks']} times (every {checks['checkSeconds']:.0f}s): "
        f"{lineages['created']} pods created, {lineages['finished']} finished, {lineages['removed']} "
        f"scaled away, {lineages['live']} live, {lineages['lost']} lost; {report['podsRecreated']} re-created"
    )
    if "chaos" in report:
        chaos = report["chaos"]
        planned, happened = chaos["planned"], chaos["happened"]
        lines.append(
            f"Chaos (seed {chaos['seed']}), happened/planned: "
            + ", ".join(f"{name} {happened[name]}/{planned[name]}" for name in planned)
            + f"; waited for a victim {chaos['deferred']}, missed {chaos['missed']}"
        )
    if "provisioningRequests" in report:
        lines.extend(queue_lines(report["provisioningRequests"]))
    lines.append("Violations: none" if not report["violations"] else "Violations:")
    lines.extend(f"  - {v}" for v in report["violations"])
    return "\n".join(lines)
