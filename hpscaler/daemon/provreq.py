"""The ProvisioningRequest loop: reads the requests, runs the pure decision, carries it out.

Every `interval` seconds (and at once after a request was provisioned) it reads the requests and
their PodTemplates, decides (`provisioning.capacity.decide`), publishes the booked capacity for the
provisioner and consolidation (`ctx.held`), writes the status conditions, and, for a
best-effort-atomic request whose pods all fit, runs a provisioning round for its pods. If that round
could not launch nodes for all of them (a partial capacity error the fallback could not finish in the
zone), the nodes launched for the request are released and the request stays `Provisioned=False`.
"""

from __future__ import annotations

import dataclasses

import anyio

from hpscaler.backends.protocols import BackendError, ProvisioningRequestSource
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import ProvisioningRequestStep
from hpscaler.daemon.launching import cancel_launches
from hpscaler.daemon.provisioner import Provisioner
from hpscaler.daemon.state import joined_instance_ids, still_in_flight
from hpscaler.provisioning.capacity import Attempt, Decision, confirm, decide
from hpscaler.provisioning.provreq import (
    BEING_PROVISIONED,
    PROVISIONED,
    RequestSet,
    StatusChange,
    merge_conditions,
)
from hpscaler.scheduling.types import InFlightNode

INTERVAL_SECONDS = 5.0
BOOKING_SECONDS = 600.0


class ProvisioningRequests:
    """Serves ProvisioningRequests for one daemon (see the module docstring)."""

    def __init__(
        self,
        ctx: DaemonContext,
        provisioner: Provisioner,
        source: ProvisioningRequestSource,
        *,
        interval: float = INTERVAL_SECONDS,
        booking_seconds: float = BOOKING_SECONDS,
    ) -> None:
        self.ctx = ctx
        self.provisioner = provisioner
        self.source = source
        self.interval = interval
        self.booking_seconds = booking_seconds
        self.last: Decision | None = None

    async def run(self) -> None:
        """Decide every `interval` seconds until cancelled."""
        while True:
            again = await self.round()
            if not again:
                await anyio.sleep(self.interval)

    async def round(self) -> bool:
        """One round; True if a request was provisioned (the next one may go at once)."""
        ctx = self.ctx
        try:
            found = await self.source.provisioning_requests()
        except BackendError as exc:
            ctx.record(ProvisioningRequestStep("read-failed"))
            ctx.log.warning("provisioning_requests_unreadable", error=str(exc))
            return False
        for key, why in found.invalid.items():
            ctx.log.warning("provisioning_request_invalid", request=key, error=why)
        if not found.requests:
            ctx.book({})
            return False
        nodes, _ = ctx.cache.snapshot()
        nodes = [n for n in nodes if n.name not in ctx.disrupting]
        inflight = await self._inflight()
        base = self.provisioner.scheduling_input((), (), ())
        decision = decide(
            found.requests,
            found.templates,
            list(ctx.cache.pods.values()),
            nodes,
            inflight,
            base,
            ctx.clock.now(),
            booking_seconds=self.booking_seconds,
        )
        self.last = decision
        if decision.booking is not None:
            ctx.book(decision.booking.holders)
        for request, keys in decision.release.items():
            await self._release(request, keys)
        await self._write(decision.changes)
        if decision.attempt is None:
            return False
        return await self._provision(decision.attempt, found)

    async def _provision(self, attempt: Attempt, found: RequestSet) -> bool:
        ctx = self.ctx
        req = attempt.request
        keys = {p.key for p in attempt.pods}
        ctx.log.info("provisioning_request_scale_up", request=req.key, pods=len(keys), zone=attempt.zone)
        plan = await self.provisioner.reconcile("provisioning-request", attempt.pods)
        if plan is None:
            return False  # HyperPod could not be read: try again next round
        nodes, _ = ctx.cache.snapshot()
        nodes = [n for n in nodes if n.name not in ctx.disrupting]
        inflight = [dataclasses.replace(f, pods=[]) for f in self.provisioner.inflight_nodes()]
        base = self.provisioner.scheduling_input((), (), ())
        now = ctx.clock.now()
        outcome = confirm(attempt, nodes, inflight, base, now)
        launching = outcome.get(PROVISIONED)
        if launching is not None and launching.reason == BEING_PROVISIONED:
            # Hold the room at once, before another round can plan onto the new in-flight nodes.
            updated = dataclasses.replace(
                req, conditions=merge_conditions(req.conditions, outcome.conditions, now)
            )
            requests = [updated if r.key == req.key else r for r in found.requests]
            held = decide(
                requests,
                found.templates,
                list(ctx.cache.pods.values()),
                nodes,
                inflight,
                base,
                now,
                booking_seconds=self.booking_seconds,
                provision=False,
            ).booking
            if held is not None:
                ctx.book(held.holders)
            ctx.record(ProvisioningRequestStep("scaled-up", req.key))
            await self._write([outcome])
            return True
        await self._release(req.key, keys)
        await self._write([outcome])
        return False

    async def _inflight(self) -> list[InFlightNode]:
        """In-flight nodes without the ones that joined since the provisioner last looked: counted
        twice (as a node and in flight), a booking could land on the ghost and free the real node."""
        ctx = self.ctx
        inflight = [dataclasses.replace(f, pods=[]) for f in self.provisioner.inflight_nodes()]
        if not inflight:
            return inflight
        try:
            listed = await ctx.backends.hyperpod.list_nodes()
        except BackendError as exc:
            ctx.log.warning("provisioning_requests_list_nodes_failed", error=str(exc))
            return inflight
        joined = joined_instance_ids(ctx.cache)
        arrived = {n.logical_id for n in listed if not still_in_flight(n, joined)}
        return [f for f in inflight if f.name not in arrived]

    async def _release(self, request: str, keys: set[str]) -> None:
        """Cancel the launches made only for this request's pods: all of them or none stay."""
        ctx = self.ctx
        ids = [r.logical_id for r in ctx.inflight.values() if r.for_pods and set(r.for_pods) <= keys]
        ctx.record(ProvisioningRequestStep("released", request))
        if not ids:
            return
        ctx.log.warning("provisioning_request_partial_released", request=request, nodes=ids)
        # The provisioner's cancel: a node HyperPod no longer has is forgotten, a refusal is reported.
        await cancel_launches(ctx, ids)

    async def _write(self, changes: list[StatusChange]) -> None:
        ctx = self.ctx
        for change in changes:
            namespace, _, name = change.request.partition("/")
            try:
                written = await self.source.write_provisioning_request_status(
                    namespace, name, change.conditions
                )
            except BackendError as exc:
                ctx.record(ProvisioningRequestStep("write-failed", change.request))
                ctx.log.warning("provisioning_request_status_failed", request=change.request, error=str(exc))
                continue
            if written:
                ctx.log.info(
                    "provisioning_request_status",
                    request=change.request,
                    **{c.type: f"{c.status}:{c.reason}" for c in change.conditions},
                )
