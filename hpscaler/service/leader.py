"""Leader election on a coordination.k8s.io/v1 Lease, as kube-controller-manager and Karpenter do.

Only the holder of the lease acts. It renews every `renew_seconds`; when a renewal fails it retries
every `retry_seconds` until just before the lease would run out. A standby asks for the lease every
`retry_seconds`, so it takes over at most `retry_seconds` after the lease expired. A leader that
learns it lost the lease, or cannot renew before the lease would expire, stops acting at once.

Expiry is measured on this replica's own clock from the moment a successful renewal was *sent*
(as client-go does), never from the renewTime written into the Lease: that keeps a leader safe
from clock differences between its clock and the API server's or a backend's.

On a graceful stop (the task running `run` is cancelled) the leader first lets its work finish,
then releases the lease by renewing it with the shortest duration the API allows, so a standby
takes over within about a second instead of waiting out the lease.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import structlog

from hpscaler.backends.protocols import BackendError, LeaseStore
from hpscaler.backends.types import Lease
from hpscaler.clock import Clock

log = structlog.get_logger("hpscaler.leader")

RELEASE_SECONDS = 0.001  # the Kubernetes backend rounds this up to 1 s, the API's minimum
RELEASE_TIMEOUT = 5.0


class LeaderElector:
    """Runs `work` only while holding the lease."""

    def __init__(
        self,
        kube: LeaseStore,
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
        self.renew_seconds = min(renew_seconds, lease_seconds)
        self.retry_seconds = min(2.0, self.renew_seconds / 2)
        # Stop acting this long before the lease runs out on our clock: covers scheduling delays and
        # small clock differences with the replica that would take over.
        self.margin = min(2.0, lease_seconds / 5)
        self.clock = clock
        self.is_leader = False
        self.observed: Lease | None = None  # the lease as last read; None when the last attempt failed
        self.checked = anyio.Event()  # set once the lease was read (won or lost)
        self.terms = 0
        self.released = 0

    async def _attempt(self, within: float | None = None) -> Lease | None:
        """Acquire or renew; the lease as it stands, or None when the API could not be reached in time."""
        lease: Lease | None = None
        with anyio.move_on_after(within):
            try:
                lease = await self.kube.acquire_lease(self.name, self.holder, self.lease_seconds)
            except BackendError as exc:
                log.warning("lease_unavailable", lease=self.name, error=str(exc))
        self.observed = lease
        if lease is not None:
            self.checked.set()
        return lease

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Forever: wait for the lease, then run `work` while renewing it. Cancel to stop (releases)."""
        try:
            while True:
                sent = self.clock.now()
                lease = await self._attempt()
                if lease is None or lease.holder != self.holder:
                    await anyio.sleep(self.retry_seconds)
                    continue
                await self._lead(work, sent + lease.duration_seconds - self.margin)
        finally:
            if self.is_leader:
                self.is_leader = False
                with anyio.CancelScope(shield=True):
                    await self.release()

    async def _lead(self, work: Callable[[], Coroutine[Any, Any, None]], deadline: float) -> None:
        """Run `work` until the lease is lost or cannot be renewed before `deadline` (our clock)."""
        self.is_leader = True
        self.terms += 1
        log.info("leader_elected", lease=self.name, holder=self.holder, term=self.terms)
        async with anyio.create_task_group() as tg:
            tg.start_soon(work, name=f"leader:{self.name}")
            wait = self.renew_seconds
            while True:
                await anyio.sleep(max(0.0, min(wait, deadline - self.clock.now())))
                if self.clock.now() >= deadline:
                    reason = "renewal_deadline_passed"
                    break
                sent = self.clock.now()
                lease_now = await self._attempt(within=max(0.0, deadline - sent))
                if lease_now is None:
                    wait = self.retry_seconds  # keep trying until the deadline
                    continue
                if lease_now.holder != self.holder:
                    reason = f"taken_by:{lease_now.holder}"
                    break
                deadline = sent + lease_now.duration_seconds - self.margin
                wait = self.renew_seconds
            self.is_leader = False
            tg.cancel_scope.cancel()
        log.warning("leader_lost", lease=self.name, holder=self.holder, term=self.terms, reason=reason)

    async def release(self) -> None:
        """Give the lease up: renew it with the shortest duration, so a standby takes it right away.

        Called only after the work has stopped. A lease someone else holds by now is left alone (the
        backends only renew a lease that is free, expired or ours).
        """
        with anyio.move_on_after(min(RELEASE_TIMEOUT, self.lease_seconds)):
            try:
                lease = await self.kube.acquire_lease(self.name, self.holder, RELEASE_SECONDS)
            except BackendError as exc:
                log.warning("lease_release_failed", lease=self.name, error=str(exc))
                return
            if lease.holder == self.holder:
                self.released += 1
                log.info("lease_released", lease=self.name, holder=self.holder)
            return
        log.warning("lease_release_failed", lease=self.name, error="timed out")
