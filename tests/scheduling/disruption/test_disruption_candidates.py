"""`get_candidates`: which nodes disruption considers, which method judges each, and in what order."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence

from hpscaler.model import ANNOTATION_DO_NOT_DISRUPT, Disruption, DisruptionBudget, Node, NodePool, Pod
from hpscaler.scheduling.disruption import (
    METHODS,
    Candidate,
    ConsolidationDecision,
    DisruptionMethod,
    get_candidates,
)
from hpscaler.scheduling.disruption.candidates import disruption_cost

NOW = 10_000.0
GIB = 2**30


def pool(
    *, after: float | None = 0.0, expire: float | None = None, policy: str = "WhenEmptyOrUnderutilized"
) -> NodePool:
    disruption = Disruption(
        consolidation_policy=policy,  # type: ignore[arg-type]
        consolidate_after_seconds=after,
        budgets=(DisruptionBudget("100%"),),
    )
    return NodePool("general", "c", expire_after_seconds=expire, disruption=disruption)


def pod(name: str, cpu: int = 1000, owner_kind: str = "ReplicaSet", **kw: object) -> Pod:
    return Pod(
        "default",
        name,
        {"cpu": cpu, "memory": GIB},
        labels={"app": "web"},
        owner_kind=owner_kind,
        owner_name="web",
        phase="Running",
        **kw,  # type: ignore[arg-type]
    )


def node(name: str, *pods: Pod, created: float = 0.0, ready: bool = True, **kw: object) -> Node:
    return Node(
        name,
        {},
        {"cpu": 8000, "memory": 16 * GIB, "pods": 58},
        pods=list(pods),
        created=created,
        ready=ready,
        **kw,  # type: ignore[arg-type]
    )


def judge(
    nodes: Sequence[Node],
    the_pool: NodePool,
    *,
    changed: float = 0.0,
    disrupting: dict[str, str] | None = None,
    methods: Sequence[DisruptionMethod] = METHODS,
) -> tuple[list[tuple[str, str]], ConsolidationDecision]:
    decision = ConsolidationDecision()
    found = get_candidates(
        nodes,
        {n.name: the_pool for n in nodes},
        methods=methods,
        disrupting=disrupting or {},
        pdbs=(),
        now=NOW,
        last_pod_change={n.name: changed for n in nodes},
        decision=decision,
    )
    return [(c.node.name, m.reason) for m, c in found], decision


def test_the_first_method_that_claims_a_node_judges_it() -> None:
    nodes = [
        node("busy", pod("b1")),
        node("empty"),
        node("old-empty", created=-5000.0),
        node("old", pod("o1"), created=-5000.0),
    ]
    found, _ = judge(nodes, pool(expire=NOW + 1000.0))
    assert dict(found) == {
        "busy": "Underutilized",
        "empty": "Empty",
        "old-empty": "Expired",
        "old": "Expired",
    }


def test_candidates_come_cheapest_disruption_first() -> None:
    nodes = [
        node("two", pod("t1", 500), pod("t2", 500)),
        node("heavy", pod("h1", 4000)),
        node("light", pod("l1", 1000)),
        node("empty"),
    ]
    found, _ = judge(nodes, pool())
    assert [name for name, _ in found] == ["empty", "light", "heavy", "two"]
    only = Candidate(nodes[1], pool(), tuple(nodes[1].pods), False, 0.0)
    assert disruption_cost(only) == (1, 0.5, "heavy")


def test_daemonset_pods_do_not_make_a_node_busy() -> None:
    agent = pod("agent", owner_kind="DaemonSet")
    found, _ = judge([node("a", agent)], pool())
    assert found == [("a", "Empty")]


def test_nodes_outside_the_round_are_not_considered_at_all() -> None:
    nodes = [node("going", pod("g1")), node("booting", ready=False)]
    found, decision = judge(nodes, pool(), disrupting={"going": "consolidation:Empty"})
    assert found == [] and decision.kept == {}


def test_a_held_node_says_why_and_when_to_look_again() -> None:
    nodes = [node("a", pod("a1")), node("b")]
    found, decision = judge(nodes, pool(after=120.0), changed=NOW - 60)
    assert found == []
    assert decision.kept == dict.fromkeys(("a", "b"), "pods changed less than consolidateAfter ago")
    assert decision.recheck_at == NOW + 60
    found, decision = judge(nodes, pool(after=None))
    assert found == [] and set(decision.kept.values()) == {"consolidateAfter is Never"}
    assert decision.recheck_at == math.inf


def test_when_empty_holds_only_nodes_with_pods() -> None:
    found, decision = judge([node("a", pod("a1")), node("b")], pool(policy="WhenEmpty"))
    assert found == [("b", "Empty")]
    assert decision.kept == {"a": "consolidationPolicy is WhenEmpty"}


def test_expiry_ignores_consolidate_after_and_the_policy_but_not_do_not_disrupt() -> None:
    old = node("old", pod("o1"), created=-5000.0)
    found, _ = judge([old], pool(after=None, expire=NOW, policy="WhenEmpty"))
    assert found == [("old", "Expired")]
    guarded = node("old", pod("o1"), created=-5000.0, annotations={ANNOTATION_DO_NOT_DISRUPT: "true"})
    found, decision = judge([guarded], pool(expire=NOW))
    assert found == [] and decision.kept == {"old": f"node has {ANNOTATION_DO_NOT_DISRUPT}=true"}


def test_a_node_not_yet_expired_is_rechecked_when_it_expires() -> None:
    _, decision = judge([node("young", pod("y1"), created=NOW - 100)], pool(expire=3600.0))
    assert decision.recheck_at == NOW - 100 + 3600.0


def test_a_do_not_disrupt_duration_holds_the_node_until_it_elapses() -> None:
    young = pod("y1", created=NOW - 60, annotations={ANNOTATION_DO_NOT_DISRUPT: "10m"})
    found, decision = judge([node("a", young)], pool())
    assert found == [] and "not yet elapsed" in decision.kept["a"]
    assert decision.recheck_at == NOW - 60 + 600


def test_the_core_loads_without_config_loading() -> None:
    # The durations the core parses (do-not-disrupt) come from hpscaler.durations, not the config
    # package, which pulls pydantic and YAML.
    code = (
        "import sys, hpscaler.scheduling.disruption; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('pydantic', 'yaml') or m.startswith('hpscaler.config')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
