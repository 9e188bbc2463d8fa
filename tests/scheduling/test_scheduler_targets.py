"""The round's targets own `can_add` and `add`, as Karpenter's ExistingNode and NodeClaim own CanAdd
and Add: an existing node, a node in flight and a new node each answer for their labels and taints,
their room and topology, and `Packing` places, journals and undoes on top of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    Toleration,
)
from hpscaler.scheduling.index import RoundIndex
from hpscaler.scheduling.placement import Packing
from hpscaler.scheduling.scheduler import _Solver
from hpscaler.scheduling.targets import ExistingNode, InFlightTarget, NewNode
from hpscaler.scheduling.types import InFlightNode, SchedulingInput

CAT = load_catalogue()
GI = 2**30
ZA = "us-west-2a"
C5 = "ml.c5.2xlarge"  # 8 vCPU, 16 GiB


def _pod(name: str, cpu: int, **changes: Any) -> Pod:
    return Pod("default", name, {"cpu": cpu, "memory": GI // 4}, owner_kind="ReplicaSet", **changes)


def _solver(pods: list[Pod], nodes: Sequence[Node] = (), inflight: Sequence[InFlightNode] = ()) -> _Solver:
    group = InstanceGroup("spot-a", (C5,), CapacityType.SPOT, (ZA,))
    return _Solver(
        SchedulingInput(
            pods=pods,
            node_pools=[NodePool("default", "nc")],
            node_classes=[NodeClass("nc", ("spot-a",))],
            groups=[group],
            catalogue=CAT,
            nodes=list(nodes),
            inflight=list(inflight),
        )
    )


def _node(name: str, taints: tuple[Taint, ...] = (), pods: list[Pod] | None = None) -> Node:
    labels = {LABEL_ZONE: ZA, LABEL_INSTANCE_TYPE: C5, LABEL_HOSTNAME: name}
    return Node(name, labels, {"cpu": 7_900, "memory": 15 * GI, "pods": 58}, taints=taints, pods=pods or [])


def test_an_existing_node_admits_only_pods_that_tolerate_its_taints() -> None:
    taint = Taint("dedicated", "NoSchedule", "ml")
    tolerant = _pod("tolerant", 1000, tolerations=(Toleration("dedicated", "Equal", "ml", "NoSchedule"),))
    plain = _pod("plain", 1000)
    solver = _solver([tolerant, plain], nodes=[_node("n1", (taint,))])
    (target,) = solver.packing.bins
    assert isinstance(target, ExistingNode)
    by_pod = {s.pods[0].name: s for s in solver.index.shapes}
    assert target.can_add(by_pod["tolerant"], solver.index)
    assert not target.can_add(by_pod["plain"], solver.index)


def test_can_add_checks_room_and_add_changes_only_the_target() -> None:
    big, small = _pod("big", 5000), _pod("small", 3000)
    solver = _solver([big, small])
    option = solver.index.options[0]
    node = solver.packing.open_node(option)
    assert isinstance(node, NewNode) and node.name == "spot-a-0001"
    shapes = {s.pods[0].name: s for s in solver.index.shapes}
    assert node.can_add(shapes["big"], solver.index)
    before = node.residual.copy()
    node.add(shapes["big"])  # the target's own state only: the shape still has its pod
    assert node.placed == [big] and shapes["big"].remaining == 1
    assert (before - node.residual)[solver.index.dim_index["cpu"]] == 5000
    node.remove(shapes["big"], 1)
    assert node.placed == [] and (node.residual == before).all()
    solver.packing.place(shapes["big"], node)  # the round's counts: the pod is placed
    assert shapes["big"].remaining == 0 and node.placed == [big]
    assert not node.can_add(shapes["small"], solver.index)  # 5 + 3 vCPU > the 7.9 allocatable


def test_a_target_is_closed_to_a_pod_its_topology_forbids() -> None:
    selector = LabelSelector((("app", "db"),))
    anti = (PodAffinityTerm(LABEL_HOSTNAME, selector),)
    first = _pod("db-0", 1000, labels={"app": "db"}, pod_anti_affinity=anti)
    second = _pod("db-1", 1000, labels={"app": "db"}, pod_anti_affinity=anti)
    solver = _solver([first, second])
    (shape,) = solver.index.shapes
    node = solver.packing.open_node(solver.index.options[0])
    assert node.can_add(shape, solver.index)
    solver.packing.place(shape, node)
    assert not node.can_add(shape, solver.index)  # the second db pod may not share the host


def test_packing_undoes_placements_and_new_nodes_on_rollback() -> None:
    solver = _solver([_pod("a", 1000), _pod("b", 1000)])
    packing = solver.packing
    packing.journal = []
    node = packing.open_node(solver.index.options[0])
    for shape in solver.index.shapes:
        packing.place(shape, node)
    assert packing.usage["default"]["nodes"] == 1
    packing.rollback(0)
    assert packing.new_bins == [] and packing.usage["default"]["nodes"] == 0
    assert sum(s.remaining for s in solver.index.shapes) == 2 and node.placed == []
    assert "spot-a-0001" not in packing.taken_names


def test_a_node_in_flight_is_a_target_of_the_option_it_was_planned_as() -> None:
    flight = InFlightNode(
        "i-1", "default", "spot-a", C5, ZA, CapacityType.SPOT, pods=[_pod("nominated", 3000)]
    )
    solver = _solver([_pod("new", 4000), _pod("too-big", 5000)], inflight=[flight])
    (target,) = solver.packing.bins
    assert isinstance(target, InFlightTarget) and target.option is not None
    assert target.option.spec.name == C5
    shapes = {s.pods[0].name: s for s in solver.index.shapes}
    assert target.can_add(shapes["new"], solver.index)
    assert not target.can_add(shapes["too-big"], solver.index)  # 3 + 5 vCPU > 8 minus what is reserved


def test_the_index_is_built_once_from_the_input() -> None:
    pods = [_pod(f"p{i}", 1000 + i) for i in range(3)]
    index = RoundIndex(
        SchedulingInput(
            pods=pods,
            node_pools=[NodePool("default", "nc")],
            node_classes=[NodeClass("nc", ("spot-a",))],
            groups=[InstanceGroup("spot-a", (C5,), CapacityType.SPOT, (ZA,))],
            catalogue=CAT,
        )
    )
    assert len(index.group_demand) == 3 and len(index.shapes) == 3 and len(index.classes) == 1
    packing = Packing(index)
    assert list(packing.group_left) == [1, 1, 1]
