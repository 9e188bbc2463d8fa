"""Prometheus metrics, named like Karpenter's where the meaning is the same so dashboards carry over.

The daemon's loops record typed events (`hpscaler.daemon.events`), counted by the `EventCounts`
hook, and keep latency samples (`Stats`); this collector maps them to metric families at scrape
time, so the loops never depend on the metrics library. `EVENT_METRICS` says which event feeds
which metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import (
    CloudProviderError,
    DaemonEvent,
    EventCounts,
    InterruptionOutcome,
    InterruptionReceived,
    InterruptionUnreadable,
    LaunchFailed,
    NodeCreated,
    NodeDisrupted,
    NodeRegistered,
    WatchLost,
)

SCHEDULING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)

# Which event counts feed which counter (the metric without Prometheus' `_total`).
EVENT_METRICS: dict[type[DaemonEvent], str] = {
    NodeCreated: "karpenter_nodeclaims_created",
    NodeRegistered: "karpenter_nodeclaims_registered",
    InterruptionReceived: "karpenter_interruption_received_messages",
    InterruptionUnreadable: "karpenter_interruption_received_messages",
    InterruptionOutcome: "karpenter_interruption_actions_performed",
    CloudProviderError: "karpenter_cloudprovider_errors",
    WatchLost: "karpenter_cloudprovider_errors",
    LaunchFailed: "karpenter_cloudprovider_instance_launch_failures",
    NodeDisrupted: "karpenter_voluntary_disruption_decisions",
}
# Interruption outcomes as Karpenter's action types.
INTERRUPTION_ACTIONS = {
    "handled": "CordonAndDrain",
    "replacement-requested": "Replace",
    "rebalance-preprovisioned": "PreProvision",
}


def histogram(name: str, documentation: str, samples: Sequence[float], buckets: Sequence[float]) -> Metric:
    """A histogram family from raw samples."""
    ordered = sorted(samples)
    counts, index = [], 0
    for bound in buckets:
        while index < len(ordered) and ordered[index] <= bound:
            index += 1
        counts.append((str(bound), float(index)))
    counts.append(("+Inf", float(len(ordered))))
    return HistogramMetricFamily(name, documentation, buckets=counts, sum_value=sum(ordered))


class DaemonCollector(Collector):
    """Reads a running daemon's context on every scrape; `context` returns None while on standby."""

    def __init__(self, context: Callable[[], DaemonContext | None], is_leader: Callable[[], bool]) -> None:
        self._context = context
        self._is_leader = is_leader

    def collect(self) -> Iterator[Metric]:
        """Metric families for the current state."""
        leader = GaugeMetricFamily("hpscaler_leader", "1 when this replica holds the leader lease")
        leader.add_metric([], 1.0 if self._is_leader() else 0.0)
        yield leader
        ctx = self._context()
        if ctx is None:
            return
        yield from _node_metrics(ctx)
        yield from _interruption_metrics(ctx.stats.events)
        yield from _failure_metrics(ctx.stats.events)
        yield from _capacity_metrics(ctx)


def _node_metrics(ctx: DaemonContext) -> Iterator[Metric]:
    """Pending pods, nodes asked for, registered and in flight, and the scheduler's durations."""
    events = ctx.stats.events
    groups = ctx.groups
    _, pending = ctx.cache.snapshot()
    queue = GaugeMetricFamily("karpenter_scheduler_queue_depth", "Pending pods waiting to be scheduled")
    queue.add_metric([], float(len(pending)))
    yield queue

    created = CounterMetricFamily(
        "karpenter_nodeclaims_created",
        "Nodes requested from HyperPod",
        labels=["nodepool", "instance_group", "capacity_type"],
    )
    for group, value in events.by(NodeCreated, "group").items():
        pool = ctx.pool_for_group(group)
        capacity = groups[group].capacity_type.value if group in groups else ""
        created.add_metric([pool.name if pool else "", group, capacity], float(value))
    yield created

    registered = CounterMetricFamily(
        "karpenter_nodeclaims_registered",
        "Joining nodes given what their plan assumed (registration)",
        labels=["nodepool"],
    )
    for pool_name, value in events.by(NodeRegistered, "node_pool").items():
        registered.add_metric([pool_name], float(value))
    yield registered

    inflight = GaugeMetricFamily("hpscaler_inflight_nodes", "Nodes requested that have not joined yet")
    inflight.add_metric([], float(len(ctx.inflight)))
    yield inflight

    yield histogram(
        "karpenter_scheduler_scheduling_duration_seconds",
        "Duration of one scheduling simulation",
        list(ctx.stats.decision_seconds),
        SCHEDULING_BUCKETS,
    )
    yield histogram(
        "hpscaler_interruption_taint_latency_seconds",
        "From interruption notice to node tainted",
        list(ctx.stats.taint_latency),
        LATENCY_BUCKETS,
    )


