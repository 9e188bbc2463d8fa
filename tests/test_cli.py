"""The command line: `plan` on the seed manifests, its JSON contract, and exit code 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters
from click.testing import CliRunner

from hpscaler.cli import main

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "config" / "examples"
INFLATE = REPO / "config" / "workloads" / "inflate.yaml"
SPOT_AZ1 = "auto-spot-c5-2x-az1"
ON_DEMAND_AZ1 = "auto-ondemand-c5-2x-az1"


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def plan_json(*extra: str, pods: Path = INFLATE) -> dict[str, Any]:
    result = run("plan", "--config", str(SEED), "--pods", str(pods), "--output", "json", *extra)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def all_pods(plan: dict[str, Any]) -> list[str]:
    return [
        *(p for n in plan["newNodes"] for p in n["pods"]),
        *(p for n in plan["existingNodes"] for p in n["pods"]),
        *(u["pod"] for u in plan["unschedulable"]),
    ]


def test_inflate_plans_spot_nodes_in_the_best_scored_zone_the_nodepool_allows() -> None:
    plan = plan_json()
    assert {n["instanceGroup"] for n in plan["newNodes"]} == {SPOT_AZ1}
    assert {(n["zone"], n["capacityType"], n["instanceType"]) for n in plan["newNodes"]} == {
        ("us-west-2a", "spot", "ml.c5.2xlarge")
    }
    assert sorted(all_pods(plan)) == sorted(f"default/inflate-{i}" for i in range(30))
    assert len(plan["newNodes"]) == 5  # 7 one-CPU pods fit a c5.2xlarge (7910m allocatable)
    labels = plan["newNodes"][0]["labels"]  # what the node will carry, one value per key
    assert (
        labels["topology.kubernetes.io/zone"] == "us-west-2a"
        and labels["karpenter.sh/capacity-type"] == "spot"
    )
    assert labels["node.kubernetes.io/instance-type"] == "ml.c5.2xlarge"
    assert plan["costPerHour"] == pytest.approx(sum(n["pricePerHour"] for n in plan["newNodes"]), abs=1e-4)


def test_falls_back_to_on_demand_when_the_spot_group_is_out_of_capacity() -> None:
    plan = plan_json("--out-of-capacity", SPOT_AZ1)
    assert {n["instanceGroup"] for n in plan["newNodes"]} == {ON_DEMAND_AZ1}
    assert {n["capacityType"] for n in plan["newNodes"]} == {"on-demand"}
    assert len(all_pods(plan)) == 30


def test_with_every_allowed_group_out_of_capacity_each_pod_is_unschedulable_with_the_reason() -> None:
    plan = plan_json("--out-of-capacity", SPOT_AZ1, "--out-of-capacity", ON_DEMAND_AZ1)
    assert plan["newNodes"] == [] and plan["batchAddClusterNodes"] == []
    assert len(plan["unschedulable"]) == 30
    assert all("out of capacity" in u["reason"] for u in plan["unschedulable"])


def test_batch_add_bodies_are_valid_requests_for_the_sagemaker_api() -> None:
    plan = plan_json()
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("BatchAddClusterNodes").input_shape
    (body,) = plan["batchAddClusterNodes"]
    validate_parameters(body, shape)  # raises ParamValidationError on any violation
    assert body["ClusterName"] == "my-cluster"
    assert body["NodesToAdd"] == [{"InstanceGroupName": SPOT_AZ1, "IncrementTargetCountBy": 5}]
    assert plan_json()["batchAddClusterNodes"][0]["ClientToken"] == body["ClientToken"]  # deterministic


def test_placement_score_override_moves_spot_nodes_to_another_allowed_zone(tmp_path: Path) -> None:
    # A NodePool that allows every zone: the scores decide which Spot group wins.
    config = tmp_path / "config"
    config.mkdir()
    for name in ("nodeclass.yaml", "instance-groups.json"):
        (config / name).write_text((SEED / name).read_text())
    pool = (SEED / "nodepool.yaml").read_text().split("        - key: topology.kubernetes.io/zone")[0]
    (config / "nodepool.yaml").write_text(pool)
    result = run(
        "plan",
        "--config",
        str(config),
        "--pods",
        str(INFLATE),
        "--output",
        "json",
        "--placement-score",
        "us-west-2a=2",
        "--placement-score",
        "us-west-2b=9",
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert {n["instanceGroup"] for n in plan["newNodes"]} == {"auto-spot-c5-2x-az2"}


def test_table_output_names_groups_and_calls() -> None:
    result = run("plan", "--config", str(SEED), "--pods", str(INFLATE))
    assert result.exit_code == 0
    assert "New nodes (5" in result.output and SPOT_AZ1 in result.output
    assert "BatchAddClusterNodes calls (1)" in result.output


def test_bad_pod_manifest_exits_2_naming_object_and_field(tmp_path: Path) -> None:
    pods = tmp_path / "pods.yaml"
    pods.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1}\n"
        "spec: {containers: [{name: c, resources: {requests: {cpu: 1x}}}]}\n"
    )
    result = CliRunner().invoke(main, ["plan", "--config", str(SEED), "--pods", str(pods)])
    assert result.exit_code == 2
    assert "Pod default/web-1" in result.output
    assert "spec.containers[0].resources.requests.cpu" in result.output


def test_bad_config_exits_2_with_file_object_and_field(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    for name in ("nodeclass.yaml", "instance-groups.json"):
        (config / name).write_text((SEED / name).read_text())
    (config / "nodepool.yaml").write_text(
        (SEED / "nodepool.yaml").read_text().replace("operator: In", "operator: Within", 1)
    )
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code == 2
    assert "nodepool.yaml" in result.output and "NodePool gpunodepool" in result.output
    assert "requirements[1].operator" in result.output
    result = CliRunner().invoke(main, ["plan", "--config", str(config), "--pods", str(INFLATE)])
    assert result.exit_code == 2


def test_unknown_out_of_capacity_group_exits_2() -> None:
    result = CliRunner().invoke(
        main, ["plan", "--config", str(SEED), "--pods", str(INFLATE), "--out-of-capacity", "no-such-group"]
    )
    assert result.exit_code == 2 and "no-such-group" in result.output


def test_check_config_accepts_the_seed_and_reports_counts() -> None:
    result = run("check-config", str(SEED))
    assert result.exit_code == 0
    assert "1 NodePool(s), 1 HyperpodNodeClass(es), 4 instance group(s)" in result.output


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("hpscaler, version ")


def test_version_is_the_installed_distribution_version() -> None:
    from importlib.metadata import version

    assert run("--version").output.strip() == f"hpscaler, version {version('hpscaler')}"


def test_backends_lists_every_installed_entry_point_with_its_distribution() -> None:
    result = run("backends")
    assert result.exit_code == 0
    rows = {line.split()[0]: line for line in result.output.splitlines()}
    assert {"fake", "kubernetes", "aws", "static-scores"} <= rows.keys()
    assert "hpscaler.kube.backend:kubernetes_backends" in rows["kubernetes"]
    assert "hpscaler.aws.factory:aws_backends" in rows["aws"]
    assert "(hpscaler-static-scores " in rows["static-scores"]


@pytest.mark.parametrize(
    ("shell", "marker"), [("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete")]
)
def test_completion_prints_a_script_for_the_shell(shell: str, marker: str) -> None:
    result = run("completion", shell)
    assert result.exit_code == 0
    assert "_HPSCALER_COMPLETE" in result.output and marker in result.output


def test_completion_completes_subcommands() -> None:
    result = CliRunner().invoke(
        main,
        [],
        prog_name="hpscaler",
        env={"_HPSCALER_COMPLETE": "bash_complete", "COMP_WORDS": "hpscaler ba", "COMP_CWORD": "1"},
    )
    assert "backends" in result.output


def test_run_with_an_invalid_config_exits_2_before_starting(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "nodepool.yaml").write_text(
        (SEED / "nodepool.yaml").read_text().replace("operator: In", "operator: Within", 1)
    )
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "requirements[1].operator" in result.output


def test_the_readme_plan_examples_are_what_plan_prints() -> None:
    """Each `$ hpscaler plan ...` console block in the README matches the real output, line by line
    (`...` stands for lines left out)."""
    readme = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```console\n")[1:]]
    checked = 0
    for block in blocks:
        command, *shown = block.strip("\n").split("\n")
        if not command.startswith("$ hpscaler plan "):
            continue
        args = command.removeprefix("$ hpscaler ").split()
        args = [str(REPO / a) if a.startswith("config/") else a for a in args]
        output = run(*args).output.splitlines()
        position = 0
        for line in shown:
            if line.strip() == "...":
                continue
            assert line in output[position:], f"README line not in `{command}` output: {line!r}"
            position = output.index(line, position) + 1
        checked += 1
    assert checked == 2


def test_plan_keeps_a_bound_pod_on_its_node_or_reports_it(tmp_path: Path) -> None:
    """Issue 12.9: a pod with spec.nodeName is the kubelet's, not the scheduler's (Karpenter's
    `pod.IsProvisionable` in pkg/utils/pod/scheduling.go excludes bound pods, and its cluster state
    counts them on their node; kube-scheduler skips them). It takes room on its node
    and shows there; bound to a node `plan` does not know, it is reported. No input pod is dropped."""
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n"
        "  labels: {topology.kubernetes.io/zone: us-west-2a}\n"
        "status:\n  allocatable: {cpu: '2', memory: 4Gi, pods: '110'}\n"
    )
    pods = tmp_path / "pods.yaml"
    docs = []
    for name, node in (("bound", "worker-1"), ("elsewhere", "gone-node"), ("free", "")):
        spec = f"  nodeName: {node}\n" if node else ""
        docs.append(
            f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
            "  containers:\n  - name: c\n    image: x\n    resources: {requests: {cpu: 1500m, memory: 1Gi}}\n"
        )
    pods.write_text("---\n".join(docs))
    plan = plan_json("--nodes", str(nodes), pods=pods)
    assert sorted(all_pods(plan)) == ["default/bound", "default/elsewhere", "default/free"]
    assert plan["existingNodes"] == [{"name": "worker-1", "pods": ["default/bound"]}]
    # The bound pod's 1.5 CPU leaves no room for the free pod on worker-1: it gets a new node.
    assert [n["pods"] for n in plan["newNodes"]] == [["default/free"]]
    (lost,) = plan["unschedulable"]
    assert (
        lost["pod"] == "default/elsewhere" and "gone-node" in lost["reason"] and "--nodes" in lost["reason"]
    )
