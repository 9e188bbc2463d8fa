"""Fuzzing `plan`, `check-config` and `simulate` with mutated files: no traceback and no hang.

A bounded number of examples runs in CI; set HPSCALER_FUZZ_EXAMPLES (e.g. 5000) for a longer run.
Each command runs under a hang guard (HPSCALER_FUZZ_HANG_SECONDS, 120 by default): a guard against
hangs, not a speed target, so it is far above what any example needs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from click.testing import CliRunner
from hostile import mutated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpscaler.cli import main
from hpscaler.config import default_config_path
from hpscaler.simulate.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("HPSCALER_FUZZ_EXAMPLES", "15"))
HANG_SECONDS = float(os.environ.get("HPSCALER_FUZZ_HANG_SECONDS", "120"))
CONFIG_FILES = sorted(p.name for p in default_config_path().iterdir() if p.suffix in (".yaml", ".json"))
PODS = (REPO / "config" / "workloads" / "inflate.yaml").read_text()
SCENARIO = """kind: Scenario
metadata: {name: fuzz}
spec:
  duration: 10m
  sampleSeconds: 2m
  checkSeconds: 60
  world: {launchSeconds: 60, joinSeconds: 20}
  workloads:
  - {name: web, replicas: 4, cpu: 500m, memory: 1Gi}
  - {name: train, kind: Job, at: 1m, replicas: 2, cpu: '2', gang: true, runFor: 3m}
  events:
  - {at: 5m, interrupt: {group: auto-spot-c5-2x-az1, count: 1}}
"""
SIMULATE_AT_MOST_SECONDS = 2 * 3600.0  # longer mutated scenarios are only loaded, to keep CI short
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Hang(Exception):
    """A command ran past the hang guard."""


@contextlib.contextmanager
def hang_guard(what: str) -> Iterator[None]:
    def expired(_: int, __: FrameType | None) -> None:
        raise Hang(f"{what} still running after {HANG_SECONDS}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def invoke(*args: str) -> Any:
    with hang_guard(" ".join(args)):
        result = CliRunner().invoke(main, list(args))
    if isinstance(result.exception, Hang):
        raise result.exception
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.output)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    return result


def mutated_config(directory: Path, name: str, text: str) -> Path:
    target = directory / "config"
    shutil.copytree(default_config_path(), target)
    (target / name).write_text(text, encoding="utf-8")
    return target


@st.composite
def config_file(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(CONFIG_FILES))
    return name, draw(mutated((default_config_path() / name).read_text()))


@FUZZ
@given(change=config_file())
def test_check_config_on_mutated_configuration(change: tuple[str, str]) -> None:
    with tempfile.TemporaryDirectory() as root:
        result = invoke("check-config", str(mutated_config(Path(root), *change)))
        assert result.exit_code in (0, 2)


@FUZZ
@given(change=config_file(), pods=mutated(PODS))
def test_plan_on_mutated_configuration_and_pods(change: tuple[str, str], pods: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        config = mutated_config(Path(root), *change)
        pods_file = Path(root) / "pods.yaml"
        pods_file.write_text(pods, encoding="utf-8")
        result = invoke("plan", "--config", str(config), "--pods", str(pods_file), "--output", "json")
        assert result.exit_code in (0, 2)


@FUZZ
@given(text=mutated(SCENARIO))
def test_simulate_on_mutated_scenarios(text: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "scenario.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            scenario = load_scenario(path)
        except ScenarioError:
            scenario = None
        if scenario is not None and scenario.duration > SIMULATE_AT_MOST_SECONDS:
            return
        invoke("simulate", str(path), "--output", "json")
