"""The backend against the AWS contract: every request validates against botocore's service model,
and `deploy/iam-policy.json` allows exactly the operations the code calls.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import moto_ext
from aws_harness import CLUSTER, FAST, POLICY_PATH, REGION, Admin, Recorder, make_world
from botocore.session import get_session
from botocore.validate import validate_parameters

import hpscaler.aws
from hpscaler.aws.placement import SpotPlacementScores
from hpscaler.aws.sagemaker import SageMakerHyperPod
from hpscaler.aws.session import SERVICES, AwsClients
from hpscaler.aws.sqs import SqsInterruptions
from hpscaler.provisioning.batching import AddRequest, NodesToAdd
from hpscaler.testing.spy import public_coroutines, spy

SOURCE = Path(hpscaler.aws.__file__).parent


def operations_in_source() -> set[str]:
    """`service:Operation` for every string literal in hpscaler/aws that names an API operation."""
    session = get_session()
    models = {name: session.get_service_model(name) for name in SERVICES}
    found: set[str] = set()
    for path in sorted(SOURCE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            owners = [m for m in models.values() if node.value in m.operation_names]
            assert len(owners) <= 1, f"{node.value!r} ({path.name}) names an operation of several services"
            found.update(f"{m.signing_name}:{node.value}" for m in owners)
    return found


def session_model(service: str, operation: str) -> object:
    """The input shape of one operation in botocore's model."""
    return get_session().get_service_model(service).operation_model(operation).input_shape


def policy_actions() -> set[str]:
    policy = json.loads(POLICY_PATH.read_text())
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def test_policy_allows_exactly_the_operations_the_code_calls() -> None:
    assert operations_in_source() == policy_actions()


def test_policy_is_scoped_where_aws_allows_it() -> None:
    policy = json.loads(POLICY_PATH.read_text())
    by_service = {s["Action"][0].split(":")[0]: s for s in policy["Statement"]}
    assert all(s["Effect"] == "Allow" and "*" not in "".join(s["Action"]) for s in policy["Statement"])
    assert by_service["sagemaker"]["Resource"] == "arn:aws:sagemaker:REGION:ACCOUNT_ID:cluster/CLUSTER_ID"
    assert by_service["sqs"]["Resource"] == "arn:aws:sqs:REGION:ACCOUNT_ID:QUEUE_NAME"
    # EC2's describe/score/price calls have no resource-level permissions: pinned to the region.
    assert by_service["ec2"]["Resource"] == "*"
    assert by_service["ec2"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": "REGION"}}


async def test_every_request_validates_against_the_service_model(
    admin: Admin, clients: AwsClients, recorder: Recorder
) -> None:
    await make_world(admin, [{"Name": "multi", "Zones": "ab", "Capacity": "Spot", "Count": 1}])
    moto_ext.set_placement_scores(REGION, {"usw2-az1": 8})
    called: set[str] = set()
    hp = SageMakerHyperPod(clients.sagemaker, clients.ec2, CLUSTER, retry=FAST)
    spy(hp, called)
    await hp.describe_cluster()
    added = await hp.batch_add_nodes(
        AddRequest(
            CLUSTER,
            "hps-contract",
            (NodesToAdd("multi", 2, zones=("us-west-2b",), instance_types=("ml.c5.xlarge",)),),
        )
    )
    await hp.list_nodes()
    await hp.batch_delete_nodes([a.logical_id for a in added.successful])
    moto_ext.add_event(
        moto_ext.sagemaker_cluster(REGION, CLUSTER),
        f"Instance creation in Cluster {CLUSTER} and InstanceGroup multi failed",
        group="multi",
        instance_id="i-0123456789abcdef0",
        level="Error",
        failure_message="We currently do not have sufficient capacity to launch new ml.c5.xlarge instances.",
    )
    await hp.list_events(1.0)  # the Error event's reason comes from DescribeClusterEvent
    sps = SpotPlacementScores(clients.ec2, REGION, retry=FAST)
    spy(sps, called)
    await sps.scores(["ml.c5.xlarge"], 2)
    await sps.prices(["ml.c5.xlarge"])  # through spot_prices: both count as called
    url = (await admin.sqs.create_queue(QueueName="q"))["QueueUrl"]
    await admin.sqs.send_message(QueueUrl=url, MessageBody="{}")
    source = SqsInterruptions(clients.sqs, url, retry=FAST, wait_seconds=1)
    spy(source, called)
    for message in await source.receive():
        await source.acknowledge(message)

    # Every operation the three backends have was called, so these calls are all they can make.
    assert called == set().union(
        *(public_coroutines(c) for c in (SageMakerHyperPod, SpotPlacementScores, SqsInterruptions))
    )
    for call in recorder.calls:
        validate_parameters(call.params, call.model.input_shape)  # raises ParamValidationError
    # As they reached moto (the admin's calls are not hpscaler's: no "app/hpscaler" user agent).
    server_side = [r for r in moto_ext.requests() if r.from_hpscaler]
    assert [(r.service, r.operation) for r in server_side] == [
        (c.service, c.operation) for c in recorder.calls
    ]
    for request in server_side:
        validate_parameters(request.params, session_model(request.service, request.operation))
    used = {f"{c.model.service_model.signing_name}:{c.operation}" for c in recorder.calls}
    assert used == operations_in_source() == policy_actions()
