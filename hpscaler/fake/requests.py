"""Request validation of the in-memory HyperPod, per the SageMaker API reference.

BatchAddClusterNodes: at most 5 AddClusterNodeSpecification entries and 50 nodes a call,
IncrementTargetCountBy 1-50, a ClientToken of 1-64 printable characters, and AvailabilityZones given
as zone names (pattern `[a-z]{2}-[a-z]+-\\d[a-z]`, API_AddClusterNodeSpecification). The types of
the request rule out what botocore's own parameter validation rejects on the wire (unknown or
missing fields).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hpscaler.backends.errors import InvalidRequestError, NotFoundError
from hpscaler.model import InstanceGroup
from hpscaler.provisioning.batching import MAX_GROUPS_PER_CALL, MAX_NODES_PER_CALL, AddRequest

_ZONE_NAME = re.compile(r"[a-z]{2}-[a-z]+-\d[a-z]")


def validate_add(
    request: AddRequest, cluster_name: str, groups: Mapping[str, InstanceGroup]
) -> list[tuple[str, int, tuple[str, ...], tuple[str, ...]]]:
    """The (group, count, instance types, zones) entries of a valid BatchAddClusterNodes request,
    an absent list standing for all of the group's; raises a ValidationException (or ResourceNotFound
    for another cluster) as the API does."""

    def invalid(message: str) -> InvalidRequestError:
        return InvalidRequestError(message, code="ValidationException")

    if request.cluster.rsplit("/", 1)[-1] != cluster_name:
        # The model's ResourceNotFound ("Resource being access is not found"): no such cluster.
        raise NotFoundError(f"cluster {request.cluster!r} not found", code="ResourceNotFound")
    token = request.client_token
    if token and (len(token) > 64 or not (token.isascii() and token.isprintable())):
        raise invalid("ClientToken must be 1-64 printable ASCII characters")
    if not 1 <= len(request.entries) <= MAX_GROUPS_PER_CALL:
        raise invalid(f"NodesToAdd must hold 1-{MAX_GROUPS_PER_CALL} entries")
    parsed: list[tuple[str, int, tuple[str, ...], tuple[str, ...]]] = []
    for entry in request.entries:
        if not entry.group:
            raise invalid("InstanceGroupName is required")
        if not 1 <= entry.count <= MAX_NODES_PER_CALL:
            raise invalid(f"IncrementTargetCountBy must be 1-{MAX_NODES_PER_CALL}, got {entry.count!r}")
        group = groups.get(entry.group)
        types = entry.instance_types or (group.instance_types if group else ())
        zones = entry.zones or (group.zones if group else ())
        if group is not None:
            if set(types) - set(group.instance_types):
                raise invalid(f"InstanceTypes {types} not all in group {entry.group}")
            if not all(_ZONE_NAME.fullmatch(z) for z in zones):
                raise invalid(f"AvailabilityZones {zones}: zone names are expected, e.g. us-west-2a")
            if set(zones) - set(group.zones):
                raise invalid(f"AvailabilityZones {zones} not all in group {entry.group}")
        parsed.append((entry.group, entry.count, tuple(types), tuple(zones)))
    if request.node_count > MAX_NODES_PER_CALL:
        raise invalid(f"at most {MAX_NODES_PER_CALL} nodes per call")
    return parsed
