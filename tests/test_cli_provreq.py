"""`hpscaler plan` with ProvisioningRequests and PodTemplates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from hpscaler.cli import main

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "config" / "examples"
REQUESTS = REPO / "config" / "workloads" / "provisioning-requests.yaml"


def plan(pods: Path, *extra: str, config: Path = SEED) -> Any:
    return CliRunner().invoke(
        main,
        ["plan", "--config", str(config), "--pods", str(pods), "--output", "json", *extra],
        catch_exceptions=False,
    )


def test_provisioned_request_places_its_pods_and_a_check_without_room_does_not() -> None:
    result = plan(REQUESTS)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    outcomes = {o["name"]: o for o in body["provisioningRequests"]}
    train = outcomes["ml/train-a"]
    assert (train["class"], train["provisioned"], train["reason"]) == (
        "best-effort-atomic-scale-up.autoscaling.x-k8s.io",
        True,
        "CapacityIsProvisioned",
    )
    assert sorted(train["nodes"]) == sorted(n["name"] for n in body["newNodes"]) and len(train["nodes"]) == 4
    placed = [p for n in body["newNodes"] for p in n["pods"]]
    assert sorted(placed) == [f"ml/train-a-provreq-0-{i}" for i in range(4)]
    check = outcomes["ml/check-b"]
    assert (check["provisioned"], check["reason"], check["nodes"]) == (False, "CapacityIsNotFound", [])
    assert "provisions nothing" in check["message"]
    assert not any("check-b" in p for n in body["newNodes"] for p in n["pods"])
    assert body["batchAddClusterNodes"][0]["NodesToAdd"][0]["IncrementTargetCountBy"] == 4


def test_request_over_the_nodepool_limit_is_not_provisioned_and_places_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(SEED, config)
    pool = yaml.safe_load((config / "nodepool.yaml").read_text())
    pool["spec"]["limits"] = {"cpu": "24"}  # three c5.2xlarge nodes; the job needs four
    (config / "nodepool.yaml").write_text(yaml.safe_dump(pool))
    body = json.loads(plan(REQUESTS, config=config).output)
    train = next(o for o in body["provisioningRequests"] if o["name"] == "ml/train-a")
    assert (train["provisioned"], train["reason"]) == (False, "CapacityIsNotFound")
    assert "limit" in train["message"]
    assert body["newNodes"] == [] and body["batchAddClusterNodes"] == []


def test_missing_template_and_bad_request_are_reported(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(REQUESTS.read_text()))
    path = tmp_path / "no-template.yaml"
    path.write_text(yaml.safe_dump_all(docs[1:]))
    body = json.loads(plan(path).output)
    train = next(o for o in body["provisioningRequests"] if o["name"] == "ml/train-a")
    assert (train["provisioned"], train["reason"]) == (False, "FailedToCreatePods")
    docs[1]["spec"]["podSets"][0]["count"] = "eight"
    path.write_text(yaml.safe_dump_all(docs))
    result = plan(path)
    assert result.exit_code == 2
    assert "ProvisioningRequest ml/train-a" in result.output and "spec.podSets[0].count" in result.output
