"""HyperPod's cluster events on moto: ListClusterEvents (time, group, node and type filters,
sorting, pagination) and DescribeClusterEvent (the summary plus EventDetails.EventMetadata, as
API_ClusterEventDetail shows it), over an event log the other added operations and the tests append
to (`add_event`). EventLevel is Info, Warn or Error (ClusterEventSummary). The log lives on moto's
cluster object, so a reset wipes it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ResourceNotFound
from moto.sagemaker.models import Cluster, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto_ec2 import ACCOUNT


def sagemaker_cluster(region: str, name: str) -> Cluster:
    """The moto cluster (name or ARN), for tests that arrange state directly."""
    backend = sagemaker_backends[ACCOUNT][region]
    cluster = backend.clusters.get(name.split("/")[-1])
    if cluster is None:
        raise ResourceNotFound(f"Cluster {name} not found")
    return cluster


def cluster_events(cluster: Cluster) -> list[dict[str, Any]]:
    """The cluster's event log (appended to by the added operations and by tests)."""
    if not hasattr(cluster, "hps_events"):
        cluster.hps_events = []
    events: list[dict[str, Any]] = cluster.hps_events
    return events


def add_event(
    cluster: Cluster,
    description: str,
    *,
    group: str = "",
    instance_id: str = "",
    level: str = "Info",
    time: datetime | None = None,
    failure_message: str = "",
) -> dict[str, Any]:
    """Append one ListClusterEvents entry (`failure_message`: its metadata, for DescribeClusterEvent)."""
    event = {
        "EventId": uuid.uuid4().hex,
        "ClusterArn": cluster.arn,
        "ClusterName": cluster.cluster_name,
        "ResourceType": "Instance" if instance_id else ("InstanceGroup" if group else "Cluster"),
        "EventTime": time or datetime.now(UTC),
        "Description": description,
        "EventLevel": level,
    }
    if group:
        event["InstanceGroupName"] = group
    if instance_id:
        event["InstanceId"] = instance_id
    if failure_message:
        event["hps_failure"] = failure_message
    cluster_events(cluster).append(event)
    return event


def _epoch(value: Any) -> float | None:
    """A timestamp parameter as epoch seconds (JSON protocols send numbers)."""
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


def list_cluster_events(self: SageMakerResponse) -> ActionResult:
    """ListClusterEvents with the time, group, node and type filters, sorting and pagination."""
    cluster = sagemaker_cluster(self.region, self._get_param("ClusterName"))
    events = list(cluster_events(cluster))
    after, before = _epoch(self._get_param("EventTimeAfter")), _epoch(self._get_param("EventTimeBefore"))
    if after is not None:
        events = [e for e in events if e["EventTime"].timestamp() > after]
    if before is not None:
        events = [e for e in events if e["EventTime"].timestamp() < before]
    for param, field in (
        ("InstanceGroupName", "InstanceGroupName"),
        ("NodeId", "InstanceId"),
        ("ResourceType", "ResourceType"),
    ):
        if self._get_param(param):
            events = [e for e in events if e.get(field) == self._get_param(param)]
    events.sort(key=lambda e: e["EventTime"], reverse=self._get_param("SortOrder") == "Descending")
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or 10)
    page = [{k: v for k, v in e.items() if not k.startswith("hps_")} for e in events[start : start + size]]
    result: dict[str, Any] = {"Events": page}
    if start + size < len(events):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


def describe_cluster_event(self: SageMakerResponse) -> ActionResult:
    """DescribeClusterEvent: the summary plus EventDetails.EventMetadata (API_ClusterEventDetail)."""
    cluster = sagemaker_cluster(self.region, self._get_param("ClusterName"))
    wanted = self._get_param("EventId")
    found = next((e for e in cluster_events(cluster) if e["EventId"] == wanted), None)
    if found is None:
        raise ResourceNotFound(f"Event {wanted} not found")
    detail = {k: v for k, v in found.items() if not k.startswith("hps_")}
    if found.get("hps_failure"):
        detail["EventDetails"] = {"EventMetadata": {"Instance": {"FailureMessage": found["hps_failure"]}}}
    return ActionResult({"EventDetails": detail})


def install_events() -> None:
    """Patch moto's SageMaker responses (called once, by `moto_ext.install`)."""
    SageMakerResponse.list_cluster_events = list_cluster_events
    SageMakerResponse.describe_cluster_event = describe_cluster_event
