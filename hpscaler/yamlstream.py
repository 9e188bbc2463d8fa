"""Reading big YAML manifests object by object, straight from libyaml's events.

`hpscaler.yamlio.read_documents` composes each document into a node graph (every key and item
keeps its line), then constructs it. For a `kubectl get pods -o yaml` of 100,000 pods that is one
53 MB document: millions of node objects alive at once (2.7 GB), then every dict built before the
first pod is converted. `stream_documents` builds the data from the parser's events instead, with
PyYAML's safe semantics (the same implicit resolvers and scalar constructors, merge keys, aliases
sharing one object), and hands out each item of a document's top-level `items` sequence as soon as
it is complete, so the caller converts it and lets it go. Nothing but the item being built is held.

The same bounds as `yamlio` (`YamlLimits`) hold, checked as the events arrive: nesting depth, nodes
aliases add when expanded, nodes in the file. Every fault is one `YamlInputError` with a line.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from hpscaler.yamlio import DEFAULT_LIMITS, YamlInputError, YamlLimits, yaml_error

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # PyYAML built without libyaml: correct, only slower
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = ["Streamed", "stream_documents"]

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
_SET, _OMAP, _PAIRS = _TAG + "set", _TAG + "omap", _TAG + "pairs"
_MERGE, _VALUE = _TAG + "merge", _TAG + "value"
_RESOLVERS: dict[Any, list[tuple[str, Any]]] = _Loader.yaml_implicit_resolvers
_CONSTRUCTOR = SafeConstructor()
_SCALARS = SafeConstructor.yaml_constructors
_NONE = object()  # "no key yet" in a mapping frame, and "not memoised"
_MERGE_KEY = object()  # the plain `<<` key
_VALUE_KEY = object()  # the plain `=` key, which PyYAML reads as the string "="
# Distinct scalars remembered (repeated keys and values share one object), checked between objects:
# beyond this the memos start again, so unique values (names, uids) cannot grow them without bound.
_MEMO_SIZE = 200_000


@dataclass(slots=True)
class Streamed:
    """One complete document, or one item of a document's top-level `items` sequence.

    For an item, `item` is its index and `shell` is the document's mapping as built so far (the
    keys before `items`: `kubectl -o yaml` writes `kind` after them). A document whose items were
    handed out one by one comes last, with `streamed` set and `items: []`.
    """

    data: Any
    line: int  # 1-based line where the document or item starts
    document: int  # 1-based index of the document in the file
    item: int | None = None
    shell: dict[Any, Any] | None = None
    document_line: int = 0  # for an item: the line its document starts on
    streamed: bool = False
    position: int = 0  # how far into the text the object is (for progress)


class _Frame:
    """A mapping or sequence being built."""

    __slots__ = (
        "anchor",
        "container",
        "is_map",
        "item_line",
        "items",
        "key",
        "line",
        "merges",
        "split",
        "start",
        "tag",
    )

    def __init__(
        self, container: Any, is_map: bool, line: int, anchor: str | None, start: int, tag: str
    ) -> None:
        self.container = container
        self.is_map = is_map
        self.line = line
        self.anchor = anchor
        self.start = start  # nodes counted when it opened (for the expanded size of an anchor)
        self.tag = tag
        self.key: Any = _NONE
        self.merges: list[Any] | None = None
        self.split = False  # the top-level `items` sequence whose items are handed out
        self.items = 0
        self.item_line = 0


def _resolve(value: str, implicit: tuple[bool, bool]) -> str:
    """The tag PyYAML's resolver gives an untagged scalar (`Resolver.resolve`, no path resolvers)."""
    if implicit[0]:
        for tag, regexp in _RESOLVERS.get(value[0] if value else "", []) + _RESOLVERS.get(None, []):
            if regexp.match(value):
                return str(tag)
    return _STR


def _construct(tag: str, value: str, event: Any) -> Any:
    if tag == _STR:
        return value
    if tag == _MERGE:
        return _MERGE_KEY
    if tag == _VALUE:
        return _VALUE_KEY
    constructor = _SCALARS.get(tag)
    if constructor is None or tag in (_MAP, _SEQ, _SET, _OMAP, _PAIRS):
        raise YamlInputError(
            f"could not determine a constructor for the tag {tag!r}",
            event.start_mark.line + 1,
            event.start_mark.column + 1,
        )
    return constructor(_CONSTRUCTOR, ScalarNode(tag, value, event.start_mark, event.end_mark))


def _finish_mapping(frame: _Frame) -> Any:
    mapping: dict[Any, Any] = frame.container
    if frame.merges is not None:
        # PyYAML's `flatten_mapping`: the merged pairs come first, the first merged mapping wins
        # over later ones, and the mapping's own keys win over all of them.
        merged: dict[Any, Any] = {}
        for source in reversed(frame.merges):
            merged.update(source)
        merged.update(mapping)
        mapping = merged
    if frame.tag == _SET:
        return set(mapping)
    return mapping


