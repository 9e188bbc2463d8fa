"""Interruption sources besides the SQS queue: HyperPod's cluster events, and what the Node watch shows.

- `ClusterEventSource` polls `ListClusterEvents`, which needs no set-up (continuous provisioning
  mode only). Every event is relayed into the log (`hyperpod_event`, Warn and Error at warning
  level); instance losses, capacity failures and cluster changes become signals. Shapes: the
  "SageMaker HyperPod cluster events reference" (ClusterEventSummary: EventId, InstanceGroupName,
  InstanceId, ResourceType, EventTime, EventLevel Info|Warn|Error, Description).
- `NodeSignalSource` reads the Node cache the watch keeps: the node agent's notice annotation
  (`hpscaler.agent.notice`), and the taints that mean a Spot notice (`spec.interruption.taintKeys`;
  HyperPod's Spot page: "On EC2 Spot interruption, Hyperpod taints node to trigger pod eviction").

Both deliver each signal once; there is nothing to delete, so `acknowledge` does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from hpscaler.agent.notice import NOTICE_ANNOTATION, Notice, decode_notice
from hpscaler.aws.eventbridge import SPOT_NOTICE_SECONDS, classify_hyperpod_event
from hpscaler.backends.types import (
    ClusterEvent,
    HyperPodEventKind,
    InterruptionKind,
    InterruptionMessage,
    JunkMessage,
)
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import HyperPodEventSeen
from hpscaler.daemon.state import instance_id_of
from hpscaler.model import Node

QueueMessage = InterruptionMessage | JunkMessage
NODE_RECHECK_SECONDS = 30.0
# Scans of every cached Node at most this often: a busy watch must not make the scan a hot loop.
NODE_SCAN_MIN_SECONDS = 1.0
_MAX_SEEN = 10_000


class ClusterEventSource:
    """`InterruptionSource` over ListClusterEvents, polled every `poll_seconds`."""

    name = "hyperpod-events"

    def __init__(self, ctx: DaemonContext, poll_seconds: float) -> None:
        self.ctx = ctx
        self.poll_seconds = poll_seconds
        self._since = ctx.clock.now()  # history before start-up was handled by the predecessor
        self._first = True

    async def receive(self) -> Sequence[QueueMessage]:
        """The signals among the events newer than the last poll (BackendError: the poll failed)."""
        if not self._first:
            await anyio.sleep(self.poll_seconds)
        self._first = False
        events = await self.ctx.backends.hyperpod.list_events(self._since)
        signals: list[QueueMessage] = []
        for event in events:
            self._since = max(self._since, event.time)
            self._relay(event)
            kind = classify_hyperpod_event(
                event.resource_type, event.level, event.description, event.failure_message
            )
            if kind is not HyperPodEventKind.OTHER:
                signals.append(self.to_message(event, kind))
        return signals

    async def acknowledge(self, message: QueueMessage) -> None:
        """Nothing to delete: events stay in HyperPod's history."""

    @staticmethod
    def to_message(event: ClusterEvent, kind: HyperPodEventKind) -> InterruptionMessage:
        """The signal one cluster event carries."""
        detail = (
            f"{event.description}: {event.failure_message}" if event.failure_message else event.description
        )
        return InterruptionMessage(
            f"event/{event.event_id}",
            InterruptionKind.HYPERPOD_EVENT,
            event.instance_id,
            event.time,
            state=kind.value,
            group=event.group,
            source="hyperpod-events",
            detail=detail,
        )

    def _relay(self, event: ClusterEvent) -> None:
        ctx = self.ctx
        # EventLevel is Info, Warn or Error (ClusterEventSummary in the SageMaker API reference).
        ctx.record(HyperPodEventSeen(event.group, event.instance_id, event.level, event.description))


class NodeSignalSource:
    """`InterruptionSource` over the Node cache: agent notices and interruption taints."""

    name = "nodes"

    def __init__(self, ctx: DaemonContext, recheck_seconds: float = NODE_RECHECK_SECONDS) -> None:
        self.ctx = ctx
        self.recheck_seconds = recheck_seconds
        self._seen: dict[str, None] = {}  # signal ids delivered, oldest first
        self._bad: dict[str, None] = {}  # unreadable annotation values already logged
        self._generation = -1

    async def receive(self) -> Sequence[QueueMessage]:
        """Wait for a Node change (or the recheck period) and return the signals not delivered yet."""
        while True:
            if self.ctx.cache.generation != self._generation:
                self._generation = self.ctx.cache.generation
                found = self.scan()
                if found:
                    return found
                await anyio.sleep(NODE_SCAN_MIN_SECONDS)
                continue  # changes that came meanwhile are scanned now, not after the next one
            with anyio.move_on_after(self.recheck_seconds):
                await self.ctx.changed.wait()

    async def acknowledge(self, message: QueueMessage) -> None:
        """Nothing to delete: the Node carries the signal."""

    def scan(self) -> list[QueueMessage]:
        """New signals on the cached Nodes."""
        keys = set(self.ctx.config.settings.interruption.taint_keys)
        managed = self.ctx.managed_groups()
        now = self.ctx.clock.now()
        found: list[QueueMessage] = []
        for node in list(self.ctx.cache.nodes.values()):
            instance = instance_id_of(node)
            if not instance:
                continue
            value = node.annotations.get(NOTICE_ANNOTATION)
            if value is not None:
                found.extend(self._agent_signal(node, instance, value))
            if node.instance_group in managed:
                for taint in node.taints:
                    if taint.key in keys:
                        found.extend(self._new(self._taint_signal(node, instance, taint.key, now)))
        return found

    def _agent_signal(self, node: Node, instance: str, value: str) -> list[QueueMessage]:
        notice = decode_notice(value)
        if isinstance(notice, str):
            if value not in self._bad:
                self._bad[value] = None
                self.ctx.log.warning(
                    "agent_notice_unreadable", node=node.name, annotation=NOTICE_ANNOTATION, error=notice
                )
                self._trim(self._bad)
            return []
        return self._new(self._agent_message(node, instance, notice))

    @staticmethod
    def _agent_message(node: Node, instance: str, notice: Notice) -> InterruptionMessage:
        return InterruptionMessage(
            f"agent/{node.name}/{notice.kind.value}/{notice.time:.0f}",
            notice.kind,
            instance,
            notice.time,
            deadline=notice.deadline,
            group=node.instance_group,
            zone=node.zone,
            source="agent",
            detail=notice.detail,
        )

    @staticmethod
    def _taint_signal(node: Node, instance: str, key: str, now: float) -> InterruptionMessage:
        # A taint carries no deadline; the Spot notice it stands for gives two minutes from now at most.
        return InterruptionMessage(
            f"taint/{node.name}/{key}",
            InterruptionKind.SPOT_INTERRUPTION,
            instance,
            now,
            deadline=now + SPOT_NOTICE_SECONDS,
            group=node.instance_group,
            zone=node.zone,
            source="taint",
            detail=f"node carries taint {key}",
        )

    def _new(self, message: InterruptionMessage) -> list[QueueMessage]:
        if message.message_id in self._seen:
            return []
        self._seen[message.message_id] = None
        self._trim(self._seen)
        return [message]

    @staticmethod
    def _trim(seen: dict[str, None]) -> None:
        while len(seen) > _MAX_SEEN:
            del seen[next(iter(seen))]
