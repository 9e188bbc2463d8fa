"""Configuration issues, pydantic error translation, and the checks that need several objects at once.

Every issue names the file, the object and the field at fault, and says how to fix it; the loader
collects them all before failing, so one `check-config` run shows everything that is wrong.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Protocol, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from hpscaler.catalogue import Catalogue, UnknownInstanceType
from hpscaler.config.documents import HyperpodNodeClassDocument, Loc, NodePoolDocument, Problem
from hpscaler.config.settings import Settings
from hpscaler.model import (
    LABEL_ARCH,
    LABEL_CAPACITY_TYPE,
    LABEL_INSTANCE_GROUP,
    LABEL_INSTANCE_TYPE,
    LABEL_NODEPOOL,
    LABEL_REGION,
    LABEL_ZONE,
    LABEL_ZONE_ID,
    InstanceGroup,
    NodeClass,
    NodePool,
)

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


# --- instance-type catalogue ----------------------------------------------------------------------


class InstanceCatalogue(Protocol):
    """What validation needs from `hpscaler.catalogue.Catalogue`: membership by instance-type name."""

    def __contains__(self, name: str, /) -> bool: ...


def check_names_exist(
    origin: Origin, loc: Loc, names: Sequence[str], known: Collection[str], what: str, fix: str
) -> list[ConfigIssue]:
    """Errors for each of `names` (a list at `loc`) that is not in `known`, with a did-you-mean."""
    issues: list[ConfigIssue] = []
    for i, name in enumerate(names):
        if name in known:
            continue
        close = suggest(name, known)
        hint = f"did you mean {close}? Otherwise {fix}" if close else fix
        issues.append(origin.issue((*loc, i), f"{what} {name} does not exist", hint))
    return issues


# --- cross-object checks --------------------------------------------------------------------------

HYPERPOD_REQUIREMENT_KEYS = frozenset({LABEL_INSTANCE_TYPE, LABEL_ZONE, LABEL_ARCH})
"""The only NodePool requirement keys HyperPod's managed Karpenter documents as supported."""

_WELL_KNOWN_DOMAINS = ("kubernetes.io", "k8s.io", "karpenter.sh", "k8s.aws", "amazonaws.com")


@dataclass(frozen=True)
class PoolEntry:
    """A NodePool document, its conversion, and where it came from."""

    origin: Origin
    doc: NodePoolDocument
    pool: NodePool


@dataclass(frozen=True)
class ClassEntry:
    """A HyperpodNodeClass document, its conversion, and where it came from."""

    origin: Origin
    doc: HyperpodNodeClassDocument
    node_class: NodeClass


@dataclass(frozen=True)
class GroupEntry:
    """An instance group, where it was described, and the path to it inside that document."""

    origin: Origin
    loc: Loc
    group: InstanceGroup


def check_node_classes(classes: Sequence[ClassEntry], groups: Mapping[str, GroupEntry]) -> list[ConfigIssue]:
    """Each HyperpodNodeClass may only name instance groups that exist in the cluster."""
    issues: list[ConfigIssue] = []
    fix = "create it (`aws sagemaker update-cluster`) or remove it from the HyperpodNodeClass"
    for entry in classes:
        issues += check_names_exist(
            entry.origin,
            ("spec", "instanceGroups"),
            entry.doc.spec.instance_groups,
            groups,
            "instance group",
            fix,
        )
    return issues


def _well_known(key: str) -> bool:
    domain = key.split("/", 1)[0] if "/" in key else ""
    return any(domain == d or domain.endswith("." + d) for d in _WELL_KNOWN_DOMAINS)


def _offerings(pool: NodePool, group: InstanceGroup, region: str) -> Iterable[dict[str, str]]:
    zone_ids = group.zone_ids if len(group.zone_ids) == len(group.zones) else ("",) * len(group.zones)
    for type_name in group.instance_types:
        for zone, zone_id in zip(group.zones or ("",), zone_ids or ("",), strict=False):
            labels = {
                LABEL_INSTANCE_TYPE: type_name,
                LABEL_CAPACITY_TYPE: group.capacity_type.value,
                LABEL_INSTANCE_GROUP: group.name,
                LABEL_NODEPOOL: pool.name,
            }
            labels.update(
                {k: v for k, v in ((LABEL_ZONE, zone), (LABEL_ZONE_ID, zone_id), (LABEL_REGION, region)) if v}
            )
            labels.update(dict(group.labels))
            labels.update(dict(pool.labels))
            yield labels


def check_node_pools(
    pools: Sequence[PoolEntry],
    classes: Sequence[ClassEntry],
    groups: Mapping[str, GroupEntry],
    region: str,
    broken_classes: Collection[str] = (),
) -> list[ConfigIssue]:
    """nodeClassRef targets, requirement keys HyperPod ignores, and requirements no group can meet.

    `broken_classes` exist but failed validation; pools pointing at them are not reported again.
    """
    issues: list[ConfigIssue] = []
    by_name = {c.node_class.name: c.node_class for c in classes}
    for entry in pools:
        pool, origin = entry.pool, entry.origin
        if pool.node_class in broken_classes:
            continue
        if pool.node_class not in by_name:
            close = suggest(pool.node_class, by_name)
            fix = f"did you mean {close}?" if close else f"add a HyperpodNodeClass named {pool.node_class}"
            issues.append(
                origin.issue(
                    ("spec", "template", "spec", "nodeClassRef", "name"),
                    f"HyperpodNodeClass {pool.node_class} does not exist",
                    fix,
                )
            )
            continue
        for i, req in enumerate(pool.requirements):
            if req.key not in HYPERPOD_REQUIREMENT_KEYS and _well_known(req.key):
                issues.append(
                    origin.issue(
                        ("spec", "template", "spec", "requirements", i, "key"),
                        f"HyperPod's managed Karpenter ignores key {req.key} (hpscaler honours it)",
                        "keep it if you want hpscaler's behaviour; HyperPod itself only supports "
                        + ", ".join(sorted(HYPERPOD_REQUIREMENT_KEYS)),
                        "warning",
                    )
                )
        members = [groups[g].group for g in by_name[pool.node_class].instance_groups if g in groups]
        if members and not any(
            all(r.matches(labels) for r in pool.requirements if r.key in labels)
            for group in members
            for labels in _offerings(pool, group, region)
        ):
            issues.append(
                origin.issue(
                    ("spec", "template", "spec", "requirements"),
                    f"no instance group of HyperpodNodeClass {pool.node_class} meets these requirements "
                    f"(groups: {', '.join(g.name for g in members)})",
                    "relax the requirements or add a matching instance group to the HyperpodNodeClass",
                    "warning",
                )
            )
    return issues


