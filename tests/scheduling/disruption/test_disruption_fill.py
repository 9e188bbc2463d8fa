"""Consolidation of pods with DoNotSchedule zone spreads: checked in the residual model, not by a
full scheduler pass per candidate; every decision replays through the scheduler.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from hpscaler.catalogue import load_catalogue
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_ZONE,
    Disruption,
    DisruptionBudget,
    LabelSelector,
    Node,
    NodePool,
    Pod,
    TopologySpread,
    as_pending,
)
from hpscaler.scheduling.disruption import decide_consolidation
from hpscaler.scheduling.disruption.fill import _fullest_first
from hpscaler.scheduling.disruption.room import Room
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import SchedulingInput

ZONES = ("us-west-2a", "us-west-2b", "us-west-2c")
GIB = 2**30
BASE = SchedulingInput(pods=(), node_pools=(), node_classes=(), groups=(), catalogue=load_catalogue())
POOL = NodePool(
    "general",
    "c",
    expire_after_seconds=None,
    disruption=Disruption(consolidate_after_seconds=0.0, budgets=(DisruptionBudget("100%"),)),
)


def pod(name: str, cpu: int, *, app: str = "web", topology_spread: tuple[TopologySpread, ...] = ()) -> Pod:
    return Pod(
        "default",
        name,
        {"cpu": cpu, "memory": GIB},
        labels={"app": app},
        owner_kind="ReplicaSet",
        owner_name=app,
        phase="Running",
        topology_spread=topology_spread,
    )


def node(name: str, *pods: Pod, zone: str) -> Node:
    labels = {LABEL_ZONE: zone, LABEL_HOSTNAME: name}
    bound = [replace(p, node_name=name) for p in pods]
    return Node(name, labels, {"cpu": 8000, "memory": 16 * GIB, "pods": 58}, pods=bound)


def removed(nodes: list[Node]) -> list[str]:
    decision = decide_consolidation(
        nodes=nodes,
        pending=[],
        pool_of=lambda _: POOL,
        base=BASE,
        pdbs=[],
        now=10_000.0,
        last_pod_change={},
        disrupting={},
    )
    return [r.node for r in decision.remove]


def _spread(app: str) -> tuple[TopologySpread, ...]:
    return (TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", LabelSelector((("app", app),))),)


def _cluster(seed: int, count: int = 30) -> list[Node]:
    """Nodes over 3 zones; pods of 3 apps dealt so that every app starts within its skew."""
    rng = random.Random(seed)
    counts = {(a, z): 0 for a in ("web", "api", "db") for z in ZONES}
    nodes = []
    serial = 0
    for i in range(count):
        zone = ZONES[i % 3]
        pods = []
        for _ in range(rng.randrange(1, 4)):
            app = min(("web", "api", "db"), key=lambda a: (counts[(a, zone)], a))
            counts[(app, zone)] += 1
            cpu = rng.choice((500, 1000, 1500))
            pods.append(pod(f"p{serial:03d}", cpu, app=app, topology_spread=_spread(app)))
            serial += 1
        nodes.append(node(f"n{i:02d}", *pods, zone=zone))
    return nodes


def _replay(nodes: list[Node], gone: list[str]) -> int:
    """Pods the scheduler cannot place when the removals are replayed one by one, in order."""
    staying = {n.name: replace(n, pods=list(n.pods)) for n in nodes}
    failed = 0
    for name in gone:
        leaving = staying.pop(name)
        inp = SchedulingInput(
            pods=[as_pending(p) for p in leaving.pods],
            nodes=list(staying.values()),
            node_pools=(),
            node_classes=(),
            groups=(),
            catalogue=BASE.catalogue,
        )
        plan = solve(inp)
        failed += len(plan.unschedulable)
        by_key = {p.key: p for p in leaving.pods}
        for target, keys in plan.existing.items():
            staying[target].pods.extend(replace(by_key[k], node_name=target) for k in keys)
    return failed


@pytest.mark.parametrize("seed", range(6))
def test_zone_spread_pods_consolidate_without_a_full_solve_and_the_decision_replays(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = _cluster(seed)
    calls: list[int] = []
    full = Room.solve

    def counted(self: Room, *args: object) -> object:
        calls.append(1)
        return full(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Room, "solve", counted)
    gone = removed(nodes)
    assert gone  # the cluster does consolidate
    assert calls == []  # zone spreads alone never need the full scheduler
    assert _replay(nodes, gone) == 0


def test_a_zone_spread_blocks_a_move_into_the_fullest_zone() -> None:
    # web has 2 pods in us-west-2a and 1 in each other zone; the only room is in us-west-2a.
    web = _spread("web")
    nodes = [
        node("a1", pod("w1", 7000, topology_spread=web), zone="us-west-2a"),
        node("a2", pod("w2", 1000, topology_spread=web), zone="us-west-2a"),
        node("b", pod("w3", 7500, topology_spread=web), zone="us-west-2b"),
        node("c", pod("w4", 7500, topology_spread=web), zone="us-west-2c"),
    ]
    # a2's pod may move to a1 (same zone: counts unchanged); nothing may move out of b or c.
    assert removed(nodes) == ["a2"]
    # Moving w4 from c into us-west-2a would leave c with 0 and us-west-2a with 3: refused.
    nodes[3] = node("c", pod("w4", 500, topology_spread=web), zone="us-west-2c")
    assert "c" not in removed(nodes)


@pytest.mark.parametrize("seed", range(2))
def test_past_the_first_chunk_of_nodes_decisions_still_replay(seed: int) -> None:
    # More nodes than `fill` orders at once: the later chunks are reached and stay exact.
    nodes = _cluster(seed, 150)
    gone = removed(nodes)
    assert len(gone) > 64
    assert _replay(nodes, gone) == 0


def test_nodes_come_fullest_first_in_chunks_with_ties_in_node_order() -> None:
    # 200 nodes with 5 distinct loads: every chunk boundary falls inside a run of equal loads.
    nodes = [node(f"n{i:03d}", pod(f"p{i:03d}", 1000 * (i % 5) + 500), zone=ZONES[0]) for i in range(200)]
    room = Room(nodes, BASE)
    rows = np.arange(200, dtype=np.int64)[::2]  # every other node, as `place` passes a subset
    cols = np.array([room.col["cpu"], room.col["memory"], room.col["pods"]], dtype=np.int64)
    chunks = list(_fullest_first(room, rows, cols))
    assert len(chunks) > 1
    load = room.load(cols)
    expected = sorted(rows.tolist(), key=lambda r: (load[r], r))
    assert np.concatenate(chunks).tolist() == expected
