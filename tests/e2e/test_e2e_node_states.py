"""HyperPod's node states over the wire: ListClusterNodes' InstanceStatus from moto, as the
continuous-provisioning page defines them, read by `hpscaler run` through the real backends.

- Failure: HyperPod retries by itself; hpscaler cancels only for a capacity error, or after the
  launch timeout.
- Pending after the node joined: it is rebooting, not failing.
- DeepHealthCheckInProgress can last hours: in flight across a restart.
- ShuttingDown then Failure: never adopted again.

The daemon's clock is moved forward by the test (`ShiftedClock`) so timeouts pass without sleeping;
each provisioning round is run by the test (`reconcile`) rather than waited for.
"""

from __future__ import annotations

from pathlib import Path

import moto_ext
from aws_harness import CLUSTER, REGION, Admin
from e2e_harness import (
    CAPACITY,
    NAMESPACE,
    ON_DEMAND_GROUP,
    SPOT_GROUP,
    WEB,
    Cloud,
    ShiftedClock,
    batch_adds,
    check_batch_add,
    deletes,
    eventually,
    round_of,
    running,
    scale_up,
    set_status,
    web_pod,
    write_config,
)

from hpscaler.daemon.app import Daemon
from hpscaler.service.run import Service
from hpscaler.testing import FakeApiServer

LAUNCH_TIMEOUT = 600.0  # the default launchTimeoutSeconds


def new_tokens() -> list[moto_ext.AwsRequest]:
    """BatchAddClusterNodes requests under another ClientToken than the first one's."""
    first = batch_adds()[0].params["ClientToken"]
    return [r for r in batch_adds() if r.params["ClientToken"] != first]


