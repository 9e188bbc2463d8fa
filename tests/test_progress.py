"""The progress line of long `plan` and `simulate` runs: on a terminal only, throttled, erased."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from hpscaler import cli, progress
from hpscaler.cli import main
from hpscaler.progress import ProgressLine

REPO = Path(__file__).resolve().parents[1]
CLEAR = "\r\x1b[K"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def line(stream: io.StringIO, clock: Clock, *, enabled: bool = True) -> ProgressLine:
    return ProgressLine(
        stream, enabled=enabled, command="hpscaler plan", interval=0.5, delay=1.0, clock=clock
    )


def test_silent_before_the_delay_then_throttled_then_erased() -> None:
    out, clock = io.StringIO(), Clock()
    bar = line(out, clock)
    bar.phase("reading --pods")
    bar.fraction(10, 100, "53 MB")
    assert out.getvalue() == ""  # a quick run stays silent
    clock.now += 1.0
    bar.fraction(20, 100, "53 MB")
    assert out.getvalue() == CLEAR + "hpscaler plan: reading --pods 20% of 53 MB (1s)"
    clock.now += 0.1
    bar.fraction(30, 100, "53 MB")
    assert out.getvalue().count(CLEAR) == 1  # within the interval: not redrawn
    clock.now += 0.5
    bar.fraction(40, 100, "53 MB")
    assert out.getvalue().endswith(CLEAR + "hpscaler plan: reading --pods 40% of 53 MB (2s)")
    bar.phase("scheduling", "100,000 pods")  # a new phase is drawn at once
    assert out.getvalue().endswith(CLEAR + "hpscaler plan: scheduling 100,000 pods (0s)")
    bar.close()
    assert out.getvalue().endswith(CLEAR)
    bar.close()
    assert out.getvalue().endswith("(0s)" + CLEAR)  # erased once


def test_disabled_writes_nothing() -> None:
    out, clock = io.StringIO(), Clock()
    bar = line(out, clock, enabled=False)
    clock.now += 10
    bar.phase("reading")
    bar.fraction(1, 2)
    with bar.ticking("scheduling"):
        pass
    bar.close()
    assert out.getvalue() == ""


def test_a_ticking_phase_is_drawn_and_its_thread_ends() -> None:
    out, clock = io.StringIO(), Clock()
    bar = line(out, clock)
    clock.now += 5
    with bar.ticking("scheduling", "7 pods"):
        assert out.getvalue() == CLEAR + "hpscaler plan: scheduling 7 pods (0s)"
    assert not [t for t in __import__("threading").enumerate() if t.name == "hpscaler-progress"]


def _pods_file(tmp_path: Path) -> Path:
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{i}", "namespace": "default"},
            "spec": {
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]
            },
        }
        for i in range(20)
    ]
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "items": pods, "kind": "List"}))
    return path


def _plan_args(path: Path) -> list[str]:
    return ["plan", "--config", str(REPO / "config" / "examples"), "--pods", str(path), "--output", "json"]


def test_plan_off_a_terminal_writes_only_the_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setenv(progress.DELAY_ENV, "0")
    result = CliRunner().invoke(main, _plan_args(_pods_file(tmp_path)))
    assert result.exit_code == 0, result.output
    assert CLEAR not in result.output
    assert len(json.loads(result.output)["newNodes"]) >= 1


def test_plan_forced_on_shows_every_phase_and_keeps_stdout_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(progress.ENV, "always")
    monkeypatch.setenv(progress.DELAY_ENV, "0")
    result = CliRunner().invoke(main, _plan_args(_pods_file(tmp_path)))
    assert result.exit_code == 0
    for phase in ("reading --pods", "scheduling 20 pods", "writing"):
        assert f"hpscaler plan: {phase}" in result.stderr
    assert result.stderr.endswith(CLEAR)  # erased before the plan is written
    assert json.loads(result.stdout)["schemaVersion"] == 1


def test_a_failure_erases_the_line_before_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(progress.ENV, "always")
    monkeypatch.setenv(progress.DELAY_ENV, "0")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nmetadata: {name: [x\n")
    result = CliRunner().invoke(main, _plan_args(bad))
    assert result.exit_code == 2
    assert CLEAR + "invalid manifest:" in result.stderr


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run hpscaler with stderr on a pseudo-terminal and stdout on a pipe: (code, stdout, stderr)."""
    leader, follower = pty.openpty()
    command = [sys.executable, "-c", "from hpscaler.cli import main; main()", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=follower, env=env) as proc:
        os.close(follower)
        out = proc.stdout.read() if proc.stdout is not None else b""
        err = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            err += chunk
        code = proc.wait()
    os.close(leader)
    return code, out.decode(), err.decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals")
def test_plan_on_a_real_pseudo_terminal_draws_the_line(tmp_path: Path) -> None:
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if k != progress.ENV}
    env[progress.DELAY_ENV] = "0"
    code, out, err = _on_a_terminal(_plan_args(_pods_file(tmp_path)), env)
    assert code == 0, err
    assert "hpscaler plan: scheduling 20 pods" in err and err.endswith(CLEAR)
    assert json.loads(out)["schemaVersion"] == 1
    env[progress.ENV] = "never"
    code, out, err = _on_a_terminal(_plan_args(_pods_file(tmp_path)), env)
    assert code == 0 and err == ""


def test_simulate_reports_simulated_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def unthrottled(command: str) -> ProgressLine:
        return ProgressLine(sys.stderr, enabled=True, command=command, interval=0.0, delay=0.0)

    monkeypatch.setattr(cli, "for_stderr", unthrottled)
    scenario = REPO / "config" / "scenarios" / "nodepool-labels.yaml"
    result = CliRunner().invoke(main, ["simulate", str(scenario), "--output", "json"])
    assert result.exit_code == 0, result.stderr
    assert "hpscaler simulate: simulating" in result.stderr and "% of " in result.stderr
    assert "100% of" in result.stderr  # the last sample is at the scenario's end
    assert result.stderr.endswith(CLEAR)
    assert "violations" in json.loads(result.stdout)
