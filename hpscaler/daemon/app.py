"""The daemon: every loop in one anyio task group, stopped together on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
from anyio import CancelScope
from anyio.abc import TaskStatus

from hpscaler.backends.protocols import BackendError
from hpscaler.catalogue import Catalogue
from hpscaler.clock import Clock
from hpscaler.config import LoadedConfig
from hpscaler.daemon.batcher import Batcher
from hpscaler.daemon.consolidator import Consolidator
from hpscaler.daemon.context import Backends, DaemonContext
from hpscaler.daemon.interruption import InterruptionHandler
from hpscaler.daemon.persistence import load_backoffs, persist_backoffs
from hpscaler.daemon.provisioner import Provisioner
from hpscaler.daemon.recovery import clear_orphaned_taints
from hpscaler.daemon.watcher import run_watcher
from hpscaler.model import CapacityType
from hpscaler.scheduling.unavailable import UnavailableOfferings

MONITOR_SECONDS = 10.0
SCORE_REFRESH_SECONDS = 600.0


class Daemon:
    """hpscaler's loops wired to one set of backends."""

    def __init__(self, config: LoadedConfig, backends: Backends, catalogue: Catalogue, clock: Clock) -> None:
        settings = config.settings
        backoff = settings.out_of_capacity_backoff
        self.ctx = DaemonContext(
            config=config,
            backends=backends,
            catalogue=catalogue,
            clock=clock,
            batcher=Batcher(settings.batching.idle_seconds, settings.batching.max_seconds),
            unavailable=UnavailableOfferings(
                backoff.initial_seconds, backoff.max_seconds, backoff.multiplier
            ),
        )
        self.state_path = Path(settings.state_path) if settings.state_path else None
        if self.state_path is not None:
            load_backoffs(self.ctx, self.state_path)
        self.provisioner = Provisioner(self.ctx)
        self.interruptions = InterruptionHandler(self.ctx, self.provisioner)
        self.consolidator = Consolidator(self.ctx, self.provisioner)
        self._scope: CancelScope | None = None
        self._stop_requested = False
        self.stopped = anyio.Event()  # set once `run` has returned (every loop has ended)

    async def run(
        self, *, handle_signals: bool = False, task_status: TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled, `stop()` is called, or (with handle_signals) SIGTERM/SIGINT arrives."""
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                if self._stop_requested:
                    tg.cancel_scope.cancel()  # stopped before it started
                tg.start_soon(run_watcher, self.ctx)
                tg.start_soon(clear_orphaned_taints, self.ctx)
                tg.start_soon(self.provisioner.run_batches)
                tg.start_soon(self.provisioner.run_launch_monitor, MONITOR_SECONDS)
                tg.start_soon(self.interruptions.run)
                tg.start_soon(self.consolidator.run)
                tg.start_soon(self._refresh_scores)
                if self.state_path is not None:
                    tg.start_soon(persist_backoffs, self.ctx, self.state_path)
                if handle_signals:
                    tg.start_soon(self._stop_on_signal)
                task_status.started(self)
        finally:
            self.stopped.set()
        self.ctx.log.info("daemon_stopped")

    def stop(self) -> None:
        """Ask every loop to finish; in-progress API calls that must not be cut complete first."""
        self._stop_requested = True
        if self._scope is not None:
            self._scope.cancel()

    async def _stop_on_signal(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self.ctx.log.info("shutdown_requested", signal=signal.Signals(signum).name)
                self.stop()
                return

    async def _refresh_scores(self) -> None:
        """Keep Spot placement scores fresh; on failure the last scores stay in use."""
        ctx = self.ctx
        source = ctx.backends.scores
        if source is None:
            return
        spot = [g for g in ctx.config.instance_groups if g.capacity_type is CapacityType.SPOT]
        if not spot:
            return
        while True:
            types = sorted({t for g in spot for t in g.instance_types})
            try:
                scores = await source.scores(types, target_capacity=max(1, len(spot)))
                ctx.scores = dict(scores)
                ctx.log.info("placement_scores_refreshed", scores=ctx.scores)
            except BackendError as exc:
                ctx.stats.counters["cloudprovider_errors"] += 1
                ctx.log.warning("placement_scores_failed", error=str(exc), kept=ctx.scores)
            await anyio.sleep(SCORE_REFRESH_SECONDS)
