"""The interruption queue misbehaving: junk, duplicates, messages out of order, SQS down, deletes
that fail. Every message is handled at most once in effect, deleted only once handled (or known to be
junk or foreign), and the loop never stops.
"""

from __future__ import annotations

import anyio
import pytest
from daemon_harness import SPOT_AZ1, Harness, running, wait_for, web_pod
from faulty import Ledger, all_running, faulty_daemon, launched, tainted_live_nodes

from hpscaler.backends.types import InterruptionKind, InterruptionMessage
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.events import (
    InterruptionOutcome,
    InterruptionReceived,
    InterruptionReceiveFailed,
    InterruptionUnreadable,
)
from hpscaler.daemon.state import instance_id_of
from hpscaler.testing.chaos import Chaos


async def busy_cluster(h: Harness) -> list[str]:
    """Two Spot nodes with three pods each; returns their instance ids."""
    await wait_for(lambda: len([n for n in h.world.kubernetes.nodes() if n.ready]) == 2, 600)
    for i, node in enumerate(h.world.kubernetes.nodes()):
        for j in range(3):
            h.world.kubernetes.add_pod(web_pod(f"w-{i}-{j}", cpu=2000, node_name=node.name))
    await anyio.sleep(60)  # the pods have been running for a while when trouble starts
    return [instance_id_of(n) for n in h.world.kubernetes.nodes()]


def message(h: Harness, kind: InterruptionKind, instance: str, **fields: object) -> InterruptionMessage:
    now = h.world.clock.now()
    return InterruptionMessage(h.world.interruptions.new_id(), kind, instance, now, **fields)  # type: ignore[arg-type]


@pytest.mark.looptime
async def test_junk_duplicates_and_foreign_messages_around_one_real_notice(
    config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(config, catalogue, initial={SPOT_AZ1: 2}) as h:
        ledger = Ledger()
        ledger.wrap_evictions(h.world.kubernetes)
        victim, _ = await busy_cluster(h)
        queue = h.world.interruptions
        now = h.world.clock.now()
        for i in range(30):
            queue.put_junk(f"malformed message {i}")
        for _ in range(10):  # EventBridge delivers at least once: the same notice many times
            queue.put(message(h, InterruptionKind.SPOT_INTERRUPTION, victim, deadline=now + 120))
        for i in range(5):
            queue.put(
                message(h, InterruptionKind.SPOT_INTERRUPTION, f"i-0foreign{i:08d}", deadline=now + 120)
            )
        await wait_for(lambda: len(queue) == 0, 300)
        await wait_for(lambda: all_running(h, 6), 600)
        events = h.ctx.stats.events
        assert events.count(InterruptionUnreadable) == 30
        assert events.count(InterruptionOutcome, outcome="not-ours") == 5
        assert events.count(InterruptionOutcome, outcome="duplicate") == 9
        assert events.count(InterruptionOutcome, outcome="handled") == 1
        assert queue.acknowledged == 45
        assert sorted(ledger.evictions.values()) == [1, 1, 1]
        await anyio.sleep(300)
        assert launched(h) == 3  # one replacement, not ten


@pytest.mark.looptime
async def test_a_notice_arriving_after_the_termination_changes_nothing(
    config: LoadedConfig, catalogue: Catalogue
) -> None:
    """EventBridge does not order events: the instance is gone (state change handled) when its
    two-minute warning finally arrives. The late warning is acknowledged and ignored.
    """
    async with running(config, catalogue, initial={SPOT_AZ1: 2}) as h:
        victim, _ = await busy_cluster(h)
        queue = h.world.interruptions
        now = h.world.clock.now()
        h.world.hyperpod.interrupt(victim, notice=False)
        await wait_for(lambda: len(queue) == 0, 60)
        await wait_for(lambda: all_running(h, 6), 600)
        queue.put(message(h, InterruptionKind.SPOT_INTERRUPTION, victim, deadline=now + 120))
        await wait_for(lambda: len(queue) == 0, 60)
        events = h.ctx.stats.events
        assert events.count(InterruptionReceived, kind="spot-interruption") == 1
        assert (
            events.count(InterruptionOutcome, outcome="duplicate")
            + events.count(InterruptionOutcome, outcome="not-ours")
            >= 1
        )
        assert h.world.kubernetes.counters.evictions == 0
        await anyio.sleep(300)
        assert all_running(h, 6)
        assert launched(h) == 3


@pytest.mark.looptime
async def test_sqs_down_for_two_minutes_then_deletes_failing(
    config: LoadedConfig, catalogue: Catalogue
) -> None:
    """Receives fail for two minutes, then the first deletes fail: nothing is lost or done twice."""
    async with running(config, catalogue, start_daemon=False, initial={SPOT_AZ1: 2}) as h:
        ledger = Ledger()
        ledger.wrap_evictions(h.world.kubernetes)
        start = h.world.clock.now()
        chaos = Chaos(
            0,
            h.world.clock.now,
            outages=[("interruptions", start, start + 120)],
        )
        daemon = faulty_daemon(h, chaos)
        await h.tg.start(daemon.run)
        victim, _ = await busy_cluster(h)
        h.world.interruptions.faults.fail_next("acknowledge", times=3)  # SQS refuses the deletes
        h.world.hyperpod.interrupt(victim, notice=True)
        await wait_for(lambda: len(h.world.interruptions) == 0, 900)
        await wait_for(lambda: all_running(h, 6), 900)
        events = daemon.ctx.stats.events
        assert events.count(InterruptionReceiveFailed) > 0
        assert events.count(InterruptionOutcome, outcome="handled") >= 1
        assert sorted(ledger.evictions.values()) == [1, 1, 1]
        assert not [k for k in ledger.evictions if k.endswith("(again)")]
        assert tainted_live_nodes(h) == []
        await anyio.sleep(300)
        assert launched(h) == 3
