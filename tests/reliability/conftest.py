"""Fixtures of the fault-injection suite; it reuses the daemon tests' harness."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))

from daemon_harness import pinned_seed_config, with_pool

from hpscaler.catalogue import Catalogue, load_catalogue
from hpscaler.config import LoadedConfig


@pytest.fixture(autouse=True, scope="module")
def _quiet_logs() -> Iterator[None]:
    """Errors only: injected faults make the daemon warn a lot, which would slow long runs.

    Module-scoped and restored afterwards, so tests elsewhere that read log events still see them.
    """
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def config() -> LoadedConfig:
    """The daemon tests' pinned example cluster; nodes are consolidated a minute after they settle."""
    return with_pool(pinned_seed_config(), consolidate_after_seconds=60.0, budgets=("100%",))


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    """The packaged instance catalogue."""
    return load_catalogue()
