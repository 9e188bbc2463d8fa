"""The event-stream YAML reader: PyYAML's safe semantics, the same bounds, List items one by one."""

from __future__ import annotations

import datetime
import gc
from pathlib import Path
from typing import Any

import pytest
from hostile import billion_laughs, deeply_nested, mutated, with_control_character
from hypothesis import HealthCheck, given, settings

from hpscaler.yamlio import YamlInputError, YamlLimits, read_documents
from hpscaler.yamlstream import stream_documents

REPO = Path(__file__).resolve().parents[2]
INFLATE = (REPO / "config" / "workloads" / "inflate.yaml").read_text()

# Every scalar kind YAML 1.1 resolves, tags, merge keys, aliases, and empty documents.
SAMPLES = [
    "a: yes\nb: on\nc: 0x1F\nd: 1_000\ne: .inf\nf: 2024-01-01T00:00:00Z\ng: ~\nh: '1'\n"
    "i: 1e3\nj: 0o17\nk: 190:20:30\n",
    "a: !!str 12\nb: !!binary aGVsbG8=\nc: !!float 1\nd: ! 12\ne: !!set {x, y}\nf: !!omap [{a: 1}, {b: 2}]\n",
    "base: &b {cpu: 1}\nx: *b\ny: *b\n",
    "a: {<<: [{x: 1, y: 2}, {x: 3, z: 4}], x: 9}\nb: {<<: {p: 1}, q: 2}\n=: eq\n",
    "---\n---\n",
    "",
    "# only a comment\n",
    "x\n---\n- 1\n- 2\n",
    "items: [1, 2, {a: b}]\nkind: List\n",
    "kind: List\nitems:\n- &p {a: 1}\n- *p\n",
    "a: &x [1]\nitems: *x\n",
    "? [1, 2]\n: no\n",
]


def _old(text: str) -> list[tuple[Any, int]]:
    return [(doc.data, doc.line) for doc in read_documents(text, keep_nodes=False)]


def _new(text: str, split: bool = True) -> list[tuple[Any, int]]:
    """The documents, with each document's streamed items put back where they came from."""
    documents: list[tuple[Any, int]] = []
    items: list[Any] = []
    for found in stream_documents(text, split_items=split):
        if found.item is not None:
            assert found.item == len(items)
            items.append(found.data)
            continue
        data = found.data
        if found.streamed:
            data = {**data, "items": items}
            items = []
        documents.append((data, found.line))
    return documents


@pytest.mark.parametrize("text", [t for t in SAMPLES if not t.startswith("?")])
@pytest.mark.parametrize("split", [False, True])
def test_same_data_and_lines_as_the_composing_reader(text: str, split: bool) -> None:
    assert _new(text, split) == _old(text)


def test_the_repository_manifests_read_the_same() -> None:
    files = [
        *REPO.glob("config/**/*.yaml"),
        *REPO.glob("deploy/**/*.yaml"),
        *REPO.glob("hpscaler/examples/*"),
    ]
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            expected = _old(text)
        except YamlInputError as exc:  # CloudFormation's !Ref: both refuse it
            with pytest.raises(YamlInputError) as caught:
                _new(text)
            # The stream names the first one in the text; PyYAML's constructor the first it builds.
            assert caught.value.problem == exc.problem, path
            assert caught.value.line is not None and exc.line is not None and caught.value.line <= exc.line
            continue
        assert _new(text) == expected, path


def test_scalars_are_typed_as_pyyaml_types_them() -> None:
    ((doc, _),) = _new(SAMPLES[0])
    assert doc == {
        "a": True,
        "b": True,
        "c": 31,
        "d": 1000,
        "e": float("inf"),
        "f": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        "g": None,
        "h": "1",
        "i": "1e3",  # YAML 1.1 floats need a dot
        "j": "0o17",
        "k": 685230,
    }


