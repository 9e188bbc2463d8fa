"""Configuration checks that need several objects at once: NodeClasses against the cluster's
instance groups, NodePools against NodeClasses and offerings, instance types against the catalogue,
settings against the groups and zones, and capacity types across reloads.

Each returns `ConfigIssue`s naming the file, object and field at fault, with a fix.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from hpscaler.catalogue import Catalogue, UnknownInstanceType
from hpscaler.config.documents import HyperpodNodeClassDocument, Loc, NodePoolDocument
from hpscaler.config.settings import Settings
from hpscaler.config.validate import ConfigIssue, Origin, suggest
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
