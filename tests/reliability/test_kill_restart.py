"""The daemon killed (as by SIGKILL) at every step of a provisioning, an interruption and a
consolidation, then restarted with nothing but what the world remembers.

A clean run of each story records its mutating calls (BatchAdd, taints, evictions, SQS deletes...).
Then, for every step k and both sides of it (before the call reaches the world, and after it took
effect but before the daemon saw the answer), the story is replayed with the daemon killed there
and a fresh daemon started on the same world. Each replay must converge to the clean outcome with
no doubled nodes, no pod evicted twice, and no node left tainted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
from daemon_harness import SPOT_AZ1, Harness, running, wait_for, web_pod
from faulty import Ledger, all_running, launched, run_until_killed, tainted_live_nodes

from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.events import OrphanedTaintCleared
from hpscaler.model import Node
from hpscaler.testing.chaos import Chaos

RESTART_SECONDS = 5.0  # systemd's RestartSec: how long the cluster goes without a daemon

Story = Callable[[Harness], Awaitable[None]]


async def ready_nodes(h: Harness, count: int) -> list[Node]:
    await wait_for(lambda: len([n for n in h.world.kubernetes.nodes() if n.ready]) == count, 600)
    return h.world.kubernetes.nodes()


async def replay(
    config: LoadedConfig,
    catalogue: Catalogue,
    kill_at: tuple[int, str] | None,
    setup: Story,
    act: Story,
    check: Callable[[Harness, Ledger], None],
    **world: object,
) -> list[str]:
    """Run one story with the first daemon killed at `kill_at`; returns the first daemon's steps."""
    async with running(config, catalogue, start_daemon=False, **world) as h:
        ledger = Ledger()
        ledger.wrap_evictions(h.world.kubernetes)
        await setup(h)
        chaos = Chaos(0, h.world.clock.now, kill_at=kill_at)
        async with anyio.create_task_group() as story:
            story.start_soon(act, h)
            killed = await run_until_killed(h, chaos, within=600)
        assert killed == (kill_at is not None), f"kill at {kill_at} never happened; steps {chaos.steps}"
        await anyio.sleep(RESTART_SECONDS)
        await h.tg.start(h.new_daemon().run)
        await anyio.sleep(1200)  # time to converge, and for any doubled work to show
        check(h, ledger)
        return chaos.steps


async def every_kill(
    config: LoadedConfig,
    catalogue: Catalogue,
    setup: Story,
    act: Story,
    check: Callable[[Harness, Ledger], None],
    **world: object,
) -> list[str]:
    """Replay the story with a kill before and after each of its steps; returns the clean steps."""
    steps = await replay(config, catalogue, None, setup, act, check, **world)
    assert steps, "the story made no mutating call"
    failures = []
    for index in range(len(steps)):
        for phase in ("before", "after"):
            try:
                await replay(config, catalogue, (index, phase), setup, act, check, **world)
            except AssertionError as exc:
                failures.append(f"killed {phase} step {index} ({steps[index]}): {exc}")
    assert not failures, "\n".join(failures)
    return steps


async def nothing(h: Harness) -> None:
    return None


@pytest.mark.looptime
async def test_killed_at_every_step_of_a_provisioning(config: LoadedConfig, catalogue: Catalogue) -> None:
    async def burst(h: Harness) -> None:
        for i in range(6):
            h.world.kubernetes.add_pod(web_pod(f"w-{i}", cpu=2000))

    def check(h: Harness, ledger: Ledger) -> None:
        assert all_running(h, 6)
        assert launched(h) == 2  # 3 two-CPU pods per ml.c5.2xlarge
        assert tainted_live_nodes(h) == []

    steps = await every_kill(config, catalogue, burst, nothing, check)
    assert "batch_add_nodes" in steps


