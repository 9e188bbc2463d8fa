"""An in-memory `LeaseStore`: coordination.k8s.io/v1 Leases as leader election uses them.

From https://kubernetes.io/docs/concepts/architecture/leases/ and client-go's leader election: a
candidate takes a Lease that is free, expired (renewTime + leaseDurationSeconds has passed) or
already its own, and renews it by writing renewTime; `leaseTransitions` counts changes of holder.
A Lease held by another candidate and not expired is left alone and returned as it stands.
"""

from __future__ import annotations

from hpscaler.backends.types import Lease
from hpscaler.clock import Clock
from hpscaler.fake.faults import FaultInjector


class FakeLeases:
    """`LeaseStore` in memory; calls of `acquire_lease` fail as `faults` says."""

    def __init__(self, clock: Clock, faults: FaultInjector | None = None) -> None:
        self.clock = clock
        self.faults = faults if faults is not None else FaultInjector()
        self._leases: dict[str, Lease] = {}

    async def acquire_lease(self, name: str, holder: str, duration_seconds: float) -> Lease:
        """Take the lease if free, expired or ours; otherwise return the other holder's lease."""
        self.faults.check("acquire_lease")
        now = self.clock.now()
        current = self._leases.get(name)
        if (
            current is not None
            and current.holder != holder
            and now < current.renewed + current.duration_seconds
        ):
            return current
        transitions = 0 if current is None else current.transitions + (current.holder != holder)
        lease = Lease(holder, now, duration_seconds, transitions)
        self._leases[name] = lease
        return lease

    def lease(self, name: str) -> Lease | None:
        """The named lease as stored."""
        return self._leases.get(name)

    def put(self, name: str, lease: Lease) -> None:
        """Write a lease as another client would (a holder this process does not know)."""
        self._leases[name] = lease
