"""Configuration issues, and pydantic validation errors translated into them.

Every issue names the file, the object and the field at fault, and says how to fix it; the loader
collects them all before failing, so one `check-config` run shows everything that is wrong. The checks
that need several objects at once are in `hpscaler.config.checks`.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from hpscaler.config.documents import Loc, Problem

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class ConfigIssue:
    """One thing wrong (or suspicious) in the configuration."""

    file: str
    obj: str  # e.g. "NodePool gpunodepool"
    field: str  # dotted path with indexes: "spec.template.spec.requirements[1].operator"
    message: str
    fix: str
    severity: Severity = "error"
    line: int | None = None

    def __str__(self) -> str:
        text = ": ".join(part for part in (self.file, self.obj, self.field, self.message) if part)
        if self.fix:
            text += f". Fix: {self.fix}"
        if self.line is not None:
            text += f" (line {self.line})"
        return f"warning: {text}" if self.severity == "warning" else text


class ConfigError(Exception):
    """The configuration cannot be used; `issues` holds every error found (and the warnings)."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        ordered = sorted(issues, key=lambda i: i.severity != "error")
        self.issues: list[ConfigIssue] = ordered
        super().__init__(str(self))

    @property
    def errors(self) -> list[ConfigIssue]:
        """The issues that make the configuration unusable."""
        return [i for i in self.issues if i.severity == "error"]

    def __str__(self) -> str:
        count = len(self.errors)
        head = f"{count} configuration error{'s' if count != 1 else ''}"
        return "\n".join([head + ":", *(f"  {issue}" for issue in self.issues)])


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_loc(loc: Loc) -> str:
    """("spec", "requirements", 1, "operator") -> "spec.requirements[1].operator"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'  # map keys such as nvidia.com/gpu
    return out


@dataclass(frozen=True)
class Origin:
    """Where a document came from, so issues about it can point at the file, object and line."""

    file: str
    obj: str
    lines: Mapping[Loc, int] = field(default_factory=dict)
    prefix: Loc = ()  # position of the document inside its YAML node (a List's items[i])

    def issue(self, loc: Loc, message: str, fix: str, severity: Severity = "error") -> ConfigIssue:
        """An issue at `loc` (relative to the document root)."""
        full = (*self.prefix, *loc)
        line = None
        for end in range(len(full), -1, -1):
            line = self.lines.get(full[:end])
            if line is not None:
                break
        return ConfigIssue(self.file, self.obj, format_loc(loc), message, fix, severity, line)

    def problem(self, problem: Problem, base: Loc = ()) -> ConfigIssue:
        """An issue from a document's own `problems()`."""
        return self.issue((*base, *problem.loc), problem.message, problem.fix, problem.severity)

    def named(self, obj: str) -> Origin:
        """The same place, describing a different object (an instance group inside DescribeCluster)."""
        return replace(self, obj=obj)


