"""The daemon on the live cluster's instance groups and on HyperPod's node states (on the fakes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import anyio
import pytest
from daemon_harness import SPOT_AZ1, Harness, make_world, running, wait_for, web_pod, with_pool

from hpscaler.backends.types import HyperPodEventKind, InterruptionKind, InterruptionMessage, NodeStatus
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.cluster_sync import CLUSTER_REFRESH_SECONDS, request_cluster_refresh
from hpscaler.daemon.context import Backends
from hpscaler.daemon.drain import DISRUPTED_TAINT
from hpscaler.daemon.events import ClusterRefreshed, NodeDeleteFailed, NodeDeleteRefused, NodeDisrupted
from hpscaler.daemon.state import instance_id_of
from hpscaler.provisioning.batching import NodesToAdd


@asynccontextmanager
async def live(config: LoadedConfig, catalogue: Catalogue) -> AsyncIterator[Harness]:
    """A world of the config's groups and a daemon that takes its groups from the live cluster."""
    world = make_world(config)
    async with anyio.create_task_group() as tg:
        await tg.start(world.run)
        backends = Backends(world.kubernetes, world.hyperpod, world.placement, world.interruptions)
        daemon = Daemon(config, backends, catalogue, world.clock, live_groups=True)
        await tg.start(daemon.run)
        yield Harness(world, daemon, tg, config, catalogue)
        daemon.stop()
        tg.cancel_scope.cancel()


@pytest.mark.looptime
@pytest.mark.parametrize("through_event", [False, True], ids=["requested", "hyperpod-state-change-event"])
async def test_a_group_added_with_update_cluster_is_planned_with_without_a_restart(
    seed_config: LoadedConfig, catalogue: Catalogue, through_event: bool
) -> None:
    everything = {g.name: g for g in seed_config.instance_groups}
    # The NodePool allows only ml.c5.2xlarge in us-west-2a: neither group that offers it exists yet.
    without = [g for g in seed_config.instance_groups if not g.name.endswith("2x-az1")]
    async with live(replace(seed_config, instance_groups=tuple(without)), catalogue) as h:
        h.world.kubernetes.add_pod(web_pod("w-0"))
        await anyio.sleep(30)
        assert h.world.hyperpod.calls["batch_add_nodes"] == 0

        h.world.hyperpod.update_cluster([everything[SPOT_AZ1]])  # UpdateCluster, outside hpscaler
        if through_event:  # HyperPod's "Cluster State Change" EventBridge event reaches the handler
            await h.daemon.interruptions.handle(
                InterruptionMessage(
                    "c",
                    InterruptionKind.HYPERPOD_EVENT,
                    "",
                    h.world.clock.now(),
                    state=HyperPodEventKind.CLUSTER_CHANGED,
                )
            )
        else:
            request_cluster_refresh(h.ctx, "test: cluster state change")
        await wait_for(lambda: SPOT_AZ1 in h.ctx.groups, 10)  # at once, not at the 5-minute refresh
        await wait_for(lambda: len(h.running_pods()) == 1, 300)

        assert SPOT_AZ1 in h.ctx.groups
        (request,) = h.world.hyperpod.add_requests
        assert request.entries == (NodesToAdd(SPOT_AZ1, 1),)


