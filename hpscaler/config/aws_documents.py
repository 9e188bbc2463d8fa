"""Pydantic models of AWS output hpscaler reads: `aws sagemaker describe-cluster`, optionally with
`aws ec2 describe-subnets` output merged in (`ClusterDocument`), as `export-cluster` writes it.

Keys are AWS's PascalCase; unknown keys are ignored, because AWS adds fields all the time.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal

from hpscaler.config.documents import Name, Problem
from hpscaler.model import Taint, TaintEffect


class _AwsShape(BaseModel):
    """AWS API output: PascalCase keys; unknown keys ignored because AWS adds fields all the time."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_pascal, frozen=True)


class KubernetesTaintDoc(_AwsShape):
    """ClusterKubernetesTaint."""

    key: Name
    value: str = ""
    effect: TaintEffect


class KubernetesConfigDoc(_AwsShape):
    """Instance-group KubernetesConfig: the request shape (Labels/Taints) or DescribeCluster's details."""

    labels: dict[str, str] | None = None
    taints: list[KubernetesTaintDoc] | None = None
    desired_labels: dict[str, str] | None = None
    desired_taints: list[KubernetesTaintDoc] | None = None
    current_labels: dict[str, str] | None = None
    current_taints: list[KubernetesTaintDoc] | None = None

    def effective_labels(self) -> dict[str, str]:
        """What new nodes get: the requested labels, else the desired ones, else the current ones."""
        for labels in (self.labels, self.desired_labels, self.current_labels):
            if labels is not None:
                return labels
        return {}

    def effective_taints(self) -> tuple[Taint, ...]:
        """Taints new nodes get, chosen as `effective_labels` chooses labels."""
        for taints in (self.taints, self.desired_taints, self.current_taints):
            if taints is not None:
                return tuple(Taint(t.key, t.effect, t.value) for t in taints)
        return ()


class InstanceRequirementsDoc(_AwsShape):
    """Flexible instance group: InstanceTypes in requests, Current/DesiredInstanceTypes in DescribeCluster."""

    instance_types: list[Name] | None = None
    desired_instance_types: list[Name] | None = None
    current_instance_types: list[Name] | None = None

    def effective_types(self) -> list[str]:
        """The instance types new nodes may use, in priority order."""
        for types in (self.instance_types, self.desired_instance_types, self.current_instance_types):
            if types:
                return types
        return []


class CapacityRequirementsDoc(_AwsShape):
    """`{"Spot": {}}` or `{"OnDemand": {}}`."""

    spot: dict[str, Any] | None = None
    on_demand: dict[str, Any] | None = None


class VpcConfigDoc(_AwsShape):
    """VpcConfig / OverrideVpcConfig."""

    subnets: list[Name] = []
    security_group_ids: list[str] = []


class InstanceGroupDoc(_AwsShape):
    """ClusterInstanceGroupDetails (DescribeCluster) or ClusterInstanceGroupSpecification."""

    instance_group_name: Name
    instance_type: str | None = None
    instance_requirements: InstanceRequirementsDoc | None = None
    current_count: int = Field(default=0, ge=0)
    target_count: int | None = Field(default=None, ge=0)
    instance_count: int | None = Field(default=None, ge=0)
    capacity_requirements: CapacityRequirementsDoc | None = None
    override_vpc_config: VpcConfigDoc | None = None
    kubernetes_config: KubernetesConfigDoc | None = None
    status: str | None = None

    def instance_types(self) -> list[str]:
        """InstanceType, or the flexible group's list."""
        if self.instance_type:
            return [self.instance_type]
        return self.instance_requirements.effective_types() if self.instance_requirements else []

    def problems(self) -> list[Problem]:
        """Fields that exclude each other."""
        found: list[Problem] = []
        if self.instance_type and self.instance_requirements:
            found.append(
                Problem(
                    ("InstanceRequirements",),
                    "InstanceType and InstanceRequirements exclude each other",
                    "keep only one of them, as DescribeCluster reports it",
                )
            )
        elif not self.instance_types():
            found.append(
                Problem(
                    ("InstanceType",),
                    "the instance group has no instance type",
                    "add InstanceType (or InstanceRequirements.InstanceTypes for a flexible group)",
                )
            )
        capacity = self.capacity_requirements
        if capacity is not None and capacity.spot is not None and capacity.on_demand is not None:
            found.append(
                Problem(
                    ("CapacityRequirements",),
                    "both Spot and OnDemand are set",
                    'keep exactly one: {"Spot": {}} or {"OnDemand": {}}',
                )
            )
        return found


class SubnetDoc(_AwsShape):
    """One entry of EC2 DescribeSubnets' `Subnets`."""

    subnet_id: Name
    availability_zone: Name
    availability_zone_id: str = ""


class ClusterDocument(_AwsShape):
    """`aws sagemaker describe-cluster` output, optionally with a DescribeSubnets `Subnets` list."""

    cluster_name: str | None = None
    instance_groups: list[InstanceGroupDoc] = []
    vpc_config: VpcConfigDoc | None = None
    subnets: list[SubnetDoc] = []


CLUSTER_KEYS = frozenset({"ClusterName", "ClusterArn", "InstanceGroups", "VpcConfig", "Subnets"})
"""Top-level keys that mark a document without apiVersion/kind as DescribeCluster/DescribeSubnets output."""
