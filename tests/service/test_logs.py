"""Log output: JSON when not on a terminal, readable on one, stdlib loggers rendered the same way.

Each case runs in a fresh interpreter, because logging is process-wide.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

from hpscaler.config import default_config_path, load_config
from hpscaler.service.run import log_settings

SNIPPET = """
import logging, structlog
from hpscaler.logs import configure
configure({level!r}, {fmt!r})
structlog.get_logger().info("hello", answer=42)
structlog.get_logger().debug("hidden")
logging.getLogger("botocore.retries").warning("throttled %s", "ListClusterNodes")
logging.getLogger("botocore.retries").info("not shown below warning")
"""


def run_snippet(level: str, fmt: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", SNIPPET.format(level=level, fmt=fmt)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stderr.splitlines()


def test_json_when_not_on_a_terminal_with_library_logs_in_the_same_shape() -> None:
    hello, library = (json.loads(line) for line in run_snippet("info", "auto"))
    assert hello["event"] == "hello" and hello["answer"] == 42 and hello["level"] == "info"
    assert hello["timestamp"].endswith("Z")
    assert library["event"] == "throttled ListClusterNodes" and library["level"] == "warning"
    assert library["logger"] == "botocore.retries" and "timestamp" in library


def test_debug_level_shows_debug_events() -> None:
    events = [json.loads(line)["event"] for line in run_snippet("debug", "json")]
    assert events == ["hello", "hidden", "throttled ListClusterNodes", "not shown below warning"]


def test_readable_key_value_lines_on_a_terminal() -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", SNIPPET.format(level="info", fmt="auto")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=follower,
        )
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(60) == 0
    finally:
        os.close(leader)
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 2
    assert "hello" in lines[0] and "answer=42" in lines[0] and "[info" in lines[0]
    assert not lines[0].lstrip().startswith("{")


def test_environment_overrides_the_configured_level_and_format(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(default_config_path())  # spec.logging: info, auto
    monkeypatch.delenv("HPSCALER_LOG_LEVEL", raising=False)
    monkeypatch.delenv("HPSCALER_LOG_FORMAT", raising=False)
    assert log_settings(config) == ("info", "auto")
    monkeypatch.setenv("HPSCALER_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("HPSCALER_LOG_FORMAT", "json")
    assert log_settings(config) == ("debug", "json")
    monkeypatch.setenv("HPSCALER_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="unknown log format 'xml'; use one of auto, json, console"):
        log_settings(config)