def _type_fix(name: str, catalogue: InstanceCatalogue) -> str:
    close = (
        UnknownInstanceType(name, catalogue.names()).suggestions if isinstance(catalogue, Catalogue) else ()
    )
    if close:
        return f"did you mean {', '.join(close)}?"
    return "check the spelling (HyperPod types look like ml.c5.2xlarge) or add the type to the catalogue"


def check_catalogue(
    groups: Mapping[str, GroupEntry], referenced: Collection[str], catalogue: InstanceCatalogue
) -> list[ConfigIssue]:
    """Instance types must be known to size and price them; only an error where hpscaler launches."""
    issues: list[ConfigIssue] = []
    for name, entry in groups.items():
        flexible = len(entry.group.instance_types) > 1
        for i, type_name in enumerate(entry.group.instance_types):
            if type_name in catalogue:
                continue
            used = name in referenced
            loc = (
                (*entry.loc, "InstanceRequirements", "InstanceTypes", i)
                if flexible
                else (*entry.loc, "InstanceType")
            )
            fix = _type_fix(type_name, catalogue)
            issues.append(
                entry.origin.issue(
                    loc,
                    f"instance type {type_name} is not in hpscaler's catalogue",
                    fix if used else f"{fix}; no HyperpodNodeClass uses this group, so hpscaler skips it",
                    "error" if used else "warning",
                )
            )
    return issues


def check_settings(
    origin: Origin,
    settings: Settings,
    groups: Mapping[str, GroupEntry],
    zones: Mapping[str, str],
    catalogue: InstanceCatalogue | None,
) -> list[ConfigIssue]:
    """outOfCapacity groups, placementScores zones, price-override types and region all refer to real things.

    `zones` maps every known zone name and zone id to its zone name. Without any instance groups
    (a daemon that will read them from AWS) the group and zone names cannot be checked.
    """
    issues: list[ConfigIssue] = []
    if groups:
        issues += check_names_exist(
            origin,
            ("spec", "outOfCapacity"),
            settings.out_of_capacity,
            groups,
            "instance group",
            "name an instance group of the cluster",
        )
    seen: set[str] = set()
    for i, name in enumerate(settings.out_of_capacity):
        if name in seen:
            issues.append(
                origin.issue(
                    ("spec", "outOfCapacity", i),
                    f"{name} is listed twice",
                    "remove the repeated entry",
                    "warning",
                )
            )
        seen.add(name)
    for key in settings.placement_scores:
        if zones and key not in zones:
            close = suggest(key, zones)
            known = ", ".join(sorted(zones)) or "none: add a Subnets list"
            issues.append(
                origin.issue(
                    ("spec", "placementScores", key),
                    f"{key} is not a zone or zone id of the cluster's subnets",
                    f"did you mean {close}?" if close else f"use a known zone or zone id ({known})",
                )
            )
    if catalogue is not None:
        for key in settings.prices:
            if key not in catalogue:
                issues.append(
                    origin.issue(
                        ("spec", "prices", key),
                        f"instance type {key} is not in hpscaler's catalogue",
                        _type_fix(key, catalogue),
                    )
                )
    region = settings.region
    wrong = sorted({z for z in zones.values() if region and not z.startswith(region)})
    if wrong:
        actual = sorted({r for z in zones.values() if (r := region_of(z))})
        issues.append(
            origin.issue(
                ("spec", "region"),
                f"zones {', '.join(wrong)} are not in region {region}",
                f"set spec.region to {' or '.join(actual)}" if actual else "correct spec.region",
            )
        )
    return issues


_REGION = re.compile(r"^([a-z]{2}(?:-[a-z]+)+-[0-9]+)")


def region_of(zone: str) -> str:
    """The region of a zone name ("us-west-2a" -> "us-west-2"), or "" if it does not look like one."""
    match = _REGION.match(zone)
    return match.group(1) if match else ""


def check_capacity_type_unchanged(
    old: Sequence[InstanceGroup], new: Sequence[InstanceGroup]
) -> list[ConfigIssue]:
    """On reload: an instance group's capacity type cannot change after creation (HyperPod rejects it)."""
    before = {g.name: g.capacity_type for g in old}
    issues: list[ConfigIssue] = []
    for group in new:
        previous = before.get(group.name)
        if previous is not None and previous is not group.capacity_type:
            issues.append(
                ConfigIssue(
                    "instance groups",
                    f"InstanceGroup {group.name}",
                    "CapacityRequirements",
                    f"capacity type changed from {previous.value} to {group.capacity_type.value}",
                    "CapacityRequirements cannot be modified once an instance group is created: restore it, "
                    "or create a new instance group with the other capacity type and list it in the "
                    "HyperpodNodeClass",
                )
            )
    return issues
