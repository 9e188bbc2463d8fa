"""`HyperPodCluster` on the SageMaker API: DescribeCluster, ListClusterNodes, BatchAdd/DeleteClusterNodes,
ListClusterEvents (continuous provisioning mode).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast, get_args

import anyio
import structlog

from hpscaler.aws.bodies import add_nodes_body
from hpscaler.aws.retry import RetryPolicy, call_aws
from hpscaler.aws.subnets import SubnetZones
from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import (
    AddedNode,
    AddFailure,
    AddResult,
    ClusterDescription,
    ClusterEvent,
    DeleteFailure,
    DeleteResult,
    HyperPodNode,
    NodeStatus,
)
from hpscaler.model import CapacityType, InstanceGroup, Taint, TaintEffect
from hpscaler.provisioning.batching import MAX_LOGICAL_IDS_PER_DELETE, AddRequest

log = structlog.get_logger("hpscaler.aws")

_TAINT_EFFECTS = frozenset(get_args(TaintEffect))
MAX_DESCRIBED_EVENTS = 20  # DescribeClusterEvent calls per ListClusterEvents poll, at most


def _timestamp(value: object) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0


def _node_status(value: object) -> NodeStatus:
    try:
        return NodeStatus(str(value))
    except ValueError:
        # A status newer than this code: neither Running nor failed, so nothing acts on it.
        log.warning("node_status_unknown", status=value)
        return NodeStatus.PENDING


def capacity_type_of(group: Mapping[str, Any]) -> CapacityType:
    """CapacityRequirements {"Spot": {}} means Spot; absent or {"OnDemand": {}} means on-demand."""
    requirements = group.get("CapacityRequirements") or {}
    return CapacityType.SPOT if "Spot" in requirements else CapacityType.ON_DEMAND


def instance_types_of(group: Mapping[str, Any]) -> tuple[str, ...]:
    """One InstanceType, or a flexible group's InstanceRequirements types."""
    if group.get("InstanceType"):
        return (str(group["InstanceType"]),)
    requirements = group.get("InstanceRequirements") or {}
    types = requirements.get("CurrentInstanceTypes") or requirements.get("DesiredInstanceTypes")
    if not types:
        types = [d["InstanceType"] for d in group.get("InstanceTypeDetails", []) if d.get("InstanceType")]
    return tuple(str(t) for t in types)


def _labels_and_taints(group: Mapping[str, Any]) -> tuple[tuple[tuple[str, str], ...], tuple[Taint, ...]]:
    config = group.get("KubernetesConfig") or {}
    labels = config.get("CurrentLabels") or config.get("DesiredLabels") or {}
    taints: list[Taint] = []
    for raw in config.get("CurrentTaints") or config.get("DesiredTaints") or []:
        effect = raw.get("Effect", "")
        if effect not in _TAINT_EFFECTS:
            log.warning("taint_effect_unknown", group=group.get("InstanceGroupName"), effect=effect)
            continue
        taints.append(Taint(str(raw["Key"]), cast(TaintEffect, effect), str(raw.get("Value", ""))))
    return tuple(sorted((str(k), str(v)) for k, v in labels.items())), tuple(taints)


def instance_group(
    group: Mapping[str, Any], cluster_subnets: Sequence[str], zones: Mapping[str, tuple[str, str]]
) -> InstanceGroup:
    """One DescribeCluster instance group; its zones come from its own subnets or the cluster's."""
    override = group.get("OverrideVpcConfig") or {}
    subnets = tuple(override.get("Subnets") or cluster_subnets)
    pairs = list(dict.fromkeys(zones[s] for s in subnets if s in zones))
    labels, taints = _labels_and_taints(group)
    return InstanceGroup(
        name=str(group["InstanceGroupName"]),
        instance_types=instance_types_of(group),
        capacity_type=capacity_type_of(group),
        zones=tuple(name for name, _ in pairs),
        zone_ids=tuple(zone_id for _, zone_id in pairs) if all(z for _, z in pairs) else (),
        subnets=subnets,
        current_count=int(group.get("CurrentCount", 0)),
        target_count=int(group.get("TargetCount", 0)),
        labels=labels,
        taints=taints,
        status=str(group.get("Status") or "InService"),
        subnet_zones=tuple((s, *zones[s]) for s in subnets if s in zones),
    )


