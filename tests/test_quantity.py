"""Quantities: parsed once per distinct text, refused every time they are wrong."""

from __future__ import annotations

import pytest

from hpscaler.quantity import QuantityError, parse_resource


def test_a_repeated_quantity_parses_the_same_as_the_first_time() -> None:
    assert parse_resource("cpu", "500m") == parse_resource("cpu", "500m") == 500
    assert parse_resource("memory", "500m") == 1  # the same text of another resource: rounded up bytes
    assert parse_resource("memory", "1Gi") == 2**30
    assert parse_resource("cpu", 2) == parse_resource("cpu", "2") == 2000


@pytest.mark.parametrize("text", ["lots", "-1", "1e400"])
def test_a_refused_quantity_is_refused_every_time(text: str) -> None:
    for _ in range(3):
        with pytest.raises(QuantityError):
            parse_resource("cpu", text)
