"""Fake EC2 Spot placement scores and a fake SQS interruption queue, both in loop time."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import anyio

from hpscaler.backends.types import InterruptionKind, InterruptionMessage, JunkMessage
from hpscaler.fake.faults import FaultInjector

QueueMessage = InterruptionMessage | JunkMessage


class FakePlacementScores:
    """`PlacementScores` with static, settable scores per zone id."""

    def __init__(
        self,
        scores: Mapping[str, float] | None = None,
        *,
        zone_ids: Mapping[str, str] | None = None,
        default_score: float = 5.0,
    ) -> None:
        """`zone_ids` maps zone names to ids so scores can be set by either; unset zones score the default."""
        self._zone_ids = dict(zone_ids or {})
        self._scores = {zone_id: default_score for zone_id in self._zone_ids.values()}
        self.faults = FaultInjector()
        self.calls = 0
        self.requests: list[tuple[tuple[str, ...], int]] = []
        for zone, score in (scores or {}).items():
            self.set_score(zone, score)

    def set_score(self, zone: str, score: float) -> None:
        """Set the score of a zone given by name or id."""
        self._scores[self._zone_ids.get(zone, zone)] = score

    async def scores(self, instance_types: Sequence[str], target_capacity: int) -> Mapping[str, float]:
        """A score for every zone id known."""
        self.calls += 1
        self.requests.append((tuple(instance_types), target_capacity))
        self.faults.check("scores")
        return dict(self._scores)


@dataclass(slots=True)
class _Queued:
    message: QueueMessage
    visible_at: float = -math.inf  # loop time
    deliveries: int = 0
    receipt: str = ""


class FakeInterruptionQueue:
    """`InterruptionSource` with SQS semantics: long polling, visibility timeout, redelivery."""

    def __init__(
        self, *, wait_seconds: float = 20.0, visibility_seconds: float = 30.0, max_messages: int = 10
    ) -> None:
        self.wait_seconds = wait_seconds
        self.visibility_seconds = visibility_seconds
        self.max_messages = max_messages
        self.faults = FaultInjector()
        self.receive_calls = 0
        self.received = 0
        self.redelivered = 0
        self.acknowledged = 0
        self.stale_acknowledgements = 0
        self._queue: dict[str, _Queued] = {}
        self._arrived = anyio.Event()
        self._ids = itertools.count(1)
        self._receipts = itertools.count(1)

    def __len__(self) -> int:
        """Messages not yet acknowledged, in flight or not."""
        return len(self._queue)

    def new_id(self) -> str:
        """A message id not used before by this queue."""
        return f"msg-{next(self._ids):06d}"

    def put(self, message: QueueMessage) -> None:
        """Enqueue a message; it is visible at once."""
        if not message.message_id or message.message_id in self._queue:
            message = replace(message, message_id=self.new_id())
        self._queue[message.message_id] = _Queued(message)
        # Wake every waiting receive(); each re-checks and waits on a fresh event if it got nothing.
        self._arrived.set()
        self._arrived = anyio.Event()

    def put_spot_warning(self, instance_id: str, time: float, deadline: float) -> None:
        """EC2 Spot Instance Interruption Warning, as EventBridge delivers it (two minutes ahead)."""
        message = InterruptionMessage(
            self.new_id(),
            InterruptionKind.SPOT_INTERRUPTION,
            instance_id,
            time,
            deadline=deadline,
            source="sqs",
        )
        self.put(message)

    def put_rebalance(self, instance_id: str, time: float) -> None:
        """EC2 Instance Rebalance Recommendation: a message only, the instance stays."""
        self.put(InterruptionMessage(self.new_id(), InterruptionKind.REBALANCE, instance_id, time))

    def put_terminated(self, instance_id: str, time: float) -> None:
        """EC2 Instance State-change Notification for an instance that was terminated."""
        self.put(
            InterruptionMessage(
                self.new_id(), InterruptionKind.STATE_CHANGE, instance_id, time, state="terminated"
            )
        )

    def put_junk(self, error: str = "not an EC2 interruption event") -> JunkMessage:
        """Enqueue a message hpscaler cannot parse."""
        message = JunkMessage(self.new_id(), error)
        self.put(message)
        return message

    def messages(self) -> list[QueueMessage]:
        """Everything still in the queue, oldest first."""
        return [q.message for q in self._queue.values()]

    async def receive(self) -> Sequence[QueueMessage]:
        """Long-poll up to `wait_seconds` for up to `max_messages` visible messages."""
        self.receive_calls += 1
        self.faults.check("receive")
        deadline = anyio.current_time() + self.wait_seconds
        while True:
            now = anyio.current_time()
            arrived = self._arrived
            batch = self._take(now)
            if batch or now >= deadline:
                return batch
            reappears = min(
                (q.visible_at for q in self._queue.values() if q.visible_at > now), default=math.inf
            )
            with anyio.move_on_after(min(deadline, reappears) - now):
                await arrived.wait()

    async def acknowledge(self, message: QueueMessage) -> None:
        """Delete the message, unless the receipt is stale (it was delivered again since)."""
        self.faults.check("acknowledge")
        queued = self._queue.get(message.message_id)
        if queued is None:
            return
        if queued.receipt != message.receipt:
            # As SQS: only the latest receipt handle deletes; the redelivered copy is still out there.
            self.stale_acknowledgements += 1
            return
        del self._queue[message.message_id]
        self.acknowledged += 1

    def _take(self, now: float) -> list[QueueMessage]:
        batch: list[QueueMessage] = []
        for queued in self._queue.values():
            if len(batch) >= self.max_messages:
                break
            if queued.visible_at > now:
                continue
            queued.visible_at = now + self.visibility_seconds
            queued.deliveries += 1
            queued.receipt = f"rcpt-{next(self._receipts):06d}"
            if queued.deliveries > 1:
                self.redelivered += 1
            self.received += 1
            batch.append(replace(queued.message, receipt=queued.receipt))
        return batch
