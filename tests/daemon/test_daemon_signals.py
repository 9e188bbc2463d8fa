"""Interruption signals from every source, merged per instance, on the fakes in virtual time."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest
import structlog
from daemon_harness import EPOCH, SPOT_AZ1, Harness, running, wait_for, web_pod

from hpscaler.agent.notice import NOTICE_ANNOTATION
from hpscaler.backends.types import (
    ClusterEvent,
    HyperPodEventKind,
    InterruptionKind,
    InterruptionMessage,
    JunkMessage,
)
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.drain import DEADLINE_ANNOTATION, INTERRUPTED_TAINT, rfc3339
from hpscaler.daemon.events import InterruptionOutcome, InterruptionReceived
from hpscaler.daemon.signal_sources import ClusterEventSource
from hpscaler.daemon.state import instance_id_of
from hpscaler.model import Node


async def settled(h: Harness, pods: int, cpu: int = 2000) -> None:
    for i in range(pods):
        h.world.kubernetes.add_pod(web_pod(f"w-{i}", cpu=cpu))
    await wait_for(lambda: len(h.running_pods()) == pods, 300)
    await wait_for(lambda: not h.ctx.inflight, 20)


def spot_nodes(h: Harness) -> list[Node]:
    return sorted(
        (n for n in h.world.kubernetes.nodes() if n.instance_group == SPOT_AZ1), key=lambda n: n.name
    )


def adds(h: Harness) -> int:
    return h.world.hyperpod.calls["batch_add_nodes"]


@pytest.mark.looptime
async def test_one_interruption_seen_by_three_sources_drains_once_and_replaces_once(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, notice_via=("sqs", "agent", "taint")) as h:
        await settled(h, 6)
        node = max(spot_nodes(h), key=lambda n: len(n.pods))
        victims = {p.key for p in node.pods}
        calls = adds(h)
        h.world.hyperpod.interrupt(instance_id_of(node))

        await anyio.sleep(2)
        seen = h.world.kubernetes.node(node.name)
        assert seen is not None
        assert INTERRUPTED_TAINT in seen.taints and h.world.interruption_taint in seen.taints
        assert NOTICE_ANNOTATION in seen.annotations  # the agent's report is there too
        events = h.ctx.stats.events
        assert {
            events.count(InterruptionReceived, source="sqs"),
            events.count(InterruptionReceived, source="agent"),
        } == {1}
        assert events.count(InterruptionReceived, source="taint") == 1
        assert adds(h) == calls + 1
        # Each victim was evicted exactly once, by the one drain.
        assert sum(1 for k in h.world.kubernetes.evicted_at if k in victims) == len(victims)

        await wait_for(lambda: h.world.kubernetes.node(node.name) is None, 130)
        await anyio.sleep(90)  # the termination's state change and HyperPod event arrive too
        assert events.count(InterruptionReceived, source="hyperpod-events") >= 1
        assert events.count(InterruptionOutcome, outcome="handled") == 1
        assert events.count(InterruptionOutcome, outcome="replacement-requested") == 1
        assert events.count(InterruptionOutcome, outcome="duplicate") >= 3
        await wait_for(lambda: len(h.running_pods()) == 6, 300)
        assert adds(h) == calls + 1  # replaced once, whichever source spoke first
        assert not [k for k in h.world.kubernetes.kills if k.key in victims]


@pytest.mark.parametrize("via", ["agent", "taint"])
@pytest.mark.looptime
async def test_a_notice_on_the_node_alone_is_enough(
    seed_config: LoadedConfig, catalogue: Catalogue, via: str
) -> None:
    async with running(seed_config, catalogue, notice_via=(via,), notice_delay=5.0) as h:
        await settled(h, 4)
        node = spot_nodes(h)[0]
        calls = adds(h)
        h.world.hyperpod.interrupt(instance_id_of(node))
        await anyio.sleep(4)
        assert node.name not in h.ctx.disrupting  # the notice is 5 s on its way
        await anyio.sleep(3)
        seen = h.world.kubernetes.node(node.name)
        assert seen is not None and INTERRUPTED_TAINT in seen.taints
        assert h.ctx.stats.events.count(InterruptionReceived, source=via) == 1
        assert h.ctx.stats.events.count(InterruptionReceived, source="sqs") == 0
        assert adds(h) == calls + 1
        assert h.ctx.disrupting[node.name] == "spot-interruption"


@pytest.mark.looptime
async def test_a_loss_seen_only_in_hyperpod_events_is_replaced_and_counted(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    # No notice anywhere and no EC2 events at all: only HyperPod's own cluster events tell.
    async with running(seed_config, catalogue, notice_via=()) as h:
        h.world.hyperpod.state_change_messages = False
        await settled(h, 4)
        node = spot_nodes(h)[0]
        h.world.hyperpod.interrupt(instance_id_of(node), notice=False)
        assert h.world.kubernetes.node(node.name) is None  # gone before anyone could say
        await anyio.sleep(65)  # one ListClusterEvents poll
        events = h.ctx.stats.events
        assert events.count(InterruptionReceived, source="hyperpod-events") == 1
        assert events.count(InterruptionOutcome, outcome="handled") == 1
        await wait_for(lambda: len(h.running_pods()) == 4, 300)


@pytest.mark.looptime
async def test_a_pending_state_change_does_not_block_a_later_spot_notice(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        await settled(h, 2)
        node = spot_nodes(h)[0]
        instance = instance_id_of(node)
        now = h.world.clock.now()
        for state in ("pending", "running"):
            await h.daemon.interruptions.handle(
                InterruptionMessage(f"sc-{state}", InterruptionKind.STATE_CHANGE, instance, now, state=state)
            )
        assert h.ctx.stats.events.count(InterruptionOutcome, outcome="no-action") == 2
        assert node.name not in h.ctx.disrupting
        h.world.hyperpod.interrupt(instance)
        await anyio.sleep(2)
        assert h.ctx.disrupting.get(node.name) == "spot-interruption"
        assert h.ctx.stats.events.count(InterruptionOutcome, outcome="duplicate") == 0


@pytest.mark.looptime
async def test_the_earliest_deadline_wins(seed_config: LoadedConfig, catalogue: Catalogue) -> None:
    async with running(seed_config, catalogue, notice_via=()) as h:
        h.world.kubernetes.add_pod(
            web_pod(
                "ckpt", cpu=2000, annotations={"hpscaler.io/checkpoint": "true"}, termination_grace_seconds=30
            )
        )
        await wait_for(lambda: len(h.running_pods()) == 1, 300)
        pod = h.running_pods()[0]
        node = h.world.kubernetes.node(pod.node_name)
        assert node is not None
        instance = instance_id_of(node)
        now = h.world.clock.now()
        late = InterruptionMessage("a", InterruptionKind.SCHEDULED_CHANGE, instance, now, deadline=now + 600)
        early = InterruptionMessage(
            "b", InterruptionKind.SPOT_INTERRUPTION, instance, now, deadline=now + 120, source="agent"
        )
        h.tg.start_soon(h.daemon.interruptions.handle, late)
        await anyio.sleep(5)
        annotated = h.world.kubernetes.pod(pod.key)
        assert annotated is not None and annotated.annotations[DEADLINE_ANNOTATION] == rfc3339(now + 600)
        await h.daemon.interruptions.handle(early)
        await anyio.sleep(1)
        annotated = h.world.kubernetes.pod(pod.key)
        assert annotated is not None and annotated.annotations[DEADLINE_ANNOTATION] == rfc3339(now + 120)
        assert h.ctx.stats.events.count(InterruptionOutcome, outcome="deadline-advanced") == 1
        # Evicted in time for the earlier deadline: grace 30 s + safety margin 10 s before it.
        await wait_for(lambda: pod.key in h.world.kubernetes.evicted_at, 120)
        assert h.world.kubernetes.evicted_at[pod.key] <= now + 120 - 30 - 10 + 1


@pytest.mark.looptime
async def test_simultaneous_notices_for_one_offering_are_one_capacity_signal(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        await settled(h, 12)
        nodes = spot_nodes(h)
        assert len(nodes) >= 4
        for node in nodes[:4]:
            h.world.hyperpod.interrupt(instance_id_of(node))
        await anyio.sleep(2)
        backoff = h.ctx.unavailable.entries[(SPOT_AZ1, nodes[0].zone)]
        assert backoff.failures == 1
        assert backoff.until - backoff.last_failure == 180.0  # not 180 s x 2^3


@pytest.mark.looptime
async def test_an_interruption_in_an_unmanaged_group_is_left_to_hyperpod(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    spot = next(g for g in seed_config.instance_groups if g.name == SPOT_AZ1)
    static = replace(spot, name="static-spot")  # in no NodeClass: HyperPod keeps its count itself
    config = replace(seed_config, instance_groups=(*seed_config.instance_groups, static))
    async with running(config, catalogue, initial={"static-spot": 1}) as h:
        await wait_for(
            lambda: any(n.instance_group == "static-spot" for n in h.world.kubernetes.nodes()), 300
        )
        await anyio.sleep(5)
        node = next(n for n in h.world.kubernetes.nodes() if n.instance_group == "static-spot")
        calls = adds(h)
        h.world.hyperpod.interrupt(instance_id_of(node))
        await anyio.sleep(200)  # notice, termination, its state change and HyperPod event
        events = h.ctx.stats.events
        assert events.count(InterruptionOutcome, outcome="unmanaged-group") >= 2
        assert events.count(InterruptionOutcome, outcome="handled") == 0
        assert adds(h) == calls  # no second replacement from hpscaler
        seen = h.world.kubernetes.node(node.name)
        assert seen is None or INTERRUPTED_TAINT not in seen.taints


@pytest.mark.looptime
async def test_a_hyperpod_capacity_failure_backs_the_offering_off(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        await anyio.sleep(1)
        event = ClusterEventSource.to_message(
            ClusterEvent(
                "e-1",
                h.world.clock.now(),
                SPOT_AZ1,
                level="Error",
                description="Instance creation in Cluster c and InstanceGroup g failed",
                resource_type="Instance",
                failure_message="We currently do not have sufficient capacity to launch new ml.c5.2xlarge",
            ),
            HyperPodEventKind.CAPACITY_FAILURE,
        )
        await h.daemon.interruptions.handle(event)
        await h.daemon.interruptions.handle(replace(event, message_id="e-2"))
        zone = next(g for g in seed_config.instance_groups if g.name == SPOT_AZ1).zones[0]
        assert h.ctx.unavailable.is_unavailable(SPOT_AZ1, zone, h.world.clock.now())
        assert h.ctx.unavailable.entries[(SPOT_AZ1, zone)].failures == 1
        assert h.ctx.stats.events.count(InterruptionOutcome, outcome="capacity-failure") == 1


@pytest.mark.looptime
async def test_junk_is_logged_once_and_cluster_changes_call_the_hook(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        changed: list[float] = []
        h.daemon.interruptions.on_cluster_changed = lambda: changed.append(h.world.clock.now())
        await anyio.sleep(1)
        with structlog.testing.capture_logs() as logs:
            h.world.interruptions.put(JunkMessage("", "unknown detail-type 'EC2 Fleet Error'"))
            await h.daemon.interruptions.handle(
                InterruptionMessage(
                    "c", InterruptionKind.HYPERPOD_EVENT, "", EPOCH, state=HyperPodEventKind.CLUSTER_CHANGED
                )
            )
            await wait_for(lambda: len(h.world.interruptions) == 0, 30)
        junk = [e for e in logs if "junk" in e["event"] or "unreadable" in e["event"]]
        assert len(junk) == 1 and junk[0]["log_level"] == "warning"
        assert len(changed) == 1


@pytest.mark.looptime
async def test_warn_cluster_events_are_logged_at_warning(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, notice_via=()) as h:
        await settled(h, 2)
        with structlog.testing.capture_logs() as logs:
            h.world.hyperpod.interrupt(instance_id_of(spot_nodes(h)[0]), notice=False)
            await anyio.sleep(65)
        relayed = [e for e in logs if e["event"] == "hyperpod_event" and e["level"] == "Warn"]
        assert relayed and all(e["log_level"] == "warning" for e in relayed)
