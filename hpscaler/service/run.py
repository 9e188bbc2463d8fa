"""`hpscaler run`: the daemon as a long-running service.

Backends come from the registry; the daemon runs only while this replica holds the leader lease;
/healthz, /readyz and /metrics are served on one port; systemd hears READY once the first
reconcile succeeded (or, on a standby, once the lease was checked) and gets watchdog pings only
while the loops make progress. SIGTERM/SIGINT stop gracefully within `shutdownSeconds`; SIGHUP
reloads the configuration, keeping the old one if the new one is invalid.
"""

from __future__ import annotations

import os
import signal
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

from hpscaler.backends.registry import BackendSet, open_backends
from hpscaler.catalogue import Catalogue, load_catalogue
from hpscaler.clock import SystemClock
from hpscaler.config import ConfigError, LoadedConfig, check_capacity_type_unchanged, load_config
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.context import Backends
from hpscaler.service import systemd
from hpscaler.service.health import health_server
from hpscaler.service.leader import LeaderElector
from hpscaler.service.metrics import registry_for

log = structlog.get_logger("hpscaler.service")
STALL_SECONDS = 120.0  # no reconcile for this long while leading means a hung loop


@dataclass(slots=True)
class Service:
    """One replica: configuration, backends, the elector and, while leading, the daemon."""

    config_path: Path
    config: LoadedConfig
    catalogue: Catalogue
    holder: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )
    daemon: Daemon | None = None
    elector: LeaderElector | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    _progress: tuple[int, float] = (0, 0.0)

    def reload(self) -> bool:
        """Load the configuration again; keep the old one (and say why) if the new one is invalid."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error(
                "config_reload_rejected", path=str(self.config_path), problems=str(exc), kept="previous"
            )
            return False
        issues = check_capacity_type_unchanged(self.config.instance_groups, new.instance_groups)
        if issues:
            log.error("config_reload_rejected", problems="; ".join(map(str, issues)), kept="previous")
            return False
        self.config = new
        if self.daemon is not None:
            self.daemon.ctx.config = new
        log.info("config_reloaded", path=str(self.config_path), node_pools=len(new.node_pools))
        return True

    def alive(self) -> bool:
        """The loops make progress: a leading daemon reconciled recently (standbys are alive)."""
        if self.daemon is None:
            return True
        ctx = self.daemon.ctx
        count, since = self._progress
        now = ctx.clock.now()
        current = ctx.stats.counters.get("reconciles", 0)
        if current != count or since == 0.0:
            self._progress = (current, now)
            return True
        return now - since < STALL_SECONDS

    def is_ready(self) -> bool:
        """Ready to serve: synced and reconciled once as leader, or a standby that checked the lease."""
        return self.ready.is_set()

    async def lead(self, backends: BackendSet) -> None:
        """The work done while holding the lease: run the daemon."""
        assert backends.kubernetes is not None and backends.hyperpod is not None
        daemon = Daemon(
            self.config,
            Backends(backends.kubernetes, backends.hyperpod, backends.scores, backends.interruptions),
            self.catalogue,
            SystemClock(),
        )
        self.daemon = daemon
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(daemon.run)
                tg.start_soon(self._ready_after_first_reconcile, daemon)
        finally:
            self.daemon = None

    async def _ready_after_first_reconcile(self, daemon: Daemon) -> None:
        await daemon.ctx.synced.wait()
        while daemon.ctx.stats.counters.get("reconciles", 0) == 0:
            await daemon.ctx.wait_until(lambda: daemon.ctx.stats.counters.get("reconciles", 0) > 0, 5.0)
        self._mark_ready("leader")

    def _mark_ready(self, role: str) -> None:
        if not self.ready.is_set():
            self.ready.set()
            systemd.notify(f"READY=1\nSTATUS=hpscaler running as {role}")
            log.info("service_ready", role=role, holder=self.holder)

    async def _standby_ready(self, elector: LeaderElector) -> None:
        await elector.checked.wait()
        if not elector.is_leader:
            self._mark_ready("standby")

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval()
        if interval is None:
            return
        while True:
            if self.alive():
                systemd.notify("WATCHDOG=1")
            await anyio.sleep(interval)

    async def _signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self.reload()
                    continue
                log.info("shutdown_requested", signal=signal.Signals(signum).name)
                systemd.notify("STOPPING=1")
                daemon = self.daemon
                if daemon is not None:
                    daemon.stop()
                    # Shielded calls (a BatchAdd being recorded) finish; a hung one is cut at the limit.
                    with anyio.move_on_after(self.config.settings.shutdown_seconds) as wait:
                        await daemon.stopped.wait()
                    if wait.cancelled_caught:
                        log.warning("shutdown_timeout", seconds=self.config.settings.shutdown_seconds)
                scope.cancel()
                return

    async def serve(self) -> None:
        """Run until a stop signal arrives."""
        settings = self.config.settings
        async with open_backends(self.config) as backends:
            assert backends.kubernetes is not None
            kube = settings.kubernetes
            elector = LeaderElector(
                backends.kubernetes,
                name=kube.lease_name,
                holder=self.holder,
                lease_seconds=kube.lease_seconds,
                renew_seconds=kube.renew_seconds,
                clock=SystemClock(),
            )
            self.elector = elector
            registry = registry_for(
                lambda: self.daemon.ctx if self.daemon else None, lambda: elector.is_leader
            )
            async with health_server(
                settings.health.bind,
                settings.health.port,
                alive=self.alive,
                ready=self.is_ready,
                registry=registry,
            ) as port:
                log.info("service_started", holder=self.holder, health_port=port)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._signals, tg.cancel_scope)
                    tg.start_soon(self._watchdog)
                    tg.start_soon(self._standby_ready, elector)
                    tg.start_soon(elector.run, lambda: self.lead(backends))
        log.info("service_stopped")


def run_service(config_path: str | Path) -> None:
    """Load configuration and serve (the `hpscaler run` command)."""
    from hpscaler.logs import configure

    path = Path(config_path)
    config = load_config(path)
    configure(
        os.environ.get("HPSCALER_LOG_LEVEL", config.settings.logging.level), config.settings.logging.format
    )
    catalogue = load_catalogue()
    if config.settings.prices:
        catalogue = catalogue.with_prices(config.settings.price_overrides())
    anyio.run(Service(path, config, catalogue).serve)
