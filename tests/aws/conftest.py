"""Fixtures for the AWS backend: moto over HTTP (one server per session, reset per test), clients
whose every call is recorded, and plain "admin" clients that arrange the world.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import aws_harness
import pytest
from aiobotocore.session import AioSession, get_session
from aws_harness import CLUSTER, POLICY_PATH, REGION, Admin, Call, Recorder, RecordingSession, reset_moto

from hpscaler.aws.session import AwsClients, aws_clients
from hpscaler.config.settings import Aws, Settings


@pytest.fixture(scope="session", autouse=True)
def aws_environment() -> Iterator[None]:
    """Fake credentials through the standard chain (environment), no real config or IMDS."""
    with aws_harness.fake_aws_environment():
        yield


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on a free local port, extended with the operations moto lacks."""
    with aws_harness.moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def all_calls() -> Iterator[list[Call]]:
    """Every backend call of the session; at the end each must be allowed by the IAM policy."""
    calls: list[Call] = []
    yield calls
    policy = json.loads(POLICY_PATH.read_text())
    allowed = {a for s in policy["Statement"] for a in s["Action"]}
    used = {f"{c.model.service_model.signing_name}:{c.operation}" for c in calls}
    assert used <= allowed, f"calls the IAM policy does not allow: {sorted(used - allowed)}"


@pytest.fixture
def endpoint(moto_server: str) -> str:
    """The moto endpoint, wiped clean for this test."""
    reset_moto(moto_server)
    return moto_server


@pytest.fixture
def settings(endpoint: str) -> Settings:
    """Settings pointing every service at moto."""
    return Settings(cluster_name=CLUSTER, region=REGION, aws=Aws(endpoint_url=endpoint, max_attempts=3))


@pytest.fixture(scope="session")
def recording() -> RecordingSession:
    """The session the backend's clients are created from."""
    return RecordingSession()


@pytest.fixture(scope="session")
def admin_session() -> AioSession:
    """A separate session for setup clients, so their calls are not recorded."""
    return get_session()


@pytest.fixture
def recorder(all_calls: list[Call], recording: RecordingSession) -> Iterator[Recorder]:
    """This test's backend calls."""
    recorder = Recorder()
    recording.current = recorder
    yield recorder
    recording.current = None
    all_calls.extend(recorder.calls)


@pytest.fixture
async def clients(
    settings: Settings, recorder: Recorder, recording: RecordingSession
) -> AsyncIterator[AwsClients]:
    """The backend's clients, as `aws_clients` opens them, recorded."""
    async with aws_clients(settings, session=recording.session) as opened:
        yield opened


@pytest.fixture
async def admin(endpoint: str, admin_session: AioSession) -> AsyncIterator[Admin]:
    """Setup clients."""
    session = admin_session
    kw = {"region_name": REGION, "endpoint_url": endpoint}
    async with (
        session.create_client("sagemaker", **kw) as sm,
        session.create_client("ec2", **kw) as ec2,
        session.create_client("sqs", **kw) as sqs,
    ):
        yield Admin(sm, ec2, sqs)
