"""Signals over the wire: ListClusterEvents polled from moto (EventLevel Info|Warn|Error, as
ClusterEventSummary defines it) relayed into the log at the matching level, and a Spot notice for a
group hpscaler does not manage left to HyperPod, which replaces that capacity itself.
"""

from __future__ import annotations

from pathlib import Path

import moto_ext
import structlog
from aws_harness import CLUSTER, REGION, Admin
from e2e_harness import (
    DEFAULT_GROUPS,
    INTERRUPTED_TAINT,
    Setup,
    batch_adds,
    build_cloud,
    eventually,
    joined_before,
    running,
    spot_warning,
    write_config,
)

from hpscaler.daemon.events import HyperPodEventSeen, InterruptionOutcome
from hpscaler.testing import FakeApiServer

STATIC = "static-spot"  # a Spot group in no HyperpodNodeClass: HyperPod keeps its count itself


async def test_warn_cluster_events_are_logged_at_warning_and_info_ones_at_info(
    tmp_path: Path, admin: Admin, endpoint: str, kube: FakeApiServer
) -> None:
    cloud = await build_cloud(admin, endpoint)
    setup = Setup(settings={"interruption": {"clusterEventsSeconds": 1}})
    config = await write_config(tmp_path / "config", admin, cloud, kube, setup)
    cluster = moto_ext.sagemaker_cluster(REGION, CLUSTER)

    with structlog.testing.capture_logs() as logs:
        async with running(config) as service:
            daemon = await eventually(lambda: service.daemon, what="the daemon")
            await eventually(lambda: daemon.ctx.cache.synced, what="the watch")
            moto_ext.add_event(
                cluster,
                "Instance i-0123456789abcdef0 is rebooting after a failed health check",
                group=DEFAULT_GROUPS[0]["Name"],
                instance_id="i-0123456789abcdef0",
                level="Warn",
            )
            moto_ext.add_event(
                cluster, "Instance i-0123456789abcdef1 is running", instance_id="i-1", level="Info"
            )
            events = daemon.ctx.stats.events
            await eventually(
                lambda: all(events.count(HyperPodEventSeen, level=lv) for lv in ("Warn", "Info")),
                what="both events read",
            )

    relayed = {e["level"]: e for e in logs if e["event"] == "hyperpod_event"}
    assert relayed["Warn"]["log_level"] == "warning"
    assert relayed["Warn"]["description"].startswith("Instance i-0123456789abcdef0 is rebooting")
    assert relayed["Info"]["log_level"] == "info"
    listed = [r for r in moto_ext.requests("ListClusterEvents") if r.from_hpscaler]
    assert listed and all(r.params["ClusterName"] == CLUSTER for r in listed)


async def test_a_spot_notice_in_a_group_hpscaler_does_not_manage_is_left_to_hyperpod(
    tmp_path: Path, admin: Admin, endpoint: str, kube: FakeApiServer
) -> None:
    cloud = await build_cloud(
        admin, endpoint, [*DEFAULT_GROUPS, {"Name": STATIC, "Zones": "a", "Capacity": "Spot"}]
    )
    static, name = await joined_before(admin, kube, STATIC)
    config = await write_config(tmp_path / "config", admin, cloud, kube)

    async with running(config) as service:
        daemon = await eventually(lambda: service.daemon, what="the daemon")
        await eventually(lambda: name in daemon.ctx.cache.nodes, what="the daemon to see the node")
        await admin.sqs.send_message(QueueUrl=cloud.queue_url, MessageBody=spot_warning(static.instance_id))
        await eventually(lambda: moto_ext.requests("DeleteMessage"), what="the notice acknowledged")

        events = daemon.ctx.stats.events
        assert events.count(InterruptionOutcome, outcome="unmanaged-group") == 1
        assert events.count(InterruptionOutcome, outcome="handled") == 0
    assert [r for r in batch_adds() if r.from_hpscaler] == []  # no second replacement from hpscaler
    taints = {t["key"] for t in kube.get("nodes", name)["spec"].get("taints") or []}
    assert INTERRUPTED_TAINT not in taints
