"""The Service end to end on the in-memory world: probes, metrics, systemd notifications, stop, reload.

`Service.serve` runs for real (elector, health server on a free port, daemon); only the backends are
injected. The probes are read over HTTP. Tests that wait on timers run in virtual time (looptime).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest
from service_harness import (
    LEASE,
    SPOT_AZ1,
    CountingHyperPod,
    eventually,
    get,
    in_memory,
    make_service,
    make_world,
    notify_socket,
    opener,
    received,
    samples,
    service_config,
    start,
    value,
    web_pod,
    with_shutdown,
)
from structlog.testing import capture_logs

from hpscaler.config import default_config_path, load_config


async def test_probes_and_metrics_through_a_first_provisioning_round() -> None:
    config = service_config()
    world = make_world(config)
    hyperpod = CountingHyperPod(world.hyperpod)
    service = make_service(config, opener(in_memory(world), hyperpod), holder="a", clock=world.clock)
    async with anyio.create_task_group() as tg:
        await tg.start(world.run)
        running = await start(tg, service)
        port = service.port
        assert port is not None and service.config.settings.health.bind == "127.0.0.1"
        await eventually(lambda: service.daemon is not None and service.daemon.synced.is_set(), 10)

        # Leading and synced, but nothing reconciled yet: alive, not ready.
        assert await get(port, "/healthz") == (200, "ok: leader, 0 reconciles\n")
        assert await get(port, "/readyz") == (503, "not ready: leader, waiting for the first reconcile\n")
        before = samples((await get(port, "/metrics"))[1])
        assert value(before, "hpscaler_leader") == 1.0
        assert value(before, "karpenter_scheduler_queue_depth") == 0.0
        assert not service.ready.is_set()

        # Ten pending one-CPU pods: one batch, one BatchAddClusterNodes for two Spot nodes.
        for i in range(10):
            world.kubernetes.add_pod(web_pod(f"web-{i}"))
        with anyio.fail_after(10):
            await service.ready.wait()
        assert await get(port, "/readyz") == (200, "ready: leader\n")
        status, text = await get(port, "/metrics")
        assert status == 200
        metrics = samples(text)
        assert len(hyperpod.adds) == 1 and hyperpod.nodes_requested() == 2
        created = value(
            metrics,
            "karpenter_nodeclaims_created_total",
            nodepool="gpunodepool",
            instance_group=SPOT_AZ1,
            capacity_type="spot",
        )
        assert created == 2.0
        assert value(metrics, "karpenter_scheduler_queue_depth") == 10.0  # the nodes have not joined yet
        assert value(metrics, "hpscaler_inflight_nodes") == 2.0
        rounds = value(metrics, "karpenter_scheduler_scheduling_duration_seconds_count")
        assert rounds >= 1.0
        assert value(metrics, "karpenter_scheduler_scheduling_duration_seconds_bucket", le="+Inf") == rounds
        assert value(metrics, "karpenter_cloudprovider_errors_total", provider="hyperpod") == 0.0
        assert (
            value(metrics, "karpenter_interruption_actions_performed_total", action_type="CordonAndDrain")
            == 0
        )
        assert (
            value(
                metrics,
                "karpenter_cloudprovider_instance_type_offering_available",
                instance_group=SPOT_AZ1,
                instance_type="ml.c5.2xlarge",
                capacity_type="spot",
                zone="us-west-2a",
            )
            == 1.0
        )
        await running.stop(within=10)
        tg.cancel_scope.cancel()


@pytest.mark.looptime
async def test_sd_notify_ready_after_the_first_reconcile_and_watchdog_only_while_loops_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = service_config()
    world = make_world(config)
    hyperpod = CountingHyperPod(world.hyperpod)
    stall = 60.0
    with notify_socket() as (path, sock):
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "4000000")  # WatchdogSec=4: a ping every 2 s
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        service = make_service(
            config, opener(in_memory(world), hyperpod), holder="a", clock=world.clock, stall_seconds=stall
        )
        log: list[tuple[float, str]] = []

        def drain() -> list[str]:
            new = received(sock)
            log.extend((anyio.current_time(), m) for m in new)
            return [m for _, m in log]

        async with anyio.create_task_group() as tg:
            await tg.start(world.run)
            running = await start(tg, service)
            await eventually(lambda: service.daemon is not None and service.daemon.synced.is_set(), 10)
            await anyio.sleep(5)  # no pod: the first reconcile is the launch monitor's, after 10 s
            assert not any(m.startswith("READY=1") for m in drain())
            assert sum(m == "WATCHDOG=1" for m in drain()) >= 2  # alive while waiting

            world.kubernetes.add_pod(web_pod("web-0"))
            await eventually(lambda: any(m.startswith("READY=1") for m in drain()), 10, step=0.01)
            (ready_at, ready) = next((t, m) for t, m in log if m.startswith("READY=1"))
            assert ready == "READY=1\nSTATUS=leader"
            assert service.daemon is not None and service.daemon.provisioner.last_plan is not None
            assert len(hyperpod.adds) == 1  # the reconcile that made it ready ran
            assert sum(m.startswith("READY=1") for m in drain()) == 1

            # The loops hang: every HyperPod call blocks, so no reconcile finishes any more.
            gate = hyperpod.hold("list_nodes", "batch_add_nodes")
            hung_at = anyio.current_time()
            for _ in range(int(stall + 30)):
                await anyio.sleep(1)
                drain()  # read as systemd does, so the socket's queue never fills
            pings = [t for t, m in log if m == "WATCHDOG=1"]
            assert any(hung_at < t for t in pings)  # still fed for a while (a slow round is not a hang)
            assert max(pings) <= hung_at + stall + 2.0 + 0.01  # then starved: systemd restarts the unit
            ok, detail = service.liveness()
            assert not ok and "no reconcile for" in detail
            assert service.port is not None

            running.service.stop("test")
            await eventually(lambda: "STOPPING=1" in drain(), 5)
            gate.set()
            with anyio.fail_after(10):
                await running.done.wait()
            tg.cancel_scope.cancel()
        assert ready_at <= hung_at


@pytest.mark.looptime
async def test_stop_lets_an_inflight_batch_add_finish_then_releases_the_lease() -> None:
    config = with_shutdown(service_config(), 30)
    world = make_world(config)
    hyperpod = CountingHyperPod(world.hyperpod)
    exits: list[int] = []
    service = make_service(
        config, opener(in_memory(world), hyperpod), holder="a", clock=world.clock, exit=exits.append
    )
    async with anyio.create_task_group() as tg:
        await tg.start(world.run)
        running = await start(tg, service)
        await eventually(lambda: service.daemon is not None and service.daemon.synced.is_set(), 10)
        gate = hyperpod.hold("batch_add_nodes")
        world.kubernetes.add_pod(web_pod("web-0"))
        await eventually(lambda: service.daemon is not None and service.daemon.ctx.plan_lock.locked(), 10)
        await anyio.sleep(1)  # the BatchAdd call is on the wire
        stop_at = anyio.current_time()
        service.stop("SIGTERM")
        await anyio.sleep(10)  # the call takes 10 more seconds
        assert not running.done.is_set() and hyperpod.adds == []
        gate.set()
        with anyio.fail_after(5):
            await running.done.wait()
        tg.cancel_scope.cancel()
    assert anyio.current_time() - stop_at < 30
    assert len(hyperpod.adds) == 1  # finished and recorded, not cut
    assert exits == []  # within shutdownSeconds: a clean exit
    lease = world.kubernetes.lease(LEASE)
    assert lease is not None and lease.holder == "a" and lease.duration_seconds < 1  # released
    assert service.elector is not None and service.elector.released == 1


@pytest.mark.looptime
async def test_stop_that_overruns_shutdown_seconds_exits_1_at_the_limit() -> None:
    config = with_shutdown(service_config(), 20)
    world = make_world(config)
    hyperpod = CountingHyperPod(world.hyperpod)
    exits: list[tuple[int, float]] = []
    service = make_service(
        config,
        opener(in_memory(world), hyperpod),
        holder="a",
        clock=world.clock,
        exit=lambda code: exits.append((code, anyio.current_time())),
    )
    async with anyio.create_task_group() as tg:
        await tg.start(world.run)
        running = await start(tg, service)
        await eventually(lambda: service.daemon is not None and service.daemon.synced.is_set(), 10)
        gate = hyperpod.hold("batch_add_nodes")  # a call that never returns
        world.kubernetes.add_pod(web_pod("web-0"))
        await eventually(lambda: service.daemon is not None and service.daemon.ctx.plan_lock.locked(), 10)
        with capture_logs() as logs:
            stop_at = anyio.current_time()
            service.stop("SIGTERM")
            await eventually(lambda: bool(exits), 25, step=0.5)
        gate.set()
        with anyio.fail_after(5):
            await running.done.wait()
        tg.cancel_scope.cancel()
    ((code, at),) = exits
    assert code == 1 and at - stop_at == pytest.approx(20, abs=0.01)
    timeout = [e for e in logs if e["event"] == "shutdown_timeout"]
    assert timeout and timeout[0]["log_level"] == "error" and timeout[0]["seconds"] == 20


def _copy_seed(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(default_config_path(), directory)
    return directory


async def test_reload_applies_a_valid_config_and_keeps_the_old_one_when_invalid(tmp_path: Path) -> None:
    directory = _copy_seed(tmp_path)
    hpscaler_yaml = directory / "hpscaler.yaml"
    hpscaler_yaml.write_text(
        hpscaler_yaml.read_text()
        .replace("port: 8080", "port: 0")
        .replace("idleSeconds: 1.0", "idleSeconds: 0.05")
    )
    config = load_config(directory)
    world = make_world(config)
    hyperpod = CountingHyperPod(world.hyperpod)
    service = make_service(
        config, opener(in_memory(world), hyperpod), holder="a", clock=world.clock, config_path=directory
    )
    nodepool = directory / "nodepool.yaml"
    original = nodepool.read_text()
    async with anyio.create_task_group() as tg:
        await tg.start(world.run)
        running = await start(tg, service)
        await eventually(lambda: service.daemon is not None and service.daemon.synced.is_set(), 10)
        daemon = service.daemon
        assert daemon is not None

        # Valid: consolidation switched off. Applied to the service and to the running daemon.
        hpscaler_yaml.write_text(hpscaler_yaml.read_text().replace("enabled: true", "enabled: false"))
        with capture_logs() as logs:
            assert service.reload()
        assert service.config.settings.consolidation.enabled is False
        assert daemon.ctx.config is service.config
        assert [e["event"] for e in logs] == ["config_reloaded"]

        # Invalid: an unknown operator. Rejected with file, object and field; the old config stays.
        accepted = service.config
        nodepool.write_text(original.replace("operator: In", "operator: Within", 1))
        with capture_logs() as logs:
            assert not service.reload()
        (rejected,) = logs
        assert rejected["event"] == "config_reload_rejected" and rejected["log_level"] == "error"
        assert rejected["kept"] == "previous configuration"
        (error,) = rejected["errors"]
        assert error["file"].endswith("nodepool.yaml") and error["object"] == "NodePool gpunodepool"
        assert error["field"].endswith("requirements[1].operator")
        assert service.config is accepted and daemon.ctx.config is accepted

        # Valid YAML but a Spot group turned On-Demand: HyperPod refuses that, so the reload is refused.
        nodepool.write_text(original)
        groups = directory / "instance-groups.json"
        groups_text = groups.read_text()
        groups.write_text(groups_text.replace('"Spot": {}', '"OnDemand": {}', 1))
        with capture_logs() as logs:
            assert not service.reload()
        assert logs[0]["event"] == "config_reload_rejected" and SPOT_AZ1 in logs[0]["detail"]
        assert service.config is accepted
        groups.write_text(groups_text)

        # Settings that need a restart (the health port) keep their running values, and the log says so.
        hpscaler_yaml.write_text(hpscaler_yaml.read_text().replace("port: 0", "port: 9999"))
        with capture_logs() as logs:
            assert service.reload()
        assert [e["event"] for e in logs] == ["config_reload_needs_restart", "config_reloaded"]
        assert logs[0]["sections"] == ["health"]
        assert service.config.settings.health.port == 0
        assert service.reloads == 2
        await running.stop(within=10)
        tg.cancel_scope.cancel()


async def test_a_standby_is_ready_as_standby_exposes_no_daemon_metrics_and_never_acts() -> None:
    config = service_config()
    world = make_world(config)
    a_pod, b_pod = CountingHyperPod(world.hyperpod), CountingHyperPod(world.hyperpod)
    a = make_service(config, opener(in_memory(world), a_pod), holder="a", clock=world.clock)
    b = make_service(config, opener(in_memory(world), b_pod), holder="b", clock=world.clock)
    async with anyio.create_task_group() as tg:
        await tg.start(world.run)
        running_a = await start(tg, a)
        await eventually(lambda: a.elector is not None and a.elector.is_leader, 10)
        running_b = await start(tg, b)
        with anyio.fail_after(10):
            await b.ready.wait()
        assert b.port is not None
        assert await get(b.port, "/readyz") == (200, "ready: standby (leader: a)\n")
        assert await get(b.port, "/healthz") == (200, "ok: standby\n")
        metrics = samples((await get(b.port, "/metrics"))[1])
        assert value(metrics, "hpscaler_leader") == 0.0
        assert {name for name, _ in metrics} == {"hpscaler_leader"}
        for i in range(10):
            world.kubernetes.add_pod(web_pod(f"web-{i}"))
        await eventually(lambda: len(a_pod.adds) == 1, 10)
        assert b_pod.adds == [] and b.daemon is None
        await running_b.stop(within=10)
        await running_a.stop(within=10)
        tg.cancel_scope.cancel()


async def test_the_fake_backend_world_runs_on_the_wall_clock_the_service_uses() -> None:
    import time

    from hpscaler.fake.factory import fake_backends

    async with fake_backends(load_config(default_config_path())) as backends:
        assert backends.kubernetes is not None
        lease = await backends.kubernetes.acquire_lease("probe", "me", 15)
    assert abs(lease.renewed - time.time()) < 60
