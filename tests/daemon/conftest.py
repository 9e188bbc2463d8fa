"""Fixtures of the daemon tests; the helpers live in `daemon_harness`."""

from __future__ import annotations

import pytest
import structlog
from daemon_harness import MULTI_AZ, load_seed_config, with_pool, with_settings

from hpscaler.catalogue import Catalogue, load_catalogue
from hpscaler.config import LoadedConfig, load_config


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    """Warnings and errors only: the daemon logs every decision, which would slow long runs."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))


@pytest.fixture(scope="session")
def seed_config() -> LoadedConfig:
    """The embedded example cluster: NodePool gpunodepool, ml.c5.2xlarge in us-west-2a only.

    The settings the tests' timings rely on are pinned, so edits to the example do not move them.
    """
    config = with_settings(
        load_seed_config(),
        batching={"idle_seconds": 1.0, "max_seconds": 10.0},
        out_of_capacity_backoff={"initial_seconds": 180.0, "max_seconds": 1800.0, "multiplier": 2.0},
        interruption={"checkpoint_acknowledgement": True, "safety_margin_seconds": 10.0},
        consolidation={"enabled": True, "poll_seconds": 10.0, "validation_seconds": 15.0},
        provisioning={"launch_timeout_seconds": 600.0, "registration_timeout_seconds": 1200.0},
    )
    return with_pool(config, consolidate_after_seconds=0.0, budgets=("10%",))


@pytest.fixture(scope="session")
def multi_az_config() -> LoadedConfig:
    """config/scenarios/multi-az: NodePool general over all 4 groups, consolidateAfter 2m, budget 20%."""
    return load_config(MULTI_AZ)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    """The packaged instance catalogue."""
    return load_catalogue()
