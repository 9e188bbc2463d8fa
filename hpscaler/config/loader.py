"""Load a configuration directory or file: users' manifests, hpscaler's own document, cluster facts.

A path is a file (possibly multi-document YAML) or a directory whose *.yaml, *.yml and *.json files
are read in name order. Each document is recognised by apiVersion/kind, or as DescribeCluster /
DescribeSubnets output when it has neither. Everything wrong is collected before `ConfigError`
is raised, so one run reports all of it.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hpscaler.catalogue import Catalogue, load_catalogue
from hpscaler.config.aws_documents import CLUSTER_KEYS, ClusterDocument, SubnetDoc
from hpscaler.config.checks import (
    ClassEntry,
    GroupEntry,
    InstanceCatalogue,
    PoolEntry,
    check_capacity_type_unchanged,
    check_catalogue,
    check_node_classes,
    check_node_pools,
    check_settings,
    region_of,
)
from hpscaler.config.documents import HyperpodNodeClassDocument, Loc, NodePoolDocument
from hpscaler.config.reading import Raw, load_documents, read_path
from hpscaler.config.settings import HpscalerConfigDocument, Settings
from hpscaler.config.validate import (
    ConfigError,
    ConfigIssue,
    Origin,
    Severity,
    near_misses,
    suggest,
    translate,
)
from hpscaler.config.wellknown import check_requirement_values
from hpscaler.model import CapacityType, InstanceGroup, NodeClass, NodePool

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "LoadedConfig",
    "check_capacity_type_unchanged",
    "default_config_path",
    "load_config",
    "load_documents",
]

# kind -> (apiVersion, model); the API group is what tells a wrong version from a foreign kind.
_KINDS: dict[str, tuple[str, type[BaseModel]]] = {
    "NodePool": ("karpenter.sh/v1", NodePoolDocument),
    "HyperpodNodeClass": ("karpenter.sagemaker.amazonaws.com/v1", HyperpodNodeClassDocument),
    "HpscalerConfig": ("hpscaler.io/v1alpha1", HpscalerConfigDocument),
}
_OUR_GROUPS = {"karpenter.sh", "karpenter.sagemaker.amazonaws.com", "hpscaler.io"}
_NO_GROUPS_FIX = (
    "add the output of `aws sagemaker describe-cluster --cluster-name <name>` as a .json file, with the "
    'instance groups\' subnets from `aws ec2 describe-subnets --subnet-ids ...` under "Subnets"'
)


@dataclass(frozen=True)
class LoadedConfig:
    """Everything the daemon and the offline commands need, converted to the core's model."""

    settings: Settings
    cluster_name: str
    node_pools: tuple[NodePool, ...]
    node_classes: tuple[NodeClass, ...]
    instance_groups: tuple[InstanceGroup, ...]
    warnings: tuple[ConfigIssue, ...]
    sources: tuple[str, ...]
    # DescribeCluster documents as given (NodeProvisioningMode, AutoScaling, ...: the prerequisites).
    cluster_documents: tuple[Mapping[str, Any], ...] = ()

    def catalogue(self) -> Catalogue:
        """The packaged instance catalogue with the prices `spec.prices` overrides."""
        catalogue = load_catalogue()
        if self.settings.prices:
            catalogue = catalogue.with_prices(self.settings.price_overrides())
        return catalogue


def default_config_path() -> Path:
    """The directory of the embedded example world (the HyperPod Spot documentation's cluster)."""
    return Path(str(importlib.resources.files("hpscaler") / "examples"))


# --- recognising and validating documents ---------------------------------------------------------


@dataclass
class _Parsed:
    pools: list[tuple[Origin, NodePoolDocument]] = field(default_factory=list)
    classes: list[tuple[Origin, HyperpodNodeClassDocument]] = field(default_factory=list)
    configs: list[tuple[Origin, HpscalerConfigDocument]] = field(default_factory=list)
    clusters: list[tuple[Origin, ClusterDocument]] = field(default_factory=list)
    cluster_data: list[dict[str, Any]] = field(default_factory=list)  # the same documents, as read
    issues: list[ConfigIssue] = field(default_factory=list)
    rejected: set[str] = field(default_factory=set)  # labels ("Kind name") of documents pydantic rejected


def _object_label(data: dict[str, Any], kind: str, index: int) -> str:
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if kind == "HpscalerConfig" and name is None:
        name = "default"  # the document's metadata is optional
    return f"{kind} {name}" if isinstance(name, str) and name else f"{kind} (document {index + 1})"


