"""Start-up order: the loops that decide from the cluster cache start once the watcher has listed it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from daemon_harness import running, wait_for, web_pod

from hpscaler.backends.types import WatchEvent, WatchKind
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.watcher import run_watcher
from hpscaler.fake import FakeKubernetes

DECIDING = {
    "daemon:batches",
    "daemon:launch-monitor",
    "daemon:registration",
    "daemon:interruptions",
    "daemon:consolidation",
    "daemon:orphaned-taints",
}


class SlowList:
    """Kubernetes whose initial list completes (SYNCED) only once `release` is set."""

    def __init__(self, inner: FakeKubernetes) -> None:
        self.inner = inner
        self.release = anyio.Event()

    async def watch(self) -> AsyncIterator[WatchEvent]:
        async for event in self.inner.watch():
            if event.kind is WatchKind.SYNCED:
                await self.release.wait()
            yield event

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def task_names() -> set[str]:
    return {task.name for task in anyio.get_running_tasks()}


@pytest.mark.looptime
async def test_the_deciding_loops_start_once_the_cluster_is_listed(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, start_daemon=False) as h:
        kube = SlowList(h.world.kubernetes)
        h.world.kubernetes.add_pod(web_pod("w-0"))
        daemon = h.new_daemon(kubernetes=kube)
        await h.tg.start(daemon.run)  # reports started at once, listed or not

        await anyio.sleep(120)
        assert not daemon.synced.is_set()
        assert "daemon:watcher" in task_names() and not DECIDING & task_names()
        assert not h.world.hyperpod.add_requests  # nothing decided from a half-known cluster

        kube.release.set()
        with anyio.fail_after(5):
            await daemon.synced.wait()
        assert task_names() >= DECIDING
        await wait_for(lambda: len(h.world.hyperpod.add_requests) == 1, 60)
        daemon.stop()
        await daemon.stopped.wait()
        assert not {n for n in task_names() if n.startswith("daemon:")}  # no orphan left running


@pytest.mark.looptime
async def test_run_watcher_reports_started_at_the_first_sync_only(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, start_daemon=False) as h:
        kube = SlowList(h.world.kubernetes)
        h.world.kubernetes.add_pod(web_pod("w-0"))
        ctx = h.new_daemon(kubernetes=kube).ctx
        started = anyio.Event()

        async def start_watcher() -> None:
            await h.tg.start(run_watcher, ctx, name="test:watcher")
            started.set()

        h.tg.start_soon(start_watcher, name="test:start-watcher")
        await anyio.sleep(60)
        assert not started.is_set() and not ctx.cache.synced
        kube.release.set()
        with anyio.fail_after(5):
            await started.wait()
        assert ctx.cache.synced and "default/w-0" in ctx.cache.pods