def suggest(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The closest candidate ("did you mean"), matching case-insensitively first."""
    options = list(candidates)
    for option in options:
        if option.lower() == word.lower():
            return option
    close = difflib.get_close_matches(word, options, n=1, cutoff=cutoff)
    return close[0] if close else None


# --- pydantic errors -> issues --------------------------------------------------------------------


def _unwrap(annotation: Any, metadata: list[Any]) -> Any:
    """Strip Optional and Annotated, collecting Annotated's constraints into `metadata`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            for item in extra:
                metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field(model: type[BaseModel], key: str) -> tuple[str, FieldInfo] | None:
    for name, info in model.model_fields.items():
        if (info.alias or name) == key:
            return info.alias or name, info
    return None


@dataclass
class _Target:
    """What a pydantic error location points at."""

    name: str = ""  # the last model field on the path ("weight", "limits")
    metadata: list[Any] = field(default_factory=list)  # constraints on the value at the location
    model: type[BaseModel] | None = None  # set when the location is itself a model


def _navigate(root: type[BaseModel], loc: Loc) -> _Target:
    target = _Target(model=root)
    current: Any = root
    for part in loc:
        metadata: list[Any] = []
        current = _unwrap(current, metadata)
        if _is_model(current):
            found = _field(current, part) if isinstance(part, str) else None
            if found is None:
                return _Target(name=target.name)
            target.name, info = found
            metadata = list(info.metadata)
            current = info.annotation
        else:
            args = get_args(current)
            if not args:
                return _Target(name=target.name)
            current = args[-1] if get_origin(current) is dict else args[0]
        target.metadata = metadata
    target.model = None
    final = _unwrap(current, target.metadata)
    if _is_model(final):
        target.model = final
    return target


def _bounds(metadata: Iterable[Any]) -> str:
    low = high = ""
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"at least {item.ge}"
        elif isinstance(item, annotated_types.Gt):
            low = f"greater than {item.gt}"
        elif isinstance(item, annotated_types.Le):
            high = f"at most {item.le}"
        elif isinstance(item, annotated_types.Lt):
            high = f"less than {item.lt}"
    if low.startswith("at least") and high.startswith("at most"):
        return f"between {low.removeprefix('at least ')} and {high.removeprefix('at most ')}"
    return " and ".join(part for part in (low, high) if part)


_DURATION_FIX = "write a Go duration such as 30s, 10m, 1h30m or 720h"
_FIELD_FIXES: dict[str, str] = {
    "weight": "use a weight from 1 (tried last) to 100 (tried first), or remove it",
    "instanceGroups": "list 1 to 10 instance groups; split larger sets across several HyperpodNodeClasses, "
    "each with its own NodePool",
    "expireAfter": _DURATION_FIX + ", or Never",
    "consolidateAfter": _DURATION_FIX + ", or Never (HyperPod advises up to 2m so pods can checkpoint)",
    "terminationGracePeriod": _DURATION_FIX,
    "duration": _DURATION_FIX,
    "limits": "write a Kubernetes quantity such as 1000, 500m, 64Gi or 8",
    "nodes": 'write a node count ("5") or a percentage ("10%")',
    "placementScores": "use a Spot placement score from 1 to 10",
    "nodeClassRef": "point nodeClassRef at a HyperpodNodeClass: group karpenter.sagemaker.amazonaws.com, "
    "kind HyperpodNodeClass, name <its metadata.name>",
    "metadata": "give the object a metadata.name",
    "name": "give the object a name",
}


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _describe(error: Mapping[str, Any], target: _Target, loc: Loc) -> tuple[str, str]:
    kind, value = error["type"], error.get("input")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    fix = _FIELD_FIXES.get(target.name, "")
    if kind == "missing":
        return "is required", fix or f"add `{loc[-1]}`"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        close = suggest(str(value), allowed) if isinstance(value, str) else None
        return (
            f"must be one of {', '.join(allowed)} (got {_shown(value)})",
            f"did you mean {close}?" if close else f"use one of {', '.join(allowed)}",
        )
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        limit = _bounds(target.metadata) or error["msg"].removeprefix("Input should be ")
        return f"must be {limit} (got {_shown(value)})", fix or f"use a value {limit}"
    if kind in ("too_long", "too_short"):
        actual = ctx.get("actual_length")
        if kind == "too_long":
            return f"must have at most {ctx.get('max_length')} items (got {actual})", fix
        return f"must have at least {ctx.get('min_length')} item(s) (got {actual})", fix
    if kind == "string_too_short":
        return "must not be empty", fix or "give a value"
    if kind == "string_type":
        quoted = f'quote the value: "{_shown(value).strip(chr(39))}"'
        return f"must be a string (got {_shown(value)})", fix or quoted
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number (got {_shown(value)})", fix or "write a whole number"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number (got {_shown(value)})", fix or "write a number"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false (got {_shown(value)})", "write true or false"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping (got {_shown(value)})", fix or "write key: value pairs here"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list (got {_shown(value)})", fix or "write a list, e.g. [a, b]"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"]), fix or "correct the value"
    return error["msg"], fix or "correct the value"


def translate(
    error: ValidationError, model: type[BaseModel], origin: Origin, base: Loc = ()
) -> list[ConfigIssue]:
    """pydantic's errors for a document validated as `model`, as issues with YAML field paths."""
    issues: list[ConfigIssue] = []
    for item in error.errors(include_url=False):
        loc: Loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden":
            key = str(loc[-1])
            parent = _navigate(model, loc[:-1]).model
            known = [info.alias or name for name, info in parent.model_fields.items()] if parent else []
            close = suggest(key, known)
            fix = f"did you mean `{close}`?" if close else f"remove it (allowed here: {', '.join(known)})"
            issues.append(origin.issue((*base, *loc), f"unknown field `{key}`", fix))
            continue
        message, fix = _describe(item, _navigate(model, loc), loc)
        issues.append(origin.issue((*base, *loc), message, fix))
    return issues


def near_misses(model: type[BaseModel], data: Any, origin: Origin, loc: Loc = ()) -> list[ConfigIssue]:
    """Warnings for keys a lenient model ignores but that look like misspelt known keys."""
    found: list[ConfigIssue] = []
    if not isinstance(data, dict):
        return found
    known = {info.alias or name: info for name, info in model.model_fields.items()}
    for key, value in data.items():
        info = known.get(key)
        if info is None:
            close = suggest(str(key), known, cutoff=0.85) if not str(key).startswith("_") else None
            if close:
                found.append(
                    origin.issue(
                        (*loc, str(key)),
                        f"unknown field `{key}` is ignored",
                        f"did you mean `{close}`?",
                        "warning",
                    )
                )
            continue
        inner = _unwrap(info.annotation, [])
        if _is_model(inner):
            found += near_misses(inner, value, origin, (*loc, key))
        elif get_origin(inner) is list and isinstance(value, list):
            item_type = _unwrap(get_args(inner)[0], [])
            if _is_model(item_type):
                for i, item in enumerate(value):
                    found += near_misses(item_type, item, origin, (*loc, key, i))
    return found
