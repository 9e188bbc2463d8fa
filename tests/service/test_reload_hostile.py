"""Reloads of hostile configuration: rejected, the old configuration kept, health and signals alive."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import anyio
import pytest
from service_harness import make_service, seed_config
from structlog.testing import capture_logs

from hpscaler.config import ConfigError, default_config_path
from hpscaler.service import run as run_module
from hpscaler.service.run import Service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robustness"))
import anyio.lowlevel
from hostile import billion_laughs, deeply_nested, with_control_character

HOSTILE = {
    "control-character": lambda text: with_control_character(text),
    "nested-20000": lambda _: deeply_nested(),
    "billion-laughs": lambda _: billion_laughs(),
}


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(default_config_path(), target)
    return target


def service_for(directory: Path) -> Service:
    async def never(_: object) -> object:
        raise AssertionError("not opened")

    return make_service(
        seed_config(), never, holder="a", clock=run_module.SystemClock(), config_path=directory
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", HOSTILE)
async def test_a_hostile_file_rejects_the_reload_and_keeps_the_old_config(directory: Path, kind: str) -> None:
    service = service_for(directory)
    before = service.config
    nodepool = directory / "nodepool.yaml"
    nodepool.write_text(HOSTILE[kind](nodepool.read_text()))
    with capture_logs() as logs:
        assert not service.reload()
        assert not await service.reload_off_loop()
    assert service.config is before and service.reloads == 0
    assert [e["event"] for e in logs] == ["config_reload_rejected"] * 2
    assert any(e["file"] == str(nodepool) for e in logs[0]["errors"])


async def test_any_exception_while_reading_rejects_the_reload(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = service_for(directory)

    def broken(_: Path, **__: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(run_module, "load_config", broken)
    with capture_logs() as logs:
        assert not service.reload()
    assert logs[0]["event"] == "config_reload_rejected" and "RecursionError" in logs[0]["detail"]


async def test_the_reload_parses_on_a_worker_thread_while_the_loop_goes_on(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = service_for(directory)
    parsing, release = threading.Event(), threading.Event()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def slow_read(path: Path, **_: object) -> ConfigError:
        threads.append(threading.get_ident())
        parsing.set()
        release.wait(60)
        return ConfigError([])

    monkeypatch.setattr(run_module, "read_config", slow_read)
    ticks = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.reload_off_loop)
        await anyio.to_thread.run_sync(parsing.wait, 60)
        for _ in range(3):  # the event loop keeps running other tasks (health, signals) meanwhile
            await anyio.lowlevel.checkpoint()
            ticks += 1
        release.set()
    assert ticks == 3 and threads and threads[0] != loop_thread