def _validate(model: type[BaseModel], data: dict[str, Any], origin: Origin, out: _Parsed) -> BaseModel | None:
    try:
        doc = model.model_validate(data)
    except ValidationError as exc:
        out.issues += translate(exc, model, origin)
        out.rejected.add(origin.obj)
        if model is NodePoolDocument:
            out.issues += [origin.problem(p) for p in NodePoolDocument.partial_problems(data)]
        return None
    problems = getattr(doc, "problems", None)
    if problems is not None:
        out.issues += [origin.problem(p) for p in problems()]
    return doc


def _parse(raw: Raw, data: dict[str, Any], prefix: Loc, out: _Parsed) -> None:
    api, kind = data.get("apiVersion"), data.get("kind")
    if api is None and kind is None:
        origin = Origin(raw.file, "DescribeCluster", raw.lines, prefix)
        if not CLUSTER_KEYS & data.keys():
            out.issues.append(
                origin.issue(
                    (),
                    "is neither a Kubernetes object nor DescribeCluster output",
                    "add apiVersion and kind, or remove the document",
                )
            )
            return
        doc = _validate(ClusterDocument, data, origin, out)
        if isinstance(doc, ClusterDocument):
            name = doc.cluster_name
            origin = origin.named(f"DescribeCluster {name}" if name else "DescribeCluster")
            out.issues += near_misses(ClusterDocument, data, origin)
            out.clusters.append((origin, doc))
            out.cluster_data.append(data)
        return
    label = _object_label(data, kind if isinstance(kind, str) else "object", raw.index)
    origin = Origin(raw.file, label, raw.lines, prefix)
    if not isinstance(api, str) or not isinstance(kind, str):
        missing = "apiVersion" if not isinstance(api, str) else "kind"
        out.issues.append(origin.issue((missing,), "is required and must be a string", f"add `{missing}`"))
        return
    items = data.get("items")
    if kind.endswith("List") and isinstance(items, list):  # `kubectl get ... -o yaml` output
        for i, item in enumerate(items):
            if isinstance(item, dict):
                _parse(raw, item, (*prefix, "items", i), out)
        return
    group = api.rpartition("/")[0]
    expected = _KINDS.get(kind)
    if expected is not None and api != expected[0] and group == expected[0].rpartition("/")[0]:
        out.issues.append(
            origin.issue(
                ("apiVersion",),
                f"{kind} {api} is not supported",
                f"use apiVersion: {expected[0]}"
                + (" (HyperPod requires v1 NodePools)" if kind == "NodePool" else ""),
            )
        )
        return
    if expected is not None and api == expected[0]:
        doc = _validate(expected[1], data, origin, out)
        if isinstance(doc, NodePoolDocument):
            out.pools.append((origin, doc))
        elif isinstance(doc, HyperpodNodeClassDocument):
            out.classes.append((origin, doc))
        elif isinstance(doc, HpscalerConfigDocument):
            out.configs.append((origin, doc))
        return
    if group in _OUR_GROUPS and kind not in ("NodeClaim", "NodeOverlay"):
        close = suggest(kind, _KINDS)
        out.issues.append(
            origin.issue(
                ("kind",),
                f"unknown kind {kind} for {api}",
                f"did you mean {close}?" if close else f"use one of {', '.join(_KINDS)}",
            )
        )
        return
    out.issues.append(
        origin.issue(
            (),
            f"{kind} ({api}) is not a configuration document and is ignored",
            "move it out of the configuration directory to silence this",
            "warning",
        )
    )


def _drop_duplicates(entries: list[tuple[Origin, Any]], kind: str, out: _Parsed) -> list[tuple[Origin, Any]]:
    first: dict[str, Origin] = {}
    kept: list[tuple[Origin, Any]] = []
    for origin, doc in entries:
        name = doc.metadata.name
        if name in first:
            where = first[name].file
            out.issues.append(
                origin.issue(
                    ("metadata", "name"),
                    f"{kind} {name} is defined twice (first in {where})",
                    "delete one of the two, or rename it",
                )
            )
            continue
        first[name] = origin
        kept.append((origin, doc))
    return kept


# --- instance groups ------------------------------------------------------------------------------


def _subnet_map(clusters: list[tuple[Origin, ClusterDocument]], out: _Parsed) -> dict[str, SubnetDoc]:
    subnets: dict[str, SubnetDoc] = {}
    for origin, doc in clusters:
        for i, subnet in enumerate(doc.subnets):
            previous = subnets.setdefault(subnet.subnet_id, subnet)
            if previous.availability_zone != subnet.availability_zone:
                out.issues.append(
                    origin.issue(
                        ("Subnets", i, "AvailabilityZone"),
                        f"subnet {subnet.subnet_id} is in {previous.availability_zone} elsewhere",
                        "keep one description of the subnet, with its real zone",
                    )
                )
    return subnets


