"""Cutting node additions and deletions into HyperPod API calls within the API's limits."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters
from hypothesis import given, settings
from hypothesis import strategies as st

from hpscaler.aws.bodies import add_nodes_body
from hpscaler.provisioning.batching import (
    MAX_GROUPS_PER_CALL,
    MAX_LOGICAL_IDS_PER_DELETE,
    MAX_NODES_PER_CALL,
    AddRequest,
    GroupAddition,
    batch_additions,
    batch_deletions,
)

SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")
ADD_SHAPE = SAGEMAKER.operation_model("BatchAddClusterNodes").input_shape
DELETE_SHAPE = SAGEMAKER.operation_model("BatchDeleteClusterNodes").input_shape
TOKEN = re.compile(r"^[\x21-\x7e]{1,64}$")
CLUSTER = "my-cluster"


def assert_valid(request: AddRequest) -> None:
    body = add_nodes_body(request)
    validate_parameters(body, ADD_SHAPE)  # raises ParamValidationError
    # botocore checks minimums and types only; the maximums and patterns are checked here.
    assert TOKEN.match(body["ClientToken"])
    entries = body["NodesToAdd"]
    assert 1 <= len(entries) <= MAX_GROUPS_PER_CALL
    assert sum(e["IncrementTargetCountBy"] for e in entries) <= MAX_NODES_PER_CALL
    assert all(1 <= e["IncrementTargetCountBy"] <= MAX_NODES_PER_CALL for e in entries)
    assert len({e["InstanceGroupName"] for e in entries}) == len(entries), "a group twice in one call"
    assert request.node_count == sum(e["IncrementTargetCountBy"] for e in entries)


def totals(requests: list[AddRequest]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for request in requests:
        for entry in request.entries:
            counts[entry.group] += entry.count
    return counts


@pytest.mark.parametrize("nodes", [1, 49, 50, 51, 100, 101, 137, 500])
def test_single_group_uses_ceil_nodes_over_50_calls(nodes: int) -> None:
    addition = GroupAddition("spot-a", nodes, reasons=tuple(f"uid-{i}" for i in range(nodes * 3)))
    requests = batch_additions(CLUSTER, [addition])
    assert len(requests) == math.ceil(nodes / MAX_NODES_PER_CALL)
    assert totals(requests) == {"spot-a": nodes}
    for request in requests:
        assert_valid(request)
    assert len({r.client_token for r in requests}) == len(requests)


def test_group_without_reasons_still_gets_distinct_tokens_per_call() -> None:
    requests = batch_additions(CLUSTER, [GroupAddition("spot-a", 100)])
    assert len(requests) == 2
    assert requests[0].client_token != requests[1].client_token


def test_at_most_five_groups_per_call() -> None:
    additions = [GroupAddition(f"group-{i}", 1) for i in range(12)]
    requests = batch_additions(CLUSTER, additions)
    assert len(requests) == 3
    assert [len(r.entries) for r in requests] == [5, 5, 2]
    assert totals(requests) == {f"group-{i}": 1 for i in range(12)}


def test_zones_and_instance_types_sent_only_when_chosen() -> None:
    additions = [
        GroupAddition("fixed", 2),
        GroupAddition("flexible", 3, zones=("us-west-2b",), instance_types=("ml.m5.2xlarge",)),
    ]
    (request,) = batch_additions(CLUSTER, additions)
    assert_valid(request)
    entries = {e["InstanceGroupName"]: e for e in add_nodes_body(request)["NodesToAdd"]}
    assert set(entries["fixed"]) == {"InstanceGroupName", "IncrementTargetCountBy"}
    assert entries["flexible"]["AvailabilityZones"] == ["us-west-2b"]
    assert entries["flexible"]["InstanceTypes"] == ["ml.m5.2xlarge"]


def test_client_token_is_deterministic_and_tracks_pods() -> None:
    def tokens(reasons: tuple[str, ...], **kwargs: Any) -> list[str]:
        return [
            r.client_token
            for r in batch_additions(CLUSTER, [GroupAddition("g", 3, reasons=reasons)], **kwargs)
        ]

    same = tokens(("a", "b", "c"))
    assert same == tokens(("a", "b", "c"))
    assert same == tokens(("c", "a", "b"))  # the pods, not their order
    assert same != tokens(("a", "b", "d"))
    assert same != tokens(("a", "b", "c"), salt="retry-1")
    other_cluster = [
        r.client_token for r in batch_additions("other", [GroupAddition("g", 3, reasons=("a", "b", "c"))])
    ]
    assert same != other_cluster
    assert all(TOKEN.match(t) for t in same)


def test_client_tokens_are_those_of_earlier_releases() -> None:
    # Tokens hash the entries under the API's field names, as before requests were typed: a daemon
    # upgraded while its launches are in flight must recompute the same tokens, or it adds twice.
    additions = [
        GroupAddition("fixed", 2, reasons=("uid-a", "uid-b")),
        GroupAddition("flexible", 3, zones=("us-west-2b",), instance_types=("ml.m5.2xlarge",)),
    ]
    (request,) = batch_additions(CLUSTER, additions)
    payload = [CLUSTER, add_nodes_body(request)["NodesToAdd"], ["uid-a", "uid-b"], "", 0]
    expected = "hps-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]
    assert request.client_token == expected == "hps-e60f92c3e07c413bebf992b73fdbdf88bece4fad"


def test_nothing_to_add_means_no_calls() -> None:
    assert batch_additions(CLUSTER, []) == []
    assert batch_additions(CLUSTER, [GroupAddition("g", 0)]) == []


GROUP_NAMES = st.from_regex(r"[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,8}){0,2}", fullmatch=True)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.dictionaries(
        GROUP_NAMES,
        st.tuples(
            st.integers(0, 180),
            st.lists(st.sampled_from(["us-west-2a", "us-west-2b", "us-west-2c"]), unique=True, max_size=3),
            st.integers(0, 60),
        ),
        max_size=14,
    )
)
def test_any_additions_split_within_limits(spec: dict[str, tuple[int, list[str], int]]) -> None:
    additions = [
        GroupAddition(name, count, zones=tuple(zones), reasons=tuple(f"{name}-pod-{i}" for i in range(pods)))
        for name, (count, zones, pods) in spec.items()
    ]
    requests = batch_additions(CLUSTER, additions)
    for request in requests:
        assert_valid(request)
    assert totals(requests) == Counter({a.group: a.count for a in additions if a.count > 0})
    wanted = sum(a.count for a in additions)
    groups = sum(1 for a in additions if a.count > 0)
    assert len(requests) >= max(
        math.ceil(wanted / MAX_NODES_PER_CALL), math.ceil(groups / MAX_GROUPS_PER_CALL)
    )
    # Only the last call may be small: each earlier one is full on nodes or on groups.
    for request in requests[:-1]:
        assert request.node_count == MAX_NODES_PER_CALL or len(request.entries) == MAX_GROUPS_PER_CALL
    assert len({r.client_token for r in requests}) == len(requests)
    # Same plan, same calls: a restarted daemon replays rather than adding twice.
    assert batch_additions(CLUSTER, additions) == requests


@pytest.mark.parametrize("count", [0, 1, 98, 99, 100, 250])
def test_batch_deletions_at_most_99_ids(count: int) -> None:
    ids = [f"i-{i:017x}" for i in range(count)]
    calls = batch_deletions([*ids, *ids[: count // 2]])  # duplicates are sent once
    assert len(calls) == math.ceil(count / MAX_LOGICAL_IDS_PER_DELETE)
    assert all(1 <= len(c) <= MAX_LOGICAL_IDS_PER_DELETE for c in calls)
    assert sorted(i for c in calls for i in c) == sorted(ids)
    for call in calls:
        validate_parameters({"ClusterName": CLUSTER, "NodeLogicalIds": call}, DELETE_SHAPE)
