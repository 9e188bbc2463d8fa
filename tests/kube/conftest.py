"""Fixtures of the Kubernetes backend tests: the fake API server, a client, and the backend on it.

Every request the backend makes in these tests is recorded (group, resource, verb) so that the RBAC
test can compare them with deploy/kubernetes/rbac.yaml; it is moved to the end of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kube_harness import USED, ManualClock, hosted, make_backend
from kubernetes_asyncio.client import ApiClient

from hpscaler.kube.backend import KubernetesBackend
from hpscaler.testing import FakeApiServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the RBAC test last so it sees the requests of every other backend test."""
    last = [i for i in items if i.nodeid.split("::")[0].endswith("test_kube_rbac.py")]
    items[:] = [i for i in items if i not in last] + last


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    """A fake API server on a random port; the backend's requests are recorded for the RBAC test."""
    async with FakeApiServer() as fake:
        yield fake
        USED.update((r.group, r.resource, r.verb) for r in fake.requests if r.verb)


@pytest.fixture
async def api(server: FakeApiServer) -> AsyncIterator[Any]:
    """A kubernetes-asyncio ApiClient for the fake server."""
    async with ApiClient(server.configuration()) as client:
        yield client


@pytest.fixture
def clock() -> ManualClock:
    """The backend's clock (leases, events, conditions)."""
    return ManualClock()


@pytest.fixture
async def backend(api: Any, clock: ManualClock) -> AsyncIterator[KubernetesBackend]:
    """The backend, hosted in a task of its own (a fixture cannot hold a task group across yield)."""
    async with hosted(make_backend(api, clock)) as kube:
        yield kube