def _interruption_metrics(events: EventCounts) -> Iterator[Metric]:
    """Interruption messages received, and what was done about them."""
    received = CounterMetricFamily(
        "karpenter_interruption_received_messages",
        "Interruption messages received",
        labels=["message_type"],
    )
    for kind, value in events.by(InterruptionReceived, "kind").items():
        received.add_metric([kind], float(value))
    received.add_metric(["unknown"], float(events.count(InterruptionUnreadable)))
    yield received

    actions = CounterMetricFamily(
        "karpenter_interruption_actions_performed",
        "Actions taken on interruption messages",
        labels=["action_type"],
    )
    for outcome, action in INTERRUPTION_ACTIONS.items():
        actions.add_metric([action], float(events.count(InterruptionOutcome, outcome=outcome)))
    yield actions


def _failure_metrics(events: EventCounts) -> Iterator[Metric]:
    """Failed calls, launches given up, and nodes consolidation removed."""
    errors = CounterMetricFamily(
        "karpenter_cloudprovider_errors", "Failed calls to AWS or the Kubernetes API", labels=["provider"]
    )
    by_provider = {"hyperpod": 0, **events.by(CloudProviderError, "provider")}
    by_provider["kubernetes"] = by_provider.get("kubernetes", 0) + events.count(WatchLost)
    for provider, value in sorted(by_provider.items()):
        errors.add_metric([provider], float(value))
    yield errors

    launches = CounterMetricFamily(
        "karpenter_cloudprovider_instance_launch_failures", "Launches given up (no capacity or timeout)"
    )
    launches.add_metric([], float(events.count(LaunchFailed)))
    yield launches

    disrupted = CounterMetricFamily(
        "karpenter_voluntary_disruption_decisions",
        "Nodes removed by consolidation",
        labels=["decision", "reason"],
    )
    for reason, value in events.by(NodeDisrupted, "reason").items():
        disrupted.add_metric(["delete", reason], float(value))
    yield disrupted


def _capacity_metrics(ctx: DaemonContext) -> Iterator[Metric]:
    """Offerings backing off after running out of capacity, and NodePool limits."""
    available = GaugeMetricFamily(
        "karpenter_cloudprovider_instance_type_offering_available",
        "1 unless the instance group's offering is backing off after running out of capacity",
        labels=["instance_group", "instance_type", "capacity_type", "zone"],
    )
    now = ctx.clock.now()
    for offering in ctx.config.instance_groups:
        for zone in offering.zones:
            off = ctx.unavailable.is_unavailable(offering.name, zone, now)
            for type_name in offering.instance_types:
                labels = [offering.name, type_name, offering.capacity_type.value, zone]
                available.add_metric(labels, 0.0 if off else 1.0)
    yield available

    limits = GaugeMetricFamily(
        "karpenter_nodepools_limit", "NodePool limits", labels=["nodepool", "resource_type"]
    )
    for pool in ctx.config.node_pools:
        for resource, amount in pool.limits:
            limits.add_metric([pool.name, resource], float(amount))
    yield limits


def registry_for(
    context: Callable[[], DaemonContext | None], is_leader: Callable[[], bool]
) -> CollectorRegistry:
    """A registry exposing the daemon's metrics (and nothing process-global, so tests stay isolated)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(context, is_leader))
    return registry