def test_an_alias_is_the_same_object_and_merge_keys_follow_pyyaml() -> None:
    ((doc, _),) = _new(SAMPLES[2])
    assert doc["x"] is doc["y"] is doc["base"]
    ((doc, _),) = _new(SAMPLES[3])
    assert doc == {"a": {"x": 9, "y": 2, "z": 4}, "b": {"p": 1, "q": 2}, "=": "eq"}


def test_items_come_one_by_one_with_their_lines_and_the_shell_so_far() -> None:
    text = (
        "apiVersion: v1\nitems:\n- kind: Pod\n  metadata: {name: a}\n- kind: Pod\n  metadata: {name: b}\n"
        "kind: List\n"
    )
    seen = []
    for found in stream_documents(text):
        shell = dict(found.shell) if found.shell is not None else None
        seen.append((found.item, found.line, found.document_line, shell, found.streamed))
    assert seen[:2] == [(0, 3, 1, {"apiVersion": "v1"}, False), (1, 5, 1, {"apiVersion": "v1"}, False)]
    assert seen[2][4] is True  # the document, last, without its items; kubectl writes `kind` after them
    assert list(stream_documents(text))[-1].data == {"apiVersion": "v1", "items": [], "kind": "List"}


def test_a_streamed_item_is_not_kept() -> None:
    """Once handed out, an item is held by the caller only: no list of earlier items grows."""
    text = "items:\n" + "".join(f"- {{name: p{i}, big: [{i}, {i}]}}\n" for i in range(50))
    earlier: Any = None
    for found in stream_documents(text):
        if found.item == 10:
            earlier = found.data
        if found.item == 40:
            assert not [r for r in gc.get_referrers(earlier) if isinstance(r, list | dict)]
            assert earlier == {"name": "p10", "big": [10, 10]}
    assert earlier is not None


@pytest.mark.parametrize(
    ("text", "problem", "line"),
    [
        ("a: 1\nb: \x01\n", "unacceptable character #x0001", 2),
        ("a: 1\nb: 2001-13-45\n", "month must be in 1..12", None),
        ("a: !!python/object:os.system x\n", "could not determine a constructor", 1),
        ("a: !custom {x: 1}\n", "could not determine a constructor", 1),
        ("a: [1\n", "", 2),
        ("a: &a [*a]\n", "recursive alias", 1),
        ("a: *nowhere\n", "undefined alias", 1),
        ("a: &x 1\nb: &x 2\n", "duplicate anchor", 2),
        ("? [1, 2]\n: no\n", "unhashable key", 1),
        ("a: {<<: 5}\n", "mapping or list of mappings for merging", 1),
        ("- <<\n", "could not determine a constructor", 1),
        (billion_laughs(), "aliases add more than 100,000 nodes", None),
        (deeply_nested(150), "nested more than 100 levels deep", 1),
        (deeply_nested(), "", None),
    ],
)
def test_every_fault_is_one_yaml_input_error_with_its_line(text: str, problem: str, line: int | None) -> None:
    with pytest.raises(YamlInputError, match="invalid YAML") as caught:
        list(stream_documents(text))
    assert problem in caught.value.problem
    if line is not None:
        assert caught.value.line == line


def test_the_file_node_limit_holds() -> None:
    with pytest.raises(YamlInputError, match="more than 50 nodes"):
        list(stream_documents("[" + ", ".join("1" for _ in range(100)) + "]", YamlLimits(max_nodes=50)))


def test_bytes_and_control_characters_name_the_line() -> None:
    with pytest.raises(YamlInputError) as caught:
        list(stream_documents(with_control_character(INFLATE).encode()))
    assert caught.value.line == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mutated(INFLATE))
def test_mutated_manifests_read_as_the_composing_reader_reads_them(text: str) -> None:
    try:
        expected = _old(text)
    except YamlInputError:
        with pytest.raises(YamlInputError):
            _new(text)
        return
    assert _new(text) == expected
