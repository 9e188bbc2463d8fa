"""Out-of-capacity backoffs persist across a restart, and a damaged state file is reported, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
import structlog

from hpscaler.clock import LoopClock
from hpscaler.config import LoadedConfig
from hpscaler.daemon.context import Backends, DaemonContext
from hpscaler.daemon.persistence import load_backoffs, persist_backoffs, write_backoffs
from hpscaler.fake import FakeHyperPod, FakeKubernetes


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
        tg.start_soon(persist_backoffs, first, path)
        first.unavailable.mark("auto-spot-c5-2x-az1", "us-west-2a", first.clock.now(), "no capacity")
        first.unavailable.mark("auto-spot-c5-2x-az1", "us-west-2a", first.clock.now(), "no capacity")
        await anyio.sleep(6)  # the change is written within one check interval
        assert json.loads(path.read_text())["outOfCapacity"][0]["failures"] == 2
        tg.cancel_scope.cancel()
    second = context(seed_config, catalogue)
    load_backoffs(second, path)
    assert second.unavailable.is_unavailable("auto-spot-c5-2x-az1", "us-west-2a", second.clock.now())
    assert second.unavailable.entries[("auto-spot-c5-2x-az1", "us-west-2a")].failures == 2


async def test_a_damaged_state_file_is_ignored_with_a_warning(
    tmp_path: Path, seed_config: LoadedConfig, catalogue: object
) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    ctx = context(seed_config, catalogue)
    with structlog.testing.capture_logs() as logs:
        load_backoffs(ctx, path)
    assert ctx.unavailable.entries == {}
    assert [e["event"] for e in logs] == ["state_file_ignored"] and logs[0]["path"] == str(path)


async def test_missing_state_file_starts_empty_and_write_creates_it(
    tmp_path: Path, seed_config: LoadedConfig, catalogue: object
) -> None:
    ctx = context(seed_config, catalogue)
    path = tmp_path / "state.json"
    load_backoffs(ctx, path)
    assert ctx.unavailable.entries == {}
    write_backoffs(ctx, path)
    assert json.loads(path.read_text()) == {"outOfCapacity": []}