def _resolve_groups(
    clusters: list[tuple[Origin, ClusterDocument]], referenced: set[str], out: _Parsed
) -> tuple[dict[str, GroupEntry], dict[str, str]]:
    """Instance groups with their zones; also every known zone name / zone id -> zone name."""
    subnets = _subnet_map(clusters, out)
    zones = {s.availability_zone: s.availability_zone for s in subnets.values()}
    zones.update(
        {s.availability_zone_id: s.availability_zone for s in subnets.values() if s.availability_zone_id}
    )
    groups: dict[str, GroupEntry] = {}
    for cluster_origin, doc in clusters:
        for i, spec in enumerate(doc.instance_groups):
            name, loc = spec.instance_group_name, ("InstanceGroups", i)
            origin = cluster_origin.named(f"InstanceGroup {name}")
            # hpscaler never launches into a group no NodeClass lists, so its flaws are only warnings.
            severity: Severity = "error" if name in referenced else "warning"
            out.issues += [origin.problem(p, loc) for p in spec.problems()]
            ids_loc: Loc
            if spec.override_vpc_config is not None and spec.override_vpc_config.subnets:
                ids, ids_loc = spec.override_vpc_config.subnets, (*loc, "OverrideVpcConfig", "Subnets")
            else:
                ids, ids_loc = (doc.vpc_config.subnets if doc.vpc_config else []), ("VpcConfig", "Subnets")
            if not ids:
                out.issues.append(
                    origin.issue(
                        (*loc, "OverrideVpcConfig"),
                        "the instance group has no subnets",
                        "add OverrideVpcConfig.Subnets, or the cluster's VpcConfig.Subnets",
                        severity,
                    )
                )
            found: list[SubnetDoc] = []
            for k, subnet_id in enumerate(ids):
                if subnet_id in subnets:
                    found.append(subnets[subnet_id])
                    continue
                out.issues.append(
                    origin.issue(
                        (*ids_loc, k),
                        f"subnet {subnet_id} is not in the Subnets list, so its zone is unknown",
                        f"add the Subnets entries of `aws ec2 describe-subnets --subnet-ids {subnet_id}`",
                        severity,
                    )
                )
            by_zone = {s.availability_zone: s.availability_zone_id for s in found}
            if len(by_zone) > 1:
                out.issues.append(
                    origin.issue(
                        ids_loc,
                        f"the subnets span {len(by_zone)} availability zones ({', '.join(by_zone)})",
                        "HyperPod autoscaling needs single-AZ instance groups: use subnets of one zone "
                        "and create one instance group per zone",
                        severity,
                    )
                )
            capacity = spec.capacity_requirements
            config = spec.kubernetes_config
            group = InstanceGroup(
                name=name,
                instance_types=tuple(spec.instance_types()),
                capacity_type=CapacityType.SPOT
                if capacity and capacity.spot is not None
                else CapacityType.ON_DEMAND,
                zones=tuple(by_zone),
                zone_ids=tuple(by_zone.values()) if all(by_zone.values()) else (),
                subnets=tuple(ids),
                current_count=spec.current_count,
                target_count=next(
                    (c for c in (spec.target_count, spec.instance_count) if c is not None), spec.current_count
                ),
                labels=tuple(sorted(config.effective_labels().items())) if config else (),
                taints=config.effective_taints() if config else (),
                status=spec.status or "InService",
                subnet_zones=tuple((s.subnet_id, s.availability_zone, s.availability_zone_id) for s in found),
            )
            previous = groups.get(name)
            if previous is None:
                groups[name] = GroupEntry(origin, loc, group)
            elif previous.group.capacity_type is not group.capacity_type:
                out.issues.append(
                    origin.issue(
                        (*loc, "CapacityRequirements"),
                        f"capacity type is {group.capacity_type.value} here but "
                        f"{previous.group.capacity_type.value} in {previous.origin.file}",
                        "an instance group's CapacityRequirements cannot change once it is created: "
                        "remove the stale description",
                    )
                )
            else:
                out.issues.append(
                    origin.issue(
                        loc,
                        f"instance group {name} is described twice (first in {previous.origin.file})",
                        "remove one of the descriptions; the first one is used",
                        "warning",
                    )
                )
    return groups, zones


