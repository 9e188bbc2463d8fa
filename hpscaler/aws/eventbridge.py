"""EventBridge events that reach the interruption queue, parsed into interruption signals.

Shapes, from the pages that define them:

- EC2: `EC2 Spot Instance Interruption Warning`, `EC2 Instance Rebalance Recommendation`,
  `EC2 Instance State-change Notification` and `EC2 Capacity Reservation Instance Interruption
  Warning` (source `aws.ec2`, `detail.instance-id`), as aws-node-termination-handler
  (pkg/monitor/sqsevent) and karpenter-provider-aws (pkg/controllers/interruption/messages) read them.
- AWS Health `AWS Health Event` with `service: EC2`, `eventTypeCategory: scheduledChange`.
- SageMaker HyperPod (source `aws.sagemaker`), from the "SageMaker HyperPod cluster events
  reference" (docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-hyperpod-cluster-events-reference.html)
  and "Events that Amazon SageMaker AI sends to Amazon EventBridge"
  (docs.aws.amazon.com/sagemaker/latest/dg/automating-sagemaker-with-eventbridge.html):
  `SageMaker HyperPod Cluster Event` carries `detail.EventDetails` (EventId, InstanceGroupName,
  InstanceId, ResourceType, EventTime in epoch milliseconds, EventLevel Info|Warn|Error,
  Description, EventDetails.EventMetadata.Instance.FailureMessage); `SageMaker HyperPod Cluster
  State Change` carries the cluster's status and instance groups.

Parsing is pure. A message that is not understood becomes a `JunkMessage` (never an exception).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from hpscaler.backends.types import (
    HyperPodEventKind,
    InterruptionKind,
    InterruptionMessage,
    JunkMessage,
)
from hpscaler.timestamps import parse_timestamp

QueueMessage = InterruptionMessage | JunkMessage

SPOT_NOTICE_SECONDS = 120.0  # EC2 reclaims a Spot instance two minutes after the warning
SPOT_WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
STATE_CHANGE = "EC2 Instance State-change Notification"
CAPACITY_RESERVATION = "EC2 Capacity Reservation Instance Interruption Warning"
HEALTH = "AWS Health Event"
HYPERPOD_EVENT = "SageMaker HyperPod Cluster Event"
HYPERPOD_STATE = "SageMaker HyperPod Cluster State Change"
# Karpenter's statechange parser accepts only these; pending and running are not interruptions.
GONE_STATES = frozenset({"stopping", "stopped", "shutting-down", "terminated"})

_EC2_KINDS = {
    SPOT_WARNING: InterruptionKind.SPOT_INTERRUPTION,
    REBALANCE: InterruptionKind.REBALANCE,
    STATE_CHANGE: InterruptionKind.STATE_CHANGE,
    CAPACITY_RESERVATION: InterruptionKind.CAPACITY_RESERVATION,
}
# The reference's example FailureMessage: "We currently do not have sufficient capacity to launch new
# ml.p5.48xlarge instances. Please try again."; EC2's error code is InsufficientInstanceCapacity.
_CAPACITY = re.compile(r"sufficient capacity|insufficient\w*capacity|capacity is not available", re.I)
_LOST = re.compile(r"terminat|reclaim|interrupt|\blost\b|shut ?down", re.I)


def classify_hyperpod_event(
    resource_type: str, level: str, description: str, failure_message: str = ""
) -> HyperPodEventKind:
    """What a HyperPod cluster event means for hpscaler, from its documented fields.

    The reference's record has no event-type code, only ResourceType, EventLevel, Description and
    the metadata's FailureMessage, so the meaning is read from those: a capacity failure names
    capacity; an instance event at Warn or Error that says the instance terminated, was reclaimed
    or interrupted, is a loss without notice. Health-driven reboots and replacements are not
    losses: HyperPod's node recovery keeps the node.
    """
    text = f"{description} {failure_message}"
    if _CAPACITY.search(text):
        return HyperPodEventKind.CAPACITY_FAILURE
    if resource_type == "Instance" and level in ("Warn", "Error") and _LOST.search(description):
        return HyperPodEventKind.INSTANCE_LOST
    if resource_type in ("Cluster", "InstanceGroup") and level in ("Info", "Warn"):
        return HyperPodEventKind.CLUSTER_CHANGED
    return HyperPodEventKind.OTHER


def _instance_message(
    kind: InterruptionKind, detail: Mapping[str, Any], time: float, message_id: str, receipt: str
) -> QueueMessage:
    instance_id = detail.get("instance-id")
    if not isinstance(instance_id, str) or not instance_id:
        return JunkMessage(message_id, f"{kind.value} event without detail.instance-id", receipt)
    if kind in (InterruptionKind.SPOT_INTERRUPTION, InterruptionKind.CAPACITY_RESERVATION):
        # Both warnings come two minutes before EC2 acts; `state` keeps the instance-action.
        return InterruptionMessage(
            message_id,
            kind,
            instance_id,
            time,
            deadline=time + SPOT_NOTICE_SECONDS,
            state=str(detail.get("instance-action", "")),
            receipt=receipt,
            source="sqs",
        )
    if kind is InterruptionKind.STATE_CHANGE:
        state = detail.get("state")
        if not isinstance(state, str) or not state:
            return JunkMessage(message_id, "state-change event without detail.state", receipt)
        return InterruptionMessage(
            message_id, kind, instance_id, time, state=state.lower(), receipt=receipt, source="sqs"
        )
    return InterruptionMessage(message_id, kind, instance_id, time, receipt=receipt, source="sqs")


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
    deadline = parse_timestamp(detail.get("startTime"))
    # One message per instance; ids stay unique (and stable on redelivery) by naming the instance.
    return [
        InterruptionMessage(
            message_id if len(unique) == 1 else f"{message_id}/{instance}",
            InterruptionKind.SCHEDULED_CHANGE,
            instance,
            time,
            deadline=deadline,
            receipt=receipt,
            source="sqs",
            detail=str(detail.get("eventTypeCode", "")),
        )
        for instance in unique
    ]


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _hyperpod_message(detail: Mapping[str, Any], time: float, message_id: str, receipt: str) -> QueueMessage:
    record = detail.get("EventDetails")
    if not isinstance(record, dict):
        return JunkMessage(message_id, f"{HYPERPOD_EVENT} without detail.EventDetails", receipt)
    metadata = record.get("EventDetails")
    instance_meta = {}
    if isinstance(metadata, dict) and isinstance(metadata.get("EventMetadata"), dict):
        found = metadata["EventMetadata"].get("Instance")
        instance_meta = found if isinstance(found, dict) else {}
    event_time = record.get("EventTime")
    if isinstance(event_time, int | float) and not isinstance(event_time, bool):
        time = float(event_time) / 1000.0  # epoch milliseconds in the record
    description = _text(record.get("Description"))
    failure = _text(instance_meta.get("FailureMessage"))
    kind = classify_hyperpod_event(
        _text(record.get("ResourceType")), _text(record.get("EventLevel")), description, failure
    )
    return InterruptionMessage(
        message_id,
        InterruptionKind.HYPERPOD_EVENT,
        _text(record.get("InstanceId")),
        time,
        state=kind.value,
        receipt=receipt,
        group=_text(record.get("InstanceGroupName")),
        source="sqs",
        detail=f"{description}: {failure}" if failure else description,
    )


def parse_message(
    body: str, message_id: str, receipt: str, received_at: float | None = None
) -> list[QueueMessage]:
    """The interruption signals in one SQS message body (an EventBridge event, maybe SNS-wrapped).

    An event whose `time` is empty or missing gets `received_at`, as aws-node-termination-handler
    does; without one it is junk.
    """
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
    raw_time = event.get("time")
    time = parse_timestamp(raw_time)
    if time is None and raw_time in (None, "") and received_at is not None:
        time = received_at
    if time is None:
        return [JunkMessage(message_id, f"event {detail_type!r} has no valid time", receipt)]
    if detail_type in _EC2_KINDS:
        return [_instance_message(_EC2_KINDS[detail_type], detail, time, message_id, receipt)]
    if detail_type == HEALTH:
        return _health_messages(detail, time, message_id, receipt)
    if detail_type == HYPERPOD_EVENT:
        return [_hyperpod_message(detail, time, message_id, receipt)]
    if detail_type == HYPERPOD_STATE:
        status = _text(detail.get("ClusterStatus"))
        return [
            InterruptionMessage(
                message_id,
                InterruptionKind.HYPERPOD_EVENT,
                "",
                time,
                state=HyperPodEventKind.CLUSTER_CHANGED.value,
                receipt=receipt,
                source="sqs",
                detail=f"cluster {_text(detail.get('ClusterName'))} is {status}",
            )
        ]
    return [JunkMessage(message_id, f"unknown detail-type {detail_type!r}", receipt)]