async def launching(kube: FakeApiServer, service: Service, count: int = 4) -> tuple[Daemon, list[str]]:
    """`count` pending web pods made one BatchAddClusterNodes; the daemon and the logical ids."""
    for name in WEB[:count]:
        kube.create(web_pod(name))
    (add,) = await eventually(lambda: batch_adds()[:1], what="BatchAddClusterNodes")
    assert check_batch_add(add) == {SPOT_GROUP: count // 2}
    daemon = await eventually(lambda: service.daemon, what="the daemon")
    logical_ids = sorted(n.logical_id for n in moto_ext.cluster_nodes(REGION, CLUSTER))
    await eventually(lambda: sorted(daemon.ctx.inflight) == logical_ids, what="the launches in flight")
    return daemon, logical_ids


async def test_a_capacity_failure_is_cancelled_at_once_and_falls_back_to_on_demand(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    config = await write_config(tmp_path / "config", admin, cloud, kube)
    async with running(config) as service:
        daemon, launched = await launching(kube, service)
        set_status(launched, "Failure", CAPACITY)
        await round_of(daemon)

        (cancel,) = await eventually(lambda: deletes()[:1], what="the cancelling BatchDeleteClusterNodes")
        assert sorted(cancel.params["NodeLogicalIds"]) == launched and "NodeIds" not in cancel.params
        await eventually(lambda: len(batch_adds()) == 2, what="the On-Demand fallback")
        assert check_batch_add(batch_adds()[1]) == {ON_DEMAND_GROUP: 2}
        assert not set(launched) & set(daemon.ctx.inflight)


async def test_another_failure_is_left_to_hyperpod_until_the_launch_timeout(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    clock = ShiftedClock()
    config = await write_config(tmp_path / "config", admin, cloud, kube)
    async with running(config) as service:
        daemon, launched = await launching(kube, service)
        daemon.ctx.clock = clock
        set_status(launched, "Failure", "Lifecycle script on_create.sh exited with code 1")
        await round_of(daemon)
        assert deletes() == [] and sorted(daemon.ctx.inflight) == launched  # HyperPod retries it

        clock.advance(LAUNCH_TIMEOUT + 1)
        await round_of(daemon)
        (cancel,) = await eventually(lambda: deletes()[:1], what="the cancel at the launch timeout")
        assert sorted(cancel.params["NodeLogicalIds"]) == launched
        # Not a capacity problem: the Spot offering stays usable, and the same pods' decision is
        # made again under a new token (the old one would replay the cancelled nodes as NotFound).
        again = await eventually(lambda: new_tokens()[:1], what="the new request")
        assert check_batch_add(again[0]) == {SPOT_GROUP: 2}
        fresh = {n.logical_id for n in moto_ext.cluster_nodes(REGION, CLUSTER)}
        await eventually(lambda: set(daemon.ctx.inflight) == fresh, what="the new launches in flight")
        assert not fresh & set(launched)


async def test_a_pending_node_that_had_joined_is_rebooting_and_never_deleted(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    clock = ShiftedClock()
    for name in WEB:
        kube.create(web_pod(name))
    config = await write_config(tmp_path / "config", admin, cloud, kube)
    async with running(config) as service:
        placement = await scale_up(kube, service)
        daemon = service.daemon
        assert daemon is not None
        daemon.ctx.clock = clock
        rebooting = next(iter(placement))
        node = next(n for n in moto_ext.cluster_nodes(REGION, CLUSTER) if rebooting.endswith(n.instance_id))
        set_status([node.logical_id], "Pending")  # "being provisioned or rebooted"
        kube.patch("nodes", rebooting, {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        await eventually(lambda: not daemon.ctx.cache.nodes[rebooting].ready, what="the node NotReady")

        clock.advance(3 * LAUNCH_TIMEOUT)
        await round_of(daemon)
        await round_of(daemon)

        assert deletes() == []
        assert daemon.ctx.inflight == {}  # neither adopted as a launch nor timed out
        assert len(batch_adds()) == 1  # its pods still have their node: nothing asked for
        assert kube.get("pods", placement[rebooting][0], NAMESPACE)["spec"]["nodeName"] == rebooting


async def test_deep_health_checks_stay_in_flight_for_hours_and_across_a_restart(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    clock = ShiftedClock()
    config = await write_config(tmp_path / "config", admin, cloud, kube)
    async with running(config) as service:
        daemon, launched = await launching(kube, service)
        daemon.ctx.clock = clock
        set_status(launched, "DeepHealthCheckInProgress")
        await round_of(daemon)
        assert sorted(daemon.ctx.inflight) == launched

    # A new process: no records, but HyperPod's list shows the nodes still on their way.
    async with running(config) as successor:
        daemon = await eventually(lambda: successor.daemon, what="the successor's daemon")
        await eventually(lambda: sorted(daemon.ctx.inflight) == launched, what="the launches adopted")
        daemon.ctx.clock = clock
        for _ in range(3):  # hours of deep health checks: never timed out
            clock.advance(3600)
            await round_of(daemon)
            assert sorted(daemon.ctx.inflight) == launched
        assert len(batch_adds()) == 1  # the pending pods wait for them: nothing asked for again
        assert deletes() == []


async def test_a_node_seen_shutting_down_then_failing_is_never_adopted_again(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    config = await write_config(tmp_path / "config", admin, cloud, kube)
    async with running(config) as service:
        daemon, (lost,) = await launching(kube, service, count=2)
        # Removed outside hpscaler; its termination then fails ("will either transition to Failure
        # status if termination encounters issues, or will be successfully removed").
        set_status([lost], "ShuttingDown")
        await round_of(daemon)
        assert lost not in daemon.ctx.inflight
        set_status([lost], "Failure", "Failed to terminate the instance")
        await round_of(daemon)
        await round_of(daemon)

        assert lost not in daemon.ctx.inflight
        # The pods got a node of their own, asked for under a new token: replaying the first would
        # answer with the lost node again.
        await eventually(lambda: new_tokens()[:1], what="the replacement request")
        (fresh,) = {n.logical_id for n in moto_ext.cluster_nodes(REGION, CLUSTER)} - {lost}
        await eventually(lambda: list(daemon.ctx.inflight) == [fresh], what="the new launch in flight")