@pytest.mark.looptime
async def test_killed_at_every_step_of_an_interruption(config: LoadedConfig, catalogue: Catalogue) -> None:
    async def two_busy_nodes(h: Harness) -> None:
        await ready_nodes(h, 2)
        for i, node in enumerate(h.world.kubernetes.nodes()):
            for j in range(3):
                h.world.kubernetes.add_pod(web_pod(f"w-{i}-{j}", cpu=2000, node_name=node.name))

    async def interrupt(h: Harness) -> None:
        await anyio.sleep(30)  # the daemon has synced
        h.world.hyperpod.interrupt(h.world.hyperpod.nodes()[0].instance_id, notice=True)

    def check(h: Harness, ledger: Ledger) -> None:
        assert all_running(h, 6)
        assert launched(h) == 3  # the two nodes and one replacement
        assert ledger.evictions, "nobody evicted the interrupted node's pods"
        assert ledger.evicted_twice() == []
        assert len(h.world.interruptions) == 0  # the notice was handled and deleted
        assert tainted_live_nodes(h) == []

    steps = await every_kill(config, catalogue, two_busy_nodes, interrupt, check, initial={SPOT_AZ1: 2})
    assert {"taint_node", "batch_add_nodes", "evict_pod", "acknowledge"} <= set(steps)


@pytest.mark.looptime
async def test_killed_at_every_step_of_a_consolidation(config: LoadedConfig, catalogue: Catalogue) -> None:
    async def busy_and_idle(h: Harness) -> None:
        first, second = await ready_nodes(h, 2)
        h.world.kubernetes.add_pod(web_pod("a", cpu=3000, node_name=first.name))
        h.world.kubernetes.add_pod(web_pod("b", cpu=1000, node_name=second.name))

    def check(h: Harness, ledger: Ledger) -> None:
        assert all_running(h, 2)
        assert len(h.world.kubernetes.nodes()) == 1  # one node holds both pods
        assert launched(h) == 2  # and nothing was launched to make room
        assert ledger.evicted_twice() == []
        assert tainted_live_nodes(h) == []

    steps = await every_kill(config, catalogue, busy_and_idle, nothing, check, initial={SPOT_AZ1: 2})
    assert {"taint_node", "evict_pod", "batch_delete_nodes"} <= set(steps)


@pytest.mark.looptime
async def test_a_node_tainted_by_a_killed_consolidation_is_untainted_when_it_is_needed_again(
    config: LoadedConfig, catalogue: Catalogue
) -> None:
    """Killed right after tainting a node for removal; before the restart a pod arrives that only
    fits there. The new daemon clears the orphaned taint, so the pod runs without a new node.
    """

    async def busy_and_idle(h: Harness) -> None:
        first, second = await ready_nodes(h, 2)
        h.world.kubernetes.add_pod(web_pod("a", cpu=3000, node_name=first.name))
        h.world.kubernetes.add_pod(web_pod("b", cpu=1000, node_name=second.name))

    async with running(config, catalogue, start_daemon=False, initial={SPOT_AZ1: 2}) as h:
        await busy_and_idle(h)
        # The two nodes joined before the daemon ran: it registers them first, then consolidates.
        chaos = Chaos(0, h.world.clock.now, kill_at=(2, "after"))
        assert await run_until_killed(h, chaos, within=600)
        assert chaos.steps == ["register_node", "register_node", "taint_node"]
        (tainted,) = [n for n in h.world.kubernetes.nodes() if n.taints]
        h.world.kubernetes.add_pod(web_pod("c", cpu=5000))  # too big for the other node's room
        await anyio.sleep(RESTART_SECONDS)
        assert h.world.kubernetes.pod("default/c").node_name == ""  # type: ignore[union-attr]
        daemon = h.new_daemon()
        await h.tg.start(daemon.run)
        await wait_for(lambda: all_running(h, 3), 300)
        assert h.world.kubernetes.pod("default/c").node_name == tainted.name  # type: ignore[union-attr]
        assert daemon.ctx.stats.events.count(OrphanedTaintCleared) == 1
        await anyio.sleep(600)
        assert launched(h) == 2
        assert tainted_live_nodes(h) == []
