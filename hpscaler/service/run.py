"""`hpscaler run`: the daemon as a long-running service.

Backends come from the registry; the daemon runs only while this replica holds the leader lease;
/healthz, /readyz and /metrics are served on one port. systemd hears READY once the first reconcile
succeeded (on a standby: once the lease was read and someone else holds it) and gets watchdog pings
only while the loops make progress.

Signals: SIGTERM/SIGINT stop gracefully. The daemon's loops stop, calls that must not be cut (a
BatchAddClusterNodes being recorded) finish, the lease is released so a standby takes over at once,
and the process exits 0. Should that take longer than `spec.shutdownSeconds`, the process exits 1
without waiting (a call cut that way is safe to repeat: its ClientToken makes it idempotent).
SIGHUP reloads the configuration; an invalid new one is rejected with every problem logged (file,
object, field), and the old one stays in force.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskStatus

from hpscaler.backends.registry import BackendNotFound, BackendSet, check_backends, open_backends
from hpscaler.catalogue import Catalogue
from hpscaler.clock import Clock, SystemClock
from hpscaler.config import ConfigError, LoadedConfig, check_capacity_type_unchanged, load_config
from hpscaler.config.validate import ConfigIssue
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.events import ReconcileRan
from hpscaler.logs import Format, configure, parse_format, parse_level
from hpscaler.service import systemd
from hpscaler.service.leader import LeaderElector
from hpscaler.service.metrics import registry_for
from hpscaler.service.startup import StartupError as StartupError
from hpscaler.service.startup import bind_health, daemon_backends, lease_store, read_cluster
from hpscaler.signals import missing_source_warning

log = structlog.get_logger("hpscaler.service")

STALL_SECONDS = 120.0  # no reconcile for this long while leading means a hung loop
READY_POLL_SECONDS = 0.1
EXIT_OK = 0
EXIT_FAILED = 1  # crashed, or the graceful stop overran spec.shutdownSeconds
EXIT_INVALID = 2  # could not start: invalid configuration, no kubeconfig, health port taken
# Settings the running service cannot change on the fly (open connections, the lease, the port,
# state built at start-up): a reload keeps their old values and says a restart is needed.
RESTART_SECTIONS = (
    "backends",
    "aws",
    "kubernetes",
    "health",
    "batching",
    "out_of_capacity_backoff",
    "state_path",
)

BackendOpener = Callable[[LoadedConfig], AbstractAsyncContextManager[BackendSet]]


def _default_holder() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _hard_exit(code: int) -> None:
    sys.stderr.flush()
    os._exit(code)


def _issues(issues: list[ConfigIssue]) -> list[dict[str, str]]:
    return [
        {"file": i.file, "object": i.obj, "field": i.field, "message": i.message, "fix": i.fix}
        for i in issues
        if i.severity == "error"
    ]


def _reject_reload(path: str, detail: str, issues: list[ConfigIssue]) -> bool:
    log.error(
        "config_reload_rejected",
        path=path,
        errors=_issues(issues),
        detail=detail,
        kept="previous configuration",
    )
    return False


def read_config(path: Path, *, require_instance_groups: bool = True) -> LoadedConfig | ConfigError:
    """`load_config`, with every failure as a ConfigError (a reload must never crash the service)."""
    try:
        return load_config(path, require_instance_groups=require_instance_groups)
    except ConfigError as exc:
        return exc
    except Exception as exc:  # whatever the files hold, the running service stays up
        issue = ConfigIssue(str(path), "configuration", "", f"cannot be loaded: {exc!r}", "fix the files")
        return ConfigError([issue])


def reload_problems(old: LoadedConfig, new: LoadedConfig, path: str) -> list[ConfigIssue]:
    """Why `new` cannot replace `old` in a running service (changes that need a restart to be safe)."""
    problems = check_capacity_type_unchanged(old.instance_groups, new.instance_groups)
    if new.cluster_name != old.cluster_name:
        problems.append(
            ConfigIssue(
                ",".join(new.sources) or path,
                "HpscalerConfig",
                "spec.clusterName",
                f"changed from {old.cluster_name!r} to {new.cluster_name!r}",
                "a different cluster needs a restart of hpscaler",
            )
        )
    return problems


def keep_restart_sections(old: LoadedConfig, new: LoadedConfig) -> tuple[LoadedConfig, list[str]]:
    """`new` with the `RESTART_SECTIONS` that changed put back to `old`'s values, and their names."""
    fixed = [n for n in RESTART_SECTIONS if getattr(old.settings, n) != getattr(new.settings, n)]
    if not fixed:
        return new, fixed
    kept = {name: getattr(old.settings, name) for name in fixed}
    return replace(new, settings=new.settings.model_copy(update=kept)), fixed


