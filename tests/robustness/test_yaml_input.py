"""YAML from careless users and attackers: bounded, fast, and always one clear error with a line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hostile import billion_laughs, deeply_nested, mutated, with_control_character
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpscaler import yamlio
from hpscaler.config import ConfigError, default_config_path, load_config
from hpscaler.kube.objects import ManifestError, load_manifest_file
from hpscaler.simulate.scenario import ScenarioError, load_scenario
from hpscaler.yamlio import YamlInputError, YamlLimits, read_documents

REPO = Path(__file__).resolve().parents[2]
NODEPOOL = (default_config_path() / "nodepool.yaml").read_text()
INFLATE = (REPO / "config" / "workloads" / "inflate.yaml").read_text()
BURST = (REPO / "config" / "scenarios" / "burst.yaml").read_text()


def test_libyaml_is_used_when_pyyaml_has_it() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    assert yamlio._SafeLoader is yaml.CSafeLoader


def test_documents_keep_their_lines_with_the_c_loader() -> None:
    docs = read_documents("a: 1\n---\n# note\nkind: Pod\nspec:\n  x: [1, 2]\n")
    assert [d.data for d in docs] == [{"a": 1}, {"kind": "Pod", "spec": {"x": [1, 2]}}]
    assert [d.line for d in docs] == [1, 4]
    paths = {path: node.start_mark.line + 1 for path, node, _ in yamlio.walk_lines(docs[1].node)}
    assert paths[("spec", "x", 1)] == 6


def test_billion_laughs_is_refused_before_anything_is_expanded() -> None:
    with pytest.raises(YamlInputError, match=r"aliases expand to [\d,]+ nodes") as caught:
        read_documents(billion_laughs())
    assert caught.value.line == 1


def test_a_few_aliases_are_fine() -> None:
    (doc,) = read_documents("base: &b {cpu: 1}\nx: *b\ny: *b\n")
    assert doc.data["y"] == {"cpu": 1}


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(YamlInputError, match="recursive alias"):
        read_documents("a: &a [*a]\n")


@pytest.mark.parametrize("depth", [150, 999, 20_000])
def test_deep_nesting_is_an_error_not_a_crash(depth: int) -> None:
    with pytest.raises(YamlInputError, match="nest"):
        read_documents(deeply_nested(depth))


def test_total_nodes_are_bounded() -> None:
    with pytest.raises(YamlInputError, match="more than 50 nodes"):
        read_documents("[" + ", ".join("1" for _ in range(100)) + "]", YamlLimits(max_nodes=50))


@pytest.mark.parametrize(
    ("text", "problem", "line"),
    [
        ("a: 1\nb: \x01\n", "unacceptable character #x0001", 2),
        ("a: 1\nb: 2001-13-45\n", "month must be in 1..12", None),
        ("a: !!python/object:os.system x\n", "could not determine a constructor", 1),
        ("a: [1\n", "", 2),
    ],
)
def test_every_fault_is_one_yaml_input_error(text: str, problem: str, line: int | None) -> None:
    with pytest.raises(YamlInputError, match="invalid YAML") as caught:
        read_documents(text)
    assert problem in caught.value.problem
    if line is not None:
        assert caught.value.line == line


def _config_with(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(default_config_path(), directory, dirs_exist_ok=True)
    (directory / name).write_text(text, encoding="utf-8")
    return directory


@pytest.mark.parametrize(
    "text",
    [with_control_character(NODEPOOL), deeply_nested(), billion_laughs(), "a: &a [*a]\n"],
    ids=["control-character", "nested-20000", "billion-laughs", "recursive"],
)
def test_hostile_config_files_are_config_errors_naming_the_file(tmp_path: Path, text: str) -> None:
    directory = _config_with(tmp_path, "nodepool.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(directory)
    assert any(i.file.endswith("nodepool.yaml") and i.severity == "error" for i in caught.value.issues)


def test_deep_json_is_a_config_error(tmp_path: Path) -> None:
    directory = _config_with(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match=r"deep\.json"):
        load_config(directory)


def test_hostile_manifests_are_manifest_errors(tmp_path: Path) -> None:
    for i, text in enumerate([billion_laughs(), deeply_nested(), with_control_character(INFLATE)]):
        path = tmp_path / f"pods-{i}.yaml"
        path.write_text(text)
        with pytest.raises(ManifestError, match="invalid YAML"):
            load_manifest_file(path)


SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(text=mutated(NODEPOOL))
def test_mutated_nodepool_files_load_or_fail_cleanly(tmp_path: Path, text: str) -> None:
    directory = _config_with(tmp_path, "nodepool.yaml", text)
    try:
        load_config(directory)
    except ConfigError as exc:
        assert exc.issues and all(i.file and i.message for i in exc.issues)


@SETTINGS
@given(text=mutated(INFLATE))
def test_mutated_manifests_load_or_fail_cleanly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pods.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_manifest_file(path)
    except ManifestError as exc:
        assert str(exc).startswith(str(path))


@SETTINGS
@given(text=mutated(BURST))
def test_mutated_scenarios_load_or_fail_cleanly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_scenario(path)
    except ScenarioError as exc:
        assert str(exc).startswith(str(path))


@SETTINGS
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
        max_leaves=8,
    )
)
def test_any_yaml_value_in_any_nodepool_field_is_an_error_not_a_crash(tmp_path: Path, value: object) -> None:
    doc = yaml.safe_load(NODEPOOL)
    doc["spec"]["template"]["spec"]["requirements"][0]["values"] = value
    doc["spec"]["limits"] = {"cpu": value}
    directory = _config_with(tmp_path, "nodepool.yaml", yaml.safe_dump(doc))
    try:
        load_config(directory)
    except ConfigError as exc:
        assert any(i.obj.startswith("NodePool") for i in exc.issues)
