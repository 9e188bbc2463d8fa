"""Fixtures of the fault-injection suite; it reuses the daemon tests' harness."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))

from daemon_harness import load_seed_config, with_pool, with_settings

from hpscaler.catalogue import Catalogue, load_catalogue
from hpscaler.config import LoadedConfig


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    """Errors only: injected faults make the daemon warn a lot, which would slow long runs."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))


@pytest.fixture(scope="session")
def config() -> LoadedConfig:
    """The embedded example cluster with the timings the assertions rely on pinned."""
    config = with_settings(
        load_seed_config(),
        batching={"idle_seconds": 1.0, "max_seconds": 10.0},
        out_of_capacity_backoff={"initial_seconds": 180.0, "max_seconds": 1800.0, "multiplier": 2.0},
        interruption={"checkpoint_acknowledgement": True, "safety_margin_seconds": 10.0},
        consolidation={"enabled": True, "poll_seconds": 10.0, "validation_seconds": 15.0},
        provisioning={"launch_timeout_seconds": 600.0, "registration_timeout_seconds": 1200.0},
    )
    return with_pool(config, consolidate_after_seconds=60.0, budgets=("100%",))


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    """The packaged instance catalogue."""
    return load_catalogue()
