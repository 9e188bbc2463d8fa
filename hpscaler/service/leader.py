"""Leader election on a coordination.k8s.io/v1 Lease, as kube-controller-manager and Karpenter do.

Only the holder of the lease acts. It renews every `renew_seconds`; a standby polls at the same pace
and takes over once the lease has gone unrenewed for `lease_seconds`. A leader that learns it lost
the lease, or cannot renew before the lease would expire, stops acting at once.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import structlog

from hpscaler.backends.protocols import BackendError, KubernetesCluster
from hpscaler.backends.types import Lease
from hpscaler.clock import Clock

log = structlog.get_logger("hpscaler.leader")


class LeaderElector:
    """Runs `work` only while holding the lease."""

    def __init__(
        self,
        kube: KubernetesCluster,
        *,
        name: str,
        holder: str,
        lease_seconds: float,
        renew_seconds: float,
        clock: Clock,
    ) -> None:
        self.kube = kube
        self.name = name
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.clock = clock
        self.is_leader = False
        self.checked = anyio.Event()  # set after the first attempt, won or lost
        self.terms = 0

    async def _attempt(self) -> Lease | None:
        """Acquire or renew; the lease as it stands, or None when the API could not be reached."""
        try:
            return await self.kube.acquire_lease(self.name, self.holder, self.lease_seconds)
        except BackendError as exc:
            log.warning("lease_unavailable", lease=self.name, error=str(exc))
            return None
        finally:
            self.checked.set()

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Forever: wait for the lease, then run `work` while renewing it."""
        while True:
            lease = await self._attempt()
            if lease is None or lease.holder != self.holder:
                await anyio.sleep(self.renew_seconds)
                continue
            expires = lease.renewed + lease.duration_seconds
            self.is_leader = True
            self.terms += 1
            log.info("leader_elected", lease=self.name, holder=self.holder, term=self.terms)
            async with anyio.create_task_group() as tg:
                tg.start_soon(work)
                margin = self.renew_seconds / 2
                while True:
                    # Wake for the next renewal, or just before the lease would run out, whichever first.
                    await anyio.sleep(max(0.0, min(self.renew_seconds, expires - margin - self.clock.now())))
                    if self.clock.now() >= expires - margin:
                        break  # could not renew in time: the lease is as good as lost
                    lease = await self._attempt()
                    if lease is not None and lease.holder != self.holder:
                        break  # someone else holds it: stop acting now
                    if lease is not None:
                        expires = lease.renewed + lease.duration_seconds
                self.is_leader = False
                tg.cancel_scope.cancel()
            log.warning("leader_lost", lease=self.name, holder=self.holder)
