"""Configuration loading: the seed world, multi-document files, every error kind, durations, warnings."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hpscaler.config import (
    ConfigError,
    ConfigIssue,
    DurationError,
    Settings,
    check_capacity_type_unchanged,
    default_config_path,
    format_duration,
    load_config,
    load_documents,
    parse_duration,
    parse_optional_duration,
)
from hpscaler.model import CapacityType, DisruptionBudget, InstanceGroup, Requirement, Taint

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "config" / "examples"
SEED_FILES = ("nodeclass.yaml", "nodepool.yaml", "instance-groups.json")

NODEPOOL = """\
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: gpunodepool
spec:
  template:
    spec:
      nodeClassRef:
        group: karpenter.sagemaker.amazonaws.com
        kind: HyperpodNodeClass
        name: multiazg6
      expireAfter: Never
      requirements:
        - key: node.kubernetes.io/instance-type
          operator: In
          values: ["ml.c5.2xlarge"]
"""


class StubCatalogue:
    """Stands in for hpscaler.catalogue.Catalogue: only membership matters to validation."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def __contains__(self, name: object) -> bool:
        return name in self.names


STUB = StubCatalogue("ml.c5.xlarge", "ml.c5.2xlarge", "ml.g5.xlarge")


def world(tmp_path: Path, **files: str | None) -> Path:
    """The seed directory with some files replaced (text), added, or removed (None)."""
    for name in SEED_FILES:
        shutil.copy(SEED / name, tmp_path / name)
    for name, text in files.items():
        target = tmp_path / name.replace("_", "-").replace("-yaml", ".yaml").replace("-json", ".json")
        if text is None:
            target.unlink()
        else:
            target.write_text(textwrap.dedent(text))
    return tmp_path


def seed_cluster() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SEED / "instance-groups.json").read_text())
    return data


def errors_of(path: Path, **kwargs: Any) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_config(path, catalogue=kwargs.pop("catalogue", STUB), **kwargs)
    return info.value.errors


def only_error(path: Path, **kwargs: Any) -> ConfigIssue:
    found = errors_of(path, **kwargs)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def assert_names(issue: ConfigIssue, file: str, obj: str, field: str) -> None:
    text = str(issue)
    assert file in text and obj in text and field in text, text
    assert issue.file.endswith(file) and issue.obj == obj and issue.field == field
    assert issue.fix, text


# --- the seed world ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SEED, default_config_path()], ids=["config-examples", "embedded"])
def test_seed_directory_loads(path: Path) -> None:
    loaded = load_config(path)
    groups = {g.name: g for g in loaded.instance_groups}
    assert [g.name for g in loaded.instance_groups] == [
        "auto-spot-c5-2x-az1",
        "auto-spot-c5-2x-az2",
        "auto-spot-c5-x-az3",
        "auto-ondemand-c5-2x-az1",
    ]
    assert [g.zones for g in loaded.instance_groups] == [
        ("us-west-2a",),
        ("us-west-2b",),
        ("us-west-2c",),
        ("us-west-2a",),
    ]
    assert groups["auto-spot-c5-2x-az1"].zone_ids == ("usw2-az2",)
    assert [g.capacity_type for g in loaded.instance_groups].count(CapacityType.SPOT) == 3
    assert groups["auto-ondemand-c5-2x-az1"].capacity_type is CapacityType.ON_DEMAND
    assert groups["auto-spot-c5-x-az3"].instance_types == ("ml.c5.xlarge",)
    assert loaded.cluster_name == "my-cluster"
    assert loaded.settings.region == "us-west-2"  # inferred from the zones when not configured

    (node_class,) = loaded.node_classes
    assert node_class.name == "multiazg6"
    assert node_class.instance_groups == tuple(groups)

    (pool,) = loaded.node_pools
    assert pool.name == "gpunodepool" and pool.node_class == "multiazg6"
    assert pool.requirements == (
        Requirement("node.kubernetes.io/instance-type", "Exists"),
        Requirement("node.kubernetes.io/instance-type", "In", ("ml.c5.2xlarge",)),
        Requirement("topology.kubernetes.io/zone", "In", ("us-west-2a",)),
    )
    assert pool.expire_after_seconds is None  # expireAfter: Never
    assert pool.weight == 0
    assert pool.disruption.consolidation_policy == "WhenEmptyOrUnderutilized"
    assert pool.disruption.consolidate_after_seconds == 0.0
    assert pool.disruption.budgets == (DisruptionBudget(nodes="10%"),)