def _finish_sequence(frame: _Frame) -> Any:
    items: list[Any] = frame.container
    if frame.tag in (_OMAP, _PAIRS):
        if not all(isinstance(i, dict) and len(i) == 1 for i in items):
            raise YamlInputError(f"a {frame.tag} holds mappings of one key each", frame.line)
        return [next(iter(i.items())) for i in items]
    return items


def _merge_sources(value: Any, line: int) -> list[Any]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return list(value)
    raise YamlInputError("expected a mapping or list of mappings for merging", line)


def stream_documents(
    text: str | bytes, limits: YamlLimits = DEFAULT_LIMITS, *, split_items: bool = True
) -> Iterator[Streamed]:
    """Every document of `text` (empty ones as None), with the items of a document's top-level
    `items` sequence handed out one by one when `split_items`; raises `YamlInputError`."""
    loader = _Loader(text)
    # As in `yamlio`: everything built stays alive, so the cyclic collector would only rescan it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield from _Builder(limits, split_items).run(loader.get_event)
    except YamlInputError:
        raise
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise yaml_error(exc, text) from None
    finally:
        loader.dispose()
        if collecting:
            gc.enable()


class _Builder:
    """Python data from parser events (see the module docstring); one instance per text."""

    def __init__(self, limits: YamlLimits, split_items: bool) -> None:
        self.limits = limits
        self.split_items = split_items
        self.memo: dict[str, Any] = {}
        self.quoted: dict[str, str] = {}
        self.anchors: dict[str, tuple[Any, int]] = {}  # anchor -> (object, nodes it expands to)
        self.open_anchors: set[str] = set()
        self.total = 0  # nodes in the file so far, aliases expanded
        self.alias_nodes = 0  # nodes aliases added in this document

    def _scalar(self, event: Any) -> Any:
        tag, value = event.tag, event.value
        if tag is None or tag == "!":
            if event.implicit[0]:
                found = self.memo[value] = _construct(_resolve(value, event.implicit), value, event)
                return found
            return self.quoted.setdefault(value, value) if len(value) <= 64 else value
        return _construct(tag, value, event)

    def _trim(self) -> None:
        if len(self.memo) > _MEMO_SIZE:
            self.memo.clear()
        if len(self.quoted) > _MEMO_SIZE:
            self.quoted.clear()

    def _count(self, nodes: int, event: Any) -> None:
        self.total += nodes
        if self.total > self.limits.max_nodes:
            raise YamlInputError(f"holds more than {self.limits.max_nodes:,} nodes", _line(event))

    def _alias(self, event: Any) -> Any:
        name, line = event.anchor, event.start_mark.line + 1
        if name in self.open_anchors:
            raise YamlInputError("an alias refers to a node that contains it (recursive alias)", line)
        if name not in self.anchors:
            raise YamlInputError(f"found undefined alias {name!r}", line, event.start_mark.column + 1)
        value, size = self.anchors[name]
        self.alias_nodes += size
        if self.alias_nodes > self.limits.max_alias_nodes:
            raise YamlInputError(
                f"aliases add more than {self.limits.max_alias_nodes:,} nodes when expanded; write the "
                "repeated parts out instead of aliasing aliases",
                line,
            )
        self._count(size, event)
        return value

    def run(self, get_event: Any) -> Iterator[Streamed]:
        """The documents and items of the event stream `get_event` returns (see `stream_documents`)."""
        stack: list[_Frame] = []
        top: _Frame | None = None  # stack[-1]
        document = line = total = 0
        root: Any = None
        streamed = False
        memo, quoted = self.memo, self.quoted
        max_depth, max_nodes = self.limits.max_depth, self.limits.max_nodes
        while True:
            event = get_event()
            cls = event.__class__
            ended: _Frame | None = None
            if cls is ScalarEvent:
                if (
                    event.anchor is None
                    and event.tag is None
                    and len(stack) < max_depth
                    and total < max_nodes
                ):
                    total += 1  # the hot path, inlined: a plain or quoted scalar without tag or anchor
                    value = event.value
                    if event.implicit[0]:
                        value = memo.get(value, _NONE)
                        if value is _NONE:
                            value = self._scalar(event)
                    elif len(value) <= 64:
                        value = quoted.setdefault(value, value)
                else:
                    self.total = total
                    self._enter(len(stack) + 1, event)
                    value = self._scalar(event)
                    total = self.total
                    if event.anchor is not None:
                        self.anchors[event.anchor] = (value, 1)
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                is_map = cls is MappingStartEvent
                if (
                    event.anchor is None
                    and event.tag is None
                    and len(stack) < max_depth
                    and total < max_nodes
                ):
                    total += 1  # the hot path, inlined: an untagged collection without an anchor
                    frame = _Frame(
                        {} if is_map else [],
                        is_map,
                        event.start_mark.line + 1,
                        None,
                        0,
                        _MAP if is_map else _SEQ,
                    )
                else:
                    self.total = total
                    self._enter(len(stack) + 1, event)
                    frame = self._open(event, is_map)
                    total = self.total
                if top is None:
                    line = frame.line
                elif top.split:
                    top.item_line = frame.line
                elif self.split_items and not is_map and len(stack) == 1 and top.key == "items":
                    frame.split = event.anchor is None and frame.tag == _SEQ
                stack.append(frame)
                top = frame
                continue
            elif cls is MappingEndEvent or cls is SequenceEndEvent:
                ended = stack.pop()
                top = stack[-1] if stack else None
                value = ended.container
                if ended.merges is not None or (ended.tag is not _MAP and ended.tag is not _SEQ):
                    value = _finish_mapping(ended) if ended.is_map else _finish_sequence(ended)
                if ended.anchor is not None:
                    self.open_anchors.discard(ended.anchor)
                    self.anchors[ended.anchor] = (value, total - ended.start)
                if ended.split:
                    value, streamed = [], True
            elif cls is AliasEvent:
                self.total = total
                value = self._alias(event)
                total = self.total
            elif cls is DocumentStartEvent:
                document += 1
                streamed = False
                continue
            elif cls is DocumentEndEvent:
                yield Streamed(root, line, document, streamed=streamed, position=event.start_mark.index)
                self.anchors.clear()
                self.alias_nodes = 0
                self._trim()
                continue
            elif cls is StreamEndEvent:
                return
            else:  # the stream's start
                continue
            if value.__class__ is object:  # the `<<` or `=` key
                value = self._plain(
                    value, top if top is not None and top.is_map and top.key is _NONE else None, event
                )
            if top is None:  # the document's root
                if ended is None:
                    line = _line(event)
                root = value
            elif top.is_map:
                if top.key is _NONE:
                    if value.__class__ is not str and value is not _MERGE_KEY:
                        try:
                            hash(value)
                        except TypeError:
                            raise YamlInputError("found unhashable key", _line(event)) from None
                    top.key = value
                elif top.key is _MERGE_KEY:
                    if top.merges is None:
                        top.merges = []
                    top.merges.extend(_merge_sources(value, _line(event)))
                    top.key = _NONE
                else:
                    top.container[top.key] = value
                    top.key = _NONE
            elif top.split:
                if ended is None:
                    top.item_line = _line(event)
                yield Streamed(
                    value,
                    top.item_line,
                    document,
                    top.items,
                    stack[0].container,
                    line,
                    position=event.start_mark.index,
                )
                top.items += 1
                self._trim()
            else:
                top.container.append(value)

    @staticmethod
    def _plain(value: Any, key_of: _Frame | None, event: Any) -> Any:
        """`value`, unless it is the `<<` or `=` key: those are keys only (`=` reads as "=")."""
        if value is not _MERGE_KEY and value is not _VALUE_KEY:
            return value
        if key_of is None:
            tag = _MERGE if value is _MERGE_KEY else _VALUE
            raise YamlInputError(f"could not determine a constructor for the tag {tag!r}", _line(event))
        return value if value is _MERGE_KEY else "="

    def _enter(self, depth: int, event: Any) -> None:
        """Bounds checked for each node: depth, the file's node count, a duplicated anchor."""
        if depth > self.limits.max_depth:
            mark = event.start_mark
            raise YamlInputError(
                f"nested more than {self.limits.max_depth} levels deep", mark.line + 1, mark.column + 1
            )
        if event.anchor is not None and (event.anchor in self.anchors or event.anchor in self.open_anchors):
            raise YamlInputError(f"found duplicate anchor {event.anchor!r}", _line(event))
        self._count(1, event)

    def _open(self, event: Any, is_map: bool) -> _Frame:
        tag = event.tag if event.tag not in (None, "!") else (_MAP if is_map else _SEQ)
        if tag not in (_MAP, _SEQ, _SET, _OMAP, _PAIRS) or is_map != (tag in (_MAP, _SET)):
            mark = event.start_mark
            raise YamlInputError(
                f"could not determine a constructor for the tag {tag!r}", mark.line + 1, mark.column + 1
            )
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        return _Frame({} if is_map else [], is_map, _line(event), event.anchor, self.total, tag)


def _line(event: Any) -> int:
    return int(event.start_mark.line) + 1
