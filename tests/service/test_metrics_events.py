"""Recorded daemon events become the Karpenter-named Prometheus metrics, with their labels."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hpscaler.clock import LoopClock
from hpscaler.config import default_config_path, load_config
from hpscaler.daemon.context import Backends, DaemonContext
from hpscaler.daemon.events import (
    CloudProviderError,
    DaemonEvent,
    InterruptionOutcome,
    InterruptionReceived,
    InterruptionUnreadable,
    LaunchFailed,
    NodeCreated,
    NodeDisrupted,
    NodeRegistered,
    ReconcileRan,
    WatchLost,
)
from hpscaler.fake import World
from hpscaler.service.metrics import EVENT_METRICS, registry_for

SPOT = "auto-spot-c5-2x-az1"

# One event of each kind the metrics read, and the sample it must add to.
EXAMPLES: list[tuple[DaemonEvent, str, dict[str, str]]] = [
    (
        NodeCreated(SPOT, "n-1"),
        "karpenter_nodeclaims_created_total",
        {"nodepool": "gpunodepool", "instance_group": SPOT, "capacity_type": "spot"},
    ),
    (
        NodeRegistered("node-1", "i-1", "gpunodepool", 3, (), True),
        "karpenter_nodeclaims_registered_total",
        {"nodepool": "gpunodepool"},
    ),
    (
        InterruptionReceived("spot-interruption", "sqs", "i-1"),
        "karpenter_interruption_received_messages_total",
        {"message_type": "spot-interruption"},
    ),
    (
        InterruptionUnreadable("m-1", "not JSON"),
        "karpenter_interruption_received_messages_total",
        {"message_type": "unknown"},
    ),
    (
        InterruptionOutcome("handled", "i-1"),
        "karpenter_interruption_actions_performed_total",
        {"action_type": "CordonAndDrain"},
    ),
    (
        CloudProviderError("ListClusterNodes", "throttled"),
        "karpenter_cloudprovider_errors_total",
        {"provider": "hyperpod"},
    ),
    (WatchLost("stream reset"), "karpenter_cloudprovider_errors_total", {"provider": "kubernetes"}),
    (
        LaunchFailed(SPOT, "n-2", "InsufficientCapacity"),
        "karpenter_cloudprovider_instance_launch_failures_total",
        {},
    ),
    (
        NodeDisrupted("node-2", "Empty", "gpunodepool"),
        "karpenter_voluntary_disruption_decisions_total",
        {"decision": "delete", "reason": "Empty"},
    ),
]


async def context() -> DaemonContext:
    config = load_config(default_config_path())
    world = World(config.cluster_name, config.instance_groups, clock=LoopClock(0.0))
    return DaemonContext(config, Backends(world.kubernetes, world.hyperpod), config.catalogue(), world.clock)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(ctx: DaemonContext) -> Samples:
    text = generate_latest(registry_for(lambda: ctx, lambda: True)).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, labels: dict[str, str]
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_every_event_the_metrics_read_moves_its_metric_by_one() -> None:
    assert {type(event) for event, _, _ in EXAMPLES} == set(EVENT_METRICS)
    for event, name, labels in EXAMPLES:
        assert name.removesuffix("_total") == EVENT_METRICS[type(event)]
        ctx = await context()
        before = value(scrape(ctx), name, labels)
        ctx.record(event)
        ctx.record(event)
        assert value(scrape(ctx), name, labels) == before + 2, (event, name, labels)


async def test_interruption_outcomes_map_to_karpenter_action_types() -> None:
    ctx = await context()
    for outcome in ("handled", "handled", "replacement-requested", "rebalance-preprovisioned", "duplicate"):
        ctx.record(InterruptionOutcome(outcome))
    samples = scrape(ctx)
    name = "karpenter_interruption_actions_performed_total"
    assert value(samples, name, {"action_type": "CordonAndDrain"}) == 2
    assert value(samples, name, {"action_type": "Replace"}) == 1
    assert value(samples, name, {"action_type": "PreProvision"}) == 1
    assert not [k for k in samples if k[0] == name and ("action_type", "duplicate") in k[1]]


async def test_errors_are_counted_per_provider_and_events_without_a_metric_change_none() -> None:
    ctx = await context()
    ctx.record(CloudProviderError("GetSpotPlacementScores", "denied", provider="ec2"))
    before = scrape(ctx)
    for _ in range(5):
        ctx.record(ReconcileRan("batch"))  # no metric of its own (liveness reads it)
    after = scrape(ctx)
    assert value(after, "karpenter_cloudprovider_errors_total", {"provider": "ec2"}) == 1
    assert value(after, "karpenter_cloudprovider_errors_total", {"provider": "hyperpod"}) == 0
    assert before == after
