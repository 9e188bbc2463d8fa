"""What moto 5.2.5 lacks for the AWS backend's tests, added to its response classes in-process.

moto dispatches an action to the response-class method named after it (BatchAddClusterNodes ->
`batch_add_cluster_nodes`) and serialises an `ActionResult` through botocore's output shape, so
adding methods is enough; the state lives on moto's own objects (clusters, nodes, EC2 backend), so
`/moto-api/reset` wipes it and moto's list_cluster_nodes sees the nodes added here.

Added: SageMaker BatchAddClusterNodes (ClientToken idempotency: a replay within 8 hours answers "the
same set of NodeLogicalIds with their latest status", NotFound once deleted; 5-group/50-node limits;
Failed entries; nodes placed in the AvailabilityZones asked for), BatchDeleteClusterNodes
(NodeLogicalIds and NodeIds, "a combined maximum of 50 identifiers", per-node failures with the
codes of API_BatchDeleteClusterNodeLogicalIdsError, `refuse_delete`), node statuses of
ClusterInstanceStatus with their InstanceStatus.Message (`set_node_status`: Pending, Running,
Failure, ShuttingDown, SystemUpdating, DeepHealthCheckInProgress, NotFound), ListClusterEvents,
UpdateCluster (instance groups added or replaced, with
NodeProvisioningMode, NodeRecovery and AutoScaling), and in CreateCluster/DescribeCluster the
cluster settings moto drops (NodeProvisioningMode, NodeRecovery, AutoScaling as
ClusterAutoScalingConfigOutput) and instance-group KubernetesConfig in DescribeCluster's shape
(CurrentLabels/CurrentTaints, API_ClusterKubernetesConfigDetails); EC2 GetSpotPlacementScores
(settable scores, injectable failures, fewer than 3 types score 1 as on AWS) and settable Spot
prices (`moto_ec2`).
Cluster settings a test changes directly: `set_cluster_settings` (a cluster created without
continuous provisioning has no NodeProvisioningMode). A group's KubernetesConfig, which HyperPod
reconciles onto its nodes: `group_kubernetes_config`.
Fixed: list_cluster_nodes pagination (moto pages by a missing `arn` attribute and loops) and node
logical ids / placement in ListClusterNodes and DescribeClusterNode.
Recorded: every SageMaker, EC2 and SQS request that reaches the server (`requests()`, from
`moto_log`). EC2's additions are in `moto_ec2`; both are installed by `install` and their public
names are importable from here.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.sagemaker.exceptions import SagemakerClientError, ValidationError
from moto.sagemaker.models import Cluster, ClusterNode
from moto.sagemaker.responses import SageMakerResponse
from moto_ec2 import ACCOUNT as ACCOUNT
from moto_ec2 import fail_placement_scores as fail_placement_scores
from moto_ec2 import install_ec2
from moto_ec2 import placement_requests as placement_requests
from moto_ec2 import set_placement_scores as set_placement_scores
from moto_ec2 import set_spot_prices as set_spot_prices
from moto_events import add_event as add_event
from moto_events import cluster_events as cluster_events
from moto_events import install_events
from moto_events import sagemaker_cluster as sagemaker_cluster
from moto_log import AwsRequest as AwsRequest
from moto_log import install_log
from moto_log import requests as requests

MAX_GROUPS_PER_ADD = 5
MAX_NODES_PER_ADD = 50
MAX_IDS_PER_DELETE = 50  # NodeLogicalIds and NodeIds together
TOKEN_TTL_SECONDS = 8 * 3600.0

_instance_numbers = itertools.count(1)
_installed = False


# --- state, kept on moto's objects so a reset wipes it ---------------------------------------------


def _tokens(cluster: Cluster) -> dict[str, tuple[float, str, dict[str, Any]]]:
    if not hasattr(cluster, "hps_tokens"):
        cluster.hps_tokens = {}
    tokens: dict[str, tuple[float, str, dict[str, Any]]] = cluster.hps_tokens
    return tokens


def _logical_id(node: ClusterNode) -> str:
    return getattr(node, "hps_logical_id", None) or f"lid-{node.instance_id}"


# ClusterInstanceStatus (API_ClusterInstanceStatusDetails): what ListClusterNodes and
# DescribeClusterNode report in InstanceStatus.Status. The continuous-provisioning page defines each:
# Pending "is being provisioned or rebooted", DeepHealthCheckInProgress can take hours, Failure is
# retried by HyperPod by itself, ShuttingDown "will either transition to Failure status if termination
# encounters issues, or will be successfully removed", SystemUpdating while HyperPod patches the node.
NODE_STATUSES = frozenset(
    {
        "Running",
        "Failure",
        "Pending",
        "ShuttingDown",
        "SystemUpdating",
        "DeepHealthCheckInProgress",
        "NotFound",
    }
)


def set_node_status(region: str, cluster_name: str, logical_id: str, status: str, message: str = "") -> None:
    """Move a node to another status (a launch completing, failing, ...) with the InstanceStatus
    `Message` that says why (e.g. a capacity error); CurrentCount follows."""
    if status not in NODE_STATUSES:
        raise ValueError(f"{status!r} is not a ClusterInstanceStatus ({sorted(NODE_STATUSES)})")
    cluster = sagemaker_cluster(region, cluster_name)
    node = next(n for n in cluster.nodes.values() if _logical_id(n) == logical_id)
    node.status = status
    node.hps_message = message
    _recount(cluster)


def group_kubernetes_config(
    region: str, cluster_name: str, group_name: str
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The labels and taints HyperPod puts on every node of the group: its KubernetesConfig, which
    HyperPod reconciles onto the nodes (API_ClusterKubernetesConfigNodeDetails)."""
    cluster = sagemaker_cluster(region, cluster_name)
    group = next(g for g in cluster.instance_groups if g["InstanceGroupName"] == group_name)
    config = group.get("KubernetesConfig") or {}
    return dict(config.get("CurrentLabels") or {}), list(config.get("CurrentTaints") or [])


