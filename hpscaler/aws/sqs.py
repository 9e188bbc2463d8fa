"""`InterruptionSource` on an SQS queue fed by EventBridge rules for EC2, AWS Health and HyperPod events.

Parsing (`hpscaler.aws.eventbridge`) is a pure function so every event shape can be tested without
a queue. A message that is not understood becomes a `JunkMessage` (never an exception): the daemon
logs it once and deletes it, so one odd message cannot block the queue or crash the loop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import structlog

from hpscaler.aws.eventbridge import QueueMessage, parse_message
from hpscaler.aws.retry import RetryPolicy, call_aws

log = structlog.get_logger("hpscaler.aws")

__all__ = ["SqsInterruptions", "parse_message"]
_MAX_TRACKED_RECEIPTS = 1000


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
            parts = parse_message(
                str(raw.get("Body", "")), str(raw.get("MessageId", "")), receipt, received_at=time.time()
            )
            if len(parts) > 1:
                self._track(receipt, {p.message_id for p in parts})
            # Junk is logged once, by the handler that deletes it.
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
