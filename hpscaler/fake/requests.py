"""Request validation of the in-memory HyperPod, per the SageMaker API reference.

BatchAddClusterNodes: at most 5 AddClusterNodeSpecification entries and 50 nodes a call,
IncrementTargetCountBy 1-50, a ClientToken of 1-64 printable characters, and AvailabilityZones given
as zone names (pattern `[a-z]{2}-[a-z]+-\\d[a-z]`, API_AddClusterNodeSpecification).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from hpscaler.backends.protocols import BackendError
from hpscaler.model import InstanceGroup
from hpscaler.provisioning.batching import MAX_GROUPS_PER_CALL, MAX_NODES_PER_CALL

_BODY_KEYS = {"ClusterName", "ClientToken", "NodesToAdd"}
_ENTRY_KEYS = {"InstanceGroupName", "IncrementTargetCountBy", "AvailabilityZones", "InstanceTypes"}
_ZONE_NAME = re.compile(r"[a-z]{2}-[a-z]+-\d[a-z]")


def validate_add(
    body: Mapping[str, object], cluster_name: str, groups: Mapping[str, InstanceGroup]
) -> list[tuple[str, int, tuple[str, ...], tuple[str, ...]]]:
    """The (group, count, instance types, zones) entries of a valid BatchAddClusterNodes body;
    raises a ValidationException as the API does for an invalid one."""

    def invalid(message: str) -> BackendError:
        return BackendError(message, retryable=False, code="ValidationException")

    if unknown := set(body) - _BODY_KEYS:
        raise invalid(f"unknown parameters {sorted(unknown)}")
    cluster = body.get("ClusterName")
    if not isinstance(cluster, str) or cluster.rsplit("/", 1)[-1] != cluster_name:
        raise invalid(f"ClusterName {cluster!r} does not name cluster {cluster_name}")
    token = body.get("ClientToken")
    if token is not None and (
        not isinstance(token, str)
        or not 1 <= len(token) <= 64
        or not (token.isascii() and token.isprintable())
    ):
        raise invalid("ClientToken must be 1-64 printable ASCII characters")
    entries = body.get("NodesToAdd")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_GROUPS_PER_CALL:
        raise invalid(f"NodesToAdd must hold 1-{MAX_GROUPS_PER_CALL} entries")
    parsed: list[tuple[str, int, tuple[str, ...], tuple[str, ...]]] = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) - _ENTRY_KEYS:
            raise invalid(f"bad NodesToAdd entry {entry!r}")
        name, count = entry.get("InstanceGroupName"), entry.get("IncrementTargetCountBy")
        if not isinstance(name, str) or not name:
            raise invalid("InstanceGroupName is required")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_NODES_PER_CALL:
            raise invalid(f"IncrementTargetCountBy must be 1-{MAX_NODES_PER_CALL}, got {count!r}")
        group = groups.get(name)
        types = _string_list(entry.get("InstanceTypes"), group.instance_types if group else (), invalid)
        zones = _string_list(entry.get("AvailabilityZones"), group.zones if group else (), invalid)
        if group is not None:
            if set(types) - set(group.instance_types):
                raise invalid(f"InstanceTypes {types} not all in group {name}")
            if not all(_ZONE_NAME.fullmatch(z) for z in zones):
                raise invalid(f"AvailabilityZones {zones}: zone names are expected, e.g. us-west-2a")
            if set(zones) - set(group.zones):
                raise invalid(f"AvailabilityZones {zones} not all in group {name}")
        parsed.append((name, count, types, zones))
    if sum(count for _, count, _, _ in parsed) > MAX_NODES_PER_CALL:
        raise invalid(f"at most {MAX_NODES_PER_CALL} nodes per call")
    return parsed


def _string_list(
    value: object, default: Sequence[str], invalid: Callable[[str], BackendError]
) -> tuple[str, ...]:
    if value is None:
        return tuple(default)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise invalid(f"expected a non-empty list of strings, got {value!r}")
    return tuple(value)
