"""`parse_message` for every EventBridge shape, and `SqsInterruptions` against moto's SQS."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from aws_harness import FAST, Admin, Recorder

from hpscaler.aws.session import AwsClients
from hpscaler.aws.sqs import SqsInterruptions, parse_message
from hpscaler.backends.protocols import InterruptionSource
from hpscaler.backends.types import InterruptionKind, InterruptionMessage, JunkMessage

TIME = "2025-03-04T05:06:07Z"
EPOCH = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()


def event(detail_type: str, detail: dict[str, Any], source: str = "aws.ec2") -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": detail_type,
            "source": source,
            "account": "123456789012",
            "time": TIME,
            "region": "us-west-2",
            "resources": [],
            "detail": detail,
        }
    )


SPOT = event(
    "EC2 Spot Instance Interruption Warning", {"instance-id": "i-0spot", "instance-action": "terminate"}
)
REBALANCE = event("EC2 Instance Rebalance Recommendation", {"instance-id": "i-0rebal"})
STATE = event("EC2 Instance State-change Notification", {"instance-id": "i-0state", "state": "terminated"})


def health(*instances: str, service: str = "EC2", category: str = "scheduledChange") -> str:
    return event(
        "AWS Health Event",
        {
            "eventArn": "arn:aws:health:us-west-2::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/x",
            "service": service,
            "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
            "eventTypeCategory": category,
            "startTime": "Sat, 08 Mar 2025 10:00:00 GMT",
            "affectedEntities": [{"entityValue": i} for i in instances],
        },
        source="aws.health",
    )


def one(body: str) -> InterruptionMessage | JunkMessage:
    (parsed,) = parse_message(body, "m-1", "r-1")
    return parsed


def test_spot_interruption_warning() -> None:
    assert one(SPOT) == InterruptionMessage(
        "m-1",
        InterruptionKind.SPOT_INTERRUPTION,
        "i-0spot",
        EPOCH,
        deadline=EPOCH + 120,
        state="terminate",
        receipt="r-1",
        source="sqs",
    )


def test_rebalance_recommendation() -> None:
    assert one(REBALANCE) == InterruptionMessage(
        "m-1", InterruptionKind.REBALANCE, "i-0rebal", EPOCH, receipt="r-1", source="sqs"
    )


def test_state_change() -> None:
    assert one(STATE) == InterruptionMessage(
        "m-1",
        InterruptionKind.STATE_CHANGE,
        "i-0state",
        EPOCH,
        state="terminated",
        receipt="r-1",
        source="sqs",
    )


def test_health_scheduled_change_one_message_per_instance() -> None:
    start = datetime(2025, 3, 8, 10, 0, tzinfo=UTC).timestamp()
    assert parse_message(health("i-0a"), "m-1", "r-1") == [
        InterruptionMessage(
            "m-1",
            InterruptionKind.SCHEDULED_CHANGE,
            "i-0a",
            EPOCH,
            deadline=start,
            receipt="r-1",
            source="sqs",
            detail="AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
        )
    ]
    parsed = parse_message(health("i-0a", "i-0b", "i-0a"), "m-2", "r-2")
    assert [(p.message_id, p.instance_id) for p in parsed if isinstance(p, InterruptionMessage)] == [
        ("m-2/i-0a", "i-0a"),
        ("m-2/i-0b", "i-0b"),
    ]
    assert {p.receipt for p in parsed} == {"r-2"}


def test_sns_wrapped_event() -> None:
    wrapped = json.dumps({"Type": "Notification", "MessageId": "sns-1", "Message": SPOT})
    assert isinstance(one(wrapped), InterruptionMessage)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (event("EC2 Fleet Error", {"sub-type": "x"}), "unknown detail-type 'EC2 Fleet Error'"),
        (json.dumps({"detail-type": "EC2 Instance Rebalance Recommendation"}), "no detail object"),
        (
            json.dumps(
                {"detail-type": "EC2 Instance Rebalance Recommendation", "detail": {"instance-id": "i-1"}}
            ),
            "no valid time",
        ),
        (
            event("EC2 Spot Instance Interruption Warning", {"instance-action": "stop"}),
            "without detail.instance-id",
        ),
        (event("EC2 Instance State-change Notification", {"instance-id": "i-1"}), "without detail.state"),
        (health("i-0a", service="RDS"), "RDS/scheduledChange is not an EC2 scheduled change"),
        (health("i-0a", category="issue"), "EC2/issue is not an EC2 scheduled change"),
        (health("vol-0123"), "without affected instances"),
    ],
)
def test_junk_never_raises(body: str, error: str) -> None:
    parsed = one(body)
    assert isinstance(parsed, JunkMessage)
    assert error in parsed.error
    assert (parsed.message_id, parsed.receipt) == ("m-1", "r-1")


async def queue(admin: Admin, *bodies: str) -> str:
    url: str = (await admin.sqs.create_queue(QueueName="hpscaler-interruptions"))["QueueUrl"]
    for body in bodies:
        await admin.sqs.send_message(QueueUrl=url, MessageBody=body)
    return url


async def in_queue(admin: Admin, url: str) -> int:
    attributes = (
        await admin.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


async def test_receive_parses_and_acknowledge_deletes(
    admin: Admin, clients: AwsClients, recorder: Recorder
) -> None:
    url = await queue(admin, SPOT, REBALANCE, STATE, "garbage")
    source = SqsInterruptions(clients.sqs, url, retry=FAST, wait_seconds=0)
    assert isinstance(source, InterruptionSource)

    received: list[InterruptionMessage | JunkMessage] = []
    while len(received) < 4:
        received.extend(await source.receive())

    kinds = sorted(m.kind.value if isinstance(m, InterruptionMessage) else "junk" for m in received)
    assert kinds == ["junk", "rebalance-recommendation", "spot-interruption", "state-change"]
    assert all(m.receipt for m in received)
    call = recorder.operations("ReceiveMessage")[0]
    assert (call.params["MaxNumberOfMessages"], call.params["VisibilityTimeout"]) == (10, 30)
    assert await in_queue(admin, url) == 4  # in flight until acknowledged
    for message in received:
        await source.acknowledge(message)
    assert await in_queue(admin, url) == 0
    assert len(recorder.operations("DeleteMessage")) == 4


async def test_split_message_is_deleted_after_its_last_part(
    admin: Admin, clients: AwsClients, recorder: Recorder
) -> None:
    url = await queue(admin, health("i-0a", "i-0b"))
    source = SqsInterruptions(clients.sqs, url, retry=FAST, wait_seconds=1)

    first, second = await source.receive()

    await source.acknowledge(first)
    await source.acknowledge(first)  # twice: still waits for the other part
    assert recorder.operations("DeleteMessage") == []
    await source.acknowledge(second)
    assert len(recorder.operations("DeleteMessage")) == 1
    assert await in_queue(admin, url) == 0


async def test_unacknowledged_message_comes_back(admin: Admin, clients: AwsClients) -> None:
    url = await queue(admin, SPOT)
    source = SqsInterruptions(clients.sqs, url, retry=FAST, wait_seconds=0, visibility_seconds=1)

    (first,) = await source.receive()
    assert await source.receive() == []
    await anyio.sleep(1.2)
    (again,) = await source.receive()

    assert again.message_id == first.message_id
    assert again.receipt != first.receipt


def test_defaults_are_sqs_long_polling() -> None:
    source = SqsInterruptions(object(), "https://sqs.example/q")
    assert (source.wait_seconds, source.max_messages, source.visibility_seconds) == (20, 10, 30)
