"""The shipped Kueue scenario: three training jobs behind ProvisioningRequests under a GPU limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpscaler.simulate.report import report_table
from hpscaler.simulate.runner import simulate
from hpscaler.simulate.scenario import ScenarioError, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return simulate(load_scenario(SCENARIOS / "kueue-gpu.yaml"))


def test_each_job_is_provisioned_in_turn_as_capacity_frees(result: dict[str, Any]) -> None:
    assert result["violations"] == []  # NodePool limit held at every check, no pod lost
    jobs = {j["job"]: j for j in result["provisioningRequests"]["jobs"]}
    a, b, c = jobs["train-a"], jobs["train-b"], jobs["train-c"]
    assert all(j["finishedAt"] is not None and j["attempts"] == 1 for j in (a, b, c))
    # Only one job fits under the 32-GPU limit: each request waits for the previous job to finish.
    assert a["provisionedAt"] < a["finishedAt"] <= b["provisionedAt"] < b["finishedAt"] <= c["provisionedAt"]
    assert b["submittedAt"] < a["finishedAt"] and c["submittedAt"] < a["finishedAt"]


def test_no_partial_scale_up(result: dict[str, Any]) -> None:
    section = result["provisioningRequests"]
    assert section["partialScaleUps"] == 0 and section["launchesReleased"] == 0
    for job in section["jobs"]:
        assert job["startedTogether"] and len(job["zones"]) == 1, job
    assert result["podsScheduled"] == result["podsTotal"] == 18
    assert "0 partial scale-ups" in report_table(result)


def test_provisioning_class_is_for_jobs_only(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: hpscaler.io/v1alpha1\nkind: Scenario\nmetadata: {name: bad}\nspec:\n"
        "  workloads:\n    - name: web\n      replicas: 2\n"
        "      provisioningClass: check-capacity.autoscaling.x-k8s.io\n"
    )
    with pytest.raises(ScenarioError, match="provisioningClass is for Jobs"):
        load_scenario(path)
