"""The live cluster over the wire (moto): DescribeCluster's prerequisites and groups, UpdateCluster
taking effect, BatchDeleteClusterNodes' identifiers and per-node failures, `export-cluster`."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import moto_ext
from aiobotocore.session import get_session
from aws_harness import CLUSTER, FAST, REGION, Admin, Recorder, add_group, make_world, reset_moto
from click.testing import CliRunner

from hpscaler.aws.sagemaker import SageMakerHyperPod
from hpscaler.aws.session import AwsClients
from hpscaler.cli import main
from hpscaler.cluster_cli import describe_for_export
from hpscaler.config import load_config
from hpscaler.config.settings import Settings
from hpscaler.model import NodeClass, NodePool
from hpscaler.prerequisites import STARTUP_TAINT, check_cluster, errors

GROUPS = [
    {"Name": "spot-a", "Zones": "a", "Capacity": "Spot"},
    {"Name": "od-b", "Zones": "b", "Capacity": "OnDemand"},
]
POOLS = [NodePool("default", "nc")]
CLASSES = [NodeClass("nc", ("spot-a", "od-b", "added-c"))]


def hyperpod(clients: AwsClients) -> SageMakerHyperPod:
    return SageMakerHyperPod(clients.sagemaker, clients.ec2, CLUSTER, retry=FAST)


async def test_a_continuous_cluster_meets_the_prerequisites(admin: Admin, clients: AwsClients) -> None:
    world = await make_world(admin, GROUPS)
    described = await hyperpod(clients).describe_cluster()

    document = described.document
    assert document["NodeProvisioningMode"] == "Continuous"
    assert document["NodeRecovery"] == "Automatic"
    assert not document["InstanceGroups"][0].get("KubernetesConfig", {}).get("CurrentTaints")
    assert {"SubnetId": world.subnets["us-west-2a"], "AvailabilityZone": "us-west-2a"}.items() <= next(
        s for s in document["Subnets"] if s["SubnetId"] == world.subnets["us-west-2a"]
    ).items()
    assert check_cluster(document, POOLS, CLASSES, mode="run") == []
    spot = next(g for g in described.groups if g.name == "spot-a")
    assert spot.taints == ()
    assert spot.subnet_zones == ((world.subnets["us-west-2a"], "us-west-2a", world.zone_ids["us-west-2a"]),)


async def test_managed_autoscaling_and_an_unregistered_group_taint_are_refused(
    admin: Admin, clients: AwsClients
) -> None:
    await make_world(
        admin,
        [
            *GROUPS[:1],
            {"Name": "od-b", "Zones": "b", "Taints": [{"Key": STARTUP_TAINT.key, "Effect": "NoExecute"}]},
        ],
    )
    await admin.sagemaker.update_cluster(
        ClusterName=CLUSTER, AutoScaling={"Mode": "Enable", "AutoScalerType": "Karpenter"}
    )

    document = (await hyperpod(clients).describe_cluster()).document

    assert document["AutoScaling"]["Mode"] == "Enable"
    found = {f.subject: f for f in errors(check_cluster(document, POOLS, CLASSES, mode="run"))}
    assert '--auto-scaling \'{"Mode": "Disable"}\'' in found[f"cluster {CLUSTER}"].fix
    fix = found["instance group od-b"].fix
    assert fix.startswith(f"aws sagemaker update-cluster --cluster-name {CLUSTER} --instance-groups ")
    spec = json.loads(fix.split("--instance-groups ", 1)[1].strip("'"))
    assert spec[0]["InstanceGroupName"] == "od-b"
    assert spec[0]["KubernetesConfig"]["Taints"] == []
    assert spec[0]["ExecutionRole"].startswith("arn:aws:iam::")  # kept from DescribeCluster
    # The command is one UpdateCluster accepts: applied, the group no longer carries the taint.
    await admin.sagemaker.update_cluster(ClusterName=CLUSTER, InstanceGroups=spec)
    again = (await hyperpod(clients).describe_cluster()).document
    assert not [f for f in errors(check_cluster(again, POOLS, CLASSES, mode="run")) if "od-b" in f.subject]


async def test_a_group_added_with_update_cluster_is_described_with_its_zone(
    admin: Admin, clients: AwsClients
) -> None:
    world = await make_world(admin, GROUPS)
    hp = hyperpod(clients)
    assert [g.name for g in (await hp.describe_cluster()).groups] == ["spot-a", "od-b"]

    await add_group(admin, "added-c", world.subnets["us-west-2c"])

    added = next(g for g in (await hp.describe_cluster()).groups if g.name == "added-c")
    assert added.zones == ("us-west-2c",) and added.capacity_type.value == "spot"


async def test_deletes_send_logical_ids_and_instance_ids_apart_and_report_refusals(
    admin: Admin, clients: AwsClients, recorder: Recorder
) -> None:
    await make_world(admin, [{"Name": "spot-a", "Zones": "a", "Capacity": "Spot", "Count": 3}])
    hp = hyperpod(clients)
    first, second, third = await hp.list_nodes()
    moto_ext.refuse_delete(REGION, CLUSTER, second.logical_id)

    result = await hp.batch_delete_nodes([first.logical_id, second.logical_id], [third.instance_id])

    (call,) = recorder.operations("BatchDeleteClusterNodes")
    assert call.params["NodeLogicalIds"] == [first.logical_id, second.logical_id]
    assert call.params["NodeIds"] == [third.instance_id]
    assert set(result.deleted) == {first.logical_id, third.instance_id}
    assert [(f.logical_id, f.code) for f in result.failed] == [(second.logical_id, "InvalidNodeStatus")]
    # Retried, the refused node goes.
    assert (await hp.batch_delete_nodes([second.logical_id])).deleted == (second.logical_id,)


async def test_export_cluster_writes_a_file_check_config_accepts(
    admin: Admin, settings: Settings, tmp_path: Path
) -> None:
    await make_world(admin, GROUPS)
    document = await describe_for_export(settings)
    (tmp_path / "instance-groups.json").write_text(json.dumps(document, default=str))
    (tmp_path / "nodeclass.yaml").write_text(
        "apiVersion: karpenter.sagemaker.amazonaws.com/v1\nkind: HyperpodNodeClass\n"
        "metadata: {name: nc}\nspec: {instanceGroups: [spot-a, od-b]}\n"
    )

    config = load_config(tmp_path)

    assert config.cluster_name == CLUSTER
    assert {g.name: g.zones for g in config.instance_groups} == {
        "spot-a": ("us-west-2a",),
        "od-b": ("us-west-2b",),
    }
    assert config.cluster_documents[0]["NodeProvisioningMode"] == "Continuous"


def test_export_cluster_command(moto_server: str, tmp_path: Path) -> None:
    reset_moto(moto_server)

    async def arrange() -> None:
        kw = {"region_name": REGION, "endpoint_url": moto_server}
        session = get_session()
        async with (
            session.create_client("sagemaker", **kw) as sm,
            session.create_client("ec2", **kw) as ec2,
            session.create_client("sqs", **kw) as sqs,
        ):
            await make_world(Admin(sm, ec2, sqs), GROUPS)

    anyio.run(arrange)
    config = tmp_path / "hpscaler.yaml"
    config.write_text(
        "apiVersion: hpscaler.io/v1alpha1\nkind: HpscalerConfig\nmetadata: {name: hpscaler}\n"
        f"spec: {{clusterName: {CLUSTER}, region: {REGION}, aws: {{endpointUrl: '{moto_server}'}}}}\n"
    )
    output = tmp_path / "out" / "instance-groups.json"
    output.parent.mkdir()

    result = CliRunner().invoke(
        main,
        ["export-cluster", CLUSTER, "--region", REGION, "--config", str(config), "--output", str(output)],
    )

    assert result.exit_code == 0, result.output
    written = json.loads(output.read_text())
    assert [g["InstanceGroupName"] for g in written["InstanceGroups"]] == ["spot-a", "od-b"]
    assert {s["AvailabilityZone"] for s in written["Subnets"]} == {"us-west-2a", "us-west-2b"}
