"""Leases are their own backend interface (`LeaseStore`): what leader election needs, and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from service_harness import make_service, make_world, opener, service_config

from hpscaler.backends.protocols import KubernetesCluster, LeaseStore
from hpscaler.fake import FakeKubernetes, FakeLeases
from hpscaler.service.run import StartupError, _startup_error


class WithoutLeases:
    """A Kubernetes backend that serves `KubernetesCluster` but keeps no Leases."""

    def __init__(self, inner: FakeKubernetes) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "acquire_lease":
            raise AttributeError(name)
        return getattr(self.inner, name)


async def test_the_fakes_implement_the_lease_store_and_the_cluster_interface_no_longer_asks_for_it() -> None:
    kube = FakeKubernetes(clock=make_world(service_config()).clock)
    assert isinstance(kube, KubernetesCluster) and isinstance(kube, LeaseStore)
    assert isinstance(FakeLeases(kube.clock), LeaseStore)
    without = WithoutLeases(kube)
    assert isinstance(without, KubernetesCluster) and not isinstance(without, LeaseStore)
    assert "acquire_lease" not in dir(KubernetesCluster)


async def test_run_refuses_a_kubernetes_backend_without_leases() -> None:
    config = service_config()
    world = make_world(config)

    @asynccontextmanager
    async def kube() -> AsyncIterator[KubernetesCluster]:
        yield WithoutLeases(world.kubernetes)

    service = make_service(config, opener(kube, world.hyperpod), holder="a", clock=world.clock)
    with pytest.raises(BaseException) as raised:
        await service.serve()
    error = _startup_error(raised.value)
    assert isinstance(error, StartupError)
    assert "LeaseStore" in str(error) and "spec.backends.kubernetes" in str(error)
    assert service.elector is None  # nothing acted without a lease
