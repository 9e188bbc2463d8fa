"""`plan`'s manifest input: List items converted as they stream in, JSON through the JSON parser,
and errors naming the file, the object and its line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpscaler.kube.inputs import load_manifest_input, read_manifest_input
from hpscaler.kube.objects import ManifestError, load_manifest_file

NO_STDIN = io.StringIO("")


def pod(name: str, cpu: object = "500m", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
        **extra,
    }


def kubectl_yaml(items: list[dict[str, Any]], kind: str = "List") -> str:
    """As `kubectl get pods -o yaml` writes it: keys sorted, so `kind` comes after `items`."""
    return yaml.safe_dump(
        {"apiVersion": "v1", "items": items, "kind": kind, "metadata": {"resourceVersion": ""}}
    )


def write(tmp_path: Path, text: str, name: str = "pods.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def keys(pods: list[Any]) -> list[str]:
    return [p.key for p in pods]


def test_a_kubectl_list_gives_the_pods_the_document_reader_gives(tmp_path: Path) -> None:
    path = write(tmp_path, kubectl_yaml([pod(f"p{i}", cpu=f"{i + 1}00m") for i in range(30)]))
    streamed = load_manifest_input(path, NO_STDIN)
    whole = load_manifest_file(Path(path))
    assert streamed == whole
    assert keys(streamed[0]) == [f"ml/p{i}" for i in range(30)]


def test_podlist_items_without_a_kind_take_the_lists_kind(tmp_path: Path) -> None:
    items = [{k: v for k, v in pod(f"p{i}").items() if k not in ("kind", "apiVersion")} for i in range(3)]
    pods, nodes, _ = load_manifest_input(write(tmp_path, kubectl_yaml(items, "PodList")), NO_STDIN)
    assert keys(pods) == ["ml/p0", "ml/p1", "ml/p2"] and nodes == []


def test_a_mixed_list_keeps_the_order_of_its_items(tmp_path: Path) -> None:
    """Items after one without a kind wait for the list's kind, and still come in order."""
    bare = {k: v for k, v in pod("b").items() if k != "kind"}
    text = kubectl_yaml([pod("a"), bare, pod("c")], "PodList")
    pods, _, _ = load_manifest_input(write(tmp_path, text), NO_STDIN)
    assert keys(pods) == ["ml/a", "ml/b", "ml/c"]


def test_items_of_a_document_that_is_no_list_are_nobodys_pods(tmp_path: Path) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "items": [pod("stray")],
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ml"},
        "spec": {"replicas": 2, "template": {k: v for k, v in pod("t").items() if k in ("metadata", "spec")}},
    }
    pods, _, _ = load_manifest_input(write(tmp_path, yaml.safe_dump(deployment)), NO_STDIN)
    assert keys(pods) == ["ml/web-0", "ml/web-1"]


def test_an_unsupported_list_kind_is_refused_after_its_items(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="unsupported kind 'ServiceList'"):
        load_manifest_input(write(tmp_path, kubectl_yaml([pod("a")], "ServiceList")), NO_STDIN)


def test_a_bad_item_names_the_file_the_object_and_its_line(tmp_path: Path) -> None:
    items = [pod(f"p{i}") for i in range(5)]
    items[3] = pod("bad", cpu="lots")
    text = kubectl_yaml(items)
    starts = [i + 1 for i, t in enumerate(text.splitlines()) if t == "- apiVersion: v1"]
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        load_manifest_input(path, NO_STDIN)
    message = str(caught.value)
    assert message.startswith(f"{path}: Pod ml/bad: spec.containers[0].resources.requests.cpu: 'lots'")
    assert f"(the object starts at line {starts[3]})" in message


def test_a_bad_item_in_a_json_list_names_the_file_the_object_and_its_line(tmp_path: Path) -> None:
    text = json.dumps({"apiVersion": "v1", "items": [pod("a"), pod("bad", cpu=-1)], "kind": "List"}, indent=4)
    line = [i + 1 for i, t in enumerate(text.splitlines()) if t == "        {"][1]  # the second item
    path = write(tmp_path, text, "pods.json")
    with pytest.raises(ManifestError) as caught:
        load_manifest_input(path, NO_STDIN)
    assert str(caught.value).startswith(f"{path}: Pod ml/bad: spec.containers[0].resources.requests.cpu")
    assert f"(the object starts at line {line})" in str(caught.value)


