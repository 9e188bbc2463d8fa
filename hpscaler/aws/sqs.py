"""`InterruptionSource` on an SQS queue fed by EventBridge rules for EC2 and AWS Health events.

Parsing is a pure function so every event shape can be tested without a queue. A message that is
not understood becomes a `JunkMessage` (never an exception): the daemon logs and deletes it, so one
odd message cannot block the queue or crash the loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import structlog

from hpscaler.aws.retry import RetryPolicy, call_aws
from hpscaler.backends.types import InterruptionKind, InterruptionMessage, JunkMessage

log = structlog.get_logger("hpscaler.aws")

QueueMessage = InterruptionMessage | JunkMessage

SPOT_NOTICE_SECONDS = 120.0  # EC2 reclaims a Spot instance two minutes after the warning
SPOT_WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
STATE_CHANGE = "EC2 Instance State-change Notification"
HEALTH = "AWS Health Event"
_MAX_TRACKED_RECEIPTS = 1000


def _time(value: object) -> float | None:
    """EventBridge's ISO 8601 ("2025-01-02T03:04:05Z") or AWS Health's RFC 1123 dates; None if neither."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _instance_message(
    kind: InterruptionKind, detail: Mapping[str, Any], time: float, message_id: str, receipt: str
) -> QueueMessage:
    instance_id = detail.get("instance-id")
    if not isinstance(instance_id, str) or not instance_id:
        return JunkMessage(message_id, f"{kind.value} event without detail.instance-id", receipt)
    if kind is InterruptionKind.SPOT_INTERRUPTION:
        # `state` carries the instance-action (terminate, stop or hibernate) for a Spot warning.
        action = str(detail.get("instance-action", ""))
        return InterruptionMessage(
            message_id,
            kind,
            instance_id,
            time,
            deadline=time + SPOT_NOTICE_SECONDS,
            state=action,
            receipt=receipt,
        )
    if kind is InterruptionKind.STATE_CHANGE:
        state = detail.get("state")
        if not isinstance(state, str) or not state:
            return JunkMessage(message_id, "state-change event without detail.state", receipt)
        return InterruptionMessage(message_id, kind, instance_id, time, state=state, receipt=receipt)
    return InterruptionMessage(message_id, kind, instance_id, time, receipt=receipt)


def _health_messages(
    detail: Mapping[str, Any], time: float, message_id: str, receipt: str
) -> list[QueueMessage]:
    service, category = detail.get("service"), detail.get("eventTypeCategory")
    if service != "EC2" or category != "scheduledChange":
        return [
            JunkMessage(
                message_id, f"AWS Health event {service}/{category} is not an EC2 scheduled change", receipt
            )
        ]
    entities = detail.get("affectedEntities")
    instances: list[str] = []
    for entity in entities if isinstance(entities, list) else []:
        value = entity.get("entityValue") if isinstance(entity, dict) else None
        if isinstance(value, str) and value.startswith("i-"):
            instances.append(value)
    if not instances:
        return [JunkMessage(message_id, "EC2 scheduled change without affected instances", receipt)]
    unique = list(dict.fromkeys(instances))
    deadline = _time(detail.get("startTime"))
    # One message per instance; ids stay unique (and stable on redelivery) by naming the instance.
    return [
        InterruptionMessage(
            message_id if len(unique) == 1 else f"{message_id}/{instance}",
            InterruptionKind.SCHEDULED_CHANGE,
            instance,
            time,
            deadline=deadline,
            receipt=receipt,
        )
        for instance in unique
    ]


def parse_message(body: str, message_id: str, receipt: str) -> list[QueueMessage]:
    """The interruption signals in one SQS message body (an EventBridge event, maybe SNS-wrapped)."""
    try:
        event = json.loads(body)
        if (
            isinstance(event, dict)
            and event.get("Type") == "Notification"
            and isinstance(event.get("Message"), str)
        ):
            event = json.loads(event["Message"])  # delivered through an SNS topic
    except (json.JSONDecodeError, TypeError) as exc:
        return [JunkMessage(message_id, f"body is not JSON: {exc}", receipt)]
    if not isinstance(event, dict):
        return [JunkMessage(message_id, "body is not a JSON object", receipt)]
    detail_type = event.get("detail-type")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return [JunkMessage(message_id, f"event {detail_type!r} has no detail object", receipt)]
    time = _time(event.get("time"))
    if time is None:
        return [JunkMessage(message_id, f"event {detail_type!r} has no valid time", receipt)]
    kinds = {
        SPOT_WARNING: InterruptionKind.SPOT_INTERRUPTION,
        REBALANCE: InterruptionKind.REBALANCE,
        STATE_CHANGE: InterruptionKind.STATE_CHANGE,
    }
    if detail_type in kinds:
        return [_instance_message(kinds[detail_type], detail, time, message_id, receipt)]
    if detail_type == HEALTH:
        return _health_messages(detail, time, message_id, receipt)
    return [JunkMessage(message_id, f"unknown detail-type {detail_type!r}", receipt)]


class SqsInterruptions:
    """Long-polls the interruption queue; `acknowledge` deletes a message once it is handled."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        *,
        retry: RetryPolicy | None = None,
        wait_seconds: int = 20,
        max_messages: int = 10,
        visibility_seconds: int = 30,
    ) -> None:
        self._sqs = sqs
        self.queue_url = queue_url
        self._retry = retry if retry is not None else RetryPolicy()
        self.wait_seconds = wait_seconds
        self.max_messages = max_messages
        self.visibility_seconds = visibility_seconds
        # Receipt -> ids of the parts not yet acknowledged, for messages split into several.
        self._parts: dict[str, set[str]] = {}

    async def receive(self) -> Sequence[QueueMessage]:
        """One long poll (up to `wait_seconds`); may return nothing."""
        response = await call_aws(
            self._sqs,
            "ReceiveMessage",
            {
                "QueueUrl": self.queue_url,
                "MaxNumberOfMessages": self.max_messages,
                "WaitTimeSeconds": self.wait_seconds,
                "VisibilityTimeout": self.visibility_seconds,
            },
            self._retry,
        )
        received: list[QueueMessage] = []
        for raw in response.get("Messages") or []:
            receipt = str(raw.get("ReceiptHandle", ""))
            parts = parse_message(str(raw.get("Body", "")), str(raw.get("MessageId", "")), receipt)
            if len(parts) > 1:
                self._track(receipt, {p.message_id for p in parts})
            for part in parts:
                if isinstance(part, JunkMessage):
                    log.warning("interruption_message_junk", message=part.message_id, error=part.error)
            received.extend(parts)
        return received

    async def acknowledge(self, message: QueueMessage) -> None:
        """Delete the SQS message; one split into parts goes once its last part is acknowledged."""
        receipt = message.receipt
        if not receipt:
            return
        parts = self._parts.get(receipt)
        if parts is not None:
            parts.discard(message.message_id)
            if parts:
                return
            del self._parts[receipt]
        await call_aws(
            self._sqs, "DeleteMessage", {"QueueUrl": self.queue_url, "ReceiptHandle": receipt}, self._retry
        )
        log.debug("interruption_message_deleted", message=message.message_id)

    def _track(self, receipt: str, ids: set[str]) -> None:
        # Receipts of messages never acknowledged would pile up; the oldest are the ones to forget
        # (SQS redelivers them with a new receipt anyway).
        while len(self._parts) >= _MAX_TRACKED_RECEIPTS:
            del self._parts[next(iter(self._parts))]
        self._parts[receipt] = ids