def log_settings(config: LoadedConfig) -> tuple[str, Format]:
    """The log level and format: HPSCALER_LOG_LEVEL / HPSCALER_LOG_FORMAT win over `spec.logging`."""
    logging = config.settings.logging
    level = parse_level(os.environ.get("HPSCALER_LOG_LEVEL") or logging.level)
    fmt = parse_format(os.environ.get("HPSCALER_LOG_FORMAT") or logging.format)
    return level, fmt


@dataclass(slots=True, eq=False)
class Service:
    """One replica: configuration, backends, the elector and, while leading, the daemon."""

    config_path: Path
    config: LoadedConfig
    catalogue: Catalogue
    holder: str = field(default_factory=_default_holder)
    clock: Clock = field(default_factory=SystemClock)
    backends_opener: BackendOpener = open_backends
    handle_signals: bool = True
    # Read the instance groups from DescribeCluster (and check the prerequisites) before serving.
    live_cluster: bool = True
    stall_seconds: float = STALL_SECONDS
    # Called when a graceful stop overran spec.shutdownSeconds (tests replace it).
    exit: Callable[[int], None] = _hard_exit
    daemon: Daemon | None = None
    elector: LeaderElector | None = None
    port: int | None = None  # the health port once bound
    started: anyio.Event = field(default_factory=anyio.Event)  # serving: signals handled, port bound
    ready: anyio.Event = field(default_factory=anyio.Event)  # READY=1 was sent
    reloads: int = 0  # configurations accepted by `reload`
    # (level, format) that `run_service` configured logging with; a reload that changes it reapplies.
    log_applied: tuple[str, Format] | None = None
    _stop_requested: anyio.Event = field(default_factory=anyio.Event)
    _reload_requested: anyio.Event = field(default_factory=anyio.Event)
    _stop_reason: str = ""
    _stopping: bool = False
    _progress: tuple[int, int, float] = (0, -1, 0.0)  # (id of the daemon, reconciles, when seen)
    _overran: bool = False
    _backstop: threading.Timer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- probes ---------------------------------------------------------------------------------

    def liveness(self) -> tuple[bool, str]:
        """The loops make progress: a leading daemon reconciled within `stall_seconds`."""
        daemon = self.daemon
        if daemon is None:
            return True, "leader, starting" if self.elector and self.elector.is_leader else "standby"
        now = self.clock.now()
        current = daemon.ctx.stats.events.count(ReconcileRan)
        ident, count, since = self._progress
        if ident != id(daemon) or current != count:
            self._progress = (id(daemon), current, now)
            return True, f"leader, {current} reconciles"
        idle = now - since
        if idle < self.stall_seconds:
            return True, f"leader, {current} reconciles"
        return False, f"no reconcile for {idle:.0f}s (limit {self.stall_seconds:.0f}s): a loop is stuck"

    def readiness(self) -> tuple[bool, str]:
        """Leader: after its first successful reconcile. Standby: while it can read the lease."""
        elector = self.elector
        if self._stopping:
            return False, "stopping"
        if elector is None or not elector.checked.is_set():
            return False, "starting, lease not read yet"
        if elector.is_leader:
            daemon = self.daemon
            if daemon is not None and daemon.provisioner.last_plan is not None:
                return True, "leader"
            return False, "leader, waiting for the first reconcile"
        observed = elector.observed
        if observed is None:
            return False, "standby, cannot read the lease"
        return True, f"standby (leader: {observed.holder or 'none'})"

    # --- configuration --------------------------------------------------------------------------

    def reload(self) -> bool:
        """Load the configuration again; keep the old one (and log why) if the new one is invalid."""
        return self.apply_reload(read_config(self.config_path, require_instance_groups=not self.live_cluster))

    async def reload_off_loop(self) -> bool:
        """`reload`, with the files read and parsed on a worker thread so health and signals go on."""
        loaded = await anyio.to_thread.run_sync(
            partial(read_config, self.config_path, require_instance_groups=not self.live_cluster),
            abandon_on_cancel=True,
        )
        return self.apply_reload(loaded)

    def apply_reload(self, loaded: LoadedConfig | ConfigError) -> bool:
        """Switch to a configuration `read_config` returned, unless it is an error or unsafe to apply."""
        path = str(self.config_path)
        if isinstance(loaded, ConfigError):
            return _reject_reload(path, str(loaded), loaded.issues)
        new = loaded
        problems = reload_problems(self.config, new, path)
        if problems:
            return _reject_reload(path, "; ".join(map(str, problems)), problems)
        new, fixed = keep_restart_sections(self.config, new)
        if fixed:
            log.warning(
                "config_reload_needs_restart",
                path=path,
                sections=fixed,
                detail="these settings keep their old values until hpscaler restarts",
            )
        try:
            level, fmt = log_settings(new)
        except ValueError as exc:
            return _reject_reload(path, str(exc), [])
        if self.log_applied is not None and self.log_applied != (level, fmt):
            configure(level, fmt)
            self.log_applied = (level, fmt)
        if self.live_cluster:  # the groups stay the cluster's own (the daemon's are the freshest)
            source = self.daemon.ctx.config if self.daemon is not None else self.config
            new = replace(new, instance_groups=source.instance_groups)
        self.config = new
        if self.daemon is not None:
            self.daemon.ctx.replace_config(new)
        self.reloads += 1
        log.info(
            "config_reloaded",
            path=path,
            node_pools=len(new.node_pools),
            instance_groups=len(new.instance_groups),
            log_level=level,
        )
        return True

    # --- stopping -------------------------------------------------------------------------------

    def stop(self, reason: str = "requested") -> None:
        """Begin a graceful stop (what SIGTERM does); `serve` returns once it is done."""
        if not self._stop_requested.is_set():
            self._stop_reason = reason
            self._stop_requested.set()

    def _overrun(self, seconds: float) -> None:
        with self._lock:
            if self._overran:
                return
            self._overran = True
        log.error(
            "shutdown_timeout",
            seconds=seconds,
            detail="calls still in flight are abandoned; their ClientTokens make them safe to repeat",
        )
        self.exit(EXIT_FAILED)

    async def _shutdown_when_asked(self, scope: anyio.CancelScope) -> None:
        await self._stop_requested.wait()
        limit = self.config.settings.shutdown_seconds
        self._stopping = True
        log.info("shutdown_requested", reason=self._stop_reason, limit_seconds=limit)
        systemd.notify("STOPPING=1")
        # A backstop on another thread: the process ends within the limit even if the loop is stuck.
        self._backstop = threading.Timer(limit, self._overrun, args=(limit,))
        self._backstop.daemon = True
        self._backstop.start()
        with anyio.move_on_after(limit) as wait:
            daemon = self.daemon
            if daemon is not None:
                daemon.stop()
                # Shielded calls (a BatchAdd being recorded) finish; the rest stops at once.
                await daemon.stopped.wait()
        if wait.cancelled_caught:
            self._overrun(limit)
        scope.cancel()  # the elector releases the lease once the daemon is gone

    # --- running --------------------------------------------------------------------------------

    async def lead(self, backends: BackendSet) -> None:
        """The work done while holding the lease: run the daemon."""
        assert backends.kubernetes is not None and backends.hyperpod is not None
        if self._stopping:
            return
        daemon = Daemon(
            self.config, daemon_backends(backends), self.catalogue, self.clock, live_groups=self.live_cluster
        )
        self.daemon = daemon
        systemd.notify("STATUS=leader: autoscaling")
        try:
            await daemon.run()
        finally:
            self.daemon = None
            if not self._stopping:
                systemd.notify("STATUS=standby")

    async def _announce_ready(self) -> None:
        while not self.readiness()[0]:  # noqa: ASYNC110 - readiness combines the elector and daemon
            await anyio.sleep(READY_POLL_SECONDS)
        role = self.readiness()[1]
        systemd.notify(f"READY=1\nSTATUS={role}")
        self.ready.set()
        log.info("service_ready", role=role, holder=self.holder)

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval()
        if interval is None:
            return
        withheld = False
        while True:
            ok, detail = self.liveness()
            if ok:
                systemd.notify("WATCHDOG=1")
                withheld = False
            elif not withheld:
                log.error("watchdog_withheld", reason=detail)
                withheld = True
            await anyio.sleep(interval)

    async def _reloader(self) -> None:
        """Reloads one at a time, off the signal loop: SIGTERM is heard while a reload parses."""
        while True:
            await self._reload_requested.wait()
            self._reload_requested = anyio.Event()
            await self.reload_off_loop()

    async def _signals(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("config_reload_requested", path=str(self.config_path))
                    self._reload_requested.set()
                else:
                    self.stop(signal.Signals(signum).name)

    async def serve(self) -> None:
        """Run until `stop()` is called or a stop signal arrives."""
        settings = self.config.settings
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    backends = await stack.enter_async_context(self.backends_opener(self.config))
                except Exception as exc:
                    raise StartupError(f"cannot open the backends: {exc}") from exc
                assert backends.kubernetes is not None
                assert backends.hyperpod is not None
                if self.live_cluster:
                    self.config = await read_cluster(backends.hyperpod, self.config)
                store = lease_store(backends.kubernetes)
                kube = settings.kubernetes
                elector = LeaderElector(
                    store,
                    name=kube.lease_name,
                    holder=self.holder,
                    lease_seconds=kube.lease_seconds,
                    renew_seconds=kube.renew_seconds,
                    clock=self.clock,
                )
                self.elector = elector
                registry = registry_for(
                    lambda: self.daemon.ctx if self.daemon else None, lambda: elector.is_leader
                )
                port = await bind_health(
                    stack,
                    settings.health.bind,
                    settings.health.port,
                    alive=self.liveness,
                    ready=self.readiness,
                    registry=registry,
                )
                async with anyio.create_task_group() as tg:
                    self.port = port
                    if self.handle_signals:
                        await tg.start(self._signals, name="service:signals")
                        tg.start_soon(self._reloader, name="service:reloader")
                    tg.start_soon(self._shutdown_when_asked, tg.cancel_scope, name="service:shutdown")
                    tg.start_soon(self._watchdog, name="service:watchdog")
                    tg.start_soon(self._announce_ready, name="service:ready")
                    tg.start_soon(elector.run, lambda: self.lead(backends), name="service:leader-election")
                    log.info(
                        "service_started",
                        holder=self.holder,
                        health=f"{settings.health.bind}:{port}",
                        lease=kube.lease_name,
                        config=str(self.config_path),
                    )
                    self.started.set()
        finally:
            if self._backstop is not None:
                self._backstop.cancel()
        released = self.elector is not None and self.elector.released > 0
        log.info("service_stopped", reason=self._stop_reason or None, lease_released=released)


def _startup_error(exc: BaseException) -> StartupError | None:
    """The StartupError behind `exc`, also when a backend's task group wrapped it in a group."""
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _startup_error(exc.exceptions[0])
    return None


def run_service(config_path: str | Path, config: LoadedConfig | None = None) -> int:
    """Load configuration (unless the caller already did) and serve (the `hpscaler run` command).

    The process exit code. Raises ConfigError (invalid configuration), ValueError (bad
    HPSCALER_LOG_* value) and BackendNotFound before serving. A failure to start (no kubeconfig,
    the health port taken) is one `service_start_failed` line and exit code 2; a crash while
    serving is logged with its traceback and gives exit code 1.
    """
    path = Path(config_path)
    if config is None:
        config = load_config(path)
    level, fmt = log_settings(config)
    configure(level, fmt)
    catalogue = config.catalogue()
    check_backends(config)  # before anything is opened
    if no_source := missing_source_warning(config.settings):
        log.warning("no_interruption_source", message=no_source)
    try:
        anyio.run(Service(path, config, catalogue, log_applied=(level, fmt)).serve)
    except BackendNotFound:
        raise
    except Exception as exc:
        startup = _startup_error(exc)
        if startup is not None:
            log.error("service_start_failed", error=str(startup))
            return EXIT_INVALID  # logged as one JSON line, for the journal or the container log
        log.error("service_failed", error=str(exc) or type(exc).__name__, exc_info=exc)
        return EXIT_FAILED
    return EXIT_OK
