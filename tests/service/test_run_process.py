"""`hpscaler run` as a real process on the embedded fake configuration: JSON logs, SIGHUP, SIGTERM.

The process is driven by signals exactly as systemd or the kubelet would; every wait polls the
process's log with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from service_harness import notify_socket, received

from hpscaler.config import default_config_path

HPSCALER = Path(sys.executable).parent / "hpscaler"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robustness"))
from hostile import hostile_files  # noqa: E402

SHUTDOWN_SECONDS = 8.0


class Process:
    """A running `hpscaler run` whose stderr is read line by line on a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def events(self) -> list[dict[str, Any]]:
        """The log so far, one JSON object per line (fails on a line that is not JSON)."""
        return [json.loads(line) for line in list(self.lines) if line.strip()]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], within: float) -> dict[str, Any]:
        """The first log event matching `predicate`, polling until `within` seconds have passed."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no matching log line within {within}s; log:\n{''.join(self.lines)}")

    def count(self, name: str) -> int:
        return sum(e["event"] == name for e in self.events())


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(default_config_path(), directory)
    # With Karpenter's default consolidateAfter (0s) `run` warns at start-up; these tests count events.
    with (directory / "nodepool.yaml").open("a") as nodepool:
        nodepool.write("  disruption:\n    consolidateAfter: 2m\n")
    settings = directory / "hpscaler.yaml"
    text = settings.read_text().replace("port: 8080", "port: 0").replace("format: auto", "format: json")
    # The example lists every setting, shutdownSeconds included: change it rather than add it twice.
    text, changed = re.subn(r"shutdownSeconds: [\d.]+", f"shutdownSeconds: {SHUTDOWN_SECONDS}", text)
    assert changed == 1
    settings.write_text(text)
    return directory


@pytest.fixture
def process(config_dir: Path) -> Iterator[Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSCALER_", "NOTIFY_", "WATCHDOG_"))}
    with notify_socket() as (path, sock):
        env["NOTIFY_SOCKET"] = path
        running = Process([str(HPSCALER), "run", "--config", str(config_dir)], env)
        running.notify = sock  # type: ignore[attr-defined]
        try:
            yield running
        finally:
            if running.proc.poll() is None:
                running.proc.kill()
            running.proc.wait(10)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_run_logs_json_reloads_on_sighup_and_stops_gracefully_on_sigterm(
    process: Process, config_dir: Path
) -> None:
    started = process.wait_for(lambda e: e["event"] == "service_started", 30)
    port = int(started["health"].rsplit(":", 1)[1])
    assert started["health"].startswith("127.0.0.1:")
    process.wait_for(lambda e: e["event"] == "leader_elected", 10)
    status, body = http_get(port, "/healthz")
    assert status == 200 and body.startswith("ok: leader")
    assert http_get(port, "/metrics")[1].count("hpscaler_leader 1.0") == 1

    # SIGHUP with a valid change: applied.
    settings = config_dir / "hpscaler.yaml"
    settings.write_text(settings.read_text().replace("pollSeconds: 10", "pollSeconds: 20"))
    process.proc.send_signal(signal.SIGHUP)
    process.wait_for(lambda e: e["event"] == "config_reloaded", 10)

    # SIGHUP with an invalid NodePool: rejected, the error names file, object and field; still running.
    nodepool = config_dir / "nodepool.yaml"
    nodepool.write_text(nodepool.read_text().replace("operator: In", "operator: Within", 1))
    process.proc.send_signal(signal.SIGHUP)
    rejected = process.wait_for(lambda e: e["event"] == "config_reload_rejected", 10)
    assert rejected["level"] == "error" and rejected["kept"] == "previous configuration"
    (error,) = rejected["errors"]
    assert error["file"] == str(nodepool) and error["object"] == "NodePool gpunodepool"
    assert error["field"].endswith("requirements[1].operator")
    assert process.proc.poll() is None
    assert http_get(port, "/healthz")[0] == 200
    assert process.count("config_reloaded") == 1

    # SIGTERM: a clean stop within shutdownSeconds, exit code 0, the lease released on the way out.
    # Exit code 0 means the stop finished within shutdownSeconds (past it, the process exits 1).
    process.proc.send_signal(signal.SIGTERM)
    code = process.proc.wait(SHUTDOWN_SECONDS + 60)
    assert code == 0, "".join(process.lines)
    process.wait_for(lambda e: e["event"] == "service_stopped", 5)
    names = [e["event"] for e in process.events()]
    tail = names[names.index("shutdown_requested") :]
    assert tail == ["shutdown_requested", "daemon_stopped", "lease_released", "service_stopped"], tail
    events = process.events()  # every line is JSON with a level and an ISO timestamp
    assert all({"event", "level", "timestamp"} <= e.keys() for e in events)
    assert next(e for e in events if e["event"] == "shutdown_requested")["reason"] == "SIGTERM"
    assert "STOPPING=1" in received(process.notify)  # type: ignore[attr-defined]


def test_run_with_an_unknown_backend_exits_2_naming_the_installed_ones(config_dir: Path) -> None:
    settings = config_dir / "hpscaler.yaml"
    settings.write_text(settings.read_text().replace("aws: fake", "aws: nosuch"))
    result = subprocess.run(
        [str(HPSCALER), "run", "--config", str(config_dir)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "no backend named 'nosuch'" in result.stderr and "kubernetes" in result.stderr


def test_log_level_from_the_environment_overrides_the_config(config_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSCALER_", "NOTIFY_", "WATCHDOG_"))}
    env["HPSCALER_LOG_LEVEL"] = "loud"
    result = subprocess.run(
        [str(HPSCALER), "run", "--config", str(config_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2 and "unknown log level 'loud'" in result.stderr
    env["HPSCALER_LOG_LEVEL"] = "warning"
    quiet = Process([str(HPSCALER), "run", "--config", str(config_dir)], env)
    try:
        # Nothing at info level is logged; the process runs until SIGTERM and exits 0 silently.
        deadline = time.monotonic() + 30
        while quiet.proc.poll() is None and time.monotonic() < deadline and not _listening(quiet):
            time.sleep(0.05)
        quiet.proc.send_signal(signal.SIGTERM)
        assert quiet.proc.wait(SHUTDOWN_SECONDS + 5) == 0
        assert quiet.events() == []
    finally:
        if quiet.proc.poll() is None:
            quiet.proc.kill()


def _listening(process: Process) -> bool:
    """Whether the process has installed its signal handlers (its SigCgt mask catches SIGTERM)."""
    try:
        status = Path(f"/proc/{process.proc.pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGHUP - 1)))


def test_sighup_with_hostile_files_keeps_the_process_serving(process: Process, config_dir: Path) -> None:
    started = process.wait_for(lambda e: e["event"] == "service_started", 30)
    port = int(started["health"].rsplit(":", 1)[1])
    nodepool = config_dir / "nodepool.yaml"
    original = nodepool.read_text()
    for count, make in enumerate(hostile_files(), 1):
        nodepool.write_text(make(original))
        process.proc.send_signal(signal.SIGHUP)
        process.wait_for(
            lambda e, n=count: e["event"] == "config_reload_rejected" and process.count(e["event"]) >= n, 30
        )
        assert process.proc.poll() is None
        assert http_get(port, "/healthz")[0] == 200
    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(SHUTDOWN_SECONDS + 60) == 0, "".join(process.lines)
    assert process.count("service_failed") == 0