# --- putting it together --------------------------------------------------------------------------


def _cluster_name(
    settings: Settings, origin: Origin, clusters: list[tuple[Origin, ClusterDocument]], out: _Parsed
) -> str:
    named = [(o, d.cluster_name) for o, d in clusters if d.cluster_name]
    wanted = settings.cluster_name or (named[0][1] if named else "")
    for cluster_origin, name in named:
        if name != wanted:
            source = (
                "HpscalerConfig spec.clusterName"
                if settings.cluster_name
                else f"ClusterName in {named[0][0].file}"
            )
            out.issues.append(
                cluster_origin.issue(
                    ("ClusterName",),
                    f"is {name} but {source} is {wanted}",
                    "describe the cluster hpscaler manages, or correct spec.clusterName",
                )
            )
    # A rejected HpscalerConfig may well have named the cluster; its own errors say enough.
    if not wanted and not any(label.startswith("HpscalerConfig") for label in out.rejected):
        out.issues.append(
            origin.issue(
                ("spec", "clusterName"),
                "is required",
                "set spec.clusterName in the HpscalerConfig, or include `aws sagemaker describe-cluster` "
                "output (it carries ClusterName)",
            )
        )
    return wanted or ""


def load_config(
    path: str | Path,
    *,
    catalogue: Catalogue | InstanceCatalogue | None = None,
    require_instance_groups: bool = True,
) -> LoadedConfig:
    """Load and check everything under `path`; raises ConfigError listing every error (and warning).

    `require_instance_groups=False` lets a daemon that reads instance groups from AWS start without a
    DescribeCluster document; the checks that need groups or zones are then skipped.
    """
    path = Path(path)
    raws, issues, sources = read_path(path)
    if not raws and issues:
        raise ConfigError(issues)  # nothing readable: the follow-on "missing" errors would only be noise
    out = _Parsed(issues=issues)
    for raw in raws:
        _parse(raw, raw.data, (), out)
    pools = _drop_duplicates(list(out.pools), "NodePool", out)
    classes = _drop_duplicates(list(out.classes), "HyperpodNodeClass", out)
    for origin, _ in out.configs[1:]:
        out.issues.append(
            origin.issue(
                (),
                f"only one HpscalerConfig is allowed (the first is in {out.configs[0][0].file})",
                "merge the two into one document",
            )
        )
    settings_origin, settings = (
        (out.configs[0][0], out.configs[0][1].spec)
        if out.configs
        else (Origin(str(path), "HpscalerConfig (defaults)"), Settings())
    )
    cluster_name = _cluster_name(settings, settings_origin, out.clusters, out)

    referenced = {g for _, doc in classes for g in doc.spec.instance_groups}
    groups, zones = _resolve_groups(out.clusters, referenced, out)
    if not groups and require_instance_groups:
        out.issues.append(
            ConfigIssue(str(path), "InstanceGroups", "", "no instance groups were found", _NO_GROUPS_FIX)
        )
    region = settings.region
    if not region:
        regions = {r for z in zones.values() if (r := region_of(z))}
        region = regions.pop() if len(regions) == 1 else ""
    settings = settings.model_copy(update={"cluster_name": cluster_name, "region": region})

    def clean(origin: Origin) -> bool:
        return not any(
            i.severity == "error" and i.file == origin.file and i.obj == origin.obj for i in out.issues
        )

    pool_entries = [PoolEntry(o, d, d.to_model()) for o, d in pools if clean(o)]
    class_entries = [ClassEntry(o, d, d.to_model()) for o, d in classes]
    if catalogue is None:
        catalogue = load_catalogue()
    if groups:
        out.issues += check_node_classes(class_entries, groups)
    broken = {label.partition(" ")[2] for label in out.rejected if label.startswith("HyperpodNodeClass ")}
    out.issues += check_node_pools(pool_entries, class_entries, groups, region, broken)
    out.issues += check_requirement_values(pool_entries, catalogue, zones)
    out.issues += check_catalogue(groups, referenced, catalogue)
    out.issues += check_settings(settings_origin, settings, groups, zones, catalogue)
    if any(i.severity == "error" for i in out.issues):
        raise ConfigError(out.issues)
    return LoadedConfig(
        settings=settings,
        cluster_name=cluster_name,
        node_pools=tuple(e.pool for e in pool_entries),
        node_classes=tuple(e.node_class for e in class_entries),
        instance_groups=tuple(e.group for e in groups.values()),
        warnings=tuple(out.issues),
        sources=tuple(sources),
        cluster_documents=tuple(out.cluster_data),
    )
