"""The Kubernetes API misbehaving: dropped watch streams, an API server gone for a minute, lost
watch events (a stale cache until the next re-list), and failing writes. The cluster converges
with the nodes it needs, no more, and scales back to zero.
"""

from __future__ import annotations

import anyio
import pytest
from daemon_harness import running, wait_for
from faulty import Ledger, add_pods, all_running, faulty_daemon, launched, scale_to_zero, tainted_live_nodes

from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.events import WatchLost, WatchResynced
from hpscaler.testing.chaos import Chaos, FaultRates

PODS, NODES = 12, 4  # 2-CPU pods, three per ml.c5.2xlarge


@pytest.mark.looptime
@pytest.mark.parametrize("seed", range(3))
async def test_dropped_watch_streams_and_failing_writes(
    config: LoadedConfig, catalogue: Catalogue, seed: int
) -> None:
    async with running(config, catalogue, start_daemon=False) as h:
        ledger = Ledger()
        ledger.wrap_evictions(h.world.kubernetes)
        chaos = Chaos(seed, h.world.clock.now, rates={"kubernetes": FaultRates(fail=0.2)}, drop_watch_every=5)
        daemon = faulty_daemon(h, chaos)
        await h.tg.start(daemon.run)
        add_pods(h, PODS)
        await wait_for(lambda: all_running(h, PODS), 900)
        h.world.hyperpod.interrupt(h.world.hyperpod.nodes()[0].instance_id, notice=True)
        await wait_for(lambda: len(h.world.interruptions) == 0 and all_running(h, PODS), 900)
        await scale_to_zero(h)
        assert chaos.counts()["stream-dropped"] >= 3
        assert daemon.ctx.stats.events.count(WatchLost) >= chaos.counts()["stream-dropped"]
        assert launched(h) == NODES + 1
        assert ledger.evicted_twice() == []


@pytest.mark.looptime
async def test_an_api_server_gone_for_a_minute_during_a_burst(
    config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(config, catalogue, start_daemon=False) as h:
        start = h.world.clock.now()
        chaos = Chaos(0, h.world.clock.now, outages=[("kubernetes", start + 30, start + 90)])
        daemon = faulty_daemon(h, chaos)
        await h.tg.start(daemon.run)
        await anyio.sleep(35)  # the outage has begun: the watch is lost and cannot be re-opened
        add_pods(h, PODS)
        await anyio.sleep(50)
        assert h.world.hyperpod.calls["batch_add_nodes"] == 0  # blind: it cannot see the pods
        await wait_for(lambda: all_running(h, PODS), 600)
        assert chaos.counts()["outage"] >= 2
        await anyio.sleep(600)
        assert launched(h) == NODES
        await scale_to_zero(h)
        assert tainted_live_nodes(h) == []


@pytest.mark.looptime
@pytest.mark.parametrize("seed", range(3))
async def test_lost_watch_events_heal_at_the_next_relist(
    config: LoadedConfig, catalogue: Catalogue, seed: int
) -> None:
    """A third of the events never arrive; the watcher's periodic re-list brings the cache back."""
    async with running(config, catalogue, start_daemon=False) as h:
        chaos = Chaos(seed, h.world.clock.now, lose_event=0.3)
        daemon = faulty_daemon(h, chaos)
        await h.tg.start(daemon.run)
        add_pods(h, PODS)
        await wait_for(lambda: all_running(h, PODS), 1800)
        await anyio.sleep(600)
        assert chaos.counts()["event-lost"] >= 3
        assert daemon.ctx.stats.events.count(WatchResynced) >= 1
        assert launched(h) == NODES
        cache = daemon.ctx.cache
        await wait_for(lambda: len(cache.pods) == PODS and len(cache.nodes) == NODES, 1200)
        await scale_to_zero(h)
        assert launched(h) == NODES
