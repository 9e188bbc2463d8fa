"""DaemonContext's named operations on shared state, and the event hooks (counts and log)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import structlog
from daemon_harness import SPOT_AZ1, pinned_seed_config
from structlog.testing import capture_logs

from hpscaler.backends.types import HyperPodNode, NodeStatus, WatchEvent, WatchKind
from hpscaler.clock import LoopClock
from hpscaler.daemon.context import Backends, DaemonContext, Stats
from hpscaler.daemon.events import (
    DaemonEvent,
    EventCounts,
    HyperPodEventSeen,
    InterruptionReceived,
    NodeDisrupted,
    ReconcileRan,
)
from hpscaler.daemon.state import ClusterCache
from hpscaler.fake import World
from hpscaler.model import Node, Pod, as_pending
from hpscaler.provisioning.launches import InFlight


@pytest.fixture
def every_level() -> None:
    """Log every level in this test (the daemon tests keep only warnings; the root conftest restores)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(0))


def make_context() -> DaemonContext:
    config = pinned_seed_config()
    world = World(config.cluster_name, config.instance_groups, clock=LoopClock(0.0))
    backends = Backends(world.kubernetes, world.hyperpod)
    return DaemonContext(config, backends, config.catalogue(), world.clock)


async def test_shared_state_is_read_only_from_outside() -> None:
    ctx = make_context()
    ctx.track_launch(InFlight("n-1", SPOT_AZ1, "gpunodepool", 0.0))
    ctx.mark_for_deletion("node-a", "spot-interruption")
    ctx.book({"node-a": [Pod("ml", "holder", {"cpu": 1000})]})
    with pytest.raises(TypeError):
        ctx.inflight["n-2"] = InFlight("n-2", SPOT_AZ1, "gpunodepool", 0.0)  # type: ignore[index]
    with pytest.raises(TypeError):
        del ctx.disrupting["node-a"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        ctx.held["node-b"] = []  # type: ignore[index]
    with pytest.raises(AttributeError):
        ctx.gone.add("n-1")  # type: ignore[attr-defined]
    assert list(ctx.inflight) == ["n-1"] and dict(ctx.disrupting) == {"node-a": "spot-interruption"}


async def test_launches_are_tracked_settled_and_cancelled() -> None:
    ctx = make_context()
    first, second = (InFlight(i, SPOT_AZ1, "gpunodepool", 0.0) for i in ("n-1", "n-2"))
    ctx.track_launch(first)
    ctx.track_launch(second)
    ctx.mark_health_checked("n-1", 42.0)
    assert ctx.inflight["n-1"].health_checked_at == 42.0

    assert ctx.settle_launch("n-1") is first  # joined: the record comes back for the caller
    assert ctx.settle_launch("n-1") is None
    assert "n-1" not in ctx.gone  # a node that joined may be adopted again later

    ctx.cancel_launch("n-2")
    assert not ctx.inflight and ctx.gone == {"n-2"}


async def test_a_hyperpod_listing_records_states_and_prunes_gone_nodes() -> None:
    ctx = make_context()
    ctx.mark_gone("deleted-long-ago")
    ctx.mark_gone("still-listed")
    nodes = [
        HyperPodNode("still-listed", SPOT_AZ1, NodeStatus.SHUTTING_DOWN, "i-1"),
        HyperPodNode("patching", SPOT_AZ1, NodeStatus.SYSTEM_UPDATING, "i-2"),
        HyperPodNode("leaving", SPOT_AZ1, NodeStatus.SHUTTING_DOWN, "i-3"),
    ]
    ctx.hyperpod_listed(nodes, going=["leaving"])
    assert ctx.gone == {"still-listed", "leaving"}  # HyperPod no longer lists the first one
    assert dict(ctx.node_states) == {
        "i-1": NodeStatus.SHUTTING_DOWN,
        "i-2": NodeStatus.SYSTEM_UPDATING,
        "i-3": NodeStatus.SHUTTING_DOWN,
    }


async def test_marking_for_deletion_and_displaced_pods() -> None:
    ctx = make_context()
    ctx.mark_for_deletion("node-a", "consolidation:Empty")
    ctx.mark_for_deletion("node-a", "spot-interruption")  # the latest reason wins
    assert ctx.disrupting == {"node-a": "spot-interruption"}
    ctx.unmark_for_deletion("node-a")
    ctx.unmark_for_deletion("node-a")  # twice is harmless: the watch and the loop may both do it
    assert not ctx.disrupting

    web, db = (as_pending(Pod("default", name, {"cpu": 100}, node_name="node-a")) for name in ("web", "db"))
    ctx.displace(web)
    ctx.displace(db)
    assert set(ctx.displaced) == {"default/web", "default/db"}
    ctx.undisplace(["default/web", "default/unknown"])
    assert list(ctx.displaced) == ["default/db"]


async def test_booking_replaces_what_was_held() -> None:
    ctx = make_context()
    holder = Pod("ml", "holder", {"cpu": 1000})
    holders = {"node-a": [holder]}
    ctx.book(holders)
    holders["node-b"] = [holder]  # the caller's dict is not shared
    assert list(ctx.held) == ["node-a"]
    ctx.book({})
    assert not ctx.held


async def test_events_reach_every_hook_in_order(every_level: None) -> None:
    ctx = make_context()
    seen: list[DaemonEvent] = []
    ctx.hooks.append(seen.append)
    event = NodeDisrupted("node-a", "Empty", "gpunodepool")
    with capture_logs() as logs:
        ctx.record(event)
    assert seen == [event]
    assert ctx.stats.events.count(NodeDisrupted, reason="Empty") == 1
    assert logs == [
        {
            "event": "node_consolidated",
            "log_level": "info",
            "node": "node-a",
            "reason": "Empty",
            "pool": "gpunodepool",
        }
    ]


async def test_the_log_level_of_an_event_can_depend_on_its_fields(every_level: None) -> None:
    ctx = make_context()
    with capture_logs() as logs:
        ctx.record(HyperPodEventSeen("g", "i-1", "Warn", "node replaced"))
        ctx.record(HyperPodEventSeen("g", "i-1", "Info", "node added"))
    assert [(e["log_level"], e["level"]) for e in logs] == [("warning", "Warn"), ("info", "Info")]


def test_event_counts_by_label() -> None:
    counts = EventCounts()
    for kind, source in (("spot-interruption", "sqs"), ("spot-interruption", "agent"), ("rebalance", "sqs")):
        counts(InterruptionReceived(kind, source, "i-1"))
    counts(ReconcileRan("batch"))
    counts(ReconcileRan("monitor"))  # the reason is no label: both rounds count together
    assert counts.count(InterruptionReceived) == 3
    assert counts.count(InterruptionReceived, kind="spot-interruption", source="sqs") == 1
    assert counts.by(InterruptionReceived, "source") == {"agent": 1, "sqs": 2}
    assert counts.by(InterruptionReceived, "kind") == {"rebalance": 1, "spot-interruption": 2}
    assert counts.count(ReconcileRan) == 2
    assert counts.count(NodeDisrupted) == 0 and counts.by(NodeDisrupted, "reason") == {}
    with pytest.raises(ValueError):
        counts.count(InterruptionReceived, zone="us-west-2a")  # not a label: a mistake, not 0


def test_pending_to_running_latency_counts_from_the_first_sighting() -> None:
    stats = Stats()
    stats.pod_pending("default/a", 10.0)
    stats.pod_pending("default/a", 15.0)  # seen again while still waiting: the first time counts
    stats.pod_pending("default/b", 12.0)
    stats.pod_gone("default/b")  # deleted before it ran: no sample
    stats.pod_running("default/a", 40.0)
    stats.pod_running("default/a", 50.0)  # later updates of a running pod add nothing
    stats.pod_running("default/b", 60.0)
    stats.pod_running("default/never-seen-pending", 70.0)
    assert list(stats.pending_to_running) == [30.0]


def test_a_node_write_is_assumed_until_the_watch_brings_it_back() -> None:
    cache = ClusterCache()
    node = Node("node-a", {}, {"cpu": 8000})
    cache.apply(WatchEvent(WatchKind.ADDED, node=node), 0.0)
    generation = cache.node_generation
    cache.assume_node(replace(node, labels={"karpenter.sh/registered": "true"}))
    assert cache.nodes["node-a"].labels == {"karpenter.sh/registered": "true"}
    assert cache.node_generation == generation + 1
    cache.assume_node(Node("node-gone", {}, {"cpu": 8000}))  # deleted meanwhile: not brought back
    assert set(cache.nodes) == {"node-a"}
