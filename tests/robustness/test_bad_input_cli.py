"""The command line on bad input: exit 2 with the file, object and field, or a warning; never a traceback."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpscaler.cli import main
from hpscaler.config import default_config_path

REPO = Path(__file__).resolve().parents[2]
INFLATE = REPO / "config" / "workloads" / "inflate.yaml"


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def pod(cpu: object, **extra: object) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ml"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
        **extra,
    }


def plan_with(tmp_path: Path, *docs: object, extra: tuple[str, ...] = ()) -> Any:
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return run("plan", "--pods", str(path), *extra)


QUANTITIES = [float("nan"), float("inf"), float("-inf"), [1], {"a": 1}, True, "abc", "1e400", 10**30]


@pytest.mark.parametrize("cpu", QUANTITIES, ids=repr)
def test_bad_quantities_exit_2_naming_file_object_and_field(tmp_path: Path, cpu: object) -> None:
    result = plan_with(tmp_path, pod(cpu))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "pods.yaml: Pod ml/p: spec.containers[0].resources.requests.cpu:" in result.output


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cpu=st.floats()
    | st.integers()
    | st.text(max_size=12)
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
)
def test_any_quantity_plans_or_exits_2(tmp_path: Path, cpu: object) -> None:
    result = plan_with(tmp_path, pod(cpu))
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def test_scenario_quantity_is_checked_before_the_run(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "kind: Scenario\nmetadata: {name: s}\nspec:\n  duration: 10m\n  workloads:\n"
        "  - {name: w, replicas: 2, cpu: 'abc'}\n"
    )
    result = run("simulate", str(scenario))
    assert result.exit_code == 2
    assert "s.yaml: Scenario s: spec.workloads.0.cpu: 'abc' is not a Kubernetes quantity" in result.output


def deployment(replicas: int) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "w"}}, "spec": pod("1")["spec"]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "w"},
        "spec": {"replicas": replicas, "template": template},
    }


def test_a_billion_replicas_exit_2_with_the_limit(tmp_path: Path) -> None:
    result = plan_with(tmp_path, deployment(1_000_000_000))
    assert result.exit_code == 2
    assert "Deployment default/w: spec.replicas: 1000000000 pods would exceed the limit" in result.output
    assert "--max-pods" in result.output


def test_the_pod_limit_is_configurable(tmp_path: Path) -> None:
    assert plan_with(tmp_path, deployment(20), extra=("--max-pods", "10")).exit_code == 2
    assert plan_with(tmp_path, deployment(20), extra=("--max-pods", "20")).exit_code == 0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("checkSeconds: 0.000001", "spec.checkSeconds"),
        ("sampleSeconds: 0.01", "spec.sampleSeconds"),
        ("duration: 1000d", "spec.duration"),
        ("duration: .inf", "spec.duration"),
    ],
)
def test_scenario_sizes_are_limited(tmp_path: Path, spec: str, field: str) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"kind: Scenario\nmetadata: {{name: s}}\nspec:\n  {spec}\n")
    result = run("simulate", str(scenario))
    assert result.exit_code == 2 and field in result.output, result.output


@pytest.mark.parametrize(
    ("kind", "api"),
    [("Pod", "v2"), ("Job", "bacth/v1"), ("Deployment", "apps/v1beta1"), ("Job", "apps/v1")],
)
def test_api_version_typos_exit_2(tmp_path: Path, kind: str, api: str) -> None:
    doc = deployment(1) if kind != "Pod" else pod("1")
    doc["kind"], doc["apiVersion"] = kind, api
    result = plan_with(tmp_path, doc)
    assert result.exit_code == 2
    assert f"apiVersion: '{api}' is not the apiVersion of a {kind}" in result.output


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("us-west-2a=0", "from 1 to 10"),
        ("us-west-2a=-5", "from 1 to 10"),
        ("us-west-2a=11", "from 1 to 10"),
        ("us-west-2a=7.5", "whole SCORE"),
        ("us-west-2a", "whole SCORE"),
        ("us-west-2x=5", "did you mean us-west-2"),
        ("eu-west-1a=5", "not a zone or zone id of the cluster"),
    ],
)
def test_placement_scores_are_held_to_the_config_rules(item: str, message: str) -> None:
    result = run("plan", "--pods", str(INFLATE), "--placement-score", item)
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("item", ["us-west-2a=1", "us-west-2a=10", "usw2-az1=9"])
def test_valid_placement_scores_are_accepted(item: str) -> None:
    assert run("plan", "--pods", str(INFLATE), "--placement-score", item).exit_code == 0


@pytest.mark.parametrize("text", ["", "# nothing here\n", "---\n# still nothing\n---\n"])
def test_an_empty_pods_file_warns(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pods.yaml"
    path.write_text(text)
    result = run("plan", "--pods", str(path))
    assert result.exit_code == 0
    assert f"warning: --pods {path} holds no objects" in result.output


def test_an_empty_nodepool_file_warns(tmp_path: Path) -> None:
    directory = tmp_path / "config"
    shutil.copytree(default_config_path(), directory)
    (directory / "more-nodepools.yaml").write_text("# NodePools for the GPU team go here\n")
    result = run("check-config", str(directory))
    assert result.exit_code == 0
    assert re.search(r"warning: .*more-nodepools\.yaml: file: holds no documents", result.output)


def test_check_config_without_a_path_says_it_checks_the_embedded_example() -> None:
    result = run("check-config")
    assert result.exit_code == 0
    assert f"no PATH given: checking the embedded example configuration ({default_config_path()})" in (
        result.output
    )
    assert "no PATH given" not in run("check-config", str(default_config_path())).output


def _nodepool_values(tmp_path: Path, key: str, values: list[str], operator: str = "In") -> Any:
    directory = tmp_path / "config"
    shutil.copytree(default_config_path(), directory, dirs_exist_ok=True)
    path = directory / "nodepool.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["template"]["spec"]["requirements"] = [{"key": key, "operator": operator, "values": values}]
    path.write_text(yaml.safe_dump(doc))
    return run("check-config", str(directory))


@pytest.mark.parametrize(
    ("key", "typo", "meant"),
    [
        ("node.kubernetes.io/instance-type", "ml.c5.2xl", "ml.c5.2xlarge"),
        ("topology.kubernetes.io/zone", "us-west-2x", "us-west-2"),
        ("karpenter.sh/capacity-type", "spotty", "spot"),
        ("kubernetes.io/arch", "amd46", "amd64"),
    ],
)
def test_typos_in_well_known_values_are_errors_with_did_you_mean(
    tmp_path: Path, key: str, typo: str, meant: str
) -> None:
    result = _nodepool_values(tmp_path, key, [typo])
    assert result.exit_code == 2
    assert re.search(rf"requirements\[0\]\.values\[0\]: .*{re.escape(typo)} is not known", result.output)
    assert f"did you mean {meant}" in result.output


def test_an_unknown_value_next_to_a_valid_one_is_a_warning(tmp_path: Path) -> None:
    result = _nodepool_values(tmp_path, "node.kubernetes.io/instance-type", ["ml.c5.2xlarge", "ml.g5.12xl"])
    assert result.exit_code == 0
    assert "warning:" in result.output and "ml.g5.12xl is not known" in result.output
    assert "did you mean ml.g5.12xlarge?" in result.output


def test_unknown_values_in_not_in_are_warnings(tmp_path: Path) -> None:
    result = _nodepool_values(tmp_path, "karpenter.sh/capacity-type", ["spotty"], operator="NotIn")
    assert result.exit_code == 0 and "warning:" in result.output and "spotty is not known" in result.output


def test_manifest_errors_give_the_line_of_the_document(tmp_path: Path) -> None:
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump(pod("1")) + "---\n# the second one\napiVersion: v1\nmetadata: {}\n")
    result = run("plan", "--pods", str(path))
    assert result.exit_code == 2
    line = 1 + len(yaml.safe_dump(pod("1")).splitlines()) + 2
    assert f"object (document 2, line {line}): kind: kind is missing" in result.output
