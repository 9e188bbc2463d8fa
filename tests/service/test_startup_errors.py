"""`hpscaler run` and `check-config` start-up failures: one clear line and exit code 2, no traceback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hpscaler.config import default_config_path

HPSCALER = Path(sys.executable).parent / "hpscaler"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robustness"))
from hostile import billion_laughs, deeply_nested, with_control_character  # noqa: E402


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(default_config_path(), directory)
    with (directory / "nodepool.yaml").open("a") as nodepool:  # no consolidateAfter: 0 warning
        nodepool.write("  disruption:\n    consolidateAfter: 2m\n")
    settings = directory / "hpscaler.yaml"
    settings.write_text(
        settings.read_text().replace("port: 8080", "port: 0").replace("format: auto", "format: json")
    )
    return directory


def hpscaler(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HPSCALER_", "NOTIFY_", "KUBE"))}
    return subprocess.run(
        [str(HPSCALER), *args], capture_output=True, text=True, timeout=120, env={**base, **(env or {})}
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "kube_config" not in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_no_kubeconfig_is_one_line_and_exit_2(config_dir: Path, tmp_path: Path) -> None:
    settings = config_dir / "hpscaler.yaml"
    settings.write_text(settings.read_text().replace("kubernetes: fake", "kubernetes: kubernetes"))
    missing = tmp_path / "no-such-kubeconfig"
    result = hpscaler(
        "run", "--config", str(config_dir), env={"KUBECONFIG": str(missing), "HOME": str(tmp_path)}
    )
    assert_one_clear_line(result, "service_start_failed", f"{missing} does not exist", "KUBECONFIG")


def test_a_health_port_in_use_is_one_line_and_exit_2(config_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = config_dir / "hpscaler.yaml"
        settings.write_text(settings.read_text().replace("port: 0", f"port: {port}"))
        result = hpscaler("run", "--config", str(config_dir))
    assert_one_clear_line(
        result, "service_start_failed", f"127.0.0.1:{port}", "Address already in use", "spec.health.port"
    )


@pytest.mark.parametrize(
    "make",
    [with_control_character, lambda _: deeply_nested(), lambda _: billion_laughs()],
    ids=["control-character", "nested-20000", "billion-laughs"],
)
@pytest.mark.parametrize("command", ["run", "check-config"])
def test_hostile_config_at_start_up_exits_2_naming_the_file(
    config_dir: Path, command: str, make: object
) -> None:
    nodepool = config_dir / "nodepool.yaml"
    nodepool.write_text(make(nodepool.read_text()))  # type: ignore[operator]
    args = ["run", "--config", str(config_dir)] if command == "run" else ["check-config", str(config_dir)]
    result = hpscaler(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and str(nodepool) in result.stderr


def test_an_unreadable_config_directory_is_exit_2(config_dir: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every directory")
    config_dir.chmod(0)
    try:
        result = hpscaler("check-config", str(config_dir))
    finally:
        config_dir.chmod(0o755)
    assert result.returncode == 2 and "cannot be read" in result.stderr