@dataclass(frozen=True)
class NodeFacts:
    """What HyperPod knows of one of its nodes (and what its kubelet puts on the Node object)."""

    instance_id: str
    logical_id: str
    group: str
    instance_type: str
    zone: str
    zone_id: str
    capacity_type: str  # "Spot" or "OnDemand"
    status: str


def cluster_nodes(region: str, cluster_name: str) -> list[NodeFacts]:
    """The cluster's nodes, oldest first."""
    cluster = sagemaker_cluster(region, cluster_name)
    return [
        NodeFacts(
            node.instance_id,
            _logical_id(node),
            node.instance_group_name,
            node.instance_type,
            getattr(node, "hps_zone", ""),
            getattr(node, "hps_zone_id", ""),
            getattr(node, "hps_capacity", ""),
            node.status,
        )
        for node in list(cluster.nodes.values())
    ]


def _recount(cluster: Cluster) -> None:
    for group in cluster.instance_groups:
        group["CurrentCount"] = sum(
            1
            for n in cluster.nodes.values()
            if n.instance_group_name == group["InstanceGroupName"] and n.status == "Running"
        )


def _group_zones(cluster: Cluster, group: dict[str, Any]) -> list[tuple[str, str]]:
    subnet_ids = (group.get("OverrideVpcConfig") or {}).get("Subnets") or (cluster.vpc_config or {}).get(
        "Subnets", []
    )
    backend = ec2_backends[cluster.account_id][cluster.region_name]
    try:
        subnets = backend.describe_subnets(subnet_ids=list(subnet_ids))
    except ServiceException:
        return []
    return list(dict.fromkeys((s.availability_zone, s.availability_zone_id) for s in subnets))


def _group_types(group: dict[str, Any]) -> list[str]:
    if group.get("InstanceType"):
        return [group["InstanceType"]]
    return list((group.get("InstanceRequirements") or {}).get("CurrentInstanceTypes") or [])


