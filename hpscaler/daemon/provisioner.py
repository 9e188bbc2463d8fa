"""The provisioner: desired state (the scheduler's plan) -> BatchAddClusterNodes, and launch tracking.

Each round lists HyperPod's nodes, settles in-flight launches (joined, vanished, failed), plans all
pending pods against existing and in-flight nodes, and asks for the new nodes the plan needs. A
refused group or an offering found out of capacity is marked and the round plans again at once, so
the fallback to the next group (On-Demand last) costs no waiting.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import anyio

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import HyperPodNode
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import CloudProviderError, LaunchFailed, ReconcileCoalesced, ReconcileRan
from hpscaler.daemon.launching import cancel_launches, request_plan
from hpscaler.daemon.posting import EventPoster, PodEvent
from hpscaler.daemon.registration import Registrar
from hpscaler.daemon.state import instance_id_of, joined_instance_ids
from hpscaler.model import Node, Pod
from hpscaler.provisioning.bookings import with_holders
from hpscaler.provisioning.gangs import GangLaunches, gang_launches, launch_zones, stranded_launches
from hpscaler.provisioning.launches import InFlight, review_launches
from hpscaler.scheduling.membership import PoolMembership, planning_nodes
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import InFlightNode, Plan, SchedulingInput

MAX_FALLBACK_ROUNDS = 12


class Provisioner:
    """Turns pending pods into node requests and watches the requests through."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx
        self.last_plan: Plan | None = None
        self._reported: dict[str, str] = {}
        self._requested = 0  # reconcile calls so far
        self._covered = 0  # calls whose changes a finished round has seen
        self._last_result: Plan | None = None
        self.registrar = Registrar(ctx, refresh=lambda: self.reconcile("registration"))
        self._gang_launches: GangLaunches = {}  # of the last plan's round
        self.events = EventPoster(ctx)  # pod Events go out in the background (`run` it)

    async def run_batches(self) -> None:
        """Plan each time a batching window closes."""
        while True:
            await self.ctx.batcher.wait()
            await self.reconcile("batch")

    async def run_launch_monitor(self, interval: float) -> None:
        """Check in-flight launches and re-plan for pods still pending, every `interval` seconds."""
        while True:
            await anyio.sleep(interval)
            if self.ctx.batcher.open:
                continue  # the window's own round comes soon and plans the whole burst at once
            await self.reconcile("monitor")

    async def reconcile(self, reason: str, extra_pending: Sequence[Pod] = ()) -> Plan | None:
        """A provisioning round that sees everything changed before this call; returns its final plan
        (None when HyperPod could not be read).

        Callers that queued while a round ran share the next one: a round plans from the whole cache,
        so one round after a storm of 1,000 interruption notices covers all of them, instead of 1,000
        rounds back to back. A call with its own `extra_pending` pods always gets a round of its own.
        """
        self._requested += 1
        ticket = self._requested
        async with self.ctx.plan_lock:
            if not extra_pending and self._covered >= ticket:
                self.ctx.record(ReconcileCoalesced())
                return self._last_result
            covered = self._requested  # every request made so far: their changes are in the cache
            result = await self._round(reason, extra_pending)
            self._covered = max(self._covered, covered)
            self._last_result = result
            return result

    async def _round(self, reason: str, extra_pending: Sequence[Pod]) -> Plan | None:
        """One provisioning round; the caller holds `plan_lock`."""
        with _collection_deferred():
            try:
                nodes = await self.ctx.backends.hyperpod.list_nodes()
            except BackendError as exc:
                self.ctx.record(CloudProviderError("ListClusterNodes", str(exc)))
                self.ctx.record(ReconcileRan(reason))  # a round that ran: the loop is alive
                self.ctx.log.warning("list_nodes_failed", error=str(exc), reason=reason)
                return None
            self.registrar.expect(nodes)
            await self.registrar.sweep()  # a node registered now counts as joined in this round
            if await self._settle_launches(nodes):
                # Launches adopted after a restart (or nodes that joined before hpscaler ran) are
                # registered too, and settled again so that the Ready ones join at once.
                self.registrar.expect(nodes)
                if await self.registrar.sweep():
                    await self._settle_launches(nodes)
            plan: Plan | None = None
            gangs_checked = False
            for _ in range(MAX_FALLBACK_ROUNDS):
                plan = self._plan(extra_pending)
                if not gangs_checked:
                    gangs_checked = True
                    if await self._cancel_stranded_gang_launches(plan):
                        continue  # plan again without the launches given up
                if not plan.new_nodes:
                    break
                # Shielded: a shutdown must not cut a call between sending it and recording its nodes.
                with anyio.CancelScope(shield=True):
                    refused = await request_plan(self.ctx, plan, extra_pending)
                if not refused:
                    break  # the plan is in flight
        self.ctx.notify()
        self.ctx.record(ReconcileRan(reason))
        if plan is not None:
            self.last_plan = plan
            self._report(plan)
        return plan

    # -- launches -----------------------------------------------------------------------------

    async def _settle_launches(self, nodes: Sequence[HyperPodNode]) -> int:
        """Settle in-flight launches against HyperPod's node list; returns how many were adopted."""
        ctx = self.ctx
        now = ctx.clock.now()
        settings = ctx.config.settings
        review = review_launches(
            ctx.inflight,
            nodes,
            joined_instance_ids(ctx.cache, ctx.managed_groups()),
            ctx.managed_groups(),
            now,
            launch_timeout=settings.provisioning.launch_timeout_seconds,
            registration_timeout=settings.provisioning.registration_timeout_seconds,
            group_zone={g.name: g.zones[0] for g in ctx.config.instance_groups if g.zones},
            registered_instances={i for i in map(instance_id_of, ctx.cache.nodes.values()) if i},
            gone=ctx.gone,
        )
        ctx.hyperpod_listed(nodes, review.going)
        for logical_id in review.health_checking:
            ctx.mark_health_checked(logical_id, now)
        for node in review.adopted:
            pool = ctx.pool_for_group(node.group)
            if pool is not None:
                ctx.track_launch(InFlight(node.logical_id, node.group, pool.name, now))
                ctx.log.info("inflight_adopted", node=node.logical_id, group=node.group)
        for logical_id in (*review.joined, *review.vanished):
            record = ctx.settle_launch(logical_id)
            if record is not None and logical_id in review.joined:
                group = ctx.groups.get(record.group)
                zone = record.zone or (group.zones[0] if group is not None and group.zones else "")
                ctx.unavailable.mark_available(record.group, zone, record.requested_at)
        if not review.give_up:
            return len(review.adopted)
        marked: set[tuple[str, str]] = set()
        for give_up in review.give_up:
            # One failure per offering and review: 29 nodes failing together are one observation.
            if give_up.out_of_capacity and (give_up.group, give_up.zone) not in marked:
                marked.add((give_up.group, give_up.zone))
                until = ctx.unavailable.mark(give_up.group, give_up.zone, now, give_up.reason)
                ctx.log.warning(
                    "offering_unavailable",
                    group=give_up.group,
                    zone=give_up.zone,
                    reason=give_up.reason,
                    retry_in=round(until - now),
                )
            ctx.record(LaunchFailed(give_up.group, give_up.logical_id, give_up.reason))
        await cancel_launches(self.ctx, [g.logical_id for g in review.give_up])
        return len(review.adopted)

    async def _cancel_stranded_gang_launches(self, plan: Plan) -> bool:
        """Cancel a gang's launches in flight that the plan leaves in another zone (see
        `provisioning.gangs`); whether any were."""
        ctx = self.ctx
        if not self._gang_launches:
            return False
        node_zones = {name: node.zone for name, node in ctx.cache.nodes.items()}
        node_zones.update({lid: r.zone or self._group_zone(r.group) for lid, r in ctx.inflight.items()})
        stranded = stranded_launches(plan, self._gang_launches, ctx.cache.pods, node_zones)
        for gang, ids in stranded.items():
            ctx.log.warning("gang_launches_cancelled", gang=gang, nodes=ids, reason="gang planned elsewhere")
        if stranded:
            await cancel_launches(self.ctx, [lid for ids in stranded.values() for lid in ids])
        return bool(stranded)

    def _group_zone(self, name: str) -> str:
        group = self.ctx.groups.get(name)
        return group.zones[0] if group and group.zones else ""

    # -- planning -----------------------------------------------------------------------------

    def _plan(self, extra_pending: Sequence[Pod]) -> Plan:
        ctx = self.ctx
        started = time.perf_counter()
        nodes, pending = ctx.cache.snapshot()
        # A node whose launch is still in flight (joined but not registered and Ready) is planned as
        # the launch: counting the Node too would count it twice against the NodePool limits.
        launching = self.registrar.inflight_instances()
        nodes = planning_nodes(
            [n for n in nodes if n.name not in ctx.disrupting and instance_id_of(n) not in launching],
            PoolMembership(ctx.config.node_pools, ctx.config.node_classes),
        )
        pending_keys = {p.key for p in pending}
        # A terminating pod's room is asked for by its controller's replacement, a pod of its own.
        terminating = {k for k, p in ctx.cache.pods.items() if p.terminating}
        displaced = [p for k, p in ctx.displaced.items() if k not in terminating]
        for pod in (*displaced, *extra_pending):
            if pod.key not in pending_keys:
                pending.append(pod)
                pending_keys.add(pod.key)
        now = ctx.clock.now()
        for pod in pending:
            ctx.stats.pod_pending(pod.key, now)
        self._gang_launches = (
            gang_launches(
                ctx.inflight.values(), ctx.cache.pods, {name: self._group_zone(name) for name in ctx.groups}
            )
            if any(p.gang for p in pending)  # only pending gangs are placed, finished or moved
            else {}
        )
        # Capacity booked for ProvisioningRequests is held by pods of its own (`daemon.provreq`).
        nodes = with_holders(nodes, ctx.held)
        inp = self.scheduling_input(
            pending, nodes, self.inflight_nodes(), gang_zones=launch_zones(self._gang_launches)
        )
        plan = solve(inp)
        ctx.stats.decision_seconds.append(time.perf_counter() - started)
        return plan

    def inflight_nodes(self) -> list[InFlightNode]:
        """The nodes asked for and not joined yet, with the booked capacity they hold."""
        ctx = self.ctx
        inflight = []
        for record in ctx.inflight.values():
            group = ctx.groups.get(record.group)
            if group is None or not group.zones:
                continue
            inflight.append(
                InFlightNode(
                    record.logical_id,
                    record.node_pool,
                    record.group,
                    record.instance_type or group.instance_types[0],
                    record.zone or group.zones[0],
                    group.capacity_type,
                    list(ctx.held.get(record.logical_id, ())),
                    labels=dict(record.labels),
                )
            )
        return inflight

    def scheduling_input(
        self,
        pending: Sequence[Pod],
        nodes: Sequence[Node],
        inflight: Sequence[InFlightNode],
        gang_zones: Mapping[str, str] | None = None,
    ) -> SchedulingInput:
        """The scheduler's input for these pods on these nodes, with the daemon's current knowledge."""
        ctx = self.ctx
        return SchedulingInput(
            pods=pending,
            nodes=nodes,
            inflight=inflight,
            node_pools=ctx.config.node_pools,
            node_classes=ctx.config.node_classes,
            groups=ctx.config.instance_groups,
            catalogue=ctx.catalogue,
            daemonsets=list(ctx.cache.daemonsets.values()),
            placement_scores={**ctx.config.settings.placement_scores, **ctx.scores},
            unavailable=ctx.unavailable.snapshot(ctx.clock.now()),
            region=ctx.config.settings.region,
            gang_zones=gang_zones or {},
        )

    def _report(self, plan: Plan) -> None:
        """Tell users through pod Events what was decided (once per pod and decision).

        The events are queued, not sent: the caller holds `plan_lock` (see `daemon.posting`).
        """
        ctx = self.ctx
        decisions: dict[str, tuple[str, str, bool]] = {}
        for node in plan.new_nodes:
            for key in node.pods:
                decisions[key] = (
                    "Nominated",
                    f"Pod should schedule on a new {node.instance_type} node in "
                    f"{node.instance_group} ({node.zone}, {node.capacity_type})",
                    False,
                )
        for name, keys in plan.inflight.items():
            for key in keys:
                decisions[key] = ("Nominated", f"Pod should schedule on in-flight node {name}", False)
        for item in plan.unschedulable:
            decisions[item.pod] = ("FailedScaling", item.reason, True)
        for key, (reason, message, warning) in decisions.items():
            if self._reported.get(key) == message:
                continue
            pod = ctx.cache.pods.get(key)
            if pod is None:
                continue
            if self.events.post(PodEvent(pod, reason, message, warning)):
                self._reported[key] = message
        if len(self._reported) > 4 * max(1, len(ctx.cache.pods)):
            self._reported = {k: v for k, v in self._reported.items() if k in ctx.cache.pods}


@contextmanager
def _collection_deferred() -> Iterator[None]:
    """Hold the cyclic garbage collector off until the round's requests are out.

    A full collection over a daemon's cache takes 15-40 ms, as long as the plan itself; landing
    between a batching window closing and the BatchAddClusterNodes call, it would double the reaction
    time. Plans free their objects by reference counting, so the pause only defers cycle collection.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
