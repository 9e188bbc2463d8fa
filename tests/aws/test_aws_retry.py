"""Retrying: a tiny local server answers 5xx/throttling/validation errors; the clients are the real
ones from `aws_clients`, so botocore's own retrying (off) is part of what is tested.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aws_harness import CLUSTER, REGION, Recorder, RecordingSession
from botocore.exceptions import ClientError, ConnectTimeoutError, ParamValidationError, ReadTimeoutError
from structlog.testing import capture_logs

from hpscaler.aws.retry import RetryPolicy, is_retryable
from hpscaler.aws.sagemaker import SageMakerHyperPod
from hpscaler.aws.session import aws_clients, endpoint_for
from hpscaler.backends.errors import CapacityError, InvalidRequestError, NotFoundError
from hpscaler.backends.protocols import BackendError
from hpscaler.config.settings import Aws, Settings
from hpscaler.provisioning.batching import AddRequest, NodesToAdd

QUICK = RetryPolicy(max_attempts=3, multiplier=0.01, max_wait=0.04)
DESCRIBED = {
    "ClusterArn": f"arn:aws:sagemaker:{REGION}:123456789012:cluster/abc123",
    "ClusterName": CLUSTER,
    "ClusterStatus": "InService",
    "InstanceGroups": [
        {"InstanceGroupName": "g", "InstanceType": "ml.c5.xlarge", "CurrentCount": 1, "TargetCount": 1}
    ],
    "NodeProvisioningMode": "Continuous",
}
ADD_REQUEST = AddRequest(CLUSTER, "", (NodesToAdd("g", 1),))
ADDED = {
    "Successful": [{"NodeLogicalId": "g-1", "InstanceGroupName": "g", "Status": "Pending"}],
    "Failed": [],
}


def error(status: int, code: str) -> tuple[int, Any]:
    return status, {"__type": code, "message": f"{code} from the test server"}


@dataclass
class ScriptedServer:
    """Answers SageMaker JSON requests from a script, repeating its last answer; keeps the requests."""

    script: list[tuple[int, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({"target": request.headers.get("X-Amz-Target"), "body": await request.json()})
        status, body = self.script[min(len(self.requests), len(self.script)) - 1]
        if isinstance(body, str):  # e.g. an HTML error page from a load balancer
            return web.Response(status=status, text=body, content_type="text/html")
        return web.Response(status=status, text=json.dumps(body), content_type="application/x-amz-json-1.1")


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    app = web.Application()
    app.router.add_post("/", scripted.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scripted.url = f"http://127.0.0.1:{port}"
    yield scripted
    await runner.cleanup()


@pytest.fixture
def session(recording: RecordingSession, recorder: Recorder) -> RecordingSession:
    """The shared recording session, recording into this test's recorder."""
    return recording


async def run(
    url: str, session: RecordingSession, policy: RetryPolicy = QUICK, operation: str = "describe"
) -> Any:
    settings = Settings(cluster_name=CLUSTER, region=REGION, aws=Aws(sagemaker_endpoint_url=url))
    async with aws_clients(settings, session=session.session) as clients:
        hp = SageMakerHyperPod(clients.sagemaker, clients.ec2, CLUSTER, retry=policy)
        if operation == "describe":
            return await hp.describe_cluster()
        if operation == "add":
            return await hp.batch_add_nodes(ADD_REQUEST)
        return await hp.batch_add_nodes(replace(ADD_REQUEST, client_token="hps-token"))


async def test_throttling_and_5xx_are_retried_with_jittered_backoff(
    server: ScriptedServer, session: RecordingSession
) -> None:
    server.script = [error(503, "ServiceUnavailable"), error(400, "ThrottlingException"), (200, DESCRIBED)]

    with capture_logs() as logs:
        description = await run(server.url, session)

    assert [g.name for g in description.groups] == ["g"]
    assert description.provisioning_mode == "Continuous"
    assert len(server.requests) == 3
    retries = [e for e in logs if e["event"] == "aws_call_retrying"]
    assert [(e["attempt"], e["code"]) for e in retries] == [
        (1, "ServiceUnavailable"),
        (2, "ThrottlingException"),
    ]
    # Full jitter: the n-th wait is drawn from [0, min(max_wait, multiplier * 2**n)].
    assert 0 <= retries[0]["wait"] <= 0.02 + 1e-9
    assert 0 <= retries[1]["wait"] <= 0.04 + 1e-9


