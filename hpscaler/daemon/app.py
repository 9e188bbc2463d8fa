"""The daemon: every loop in one anyio task group, stopped together on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path

import anyio
from anyio import CancelScope
from anyio.abc import TaskStatus

from hpscaler.backends.protocols import ProvisioningRequestSource
from hpscaler.catalogue import Catalogue
from hpscaler.clock import Clock
from hpscaler.config import LoadedConfig
from hpscaler.daemon.batcher import Batcher
from hpscaler.daemon.cluster_sync import refresh_cluster, request_cluster_refresh
from hpscaler.daemon.consolidator import Consolidator
from hpscaler.daemon.context import Backends, DaemonContext
from hpscaler.daemon.interruption import InterruptionHandler
from hpscaler.daemon.persistence import load_state, persist_state
from hpscaler.daemon.provisioner import Provisioner
from hpscaler.daemon.provreq import ProvisioningRequests
from hpscaler.daemon.recovery import clear_orphaned_taints
from hpscaler.daemon.refresh import refresh_scores, refresh_spot_prices, sync_node_config
from hpscaler.daemon.watcher import run_watcher
from hpscaler.scheduling.unavailable import UnavailableOfferings

MONITOR_SECONDS = 10.0


class Daemon:
    """hpscaler's loops wired to one set of backends."""

    def __init__(
        self,
        config: LoadedConfig,
        backends: Backends,
        catalogue: Catalogue,
        clock: Clock,
        *,
        live_groups: bool = False,
    ) -> None:
        """`live_groups`: the configuration's groups were read from the cluster and are kept current."""
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
        if live_groups:
            self.ctx.live_groups = config.instance_groups
        self.state_path = Path(settings.state_path) if settings.state_path else None
        if self.state_path is not None:
            load_state(self.ctx, self.state_path)
        self.provisioner = Provisioner(self.ctx)
        self.interruptions = InterruptionHandler(self.ctx, self.provisioner)
        if live_groups:  # HyperPod's cluster state-change event: groups may have been added or changed
            self.interruptions.on_cluster_changed = partial(
                request_cluster_refresh, self.ctx, "hyperpod cluster state change"
            )
        self.consolidator = Consolidator(self.ctx, self.provisioner)
        source = backends.kubernetes
        self.provisioning_requests = (
            ProvisioningRequests(self.ctx, self.provisioner, source)
            if isinstance(source, ProvisioningRequestSource)
            else None
        )
        self._scope: CancelScope | None = None
        self._stop_requested = False
        self.synced = anyio.Event()  # set once the cache holds the first full list of the cluster
        self.stopped = anyio.Event()  # set once `run` has returned (every loop has ended)

    async def run(
        self, *, handle_signals: bool = False, task_status: TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled, `stop()` is called, or (with handle_signals) SIGTERM/SIGINT arrives.

        Reports itself started at once; the loops that decide from the cluster cache start when
        the watcher has listed the cluster (`synced`).
        """
        ctx = self.ctx
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                if self._stop_requested:
                    tg.cancel_scope.cancel()  # stopped before it started
                if handle_signals:
                    tg.start_soon(self._stop_on_signal, name="daemon:signals")
                tg.start_soon(refresh_scores, ctx, name="daemon:placement-scores")
                tg.start_soon(refresh_spot_prices, ctx, name="daemon:spot-prices")
                tg.start_soon(sync_node_config, ctx, name="daemon:node-config")
                tg.start_soon(refresh_cluster, ctx, name="daemon:cluster-refresh")
                if self.state_path is not None:
                    tg.start_soon(persist_state, ctx, self.state_path, name="daemon:state-file")
                tg.start_soon(self.provisioner.events.run, name="daemon:pod-events")
                task_status.started(self)
                await tg.start(run_watcher, ctx, name="daemon:watcher")
                self.synced.set()
                tg.start_soon(clear_orphaned_taints, ctx, name="daemon:orphaned-taints")
                tg.start_soon(self.provisioner.run_batches, name="daemon:batches")
                tg.start_soon(
                    self.provisioner.run_launch_monitor, MONITOR_SECONDS, name="daemon:launch-monitor"
                )
                tg.start_soon(self.provisioner.registrar.run, name="daemon:registration")
                tg.start_soon(self.interruptions.run, name="daemon:interruptions")
                tg.start_soon(self.consolidator.run, name="daemon:consolidation")
                if self.provisioning_requests is not None:
                    tg.start_soon(self.provisioning_requests.run, name="daemon:provisioning-requests")
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
