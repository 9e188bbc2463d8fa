"""The prerequisites a cluster must meet before hpscaler acts, and what check-config and plan say."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpscaler.cli import main
from hpscaler.model import Disruption, NodeClass, NodePool
from hpscaler.planning import group_additions
from hpscaler.prerequisites import STARTUP_TAINT, check_cluster, errors, managed_groups
from hpscaler.scheduling.types import Plan, PlannedNode

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "config" / "examples"
POOLS = [NodePool("default", "nc", disruption=Disruption(consolidate_after_seconds=60.0))]
CLASSES = [NodeClass("nc", ("spot-a",)), NodeClass("unused", ("other",))]


def document(**changes: Any) -> dict[str, Any]:
    group = {
        "InstanceGroupName": "spot-a",
        "InstanceType": "ml.c5.2xlarge",
        "TargetCount": 2,
        "ExecutionRole": "arn:aws:iam::123456789012:role/hp",
        "LifeCycleConfig": {"SourceS3Uri": "s3://b/", "OnCreate": "on_create.sh"},
        "CapacityRequirements": {"Spot": {}},
        "KubernetesConfig": {
            "CurrentLabels": {"team": "ml"},
            "CurrentTaints": [{"Key": "nvidia.com/gpu", "Value": "true", "Effect": "NoSchedule"}],
        },
    }
    other = {"InstanceGroupName": "other", "InstanceType": "ml.c5.xlarge"}  # no NodePool uses it
    doc: dict[str, Any] = {
        "ClusterName": "hp",
        "ClusterArn": "arn:aws:sagemaker:us-west-2:123456789012:cluster/abc",
        "NodeProvisioningMode": "Continuous",
        "NodeRecovery": "Automatic",
        "AutoScaling": {"Mode": "Disable"},
        "InstanceGroups": [group, other],
    }
    doc.update(changes)
    return doc


def test_a_ready_cluster_has_no_findings() -> None:
    assert managed_groups(POOLS, CLASSES) == ["spot-a"]
    assert check_cluster(document(), POOLS, CLASSES, mode="run") == []


def test_standard_provisioning_is_an_error_naming_the_command() -> None:
    (finding,) = check_cluster(document(NodeProvisioningMode="Standard"), POOLS, CLASSES, mode="run")
    assert finding.severity == "error" and "Standard" in finding.message
    assert finding.fix == "aws sagemaker update-cluster --cluster-name hp --node-provisioning-mode Continuous"


def test_managed_karpenter_is_refused_by_run_and_only_a_warning_offline() -> None:
    doc = document(AutoScaling={"Mode": "Enable", "AutoScalerType": "Karpenter", "Status": "InService"})
    (run,) = check_cluster(doc, POOLS, CLASSES, mode="run")
    assert run.severity == "error" and "two autoscalers" in run.message
    assert shlex.split(run.fix) == [
        "aws",
        "sagemaker",
        "update-cluster",
        "--cluster-name",
        "hp",
        "--auto-scaling",
        '{"Mode": "Disable"}',
    ]
    (offline,) = check_cluster(doc, POOLS, CLASSES, mode="offline")
    assert offline.severity == "warning"


def test_node_recovery_other_than_automatic_warns() -> None:
    (finding,) = check_cluster(document(NodeRecovery="None"), POOLS, CLASSES, mode="run")
    assert finding.severity == "warning" and finding.fix.endswith("--node-recovery Automatic")


def test_a_managed_group_carrying_the_unregistered_taint_gets_the_update_cluster_that_removes_it() -> None:
    # HyperPod reconciles group taints onto every node, so hpscaler could never take this one off.
    doc = document()
    doc["InstanceGroups"][0]["KubernetesConfig"]["CurrentTaints"] = [
        {"Key": "nvidia.com/gpu", "Value": "true", "Effect": "NoSchedule"},
        {"Key": STARTUP_TAINT.key, "Effect": "NoExecute"},
    ]
    (finding,) = errors(check_cluster(doc, POOLS, CLASSES, mode="run"))
    assert finding.subject == "instance group spot-a"
    argv = shlex.split(finding.fix)
    assert argv[:5] == ["aws", "sagemaker", "update-cluster", "--cluster-name", "hp"]
    assert argv[5] == "--instance-groups"
    (spec,) = json.loads(argv[6])
    # The group's own specification is kept (UpdateCluster replaces it whole), its taints and labels too.
    assert spec["InstanceType"] == "ml.c5.2xlarge" and spec["InstanceCount"] == 2
    assert spec["CapacityRequirements"] == {"Spot": {}}
    assert spec["KubernetesConfig"] == {
        "Labels": {"team": "ml"},
        "Taints": [{"Key": "nvidia.com/gpu", "Value": "true", "Effect": "NoSchedule"}],
    }
    # A group no NodePool launches into is none of hpscaler's business.
    doc["InstanceGroups"][1]["KubernetesConfig"] = {
        "CurrentTaints": [{"Key": STARTUP_TAINT.key, "Effect": "NoExecute"}]
    }
    assert len(errors(check_cluster(doc, POOLS, CLASSES, mode="run"))) == 1


def _config_dir(tmp_path: Path, change: Any = None) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(SEED, directory)
    if change is not None:
        path = directory / "instance-groups.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return directory


def test_check_config_accepts_the_shipped_example() -> None:
    result = CliRunner().invoke(main, ["check-config", str(SEED)])
    assert result.exit_code == 0, result.output
    assert "error" not in result.output


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(AutoScaling={"Mode": "Enable", "AutoScalerType": "Karpenter"}), "--auto-scaling"),
        (lambda d: d.update(NodeProvisioningMode="Standard"), "--node-provisioning-mode Continuous"),
        (
            lambda d: d["InstanceGroups"][0].update(
                KubernetesConfig={"CurrentTaints": [{"Key": STARTUP_TAINT.key, "Effect": "NoExecute"}]}
            ),
            "--instance-groups",
        ),
    ],
)
def test_check_config_exits_2_with_the_fixing_command(tmp_path: Path, change: Any, expected: str) -> None:
    result = CliRunner().invoke(main, ["check-config", str(_config_dir(tmp_path, change))])
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_plan_only_warns_about_managed_autoscaling(tmp_path: Path) -> None:
    config = _config_dir(tmp_path, lambda d: d.update(AutoScaling={"Mode": "Enable"}))
    result = CliRunner().invoke(
        main, ["plan", "--config", str(config), "--pods", str(REPO / "config" / "workloads" / "inflate.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert "warning: cluster my-cluster: HyperPod's managed Karpenter" in result.output
    assert "New nodes (5" in result.output


def test_check_config_warns_about_consolidate_after_zero() -> None:
    result = CliRunner().invoke(main, ["check-config", str(SEED)])
    # The documentation's NodePool leaves consolidateAfter at Karpenter's default, 0s.
    assert "consolidateAfter: 0" in result.output and "up to 2m" in result.output


def test_additions_carry_the_zone_and_type_the_plan_chose() -> None:
    from hpscaler.model import CapacityType, InstanceGroup

    flexible = InstanceGroup(
        "flex", ("ml.c5.xlarge", "ml.c5.2xlarge"), CapacityType.SPOT, ("us-west-2a", "us-west-2b")
    )
    single = InstanceGroup("single", ("ml.c5.xlarge",), CapacityType.SPOT, ("us-west-2a",))

    def node(name: str, group: str, kind: str, zone: str) -> PlannedNode:
        return PlannedNode(name, "p", group, kind, zone, CapacityType.SPOT, {}, 0.1, [f"ns/{name}"])

    plan = Plan(
        new_nodes=[
            node("a", "flex", "ml.c5.2xlarge", "us-west-2b"),
            node("b", "flex", "ml.c5.2xlarge", "us-west-2b"),
            node("c", "flex", "ml.c5.xlarge", "us-west-2a"),
            node("d", "single", "ml.c5.xlarge", "us-west-2a"),
        ]
    )
    additions = {
        (a.group, a.zones, a.instance_types): a.count for a in group_additions(plan, [flexible, single], {})
    }
    assert additions == {
        ("flex", ("us-west-2a",), ("ml.c5.xlarge",)): 1,
        ("flex", ("us-west-2b",), ("ml.c5.2xlarge",)): 2,
        ("single", (), ()): 1,  # one zone, one type: HyperPod has no choice to make
    }


def test_simulate_only_warns_about_managed_autoscaling(tmp_path: Path) -> None:
    config = _config_dir(tmp_path, lambda d: d.update(AutoScaling={"Mode": "Enable"}))
    scenario = tmp_path / "quiet.yaml"
    scenario.write_text(
        "apiVersion: hpscaler.io/v1alpha1\nkind: Scenario\nmetadata: {name: quiet}\n"
        f"spec: {{config: {config}, duration: 10m}}\n"
    )
    result = CliRunner().invoke(main, ["simulate", str(scenario)])
    assert result.exit_code == 0, result.output
    assert "warning: cluster my-cluster: HyperPod's managed Karpenter" in result.output
