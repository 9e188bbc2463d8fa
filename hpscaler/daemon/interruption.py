"""The interruption handler: one deduplicated stream of signals from every source.

Sources: the SQS queue (EC2, AWS Health and HyperPod EventBridge events), HyperPod's
ListClusterEvents, and the Node watch (the node agent's notices, HyperPod's interruption taint).
Their signals are merged per instance: the earliest deadline wins, a node is drained once, and
replacement capacity is requested once per lost node, whichever source spoke first.

With a notice: taint the node at once, ask for replacement capacity before the old node dies, let
pods that asked for it checkpoint, then evict within their grace periods. Without a notice (the
instance is already gone): delete the Node and plan the orphaned pods right away. In an instance
group hpscaler does not manage, HyperPod replaces the capacity itself: hpscaler leaves it alone.
A message is acknowledged only once it has been handled, or when it is junk or not ours.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio

from hpscaler.aws.eventbridge import SPOT_NOTICE_SECONDS
from hpscaler.backends.protocols import BackendError, InterruptionSource
from hpscaler.backends.types import HyperPodEventKind, InterruptionKind, InterruptionMessage, JunkMessage
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.drain import INTERRUPTED_TAINT, REASON_ANNOTATION, Drainer
from hpscaler.daemon.events import (
    InterruptionOutcome,
    InterruptionReceived,
    InterruptionReceiveFailed,
    InterruptionUnreadable,
)
from hpscaler.daemon.provisioner import Provisioner
from hpscaler.daemon.signal_sources import ClusterEventSource, NodeSignalSource
from hpscaler.daemon.state import instance_id_of
from hpscaler.model import CapacityType, Node, Taint, as_pending
from hpscaler.signals import decide

REBALANCE_TAINT = Taint("hpscaler.io/rebalance-recommended", "PreferNoSchedule")
FORGET_SECONDS = 24 * 3600.0
# Notices for one offering within this window are one reclaim: one capacity signal for its backoff.
CAPACITY_SIGNAL_WINDOW = SPOT_NOTICE_SECONDS
QueueMessage = InterruptionMessage | JunkMessage
ClusterChanged = Callable[[], Awaitable[None] | None]


@dataclass(slots=True)
class _Handled:
    """What was done for one instance, so later signals about it only ever advance its deadline."""

    kind: InterruptionKind
    at: float
    deadline: float | None = None
    node: str = ""
    drain: anyio.CancelScope | None = field(default=None, repr=False)


class InterruptionHandler:
    """Consumes interruption signals from every source; each message is handled in its own task."""

    def __init__(
        self,
        ctx: DaemonContext,
        provisioner: Provisioner,
        sources: Sequence[InterruptionSource] | None = None,
    ) -> None:
        self.ctx = ctx
        self.provisioner = provisioner
        self.drainer = Drainer(ctx)
        self._sources = list(sources) if sources is not None else None
        # Messages being handled, by (source, id) -> their latest delivery (its receipt deletes).
        self._active: dict[tuple[int, str], QueueMessage] = {}
        self._handled: dict[str, _Handled] = {}
        # Called on a HyperPod cluster change (UpdateCluster, scaling): read the instance groups again.
        self.on_cluster_changed: ClusterChanged | None = None

    def sources(self) -> list[InterruptionSource]:
        """The configured sources: the queue if any, ListClusterEvents, and the Node watch."""
        if self._sources is None:
            settings = self.ctx.config.settings.interruption
            found: list[InterruptionSource] = []
            if self.ctx.backends.interruptions is not None:
                found.append(self.ctx.backends.interruptions)
            if settings.cluster_events_seconds > 0:
                found.append(ClusterEventSource(self.ctx, settings.cluster_events_seconds))
            found.append(NodeSignalSource(self.ctx))
            self._sources = found
        return self._sources

    async def run(self) -> None:
        """Receive from every source and dispatch until cancelled."""
        sources = self.sources()
        async with anyio.create_task_group() as tg:
            for index, source in enumerate(sources):
                name = getattr(source, "name", type(source).__name__)
                tg.start_soon(self._pump, index, source, tg, name=f"interruptions:{name}")

    async def _pump(self, index: int, source: InterruptionSource, tg: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                batch = await source.receive()
            except BackendError as exc:
                self.ctx.record(InterruptionReceiveFailed(type(source).__name__, str(exc)))
                await anyio.sleep(5)
                continue
            for message in batch:
                key = (index, message.message_id)
                if key in self._active:
                    # Redelivered after the visibility timeout while still being handled: only
                    # this delivery's receipt can delete it now.
                    self._active[key] = message
                    continue
                self._active[key] = message
                tg.start_soon(
                    self._handle_and_ack, key, source, message, name=f"interruption:{message.message_id}"
                )

    async def _handle_and_ack(
        self, key: tuple[int, str], source: InterruptionSource, message: QueueMessage
    ) -> None:
        try:
            await self.handle(message)
            await source.acknowledge(self._active.get(key, message))
        except BackendError as exc:
            # Left unacknowledged, the queue redelivers it after its visibility timeout.
            self.ctx.log.warning("interruption_handling_failed", message=message.message_id, error=str(exc))
        finally:
            self._active.pop(key, None)

    async def handle(self, message: QueueMessage) -> None:
        """Act on one message (acknowledging is the caller's job)."""
        ctx = self.ctx
        if isinstance(message, JunkMessage):
            ctx.record(InterruptionUnreadable(message.message_id, message.error))
            return
        ctx.record(InterruptionReceived(message.kind.value, message.source or "other", message.instance_id))
        if message.kind is InterruptionKind.HYPERPOD_EVENT and message.state in (
            HyperPodEventKind.CLUSTER_CHANGED,
            HyperPodEventKind.CAPACITY_FAILURE,
        ):
            await self._cluster_signal(message)
            return
        decision = decide(message, rebalance_as_warning=ctx.config.settings.interruption.rebalance_as_warning)
        if decision.action == "none" and message.kind is not InterruptionKind.REBALANCE:
            # A state-change to pending or running is no interruption: nothing is marked handled.
            ctx.record(InterruptionOutcome("no-action", message.instance_id))
            ctx.log.debug("interruption_no_action", instance=message.instance_id, reason=decision.reason)
            return
        node = ctx.cache.node_for_instance(message.instance_id) if message.instance_id else None
        group = node.instance_group if node is not None else message.group
        if group and group not in ctx.managed_groups():
            ctx.record(InterruptionOutcome("unmanaged-group", message.instance_id))
            ctx.log.info(
                "interruption_left_to_hyperpod",
                instance=message.instance_id,
                group=group,
                kind=message.kind.value,
                why="hpscaler does not manage the group; HyperPod replaces its capacity itself",
            )
            return
        if node is None and not (decision.action == "replace" and group):
            ctx.record(InterruptionOutcome("not-ours", message.instance_id))
            ctx.log.info(
                "interruption_ignored",
                instance=message.instance_id,
                kind=message.kind.value,
                why="no node of this cluster runs on the instance",
            )
            return
        await self._merge(message, node, decision.action)

    async def _merge(self, message: InterruptionMessage, node: Node | None, action: str) -> None:
        ctx = self.ctx
        now = ctx.clock.now()
        # Instances handled more than a day ago are long gone: forget them so the map stays small.
        for instance, old in list(self._handled.items()):
            if now - old.at > FORGET_SECONDS:
                del self._handled[instance]
        previous = self._handled.get(message.instance_id)
        if previous is not None and (
            previous.kind is not InterruptionKind.REBALANCE or message.kind is InterruptionKind.REBALANCE
        ):
            self._advance_deadline(previous, message)
            ctx.record(InterruptionOutcome("duplicate", message.instance_id))
            return  # already draining or replaced; a second signal changes nothing else
        record = _Handled(message.kind, now, message.deadline, node.name if node else "")
        self._handled[message.instance_id] = record
        try:
            if message.kind is InterruptionKind.REBALANCE:
                assert node is not None
                await self._rebalance(node)
            elif action == "drain":
                assert node is not None
                await self._drain_interrupted(node, message, record)
            elif node is None:
                await self._replace_gone(message)
            else:
                await self._replace_lost(node, message)
        except BackendError:
            # Not handled after all: the redelivered message must get the full treatment, not be
            # taken for a duplicate. Each step is idempotent, so repeating the done ones is harmless.
            if previous is None:
                self._handled.pop(message.instance_id, None)
            else:
                self._handled[message.instance_id] = previous
            raise

    def _advance_deadline(self, record: _Handled, message: InterruptionMessage) -> None:
        """Earliest deadline wins: a later source that knows an earlier end restarts the drain."""
        if message.deadline is None or record.deadline is None or message.deadline >= record.deadline:
            return  # no deadline to compare (a lost instance), or not earlier
        record.deadline = message.deadline
        self.ctx.record(InterruptionOutcome("deadline-advanced", message.instance_id))
        self.ctx.log.info(
            "interruption_deadline_advanced", node=record.node, source=message.source, kind=message.kind.value
        )
        if record.drain is not None:
            record.drain.cancel()  # the drain loop starts again with the new deadline

    async def _cluster_signal(self, message: InterruptionMessage) -> None:
        ctx = self.ctx
        if message.state == HyperPodEventKind.CLUSTER_CHANGED:
            ctx.log.info("hyperpod_cluster_changed", detail=message.detail)
            if self.on_cluster_changed is not None:
                result = self.on_cluster_changed()
                if inspect.isawaitable(result):
                    await result
            return
        group = ctx.groups.get(message.group)
        if group is None or message.group not in ctx.managed_groups():
            ctx.log.info("hyperpod_capacity_failure_ignored", group=message.group, why="not a managed group")
            return
        now = ctx.clock.now()
        for zone in group.zones:
            if ctx.unavailable.mark_once(
                group.name, zone, now, "HyperPod capacity failure", CAPACITY_SIGNAL_WINDOW
            ):
                ctx.record(InterruptionOutcome("capacity-failure"))
                ctx.log.warning("offering_backed_off", group=group.name, zone=zone, reason=message.detail)

    async def _drain_interrupted(self, node: Node, message: InterruptionMessage, record: _Handled) -> None:
        ctx = self.ctx
        now = ctx.clock.now()
        record.deadline = message.deadline if message.deadline is not None else now + SPOT_NOTICE_SECONDS
        await ctx.backends.kubernetes.taint_node(node.name, add=[INTERRUPTED_TAINT])
        ctx.stats.taint_latency.append(ctx.clock.now() - message.time)
        ctx.mark_for_deletion(node.name, message.kind.value)
        ctx.log.info(
            "node_interrupted",
            node=node.name,
            instance=message.instance_id,
            kind=message.kind.value,
            source=message.source,
            deadline_in=round(record.deadline - now, 1),
        )
        await ctx.backends.kubernetes.annotate_node(node.name, {REASON_ANNOTATION: message.kind.value})
        if node.labels.get("karpenter.sh/capacity-type") == CapacityType.SPOT.value:
            # Karpenter does the same: an interrupted Spot offering is unlikely to have room right now.
            # Several notices at once are one reclaim: one capacity signal, not one per node.
            ctx.unavailable.mark_once(
                node.instance_group, node.zone, now, "spot interruption", CAPACITY_SIGNAL_WINDOW
            )
        for twin in map(as_pending, self.drainer.pods_to_move(node.name)):
            ctx.displace(twin)
        await self.provisioner.reconcile("interruption")
        ctx.record(InterruptionOutcome("replacement-requested", message.instance_id))
        while True:
            deadline = record.deadline
            await self.drainer.announce(node, deadline, message.kind.value)
            with anyio.CancelScope() as scope:
                record.drain = scope
                await self.drainer.drain(node, deadline=deadline)
            if not scope.cancelled_caught:
                break
        record.drain = None
        ctx.record(InterruptionOutcome("handled", message.instance_id))

    async def _rebalance(self, node: Node) -> None:
        ctx = self.ctx
        if not ctx.config.settings.interruption.rebalance_as_warning:
            ctx.log.info(
                "rebalance_recommendation", node=node.name, action="none (rebalanceAsWarning is off)"
            )
            return
        await ctx.backends.kubernetes.taint_node(node.name, add=[REBALANCE_TAINT])
        # Early warning: line up replacement capacity now, drain only when a real notice comes.
        await self.provisioner.reconcile(
            "rebalance", extra_pending=[as_pending(p) for p in self.drainer.pods_to_move(node.name)]
        )
        ctx.record(InterruptionOutcome("rebalance-preprovisioned", instance_id_of(node)))

    async def _replace_lost(self, node: Node, message: InterruptionMessage) -> None:
        ctx = self.ctx
        ctx.mark_for_deletion(node.name, "instance-" + (message.state or "lost"))
        pods = self.drainer.pods_on(node.name)
        ctx.log.warning(
            "node_lost_without_notice",
            node=node.name,
            instance=message.instance_id,
            source=message.source,
            pods=len(pods),
        )
        try:
            await ctx.backends.kubernetes.delete_node(node.name)
        except BackendError as exc:
            ctx.log.warning("delete_node_failed", node=node.name, error=str(exc))
        # Look again: pods whose deletion the watch has shown meanwhile have pending replacements
        # from their controllers, which the plan sees anyway; a twin as well would double their nodes.
        orphans = [as_pending(p) for p in self.drainer.pods_to_move(node.name)]
        await self.provisioner.reconcile("instance-lost", extra_pending=orphans)
        ctx.record(InterruptionOutcome("handled", message.instance_id))

    async def _replace_gone(self, message: InterruptionMessage) -> None:
        """A managed instance lost whose Node is already gone: its pods' controllers recreated them,
        and the plan provisions for those; the loss still counts as an interruption handled."""
        ctx = self.ctx
        ctx.log.warning(
            "node_lost_without_notice",
            node=None,
            instance=message.instance_id,
            group=message.group,
            source=message.source,
            pods=0,
        )
        await self.provisioner.reconcile("instance-lost")
        ctx.record(InterruptionOutcome("handled", message.instance_id))
