"""Fixtures every test gets: process-global logging is left as each test found it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from hpscaler import logs


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo what a test's `hpscaler.logs.configure` did to structlog, the root logger and the clock.

    The CLI commands configure logging for the whole process, as an entry point should: `simulate`
    and `plan --live` install a WARNING filter and a stderr that belongs to the test's CliRunner.
    structlog's `capture_logs` swaps only the processors, so a later test capturing `info` events
    would see none (they are dropped by the filter before any processor runs).
    """
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    logs.set_time_source(None)
