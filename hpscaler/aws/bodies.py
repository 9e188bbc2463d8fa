"""SageMaker request bodies built from hpscaler's typed requests: the only place that knows their shape.

BatchAddClusterNodes (API_BatchAddClusterNodes, API_AddClusterNodeSpecification): `ClusterName`,
`ClientToken` and `NodesToAdd`, one entry per instance group with `InstanceGroupName` and
`IncrementTargetCountBy`, plus `AvailabilityZones` (zone names) and `InstanceTypes` only when the
plan chose them; absent, HyperPod may use every zone and type of the group.

Pure: no client, no I/O, so `plan` can print the exact bodies without loading aiobotocore.
"""

from __future__ import annotations

from typing import Any

from hpscaler.provisioning.batching import AddRequest, NodesToAdd


def add_nodes_entry(entry: NodesToAdd) -> dict[str, Any]:
    """One AddClusterNodeSpecification."""
    body: dict[str, Any] = {"InstanceGroupName": entry.group, "IncrementTargetCountBy": entry.count}
    if entry.zones:
        body["AvailabilityZones"] = list(entry.zones)
    if entry.instance_types:
        body["InstanceTypes"] = list(entry.instance_types)
    return body


def add_nodes_body(request: AddRequest) -> dict[str, Any]:
    """The BatchAddClusterNodes parameters for `request`, exactly as sent."""
    body: dict[str, Any] = {"ClusterName": request.cluster}
    if request.client_token:  # without one, HyperPod cannot tell a retry from a new request
        body["ClientToken"] = request.client_token
    body["NodesToAdd"] = [add_nodes_entry(e) for e in request.entries]
    return body
