"""`hpscaler run` on the live cluster's instance groups, over HTTP (moto and the fake API server):
no instance-groups file, groups added with UpdateCluster taken up while running, and a cluster whose
prerequisites are not met refused before anything is done."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_harness import CLUSTER, Admin, add_group
from e2e_harness import (
    SPOT_GROUP,
    WEB,
    Cloud,
    batch_adds,
    eventually,
    running,
    scale_up,
    web_pod,
    write_config,
)

from hpscaler.config import load_config
from hpscaler.daemon.cluster_sync import PrerequisitesNotMet, request_cluster_refresh
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


async def test_a_group_added_with_update_cluster_is_read_without_a_restart(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    config = await write_config(tmp_path / "config", admin, cloud, kube)
    subnet = (await admin.sagemaker.describe_cluster(ClusterName=CLUSTER))["VpcConfig"]["Subnets"][0]
    async with running(config) as service:
        await eventually(service.ready.is_set, what="the service to be ready")
        daemon = service.daemon
        assert daemon is not None and "late-spot" not in daemon.ctx.groups
        await add_group(admin, "late-spot", subnet)
        request_cluster_refresh(daemon.ctx, "test: cluster state change")  # the hook for EventBridge
        await eventually(lambda: "late-spot" in daemon.ctx.groups, what="the new group to be read")
        assert daemon.ctx.groups["late-spot"].zones == ("us-west-2a",)


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