@pytest.mark.looptime
async def test_group_status_follows_the_cluster_every_five_minutes(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with live(seed_config, catalogue) as h:
        group = h.world.hyperpod.group(SPOT_AZ1)
        h.world.hyperpod.update_cluster([replace(group, status="Degraded")])
        await anyio.sleep(CLUSTER_REFRESH_SECONDS - 5)
        assert h.ctx.groups[SPOT_AZ1].status == "InService"
        await anyio.sleep(10)
        assert h.ctx.groups[SPOT_AZ1].status == "Degraded"
        assert h.ctx.stats.events.count(ClusterRefreshed) == 1
        # Not planned with while Degraded: the On-Demand fallback gets the pod.
        h.world.kubernetes.add_pod(web_pod("w-0"))
        await wait_for(lambda: len(h.running_pods()) == 1, 300)
        assert h.group_of(h.running_pods()[0]) != SPOT_AZ1


@pytest.mark.looptime
async def test_a_reload_keeps_the_live_groups(seed_config: LoadedConfig, catalogue: Catalogue) -> None:
    async with live(seed_config, catalogue) as h:
        h.ctx.replace_config(replace(seed_config, instance_groups=()))  # a file without groups
        assert {g.name for g in h.ctx.config.instance_groups} == {g.name for g in seed_config.instance_groups}


def consolidating(config: LoadedConfig) -> LoadedConfig:
    """Empty nodes go 30 s after emptying, all at once if need be."""
    return with_pool(config, consolidate_after_seconds=30.0, budgets=("100%",))


async def _empty_node(h: Harness) -> str:
    await wait_for(lambda: sum(n.ready for n in h.world.kubernetes.nodes()) == 1, 300)
    await wait_for(lambda: not h.ctx.inflight, 60)
    (node,) = h.world.kubernetes.nodes()
    return node.name


def _logical_id(h: Harness, node_name: str) -> str:
    node = h.world.kubernetes.node(node_name)
    assert node is not None
    found = h.world.hyperpod.node_by_instance(instance_id_of(node))
    assert found is not None
    return found.logical_id


@pytest.mark.looptime
async def test_a_node_in_system_updating_is_never_consolidated(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(consolidating(seed_config), catalogue, initial={SPOT_AZ1: 1}) as h:
        name = await _empty_node(h)
        h.world.hyperpod.set_node_status(_logical_id(h, name), NodeStatus.SYSTEM_UPDATING)
        await anyio.sleep(600)
        assert h.world.hyperpod.delete_requests == []
        node = h.world.kubernetes.node(name)
        assert node is not None and not any(t.key == DISRUPTED_TAINT.key for t in node.taints)

        h.world.hyperpod.set_node_status(_logical_id(h, name), NodeStatus.RUNNING)  # patching done
        await wait_for(lambda: bool(h.world.hyperpod.delete_requests), 300)


@pytest.mark.looptime
async def test_a_refused_delete_is_retried_and_the_node_goes(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(consolidating(seed_config), catalogue, initial={SPOT_AZ1: 1}) as h:
        name = await _empty_node(h)
        logical_id = _logical_id(h, name)
        h.world.hyperpod.refuse_delete(logical_id, "InvalidNodeStatus", times=2)
        await wait_for(lambda: not h.world.hyperpod.nodes(), 600)

        assert h.world.hyperpod.delete_requests == [(logical_id,)] * 3
        assert h.ctx.stats.events.count(NodeDeleteRefused) == 2
        assert h.ctx.stats.events.count(NodeDisrupted, reason="Empty") == 1


@pytest.mark.looptime
async def test_a_delete_hyperpod_keeps_refusing_is_reported_and_leaves_no_taint(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(consolidating(seed_config), catalogue, initial={SPOT_AZ1: 1}) as h:
        name = await _empty_node(h)
        h.world.hyperpod.refuse_delete(_logical_id(h, name), "NodeIdInUse", times=4)
        await wait_for(lambda: h.ctx.stats.events.count(NodeDeleteFailed) == 1, 900)
        await wait_for(lambda: name not in h.ctx.disrupting, 10)

        node = h.world.kubernetes.node(name)
        assert node is not None and not any(t.key == DISRUPTED_TAINT.key for t in node.taints)
        assert h.world.hyperpod.nodes()  # still running: never drained and then forgotten tainted
        # The next consolidation round deletes it once HyperPod accepts.
        await wait_for(lambda: not h.world.hyperpod.nodes(), 900)


@pytest.mark.looptime
async def test_a_rebooting_node_is_not_deleted_at_the_launch_timeout(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, initial={SPOT_AZ1: 1}) as h:
        name = await _empty_node(h)
        h.world.kubernetes.add_pod(web_pod("w-0", node_name=name))
        h.world.kubernetes.set_node_ready(name, False)
        h.world.hyperpod.set_node_status(_logical_id(h, name), NodeStatus.PENDING)  # "rebooted"
        timeout = seed_config.settings.provisioning.launch_timeout_seconds
        await anyio.sleep(timeout + 120)

        assert h.world.hyperpod.delete_requests == []
        assert h.ctx.inflight == {}


@pytest.mark.looptime
async def test_deep_health_checks_stay_in_flight_across_a_restart(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        h.world.kubernetes.add_pod(web_pod("w-0"))
        await wait_for(lambda: bool(h.ctx.inflight), 60)
        (logical_id,) = h.ctx.inflight
        await anyio.sleep(5)
        h.world.hyperpod.set_node_status(logical_id, NodeStatus.DEEP_HEALTH_CHECK)
        h.daemon.stop()
        await h.daemon.stopped.wait()

        successor = h.new_daemon()
        await h.tg.start(successor.run)
        await anyio.sleep(3 * 3600)

        assert list(successor.ctx.inflight) == [logical_id]
        assert h.world.hyperpod.calls["batch_add_nodes"] == 1  # not asked for again
        assert h.world.hyperpod.delete_requests == []
        successor.stop()


@pytest.mark.looptime
async def test_a_multi_zone_group_is_asked_for_the_zone_the_plan_chose(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    spot = next(g for g in seed_config.instance_groups if g.name == SPOT_AZ1)
    multi = replace(
        spot, name="multi", zones=("us-west-2a", "us-west-2b"), zone_ids=("usw2-az2", "usw2-az1"), subnets=()
    )
    (node_class,) = seed_config.node_classes
    config = replace(
        seed_config, instance_groups=(multi,), node_classes=(replace(node_class, instance_groups=("multi",)),)
    )
    (pool,) = config.node_pools
    config = with_pool(config, requirements=tuple(r for r in pool.requirements if "zone" not in r.key))
    async with running(config, catalogue) as h:
        h.world.kubernetes.add_pod(
            web_pod("w-0", node_selector={"topology.kubernetes.io/zone": "us-west-2b"})
        )
        await wait_for(lambda: bool(h.ctx.inflight), 60)
        (record,) = h.ctx.inflight.values()
        assert record.zone == "us-west-2b"
        await wait_for(lambda: len(h.running_pods()) == 1, 300)

        (request,) = h.world.hyperpod.add_requests
        # Not every zone of the group: the one the plan chose.
        assert request.entries == (NodesToAdd("multi", 1, zones=("us-west-2b",)),)
        (node,) = h.world.kubernetes.nodes()
        assert node.zone == "us-west-2b"
