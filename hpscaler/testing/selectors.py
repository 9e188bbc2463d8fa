"""Label and field selectors as the API server parses them from query strings and PDB specs."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET = re.compile(r"^(?P<key>[^\s!=<>()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_BINARY = re.compile(r"^(?P<key>[^\s!=<>()]+)\s*(?P<op>==|!=|=|<|>)\s*(?P<value>[^\s!=<>(),]*)$")


class SelectorError(ValueError):
    """A selector the API server would answer with 400 Bad Request."""


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    """`key op values` with op one of In, NotIn, Exists, DoesNotExist, Gt, Lt."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with `labels` meets the requirement."""
        value = labels.get(self.key)
        if self.op == "In":
            return value is not None and value in self.values
        if self.op == "NotIn":
            return value is None or value not in self.values
        if self.op == "Exists":
            return value is not None
        if self.op == "DoesNotExist":
            return value is None
        try:
            number, bound = int(value or ""), int(self.values[0])
        except ValueError:
            return False
        return number > bound if self.op == "Gt" else number < bound


LabelSelector = tuple[LabelRequirement, ...]


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _check_key(key: str) -> str:
    if not _KEY.match(key) or len(key.rpartition("/")[2]) > 63:
        raise SelectorError(f"invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"invalid label value {value!r}")
    return value


def parse_label_selector(text: str) -> LabelSelector:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k,l>3` into requirements (all must hold)."""
    found: list[LabelRequirement] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            if text.strip():
                raise SelectorError(f"empty requirement in label selector {text!r}")
            continue
        if part.startswith("!"):
            found.append(LabelRequirement(_check_key(part[1:].strip()), "DoesNotExist"))
            continue
        match = _SET.match(part)
        if match:
            values = tuple(_check_value(v.strip()) for v in match["values"].split(","))
            op = "In" if match["op"] == "in" else "NotIn"
            found.append(LabelRequirement(_check_key(match["key"]), op, tuple(sorted(set(values)))))
            continue
        match = _BINARY.match(part)
        if match:
            key, op, value = _check_key(match["key"]), match["op"], match["value"]
            if op in ("<", ">"):
                if not re.fullmatch(r"-?[0-9]+", value):
                    raise SelectorError(f"{op} needs an integer, got {value!r}")
                found.append(LabelRequirement(key, "Gt" if op == ">" else "Lt", (value,)))
            else:
                found.append(LabelRequirement(key, "NotIn" if op == "!=" else "In", (_check_value(value),)))
            continue
        found.append(LabelRequirement(_check_key(part), "Exists"))
    return tuple(found)


def label_selector_from_spec(spec: Any) -> LabelSelector | None:
    """A metav1.LabelSelector (matchLabels + matchExpressions); None (select nothing) for a nil selector."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise SelectorError(f"a label selector must be an object, got {spec!r}")
    found = [LabelRequirement(str(k), "In", (str(v),)) for k, v in (spec.get("matchLabels") or {}).items()]
    for expr in spec.get("matchExpressions") or []:
        op = expr.get("operator")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise SelectorError(f"unsupported selector operator {op!r}")
        found.append(LabelRequirement(str(expr.get("key", "")), op, tuple(expr.get("values") or ())))
    return tuple(found)


def labels_match(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Whether every requirement holds (a None selector matches nothing)."""
    return selector is not None and all(req.matches(labels) for req in selector)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """`field=value` or `field!=value`."""

    field: str
    value: str
    negated: bool = False


FieldSelector = tuple[FieldRequirement, ...]


def parse_field_selector(text: str, allowed: Sequence[str]) -> FieldSelector:
    """Parse `spec.nodeName=n1,status.phase!=Failed`; fields outside `allowed` are an error."""
    found: list[FieldRequirement] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        match = re.fullmatch(r"(?P<field>[^=!]+?)\s*(?P<op>==|!=|=)\s*(?P<value>.*)", part)
        if match is None:
            raise SelectorError(f"invalid field selector requirement {part!r}")
        name = match["field"].strip()
        if name not in allowed:
            raise SelectorError(f"field label not supported: {name}")
        found.append(FieldRequirement(name, match["value"].strip(), match["op"] == "!="))
    return tuple(found)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field (missing fields are "")."""
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    if isinstance(current, bool):
        return "true" if current else "false"
    if current is None:
        return ""
    return str(current)


def fields_match(selector: FieldSelector, obj: Mapping[str, Any]) -> bool:
    """Whether every field requirement holds for `obj`."""
    return all((field_value(obj, req.field) == req.value) != req.negated for req in selector)
