"""The disruption methods through `decide_consolidation`: what each does with a node's pods, and how a
method plugs in through the `DisruptionMethod` protocol."""

from __future__ import annotations

from collections.abc import Sequence

from hpscaler.catalogue import load_catalogue
from hpscaler.model import Disruption, DisruptionBudget, Node, NodePool, Pod
from hpscaler.scheduling.disruption import (
    METHODS,
    Candidate,
    ConsolidationDecision,
    DisruptionMethod,
    Hold,
    decide_consolidation,
)
from hpscaler.scheduling.disruption.consolidating import evacuate
from hpscaler.scheduling.disruption.room import Room
from hpscaler.scheduling.types import SchedulingInput

NOW = 10_000.0
GIB = 2**30
BASE = SchedulingInput(pods=(), node_pools=(), node_classes=(), groups=(), catalogue=load_catalogue())


def pool(*budgets: DisruptionBudget, expire: float | None = None) -> NodePool:
    disruption = Disruption(consolidate_after_seconds=0.0, budgets=budgets or (DisruptionBudget("100%"),))
    return NodePool("general", "c", expire_after_seconds=expire, disruption=disruption)


def pod(name: str, cpu: int, node: str) -> Pod:
    return Pod(
        "default",
        name,
        {"cpu": cpu, "memory": GIB},
        labels={"app": "web"},
        owner_kind="ReplicaSet",
        owner_name="web",
        node_name=node,
        phase="Running",
    )


def node(name: str, *cpus: int, created: float = NOW, **labels: str) -> Node:
    pods = [pod(f"{name}-{i}", cpu, name) for i, cpu in enumerate(cpus)]
    return Node(name, dict(labels), {"cpu": 8000, "memory": 16 * GIB, "pods": 58}, pods=pods, created=created)


def decide(
    nodes: Sequence[Node], the_pool: NodePool, methods: Sequence[DisruptionMethod] = METHODS
) -> ConsolidationDecision:
    return decide_consolidation(
        nodes=nodes,
        pending=[],
        pool_of=lambda _: the_pool,
        base=BASE,
        pdbs=(),
        now=NOW,
        last_pod_change={},
        disrupting={},
        methods=methods,
    )


def test_an_expired_node_goes_even_when_its_pods_fit_nowhere() -> None:
    # The pods of an expired node are evicted for provisioning to place (new nodes if need be), not
    # simulated onto the nodes that stay.
    nodes = [node("old", 7000, created=0.0), node("full", 6000)]
    decision = decide(nodes, pool(expire=NOW - 1))
    assert [(r.node, r.reason) for r in decision.remove] == [("old", "Expired")]
    assert decision.kept == {"full": "its pods do not fit on the other nodes"}


def test_no_pod_is_simulated_onto_a_node_that_expires_in_the_same_decision() -> None:
    # s1's pod would fit best on `old`, the fullest node, but `old` expires: expired nodes are taken
    # out first, so s1's pod goes to `full`, and then s2's pod has no room left.
    nodes = [node("old", 7000, created=0.0), node("s1", 1000), node("s2", 1500), node("full", 6000)]
    decision = decide(nodes, pool(expire=NOW - 1))
    assert [(r.node, r.reason) for r in decision.remove] == [("old", "Expired"), ("s1", "Underutilized")]
    assert decision.kept["s2"] == "its pods do not fit on the other nodes"


def test_budgets_are_per_reason_across_the_methods() -> None:
    only_underutilized = DisruptionBudget("0", reasons=("Underutilized",))
    nodes = [node("empty"), node("small", 1000), node("full", 6000)]
    decision = decide(nodes, pool(only_underutilized))
    assert [(r.node, r.reason) for r in decision.remove] == [("empty", "Empty")]
    assert decision.kept["small"] == "disruption budget of NodePool general is used up"


class Drift:
    """A method written against the protocol: nodes labelled drifted go, their pods moved out."""

    @property
    def reason(self) -> str:
        return "Drifted"

    def claims(self, candidate: Candidate) -> bool:
        return candidate.node.labels.get("drifted") == "true"

    def should_disrupt(self, candidate: Candidate, now: float) -> Hold | None:
        return None

    def simulate(self, candidate: Candidate, room: Room) -> str | None:
        return evacuate(candidate, room)


def test_a_method_plugs_in_through_the_protocol_and_claims_before_the_others() -> None:
    nodes = [node("drifted", 3000, drifted="true"), node("full", 6000), node("busy", 4000)]
    decision = decide(nodes, pool(DisruptionBudget("0", reasons=("Underutilized",))), (Drift(), *METHODS))
    assert [(r.node, r.reason) for r in decision.remove] == [("drifted", "Drifted")]
    assert decision.kept == {
        "full": "disruption budget of NodePool general is used up",
        "busy": "disruption budget of NodePool general is used up",
    }
