"""The service's start-up checks and wiring: the live cluster read, the lease store, the health port.

Each failure is a `StartupError` whose message says what to do (`hpscaler run` exits 2 with it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AsyncExitStack

from prometheus_client.registry import CollectorRegistry

from hpscaler.backends.protocols import BackendError, HyperPodCluster, KubernetesCluster, LeaseStore
from hpscaler.backends.registry import BackendSet
from hpscaler.config import LoadedConfig
from hpscaler.daemon.cluster_sync import PrerequisitesNotMet, startup_cluster
from hpscaler.daemon.context import Backends
from hpscaler.service.health import health_server


class StartupError(Exception):
    """The service could not start (backends, health port); the message says what to do."""


async def read_cluster(hyperpod: HyperPodCluster, config: LoadedConfig) -> LoadedConfig:
    """The configuration with the live cluster's groups, once its prerequisites are checked."""
    try:
        return await startup_cluster(hyperpod, config)
    except PrerequisitesNotMet as exc:
        raise StartupError(f"cluster {exc.cluster} is not ready for hpscaler:\n{exc}") from exc
    except BackendError as exc:
        raise StartupError(f"cannot describe cluster {config.cluster_name}: {exc}") from exc


def lease_store(kubernetes: KubernetesCluster) -> LeaseStore:
    """The Kubernetes backend as the lease store leader election needs, if it keeps Leases."""
    if not isinstance(kubernetes, LeaseStore):
        raise StartupError(
            "the Kubernetes backend keeps no Leases (hpscaler.backends.protocols.LeaseStore), "
            "which leader election needs: pick one that does in spec.backends.kubernetes"
        )
    return kubernetes


def daemon_backends(backends: BackendSet) -> Backends:
    """The daemon's backends out of the opened set (Kubernetes and HyperPod are always there)."""
    assert backends.kubernetes is not None and backends.hyperpod is not None
    return Backends(
        backends.kubernetes,
        backends.hyperpod,
        backends.scores,
        backends.interruptions,
        backends.prices,
    )


async def bind_health(
    stack: AsyncExitStack,
    bind: str,
    port: int,
    *,
    alive: Callable[[], tuple[bool, str]],
    ready: Callable[[], tuple[bool, str]],
    registry: CollectorRegistry,
) -> int:
    """Serve /healthz, /readyz and /metrics until `stack` closes; the bound port."""
    health = health_server(bind, port, alive=alive, ready=ready, registry=registry)
    try:
        return await stack.enter_async_context(health)
    except OSError as exc:
        raise StartupError(
            f"cannot serve /healthz on {bind}:{port}: {os.strerror(exc.errno) if exc.errno else exc}; "
            "stop what uses the port, or set spec.health.port"
        ) from exc
