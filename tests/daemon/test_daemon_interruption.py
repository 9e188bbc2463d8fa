"""The interruption handler on the fakes: notices, lost instances, junk, foreign and duplicate messages."""

from __future__ import annotations

from functools import partial

import anyio
import pytest
from daemon_harness import SPOT_AZ1, Harness, running, wait_for, web_pod

from hpscaler.backends.types import InterruptionKind, InterruptionMessage
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.drain import INTERRUPTED_TAINT
from hpscaler.daemon.events import (
    InterruptionOutcome,
    InterruptionUnreadable,
    ReconcileCoalesced,
    ReconcileRan,
)
from hpscaler.daemon.state import instance_id_of
from hpscaler.model import Node


async def settled(h: Harness, pods: int, cpu: int = 2000) -> list[str]:
    """Start `pods` pods, wait until they all run, and return their keys."""
    keys = []
    for i in range(pods):
        keys.append(h.world.kubernetes.add_pod(web_pod(f"w-{i}", cpu=cpu)).key)
    await wait_for(lambda: len(h.running_pods()) == pods, 300)
    await wait_for(lambda: not h.ctx.inflight, 20)  # the launch monitor saw them join
    return keys


def busiest_node(h: Harness) -> Node:
    return max(h.world.kubernetes.nodes(), key=lambda n: (len(n.pods), n.name))


def bodies(h: Harness) -> int:
    return h.world.hyperpod.calls["batch_add_nodes"]


