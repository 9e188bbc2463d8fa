"""The fast paths of pod-by-pod placement give the answers of the plain computations they replace.

- `OptionTable.prepare` ranks the first option of many demands at once; `ranked` then yields the same
  options in the same order as ranking each demand on its own.
- `BestFit.best` walks the targets sorted by room; it picks what numpy passes over every target pick
  (`podwise._numpy_best`), and what a brute-force scan over the targets picks.
- The index builds classes, shapes and demands with fewer calls: pods whose requests differ only in
  how they are written share a shape, topology groups are created in the order every pod would create
  them, and the queue, demand groups and dominant resource match their plain definitions.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
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
    Toleration,
    TopologySpread,
)
from hpscaler.scheduling import podwise, topology
from hpscaler.scheduling.index import RoundIndex, _distinct_rows
from hpscaler.scheduling.packing import EPS, Shape, demand_groups
from hpscaler.scheduling.podwise import BestFit, _numpy_best, dominant_dim, least_rows, queue
from hpscaler.scheduling.ranking import OptionTable
from hpscaler.scheduling.scheduler import _Solver
from hpscaler.scheduling.types import SchedulingInput

CAT = load_catalogue()
GI = 2**30
ZA, ZB = "us-west-2a", "us-west-2b"
TYPES = ("ml.c5.large", "ml.c5.xlarge", "ml.c5.2xlarge", "ml.m5.large", "ml.m5.2xlarge", "ml.c5.4xlarge")


def _input(pods: list[Pod], nodes: list[Node] | None = None, **changes: Any) -> SchedulingInput:
    # Spot and On-Demand in two zones: two rank blocks, and each type twice (two zones) in the first.
    groups = [
        InstanceGroup(f"{ct.value}-{zone[-1]}", TYPES, ct, (zone,))
        for ct in (CapacityType.SPOT, CapacityType.ON_DEMAND)
        for zone in (ZA, ZB)
    ]
    return SchedulingInput(
        pods=pods,
        node_pools=[NodePool("default", "nc")],
        node_classes=[NodeClass("nc", tuple(g.name for g in groups))],
        groups=groups,
        catalogue=CAT,
        nodes=nodes or [],
        **changes,
    )


def _pod(name: str, cpu: int, memory: int, **changes: Any) -> Pod:
    return Pod("default", name, {"cpu": cpu, "memory": memory}, owner_kind="ReplicaSet", **changes)


def _random_pods(count: int, seed: int) -> list[Pod]:
    rng = random.Random(seed)
    return [_pod(f"p{i}", rng.randint(50, 9000), rng.randint(64, 24 * 1024) * 2**20) for i in range(count)]


# -- OptionTable.prepare and ranked ----------------------------------------------------------------


def _table(index: RoundIndex) -> OptionTable:
    options = index.option_sets[0]
    usable = [(o.group.name, o.zone) not in index.inp.unavailable for o in options]
    return OptionTable(options, index.option_vectors, usable)


@pytest.mark.parametrize(
    "unavailable", [{}, {("spot-a", ZA): "ICE"}, {("spot-a", ZA): "ICE", ("spot-b", ZB): "ICE"}]
)
def test_prepared_rankings_are_the_rankings_of_each_demand_alone(unavailable: dict[Any, str]) -> None:
    index = RoundIndex(_input(_random_pods(200, seed=3), unavailable=unavailable))
    demands = np.vstack(
        [
            index.group_demand,
            np.zeros((1, len(index.dims))),  # asks for nothing: one pod per node
            np.full((1, len(index.dims)), 1e15),  # no option holds it
        ]
    )
    alone, prepared = _table(index), _table(index)
    prepared.prepare(demands)
    for demand in demands:
        expected = [o.index for o in alone.ranked(demand)]
        first = next(iter(prepared.ranked(demand)), None)  # a caller that stops at the first
        assert (first.index if first else None) == (expected[0] if expected else None)
        assert [o.index for o in prepared.ranked(demand)] == expected  # one that walks on


def test_prepare_works_through_demands_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpscaler.scheduling import ranking

    monkeypatch.setattr(ranking, "_BATCH", 7)  # fewer options than rows a batch: one row at a time
    index = RoundIndex(_input(_random_pods(40, seed=5)))
    alone, prepared = _table(index), _table(index)
    prepared.prepare(index.group_demand)
    for demand in index.group_demand:
        assert next(prepared.ranked(demand), None) is next(alone.ranked(demand), None)


# -- BestFit ---------------------------------------------------------------------------------------


def _node(name: str, cpu: int, memory: int, zone: str, **changes: Any) -> Node:
    labels = {LABEL_ZONE: zone, LABEL_INSTANCE_TYPE: "ml.c5.4xlarge", LABEL_HOSTNAME: name}
    return Node(name, labels, {"cpu": cpu, "memory": memory, "pods": 58}, **changes)


def _brute_force(fitter: BestFit, shape: Shape) -> int | None:
    """The target with the least room on the dominant resource (first of equals) that admits, holds and
    topology allows the next pod of `shape`."""
    found = [
        (t.residual[fitter.dim], i)
        for i, t in enumerate(fitter.targets)
        if t.admits(shape.cls, fitter.index)
        and all(free >= need - EPS for free, need in zip(t.residual, shape.demand, strict=True) if need > 0)
        and (not shape.cls.topology.constrained or topology.allowed(shape.cls.topology, t.labels))
    ]
    return min(found)[1] if found else None


def _cluster(seed: int, count: int) -> tuple[_Solver, list[Shape]]:
    rng = random.Random(seed)
    db = {"app": "db"}
    anti = (PodAffinityTerm(LABEL_HOSTNAME, LabelSelector(tuple(db.items()))),)
    spread = (TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", LabelSelector((("app", "web"),))),)
    taint = Taint("dedicated", "NoSchedule", "ml")
    nodes = []
    for i in range(count):
        bound = [Pod("default", f"db-{i}", {"cpu": 100}, node_name=f"n{i}", labels=db)] if i % 3 == 0 else []
        nodes.append(
            _node(
                f"n{i}",
                rng.randint(500, 16_000),
                rng.randint(1, 64) * GI,
                (ZA, ZB)[i % 2],
                taints=(taint,) if i % 5 == 0 else (),
                pods=bound,
            )
        )
    pods = []
    for i in range(60):
        kind = i % 4
        changes: dict[str, Any] = {}
        if kind == 1:
            changes = {"labels": {"app": "api"}, "pod_anti_affinity": anti}
        elif kind == 2:
            changes = {"labels": {"app": "web"}, "topology_spread": spread}
        elif kind == 3:
            changes = {"tolerations": (Toleration("dedicated", "Equal", "ml", "NoSchedule"),)}
        pods.append(_pod(f"p{i}", rng.randint(100, 12_000), rng.randint(1, 48) * GI, **changes))
    solver = _Solver(_input(pods, nodes))
    return solver, [s for s in solver.index.shapes if s.group >= 0]


@pytest.mark.parametrize(("seed", "count"), [(1, 12), (2, 40), (3, 90)])
def test_the_walk_picks_what_numpy_and_a_brute_force_scan_pick(seed: int, count: int) -> None:
    solver, shapes = _cluster(seed, count)
    index, bins = solver.index, solver.packing.bins
    for dim in range(len(index.dims)):
        for shape in shapes:
            expected = _brute_force(BestFit(index, bins, None, dim), shape)
            assert BestFit(index, bins, None, dim).best(shape) == expected
            assert _numpy_best(BestFit(index, bins, None, dim), shape, []) == expected


def test_placing_pod_by_pod_keeps_the_walk_and_numpy_in_step() -> None:
    # Two fitters over copies of one cluster, one answering with the walk, the other with numpy passes:
    # they place every pod on the same node, as the brute-force scan would.
    walk_solver, walk_shapes = _cluster(7, 60)
    numpy_solver, numpy_shapes = _cluster(7, 60)
    walk = BestFit(walk_solver.index, walk_solver.packing.bins, None, 1)
    search = BestFit(numpy_solver.index, numpy_solver.packing.bins, None, 1)
    placed = 0
    for walk_shape, numpy_shape in zip(walk_shapes, numpy_shapes, strict=True):
        at = walk.best(walk_shape)
        assert at == _brute_force(walk, walk_shape)
        assert _numpy_best(search, numpy_shape, []) == at
        if at is not None:
            walk_solver.packing.place(walk_shape, walk.targets[at])
            walk.placed(at)
            numpy_solver.packing.place(numpy_shape, search.targets[at])
            search.placed(at)
            placed += 1
            assert walk.rooms == sorted(walk.rooms)
            assert [walk.rows[i][1] for i in walk.positions] == walk.rooms
    assert placed > 20


def test_a_pod_past_the_walk_is_found_by_numpy_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Memory is the dominant resource; the nodes with least memory left have no CPU left, so the walk of
    # `WALK` nodes finds none, and the numpy passes over all nodes find the roomy one.
    nodes = [_node(f"full{i:02d}", 100, (8 + i) * GI, ZA) for i in range(30)]
    nodes.append(_node("roomy", 8000, 60 * GI, ZA))
    solver = _Solver(_input([_pod("p", 2000, 4 * GI)], nodes))
    (shape,) = solver.index.shapes
    dim = solver.index.dim_index["memory"]
    searched: list[int | None] = []
    search = podwise._numpy_best

    def spy(fitter: BestFit, shape: Shape, closed: list[int]) -> int | None:
        searched.append(search(fitter, shape, closed))
        return searched[-1]

    monkeypatch.setattr(podwise, "_numpy_best", spy)
    fitter = BestFit(solver.index, solver.packing.bins, None, dim)
    at = fitter.best(shape)
    assert at is not None and fitter.targets[at].name == "roomy"
    assert searched == [at]


def test_nodes_an_anti_affinity_closes_are_left_out_for_good() -> None:
    db = {"app": "db"}
    anti = (PodAffinityTerm(LABEL_HOSTNAME, LabelSelector(tuple(db.items()))),)
    nodes = [_node(f"n{i}", 8000, 32 * GI, ZA) for i in range(4)]
    for node in nodes[:3]:
        node.pods.append(Pod("default", f"db-{node.name}", {"cpu": 100}, node_name=node.name, labels=db))
    pods = [_pod(f"web{i}", 1000 + i, GI, labels=db, pod_anti_affinity=anti) for i in range(2)]
    solver = _Solver(_input(pods, nodes))
    fitter = BestFit(solver.index, solver.packing.bins, None, solver.index.dim_index["cpu"])
    first, second = sorted(solver.index.shapes, key=lambda s: s.index)
    at = fitter.best(first)
    assert at is not None and fitter.targets[at].name == "n3"
    cls = first.cls.index
    assert fitter.shut[cls] == {0, 1, 2}  # the three db nodes, found closed on the way
    solver.packing.place(first, fitter.targets[at])
    fitter.placed(at)
    assert fitter.best(second) is None  # n3 now holds a db pod too
    assert fitter.shut[cls] == {0, 1, 2, 3}
    assert fitter._open_candidates(first.cls, -np.inf) == []


def test_least_rows_ask_nothing_of_a_resource_not_requested() -> None:
    rows = least_rows(np.array([[2.0, 0.0, 1.0]]))
    assert rows[0, 0] == 2.0 - EPS and rows[0, 1] == -np.inf and rows[0, 2] == 1.0 - EPS


# -- the index ------------------------------------------------------------------------------------


def test_requests_written_differently_with_equal_demands_share_a_shape() -> None:
    pods = [
        Pod("default", "a", {"cpu": 1000, "memory": GI}, owner_kind="ReplicaSet"),
        Pod("default", "b", {"memory": GI, "cpu": 1000}, owner_kind="ReplicaSet"),
        Pod("default", "c", {"cpu": 1000, "memory": GI, "nvidia.com/gpu": 0}, owner_kind="ReplicaSet"),
        Pod("default", "d", {"cpu": 500, "memory": 2 * GI}, owner_kind="ReplicaSet"),
    ]
    index = RoundIndex(_input(pods))
    assert [[p.name for p in s.pods] for s in index.shapes] == [["a", "b", "c"], ["d"]]
    assert len(index.group_demand) == 2
    (cls,) = index.classes
    assert cls.left == 4
    assert cls.min_demand is not None
    assert list(cls.min_demand) == list(np.minimum(index.shapes[0].demand, index.shapes[1].demand))
    for shape in index.shapes:
        assert list(shape.demand) == list(index.vector(shape.pods[0].requests, pods=1))


def test_each_class_has_the_elementwise_minimum_of_its_shapes() -> None:
    pods = _random_pods(30, seed=11)
    labelled = [
        _pod(f"l{i}", 100 * (i + 1), (5 - i) * GI, labels={"app": "db"}, pod_anti_affinity=_anti("db"))
        for i in range(4)
    ]
    index = RoundIndex(_input(pods + labelled))
    assert len(index.classes) == 2
    for cls in index.classes:
        demands = [s.demand for s in index.shapes if s.cls is cls]
        assert cls.min_demand is not None
        assert list(cls.min_demand) == list(np.min(demands, axis=0))
        assert cls.left == sum(len(s.pods) for s in index.shapes if s.cls is cls)


def _anti(app: str) -> tuple[PodAffinityTerm, ...]:
    return (PodAffinityTerm(LABEL_HOSTNAME, LabelSelector((("app", app),))),)


def test_topology_groups_are_created_in_the_order_every_pod_would_create_them() -> None:
    spread = (TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", LabelSelector((("app", "web"),))),)
    pods = [
        _pod("a", 100, GI, labels={"app": "db"}, pod_anti_affinity=_anti("db")),
        _pod("b", 200, GI, labels={"app": "web"}, topology_spread=spread),
        _pod("c", 300, GI, labels={"app": "db"}, pod_anti_affinity=_anti("db")),
        _pod("d", 400, GI, pod_anti_affinity=_anti("web")),
        _pod("e", 500, GI, labels={"app": "web"}, topology_spread=spread),
    ]
    index = RoundIndex(_input(pods))
    every = topology.Topology()
    for pod in index.pending:
        every.register(pod)
    assert list(index.topology._groups) == list(every._groups)
    assert list(index.topology._anti_groups) == list(every._anti_groups)
    assert index.pod_constraints == [0, 1, 0, 2, 1]


def test_the_queue_is_largest_first_then_constrained_first() -> None:
    spread = (TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", LabelSelector((("app", "web"),))),)
    pods = _random_pods(25, seed=2)
    pods += [
        _pod(f"w{i}", 1000 * (i % 3 + 1), GI, labels={"app": "web"}, topology_spread=spread) for i in range(9)
    ]
    pods += [_pod(f"same{i}", 1000 * (i % 3 + 1), GI) for i in range(6)]
    index = RoundIndex(_input(pods))
    index.compile_topology(lambda cls, spread: frozenset({ZA, ZB}))
    expected = sorted(
        index.shapes, key=lambda s: (-index.sizes[s.index], not s.cls.topology.constrained, s.index)
    )
    assert queue(index, index.shapes) == expected
    assert queue(index, index.shapes[::-1]) == expected
    assert queue(index, []) == []


def test_demand_groups_number_the_distinct_demands_of_shapes_outside_gangs() -> None:
    index = RoundIndex(_input([_pod("a", 1000, GI), _pod("b", 2000, GI)]))
    shapes = [Shape(i, index.classes[0], np.zeros(3), [], gang="ns/g" if i == 1 else "") for i in range(4)]
    demands = np.array([[1.0, 2.0, 1.0], [3.0, 4.0, 1.0]])
    rows = demand_groups(shapes, demands, [1, 0, 1, 0])
    assert [s.group for s in shapes] == [0, -1, 0, 1]  # the gang member keeps -1
    assert rows.tolist() == [[3.0, 4.0, 1.0], [1.0, 2.0, 1.0]]
    assert demand_groups([], demands, []).shape == (0, 3)


def test_distinct_rows() -> None:
    assert _distinct_rows(np.zeros((0, 3))) and _distinct_rows(np.ones((1, 3)))
    assert _distinct_rows(np.array([[1.0, 2.0], [2.0, 1.0], [1.0, 3.0]]))
    assert not _distinct_rows(np.array([[1.0, 2.0], [2.0, 1.0], [1.0, 2.0]]))


def test_the_dominant_resource_is_the_most_asked_for_relative_to_what_is_free() -> None:
    demand = np.array([[1.0, 10.0], [2.0, 0.0]])
    left = np.array([3, 1], dtype=np.int64)  # asks 5 of the first resource, 30 of the second
    assert dominant_dim(left, np.array([[10.0, 100.0]]), demand) == 0  # 50% against 30%
    assert dominant_dim(left, np.array([[100.0, 40.0]]), demand) == 1
    assert dominant_dim(left, np.array([[0.0, 40.0]]), demand) == 1  # nothing free: not a share


def test_plans_are_the_same_with_options_ranked_at_once_or_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pod by pod (threshold lowered), new nodes' first options ranked at once per class, or each demand
    # ranked on its own (`prepare` off): the same plan, every pod placed, each node holding what it got.
    monkeypatch.setattr(podwise, "MANY_DEMANDS", 1)
    from hpscaler.scheduling.scheduler import solve

    db = {"app": "db"}
    pods = _random_pods(120, seed=9)
    pods += [_pod(f"db{i}", 300 + i, GI, labels=db, pod_anti_affinity=_anti("db")) for i in range(8)]
    plan = solve(_input(pods))
    monkeypatch.setattr(OptionTable, "prepare", lambda self, demands: None)
    assert solve(_input(pods)) == plan
    assert plan.unschedulable == []
    assert sorted(k for n in plan.new_nodes for k in n.pods) == sorted(p.key for p in pods)
    by_key = {p.key: p for p in pods}
    for node in plan.new_nodes:
        for name in ("cpu", "memory"):
            assert sum(by_key[k].requests[name] for k in node.pods) <= node.allocatable[name]
        assert sum(k.startswith("default/db") for k in node.pods) <= 1
