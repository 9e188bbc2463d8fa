"""Out-of-capacity backoffs persist across a restart, and a damaged state file is reported, not fatal."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
import structlog
from daemon_harness import C5_2X, SPOT_AZ1, ZONE_A, running, wait_for, web_pod

from hpscaler.backends.types import NodeStatus
from hpscaler.catalogue import Catalogue
from hpscaler.clock import LoopClock
from hpscaler.config import LoadedConfig
from hpscaler.daemon.context import Backends, DaemonContext
from hpscaler.daemon.persistence import load_state, persist_state, write_state
from hpscaler.fake import FakeHyperPod, FakeKubernetes
from hpscaler.model import CapacityType


def context(config: LoadedConfig, catalogue: object) -> DaemonContext:
    clock = LoopClock(1000.0)
    kube = FakeKubernetes(clock)
    hyperpod = FakeHyperPod(config.cluster_name, config.instance_groups, clock)
    return DaemonContext(
        config=config,
        backends=Backends(kube, hyperpod),
        catalogue=catalogue,  # type: ignore[arg-type]
        clock=clock,
    )


@pytest.mark.looptime
async def test_backoffs_written_by_one_daemon_are_restored_by_the_next(
    tmp_path: Path, seed_config: LoadedConfig, catalogue: object
) -> None:
    path = tmp_path / "state" / "state.json"
    first = context(seed_config, catalogue)
    async with anyio.create_task_group() as tg:
        tg.start_soon(persist_state, first, path)
        first.unavailable.mark("auto-spot-c5-2x-az1", "us-west-2a", first.clock.now(), "no capacity")
        first.unavailable.mark("auto-spot-c5-2x-az1", "us-west-2a", first.clock.now(), "no capacity")
        await anyio.sleep(6)  # the change is written within one check interval
        assert json.loads(path.read_text())["outOfCapacity"][0]["failures"] == 2
        tg.cancel_scope.cancel()
    second = context(seed_config, catalogue)
    load_state(second, path)
    assert second.unavailable.is_unavailable("auto-spot-c5-2x-az1", "us-west-2a", second.clock.now())
    assert second.unavailable.entries[("auto-spot-c5-2x-az1", "us-west-2a")].failures == 2


@pytest.mark.parametrize(
    "text", ["{not json", '{"goneNodes": []}', '{"outOfCapacity": [], "goneNodes": "node-1"}']
)
async def test_a_damaged_state_file_is_ignored_with_a_warning(
    tmp_path: Path, seed_config: LoadedConfig, catalogue: object, text: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    ctx = context(seed_config, catalogue)
    with structlog.testing.capture_logs() as logs:
        load_state(ctx, path)
    assert ctx.unavailable.entries == {} and not ctx.gone
    assert [e["event"] for e in logs] == ["state_file_ignored"] and logs[0]["path"] == str(path)


async def test_missing_state_file_starts_empty_and_write_creates_it(
    tmp_path: Path, seed_config: LoadedConfig, catalogue: object
) -> None:
    ctx = context(seed_config, catalogue)
    path = tmp_path / "state.json"
    load_state(ctx, path)
    assert ctx.unavailable.entries == {}
    write_state(ctx, path)
    assert json.loads(path.read_text()) == {"outOfCapacity": [], "goneNodes": []}


@pytest.mark.looptime
async def test_a_node_whose_termination_failed_is_not_adopted_after_a_restart(
    tmp_path: Path, seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    """ShuttingDown -> Failure reads like a launch HyperPod retries; the state file remembers it is not."""
    path = tmp_path / "state.json"
    config = replace(seed_config, settings=seed_config.settings.model_copy(update={"state_path": str(path)}))
    no_spot = {(C5_2X, ZONE_A, CapacityType.SPOT): 0}
    async with running(config, catalogue, capacity=no_spot) as h:
        hyperpod = h.world.hyperpod
        h.world.kubernetes.add_pod(web_pod("w-0"))
        await wait_for(lambda: any(r.group == SPOT_AZ1 for r in h.ctx.inflight.values()), 60)
        (spot,) = [r.logical_id for r in h.ctx.inflight.values() if r.group == SPOT_AZ1]
        hyperpod.termination_failures.add(spot)  # the cancellation's termination will fail

        def termination_failed() -> bool:
            return any(n.logical_id == spot and n.message == "termination failed" for n in hyperpod.nodes())

        await wait_for(termination_failed, 300)
        await wait_for(lambda: len(h.running_pods()) == 1, 900)  # on On-Demand instead
        assert spot in h.ctx.gone and spot not in h.ctx.inflight
        h.daemon.stop()
        await h.daemon.stopped.wait()
        assert json.loads(path.read_text())["goneNodes"] == [spot]

        successor = h.new_daemon()
        await h.tg.start(successor.run)
        await anyio.sleep(300)  # many provisioning rounds, each listing the Failure node
        (still,) = [n for n in hyperpod.nodes() if n.logical_id == spot]
        assert still.status is NodeStatus.FAILURE and still.message == "termination failed"  # listed ...
        assert spot not in successor.ctx.inflight  # ... and it is not counted as capacity on its way
        assert spot in successor.ctx.gone
        successor.stop()