@pytest.mark.looptime
async def test_a_spot_notice_taints_at_once_replaces_first_and_evicts_gracefully_in_time(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        await settled(h, 6)
        node = busiest_node(h)
        assert node.instance_group == SPOT_AZ1
        victims = {p.key for p in node.pods}
        calls = bodies(h)
        queue = h.world.interruptions
        noticed = h.world.clock.now()
        h.world.hyperpod.interrupt(instance_id_of(node))
        deadline = noticed + h.world.hyperpod.notice_seconds

        await anyio.sleep(1)
        tainted = h.world.kubernetes.node(node.name)
        assert tainted is not None and INTERRUPTED_TAINT in tainted.taints
        assert len(h.ctx.stats.taint_latency) == 1 and h.ctx.stats.taint_latency[0] <= 1.0
        assert bodies(h) == calls + 1  # the replacement is on its way before the node dies
        # Pods without a checkpoint request are evicted at once, well within the notice.
        evicted = h.world.kubernetes.evicted_at
        assert victims <= set(evicted)
        assert all(evicted[k] + 30 <= deadline for k in victims)

        await wait_for(lambda: h.world.kubernetes.node(node.name) is None, 130)
        assert not [k for k in h.world.kubernetes.kills if k.key in victims]
        assert h.ctx.stats.events.count(InterruptionOutcome, outcome="handled") == 1
        # The notice, then the state-change message of the termination: both acknowledged, none stale.
        await wait_for(lambda: len(queue) == 0, 30)
        assert queue.acknowledged == 2 and queue.stale_acknowledgements == 0
        await wait_for(lambda: len(h.running_pods()) == 6, 300)
        assert bodies(h) == calls + 1  # the recreated pods took the replacement, nothing more


@pytest.mark.looptime
async def test_an_instance_lost_without_notice_gets_its_pods_new_nodes_without_evictions(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        await settled(h, 6)
        node = busiest_node(h)
        victims = {p.key for p in node.pods}
        calls = bodies(h)
        h.world.hyperpod.interrupt(instance_id_of(node), notice=False)
        assert h.world.kubernetes.node(node.name) is None
        assert {k.key for k in h.world.kubernetes.kills} == victims
        pending = [p for p in h.world.kubernetes.pods() if p.phase == "Pending"]
        assert len(pending) == len(victims)  # the controllers recreated them, unbound

        await wait_for(lambda: bodies(h) == calls + 1, 5)
        await wait_for(lambda: len(h.running_pods()) == 6, 300)
        assert h.world.kubernetes.counters.evictions == 0
        assert h.world.kubernetes.counters.deletions == 0
        assert bodies(h) == calls + 1
        await wait_for(lambda: len(h.world.interruptions) == 0, 30)


@pytest.mark.looptime
async def test_junk_and_foreign_messages_are_counted_acknowledged_and_ignored(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        await settled(h, 3)
        queue = h.world.interruptions
        calls, nodes = bodies(h), h.world.kubernetes.nodes()
        queue.put_junk("not JSON")
        now = h.world.clock.now()
        queue.put(
            InterruptionMessage(
                queue.new_id(), InterruptionKind.SPOT_INTERRUPTION, "i-0123456789abcdef0", now, now + 120
            )
        )
        await wait_for(lambda: len(queue) == 0, 2)
        events = h.ctx.stats.events
        assert events.count(InterruptionUnreadable) == 1
        assert events.count(InterruptionOutcome, outcome="not-ours") == 1
        assert queue.acknowledged == 2
        await anyio.sleep(60)
        assert bodies(h) == calls
        assert h.world.kubernetes.nodes() == nodes  # no taint, no eviction, nothing touched
        assert h.world.kubernetes.counters.evictions == 0


@pytest.mark.looptime
async def test_a_duplicate_notice_for_a_node_already_draining_does_nothing_more(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        await settled(h, 6)
        node = busiest_node(h)
        instance = instance_id_of(node)
        queue = h.world.interruptions
        h.world.hyperpod.interrupt(instance)
        await anyio.sleep(2)
        calls, evictions = bodies(h), h.world.kubernetes.counters.evictions
        now = h.world.clock.now()
        queue.put(
            InterruptionMessage(queue.new_id(), InterruptionKind.SPOT_INTERRUPTION, instance, now, now + 118)
        )
        await anyio.sleep(2)
        assert h.ctx.stats.events.count(InterruptionOutcome, outcome="duplicate") == 1
        assert len(h.ctx.stats.taint_latency) == 1
        assert bodies(h) == calls
        assert h.world.kubernetes.counters.evictions == evictions
        assert queue.acknowledged == 2 and len(queue) == 0


@pytest.mark.looptime
@pytest.mark.parametrize("api_latency", [0.0, 0.5])
async def test_a_lost_instance_whose_node_lingers_is_deleted_and_replaced_once(
    seed_config: LoadedConfig, catalogue: Catalogue, api_latency: float
) -> None:
    """The state-change message comes before Kubernetes notices: the daemon deletes the Node itself."""
    async with running(seed_config, catalogue) as h:
        kube, hyperpod = h.world.kubernetes, h.world.hyperpod
        await settled(h, 6)
        node = busiest_node(h)
        victims = {p.key for p in node.pods}
        calls = bodies(h)
        # The Node object outlives its instance by a minute (the node lifecycle controller is slow).
        (node_gone,) = hyperpod.on_gone
        hyperpod.on_gone[:] = [lambda i, why: h.world.timers.call_later(60, partial(node_gone, i, why))]
        delete_node = kube.delete_node

        async def slow_delete(name: str) -> None:
            await delete_node(name)
            await anyio.sleep(api_latency)  # the answer takes a while; the watch moves on meanwhile

        kube.delete_node = slow_delete  # type: ignore[method-assign]
        hyperpod.interrupt(instance_id_of(node), notice=False)
        await anyio.sleep(1)
        assert kube.node(node.name) is None  # deleted by the daemon, not by the slow controller
        assert {k.key for k in kube.kills} == victims
        await wait_for(lambda: len(h.running_pods()) == 6, 300)
        # One node for the three pods: their replacements were not planned on top of their twins.
        added = hyperpod.add_requests[calls:]
        assert [e.count for r in added for e in r.entries] == [1]
        assert kube.counters.evictions == 0
        assert h.ctx.stats.events.count(InterruptionOutcome, outcome="handled") == 1


@pytest.mark.looptime
async def test_a_storm_of_notices_shares_provisioning_rounds_and_replaces_every_node(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        await settled(h, 30)  # 10 nodes of three 2-CPU pods
        nodes = h.world.kubernetes.nodes()
        assert len(nodes) == 10
        calls, rounds = bodies(h), h.ctx.stats.events.count(ReconcileRan)
        for node in nodes:
            h.world.hyperpod.interrupt(instance_id_of(node))
        await wait_for(
            lambda: h.ctx.stats.events.count(InterruptionOutcome, outcome="replacement-requested") == 10, 5
        )
        events = h.ctx.stats.events
        assert events.count(ReconcileRan) - rounds < 10  # rounds were shared...
        assert events.count(ReconcileCoalesced) > 0
        assert bodies(h) - calls <= 2  # ...and ask for the 10 replacements in one or two calls
        old = {n.name for n in nodes}
        await wait_for(lambda: not old & {n.name for n in h.world.kubernetes.nodes()}, 600)
        await wait_for(lambda: len(h.running_pods()) == 30, 600)
        assert old.isdisjoint({p.node_name for p in h.running_pods()})
        assert h.world.kubernetes.counters.pods_killed == 0  # every pod left within the notice
