"""The interruption handler: Spot notices, rebalance recommendations, scheduled changes, state changes.

With a notice: taint the node at once, ask for replacement capacity before the old node dies, let
pods that asked for it checkpoint, then evict within their grace periods. Without a notice (the
instance is already gone): delete the Node and plan the orphaned pods right away. A message is
acknowledged only once it has been handled, or when it is junk or about a node that is not ours.
"""

from __future__ import annotations

import anyio

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import InterruptionKind, InterruptionMessage, JunkMessage
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.drain import INTERRUPTED_TAINT, REASON_ANNOTATION, Drainer
from hpscaler.daemon.provisioner import Provisioner
from hpscaler.model import CapacityType, Node, Taint, as_pending

REBALANCE_TAINT = Taint("hpscaler.io/rebalance-recommended", "PreferNoSchedule")
FORGET_SECONDS = 24 * 3600.0
GONE_STATES = ("shutting-down", "terminated", "stopping", "stopped")


class InterruptionHandler:
    """Consumes interruption signals; each message is handled in its own task."""

    def __init__(self, ctx: DaemonContext, provisioner: Provisioner) -> None:
        self.ctx = ctx
        self.provisioner = provisioner
        self.drainer = Drainer(ctx)
        # Messages being handled, by id -> their latest delivery (its receipt is the one that deletes).
        self._active: dict[str, InterruptionMessage | JunkMessage] = {}
        self._handled_instances: dict[str, tuple[InterruptionKind, float]] = {}

    async def run(self) -> None:
        """Receive and dispatch until cancelled."""
        source = self.ctx.backends.interruptions
        if source is None:
            return
        await self.ctx.synced.wait()
        async with anyio.create_task_group() as tg:
            while True:
                try:
                    batch = await source.receive()
                except BackendError as exc:
                    self.ctx.stats.counters["interruption_receive_errors"] += 1
                    self.ctx.log.warning("interruption_receive_failed", error=str(exc))
                    await anyio.sleep(5)
                    continue
                for message in batch:
                    if message.message_id in self._active:
                        # Redelivered after the visibility timeout while still being handled: only
                        # this delivery's receipt can delete it now.
                        self._active[message.message_id] = message
                        continue
                    self._active[message.message_id] = message
                    tg.start_soon(self._handle_and_ack, message)

    async def _handle_and_ack(self, message: InterruptionMessage | JunkMessage) -> None:
        source = self.ctx.backends.interruptions
        assert source is not None
        try:
            await self.handle(message)
            await source.acknowledge(self._active.get(message.message_id, message))
        except BackendError as exc:
            # Left unacknowledged, the queue redelivers it after its visibility timeout.
            self.ctx.log.warning("interruption_handling_failed", message=message.message_id, error=str(exc))
        finally:
            self._active.pop(message.message_id, None)

    async def handle(self, message: InterruptionMessage | JunkMessage) -> None:
        """Act on one message (acknowledging is the caller's job)."""
        ctx = self.ctx
        counters = ctx.stats.counters
        if isinstance(message, JunkMessage):
            counters["interruption_junk_messages"] += 1
            ctx.log.warning(
                "interruption_message_unreadable", message=message.message_id, error=message.error
            )
            return
        counters[f"interruption_received:{message.kind.value}"] += 1
        node = ctx.cache.node_for_instance(message.instance_id)
        if node is None:
            counters["interruption_not_ours"] += 1
            ctx.log.info(
                "interruption_ignored",
                instance=message.instance_id,
                kind=message.kind.value,
                why="no node of this cluster runs on the instance",
            )
            return
        now = ctx.clock.now()
        # Instances handled more than a day ago are long gone: forget them so the map stays small.
        for instance, (_, seen) in list(self._handled_instances.items()):
            if now - seen > FORGET_SECONDS:
                del self._handled_instances[instance]
        previous, previous_at = self._handled_instances.get(message.instance_id, (None, 0.0))
        if previous is not None and previous is not InterruptionKind.REBALANCE:
            counters["interruption_duplicates"] += 1
            return  # already draining or replaced; a second notice changes nothing
        self._handled_instances[message.instance_id] = (message.kind, now)
        try:
            if message.kind is InterruptionKind.REBALANCE:
                await self._rebalance(node)
            elif message.kind is InterruptionKind.STATE_CHANGE and message.state in GONE_STATES:
                await self._replace_lost(node, message)
            elif message.kind in (InterruptionKind.SPOT_INTERRUPTION, InterruptionKind.SCHEDULED_CHANGE):
                await self._drain_interrupted(node, message)
        except BackendError:
            # Not handled after all: the redelivered message must get the full treatment, not be
            # taken for a duplicate. Each step is idempotent, so repeating the done ones is harmless.
            if previous is None:
                self._handled_instances.pop(message.instance_id, None)
            else:
                self._handled_instances[message.instance_id] = (previous, previous_at)
            raise

    async def _drain_interrupted(self, node: Node, message: InterruptionMessage) -> None:
        ctx = self.ctx
        now = ctx.clock.now()
        deadline = message.deadline if message.deadline is not None else now + 120.0
        await ctx.backends.kubernetes.taint_node(node.name, add=[INTERRUPTED_TAINT])
        ctx.stats.taint_latency.append(ctx.clock.now() - message.time)
        ctx.disrupting[node.name] = message.kind.value
        ctx.log.info(
            "node_interrupted",
            node=node.name,
            instance=message.instance_id,
            kind=message.kind.value,
            deadline_in=round(deadline - now, 1),
        )
        await ctx.backends.kubernetes.annotate_node(node.name, {REASON_ANNOTATION: message.kind.value})
        if node.labels.get("karpenter.sh/capacity-type") == CapacityType.SPOT.value:
            # Karpenter does the same: an interrupted Spot offering is unlikely to have room right now.
            ctx.unavailable.mark(node.instance_group, node.zone, now, "spot interruption")
        for twin in map(as_pending, self.drainer.pods_to_move(node.name)):
            ctx.displaced[twin.key] = twin
        await self.provisioner.reconcile("interruption")
        ctx.stats.counters["interruption_replacements_requested"] += 1
        await self.drainer.announce(node, deadline, message.kind.value)
        await self.drainer.drain(node, deadline=deadline)
        ctx.stats.counters["interruptions_handled"] += 1

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
        ctx.stats.counters["rebalance_preprovisioned"] += 1

    async def _replace_lost(self, node: Node, message: InterruptionMessage) -> None:
        ctx = self.ctx
        ctx.disrupting[node.name] = "instance-" + message.state
        pods = self.drainer.pods_on(node.name)
        ctx.log.warning(
            "node_lost_without_notice", node=node.name, instance=message.instance_id, pods=len(pods)
        )
        try:
            await ctx.backends.kubernetes.delete_node(node.name)
        except BackendError as exc:
            ctx.log.warning("delete_node_failed", node=node.name, error=str(exc))
        # Look again: pods whose deletion the watch has shown meanwhile have pending replacements
        # from their controllers, which the plan sees anyway; a twin as well would double their nodes.
        orphans = [as_pending(p) for p in self.drainer.pods_to_move(node.name)]
        await self.provisioner.reconcile("instance-lost", extra_pending=orphans)
        ctx.stats.counters["interruptions_handled"] += 1
