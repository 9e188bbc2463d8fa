"""Cut node additions into `BatchAddClusterNodes` requests within the API's limits.

One request adds nodes to at most 5 instance groups and at most 50 nodes in total. A group that
needs more is split over several requests. Each request carries a `ClientToken` derived from what
it asks for and why (the pods it is for), so a daemon that restarts and recomputes the same plan
sends the same token and HyperPod replays the earlier answer instead of adding nodes twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_GROUPS_PER_CALL = 5
MAX_NODES_PER_CALL = 50
# "You must specify either NodeLogicalIds, InstanceIds, or both, with a combined maximum of 50
# identifiers" (BatchDeleteClusterNodes API reference).
MAX_LOGICAL_IDS_PER_DELETE = 50


@dataclass(frozen=True, slots=True)
class GroupAddition:
    """Nodes wanted in one instance group, and the pods they are for."""

    group: str
    count: int
    # Sent as AvailabilityZones / InstanceTypes when not empty: the zone and type the plan chose
    # for a group that offers several (`planning.group_additions` leaves them empty otherwise).
    zones: tuple[str, ...] = ()
    instance_types: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()  # pod keys or uids; they make the ClientToken


@dataclass(frozen=True, slots=True)
class NodesToAdd:
    """One group's share of a `BatchAddClusterNodes` call (an AddClusterNodeSpecification)."""

    group: str
    count: int
    zones: tuple[str, ...] = ()  # AvailabilityZones, when the plan chose some
    instance_types: tuple[str, ...] = ()  # InstanceTypes, when the plan chose some


@dataclass(frozen=True, slots=True)
class AddRequest:
    """One `BatchAddClusterNodes` call; the AWS backend turns it into the request body."""

    cluster: str
    client_token: str
    entries: tuple[NodesToAdd, ...] = ()

    @property
    def node_count(self) -> int:
        """Nodes this call adds."""
        return sum(e.count for e in self.entries)


def _token_fields(entry: NodesToAdd) -> dict[str, Any]:
    # Hashed under the API's field names, as the tokens were before requests became typed: a daemon
    # upgraded while its launches are in flight recomputes the same tokens and adds nothing twice.
    fields: dict[str, Any] = {"InstanceGroupName": entry.group, "IncrementTargetCountBy": entry.count}
    if entry.zones:
        fields["AvailabilityZones"] = list(entry.zones)
    if entry.instance_types:
        fields["InstanceTypes"] = list(entry.instance_types)
    return fields


def client_token(
    cluster: str,
    entries: Sequence[NodesToAdd],
    reasons: Sequence[str],
    salt: str = "",
    *,
    sequence: int = 0,
) -> str:
    """A deterministic idempotency token (<= 64 printable characters, as the API requires).

    `sequence` is the call's position in its batch: two calls of one batch may ask for the same thing
    (a large group split into chunks of 50 with no pods left to tell them apart), and a shared token
    would make HyperPod answer the second with the first's result instead of adding its nodes.
    """
    fields = [_token_fields(e) for e in entries]
    payload = json.dumps([cluster, fields, sorted(reasons), salt, sequence], sort_keys=True)
    return "hps-" + hashlib.sha256(payload.encode()).hexdigest()[:40]


def batch_additions(
    cluster: str,
    additions: Sequence[GroupAddition],
    *,
    salt: str = "",
    max_groups: int = MAX_GROUPS_PER_CALL,
    max_nodes: int = MAX_NODES_PER_CALL,
) -> list[AddRequest]:
    """Pack additions into as few requests as the limits allow: ceil(nodes / 50) when groups allow."""
    requests: list[AddRequest] = []
    current: list[NodesToAdd] = []
    current_reasons: list[str] = []
    nodes_in_call = 0

    def close() -> None:
        nonlocal current, current_reasons, nodes_in_call
        if current:
            token = client_token(cluster, current, current_reasons, salt, sequence=len(requests))
            requests.append(AddRequest(cluster, token, tuple(current)))
        current, current_reasons, nodes_in_call = [], [], 0

    for addition in sorted(additions, key=lambda a: (-a.count, a.group, a.zones, a.instance_types)):
        left = addition.count
        reasons = list(addition.reasons)
        while left > 0:
            in_call = any(e.group == addition.group for e in current)
            # A group appears once per call: two zones of one group go in two calls.
            if nodes_in_call >= max_nodes or len(current) >= max_groups or in_call:
                close()
            take = min(left, max_nodes - nodes_in_call)
            current.append(NodesToAdd(addition.group, take, addition.zones, addition.instance_types))
            # Each chunk's token covers the share of pods it was sized for.
            share = max(1, round(len(reasons) * take / left)) if reasons else 0
            current_reasons.extend(reasons[:share])
            reasons = reasons[share:]
            nodes_in_call += take
            left -= take
    close()
    return requests


def batch_deletions(logical_ids: Sequence[str], limit: int = MAX_LOGICAL_IDS_PER_DELETE) -> list[list[str]]:
    """Split node logical ids into `BatchDeleteClusterNodes` calls of at most 50 ids."""
    ids = sorted(set(logical_ids))
    return [ids[i : i + limit] for i in range(0, len(ids), limit)]
