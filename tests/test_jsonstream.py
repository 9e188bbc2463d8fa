"""The JSON reader of big `List`s: the same values as `json.loads`, items one by one, its errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpscaler.jsonstream import stream_json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


def rebuilt(text: str) -> Any:
    """The value, with streamed items put back into the object."""
    items: list[Any] = []
    for found in stream_json(text):
        if found.item is not None:
            assert found.item == len(items)
            items.append(found.data)
        elif found.streamed:
            return {**found.data, "items": items}
        else:
            return found.data
    raise AssertionError("no value")


@settings(max_examples=150, deadline=None)
@given(value=JSON_VALUES, items=st.lists(JSON_VALUES, max_size=5), indent=st.sampled_from([None, 0, 2, 4]))
def test_the_same_value_as_json_loads(value: Any, items: list[Any], indent: int | None) -> None:
    for doc in (value, {"apiVersion": "v1", "items": items, "kind": "List", "other": value}):
        text = json.dumps(doc, indent=indent)
        assert rebuilt(text) == json.loads(text)


def test_items_come_one_by_one_with_their_lines() -> None:
    text = json.dumps({"kind": "List", "items": [{"a": 1}, {"b": [2, 3]}, 4]}, indent=2)
    found = list(stream_json(text))
    assert [(f.item, f.line) for f in found[:3]] == [(0, 4), (1, 7), (2, 13)]
    assert found[-1].streamed and found[-1].data == {"kind": "List", "items": []}


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ('{"items": [{"a": 1},\n {"b": }]}', "Expecting value", 2),
        ('{"items": [1 2]}', "',' delimiter", 1),
        ('{"kind": "List"\n "items": []}', "',' delimiter", 2),
        ("{kind: List}", "property name", 1),
        ('{"a": 1}\n---\n', "Extra data", 2),
        ("[1, 2", "Expecting", 1),
    ],
)
def test_errors_are_the_decoders_with_their_line(text: str, message: str, line: int) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        list(stream_json(text))
    assert message in caught.value.msg and caught.value.lineno == line
