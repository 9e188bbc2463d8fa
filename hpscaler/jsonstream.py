"""Reading a big JSON object with the items of its top-level `items` array one at a time.

`kubectl get pods -A -o json` on a large cluster is one object whose `items` hold every pod (with
`managedFields`, often 2-3 KB each). `json.loads` would build all of them before the first is
used. `stream_json` walks the top-level object itself and decodes each item with
`json.JSONDecoder.raw_decode`, the standard library's C decoder, so the caller can convert an item
and let it go before the next is built. Other values are decoded whole. Errors are the decoder's
`json.JSONDecodeError`, with the line and column in the whole text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from hpscaler.yamlstream import Streamed

__all__ = ["stream_json"]

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match is not None else pos


def _expect(text: str, pos: int, allowed: str, what: str) -> str:
    char = text[pos : pos + 1]
    if not char or char not in allowed:
        raise json.JSONDecodeError(f"Expecting {what}", text, pos)
    return char


def stream_json(text: str) -> Iterator[Streamed]:
    """The one JSON value of `text`: an object's `items` one by one (`Streamed.item` set), then the
    object without them (`streamed`); any other value whole. Raises `json.JSONDecodeError`."""
    pos = _skip(text, 0)
    if text[pos : pos + 1] != "{":
        value, pos = _DECODER.raw_decode(text, pos)
        _end(text, pos)
        yield Streamed(value, 1, 1, position=len(text))
        return
    shell: dict[str, Any] = {}
    streamed = False
    line, counted = 1, 0  # the line at `counted`, kept current as the items go by
    pos = _skip(text, pos + 1)
    if text[pos : pos + 1] == "}":
        pos += 1
    else:
        while True:
            _expect(text, pos, '"', "property name enclosed in double quotes")
            key, pos = _DECODER.raw_decode(text, pos)
            pos = _skip(text, pos)
            _expect(text, pos, ":", "':' delimiter")
            pos = _skip(text, pos + 1)
            if key == "items" and text[pos : pos + 1] == "[":
                index = 0
                pos = _skip(text, pos + 1)
                if text[pos : pos + 1] == "]":
                    pos += 1
                else:
                    while True:
                        line, counted = line + text.count("\n", counted, pos), pos
                        item, pos = _DECODER.raw_decode(text, pos)
                        yield Streamed(item, line, 1, index, shell, 1, position=pos)
                        del item  # converted by the caller: let it go
                        index += 1
                        pos = _skip(text, pos)
                        if _expect(text, pos, ",]", "',' delimiter") == "]":
                            pos += 1
                            break
                        pos = _skip(text, pos + 1)
                shell[key], streamed = [], True
            else:
                shell[key], pos = _DECODER.raw_decode(text, pos)
            pos = _skip(text, pos)
            if _expect(text, pos, ",}", "',' delimiter") == "}":
                pos += 1
                break
            pos = _skip(text, pos + 1)
    _end(text, pos)
    yield Streamed(shell, 1, 1, streamed=streamed, position=len(text))


def _end(text: str, pos: int) -> None:
    pos = _skip(text, pos)
    if pos != len(text):
        raise json.JSONDecodeError("Extra data", text, pos)
