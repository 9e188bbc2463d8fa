"""Reading YAML that may be careless or hostile, fast, with the line numbers error messages need.

libyaml's C parser (`yaml.CSafeLoader`) is used when PyYAML was built with it: it parses a 50 MB
manifest about 80 times faster than the pure-Python parser, and it refuses nesting deeper than 1000
levels instead of overflowing the stack. Documents are composed into nodes first, so every key and
item keeps its line, and then constructed with PyYAML's safe constructor.

Bounds (`YamlLimits`), checked on the composed node graph before anything is constructed:

- aliases may add at most `max_alias_nodes` nodes when expanded ("billion laughs": nine levels of
  ten aliases expand to 10^9 nodes from a few hundred bytes), and an alias may not contain itself;
- a document may nest at most `max_depth` levels;
- a file may hold at most `max_nodes` nodes, aliases expanded.

Every way the text can be wrong (syntax, control characters, bad timestamps, unknown tags, deep
nesting with the pure-Python parser) becomes one `YamlInputError` with a line, never a traceback.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml: correct, only slower
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

__all__ = ["DEFAULT_LIMITS", "YamlDocument", "YamlInputError", "YamlLimits", "read_documents", "yaml_error"]

# Below this size the bounds are always checked; above it only when the text can hold an alias.
# Without aliases the node count is bounded by the text's size and libyaml bounds the depth.
_ALWAYS_MEASURE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class YamlLimits:
    """How much structure one file may hold (see the module docstring)."""

    max_depth: int = 100
    max_alias_nodes: int = 100_000
    max_nodes: int = 20_000_000


DEFAULT_LIMITS = YamlLimits()


class YamlInputError(ValueError):
    """Text that is not acceptable YAML; `line` and `column` are 1-based when known."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None) -> None:
        self.problem = problem
        self.line = line
        self.column = column
        where = f" at line {line}" + (f", column {column}" if column is not None else "") if line else ""
        super().__init__(f"invalid YAML{where}: {problem}")


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """One document: the constructed data, its first line, and its composed node when kept."""

    data: Any
    line: int  # 1-based
    node: yaml.Node | None = None  # for line numbers of every key (`walk_lines`)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _measure(root: yaml.Node, limits: YamlLimits) -> int:
    """The document's node count with aliases expanded; raises on cycles, depth and alias bloat.

    Iterative and memoised over the composed graph, so it costs one visit per written node however
    large the expansion would be.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            children = _children(node)
            size = 1 + sum(sizes[id(c)][0] for c in children)
            height = 1 + max((sizes[id(c)][1] for c in children), default=0)
            if height > limits.max_depth:
                raise YamlInputError(
                    f"nested more than {limits.max_depth} levels deep",
                    _line(node),
                    node.start_mark.column + 1,
                )
            sizes[key] = (size, height)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlInputError("an alias refers to a node that contains it (recursive alias)", _line(node))
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    expanded = sizes[id(root)][0]
    if expanded - len(sizes) > limits.max_alias_nodes:
        raise YamlInputError(
            f"aliases expand to {expanded:,} nodes from {len(sizes):,} written ones (at most "
            f"{limits.max_alias_nodes:,} more are allowed); write the repeated parts out instead of aliasing "
            "aliases",
            _line(root),
        )
    return expanded


def yaml_error(exc: BaseException, text: str | bytes) -> YamlInputError:
    """The `YamlInputError` for an exception PyYAML (or a constructor it called) raised on `text`."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return YamlInputError(exc.problem or str(exc), mark.line + 1, mark.column + 1)
    if isinstance(exc, yaml.reader.ReaderError):
        line = None
        if isinstance(exc.position, int):
            end = max(exc.position, 0)
            line = (text.count(b"\n", 0, end) if isinstance(text, bytes) else text.count("\n", 0, end)) + 1
        return YamlInputError(
            f"unacceptable character #x{exc.character:04x} (control characters are not allowed)"
            if isinstance(exc.character, int)
            else str(exc),
            line,
        )
    if isinstance(exc, RecursionError):
        return YamlInputError("nested too deeply")
    if isinstance(exc, MemoryError):
        return YamlInputError("too large to load")
    return YamlInputError(str(exc) or type(exc).__name__)


def read_documents(
    text: str, limits: YamlLimits = DEFAULT_LIMITS, *, keep_nodes: bool = True
) -> list[YamlDocument]:
    """Every document of `text` (empty documents included, as None); raises `YamlInputError`.

    `keep_nodes=False` drops each composed node once its document is built: a large manifest then
    costs only its data.
    """
    documents: list[YamlDocument] = []
    measure = len(text) < _ALWAYS_MEASURE_BYTES or "*" in text
    total = 0
    loader = None
    # Parsing allocates millions of objects that all stay alive: the cyclic collector would walk
    # them again and again for nothing (nodes and data are freed by reference counting).
    collecting = gc.isenabled()
    gc.disable()
    try:
        loader = _SafeLoader(text)
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() said there is one
            if measure:
                total += _measure(node, limits)
                if total > limits.max_nodes:
                    raise YamlInputError(f"holds more than {limits.max_nodes:,} nodes", _line(node))
            data = loader.construct_document(node)
            documents.append(YamlDocument(data, _line(node), node if keep_nodes else None))
    except YamlInputError:
        raise
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # ValueError/OverflowError: e.g. `2001-13-45` resolves as a timestamp that datetime refuses.
        raise yaml_error(exc, text) from None
    finally:
        if loader is not None:
            loader.dispose()
        if collecting:
            gc.enable()
    return documents


def walk_lines(node: yaml.Node | None) -> list[tuple[tuple[str | int, ...], yaml.Node, yaml.Node | None]]:
    """(path, node, key node) of every node under `node`, aliases expanded, iteratively.

    Callers bound the expansion first (`read_documents` does), so the list stays small.
    """
    found: list[tuple[tuple[str | int, ...], yaml.Node, yaml.Node | None]] = []
    if node is None:
        return found
    stack: list[tuple[tuple[str | int, ...], yaml.Node, yaml.Node | None]] = [((), node, None)]
    while stack:
        path, current, key_node = stack.pop()
        found.append((path, current, key_node))
        if isinstance(current, yaml.MappingNode):
            stack.extend(((*path, str(k.value)), v, k) for k, v in reversed(current.value))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(((*path, i), item, None) for i, item in reversed(list(enumerate(current.value))))
    return found
