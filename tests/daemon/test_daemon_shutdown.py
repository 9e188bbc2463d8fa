"""Clean shutdown: stop(), cancellation and SIGTERM end every loop; an API call in flight completes."""

from __future__ import annotations

import asyncio
import os
import signal

import anyio
import anyio.lowlevel
import pytest
from daemon_harness import Harness, running, wait_for, web_pod

from hpscaler.backends.types import AddResult
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.drain import CHECKPOINT_ANNOTATION
from hpscaler.daemon.events import ReconcileRan
from hpscaler.daemon.state import instance_id_of
from hpscaler.fake import FakeHyperPod
from hpscaler.provisioning.batching import AddRequest


class SlowAdd:
    """HyperPod whose BatchAddClusterNodes takes `seconds` to reach the service."""

    def __init__(self, inner: FakeHyperPod, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds
        self.sending = anyio.Event()

    async def batch_add_nodes(self, request: AddRequest) -> AddResult:
        self.sending.set()
        await anyio.sleep(self.seconds)
        return await self.inner.batch_add_nodes(request)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def other_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t not in before and t is not asyncio.current_task()}


async def launch(daemon: Daemon, done: anyio.Event, handle_signals: bool = False) -> None:
    await daemon.run(handle_signals=handle_signals)
    done.set()


async def busy(h: Harness) -> None:
    """Pods running, a checkpointing pod being drained after a notice: every loop has work in hand."""
    kube = h.world.kubernetes
    kube.add_pod(web_pod("ckpt", cpu=2000, annotations={CHECKPOINT_ANNOTATION: "true"}))
    kube.add_pod(web_pod("plain", cpu=2000))
    await wait_for(lambda: len(h.running_pods()) == 2, 300)
    (node,) = kube.nodes()
    h.world.hyperpod.interrupt(instance_id_of(node))
    await anyio.sleep(5)
    assert h.ctx.disrupting and "default/ckpt" not in kube.evicted_at  # the drain is waiting


@pytest.mark.looptime
async def test_stop_ends_every_loop_and_leaves_no_task_behind(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, start_daemon=False) as h:
        before = set(asyncio.all_tasks())
        done = anyio.Event()
        h.tg.start_soon(launch, h.daemon, done)
        await busy(h)
        assert len(other_tasks(before)) >= 7  # the loops, and the drain's handler
        stopped = anyio.current_time()
        h.daemon.stop()
        with anyio.fail_after(1):
            await done.wait()
        assert anyio.current_time() - stopped < 1
        await anyio.lowlevel.checkpoint()
        assert other_tasks(before) == set()
        calls = h.world.hyperpod.calls["batch_add_nodes"]
        h.world.kubernetes.add_pod(web_pod("late", cpu=2000))
        await anyio.sleep(60)
        assert h.world.hyperpod.calls["batch_add_nodes"] == calls  # nobody is listening any more


@pytest.mark.looptime
async def test_cancelling_the_daemon_s_task_group_ends_every_loop(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, start_daemon=False) as h:
        before = set(asyncio.all_tasks())
        with anyio.fail_after(400):
            async with anyio.create_task_group() as tg:
                await tg.start(h.daemon.run)
                await busy(h)
                tg.cancel_scope.cancel()
        await anyio.lowlevel.checkpoint()
        assert other_tasks(before) == set()


@pytest.mark.looptime
async def test_a_batch_add_in_flight_at_stop_completes_and_is_recorded(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, start_daemon=False) as h:
        hyperpod = h.world.hyperpod
        slow = SlowAdd(hyperpod, seconds=5.0)
        daemon = h.new_daemon(hyperpod=slow)
        done = anyio.Event()
        h.tg.start_soon(launch, daemon, done)
        for i in range(3):
            h.world.kubernetes.add_pod(web_pod(f"w-{i}", cpu=2000))
        await slow.sending.wait()
        asked = anyio.current_time()
        daemon.stop()
        with anyio.fail_after(10):
            await done.wait()
        assert anyio.current_time() - asked == pytest.approx(5.0, abs=0.1)  # waited for the answer
        assert hyperpod.calls["batch_add_nodes"] == 1
        (added,) = hyperpod.nodes()
        assert set(daemon.ctx.inflight) == {added.logical_id}


@pytest.mark.looptime
async def test_sigterm_stops_the_daemon_cleanly(seed_config: LoadedConfig, catalogue: Catalogue) -> None:
    original = signal.getsignal(signal.SIGTERM)
    async with running(seed_config, catalogue, start_daemon=False) as h:
        before = set(asyncio.all_tasks())
        done = anyio.Event()
        h.tg.start_soon(launch, h.daemon, done, True)
        # Never send the signal before the daemon's handler is in place: it would end pytest.
        await wait_for(lambda: signal.getsignal(signal.SIGTERM) is not original, 5, step=0.01)
        await busy(h)
        os.kill(os.getpid(), signal.SIGTERM)
        with anyio.fail_after(1):
            await done.wait()
        await anyio.lowlevel.checkpoint()
        assert other_tasks(before) == set()
    assert signal.getsignal(signal.SIGTERM) is original


@pytest.mark.looptime
async def test_stopped_is_set_when_run_returns_and_a_stop_before_run_is_honoured(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, start_daemon=False) as h:
        daemon = h.daemon
        await h.tg.start(daemon.run)
        assert not daemon.stopped.is_set()
        daemon.stop()
        with anyio.fail_after(1):
            await daemon.stopped.wait()

        early = h.new_daemon()
        early.stop()  # e.g. leadership lost, or SIGTERM, before the task got to run
        with anyio.fail_after(1):
            await early.run()
        assert early.stopped.is_set()
        assert h.world.hyperpod.calls["list_nodes"] == 0


@pytest.mark.looptime
async def test_every_provisioning_round_is_counted_for_the_liveness_check(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        await anyio.sleep(35)  # launch monitor rounds at 10, 20 and 30 s
        assert h.ctx.stats.events.count(ReconcileRan) == 3
        h.world.hyperpod.faults.fail_next("list_nodes")
        await anyio.sleep(10)
        assert h.ctx.stats.events.count(ReconcileRan) == 4  # HyperPod could not be read, the loop still ran