def test_broken_json_after_the_first_items_is_a_json_error(tmp_path: Path) -> None:
    text = json.dumps({"apiVersion": "v1", "items": [pod("a"), pod("b")], "kind": "List"}, indent=2)
    broken = text.replace('"name": "b"', '"name": b', 1)
    with pytest.raises(
        ManifestError, match=r"pods\.yaml: line \d+, column \d+: invalid JSON: Expecting value"
    ):
        load_manifest_input(write(tmp_path, broken), NO_STDIN)


def test_json_on_stdin_and_in_a_yaml_file_reads_as_json(tmp_path: Path) -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod("a"), pod("b")]}, indent=2)
    from_stdin = load_manifest_input("-", io.StringIO(text))
    from_file = load_manifest_input(write(tmp_path, text), NO_STDIN)
    assert keys(from_stdin[0]) == keys(from_file[0]) == ["ml/a", "ml/b"]
    assert from_stdin == from_file == load_manifest_file(Path(write(tmp_path, text, "same.json")))


def test_yaml_that_only_looks_like_json_is_read_as_yaml(tmp_path: Path) -> None:
    text = (
        "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: ml},\n spec: {containers: [{name: c}]}}\n"
    )
    pods, _, _ = load_manifest_input(write(tmp_path, text), NO_STDIN)
    assert keys(pods) == ["ml/a"]
    with pytest.raises(ManifestError, match=r"pods\.yaml: line 2, column \d+: invalid YAML"):
        load_manifest_input(write(tmp_path, "{kind: Pod,\n  metadata: [}\n"), NO_STDIN)


def test_broken_json_in_a_json_file_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"pods\.json: line 2, column \d+: invalid JSON"):
        load_manifest_input(write(tmp_path, '{"kind": "List",\n "items": [}', "pods.json"), NO_STDIN)


def test_the_pod_limit_holds_inside_a_streamed_list(tmp_path: Path) -> None:
    path = write(tmp_path, kubectl_yaml([pod(f"p{i}") for i in range(4)]))
    with pytest.raises(ManifestError, match="more than 3 pods in one plan"):
        load_manifest_input(path, NO_STDIN, max_pods=3)


def test_yaml_errors_name_the_file_and_line(tmp_path: Path) -> None:
    text = kubectl_yaml([pod("a"), pod("b")]).replace("name: b", "name: [b")
    with pytest.raises(ManifestError, match=r"pods\.yaml: line \d+, column \d+: invalid YAML"):
        load_manifest_input(write(tmp_path, text), NO_STDIN)


def test_provisioning_requests_are_taken_out_and_refused_by_nodes(tmp_path: Path) -> None:
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "tpl", "namespace": "ml"},
        "template": {"spec": pod("x")["spec"]},
    }
    path = write(tmp_path, yaml.safe_dump_all([template, pod("a")]))
    found = read_manifest_input(path, NO_STDIN)
    assert keys(found.pods) == ["ml/a"] and list(found.requests.templates) == ["ml/tpl"]
    with pytest.raises(ManifestError, match="unsupported kind 'PodTemplate'"):
        load_manifest_input(path, NO_STDIN)
    # A stray top-level `items` (before `kind`, as kubectl orders keys) counts no pods either.
    stray = yaml.safe_dump({**template, "items": [pod("stray")]})
    found = read_manifest_input(write(tmp_path, stray, "stray.yaml"), NO_STDIN)
    assert found.pods == [] and list(found.requests.templates) == ["ml/tpl"]


def test_progress_reaches_the_end_of_every_source(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.yaml").write_text(kubectl_yaml([pod("a"), pod("b")]))
    (folder / "b.json").write_text(json.dumps(pod("c")))
    seen: list[tuple[int, int]] = []
    found = read_manifest_input(
        str(folder), NO_STDIN, progress=lambda done, total: seen.append((done, total))
    )
    total = sum(len(p.read_bytes()) for p in folder.iterdir())
    assert keys(found.pods) == ["ml/a", "ml/b", "ml/c"]
    assert seen and all(t == total for _, t in seen) and seen[-1][0] == total
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