# --- SageMaker ------------------------------------------------------------------------------------


def _add_to_group(cluster: Cluster, group: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Add nodes to one group, or the Failed entry saying why not."""
    count = spec["IncrementTargetCountBy"]
    extra = {k: spec[k] for k in ("AvailabilityZones", "InstanceTypes") if k in spec}

    def failed(code: str, message: str) -> dict[str, Any]:
        return {
            "InstanceGroupName": spec["InstanceGroupName"],
            "ErrorCode": code,
            "FailedCount": count,
            "Message": message,
            **extra,
        }

    if group.get("Status", "InService") != "InService":
        return failed("InvalidInstanceGroupStatus", f"instance group is {group['Status']}")
    zones = _group_zones(cluster, group)
    wanted_zones = spec.get("AvailabilityZones") or [z for z, _ in zones]
    if set(wanted_zones) - {z for z, _ in zones}:
        return failed("IncompatibleAvailabilityZones", f"{wanted_zones} not all in the group's subnets")
    types = spec.get("InstanceTypes") or _group_types(group)
    if set(types) - set(_group_types(group)):
        return failed("IncompatibleInstanceTypes", f"{types} not all allowed in the group")
    zone_ids = dict(zones)
    capacity = "Spot" if "Spot" in (group.get("CapacityRequirements") or {}) else "OnDemand"
    added = []
    for index in range(count):
        instance_id = f"i-{next(_instance_numbers):017x}"
        node = ClusterNode(
            cluster.region_name,
            cluster.account_id,
            cluster.cluster_name,
            group["InstanceGroupName"],
            types[0],
            group["LifeCycleConfig"],
            group["ExecutionRole"],
            instance_id,
            group.get("ThreadsPerCore"),
        )
        node.status = "Pending"  # continuous provisioning: the launch completes later
        node.hps_logical_id = f"{group['InstanceGroupName']}-{uuid.uuid4().hex[:12]}"
        node.hps_zone = wanted_zones[index % len(wanted_zones)] if wanted_zones else ""
        node.hps_zone_id = zone_ids.get(node.hps_zone, "")
        node.hps_capacity = capacity
        cluster.nodes[instance_id] = node
        added.append(node)
    group["TargetCount"] = group.get("TargetCount", 0) + count
    add_event(cluster, f"Adding {count} node(s)", group=group["InstanceGroupName"])
    return {
        "nodes": [
            {
                "NodeLogicalId": n.hps_logical_id,
                "InstanceGroupName": group["InstanceGroupName"],
                "Status": "Pending",
                **extra,
            }
            for n in added
        ]
    }


def _latest(result: dict[str, Any], cluster: Cluster) -> dict[str, Any]:
    """A recorded answer with each node's current status: "NotFound" once it is deleted."""
    statuses = {_logical_id(n): n.status for n in cluster.nodes.values()}
    replayed = copy.deepcopy(result)
    for entry in replayed["Successful"]:
        entry["Status"] = statuses.get(entry["NodeLogicalId"], "NotFound")
    return replayed


def batch_add_cluster_nodes(self: SageMakerResponse) -> ActionResult:
    """BatchAddClusterNodes as documented: limits, per-group failures, 8-hour ClientToken replay.

    API_BatchAddClusterNodes, ClientToken: "This token is valid for 8 hours. If you retry the request
    with the same client token within this timeframe and the same parameters, the API returns the same
    set of NodeLogicalIds with their latest status." Successful entries carry the AvailabilityZones and
    InstanceTypes asked for (API_NodeAdditionResult), and a node lands in the zone asked for
    (API_AddClusterNodeSpecification: "the availability zones in which to add nodes").
    """
    cluster = sagemaker_cluster(self.region, self._get_param("ClusterName"))
    specs = self._get_param("NodesToAdd") or []
    if not 1 <= len(specs) <= MAX_GROUPS_PER_ADD:
        raise ValidationError(f"NodesToAdd must hold 1-{MAX_GROUPS_PER_ADD} instance groups")
    if any(not 1 <= s.get("IncrementTargetCountBy", 0) <= MAX_NODES_PER_ADD for s in specs):
        raise ValidationError(f"IncrementTargetCountBy must be 1-{MAX_NODES_PER_ADD}")
    if sum(s["IncrementTargetCountBy"] for s in specs) > MAX_NODES_PER_ADD:
        raise ValidationError(f"at most {MAX_NODES_PER_ADD} nodes per request")
    token = self._get_param("ClientToken")
    fingerprint = json.dumps(specs, sort_keys=True)
    now = datetime.now(UTC).timestamp()
    if token:
        used = _tokens(cluster).get(token)
        if used is not None and now - used[0] < TOKEN_TTL_SECONDS:
            if used[1] != fingerprint:
                raise SagemakerClientError(
                    "IdempotentParameterMismatch", "ClientToken reused with different parameters"
                )
            return ActionResult(_latest(used[2], cluster))
    successful: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    groups = {g["InstanceGroupName"]: g for g in cluster.instance_groups}
    for spec in specs:
        group = groups.get(spec["InstanceGroupName"])
        if group is None:
            failed.append(
                {
                    "InstanceGroupName": spec["InstanceGroupName"],
                    "ErrorCode": "InstanceGroupNotFound",
                    "FailedCount": spec["IncrementTargetCountBy"],
                    "Message": f"instance group {spec['InstanceGroupName']} not found",
                }
            )
            continue
        outcome = _add_to_group(cluster, group, spec)
        if "nodes" in outcome:
            successful.extend(outcome["nodes"])
        else:
            failed.append(outcome)
    result = {"Successful": successful, "Failed": failed}
    if token:
        _tokens(cluster)[token] = (now, fingerprint, copy.deepcopy(result))
    return ActionResult(result)


def batch_delete_cluster_nodes(self: SageMakerResponse) -> ActionResult:
    """Removes nodes at once, so deleting one twice answers NodeIdNotFound."""
    cluster = sagemaker_cluster(self.region, self._get_param("ClusterName"))
    logical_ids = self._get_param("NodeLogicalIds") or []
    node_ids = self._get_param("NodeIds") or []
    if not 1 <= len(logical_ids) + len(node_ids) <= MAX_IDS_PER_DELETE:
        raise ValidationError(f"NodeLogicalIds and NodeIds hold 1-{MAX_IDS_PER_DELETE} identifiers together")
    by_logical = {_logical_id(n): n for n in cluster.nodes.values()}
    result: dict[str, list[Any]] = {
        "Successful": [],
        "Failed": [],
        "SuccessfulNodeLogicalIds": [],
        "FailedNodeLogicalIds": [],
    }
    for key, ids, lookup, ok, bad in (
        ("NodeLogicalId", logical_ids, by_logical, "SuccessfulNodeLogicalIds", "FailedNodeLogicalIds"),
        ("NodeId", node_ids, dict(cluster.nodes), "Successful", "Failed"),
    ):
        for node_id in ids:
            node = lookup.get(node_id)
            if node is None or node.instance_id not in cluster.nodes:
                result[bad].append(
                    {key: node_id, "Code": "NodeIdNotFound", "Message": f"{node_id} not found"}
                )
                continue
            if code := _refusal(cluster, _logical_id(node)):
                result[bad].append(
                    {key: node_id, "Code": code, "Message": f"{node_id} cannot be deleted now"}
                )
                continue
            del cluster.nodes[node.instance_id]
            for group in cluster.instance_groups:
                if group["InstanceGroupName"] == node.instance_group_name:
                    group["TargetCount"] = max(0, group.get("TargetCount", 0) - 1)
            add_event(
                cluster,
                f"Deleting node {node_id}",
                group=node.instance_group_name,
                instance_id=node.instance_id,
            )
            result[ok].append(node_id)
    _recount(cluster)
    # The output lists have a minimum length of 1: leave empty ones out, as AWS does.
    return ActionResult({k: v for k, v in result.items() if v})


def _delete_refusals(cluster: Cluster) -> dict[str, list[str]]:
    if not hasattr(cluster, "hps_delete_refusals"):
        cluster.hps_delete_refusals = {}
    refusals: dict[str, list[str]] = cluster.hps_delete_refusals
    return refusals


def _refusal(cluster: Cluster, logical_id: str) -> str:
    """The error code this delete of the node fails with, if one is queued ("" = it goes)."""
    queued = _delete_refusals(cluster).get(logical_id)
    return queued.pop() if queued else ""


def refuse_delete(
    region: str, cluster_name: str, logical_id: str, code: str = "InvalidNodeStatus", times: int = 1
) -> None:
    """Make the next `times` BatchDeleteClusterNodes of this node fail for it alone, with one of the
    codes of API_BatchDeleteClusterNodeLogicalIdsError (NodeIdNotFound | InvalidNodeStatus |
    NodeIdInUse), while the other ids of the request are deleted (a per-node failure)."""
    _delete_refusals(sagemaker_cluster(region, cluster_name)).setdefault(logical_id, []).extend(
        [code] * times
    )


# DescribeCluster fields moto's Cluster does not keep, with what AWS answers when they were not set.
_CLUSTER_SETTINGS = {"NodeProvisioningMode": None, "NodeRecovery": "Automatic", "AutoScaling": None}


def _described_kubernetes_config(config: dict[str, Any]) -> dict[str, Any]:
    """A request's KubernetesConfig (Labels/Taints) as DescribeCluster reports it once applied."""
    if any(k.startswith(("Current", "Desired")) for k in config):
        return config
    labels, taints = config.get("Labels") or {}, config.get("Taints") or []
    return {
        "CurrentLabels": labels,
        "DesiredLabels": labels,
        "CurrentTaints": taints,
        "DesiredTaints": taints,
    }


def _apply_cluster_settings(cluster: Cluster, params: dict[str, Any]) -> None:
    for key in _CLUSTER_SETTINGS:
        if params.get(key) is not None:
            value = params[key]
            if key == "AutoScaling":  # ClusterAutoScalingConfig -> ClusterAutoScalingConfigOutput
                value = {**value, "Status": "InService"}
            setattr(cluster, f"hps_{key}", value)
    for group in cluster.instance_groups:
        if "KubernetesConfig" in group:
            group["KubernetesConfig"] = _described_kubernetes_config(group["KubernetesConfig"])


def set_cluster_settings(region: str, cluster_name: str, **settings: Any) -> None:
    """Make DescribeCluster answer these settings (NodeProvisioningMode, NodeRecovery, AutoScaling);
    None: as a cluster created without it (`NodeProvisioningMode` is then absent: its only value is
    Continuous, and a cluster created without it provisions in the standard mode)."""
    cluster = sagemaker_cluster(region, cluster_name)
    for key, value in settings.items():
        if key not in _CLUSTER_SETTINGS:
            raise ValueError(f"{key} is not one of {sorted(_CLUSTER_SETTINGS)}")
        setattr(cluster, f"hps_{key}", value)


_moto_create_cluster = SageMakerResponse.create_cluster


def create_cluster(self: SageMakerResponse) -> ActionResult:
    """moto's, keeping NodeProvisioningMode, NodeRecovery, AutoScaling and KubernetesConfig."""
    result = _moto_create_cluster(self)
    cluster = sagemaker_cluster(self.region, self._get_param("ClusterName"))
    _apply_cluster_settings(cluster, {k: self._get_param(k) for k in _CLUSTER_SETTINGS})
    return result


def update_cluster(self: SageMakerResponse) -> ActionResult:
    """UpdateCluster: groups named are replaced (counts kept) or added; cluster settings change."""
    cluster = sagemaker_cluster(self.region, self._get_param("ClusterName"))
    groups = {g["InstanceGroupName"]: g for g in cluster.instance_groups}
    for spec in self._get_param("InstanceGroups") or []:
        spec = copy.deepcopy(spec)
        count = spec.pop("InstanceCount", 0)
        old = groups.get(spec["InstanceGroupName"])
        spec["CurrentCount"] = old["CurrentCount"] if old else 0
        spec["TargetCount"] = old["TargetCount"] if old else count
        spec.setdefault("Status", "InService")
        if old is None:
            cluster.instance_groups.append(spec)
        else:
            cluster.instance_groups[cluster.instance_groups.index(old)] = spec
    for name in self._get_param("InstanceGroupsToDelete") or []:
        cluster.instance_groups[:] = [g for g in cluster.instance_groups if g["InstanceGroupName"] != name]
    _apply_cluster_settings(cluster, {k: self._get_param(k) for k in _CLUSTER_SETTINGS})
    add_event(cluster, "Cluster updated")
    return ActionResult({"ClusterArn": cluster.arn})


_moto_cluster_describe = Cluster.describe


def _cluster_describe(self: Cluster) -> dict[str, Any]:
    described = _moto_cluster_describe(self)
    for key, default in _CLUSTER_SETTINGS.items():
        value = getattr(self, f"hps_{key}", default)
        if value is not None:
            described[key] = value
    return described


def describe_cluster_node(self: SageMakerResponse) -> ActionResult:
    """moto's, plus lookup by NodeLogicalId."""
    cluster = sagemaker_cluster(self.region, self._get_param("ClusterName"))
    logical_id, node_id = self._get_param("NodeLogicalId"), self._get_param("NodeId")
    node = next(
        (
            n
            for n in cluster.nodes.values()
            if (logical_id and _logical_id(n) == logical_id) or n.instance_id == node_id
        ),
        None,
    )
    if node is None:
        raise ValidationError(f"Could not find node '{logical_id or node_id}'")
    return ActionResult({"NodeDetails": node.describe()})


_moto_summary = ClusterNode.summary
_moto_describe = ClusterNode.describe


def _instance_status(node: ClusterNode) -> dict[str, str]:
    """InstanceStatus: moto says "message" for every node; AWS says why only when there is a reason."""
    message = getattr(node, "hps_message", "")
    return {"Status": node.status, **({"Message": message} if message else {})}


def _summary(self: ClusterNode) -> dict[str, Any]:
    return {
        **_moto_summary(self),
        "NodeLogicalId": _logical_id(self),
        "InstanceStatus": _instance_status(self),
    }


def _describe(self: ClusterNode) -> dict[str, Any]:
    details = {
        **_moto_describe(self),
        "NodeLogicalId": _logical_id(self),
        "InstanceStatus": _instance_status(self),
    }
    if getattr(self, "hps_zone", ""):
        details["Placement"] = {"AvailabilityZone": self.hps_zone, "AvailabilityZoneId": self.hps_zone_id}
    if getattr(self, "hps_capacity", ""):
        details["CapacityType"] = self.hps_capacity
    return details


def install() -> None:
    """Patch moto's classes (idempotent)."""
    global _installed
    if _installed:
        return
    SageMakerResponse.batch_add_cluster_nodes = batch_add_cluster_nodes
    SageMakerResponse.batch_delete_cluster_nodes = batch_delete_cluster_nodes
    install_events()
    SageMakerResponse.describe_cluster_node = describe_cluster_node
    SageMakerResponse.create_cluster = create_cluster
    SageMakerResponse.update_cluster = update_cluster
    Cluster.describe = _cluster_describe
    ClusterNode.summary = _summary
    ClusterNode.describe = _describe
    # moto paginates ListClusterNodes by an `arn` nodes do not have, and then repeats page one.
    ClusterNode.arn = property(lambda node: node.instance_id)
    install_ec2()
    install_log()
    _installed = True
