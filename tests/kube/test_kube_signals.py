"""Notices on the Node, over the wire: the agent patches its Node on the fake API server, HyperPod's
taint is applied there, and the daemon's Node source reads both through the Kubernetes backend's watch."""

from __future__ import annotations

from typing import Any, cast

import aiohttp
from kube_harness import ManualClock, node_manifest, until_synced
from kubernetes_asyncio.client import ApiClient

from hpscaler.agent.imds import ImdsClient
from hpscaler.agent.runner import Agent, ApiNodeReporter
from hpscaler.backends.types import InterruptionKind, InterruptionMessage
from hpscaler.config import default_config_path, load_config
from hpscaler.daemon.context import Backends, DaemonContext
from hpscaler.daemon.signal_sources import NodeSignalSource
from hpscaler.kube.backend import KubernetesBackend
from hpscaler.testing.fakeapiserver import FakeApiServer
from hpscaler.testing.fakeimds import SPOT, FakeImds

NODE = "hyperpod-i-0123456789abcdef0"
GROUP = "auto-spot-c5-2x-az1"  # managed by the example configuration's NodeClass


def hyperpod_node() -> dict[str, Any]:
    node = node_manifest(NODE)
    node["metadata"]["labels"]["sagemaker.amazonaws.com/instance-group-name"] = GROUP
    node["spec"]["providerID"] = "aws:///usw2-az1/sagemaker/cluster/hyperpod-abc123-i-0123456789abcdef0"
    return node


async def test_agent_notice_and_taint_reach_the_daemon_through_the_watch(
    server: FakeApiServer, api: Any, backend: KubernetesBackend, clock: ManualClock
) -> None:
    server.create(hyperpod_node())
    config = load_config(default_config_path())
    ctx = DaemonContext(
        config=config,
        backends=Backends(kubernetes=backend, hyperpod=cast(Any, None)),
        catalogue=config.catalogue(),
        clock=clock,
    )
    source = NodeSignalSource(ctx)
    events = backend.watch()
    for event in await until_synced(events):
        ctx.cache.apply(event, clock.now())
    assert source.scan() == []

    async with (
        FakeImds() as imds,
        aiohttp.ClientSession() as session,
        ApiClient(server.configuration()) as api2,
    ):
        imds.set(SPOT, {"action": "terminate", "time": "2026-01-01T00:02:00Z"})
        agent = Agent(ImdsClient(session, imds.url), ApiNodeReporter(api2, NODE), clock=lambda: 1767225600.0)
        assert await agent.poll_once() is not None
    ctx.cache.apply(await anext(events), clock.now())
    (from_agent,) = source.scan()
    assert isinstance(from_agent, InterruptionMessage)
    assert (from_agent.kind, from_agent.source, from_agent.instance_id) == (
        InterruptionKind.SPOT_INTERRUPTION,
        "agent",
        "i-0123456789abcdef0",
    )
    assert from_agent.deadline == 1767225600.0 + 120

    node = server.get("nodes", NODE)
    assert node is not None
    node["spec"]["taints"] = [{"key": "aws-node-termination-handler/spot-itn", "effect": "NoSchedule"}]
    server.update(node)
    ctx.cache.apply(await anext(events), clock.now())
    (from_taint,) = source.scan()
    assert (from_taint.source, from_taint.message_id) == (  # type: ignore[union-attr]
        "taint",
        f"taint/{NODE}/aws-node-termination-handler/spot-itn",
    )
    assert source.scan() == []  # each signal once
    await events.aclose()  # type: ignore[attr-defined]
