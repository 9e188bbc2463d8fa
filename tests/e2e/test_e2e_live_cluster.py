"""`hpscaler run` on the live cluster's instance groups, over HTTP (moto and the fake API server):
no instance-groups file, groups added with UpdateCluster taken up while running, and a cluster whose
prerequisites are not met refused before anything is done."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import moto_ext
import pytest
import structlog
import yaml
from aws_harness import CLUSTER, REGION, Admin, add_group
from click.testing import CliRunner, Result
from e2e_harness import (
    DEFAULT_GROUPS,
    ON_DEMAND_GROUP,
    SPOT_GROUP,
    WEB,
    Cloud,
    Setup,
    batch_adds,
    build_cloud,
    check_batch_add,
    cluster_state_change,
    eventually,
    running,
    scale_up,
    web_pod,
    write_config,
)

from hpscaler.cli import main
from hpscaler.config import load_config
from hpscaler.daemon import app, cluster_sync
from hpscaler.daemon.cluster_sync import PrerequisitesNotMet
from hpscaler.daemon.events import ClusterRefreshed
from hpscaler.service.run import Service, StartupError
from hpscaler.testing import FakeApiServer


async def test_run_needs_no_instance_groups_file(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    for name in WEB:
        kube.create(web_pod(name))
    config = await write_config(tmp_path / "config", admin, cloud, kube)
    (config / "cluster.json").unlink()  # the groups come from DescribeCluster alone

    async with running(config) as service:
        await eventually(service.ready.is_set, what="the service to be ready")
        assert {g.name for g in service.config.instance_groups} >= {SPOT_GROUP}
        await scale_up(kube, service)
    assert len(batch_adds()) == 1


async def test_a_group_added_with_update_cluster_takes_effect_without_a_restart(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    # The NodeClass names a group the cluster does not have yet: the pods wait for it.
    setup = Setup(groups=("late-spot",), cluster_file=False)
    config = await write_config(tmp_path / "config", admin, cloud, kube, setup)
    subnet = (await admin.sagemaker.describe_cluster(ClusterName=CLUSTER))["VpcConfig"]["Subnets"][0]
    for name in WEB:
        kube.create(web_pod(name))
    async with running(config) as service:
        await eventually(service.ready.is_set, what="the service to be ready")
        daemon = service.daemon
        assert daemon is not None and "late-spot" not in daemon.ctx.groups
        plan = await daemon.provisioner.reconcile("e2e")
        assert plan is not None and len(plan.unschedulable) == len(WEB) and batch_adds() == []

        await add_group(admin, "late-spot", subnet)  # UpdateCluster, outside hpscaler
        # HyperPod's cluster state change reaches the interruption queue: read at once, not in 5 min.
        await admin.sqs.send_message(QueueUrl=cloud.queue_url, MessageBody=cluster_state_change())
        (add,) = await eventually(lambda: batch_adds()[:1], what="BatchAddClusterNodes to the new group")
        assert check_batch_add(add) == {"late-spot": 2}
        group = daemon.ctx.groups["late-spot"]
        assert (group.zones, group.capacity_type.value) == (("us-west-2a",), "spot")
        assert daemon.ctx.stats.events.count(ClusterRefreshed) >= 1


async def test_run_refuses_a_cluster_with_managed_karpenter(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    config_path = await write_config(tmp_path / "config", admin, cloud, kube)
    await admin.sagemaker.update_cluster(
        ClusterName=CLUSTER, AutoScaling={"Mode": "Enable", "AutoScalerType": "Karpenter"}
    )
    config = load_config(config_path, require_instance_groups=False)
    service = Service(config_path, config, config.catalogue(), handle_signals=False)

    with pytest.raises(StartupError) as refused:  # `hpscaler run` exits 2 with its message
        await service.serve()

    assert "is not ready for hpscaler" in str(refused.value)
    cause = refused.value.__cause__
    assert isinstance(cause, PrerequisitesNotMet)
    (finding,) = cause.findings
    assert "update-cluster --cluster-name hp --auto-scaling" in finding.fix
    assert batch_adds() == [] and service.daemon is None


async def refuse(config_path: Path) -> PrerequisitesNotMet:
    """`hpscaler run` start-up against this cluster: refused (exit 2) before anything is done; why."""
    config = load_config(config_path, require_instance_groups=False)
    service = Service(config_path, config, config.catalogue(), handle_signals=False)
    with pytest.raises(StartupError) as refused:
        await service.serve()
    assert "is not ready for hpscaler" in str(refused.value)
    cause = refused.value.__cause__
    assert isinstance(cause, PrerequisitesNotMet)
    assert service.daemon is None
    assert not [
        r
        for r in moto_ext.requests()
        if r.from_hpscaler and r.operation != "DescribeCluster" and r.service == "sagemaker"
    ]
    return cause


async def without_continuous_provisioning(admin: Admin, endpoint: str) -> Any:
    cloud = await build_cloud(admin, endpoint)
    moto_ext.set_cluster_settings(REGION, CLUSTER, NodeProvisioningMode=None)  # created without it
    return cloud


async def with_the_unregistered_taint(admin: Admin, endpoint: str) -> Any:
    taint = {"Key": "hpscaler.io/unregistered", "Value": "true", "Effect": "NoExecute"}
    spot, on_demand = DEFAULT_GROUPS
    return await build_cloud(admin, endpoint, [{**spot, "Taints": [taint]}, on_demand])


@pytest.mark.parametrize(
    ("arrange", "subject", "fix"),
    [
        (
            without_continuous_provisioning,
            f"cluster {CLUSTER}",
            f"aws sagemaker update-cluster --cluster-name {CLUSTER} --node-provisioning-mode Continuous",
        ),
        (
            with_the_unregistered_taint,
            f"instance group {SPOT_GROUP}",
            f"update-cluster --cluster-name {CLUSTER}",
        ),
    ],
    ids=["standard-provisioning", "unregistered-group-taint"],
)
async def test_run_refuses_an_unready_cluster_naming_the_command_that_fixes_it(
    tmp_path: Path,
    admin: Admin,
    endpoint: str,
    kube: FakeApiServer,
    arrange: Callable[[Admin, str], Awaitable[Cloud]],
    subject: str,
    fix: str,
) -> None:
    cloud = await arrange(admin, endpoint)
    config = await write_config(tmp_path / "config", admin, cloud, kube, Setup(cluster_file=False))

    cause = await refuse(config)

    (finding,) = cause.findings
    assert finding.subject == subject
    assert fix in finding.fix
    assert batch_adds() == []


async def test_run_warns_about_node_recovery_and_consolidate_after_zero_and_starts(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    await admin.sagemaker.update_cluster(ClusterName=CLUSTER, NodeRecovery="None")
    for name in WEB:
        kube.create(web_pod(name))
    setup = Setup(disruption={"consolidateAfter": "0s"}, cluster_file=False)
    config = await write_config(tmp_path / "config", admin, cloud, kube, setup)

    with structlog.testing.capture_logs() as logs:
        async with running(config) as service:
            await eventually(lambda: batch_adds()[:1], what="BatchAddClusterNodes")  # it runs
            assert service.daemon is not None

    warnings = {e["subject"]: e for e in logs if e["event"] == "cluster_prerequisite"}
    assert set(warnings) == {f"cluster {CLUSTER}", "NodePool default"}
    assert all(e["log_level"] == "warning" for e in warnings.values())
    assert "NodeRecovery is None" in warnings[f"cluster {CLUSTER}"]["problem"]
    assert "--node-recovery Automatic" in warnings[f"cluster {CLUSTER}"]["fix"]
    assert "checkpoint" in warnings["NodePool default"]["fix"]


async def test_a_group_that_is_no_longer_in_service_is_not_launched_into_after_a_state_change(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    config = await write_config(tmp_path / "config", admin, cloud, kube, Setup(cluster_file=False))
    async with running(config) as service:
        await eventually(service.ready.is_set, what="the service to be ready")
        daemon = service.daemon
        assert daemon is not None and daemon.ctx.groups[SPOT_GROUP].status == "InService"
        spot = next(
            g
            for g in moto_ext.sagemaker_cluster(REGION, CLUSTER).instance_groups
            if g["InstanceGroupName"] == SPOT_GROUP
        )
        spot["Status"] = "Degraded"  # HyperPod's InstanceGroupStatus, as DescribeCluster reports it
        await admin.sqs.send_message(QueueUrl=cloud.queue_url, MessageBody=cluster_state_change())
        await eventually(lambda: daemon.ctx.groups[SPOT_GROUP].status == "Degraded", what="the status read")

        for name in WEB:
            kube.create(web_pod(name))
        (add,) = await eventually(lambda: batch_adds()[:1], what="BatchAddClusterNodes")
        assert check_batch_add(add) == {ON_DEMAND_GROUP: 2}  # straight to the group in service


async def test_node_class_status_lists_the_live_groups_types_subnets_and_capacity(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    config = await write_config(tmp_path / "config", admin, cloud, kube, Setup(cluster_file=False))
    # The same NodePool and HyperpodNodeClass, applied to the cluster as users do.
    for document in yaml.safe_load_all((config / "hpscaler.yaml").read_text()):
        if document["kind"] in ("NodePool", "HyperpodNodeClass"):
            kube.create(document)
    described = await admin.sagemaker.describe_cluster(ClusterName=CLUSTER)
    subnet = next(g for g in described["InstanceGroups"] if g["InstanceGroupName"] == SPOT_GROUP)[
        "OverrideVpcConfig"
    ]["Subnets"][0]

    async with running(config):
        status = await eventually(
            lambda: (kube.get("hyperpodnodeclasses", "c5") or {}).get("status", {}).get("instanceGroups"),
            what="the NodeClass status",
        )

    # As the HyperPod Spot page shows HyperPod's own controller writing it, from DescribeCluster and
    # DescribeSubnets answered by moto.
    assert status == [
        {
            "name": SPOT_GROUP,
            "instanceTypes": ["ml.c5.xlarge"],
            "subnets": [{"id": subnet, "zone": "us-west-2a", "zoneId": cloud.zone_id}],
            "capacities": {"Spot": {}},
        },
        {
            "name": ON_DEMAND_GROUP,
            "instanceTypes": ["ml.c5.xlarge"],
            "subnets": [{"id": subnet, "zone": "us-west-2a", "zoneId": cloud.zone_id}],
            "capacities": {"OnDemand": {}},
        },
    ]
    ready = {c["type"]: c["status"] for c in kube.get("hyperpodnodeclasses", "c5")["status"]["conditions"]}
    assert ready == {"InstanceGroupReady": "True", "SubnetsReady": "True", "Ready": "True"}


async def test_check_config_on_an_exported_cluster_refuses_what_run_would_refuse(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    await admin.sagemaker.update_cluster(
        ClusterName=CLUSTER, AutoScaling={"Mode": "Enable", "AutoScalerType": "Karpenter"}
    )
    config = await write_config(tmp_path / "config", admin, cloud, kube, Setup(cluster_file=False))

    def cli(*args: str) -> Result:
        return CliRunner().invoke(main, list(args))

    exported = await anyio.to_thread.run_sync(
        cli,
        "export-cluster",
        CLUSTER,
        "--config",
        str(config / "hpscaler.yaml"),
        "--output",
        str(config / "cluster.json"),
    )
    assert exported.exit_code == 0, exported.output
    checked = await anyio.to_thread.run_sync(cli, "check-config", str(config))

    assert checked.exit_code == 2, checked.output
    assert f"update-cluster --cluster-name {CLUSTER} --auto-scaling" in checked.output


async def test_the_groups_are_read_again_periodically_without_any_event(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every 5 minutes in production; every half second here, through the same loop.
    monkeypatch.setattr(app, "refresh_cluster", partial(cluster_sync.refresh_cluster, interval=0.5))
    config = await write_config(tmp_path / "config", admin, cloud, kube, Setup(cluster_file=False))
    subnet = (await admin.sagemaker.describe_cluster(ClusterName=CLUSTER))["VpcConfig"]["Subnets"][0]
    async with running(config) as service:
        daemon = await eventually(lambda: service.daemon, what="the daemon")
        await eventually(lambda: daemon.ctx.stats.events.count(ClusterRefreshed) >= 1, what="a refresh")
        await add_group(admin, "late-od", subnet, capacity="OnDemand")
        await eventually(lambda: "late-od" in daemon.ctx.groups, what="the new group read")
        assert daemon.ctx.groups["late-od"].capacity_type.value == "on-demand"
    described = [r for r in moto_ext.requests("DescribeCluster") if r.from_hpscaler]
    assert len(described) >= 3  # start-up, then the periodic reads
