"""HyperPod's interruption signals over the wire: ListClusterEvents (+ DescribeClusterEvent) and
`aws.sagemaker` events through moto's SQS, as the daemon's sources read them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import moto_ext
from aws_harness import CLUSTER, FAST, REGION, Admin, Recorder, make_world

from hpscaler.aws.sagemaker import SageMakerHyperPod
from hpscaler.aws.session import AwsClients
from hpscaler.aws.sqs import SqsInterruptions
from hpscaler.backends.types import HyperPodEventKind, InterruptionKind, InterruptionMessage
from hpscaler.clock import SystemClock
from hpscaler.config import default_config_path, load_config
from hpscaler.daemon.context import Backends, DaemonContext
from hpscaler.daemon.events import HyperPodEventSeen
from hpscaler.daemon.signal_sources import ClusterEventSource

GROUPS = [{"Name": "spot-a", "Zones": "a", "Capacity": "Spot", "Count": 1}]
REFERENCE = json.loads(
    (Path(__file__).parents[1] / "data" / "interruption-messages" / "hyperpod-reference.json").read_text()
)["body"]
CAPACITY = (
    "We currently do not have sufficient capacity to launch new ml.c5.2xlarge instances. Please try again."
)


async def test_cluster_events_become_signals_with_their_failure_reason(
    admin: Admin, clients: AwsClients, recorder: Recorder
) -> None:
    await make_world(admin, GROUPS)
    cluster = moto_ext.sagemaker_cluster(REGION, CLUSTER)
    start = datetime.now(UTC) - timedelta(minutes=5)
    moto_ext.add_event(cluster, "Instance i-1 is Running", group="spot-a", instance_id="i-1", time=start)
    moto_ext.add_event(
        cluster,
        "Instance i-2 in Cluster c and InstanceGroup spot-a was terminated",
        group="spot-a",
        instance_id="i-2",
        level="Warn",
        time=start + timedelta(seconds=1),
    )
    moto_ext.add_event(
        cluster,
        f"Instance creation in Cluster {CLUSTER} and InstanceGroup spot-a failed",
        group="spot-a",
        instance_id="i-3",
        level="Error",
        time=start + timedelta(seconds=2),
        failure_message=CAPACITY,
    )
    hp = SageMakerHyperPod(clients.sagemaker, clients.ec2, CLUSTER, retry=FAST)
    config = load_config(default_config_path())
    ctx = DaemonContext(
        config=config,
        backends=Backends(kubernetes=cast(Any, None), hyperpod=hp),
        catalogue=config.catalogue(),
        clock=SystemClock(),
    )
    source = ClusterEventSource(ctx, poll_seconds=60)
    source._since = start.timestamp() - 1  # as if started before the events

    signals = await source.receive()

    assert [(m.instance_id, m.state) for m in signals if isinstance(m, InterruptionMessage)] == [
        ("i-2", HyperPodEventKind.INSTANCE_LOST),
        ("i-3", HyperPodEventKind.CAPACITY_FAILURE),
    ]
    assert CAPACITY in signals[1].detail  # type: ignore[union-attr]
    assert len(recorder.operations("DescribeClusterEvent")) == 1  # only the Error instance event
    assert ctx.stats.events.count(HyperPodEventSeen, level="Warn") == 1


async def test_hyperpod_events_arrive_through_the_queue(admin: Admin, clients: AwsClients) -> None:
    url: str = (await admin.sqs.create_queue(QueueName="hpscaler-interruptions"))["QueueUrl"]
    await admin.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(REFERENCE))
    state = {
        **REFERENCE,
        "detail-type": "SageMaker HyperPod Cluster State Change",
        "detail": {"ClusterName": "c"},
    }
    await admin.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(state))
    source = SqsInterruptions(clients.sqs, url, retry=FAST, wait_seconds=1)

    received: list[Any] = []
    while len(received) < 2:
        received.extend(await source.receive())

    kinds = sorted((m.kind, m.state) for m in received)
    assert kinds == [
        (InterruptionKind.HYPERPOD_EVENT, HyperPodEventKind.CAPACITY_FAILURE),
        (InterruptionKind.HYPERPOD_EVENT, HyperPodEventKind.CLUSTER_CHANGED),
    ]
    for message in received:
        await source.acknowledge(message)
