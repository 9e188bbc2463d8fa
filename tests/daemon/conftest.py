"""Fixtures of the daemon tests; the helpers live in `daemon_harness`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from daemon_harness import MULTI_AZ, pinned_seed_config

from hpscaler.catalogue import Catalogue, load_catalogue
from hpscaler.config import LoadedConfig, load_config


@pytest.fixture(autouse=True, scope="module")
def _quiet_logs() -> Iterator[None]:
    """Warnings and errors only: the daemon logs every decision, which would slow long runs.

    Module-scoped and restored afterwards, so tests elsewhere that read log events still see them.
    """
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def seed_config() -> LoadedConfig:
    """The embedded example cluster: NodePool gpunodepool, ml.c5.2xlarge in us-west-2a only."""
    return pinned_seed_config()


@pytest.fixture(scope="session")
def multi_az_config() -> LoadedConfig:
    """config/scenarios/multi-az: NodePool general over all 4 groups, consolidateAfter 2m, budget 20%."""
    return load_config(MULTI_AZ)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    """The packaged instance catalogue."""
    return load_catalogue()
