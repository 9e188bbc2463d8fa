"""Prometheus metrics, named like Karpenter's where the meaning is the same so dashboards carry over.

The daemon keeps plain counters and samples (`Stats`); this collector turns them into metric
families at scrape time, so the loops never depend on the metrics library.
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

SCHEDULING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


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
        counters = ctx.stats.counters
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
        for key, value in sorted(counters.items()):
            if key.startswith("nodes_created:"):
                group = key.split(":", 1)[1]
                pool = ctx.pool_for_group(group)
                capacity = groups[group].capacity_type.value if group in groups else ""
                created.add_metric([pool.name if pool else "", group, capacity], float(value))
        yield created

        registered = CounterMetricFamily(
            "karpenter_nodeclaims_registered",
            "Joining nodes given what their plan assumed (registration)",
            labels=["nodepool"],
        )
        for key, value in sorted(counters.items()):
            if key.startswith("nodes_registered:"):
                registered.add_metric([key.split(":", 1)[1]], float(value))
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

        received = CounterMetricFamily(
            "karpenter_interruption_received_messages",
            "Interruption messages received",
            labels=["message_type"],
        )
        for key, value in sorted(counters.items()):
            if key.startswith("interruption_received:"):
                received.add_metric([key.split(":", 1)[1]], float(value))
        received.add_metric(["unknown"], float(counters.get("interruption_junk_messages", 0)))
        yield received

        actions = CounterMetricFamily(
            "karpenter_interruption_actions_performed",
            "Actions taken on interruption messages",
            labels=["action_type"],
        )
        actions.add_metric(["CordonAndDrain"], float(counters.get("interruptions_handled", 0)))
        actions.add_metric(["Replace"], float(counters.get("interruption_replacements_requested", 0)))
        actions.add_metric(["PreProvision"], float(counters.get("rebalance_preprovisioned", 0)))
        yield actions

        errors = CounterMetricFamily(
            "karpenter_cloudprovider_errors", "Failed calls to AWS or the Kubernetes API", labels=["provider"]
        )
        errors.add_metric(["hyperpod"], float(counters.get("cloudprovider_errors", 0)))
        errors.add_metric(["kubernetes"], float(counters.get("watch_errors", 0)))
        yield errors

        launches = CounterMetricFamily(
            "karpenter_cloudprovider_instance_launch_failures", "Launches given up (no capacity or timeout)"
        )
        launches.add_metric([], float(counters.get("launch_failures", 0)))
        yield launches

        disrupted = CounterMetricFamily(
            "karpenter_voluntary_disruption_decisions",
            "Nodes removed by consolidation",
            labels=["decision", "reason"],
        )
        for key, value in sorted(counters.items()):
            if key.startswith("nodes_disrupted:"):
                disrupted.add_metric(["delete", key.split(":", 1)[1]], float(value))
        yield disrupted

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
