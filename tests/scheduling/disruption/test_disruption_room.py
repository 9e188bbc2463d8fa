"""`decide_consolidation` on plain data: where the pods of removed nodes go, and what stops them.

The decision simulates each candidate's pods onto the nodes that stay. Pods without topology
constraints are placed by consolidation's own residual-capacity model; the rest by the scheduler.
The differential tests check that the two agree wherever both apply.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from hpscaler.backends.types import DisruptionBudgetStatus
from hpscaler.catalogue import load_catalogue
from hpscaler.model import (
    ANNOTATION_DO_NOT_DISRUPT,
    LABEL_HOSTNAME,
    LABEL_INSTANCE_TYPE,
    LABEL_ZONE,
    Disruption,
    DisruptionBudget,
    LabelSelector,
    Node,
    NodePool,
    Pod,
    PodAffinityTerm,
    Taint,
    Toleration,
    TopologySpread,
)
from hpscaler.scheduling.disruption import ConsolidationDecision, decide_consolidation
from hpscaler.scheduling.disruption.room import Room
from hpscaler.scheduling.types import SchedulingInput

GIB = 2**30
NOW = 10_000.0
CPU = 8000
BASE = SchedulingInput(pods=(), node_pools=(), node_classes=(), groups=(), catalogue=load_catalogue())
POOL = NodePool(
    "general",
    "c",
    expire_after_seconds=None,
    disruption=Disruption(consolidate_after_seconds=0.0, budgets=(DisruptionBudget("100%"),)),
)


def pod(name: str, cpu: int = 1000, *, memory: int = GIB, app: str = "web", **kw: object) -> Pod:
    return Pod(
        "default",
        name,
        {"cpu": cpu, "memory": memory},
        labels={"app": app},
        owner_kind="ReplicaSet",
        owner_name=app,
        phase="Running",
        **kw,  # type: ignore[arg-type]
    )


def node(
    name: str,
    *pods: Pod,
    zone: str = "us-west-2a",
    taints: tuple[Taint, ...] = (),
    ready: bool = True,
    unschedulable: bool = False,
) -> Node:
    bound = [_bind(p, name) for p in pods]
    labels = {LABEL_INSTANCE_TYPE: "ml.c5.2xlarge", LABEL_ZONE: zone, LABEL_HOSTNAME: name}
    allocatable = {"cpu": CPU, "memory": 16 * GIB, "pods": 58}
    return Node(name, labels, allocatable, taints, bound, unschedulable, ready)


def _bind(p: Pod, name: str) -> Pod:
    return replace(p, node_name=name, phase="Running")


def decide(
    nodes: Sequence[Node], pdbs: Sequence[DisruptionBudgetStatus] = (), pool: NodePool = POOL
) -> ConsolidationDecision:
    return decide_consolidation(
        nodes=nodes,
        pending=[],
        pool_of=lambda _: pool,
        base=BASE,
        pdbs=pdbs,
        now=NOW,
        last_pod_change={},
        disrupting={},
    )


def pinned(name: str, cpu: int = 6000, **kw: Any) -> Pod:
    """A pod that never moves, so its node stays and offers the rest of its room."""
    return pod(name, cpu, annotations={ANNOTATION_DO_NOT_DISRUPT: "true"}, **kw)


def removed(decision: ConsolidationDecision) -> list[str]:
    return [r.node for r in decision.remove]


# -- where the pods go ----------------------------------------------------------------------------


def test_pods_simulated_onto_a_node_leave_with_it_when_it_goes_too() -> None:
    # a goes first (fewest pods). Its 3-CPU pod fits only on b, the pinned nodes having 2.5 CPUs
    # free each. b's own pods would fit on a pinned node, but a's pod, now on b, fits nowhere.
    nodes = [
        node("a", pod("a1", 3000)),
        node("b", pod("b1", 500), pod("b2", 500)),
        node("d1", pinned("d1", 5500)),
        node("d2", pinned("d2", 5500)),
    ]
    decision = decide(nodes)
    assert removed(decision) == ["a"]
    assert decision.kept["b"] == "its pods do not fit on the other nodes"


def _cluster(rng: random.Random, count: int, constrained: bool = False) -> list[Node]:
    nodes: list[Node] = []
    serial = 0
    for i in range(count):
        pods: list[Pod] = []
        for _ in range(rng.randrange(0, 6)):
            kw: dict[str, object] = {}
            if rng.random() < 0.2:
                kw["tolerations"] = (Toleration("dedicated", "Exists"),)
            if rng.random() < 0.15:
                kw["node_selector"] = {LABEL_ZONE: rng.choice(("us-west-2a", "us-west-2b"))}
            if constrained and rng.random() < 0.15:
                spread = TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", LabelSelector((("app", "web"),)))
                kw["topology_spread"] = (spread,)
            if constrained and rng.random() < 0.05:
                kw["pod_anti_affinity"] = (PodAffinityTerm(LABEL_HOSTNAME, LabelSelector((("app", "db"),))),)
            app = "db" if rng.random() < 0.1 else "web"
            cpu = rng.choice((250, 500, 1000, 1500, 2000))
            memory = rng.choice((256, 512, 1024, 4096)) * 2**20
            pods.append(pod(f"p{serial:04d}", cpu, memory=memory, app=app, **kw))
            serial += 1
        taints = (Taint("dedicated", "NoSchedule", "x"),) if rng.random() < 0.15 else ()
        zone = rng.choice(("us-west-2a", "us-west-2b"))
        state = (
            {"unschedulable": True}
            if rng.random() < 0.05
            else {"ready": False}
            if rng.random() < 0.05
            else {}
        )
        nodes.append(node(f"n{i:03d}", *pods, zone=zone, taints=taints, **state))
    return nodes


def _through_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Room, "unconstrained", lambda self, p: False)


@pytest.mark.parametrize("seed", range(12))
def test_the_residual_model_decides_as_the_scheduler_does(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = _cluster(random.Random(seed), 40)
    fast = decide(nodes)
    _through_the_scheduler(monkeypatch)
    slow = decide(nodes)
    assert fast.remove == slow.remove
    assert fast.kept == slow.kept
    assert fast.remove  # the cases do exercise removals


@pytest.mark.parametrize("seed", range(2))
def test_on_more_nodes_than_fill_orders_at_once_the_residual_model_still_decides_as_the_scheduler(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = _cluster(random.Random(seed), 120)
    fast = decide(nodes)
    _through_the_scheduler(monkeypatch)
    slow = decide(nodes)
    assert fast.remove == slow.remove
    assert fast.kept == slow.kept
    assert len(fast.remove) > 20


@pytest.mark.parametrize("seed", range(6))
def test_removals_leave_room_for_every_moved_pod(seed: int) -> None:
    nodes = _cluster(random.Random(seed), 40, constrained=True)
    decision = decide(nodes)
    gone = set(removed(decision))
    assert gone
    staying = [n for n in nodes if n.name not in gone and n.ready and not n.unschedulable]
    for resource in ("cpu", "memory"):
        need = sum(p.requests[resource] for n in nodes if n.name in gone for p in n.pods)
        free = sum(n.free()[resource] for n in staying)
        assert need <= free, resource


# -- what stops them ------------------------------------------------------------------------------


def test_a_pod_goes_only_to_nodes_whose_taints_it_tolerates() -> None:
    dedicated = (Taint("dedicated", "NoSchedule", "x"),)
    nodes = [node("a", pod("a1", 1000)), node("b", pinned("b1"), taints=dedicated)]
    assert removed(decide(nodes)) == []
    tolerant = pod("a1", 1000, tolerations=(Toleration("dedicated", "Exists"),))
    assert removed(decide([node("a", tolerant), nodes[1]])) == ["a"]


def test_cordoned_and_not_ready_nodes_take_no_pods() -> None:
    for cordoned in (True, False):
        b = node("b", pinned("b1"), ready=cordoned, unschedulable=cordoned)  # cordoned, or not Ready
        assert removed(decide([node("a", pod("a1", 1000)), b])) == [], cordoned


def test_a_pod_goes_only_to_nodes_its_node_selector_allows() -> None:
    picky = pod("a1", 1000, node_selector={LABEL_ZONE: "us-west-2b"})
    other_zone = node("b", pinned("b1"), zone="us-west-2a")
    assert removed(decide([node("a", picky), other_zone])) == []
    same_zone = node("b", pinned("b1"), zone="us-west-2b")
    assert removed(decide([node("a", picky), same_zone])) == ["a"]


def test_an_anti_affinity_on_a_staying_node_repels_the_pods_it_selects() -> None:
    loner = PodAffinityTerm(LABEL_HOSTNAME, LabelSelector((("app", "db"),)))
    guard = node("b", pinned("b1", app="guard", pod_anti_affinity=(loner,)))
    assert removed(decide([node("a", pod("a1", 1000, app="db")), guard])) == []
    assert removed(decide([node("a", pod("a1", 1000, app="web")), guard])) == ["a"]


def test_a_zone_spread_keeps_a_node_whose_pod_would_unbalance_the_zones() -> None:
    web = LabelSelector((("app", "web"),))
    spread = (TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", web),)
    nodes = [
        node("a", pod("a1", 1000, topology_spread=spread), zone="us-west-2a"),
        node("full", pinned("f1", 7500, app="other"), zone="us-west-2a"),
        node("b", pinned("b1", app="other"), zone="us-west-2b"),
        node("c", pinned("c1", topology_spread=spread), zone="us-west-2b"),
    ]
    # us-west-2b has room for a1, but would then hold 2 web pods against 0 in us-west-2a.
    decision = decide(nodes)
    assert removed(decision) == []
    assert decision.kept["a"] == "its pods do not fit on the other nodes"
    nodes[2] = node("b", pinned("b1", app="other"), zone="us-west-2a")
    assert removed(decide(nodes)) == ["a"]  # with room in its own zone, a1 can move


def test_a_blocked_pod_keeps_its_node_while_the_others_consolidate() -> None:
    blocked = [DisruptionBudgetStatus("default", "db", LabelSelector((("app", "db"),)), 0)]
    nodes = [node("a", pod("a1", 1000, app="db")), node("b", pod("b1", 1000)), node("c", pod("c1", 4000))]
    decision = decide(nodes, blocked)
    assert removed(decision) == ["b", "c"]  # b's pod onto c (the fuller), then both onto a
    assert "PodDisruptionBudget default/db" in decision.kept["a"]