class SageMakerHyperPod:
    """The real `HyperPodCluster`. Every call retries per `retry`; failures raise `BackendError`."""

    def __init__(
        self,
        sagemaker: Any,
        ec2: Any,
        cluster_name: str,
        *,
        retry: RetryPolicy | None = None,
        page_size: int = 100,
        describe_concurrency: int = 4,
    ) -> None:
        self._sm = sagemaker
        self.cluster_name = cluster_name
        self._retry = retry if retry is not None else RetryPolicy()
        self._page_size = page_size
        self._subnets = SubnetZones(ec2, self._retry)
        self._groups: dict[str, InstanceGroup] = {}
        # Instance id -> (zone, capacity type): fixed for an instance's life, so fetched once.
        self._placements: dict[str, tuple[str, CapacityType | None]] = {}
        self._describe_limit = anyio.CapacityLimiter(describe_concurrency)

    async def _call(
        self, operation: str, params: Mapping[str, Any], *, idempotent: bool = True
    ) -> dict[str, Any]:
        return await call_aws(self._sm, operation, params, self._retry, idempotent=idempotent)

    async def _pages(self, operation: str, params: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        """Every item of a NextToken-paginated list; each page is retried on its own."""
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        request = dict(params)
        while True:
            page = await self._call(operation, request)
            items.extend(page.get(key) or [])
            token = page.get("NextToken")
            if not token:
                return items
            if token in seen:  # a server that hands out the same token again would loop forever
                raise BackendError(f"{operation} repeated a NextToken", retryable=True, code="PaginationLoop")
            seen.add(token)
            request["NextToken"] = token

    # --- HyperPodCluster ------------------------------------------------------------------------

    async def describe_cluster(self) -> ClusterDescription:
        """Instance groups with counts, types, capacity type, Kubernetes labels/taints and zones."""
        response = await self._call("DescribeCluster", {"ClusterName": self.cluster_name})
        cluster_subnets = tuple((response.get("VpcConfig") or {}).get("Subnets") or ())
        raw_groups = response.get("InstanceGroups") or []
        subnet_ids = set(cluster_subnets)
        for raw in raw_groups:
            subnet_ids.update((raw.get("OverrideVpcConfig") or {}).get("Subnets") or ())
        zones = await self._subnets.resolve(sorted(subnet_ids))
        groups = tuple(instance_group(raw, cluster_subnets, zones) for raw in raw_groups)
        self._groups = {g.name: g for g in groups}
        document = {k: v for k, v in response.items() if k != "ResponseMetadata"}
        document["Subnets"] = [
            {"SubnetId": s, "AvailabilityZone": zone, "AvailabilityZoneId": zone_id}
            for s, (zone, zone_id) in sorted(zones.items())
        ]
        return ClusterDescription(
            name=str(response.get("ClusterName") or self.cluster_name),
            groups=groups,
            provisioning_mode=str(response.get("NodeProvisioningMode") or "Standard"),
            document=document,
        )

    async def list_nodes(self) -> Sequence[HyperPodNode]:
        """All nodes, all pages. A node's zone is its group's when the group has one zone, else
        DescribeClusterNode's Placement (ListClusterNodes does not report placement).
        """
        summaries = await self._pages(
            "ListClusterNodes",
            {"ClusterName": self.cluster_name, "IncludeNodeLogicalIds": True, "MaxResults": self._page_size},
            "ClusterNodeSummaries",
        )
        if any(s.get("InstanceGroupName") not in self._groups for s in summaries):
            await self.describe_cluster()  # a group created since the last look
        await self._learn_placements(summaries)
        live = {str(s.get("InstanceId", "")) for s in summaries}
        self._placements = {i: p for i, p in self._placements.items() if i in live}
        return [self._node(s) for s in summaries]

    async def batch_add_nodes(self, request: AddRequest) -> AddResult:
        """BatchAddClusterNodes for `request`. Retried only with a ClientToken: HyperPod then
        replays the first answer for 8 hours instead of adding the nodes twice.
        """
        params = add_nodes_body(request)
        response = await self._call("BatchAddClusterNodes", params, idempotent=bool(request.client_token))
        added = tuple(
            AddedNode(str(s["NodeLogicalId"]), str(s["InstanceGroupName"]), _node_status(s.get("Status")))
            for s in response.get("Successful") or []
        )
        failed = tuple(
            AddFailure(
                str(f["InstanceGroupName"]),
                str(f["ErrorCode"]),
                int(f.get("FailedCount", 0)),
                str(f.get("Message", "")),
            )
            for f in response.get("Failed") or []
        )
        log.info(
            "nodes_requested",
            cluster=self.cluster_name,
            token=request.client_token,
            added=len(added),
            failed=[(f.group, f.error_code, f.count) for f in failed],
        )
        return AddResult(added, failed)

    async def batch_delete_nodes(
        self, logical_ids: Sequence[str], instance_ids: Sequence[str] = ()
    ) -> DeleteResult:
        """BatchDeleteClusterNodes by NodeLogicalIds (and by instance ids, as NodeIds, for nodes
        HyperPod lists without a logical id), 50 identifiers per request. Deleting twice is harmless.
        """
        ids = [("NodeLogicalIds", str(i)) for i in dict.fromkeys(logical_ids)]
        ids += [("NodeIds", str(i)) for i in dict.fromkeys(instance_ids)]
        deleted: list[str] = []
        failed: list[DeleteFailure] = []
        for start in range(0, len(ids), MAX_LOGICAL_IDS_PER_DELETE):
            chunk = ids[start : start + MAX_LOGICAL_IDS_PER_DELETE]
            params: dict[str, Any] = {"ClusterName": self.cluster_name}
            for key, value in chunk:
                params.setdefault(key, []).append(value)
            try:
                response = await self._call("BatchDeleteClusterNodes", params)
            except BackendError:
                log.warning(
                    "nodes_delete_interrupted",
                    cluster=self.cluster_name,
                    deleted=len(deleted),
                    left=len(ids) - start,
                )
                raise
            deleted.extend(str(i) for i in response.get("SuccessfulNodeLogicalIds") or [])
            deleted.extend(str(i) for i in response.get("Successful") or [])
            failed.extend(
                DeleteFailure(str(f["NodeLogicalId"]), str(f["Code"]), str(f.get("Message", "")))
                for f in response.get("FailedNodeLogicalIds") or []
            )
            failed.extend(
                DeleteFailure(str(f["NodeId"]), str(f["Code"]), str(f.get("Message", "")))
                for f in response.get("Failed") or []
            )
        if ids:
            log.info(
                "nodes_deleted",
                cluster=self.cluster_name,
                deleted=len(deleted),
                failed=[(f.logical_id, f.code) for f in failed],
            )
        return DeleteResult(tuple(deleted), tuple(failed))

    async def list_events(self, since: float) -> Sequence[ClusterEvent]:
        """ListClusterEvents strictly newer than `since`, oldest first, all pages.

        An Error-level instance event says why only in its metadata (the reference's example: a
        creation that failed for lack of capacity), which DescribeClusterEvent returns: read it for
        up to `MAX_DESCRIBED_EVENTS` such events per call.
        """
        params: dict[str, Any] = {
            "ClusterName": self.cluster_name,
            "SortBy": "EventTime",
            "SortOrder": "Ascending",
            "MaxResults": self._page_size,
        }
        if since > 0:
            params["EventTimeAfter"] = datetime.fromtimestamp(since, UTC)
        events = [
            ClusterEvent(
                event_id=str(e["EventId"]),
                time=_timestamp(e.get("EventTime")),
                group=str(e.get("InstanceGroupName", "")),
                instance_id=str(e.get("InstanceId", "")),
                level=str(e.get("EventLevel") or "Info"),
                description=str(e.get("Description", "")),
                resource_type=str(e.get("ResourceType", "")),
            )
            for e in await self._pages("ListClusterEvents", params, "Events")
        ]
        # The API's lower bound may be inclusive; the interface promises strictly newer.
        events = [e for e in events if e.time > since]
        errors = [i for i, e in enumerate(events) if e.level == "Error" and e.resource_type == "Instance"]
        for index in errors[:MAX_DESCRIBED_EVENTS]:
            events[index] = replace(
                events[index], failure_message=await self._failure(events[index].event_id)
            )
        return events

    async def _failure(self, event_id: str) -> str:
        answer = await self._call(
            "DescribeClusterEvent", {"ClusterName": self.cluster_name, "EventId": event_id}
        )
        metadata = (((answer.get("EventDetails") or {}).get("EventDetails") or {}).get("EventMetadata")) or {}
        return str((metadata.get("Instance") or {}).get("FailureMessage", ""))

    # --- internals ------------------------------------------------------------------------------

    def _node(self, summary: Mapping[str, Any]) -> HyperPodNode:
        instance_id = str(summary.get("InstanceId", ""))
        group_name = str(summary.get("InstanceGroupName", ""))
        group = self._groups.get(group_name)
        status = summary.get("InstanceStatus") or {}
        zone, capacity = self._placements.get(instance_id, ("", None))
        if not zone and group is not None and len(group.zones) == 1:
            zone = group.zones[0]
        if capacity is None:
            capacity = group.capacity_type if group is not None else CapacityType.ON_DEMAND
        return HyperPodNode(
            # Never the instance id: BatchDeleteClusterNodes would look it up as a logical id.
            logical_id=str(summary.get("NodeLogicalId") or ""),
            group=group_name,
            status=_node_status(status.get("Status")),
            instance_id=instance_id,
            instance_type=str(summary.get("InstanceType", "")),
            zone=zone,
            capacity_type=capacity,
            launch_time=_timestamp(summary.get("LaunchTime")),
            message=str(status.get("Message", "")),
        )

    async def _learn_placements(self, summaries: Iterable[Mapping[str, Any]]) -> None:
        """DescribeClusterNode for new instances whose zone the group cannot tell (several zones)."""
        unknown = []
        for summary in summaries:
            instance_id = str(summary.get("InstanceId", ""))
            group = self._groups.get(str(summary.get("InstanceGroupName", "")))
            if (
                instance_id
                and instance_id not in self._placements
                and (group is None or len(group.zones) != 1)
            ):
                unknown.append(summary)
        if not unknown:
            return
        async with anyio.create_task_group() as tg:
            for summary in unknown:
                tg.start_soon(
                    self._learn_placement,
                    summary,
                    name=f"hyperpod:placement:{summary.get('NodeLogicalId', '')}",
                )

    async def _learn_placement(self, summary: Mapping[str, Any]) -> None:
        params: dict[str, Any] = {"ClusterName": self.cluster_name}
        if summary.get("NodeLogicalId"):
            params["NodeLogicalId"] = summary["NodeLogicalId"]
        else:
            params["NodeId"] = summary["InstanceId"]
        async with self._describe_limit:
            try:
                details = (await self._call("DescribeClusterNode", params)).get("NodeDetails") or {}
            except BackendError as exc:
                # The node is still listed, just without a zone; the next listing tries again.
                log.warning("node_placement_unknown", instance=summary.get("InstanceId"), error=str(exc))
                return
        zone = str((details.get("Placement") or {}).get("AvailabilityZone", ""))
        capacity = {"Spot": CapacityType.SPOT, "OnDemand": CapacityType.ON_DEMAND}.get(
            str(details.get("CapacityType"))
        )
        if zone:  # a node still pending may have no placement yet: ask again later
            self._placements[str(summary["InstanceId"])] = (zone, capacity)