def test_embedded_world_has_the_example_settings() -> None:
    loaded = load_config(default_config_path())
    settings = loaded.settings
    assert settings.cluster_name == "my-cluster"
    assert settings.backends.kubernetes == "fake" and settings.backends.aws == "fake"
    assert settings.placement_scores == {"us-west-2a": 9, "us-west-2b": 6, "us-west-2c": 3}
    assert loaded.warnings == ()
    assert [Path(s).name for s in loaded.sources] == [
        "hpscaler.yaml",
        "instance-groups.json",
        "nodeclass.yaml",
        "nodepool.yaml",
    ]


def test_foreign_kinds_are_ignored_with_a_warning(tmp_path: Path) -> None:
    world(tmp_path, inflate_yaml="apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: inflate}\n")
    loaded = load_config(tmp_path, catalogue=STUB)
    (warning,) = loaded.warnings
    assert warning.severity == "warning" and warning.obj == "Deployment inflate"
    assert str(warning).startswith("warning: ")


def test_single_multi_document_yaml(tmp_path: Path) -> None:
    cluster = seed_cluster()
    text = "\n---\n".join(
        [
            (SEED / "nodeclass.yaml").read_text(),
            (SEED / "nodepool.yaml").read_text(),
            "apiVersion: hpscaler.io/v1alpha1\nkind: HpscalerConfig\nspec: {placementScores: {usw2-az1: 7}}",
            json.dumps(cluster),  # JSON is YAML
            "",  # a trailing empty document is fine
        ]
    )
    (tmp_path / "all.yaml").write_text(text)
    loaded = load_config(tmp_path / "all.yaml")
    assert len(loaded.instance_groups) == 4
    assert loaded.node_classes[0].instance_groups[0] == "auto-spot-c5-2x-az1"
    assert loaded.settings.placement_scores == {"usw2-az1": 7}
    assert loaded.cluster_name == "my-cluster"
    assert len(load_documents(tmp_path / "all.yaml")) == 4


def test_kubectl_list_output_is_expanded(tmp_path: Path) -> None:
    world(tmp_path, nodeclass_yaml="""\
        apiVersion: v1
        kind: List
        items:
          - apiVersion: karpenter.sagemaker.amazonaws.com/v1
            kind: HyperpodNodeClass
            metadata: {name: multiazg6, uid: ef5609be, resourceVersion: "42", generation: 3}
            spec: {instanceGroups: [auto-spot-c5-2x-az1]}
            status: {conditions: [{type: Ready, status: "True"}]}
        """)  # fmt: skip
    assert load_config(tmp_path, catalogue=STUB).node_classes[0].name == "multiazg6"


# --- reading errors -----------------------------------------------------------------------------------


