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
from dataclasses import replace

import anyio

from hpscaler.backends.errors import CapacityError, InvalidRequestError, NotFoundError
from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import AddResult, HyperPodNode, NodeStatus
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import (
    ApiCalled,
    CancelRefused,
    CloudProviderError,
    LaunchFailed,
    NodeCreated,
    ReconcileCoalesced,
    ReconcileRan,
)
from hpscaler.daemon.posting import EventPoster, PodEvent
from hpscaler.daemon.registration import Registrar
from hpscaler.daemon.state import instance_id_of, joined_instance_ids
from hpscaler.model import Node, Pod
from hpscaler.planning import group_additions
from hpscaler.provisioning.batching import AddRequest, batch_additions, client_token
from hpscaler.provisioning.bookings import with_holders
from hpscaler.provisioning.gangs import GangLaunches, gang_launches, launch_zones, stranded_launches
from hpscaler.provisioning.launches import InFlight, review_launches
from hpscaler.scheduling.membership import PoolMembership, planning_nodes
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import InFlightNode, Plan, SchedulingInput

MAX_FALLBACK_ROUNDS = 12
Offering = tuple[str, str, str]
"""(group, zone, instance type) of a node asked for; zone and type "" unless sent in the request."""
MAX_TOKEN_SALTS = 4
REFUSED = (CapacityError, NotFoundError, InvalidRequestError)  # errors that refuse a request's groups


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
                    refused = await self._request(plan, extra_pending)
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
        await self._cancel([g.logical_id for g in review.give_up])
        return len(review.adopted)

    async def _cancel(self, ids: list[str]) -> None:
        """Delete nodes in flight, and forget the ones HyperPod no longer has."""
        ctx = self.ctx
        try:
            result = await ctx.backends.hyperpod.batch_delete_nodes(ids)
        except BackendError as exc:
            ctx.record(CloudProviderError("BatchDeleteClusterNodes", str(exc)))
            ctx.log.warning("cancel_launches_failed", nodes=ids, error=str(exc))
            return
        ctx.record(ApiCalled("BatchDeleteClusterNodes"))
        for logical_id in (
            *result.deleted,
            *(f.logical_id for f in result.failed if f.code == "NodeIdNotFound"),
        ):
            ctx.cancel_launch(logical_id)
        ctx.log.info("launches_cancelled", nodes=list(result.deleted))
        refused = [(f.logical_id, f.code, f.message) for f in result.failed if f.code != "NodeIdNotFound"]
        if refused:
            # Still in flight and still given up: the next round cancels them again.
            for logical_id, code, _ in refused:
                ctx.record(CancelRefused(logical_id, code))
            ctx.log.warning("cancel_launches_refused", nodes=refused, retry="next provisioning round")

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
            await self._cancel([lid for ids in stranded.values() for lid in ids])
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

    async def _request(self, plan: Plan, extra_pending: Sequence[Pod]) -> bool:
        """Send the plan's additions; True if some group was refused (the caller re-plans)."""
        ctx = self.ctx
        live = ctx.cache.pods
        extra = {p.key: p for p in extra_pending}
        pod_ids: dict[str, str] = {}
        pools: dict[str, str] = {}
        group_pods: dict[Offering, list[str]] = {}
        # What each new node will be labelled with, in plan order per offering: registration puts it
        # there. Per offering, not per group: the calls for two zones of one group may go in any order.
        group_labels: dict[Offering, list[tuple[tuple[str, str], ...]]] = {}
        multi_zone = {g.name for g in ctx.config.instance_groups if len(g.zones) > 1}
        multi_type = {g.name for g in ctx.config.instance_groups if len(g.instance_types) > 1}
        # One pass over the plan: this runs between the window closing and the first call.
        for node in plan.new_nodes:
            pools[node.instance_group] = node.node_pool
            offering = (
                node.instance_group,
                node.zone if node.instance_group in multi_zone else "",
                node.instance_type if node.instance_group in multi_type else "",
            )
            group_pods.setdefault(offering, []).extend(node.pods)
            group_labels.setdefault(offering, []).append(tuple(sorted(node.labels.items())))
            for key in node.pods:
                current = live.get(key)
                pod_ids[key] = _decision_id(key, extra.get(key, current), current)
        for_pods = {group: tuple(keys) for group, keys in group_pods.items()}
        additions = group_additions(plan, ctx.config.instance_groups, pod_ids)
        refused = False
        now = ctx.clock.now()
        for request in batch_additions(ctx.config.cluster_name, additions):
            result, rejected = await self._send(request)
            if result is None:
                if rejected:
                    for entry in request.entries:
                        group = ctx.groups.get(entry.group)
                        zones = entry.zones or (group.zones if group else ())
                        zone = zones[0] if zones else ""
                        ctx.unavailable.mark(entry.group, zone, now, "refused by the API")
                    refused = True
                continue
            asked = {
                e.group: (e.zones[0] if e.zones else "", e.instance_types[0] if e.instance_types else "")
                for e in request.entries  # a group appears once per call
            }
            refused |= self._record(result, pools, for_pods, group_labels, now, asked)
        return refused

    async def _send(self, request: AddRequest) -> tuple[AddResult | None, bool]:
        """Send one request; returns (answer, whether the API rejected it outright).

        A replay that answers NotFound (or a node seen going away) means the token was used before for
        nodes cancelled or lost since: this is a new decision, so it is re-sent under a new token.
        """
        ctx = self.ctx
        for attempt in range(MAX_TOKEN_SALTS):
            sent = request
            if attempt:
                token = client_token(
                    request.cluster, request.entries, [request.client_token], salt=f"retry-{attempt}"
                )
                sent = replace(request, client_token=token)
            try:
                result = await ctx.backends.hyperpod.batch_add_nodes(sent)
            except BackendError as exc:
                ctx.record(CloudProviderError("BatchAddClusterNodes", str(exc)))
                ctx.log.warning("batch_add_failed", error=str(exc), code=exc.code, token=sent.client_token)
                # Refused for this request's groups (no capacity or quota, nothing found, or invalid):
                # the same request cannot succeed, another group may. Other errors wait for a round.
                return None, isinstance(exc, REFUSED)
            ctx.record(ApiCalled("BatchAddClusterNodes"))
            # A replay answers with the nodes' latest status: one deleted, going or gone since
            # (ShuttingDown, then Failure when its termination fails) is no capacity for a new decision.
            if not any(
                a.status in (NodeStatus.NOT_FOUND, NodeStatus.SHUTTING_DOWN) or a.logical_id in ctx.gone
                for a in result.successful
            ):
                return result, False
            ctx.log.info("client_token_replayed_cancelled_nodes", token=sent.client_token)
        return None, False

    def _record(
        self,
        result: AddResult,
        pools: dict[str, str],
        for_pods: dict[Offering, tuple[str, ...]],
        group_labels: dict[Offering, list[tuple[tuple[str, str], ...]]],
        now: float,
        asked: dict[str, tuple[str, str]] | None = None,
    ) -> bool:
        ctx = self.ctx
        for added in result.successful:
            if added.logical_id not in ctx.inflight and added.status is not NodeStatus.NOT_FOUND:
                zone, instance_type = (asked or {}).get(added.group, ("", ""))
                offering = (added.group, zone, instance_type)
                planned = group_labels.get(offering)
                record = InFlight(
                    added.logical_id,
                    added.group,
                    pools.get(added.group, ""),
                    now,
                    for_pods.get(offering, ()),
                    labels=planned.pop(0) if planned else (),
                    zone=zone,
                    instance_type=instance_type,
                )
                ctx.track_launch(record)
                ctx.record(NodeCreated(added.group, added.logical_id))
        for group_name, count in _counts(result).items():
            ctx.log.info("nodes_requested", group=group_name, count=count)
        for failure in result.failed:
            group = ctx.groups.get(failure.group)
            # The zone asked for (a group appears once per call), else the group's first.
            zone = (asked or {}).get(failure.group, ("", ""))[0]
            zone = zone or (group.zones[0] if group and group.zones else "")
            ctx.unavailable.mark(failure.group, zone, now, f"{failure.error_code}: {failure.message}")
            ctx.log.warning(
                "nodes_refused", group=failure.group, code=failure.error_code, count=failure.count
            )
        return bool(result.failed)

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


def _decision_id(key: str, pod: Pod | None, live: Pod | None) -> str:
    """What a pod contributes to the ClientToken: its identity, and the node it must leave if any.

    A restarted daemon re-deciding for the same pods derives the same token (HyperPod replays the
    first answer instead of adding nodes twice). Room for pods that must leave their node (expiry,
    interruption, rebalance) is a new decision even for pods that were provisioned for before: with
    the pod's identity alone the token would replay the request that made their current node.
    """
    identity = (pod.uid or key) if pod is not None else key
    leaving = live.node_name if live is not None else ""
    return f"{identity}@{leaving}" if leaving else identity


def _counts(result: AddResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for added in result.successful:
        counts[added.group] = counts.get(added.group, 0) + 1
    return counts
