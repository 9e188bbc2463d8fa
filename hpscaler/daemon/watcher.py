"""The pending-pod watcher: keeps the cluster cache current and opens batching windows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskStatus

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import WatchEvent, WatchKind
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import WatchLost, WatchResynced

RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
# A fresh list now and then heals a cache that missed an event without noticing (a proxy that
# dropped a line, a bug anywhere on the way): decisions never rest on a stale view for long.
RESYNC_SECONDS = 600.0


async def run_watcher(
    ctx: DaemonContext,
    resync_seconds: float = RESYNC_SECONDS,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Consume the Kubernetes watch forever, re-listing after every lost stream and every resync period.

    Reports itself started (`await tg.start(run_watcher, ctx)`) once the first list is in the
    cache: the loops that decide from the cache start only then.
    """
    failures = 0
    synced = False
    while True:
        ctx.cache.begin_relist()
        try:
            with anyio.move_on_after(resync_seconds) as resync:
                async with _closing(ctx.backends.kubernetes.watch()) as events:
                    async for event in events:
                        failures = 0
                        _apply(ctx, event)
                        if event.kind is WatchKind.SYNCED and not synced:
                            synced = True
                            _first_sync(ctx, task_status)
        except BackendError as exc:
            ctx.record(WatchLost(str(exc)))
        else:
            if resync.cancelled_caught:
                ctx.record(WatchResynced())
                continue
        delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
        failures += 1
        await anyio.sleep(delay)


@asynccontextmanager
async def _closing(events: AsyncIterator[WatchEvent]) -> AsyncIterator[AsyncIterator[WatchEvent]]:
    """Close the backend's stream when the watcher stops reading it (a resync or a shutdown)."""
    try:
        yield events
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _apply(ctx: DaemonContext, event: WatchEvent) -> None:
    now = ctx.clock.now()
    if ctx.cache.apply(event, now):
        ctx.batcher.trigger()
    ctx.notify()
    if event.kind is WatchKind.SYNCED:
        _forget_gone(ctx)
    elif event.pod is not None:
        if event.kind is WatchKind.DELETED:
            ctx.undisplace([event.pod.key])  # gone: its controller's replacement is pending by itself
        _track_latency(ctx, event.kind, event.pod.key, event.pod.phase, bool(event.pod.node_name), now)
    elif event.node is not None and event.kind is WatchKind.DELETED:
        _node_gone(ctx, event.node.name)


def _first_sync(ctx: DaemonContext, task_status: TaskStatus[None]) -> None:
    ctx.log.info("cluster_synced", pods=len(ctx.cache.pods), nodes=len(ctx.cache.nodes))
    task_status.started()


def _track_latency(
    ctx: DaemonContext, kind: WatchKind, key: str, phase: str, bound: bool, now: float
) -> None:
    if kind is WatchKind.DELETED:
        ctx.stats.pod_gone(key)
    elif bound and phase == "Running":
        ctx.stats.pod_running(key, now)
    elif not bound:
        ctx.stats.pod_pending(key, now)


def _node_gone(ctx: DaemonContext, name: str) -> None:
    ctx.unmark_for_deletion(name)
    # A node that vanished takes its pods; the controllers' replacements open a window anyway,
    # but triggering now saves the wait for the first of them.
    ctx.batcher.trigger()


def _forget_gone(ctx: DaemonContext) -> None:
    """After a (re-)list: forget what vanished while no watch reported its deletion."""
    for name in [n for n in ctx.disrupting if n not in ctx.cache.nodes]:
        _node_gone(ctx, name)
    ctx.undisplace([k for k in ctx.displaced if k not in ctx.cache.pods])