def test_yaml_syntax_error_has_a_line_number(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: NodePool\nmetadata:\n  name: [unclosed\n  other: 1\n")
    with pytest.raises(ConfigError) as info:
        load_documents(tmp_path)
    (issue,) = info.value.issues
    assert issue.file.endswith("broken.yaml") and issue.line is not None
    assert "invalid YAML at line" in str(issue)


def test_json_syntax_error_has_a_line_number(tmp_path: Path) -> None:
    (tmp_path / "groups.json").write_text('{\n  "InstanceGroups": [\n    {"a": 1,}\n  ]\n}\n')
    with pytest.raises(ConfigError) as info:
        load_documents(tmp_path)
    (issue,) = info.value.issues
    assert issue.line == 3 and "invalid JSON at line 3" in str(issue)


def test_missing_path(tmp_path: Path) -> None:
    issue = only_error(tmp_path / "nope")
    assert "does not exist" in issue.message


def test_duplicated_yaml_key(tmp_path: Path) -> None:
    world(
        tmp_path,
        nodeclass_yaml=(SEED / "nodeclass.yaml").read_text()
        + "spec: {instanceGroups: [auto-spot-c5-2x-az1]}\n",
    )
    issue = only_error(tmp_path)
    assert issue.field == "spec" and "twice" in issue.message and issue.line == 13


# --- shape errors (pydantic) -------------------------------------------------------------------------------


def test_weight_out_of_range(tmp_path: Path) -> None:
    world(
        tmp_path, nodepool_yaml=NODEPOOL.replace("spec:\n  template:", "spec:\n  weight: 500\n  template:", 1)
    )
    issue = only_error(tmp_path)
    assert_names(issue, "nodepool.yaml", "NodePool gpunodepool", "spec.weight")
    assert (
        "nodepool.yaml: NodePool gpunodepool: spec.weight: must be between 1 and 100 (got 500). Fix: "
        in str(issue)
    )
    assert issue.line == 6


def test_unknown_field_suggests_the_known_one(tmp_path: Path) -> None:
    world(tmp_path, nodepool_yaml=NODEPOOL.replace("expireAfter", "expiresAfter"))
    issue = only_error(tmp_path)
    assert_names(issue, "nodepool.yaml", "NodePool gpunodepool", "spec.template.spec.expiresAfter")
    assert "did you mean `expireAfter`" in issue.fix


def test_operator_enum(tmp_path: Path) -> None:
    world(tmp_path, nodepool_yaml=NODEPOOL.replace("operator: In", "operator: in"))
    issue = only_error(tmp_path)
    assert_names(
        issue, "nodepool.yaml", "NodePool gpunodepool", "spec.template.spec.requirements[0].operator"
    )
    assert "did you mean In?" in issue.fix


@pytest.mark.parametrize(
    ("requirement", "field", "words"),
    [
        ("{key: a, operator: In, values: []}", "requirements[1].values", "at least one value"),
        ("{key: a, operator: NotIn}", "requirements[1].values", "at least one value"),
        ("{key: a, operator: Exists, values: [x]}", "requirements[1].values", "takes no values"),
        ("{key: a, operator: DoesNotExist, values: [x]}", "requirements[1].values", "takes no values"),
        ("{key: a, operator: Gt, values: ['1', '2']}", "requirements[1].values", "exactly one value"),
        ("{key: a, operator: Lt, values: [abc]}", "requirements[1].values[0]", "needs an integer"),
        ("{key: a, operator: In, values: [x], minValues: 2}", "requirements[1].minValues", "only 1 values"),
    ],
)
def test_requirement_operator_rules(tmp_path: Path, requirement: str, field: str, words: str) -> None:
    world(tmp_path, nodepool_yaml=NODEPOOL + f"        - {requirement}\n")
    issue = only_error(tmp_path)
    assert_names(issue, "nodepool.yaml", "NodePool gpunodepool", f"spec.template.spec.{field}")
    assert words in issue.message


def test_shape_and_rule_errors_are_reported_together(tmp_path: Path) -> None:
    bad = NODEPOOL + "        - {key: a, operator: Exists, values: [x]}\n  weight: 0\n"
    world(tmp_path, nodepool_yaml=bad)
    fields = {i.field for i in errors_of(tmp_path)}
    assert fields == {"spec.weight", "spec.template.spec.requirements[1].values"}


TEMPLATE = "spec:\n  template:"
NAME = "  name: gpunodepool\n"


def _before_template(text: str) -> str:
    return f"spec:\n  {text}\n  template:"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("expireAfter: Never", "expireAfter: 10 days", "spec.template.spec.expireAfter"),
        ("expireAfter: Never", "expireAfter: Never\n      terminationGracePeriod: Never",
         "spec.template.spec.terminationGracePeriod"),
        ("expireAfter: Never", "expireAfter: Never\n      taints: [{key: k, effect: NoSchedul}]",
         "spec.template.spec.taints[0].effect"),
        (TEMPLATE, _before_template("limits: {cpu: lots}"), "spec.limits.cpu"),
        (TEMPLATE, _before_template('limits: {"nvidia.com/gpu": -1}'), 'spec.limits["nvidia.com/gpu"]'),
        (TEMPLATE, _before_template("disruption: {budgets: [{nodes: 5x}]}"),
         "spec.disruption.budgets[0].nodes"),
        (TEMPLATE, _before_template("disruption: {budgets: [{nodes: '1', reasons: [Expired]}]}"),
         "spec.disruption.budgets[0].reasons[0]"),
        (TEMPLATE, _before_template("disruption: {budgets: [{schedule: '@daily'}]}"),
         "spec.disruption.budgets[0].duration"),
        (TEMPLATE, _before_template("disruption: {budgets: [{schedule: 'daily', duration: 1h}]}"),
         "spec.disruption.budgets[0].schedule"),
        (TEMPLATE, _before_template("disruption: {consolidationPolicy: Balanced}"),
         "spec.disruption.consolidationPolicy"),
        (NAME, NAME + "  annotations: {hpscaler.io/consolidate-running-jobs: yes}\n",
         'metadata.annotations["hpscaler.io/consolidate-running-jobs"]'),
        (NAME, "  namee: gpunodepool\n", "metadata.namee"),
    ],
)  # fmt: skip
def test_nodepool_field_errors(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in NODEPOOL
    world(tmp_path, nodepool_yaml=NODEPOOL.replace(old, new, 1))
    found = errors_of(tmp_path)
    assert field in {i.field for i in found}, "\n".join(map(str, found))
    issue = next(i for i in found if i.field == field)
    assert issue.file.endswith("nodepool.yaml") and issue.obj.startswith("NodePool") and issue.fix


def test_hpscaler_config_errors(tmp_path: Path) -> None:
    world(
        tmp_path,
        hpscaler_yaml="""\
        apiVersion: hpscaler.io/v1alpha1
        kind: HpscalerConfig
        spec:
          batching: {idleSeconds: 20, maxSeconds: 10}
          provisioning: {maxNodesPerCall: 51}
          logging: {levle: debug}
          placementScores: {us-west-2a: 11}
        """,
    )
    by_field = {i.field: i for i in errors_of(tmp_path)}
    assert set(by_field) == {
        "spec.batching",
        "spec.provisioning.maxNodesPerCall",
        "spec.logging.levle",
        'spec.placementScores["us-west-2a"]',
    }
    assert "must not exceed" in by_field["spec.batching"].message
    assert "between 1 and 50" in by_field["spec.provisioning.maxNodesPerCall"].message
    assert "did you mean `level`" in by_field["spec.logging.levle"].fix
    assert all(i.obj == "HpscalerConfig default" for i in by_field.values())


def test_wrong_api_version_and_unknown_kind(tmp_path: Path) -> None:
    world(
        tmp_path,
        nodepool_yaml=NODEPOOL.replace("karpenter.sh/v1", "karpenter.sh/v1beta1"),
        extra_yaml="apiVersion: hpscaler.io/v1alpha1\nkind: HpscalerConfg\nmetadata: {name: x}\n",
    )
    by_field = {i.field: i for i in errors_of(tmp_path)}
    assert "karpenter.sh/v1" in by_field["apiVersion"].fix
    assert by_field["kind"].fix == "did you mean HpscalerConfig?"


# --- cross-object errors -------------------------------------------------------------------------------


def test_nodeclass_lists_at_most_ten_groups(tmp_path: Path) -> None:
    names = ", ".join(f"g{i}" for i in range(11))
    world(tmp_path, nodeclass_yaml=f"""\
        apiVersion: karpenter.sagemaker.amazonaws.com/v1
        kind: HyperpodNodeClass
        metadata: {{name: multiazg6}}
        spec: {{instanceGroups: [{names}]}}
        """)  # fmt: skip
    issue = only_error(tmp_path)
    assert_names(issue, "nodeclass.yaml", "HyperpodNodeClass multiazg6", "spec.instanceGroups")
    assert "at most 10" in issue.message


def test_nodeclass_group_must_exist(tmp_path: Path) -> None:
    text = (SEED / "nodeclass.yaml").read_text().replace("auto-spot-c5-x-az3", "auto-spot-c5-x-az4")
    world(tmp_path, nodeclass_yaml=text)
    issue = only_error(tmp_path)
    assert_names(issue, "nodeclass.yaml", "HyperpodNodeClass multiazg6", "spec.instanceGroups[2]")
    assert "auto-spot-c5-x-az4 does not exist" in issue.message and "auto-spot-c5-x-az3" in issue.fix


def test_nodeclassref_must_name_an_existing_hyperpod_nodeclass(tmp_path: Path) -> None:
    world(tmp_path, nodepool_yaml=NODEPOOL.replace("name: multiazg6", "name: multiazg7"))
    issue = only_error(tmp_path)
    assert_names(issue, "nodepool.yaml", "NodePool gpunodepool", "spec.template.spec.nodeClassRef.name")
    assert "did you mean multiazg6?" in issue.fix

    world(tmp_path, nodepool_yaml=NODEPOOL.replace("kind: HyperpodNodeClass", "kind: EC2NodeClass"))
    issue = only_error(tmp_path)
    assert issue.field == "spec.template.spec.nodeClassRef.kind"


def test_group_subnets_must_resolve_to_one_zone(tmp_path: Path) -> None:
    cluster = seed_cluster()
    cluster["InstanceGroups"][0]["OverrideVpcConfig"]["Subnets"] = ["subnet-az1", "subnet-az2"]
    cluster["InstanceGroups"][1]["OverrideVpcConfig"]["Subnets"] = ["subnet-missing"]
    world(tmp_path, instance_groups_json=json.dumps(cluster, indent=2))
    multi, missing = errors_of(tmp_path)
    assert_names(multi, "instance-groups.json", "InstanceGroup auto-spot-c5-2x-az1",
                 "InstanceGroups[0].OverrideVpcConfig.Subnets")  # fmt: skip
    assert "2 availability zones" in multi.message and "single-AZ" in multi.fix
    assert_names(missing, "instance-groups.json", "InstanceGroup auto-spot-c5-2x-az2",
                 "InstanceGroups[1].OverrideVpcConfig.Subnets[0]")  # fmt: skip
    assert "describe-subnets" in missing.fix and missing.line is not None


def test_unreferenced_group_problems_are_warnings(tmp_path: Path) -> None:
    cluster = seed_cluster()
    cluster["InstanceGroups"].append(
        {"InstanceGroupName": "static", "InstanceType": "ml.p9.huge", "OverrideVpcConfig": {"Subnets": ["x"]}}
    )
    world(tmp_path, instance_groups_json=json.dumps(cluster))
    loaded = load_config(tmp_path, catalogue=STUB)
    assert {w.field for w in loaded.warnings} == {
        "InstanceGroups[4].OverrideVpcConfig.Subnets[0]",
        "InstanceGroups[4].InstanceType",
    }


def test_instance_type_must_be_in_the_catalogue(tmp_path: Path) -> None:
    world(tmp_path)
    issue = only_error(tmp_path, catalogue=StubCatalogue("ml.c5.2xlarge"))
    assert_names(
        issue, "instance-groups.json", "InstanceGroup auto-spot-c5-x-az3", "InstanceGroups[2].InstanceType"
    )
    assert "ml.c5.xlarge" in issue.message


def test_instance_type_suggestion_from_the_real_catalogue(tmp_path: Path) -> None:
    cluster = seed_cluster()
    cluster["InstanceGroups"][2]["InstanceType"] = "c5.xlarge"
    world(tmp_path, instance_groups_json=json.dumps(cluster))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    (issue,) = info.value.errors
    assert "ml.c5.xlarge" in issue.fix


def test_capacity_type_conflict_between_documents(tmp_path: Path) -> None:
    again = {
        "InstanceGroups": [
            {
                "InstanceGroupName": "auto-ondemand-c5-2x-az1",
                "InstanceType": "ml.c5.2xlarge",
                "CapacityRequirements": {"Spot": {}},
                "OverrideVpcConfig": {"Subnets": ["subnet-az1"]},
            }
        ]
    }
    world(tmp_path, later_json=json.dumps(again))
    issue = only_error(tmp_path)
    assert_names(
        issue, "later.json", "InstanceGroup auto-ondemand-c5-2x-az1", "InstanceGroups[0].CapacityRequirements"
    )
    assert "spot here but on-demand" in issue.message and "cannot change" in issue.fix


def test_check_capacity_type_unchanged() -> None:
    old = [InstanceGroup("a", ("ml.c5.xlarge",), CapacityType.SPOT, ("z",)), InstanceGroup(
        "b", ("ml.c5.xlarge",), CapacityType.ON_DEMAND, ("z",))]  # fmt: skip
    new = [InstanceGroup("a", ("ml.c5.xlarge",), CapacityType.ON_DEMAND, ("z",)), old[1]]
    (issue,) = check_capacity_type_unchanged(old, new)
    assert issue.obj == "InstanceGroup a" and "from spot to on-demand" in issue.message
    assert check_capacity_type_unchanged(old, old) == []


def test_settings_must_name_real_groups_zones_and_types(tmp_path: Path) -> None:
    world(
        tmp_path,
        hpscaler_yaml="""\
        apiVersion: hpscaler.io/v1alpha1
        kind: HpscalerConfig
        spec:
          outOfCapacity: [auto-spot-c5-2x-az7]
          placementScores: {us-west-2z: 4, usw2-az1: 3}
          prices: {ml.c5.9xl: {spot: 0.1}}
          region: eu-west-1
        """,
    )
    by_field = {i.field: i for i in errors_of(tmp_path)}
    assert set(by_field) == {
        "spec.outOfCapacity[0]",
        'spec.placementScores["us-west-2z"]',
        'spec.prices["ml.c5.9xl"]',
        "spec.region",
    }
    assert "auto-spot-c5-2x-az" in by_field["spec.outOfCapacity[0]"].fix
    assert by_field["spec.region"].fix == "set spec.region to us-west-2"
    assert all(i.file.endswith("hpscaler.yaml") for i in by_field.values())


def test_duplicate_objects(tmp_path: Path) -> None:
    world(tmp_path, copy_yaml=NODEPOOL)
    issue = only_error(tmp_path)
    assert_names(issue, "nodepool.yaml", "NodePool gpunodepool", "metadata.name")
    assert "defined twice" in issue.message


def test_at_most_one_hpscaler_config(tmp_path: Path) -> None:
    doc = "apiVersion: hpscaler.io/v1alpha1\nkind: HpscalerConfig\nmetadata: {name: %s}\n"
    world(tmp_path, a_yaml=doc % "one", b_yaml=doc % "two")
    issue = only_error(tmp_path)
    assert issue.obj == "HpscalerConfig two" and "only one HpscalerConfig" in issue.message


def test_instance_groups_are_required(tmp_path: Path) -> None:
    world(tmp_path, instance_groups_json=None, hpscaler_yaml="apiVersion: hpscaler.io/v1alpha1\n"
          "kind: HpscalerConfig\nspec: {clusterName: c}\n")  # fmt: skip
    found = errors_of(tmp_path)
    assert any("aws sagemaker describe-cluster" in i.fix for i in found)
    # A daemon that reads groups from AWS may opt out.
    loaded = load_config(tmp_path, catalogue=STUB, require_instance_groups=False)
    assert loaded.instance_groups == () and loaded.cluster_name == "c"


def test_cluster_name_required_and_consistent(tmp_path: Path) -> None:
    cluster = seed_cluster()
    del cluster["ClusterName"]
    world(tmp_path, instance_groups_json=json.dumps(cluster))
    issue = only_error(tmp_path)
    assert issue.field == "spec.clusterName" and "describe-cluster" in issue.fix

    world(tmp_path, hpscaler_yaml="apiVersion: hpscaler.io/v1alpha1\nkind: HpscalerConfig\n"
          "spec: {clusterName: other}\n")  # fmt: skip
    shutil.copy(SEED / "instance-groups.json", tmp_path / "instance-groups.json")
    issue = only_error(tmp_path)
    assert issue.field == "ClusterName" and "other" in issue.message


def test_all_errors_are_collected(tmp_path: Path) -> None:
    world(
        tmp_path,
        nodepool_yaml=NODEPOOL.replace("name: multiazg6", "name: nope"),
        nodeclass_yaml=(SEED / "nodeclass.yaml").read_text().replace("az3", "az9"),
        hpscaler_yaml="apiVersion: hpscaler.io/v1alpha1\nkind: HpscalerConfig\nspec: {outOfCapacity: [x]}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, catalogue=STUB)
    files = {Path(i.file).name for i in info.value.errors}
    assert files == {"nodepool.yaml", "nodeclass.yaml", "hpscaler.yaml"}
    assert str(info.value).startswith("3 configuration errors:")


# --- conversion details ------------------------------------------------------------------------------------


def test_full_nodepool_conversion(tmp_path: Path) -> None:
    world(tmp_path, nodepool_yaml="""\
        apiVersion: karpenter.sh/v1
        kind: NodePool
        metadata:
          name: gpunodepool
          annotations: {hpscaler.io/consolidate-running-jobs: "true"}
        spec:
          weight: 50
          limits: {cpu: 1000, memory: 1000Gi, nodes: "20", nvidia.com/gpu: 8}
          template:
            metadata:
              labels: {team: ml}
            spec:
              nodeClassRef:
                {group: karpenter.sagemaker.amazonaws.com, kind: HyperpodNodeClass, name: multiazg6}
              expireAfter: 24h
              terminationGracePeriod: 1h30m
              taints: [{key: gpu, value: "true", effect: NoSchedule}]
              startupTaints: [{key: init, effect: NoExecute}]
          disruption:
            consolidationPolicy: WhenEmpty
            consolidateAfter: 2m
            budgets:
              - nodes: "0"
                reasons: [Underutilized, Drifted]
                schedule: "0 9 * * mon-fri"
                duration: 8h
              - nodes: "5"
        status: {conditions: []}
        """)  # fmt: skip
    (pool,) = load_config(tmp_path, catalogue=STUB).node_pools
    assert dict(pool.limits) == {"cpu": 1_000_000, "memory": 1000 * 2**30, "nodes": 20, "nvidia.com/gpu": 8}
    assert pool.weight == 50 and pool.labels == (("team", "ml"),)
    assert pool.taints == (Taint("gpu", "NoSchedule", "true"),)
    assert pool.startup_taints == (Taint("init", "NoExecute"),)
    assert pool.expire_after_seconds == 86400.0 and pool.termination_grace_seconds == 5400.0
    assert pool.consolidate_running_jobs is True
    assert pool.disruption.consolidation_policy == "WhenEmpty"
    assert pool.disruption.consolidate_after_seconds == 120.0
    assert pool.disruption.budgets == (
        DisruptionBudget("0", ("Underutilized", "Drifted"), "0 9 * * mon-fri", 8 * 3600.0),
        DisruptionBudget("5"),
    )


def test_consolidate_after_never(tmp_path: Path) -> None:
    text = NODEPOOL.replace(
        "spec:\n  template:", "spec:\n  disruption: {consolidateAfter: Never}\n  template:", 1
    )
    world(tmp_path, nodepool_yaml=text)
    (pool,) = load_config(tmp_path, catalogue=STUB).node_pools
    assert pool.disruption.consolidate_after_seconds is None


def test_describe_cluster_variants(tmp_path: Path) -> None:
    cluster = {
        "ClusterName": "my-cluster",
        "ClusterStatus": "InService",  # unknown AWS fields are ignored
        "VpcConfig": {"Subnets": ["subnet-az2"], "SecurityGroupIds": ["sg-1"]},
        "InstanceGroups": [
            {
                "InstanceGroupName": "flex",
                "InstanceRequirements": {"CurrentInstanceTypes": ["ml.g5.xlarge", "ml.c5.xlarge"]},
                "CurrentCount": 2,
                "TargetCount": 3,
                "CapacityRequirements": {"OnDemand": {}},
                "KubernetesConfig": {
                    "DesiredLabels": {"team": "ml"},
                    "DesiredTaints": [{"Key": "gpu", "Value": "yes", "Effect": "NoSchedule"}],
                },
                "Status": "Updating",
            }
        ],
        "Subnets": [
            {"SubnetId": "subnet-az2", "AvailabilityZone": "us-west-2b", "AvailabilityZoneId": "usw2-az1"}
        ],
    }
    nodeclass = "apiVersion: karpenter.sagemaker.amazonaws.com/v1\nkind: HyperpodNodeClass\n"
    nodeclass += "metadata: {name: multiazg6}\nspec: {instanceGroups: [flex]}\n"
    world(tmp_path, instance_groups_json=json.dumps(cluster), nodeclass_yaml=nodeclass,
          nodepool_yaml=NODEPOOL.replace("ml.c5.2xlarge", "ml.c5.xlarge"))  # fmt: skip
    loaded = load_config(tmp_path, catalogue=STUB)
    (group,) = loaded.instance_groups
    assert group.instance_types == ("ml.g5.xlarge", "ml.c5.xlarge")
    assert group.capacity_type is CapacityType.ON_DEMAND
    assert (group.zones, group.zone_ids, group.subnets) == (("us-west-2b",), ("usw2-az1",), ("subnet-az2",))
    assert (group.current_count, group.target_count, group.status) == (2, 3, "Updating")
    assert group.labels == (("team", "ml"),) and group.taints == (Taint("gpu", "NoSchedule", "yes"),)


# --- warnings ----------------------------------------------------------------------------------------------


def test_warnings(tmp_path: Path) -> None:
    pool = NODEPOOL.replace("ml.c5.2xlarge", "ml.g5.xlarge") + (
        "        - {key: karpenter.sh/capacity-type, operator: In, values: [spot]}\n"
        "        - {key: node.kubernetes.io/instance-type, operator: Exists, minValues: 1}\n"
    )
    nodeclass = (SEED / "nodeclass.yaml").read_text() + "    - auto-spot-c5-2x-az1\n"
    cluster = seed_cluster()
    cluster["InstanceGroups"][0]["CapacityRequirement"] = cluster["InstanceGroups"][0].pop(
        "CapacityRequirements"
    )
    world(tmp_path, nodepool_yaml=pool, nodeclass_yaml=nodeclass, instance_groups_json=json.dumps(cluster))
    loaded = load_config(tmp_path, catalogue=STUB)
    by_field = {w.field: w for w in loaded.warnings}
    assert all(w.severity == "warning" for w in loaded.warnings)
    assert "no instance group" in by_field["spec.template.spec.requirements"].message
    assert (
        "ignores key karpenter.sh/capacity-type" in by_field["spec.template.spec.requirements[1].key"].message
    )
    assert "not supported" in by_field["spec.template.spec.requirements[2].minValues"].message
    assert "listed twice" in by_field["spec.instanceGroups[4]"].message
    assert by_field["InstanceGroups[0].CapacityRequirement"].fix == "did you mean `CapacityRequirements`?"
    assert loaded.node_classes[0].instance_groups.count("auto-spot-c5-2x-az1") == 1


# --- durations and settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("0s", 0.0), ("30s", 30.0), ("1h30m", 5400.0), ("720h", 2_592_000.0), ("1.5h", 5400.0),
     ("300ms", 0.3), ("2h45m30s", 9930.0), ("1m0s", 60.0), ("+5s", 5.0), ("10us", 1e-5)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "1d", "-1s", "1h 30m", "h", "Never", "1.2.3s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_never_and_format() -> None:
    assert parse_optional_duration("Never") is None
    assert parse_optional_duration("720h") == 2_592_000.0
    assert format_duration(None) == "Never"
    assert [format_duration(s) for s in (0, 45, 5400, 90.5)] == ["0s", "45s", "1h30m", "1m30.5s"]


def test_settings_defaults_and_immutability() -> None:
    settings = Settings()
    assert (settings.batching.idle_seconds, settings.batching.max_seconds) == (1.0, 10.0)
    assert settings.provisioning.max_nodes_per_call == 50 and settings.provisioning.max_groups_per_call == 5
    assert settings.out_of_capacity_backoff.multiplier == 2.0
    assert settings.consolidation.poll_seconds == 10.0 and settings.logging.format == "auto"
    with pytest.raises(ValidationError):
        settings.region = "x"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Settings.model_validate({"batching": {"idleSeconds": 0}})
    priced = Settings.model_validate({"prices": {"ml.c5.2xlarge": {"onDemand": 0.48, "spot": 0.15}}})
    override = priced.price_overrides()["ml.c5.2xlarge"]
    assert (override.on_demand, override.spot) == (0.48, 0.15)


def test_without_instance_groups_references_are_still_checked(tmp_path: Path) -> None:
    config = "apiVersion: hpscaler.io/v1alpha1\nkind: HpscalerConfig\n"
    config += "spec: {clusterName: c, outOfCapacity: [g], placementScores: {z: 2}}\n"
    pool = NODEPOOL.replace("name: multiazg6", "name: other")
    world(tmp_path, instance_groups_json=None, nodepool_yaml=pool, hpscaler_yaml=config)
    issue = only_error(tmp_path, require_instance_groups=False)
    assert issue.field == "spec.template.spec.nodeClassRef.name"


def test_issue_text_without_field_or_line() -> None:
    issue = ConfigIssue("a.yaml", "YAML", "", "invalid YAML", "fix it", "warning")
    assert str(issue) == "warning: a.yaml: YAML: invalid YAML. Fix: fix it"
    error = ConfigError([issue, ConfigIssue("b.yaml", "NodePool x", "spec", "bad", "f")])
    assert [i.file for i in error.issues] == ["b.yaml", "a.yaml"]
    assert str(error).splitlines()[0] == "1 configuration error:"