async def test_validation_error_is_not_retried(server: ScriptedServer, session: RecordingSession) -> None:
    server.script = [error(400, "ValidationException")]

    with pytest.raises(BackendError) as raised:
        await run(server.url, session)

    assert len(server.requests) == 1
    assert (raised.value.code, raised.value.retryable) == ("ValidationException", False)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("ResourceLimitExceeded", CapacityError),  # BatchAddClusterNodes' quota error (service model)
        ("ResourceNotFound", NotFoundError),  # every cluster operation's not-found error
        ("ValidationException", InvalidRequestError),
        ("IdempotentParameterMismatch", InvalidRequestError),
        ("AccessDeniedException", BackendError),  # nothing the daemon can do about it but report it
    ],
)
async def test_batch_add_errors_arrive_as_what_they_mean(
    server: ScriptedServer, session: RecordingSession, code: str, kind: type[BackendError]
) -> None:
    server.script = [error(400, code)]

    with pytest.raises(BackendError) as raised:
        await run(server.url, session, operation="add-with-token")

    assert type(raised.value) is kind
    assert (raised.value.code, raised.value.retryable) == (code, False)
    assert len(server.requests) == 1  # none of them is worth sending again as it is


async def test_giving_up_keeps_the_error_code_and_says_retryable(
    server: ScriptedServer, session: RecordingSession
) -> None:
    server.script = [error(500, "InternalFailure")]

    with pytest.raises(BackendError) as raised:
        await run(server.url, session)

    assert len(server.requests) == 3  # max_attempts, not more: botocore adds no retries of its own
    assert (raised.value.code, raised.value.retryable) == ("InternalFailure", True)
    assert "InternalFailure" in str(raised.value)


async def test_a_bare_gateway_error_is_retried(server: ScriptedServer, session: RecordingSession) -> None:
    server.script = [(502, "<html>Bad Gateway</html>"), (200, DESCRIBED)]

    await run(server.url, session)

    assert len(server.requests) == 2


async def test_one_attempt_means_one_request(server: ScriptedServer, session: RecordingSession) -> None:
    server.script = [error(503, "ServiceUnavailable"), (200, DESCRIBED)]

    with pytest.raises(BackendError):
        await run(server.url, session, RetryPolicy(max_attempts=1))

    assert len(server.requests) == 1


async def test_batch_add_is_retried_only_with_a_client_token(
    server: ScriptedServer, session: RecordingSession
) -> None:
    server.script = [error(503, "ServiceUnavailable"), (200, ADDED)]
    with pytest.raises(BackendError) as raised:
        await run(server.url, session, operation="add")
    assert len(server.requests) == 1  # without a token a second request could add the nodes twice
    assert raised.value.retryable

    server.requests.clear()
    result = await run(server.url, session, operation="add-with-token")
    assert [a.logical_id for a in result.successful] == ["g-1"]
    assert len(server.requests) == 2
    assert server.requests[0]["body"] == server.requests[1]["body"]
    assert server.requests[0]["body"]["ClientToken"] == "hps-token"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_errors_are_retried(session: RecordingSession, recorder: Recorder) -> None:
    with capture_logs() as logs, pytest.raises(BackendError) as raised:
        await run(f"http://127.0.0.1:{closed_port()}", session)

    assert (raised.value.code, raised.value.retryable) == ("EndpointConnectionError", True)
    assert len(recorder.operations("DescribeCluster")) == 3
    assert len([e for e in logs if e["event"] == "aws_call_retrying"]) == 2


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (client_error("Throttling", 400), True),
        (client_error("RequestLimitExceeded", 503), True),
        (client_error("TooManyRequestsException", 400), True),
        (client_error("ProvisionedThroughputExceededException", 400), True),
        (client_error("SomethingNew", 500), True),
        (client_error("SomethingNew", 429), True),
        (client_error("ValidationException", 400), False),
        (client_error("ResourceNotFound", 400), False),
        (client_error("AccessDeniedException", 403), False),
        (ReadTimeoutError(endpoint_url="http://x"), True),
        (ConnectTimeoutError(endpoint_url="http://x"), True),
        (aiohttp.ServerDisconnectedError(), True),
        (TimeoutError(), True),
        (ParamValidationError(report="bad"), False),
        (ValueError("a bug"), False),
    ],
)
def test_what_is_retryable(exc: BaseException, retryable: bool) -> None:
    assert is_retryable(exc) is retryable


def test_endpoints_per_service_override_the_shared_one() -> None:
    aws = Aws(endpoint_url="http://shared", sqs_endpoint_url="http://sqs")
    assert endpoint_for(aws, "sqs") == "http://sqs"
    assert endpoint_for(aws, "ec2") == "http://shared"
    assert endpoint_for(Aws(), "sagemaker") is None


async def test_no_region_is_a_clear_error() -> None:
    with pytest.raises(BackendError) as raised:
        async with aws_clients(Settings()):
            pass
    assert (raised.value.code, raised.value.retryable) == ("NoRegion", False)


async def test_clients_use_the_region_and_no_botocore_retries() -> None:
    async with aws_clients(Settings(region="eu-west-1")) as clients:
        assert clients.region == "eu-west-1"
        for client in (clients.sagemaker, clients.ec2, clients.sqs):
            assert client.meta.region_name == "eu-west-1"
            assert client.meta.config.retries["total_max_attempts"] == 1
        assert clients.sqs.meta.config.read_timeout > 20  # outlasts a long poll
