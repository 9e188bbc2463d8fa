"""Reading configuration files: YAML and JSON documents with the line of every key, and syntax errors.

A path is a file (possibly multi-document YAML) or a directory whose *.yaml, *.yml and *.json files
are read in name order. YAML goes through `hpscaler.yamlio` with the bounds below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpscaler.config.documents import Loc
from hpscaler.config.validate import ConfigError, ConfigIssue, format_loc
from hpscaler.yamlio import YamlInputError, YamlLimits, read_documents, walk_lines

SUFFIXES = (".yaml", ".yml", ".json")
# A configuration is a few hundred lines: anything much larger is a mistake or an attack.
CONFIG_YAML_LIMITS = YamlLimits(max_depth=64, max_alias_nodes=10_000, max_nodes=1_000_000)


# --- reading --------------------------------------------------------------------------------------


@dataclass
class Raw:
    """One document read from a file, with the line of every key and item."""

    file: str
    index: int
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)


def _line_map(node: yaml.Node | None, file: str, index: int, issues: list[ConfigIssue]) -> dict[Loc, int]:
    """Path -> line of every key and item; duplicated keys are reported (Kubernetes rejects them)."""
    lines: dict[Loc, int] = {}
    for path, current, key_node in walk_lines(node):
        lines.setdefault(path, (key_node or current).start_mark.line + 1)
        if not isinstance(current, yaml.MappingNode):
            continue
        seen: set[str] = set()
        for key_node_, _ in current.value:
            key = str(key_node_.value)
            if key in seen and key != "<<":
                issues.append(
                    ConfigIssue(
                        file,
                        f"document {index + 1}",
                        format_loc((*path, key)),
                        f"key `{key}` appears twice in the same mapping",
                        "keep only one of them (Kubernetes rejects duplicated fields)",
                        "error",
                        key_node_.start_mark.line + 1,
                    )
                )
            seen.add(key)
    return lines


def _syntax_issue(file: str, what: str, exc: YamlInputError, fix: str) -> ConfigIssue:
    return ConfigIssue(file, what, "", str(exc).replace("YAML", what, 1), fix, "error", exc.line)


def _read_yaml(text: str, file: str, issues: list[ConfigIssue]) -> list[Raw]:
    try:
        documents = read_documents(text, CONFIG_YAML_LIMITS)
    except YamlInputError as exc:
        issues.append(
            _syntax_issue(file, "YAML", exc, "fix the syntax there (check indentation, colons and quotes)")
        )
        return []
    return [
        Raw(file, index, doc.data, _line_map(doc.node, file, index, issues))
        for index, doc in enumerate(documents)
    ]


def _read_json(text: str, file: str, issues: list[ConfigIssue]) -> list[Raw]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        issues.append(
            ConfigIssue(
                file,
                "JSON",
                "",
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                "fix the syntax there (check commas, brackets and quotes)",
                "error",
                exc.lineno,
            )
        )
        return []
    except RecursionError:
        issues.append(
            ConfigIssue(file, "JSON", "", "invalid JSON: nested too deeply", "flatten the document")
        )
        return []
    try:
        # JSON is YAML's flow style, so YAML's composer gives line numbers (and duplicated keys).
        documents = read_documents(text, CONFIG_YAML_LIMITS)
    except YamlInputError as exc:
        issues.append(_syntax_issue(file, "JSON", exc, "flatten the document"))
        return []
    lines = _line_map(documents[0].node, file, 0, issues) if documents else {}
    return [Raw(file, 0, data, lines)]


def read_path(path: Path) -> tuple[list[Raw], list[ConfigIssue], list[str]]:
    """The mapping documents under `path`, the problems found reading them, and the files read."""
    issues: list[ConfigIssue] = []
    if path.is_dir():
        try:
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        except OSError as exc:
            fix = "let the user hpscaler runs as read the directory (e.g. chmod 0755)"
            return [], [ConfigIssue(str(path), "directory", "", f"cannot be read: {exc}", fix)], []
        if not files:
            issues.append(
                ConfigIssue(
                    str(path),
                    "directory",
                    "",
                    "holds no .yaml, .yml or .json files",
                    "put the NodePool, HyperpodNodeClass, HpscalerConfig and DescribeCluster files there",
                )
            )
    elif path.is_file():
        files = [path]
    else:
        issues.append(
            ConfigIssue(str(path), "path", "", "does not exist", "give an existing file or directory")
        )
        files = []
    raws: list[Raw] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(ConfigIssue(str(file), "file", "", f"cannot be read: {exc}", "check the file"))
            continue
        before = len(issues)
        found = (
            _read_json(text, str(file), issues)
            if file.suffix == ".json"
            else _read_yaml(text, str(file), issues)
        )
        if len(issues) == before and all(raw.data is None for raw in found):
            issues.append(
                ConfigIssue(
                    str(file),
                    "file",
                    "",
                    "holds no documents (it is empty, or only comments)",
                    "add the NodePool, HyperpodNodeClass or other documents it should hold, or delete it",
                    "warning",
                )
            )
        for raw in found:
            if raw.data is None:
                continue  # an empty document, e.g. a trailing `---`
            if not isinstance(raw.data, dict):
                issues.append(
                    ConfigIssue(
                        raw.file,
                        f"document {raw.index + 1}",
                        "",
                        "is not a mapping",
                        "each document must be one Kubernetes object or one DescribeCluster output",
                    )
                )
                continue
            raws.append(raw)
    return raws, issues, [str(f) for f in files]


def load_documents(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """Every document under `path` as (file, mapping); raises ConfigError on syntax errors."""
    raws, issues, _ = read_path(Path(path))
    if any(i.severity == "error" for i in issues):
        raise ConfigError(issues)
    return [(raw.file, raw.data) for raw in raws]
