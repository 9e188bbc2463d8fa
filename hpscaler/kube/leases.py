"""Leader-election Leases (coordination.k8s.io/v1): create, renew, or take over an expired one.

Writes are optimistic (create fails with 409 when someone else created it first; replace fails with
409 when the lease changed since it was read), so a conflict reads again; the call never waits for
a lease held by someone else, it returns that holder.
"""

from __future__ import annotations

import math

import structlog

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import Lease
from hpscaler.clock import Clock
from hpscaler.kube.api import ApiCalls
from hpscaler.kube.convert import KubeApiError, lease_from_spec, lease_spec, parse_time

log = structlog.get_logger("hpscaler.kube")

CONFLICT_ATTEMPTS = 5


async def acquire_lease(
    calls: ApiCalls, clock: Clock, namespace: str, name: str, holder: str, duration_seconds: float
) -> Lease:
    """Create, renew or take over (when expired) the Lease `namespace/name`; never waits."""
    seconds = max(1, math.ceil(duration_seconds))
    coordination = calls.coordination
    for _ in range(CONFLICT_ATTEMPTS):
        now = clock.now()
        try:
            lease = await calls.call(
                f"read lease {namespace}/{name}", coordination.read_namespaced_lease, name, namespace
            )
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            spec = lease_spec(holder, seconds, now, now, 0)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }
            try:
                await calls.call(
                    f"create lease {namespace}/{name}",
                    coordination.create_namespaced_lease,
                    namespace,
                    body,
                    retry=False,
                )
            except KubeApiError as conflict:
                if conflict.status == 409:
                    continue  # someone created it first: read theirs
                raise
            log.info("kube_lease_created", lease=name, holder=holder)
            return Lease(holder, now, float(seconds), 0)
        spec = lease.get("spec") or {}
        current = lease_from_spec(spec)
        if current.holder and current.holder != holder and now < current.renewed + current.duration_seconds:
            return current
        takeover = current.holder != holder
        acquired = now if takeover else (parse_time(spec.get("acquireTime")) or now)
        transitions = current.transitions + (1 if takeover else 0)
        lease["spec"] = lease_spec(holder, seconds, acquired, now, transitions)
        try:
            await calls.call(
                f"update lease {namespace}/{name}",
                coordination.replace_namespaced_lease,
                name,
                namespace,
                lease,
                retry=False,
            )
        except KubeApiError as exc:
            if exc.status == 409:
                continue  # changed under us: look again
            raise
        if takeover:
            log.info("kube_lease_taken", lease=name, holder=holder, previous=current.holder)
        return Lease(holder, now, float(seconds), transitions)
    raise BackendError(f"lease {namespace}/{name} kept changing", code="Conflict")
