"""Fixtures of the end-to-end tests: moto (one server per session, reset per test) with the operations
`tests/aws/moto_ext.py` adds, and a fresh fake Kubernetes API server per test.

The harness modules of tests/aws and tests/kube are imported from their directories, so the e2e tests
arrange the world with the same helpers as the backend tests.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _harness in ("aws", "kube"):
    if str(_TESTS / _harness) not in sys.path:
        sys.path.insert(0, str(_TESTS / _harness))

import pytest  # noqa: E402
import structlog  # noqa: E402
from aiobotocore.session import AioSession, get_session  # noqa: E402
from aws_harness import REGION, Admin, fake_aws_environment, moto_server, reset_moto  # noqa: E402
from e2e_harness import Cloud, build_cloud  # noqa: E402
from kube_harness import USED  # noqa: E402

from hpscaler.testing import FakeApiServer  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def aws_environment() -> Iterator[None]:
    """Fake credentials through the standard chain, for the daemon's clients and the admin's."""
    with fake_aws_environment():
        yield


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """The moto server of the session."""
    with moto_server() as url:
        yield url


@pytest.fixture
def endpoint(moto_url: str) -> str:
    """The moto endpoint, wiped clean (request log included) for this test."""
    reset_moto(moto_url)
    return moto_url


@pytest.fixture(scope="session")
def admin_session() -> AioSession:
    """One session for the setup clients (service models load once)."""
    return get_session()


@pytest.fixture
async def admin(endpoint: str, admin_session: AioSession) -> AsyncIterator[Admin]:
    """Clients the test uses to arrange AWS and to play HyperPod and EventBridge."""
    kw = {"region_name": REGION, "endpoint_url": endpoint}
    async with (
        admin_session.create_client("sagemaker", **kw) as sm,
        admin_session.create_client("ec2", **kw) as ec2,
        admin_session.create_client("sqs", **kw) as sqs,
    ):
        yield Admin(sm, ec2, sqs)


@pytest.fixture
async def cloud(admin: Admin, endpoint: str) -> Cloud:
    """The HyperPod cluster, its subnets, placement scores and the interruption queue."""
    return await build_cloud(admin, endpoint)


@pytest.fixture
async def kube() -> AsyncIterator[FakeApiServer]:
    """A fake API server; the requests the daemon made count for the RBAC check of tests/kube."""
    async with FakeApiServer() as server:
        yield server
        USED.update((r.group, r.resource, r.verb) for r in server.requests if r.verb)


@pytest.fixture(autouse=True)
def structlog_config() -> Iterator[None]:
    """Give back structlog's configuration: `plan --live` configures logging for its process (at
    warning), which would hide info events from the capture_logs of tests run after this one."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
