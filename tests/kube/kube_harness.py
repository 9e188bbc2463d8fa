"""Helpers shared by the Kubernetes backend tests (imported by conftest and the test modules)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from hpscaler.config.settings import Kubernetes
from hpscaler.kube.backend import KubernetesBackend


class ManualClock:
    """Wall-clock time the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.time = now

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


def make_backend(api: Any, clock: ManualClock, **options: Any) -> KubernetesBackend:
    """A backend with fast retries, short watch timeouts and the test clock."""
    defaults: dict[str, Any] = {
        "clock": clock,
        "identity": "test-host",
        "retry_base": 0.01,
        "retry_max_wait": 0.02,
        "relist_backoff": 0.01,
        "request_timeout_seconds": 5.0,
        "watch_timeout_seconds": 30,
    }
    defaults.update(options)
    return KubernetesBackend(api, Kubernetes(namespace="kube-system"), **defaults)


@contextlib.asynccontextmanager
async def hosted(kube: KubernetesBackend) -> AsyncIterator[KubernetesBackend]:
    """Run the backend (`async with`) in a task of its own, so fixtures can hand it out."""
    started = asyncio.Event()

    async def host() -> None:
        async with kube:
            started.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(host())
    await started.wait()
    try:
        yield kube
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
