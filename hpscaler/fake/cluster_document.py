"""The DescribeCluster answer of the in-memory HyperPod, in the API's own shape.

Modelled on the SageMaker API reference: DescribeCluster returns `NodeProvisioningMode`
(Continuous | Standard), `NodeRecovery` (Automatic | None), `AutoScaling`
(ClusterAutoScalingConfigOutput: Mode Enable | Disable, AutoScalerType, Status) and
`InstanceGroups` (ClusterInstanceGroupDetails: CurrentCount, TargetCount, Status, InstanceType or
InstanceRequirements.CurrentInstanceTypes, CapacityRequirements, OverrideVpcConfig and
KubernetesConfig with CurrentLabels/CurrentTaints, API_ClusterKubernetesConfigDetails). The groups'
subnets are added under "Subnets" in EC2 DescribeSubnets' shape, as `hpscaler export-cluster` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpscaler.model import CapacityType, InstanceGroup


@dataclass(slots=True)
class ClusterSettings:
    """Cluster-level settings DescribeCluster reports (changed with UpdateCluster)."""

    provisioning_mode: str = "Continuous"
    node_recovery: str = "Automatic"
    auto_scaling_mode: str = "Disable"


def subnets_of(group: InstanceGroup) -> list[tuple[str, str, str]]:
    """(subnet id, zone, zone id) of a group; one made-up subnet per zone when none are given."""
    if group.subnet_zones:
        return list(group.subnet_zones)
    zone_ids = group.zone_ids if len(group.zone_ids) == len(group.zones) else ("",) * len(group.zones)
    if len(group.subnets) == len(group.zones):
        return list(zip(group.subnets, group.zones, zone_ids, strict=True))
    return [(f"subnet-{zone}", zone, zone_id) for zone, zone_id in zip(group.zones, zone_ids, strict=True)]


def group_details(group: InstanceGroup) -> dict[str, Any]:
    """One ClusterInstanceGroupDetails entry."""
    details: dict[str, Any] = {
        "InstanceGroupName": group.name,
        "CurrentCount": group.current_count,
        "TargetCount": group.target_count,
        "Status": group.status,
        "LifeCycleConfig": {"SourceS3Uri": "s3://hpscaler-fake/lifecycle/", "OnCreate": "on_create.sh"},
        "ExecutionRole": "arn:aws:iam::123456789012:role/hpscaler-fake",
        "ThreadsPerCore": 1,
        "OverrideVpcConfig": {"Subnets": [s for s, _, _ in subnets_of(group)]},
        "KubernetesConfig": {
            "CurrentLabels": dict(group.labels),
            "CurrentTaints": [
                {"Key": t.key, "Effect": t.effect, **({"Value": t.value} if t.value else {})}
                for t in group.taints
            ],
        },
    }
    if len(group.instance_types) == 1:
        details["InstanceType"] = group.instance_types[0]
    else:
        details["InstanceRequirements"] = {"CurrentInstanceTypes": list(group.instance_types)}
    if group.capacity_type is CapacityType.SPOT:
        details["CapacityRequirements"] = {"Spot": {}}
    else:
        details["CapacityRequirements"] = {"OnDemand": {}}
    return details


def describe_cluster_document(
    name: str, groups: Sequence[InstanceGroup], settings: ClusterSettings
) -> dict[str, Any]:
    """DescribeCluster's answer for the groups, with their subnets under "Subnets"."""
    subnets: dict[str, dict[str, str]] = {}
    for group in groups:
        for subnet, zone, zone_id in subnets_of(group):
            entry = {"SubnetId": subnet, "AvailabilityZone": zone}
            if zone_id:
                entry["AvailabilityZoneId"] = zone_id
            subnets.setdefault(subnet, entry)
    document: dict[str, Any] = {
        "ClusterName": name,
        "ClusterArn": f"arn:aws:sagemaker:us-west-2:123456789012:cluster/{name}",
        "ClusterStatus": "InService",
        "NodeProvisioningMode": settings.provisioning_mode,
        "NodeRecovery": settings.node_recovery,
        "InstanceGroups": [group_details(g) for g in groups],
        "Subnets": list(subnets.values()),
    }
    if settings.auto_scaling_mode:
        document["AutoScaling"] = {"Mode": settings.auto_scaling_mode, "Status": "InService"}
        if settings.auto_scaling_mode == "Enable":
            document["AutoScaling"]["AutoScalerType"] = "Karpenter"
    return document
