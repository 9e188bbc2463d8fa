"""Typos in well-known NodePool requirement values: instance type, zone, capacity type, architecture.

A NodePool that allows `ml.g5.12xl` (no such type) is valid Kubernetes, and Karpenter would simply
never pick it. When the list holds nothing else that is valid, the pool can launch nothing, or the
plan quietly moves to a far more expensive type; so an unknown value is an error when no value of
its `In` list is known, and a warning otherwise. Unknown `NotIn` values exclude nothing and are
warnings. Each carries a "did you mean". Zones are checked against the cluster's subnets, when known.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from hpscaler.catalogue import Catalogue
from hpscaler.config.checks import InstanceCatalogue, PoolEntry
from hpscaler.config.validate import ConfigIssue, Severity, suggest
from hpscaler.model import LABEL_ARCH, LABEL_CAPACITY_TYPE, LABEL_INSTANCE_TYPE, LABEL_ZONE

CAPACITY_TYPES = ("spot", "on-demand")
ARCHITECTURES = ("amd64", "arm64")


_Known = dict[str, tuple[str, Collection[str]]]  # key -> (what it is, its valid values)


def _known_values(catalogue: InstanceCatalogue, zones: Mapping[str, str]) -> _Known:
    names = catalogue.names() if isinstance(catalogue, Catalogue) else ()
    known: _Known = {
        LABEL_CAPACITY_TYPE: ("capacity type", CAPACITY_TYPES),
        LABEL_ARCH: ("architecture", ARCHITECTURES),
    }
    if names:
        known[LABEL_INSTANCE_TYPE] = ("instance type", frozenset(names))
    if zones:
        known[LABEL_ZONE] = ("zone", frozenset(zones.values()))
    return known


def check_requirement_values(
    pools: Sequence[PoolEntry], catalogue: InstanceCatalogue, zones: Mapping[str, str]
) -> list[ConfigIssue]:
    """Issues for NodePool requirement values of well-known keys that match nothing real."""
    known = _known_values(catalogue, zones)
    issues: list[ConfigIssue] = []
    for entry in pools:
        for i, req in enumerate(entry.doc.spec.template.spec.requirements):
            if req.key not in known or req.operator not in ("In", "NotIn"):
                continue
            what, valid = known[req.key]
            unknown = [(j, v) for j, v in enumerate(req.values) if v not in valid]
            if not unknown:
                continue
            severity: Severity = (
                "error" if req.operator == "In" and len(unknown) == len(req.values) else "warning"
            )
            for j, value in unknown:
                close = suggest(value, valid)
                listing = ", ".join(sorted(valid)) if len(valid) <= 8 else f"{len(valid)} known values"
                fix = f"did you mean {close}?" if close else f"use a known {what} ({listing})"
                if severity == "warning" and req.operator == "In":
                    fix += " The other values of the list still apply."
                issues.append(
                    entry.origin.issue(
                        ("spec", "template", "spec", "requirements", i, "values", j),
                        f"{what} {value} is not known"
                        + (" in the cluster's subnets" if req.key == LABEL_ZONE else ""),
                        fix,
                        severity,
                    )
                )
    return issues
