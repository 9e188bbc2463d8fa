"""The node agent against a local fake IMDS (IMDSv2) and the fake API server, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import structlog
from kubernetes_asyncio.client import ApiClient

from hpscaler.agent.imds import ImdsClient, ImdsUnavailable
from hpscaler.agent.notice import NOTICE_ANNOTATION, decode_notice
from hpscaler.agent.runner import Agent, ApiNodeReporter
from hpscaler.backends.types import InterruptionKind
from hpscaler.testing.fakeapiserver import FakeApiServer
from hpscaler.testing.fakeimds import REBALANCE, SCHEDULED, SPOT, FakeImds

NODE = "hyperpod-i-0123456789abcdef0"
NOW = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


@pytest.fixture
async def imds() -> AsyncIterator[FakeImds]:
    async with FakeImds() as fake:
        yield fake


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer() as fake:
        fake.create(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}, "status": {}}
        )
        yield fake


@pytest.fixture
async def agent(imds: FakeImds, server: FakeApiServer) -> AsyncIterator[Agent]:
    async with aiohttp.ClientSession() as session, ApiClient(server.configuration()) as api:
        client = ImdsClient(session, imds.url, timeout_seconds=0.5)
        yield Agent(client, ApiNodeReporter(api, NODE), poll_seconds=5, clock=lambda: NOW)


def annotation(server: FakeApiServer) -> dict[str, Any] | None:
    node = server.get("nodes", NODE)
    assert node is not None
    value = (node["metadata"].get("annotations") or {}).get(NOTICE_ANNOTATION)
    return None if value is None else json.loads(value)


async def test_nothing_to_report_is_quiet_and_uses_one_token(
    agent: Agent, imds: FakeImds, server: FakeApiServer
) -> None:
    assert await agent.poll_once() is None
    assert await agent.poll_once() is None
    assert annotation(server) is None
    assert [r for r in imds.requests if r[0] == "PUT"] == [("PUT", "/latest/api/token", 200)]
    assert ("GET", SPOT, 404) in imds.requests


async def test_spot_notice_is_reported_on_the_node_once(
    agent: Agent, imds: FakeImds, server: FakeApiServer
) -> None:
    imds.set(SPOT, {"action": "terminate", "time": "2026-01-01T00:02:00Z"})
    notice = await agent.poll_once()
    assert notice is not None and notice.kind is InterruptionKind.SPOT_INTERRUPTION
    assert annotation(server) == {
        "kind": "spot-interruption",
        "time": "2026-01-01T00:00:00Z",
        "deadline": "2026-01-01T00:02:00Z",
        "detail": "instance-action terminate",
    }
    patches = len([r for r in server.requests if r.verb == "patch"])
    assert await agent.poll_once() is None  # the same notice again: no second patch
    assert len([r for r in server.requests if r.verb == "patch"]) == patches
    # What the agent writes is what the daemon reads.
    decoded = decode_notice(json.dumps(annotation(server)))
    assert not isinstance(decoded, str) and decoded.deadline == NOW + 120


async def test_a_rebalance_is_superseded_by_a_spot_notice_never_the_reverse(
    agent: Agent, imds: FakeImds, server: FakeApiServer
) -> None:
    imds.set(REBALANCE, {"noticeTime": "2025-12-31T23:50:00Z"})
    await agent.poll_once()
    assert annotation(server)["kind"] == "rebalance-recommendation"  # type: ignore[index]
    imds.set(SPOT, {"action": "stop", "time": "2026-01-01T00:02:00Z"})
    await agent.poll_once()
    assert annotation(server)["kind"] == "spot-interruption"  # type: ignore[index]
    imds.set(SPOT, None)
    assert await agent.poll_once() is None
    assert annotation(server)["kind"] == "spot-interruption"  # type: ignore[index]


async def test_scheduled_maintenance_active_only(agent: Agent, imds: FakeImds, server: FakeApiServer) -> None:
    event = {
        "Code": "system-reboot",
        "Description": "scheduled reboot",
        "EventId": "instance-event-0d59937288b749b32",
        "NotBefore": "21 Jan 2026 09:00:43 GMT",
        "NotAfter": "21 Jan 2026 09:17:23 GMT",
        "State": "completed",
    }
    imds.set(SCHEDULED, [event])
    assert await agent.poll_once() is None
    imds.set(SCHEDULED, [event, {**event, "State": "active", "EventId": "instance-event-1"}])
    notice = await agent.poll_once()
    assert notice is not None and notice.kind is InterruptionKind.SCHEDULED_CHANGE
    assert annotation(server)["deadline"] == "2026-01-21T09:00:43Z"  # type: ignore[index]


async def test_an_expired_token_is_renewed_once(agent: Agent, imds: FakeImds) -> None:
    await agent.poll_once()
    imds.expire_tokens()
    imds.set(SPOT, {"action": "terminate", "time": "2026-01-01T00:02:00Z"})
    assert await agent.poll_once() is not None
    assert [r for r in imds.requests if r[0] == "PUT"] == [("PUT", "/latest/api/token", 200)] * 2
    assert ("GET", SPOT, 401) in imds.requests


@pytest.mark.parametrize("fault", ["hang", "500", "down"])
async def test_imds_away_is_logged_once_and_backed_off(
    imds: FakeImds, server: FakeApiServer, fault: str
) -> None:
    if fault == "hang":
        imds.hang = True
    elif fault == "500":
        imds.status = 500
    async with aiohttp.ClientSession() as session, ApiClient(server.configuration()) as api:
        url = "http://127.0.0.1:9" if fault == "down" else imds.url  # port 9: nothing listens
        agent = Agent(
            ImdsClient(session, url, timeout_seconds=0.2), ApiNodeReporter(api, NODE), poll_seconds=5
        )
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                try:
                    await agent.poll_once()
                except ImdsUnavailable as exc:
                    agent._failed("imds_unreachable", exc)
        assert [e["event"] for e in logs] == ["imds_unreachable"]
        assert "HopLimit" in logs[0]["hint"]
        assert agent.failures == 3 and agent.delay() == 40.0  # 5 s doubled per failure in a row
        agent.failures = 9
        assert agent.delay() == 60.0  # capped at a minute
    imds.hang = False


def test_poll_interval_is_bounded() -> None:
    assert Agent(None, None, poll_seconds=0.01).poll_seconds == 1.0  # type: ignore[arg-type]
    assert Agent(None, None, poll_seconds=3600).poll_seconds == 60.0  # type: ignore[arg-type]
