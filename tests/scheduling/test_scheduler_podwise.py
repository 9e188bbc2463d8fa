"""Pod-centric placement (`podwise`), used when a round has many distinct pod sizes.

The threshold is lowered to 1 here so that small inputs take the path: each pod, largest first, goes to
the node (existing first, then new) with the least room left that holds it, that admits it and whose
topology allows it; a new node is opened only for a pod no node takes.
"""

from __future__ import annotations

from typing import Any

import pytest

from hpscaler.catalogue import load_catalogue
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_INSTANCE_TYPE,
    LABEL_ZONE,
    CapacityType,
    InstanceGroup,
    LabelSelector,
    Node,
    NodeClass,
    NodePool,
    Pod,
    PodAffinityTerm,
    Taint,
    TopologySpread,
)
from hpscaler.scheduling import podwise
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import Plan, SchedulingInput

CAT = load_catalogue()
GI = 2**30
ZA, ZB = "us-west-2a", "us-west-2b"
C5 = "ml.c5.2xlarge"  # 8 vCPU, 16 GiB


@pytest.fixture(autouse=True)
def _pod_by_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podwise, "MANY_DEMANDS", 1)


def _pod(name: str, cpu: int, **changes: Any) -> Pod:
    return Pod("default", name, {"cpu": cpu, "memory": GI // 4}, owner_kind="ReplicaSet", **changes)


def _node(name: str, cpu: int, zone: str = ZA, taints: tuple[Taint, ...] = ()) -> Node:
    labels = {LABEL_ZONE: zone, LABEL_INSTANCE_TYPE: C5, LABEL_HOSTNAME: name}
    return Node(name, labels, {"cpu": cpu, "memory": 15 * GI, "pods": 58}, taints=taints)


def _plan(pods: list[Pod], nodes: list[Node], zones: tuple[str, ...] = (ZA,)) -> Plan:
    groups = [InstanceGroup(f"spot-{z[-1]}", (C5,), CapacityType.SPOT, (z,)) for z in zones]
    return solve(
        SchedulingInput(
            pods=pods,
            node_pools=[NodePool("default", "nc")],
            node_classes=[NodeClass("nc", tuple(g.name for g in groups))],
            groups=groups,
            catalogue=CAT,
            nodes=nodes,
        )
    )


def _names(plan: Plan) -> dict[str, list[str]]:
    return {node: sorted(key.split("/")[1] for key in keys) for node, keys in plan.existing.items()}


def test_each_pod_goes_to_the_tightest_node_that_holds_it() -> None:
    pods = [_pod("p1400", 1400), _pod("p2900", 2900)]
    plan = _plan(pods, [_node("roomy", 6000), _node("three", 3000), _node("one-and-a-half", 1500)])
    assert _names(plan) == {"three": ["p2900"], "one-and-a-half": ["p1400"]}
    assert plan.new_nodes == []


def test_a_pod_that_no_existing_node_holds_goes_to_a_new_node() -> None:
    plan = _plan([_pod("big", 5000), _pod("small", 500)], [_node("n1", 1000)])
    assert _names(plan) == {"n1": ["small"]}
    assert [n.pods for n in plan.new_nodes] == [["default/big"]]


def test_a_tainted_node_takes_only_the_pods_that_tolerate_it() -> None:
    taint = Taint("dedicated", "NoSchedule", "ml")
    plan = _plan([_pod("plain", 1000)], [_node("tainted", 1200, taints=(taint,)), _node("open", 4000)])
    assert _names(plan) == {"open": ["plain"]}


def test_anti_affinity_keeps_a_second_pod_off_the_host() -> None:
    labels = {"app": "db"}
    anti = (PodAffinityTerm(LABEL_HOSTNAME, LabelSelector(tuple(labels.items()))),)
    pods = [_pod(f"db{i}", 1000 + i, labels=labels, pod_anti_affinity=anti) for i in range(2)]
    plan = _plan(pods, [_node("n1", 7000)])
    assert _names(plan) == {"n1": ["db1"]}  # the larger one first
    assert [n.pods for n in plan.new_nodes] == [["default/db0"]]


def test_a_node_topology_closed_is_reopened_once_new_nodes_move_the_counts() -> None:
    # New nodes can only be opened in zone b, and each holds one of these pods. db1 and db2 find the
    # existing node in zone a closed by the spread (a=1, b=0); once db1 opens a node in zone b, the
    # parked node takes db2 instead of a second new node.
    labels = {"app": "db"}
    spread = (TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", LabelSelector(tuple(labels.items()))),)
    pods = [_pod(f"db{i}", 5000 - 100 * i, labels=labels, topology_spread=spread) for i in range(3)]
    nodes = [_node("old-a", 16000, zone=ZA)]
    plan = _plan(pods, nodes, zones=(ZB,))
    assert _names(plan) == {"old-a": ["db0", "db2"]}
    assert [n.pods for n in plan.new_nodes] == [["default/db1"]]
    assert plan.unschedulable == []


def test_nodes_anti_affinity_closes_are_skipped_for_every_pod_of_the_class() -> None:
    db = {"app": "db"}
    anti = (PodAffinityTerm(LABEL_HOSTNAME, LabelSelector(tuple(db.items()))),)
    nodes = [_node(f"n{i}", 7000) for i in range(4)]
    for node in nodes[:3]:  # a database pod runs on three of the four nodes
        node.pods.append(Pod("default", f"db-{node.name}", {"cpu": 100}, node_name=node.name, labels=db))
    pods = [_pod(f"web{i}", 1000 + i, pod_anti_affinity=anti) for i in range(3)]
    plan = _plan(pods, nodes)
    assert _names(plan) == {"n3": ["web0", "web1", "web2"]}
    assert plan.new_nodes == []


def test_new_nodes_take_pods_one_by_one_and_launch_as_the_cheapest_type_that_holds_them() -> None:
    group = InstanceGroup("spot-a", ("ml.c5.xlarge", C5, "ml.c5.4xlarge"), CapacityType.SPOT, (ZA,))
    pods = [_pod("p3000", 3000), _pod("p2000", 2000), _pod("p1000", 1000)]
    plan = solve(
        SchedulingInput(
            pods=pods,
            node_pools=[NodePool("default", "nc")],
            node_classes=[NodeClass("nc", ("spot-a",))],
            groups=[group],
            catalogue=CAT,
        )
    )
    (node,) = plan.new_nodes
    assert sorted(node.pods) == ["default/p1000", "default/p2000", "default/p3000"]
    assert node.instance_type == C5


def test_pods_anti_affine_to_each_other_get_a_new_node_each() -> None:
    labels = {"app": "db"}
    anti = (PodAffinityTerm(LABEL_HOSTNAME, LabelSelector(tuple(labels.items()))),)
    pods = [_pod(f"db{i}", 500 + i, labels=labels, pod_anti_affinity=anti) for i in range(3)]
    plan = _plan([*pods, _pod("web", 400)], [])
    assert sorted(len(n.pods) for n in plan.new_nodes) == [1, 1, 2]
    assert all(sum(p.startswith("default/db") for p in n.pods) == 1 for n in plan.new_nodes)
