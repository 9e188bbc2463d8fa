"""Cases translated from Karpenter's and Kubernetes' own scheduling tests, one per semantic of issue 12.

Each test names the Karpenter test it comes from (kubernetes-sigs/karpenter,
`pkg/controllers/provisioning/scheduling/suite_test.go` = suite, `topology_test.go` = topology,
`pkg/controllers/provisioning/suite_test.go` = provisioning). Karpenter's fake cloud provider has
zones test-zone-1..3 and instance types of every size; here they are HyperPod instance groups in
us-west-2a..c, expressed through NodePool requirements, instance groups and pods as our config can.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from test_scheduler_cases import (
    C5_2X,
    GI,
    ON_DEMAND,
    ZA,
    ZB,
    ZC,
    existing_node,
    gang_pods,
    group,
    new_node_of,
    pod,
    pods,
    pool,
    run,
    three_zone_groups,
    where,
)

from hpscaler.model import (
    LABEL_CAPACITY_TYPE,
    LABEL_HOSTNAME,
    LABEL_INSTANCE_TYPE,
    LABEL_ZONE,
    Gang,
    LabelSelector,
    Node,
    Pod,
    PodAffinityTerm,
    Requirement,
    Taint,
    TopologySpread,
)
from hpscaler.scheduling.types import Plan


def _labels_of(plan: Plan, key: str) -> dict[str, str]:
    """Pod key -> the value of label `key` on its new node."""
    return {p: n.labels.get(key, "") for n in plan.new_nodes for p in n.pods}


# -- 4. label values on one node ---------------------------------------------------------------

TEST_KEY = "test-key"
BOTH = Requirement(TEST_KEY, "In", ("test-value", "another-value"))


def test_incompatible_label_values_go_to_different_nodes() -> None:
    """suite: Custom Constraints / Node Affinity "should schedule incompatible pods to the different node"."""
    a = pod("a", node_affinity=((Requirement(TEST_KEY, "In", ("test-value",)),),))
    b = pod("b", node_affinity=((Requirement(TEST_KEY, "In", ("another-value",)),),))
    plan = run([a, b], [group("g")], [pool("default", BOTH)])
    assert not plan.unschedulable
    placed = where(plan)
    assert placed[a.key] != placed[b.key]
    assert _labels_of(plan, TEST_KEY) == {a.key: "test-value", b.key: "another-value"}


def test_compatible_label_values_share_a_node() -> None:
    """suite: Custom Constraints / Node Affinity "should schedule compatible pods to the same node"."""
    a = pod("a", node_affinity=((Requirement(TEST_KEY, "In", ("test-value",)),),))
    b = pod("b", node_affinity=((Requirement(TEST_KEY, "NotIn", ("another-value",)),),))
    plan = run([a, b], [group("g")], [pool("default", BOTH)])
    assert not plan.unschedulable
    assert len(plan.new_nodes) == 1
    assert _labels_of(plan, TEST_KEY) == {a.key: "test-value", b.key: "test-value"}


def test_not_in_picks_the_remaining_value() -> None:
    """suite: "should schedule pods that have node selectors with different value and NotIn operator"."""
    p = pod("p", node_affinity=((Requirement(TEST_KEY, "NotIn", ("another-value",)),),))
    plan = run([p], [group("g")], [pool("default", Requirement(TEST_KEY, "In", ("test-value",)))])
    assert _labels_of(plan, TEST_KEY) == {p.key: "test-value"}


def test_different_value_with_in_is_unschedulable() -> None:
    """suite: "should not schedule pods that have node selectors with different value and In operator"."""
    p = pod("p", node_affinity=((Requirement(TEST_KEY, "In", ("another-value",)),),))
    plan = run([p], [group("g")], [pool("default", Requirement(TEST_KEY, "In", ("test-value",)))])
    assert [u.pod for u in plan.unschedulable] == [p.key]
    assert "test-key" in plan.unschedulable[0].reason


def test_node_selectors_on_one_key_never_share_a_node() -> None:
    """The issue's case with nodeSelector: every pod on a node agrees on the single value of each label."""
    pending = [pod(f"a{i}", node_selector={TEST_KEY: "test-value"}) for i in range(3)]
    pending += [pod(f"b{i}", node_selector={TEST_KEY: "another-value"}) for i in range(3)]
    plan = run(pending, [group("g")], [pool("default", BOTH)])
    assert not plan.unschedulable
    for node in plan.new_nodes:
        assert len({p.split("/")[1][0] for p in node.pods}) == 1
        wanted = "test-value" if node.pods[0].startswith("default/a") else "another-value"
        assert node.labels[TEST_KEY] == wanted


# -- 8. gang reasons ---------------------------------------------------------------------------


def test_gang_reason_names_the_namespace_once_and_the_nodepool_limit() -> None:
    """provisioning: "should not schedule if limits would be exceeded" (Karpenter's NodePool limits), for a
    gang: the reason names the NodePool, the resource and the limit, not "no single zone". The gang
    name is qualified by the manifest parser (`ml/llm-train`) and must not be qualified twice."""
    gang = Gang("ml/llm-train", 4)
    members = [replace(pod(f"w{i}", cpu=7000, gang=gang), namespace="ml") for i in range(4)]
    plan = run(members, three_zone_groups(), [pool(limits=(("cpu", 16_000),))])
    assert sorted(u.pod for u in plan.unschedulable) == sorted(p.key for p in members)
    reason = plan.unschedulable[0].reason
    assert "ml/llm-train" in reason and "ml/ml/" not in reason
    assert "NodePool default limits cpu to 16" in reason and "needs 32 more" in reason
    assert "single availability zone" not in reason


def test_gang_blocked_by_nodes_in_use_counts_them() -> None:
    """provisioning: "should not schedule when limits are exceeded" (what nodes already use counts)."""
    used = existing_node("busy", bound=[pod("old", cpu=7000)])
    members = gang_pods("train", 2, cpu=7000)
    plan = run(members, [group("spot-a")], [pool(limits=(("nodes", 2),))], nodes=[used])
    reason = plan.unschedulable[0].reason
    assert "NodePool default limits nodes to 2, 1 is in use and the gang needs 2 more" in reason


# -- 1. required pod affinity to pods of the same batch ----------------------------------------


def _affinity(key: str, **match: str) -> tuple[PodAffinityTerm, ...]:
    return (PodAffinityTerm(key, LabelSelector(tuple(sorted(match.items())))),)


def test_pod_affinity_to_a_pending_pod_on_its_host() -> None:
    """topology: "should respect pod affinity (hostname)"."""
    spread = (TopologySpread(LABEL_HOSTNAME, 1, "DoNotSchedule", LabelSelector((("app", "spread"),))),)
    pending = [pod(f"s{i}", labels={"app": "spread"}, topology_spread=spread) for i in range(10)]
    target = pod("aff1", labels={"security": "s2"})
    follower = pod("aff2", pod_affinity=_affinity(LABEL_HOSTNAME, security="s2"))
    plan = run([*pending, target, follower], three_zone_groups())
    assert not plan.unschedulable
    placed = where(plan)
    assert placed[target.key] == placed[follower.key]


def test_pod_affinity_with_zone_topology_to_a_pending_target() -> None:
    """topology: "should support pod affinity with zone topology (unconstrained target)". Karpenter
    places the target first and the others in a second round, once the target's zone is known; a
    planned node has a concrete zone here, so all eleven land in the target's zone in one round."""
    target = pod("target", labels={"security": "s2"})
    followers = [pod(f"f{i}", pod_affinity=_affinity(LABEL_ZONE, security="s2")) for i in range(10)]
    plan = run([*followers, target], three_zone_groups())
    assert not plan.unschedulable
    zones = {n.zone for n in plan.new_nodes}
    assert len(zones) == 1


def test_pod_affinity_with_zone_topology_to_a_constrained_target() -> None:
    """topology: "should support pod affinity with zone topology (constrained target)"."""
    target = pod(
        "target", labels={"security": "s2"}, node_affinity=((Requirement(LABEL_ZONE, "In", (ZB,)),),)
    )
    followers = [pod(f"f{i}", pod_affinity=_affinity(LABEL_ZONE, security="s2")) for i in range(10)]
    plan = run([*followers, target], three_zone_groups(), placement_scores={ZA: 9})
    assert not plan.unschedulable
    assert {n.zone for n in plan.new_nodes} == {ZB}


def test_chain_of_dependent_affinities_lands_on_one_node() -> None:
    """topology: "should handle multiple dependent affinities" (db <- web <- cache <- ui on one host),
    in every submission order."""
    db = pod("db", labels={"type": "db"})
    web = pod("web", labels={"type": "web"}, pod_affinity=_affinity(LABEL_HOSTNAME, type="db"))
    cache = pod("cache", labels={"type": "cache"}, pod_affinity=_affinity(LABEL_HOSTNAME, type="web"))
    ui = pod("ui", labels={"type": "ui"}, pod_affinity=_affinity(LABEL_HOSTNAME, type="cache"))
    for order in ([db, web, cache, ui], [ui, cache, web, db], [cache, db, ui, web]):
        stamped = [replace(p, created=float(i)) for i, p in enumerate(order)]
        plan = run(stamped, three_zone_groups())
        assert not plan.unschedulable, plan.unschedulable
        assert len(set(where(plan).values())) == 1


def test_chain_onto_a_target_too_big_to_share_is_refused() -> None:
    """The affinity holds even when it costs room: a follower that does not fit beside its target on
    one host stays pending (Kubernetes never relaxes a required term)."""
    db = pod("db", cpu=6000, labels={"type": "db"})
    web = pod("web", cpu=3000, pod_affinity=_affinity(LABEL_HOSTNAME, type="db"))
    plan = run([db, web], [group("g")])
    assert [u.pod for u in plan.unschedulable] == [web.key]
    assert "pod affinity" in plan.unschedulable[0].reason


def test_unsatisfiable_dependency_is_not_scheduled() -> None:
    """topology: "should fail to schedule pods with unsatisfiable dependencies" and "should not schedule
    pods with affinity to a non-existent pod"."""
    lonely = pod("db", labels={"type": "db"}, pod_affinity=_affinity(LABEL_HOSTNAME, type="web"))
    plan = run([lonely], three_zone_groups())
    assert [u.pod for u in plan.unschedulable] == [lonely.key]


# -- 5, 6. topology spread on any label key, and its node inclusion policies -----------------------

SPREAD_LABEL = "fake-label"
TINY = {"cpu": 100, "memory": GI, "pods": 10}  # Karpenter's test nodes: 100m allocatable, no room


def _spread(key: str, **policies: str) -> tuple[TopologySpread, ...]:
    return (TopologySpread(key, 1, "DoNotSchedule", LabelSelector((("app", "spread"),)), 1, **policies),)  # type: ignore[arg-type]


def _spread_pods(count: int, spreads: tuple[TopologySpread, ...], **changes: Any) -> list[Pod]:
    return [pod(f"p{i}", labels={"app": "spread"}, topology_spread=spreads, **changes) for i in range(count)]


BAZ_POOL = pool("default", labels=((SPREAD_LABEL, "baz"),))


def _counts(plan: Plan, key: str) -> list[int]:
    """How many placed pods each value of `key` got (Karpenter's ExpectSkew), sorted."""
    by_value: dict[str, int] = {}
    for node in plan.new_nodes:
        by_value[node.labels.get(key, "")] = by_value.get(node.labels.get(key, ""), 0) + len(node.pods)
    return sorted(by_value.values())


def test_balance_pods_across_capacity_types() -> None:
    """topology: "should balance pods across capacity types" (and "should respect NodePool capacity type
    constraints")."""
    groups = [group("spot-a"), group("od-a", capacity=ON_DEMAND)]
    ct = Requirement(LABEL_CAPACITY_TYPE, "In", ("spot", "on-demand"))
    pending = [
        pod(f"p{i}", labels={"app": "spread"}, topology_spread=_spread(LABEL_CAPACITY_TYPE)) for i in range(4)
    ]
    plan = run(pending, groups, [pool("default", ct)])
    assert not plan.unschedulable
    assert _counts(plan, LABEL_CAPACITY_TYPE) == [2, 2]


def test_balance_pods_across_instance_types() -> None:
    """topology: spread on node.kubernetes.io/instance-type, domains from the instance groups' types."""
    groups = [group("c5", C5_2X), group("m5", "ml.m5.2xlarge")]
    pending = [
        pod(f"p{i}", labels={"app": "spread"}, topology_spread=_spread(LABEL_INSTANCE_TYPE)) for i in range(6)
    ]
    plan = run(pending, groups)
    assert not plan.unschedulable
    assert _counts(plan, LABEL_INSTANCE_TYPE) == [3, 3]


def test_balance_pods_across_a_nodepool_label_and_its_requirement_values() -> None:
    """topology: spread on a custom key whose values a NodePool requirement lists ("should balance pods
    across a label when discovered from the nodepool")."""
    req = Requirement(SPREAD_LABEL, "In", ("foo", "bar", "baz"))
    pending = [
        pod(f"p{i}", labels={"app": "spread"}, topology_spread=_spread(SPREAD_LABEL)) for i in range(6)
    ]
    plan = run(pending, [group("g")], [pool("default", req)])
    assert not plan.unschedulable
    assert _counts(plan, SPREAD_LABEL) == [2, 2, 2]


def _tainted_foo_bar_nodes(**labels: str) -> list[Node]:
    taint = (Taint("taintname", "NoSchedule", "taintvalue"),)
    return [
        Node(
            name,
            {SPREAD_LABEL: value, LABEL_HOSTNAME: name, **labels},
            {"cpu": 100, "memory": GI, "pods": 10},
            taint,
        )
        for name, value in (("node-1", "foo"), ("node-2", "bar"))
    ]


@pytest.mark.parametrize(
    ("policies", "counts", "refused"),
    [
        # topology: "should balance pods across a label (NodeTaintsPolicy=ignore)": three domains are
        # known (foo and bar from tainted nodes, baz from the NodePool); only baz takes pods, so one does.
        ({"node_taints_policy": "Ignore"}, [1], 4),
        # Kubernetes' default for nodeTaintsPolicy is Ignore: a tainted node's domain counts.
        ({}, [1], 4),
        # topology: "should balance pods across a label (NodeTaintsPolicy=honor)".
        ({"node_taints_policy": "Honor"}, [5], 0),
    ],
)
def test_node_taints_policy(policies: dict[str, str], counts: list[int], refused: int) -> None:
    pending = _spread_pods(5, _spread(SPREAD_LABEL, **policies))
    plan = run(pending, [group("g")], [BAZ_POOL], nodes=_tainted_foo_bar_nodes())
    assert _counts(plan, SPREAD_LABEL) == counts
    assert len(plan.unschedulable) == refused


def _tainted_pool_domains(policy: str) -> Plan:
    plain = pool("default", Requirement(SPREAD_LABEL, "In", ("foo",)))
    tainted = pool(
        "tainted", Requirement(SPREAD_LABEL, "In", ("bar",)), taints=(Taint("taint-key", "NoSchedule", "v"),)
    )
    spreads = _spread(SPREAD_LABEL, node_taints_policy=policy)
    pending = _spread_pods(2, spreads)
    return run(pending, [group("g")], [plain, tainted])


def test_taints_policy_with_domains_discovered_from_nodepools() -> None:
    """topology: "should balance pods across a label when discovered from the nodepool
    (NodeTaintsPolicy=ignore)" and "(NodeTaintsPolicy=honor)"."""
    assert _counts(_tainted_pool_domains("Ignore"), SPREAD_LABEL) == [1]
    assert _counts(_tainted_pool_domains("Honor"), SPREAD_LABEL) == [2]


def _affinity_policy_plan(policy: str | None) -> Plan:
    nodes = [
        Node(
            name,
            {SPREAD_LABEL: value, "selector": "mismatch", LABEL_HOSTNAME: name},
            {"cpu": 100, "memory": GI, "pods": 10},
        )
        for name, value in (("node-1", "foo"), ("node-2", "bar"))
    ]
    spreads = _spread(SPREAD_LABEL, **({"node_affinity_policy": policy} if policy else {}))
    pending = [
        pod(f"p{i}", labels={"app": "spread"}, node_selector={"selector": "value"}, topology_spread=spreads)
        for i in range(5)
    ]
    nodepool = pool("default", labels=((SPREAD_LABEL, "baz"), ("selector", "value")))
    return run(pending, [group("g")], [nodepool], nodes=nodes)


def test_node_affinity_policy() -> None:
    """topology: "should balance pods across a label (NodeAffinityPolicy=ignore)" and "(=honor)"; Honor
    is Kubernetes' default."""
    assert _counts(_affinity_policy_plan("Ignore"), SPREAD_LABEL) == [1]
    assert _counts(_affinity_policy_plan("Honor"), SPREAD_LABEL) == [5]
    assert _counts(_affinity_policy_plan(None), SPREAD_LABEL) == [5]


# -- 2. preferences: tried as requirements, then relaxed ---------------------------------------


def _zone_in(*zones: str) -> tuple[Requirement, ...]:
    return (Requirement(LABEL_ZONE, "In", zones),)


def test_preferred_node_affinity_is_honoured_when_it_can_be() -> None:
    """suite: "should schedule compatible preferences and requirements with Operator=In"."""
    p = pod("p", preferred_node_affinity=((1, _zone_in(ZC)),))
    plan = run([p], three_zone_groups(), placement_scores={ZA: 9})
    assert plan.new_nodes[0].zone == ZC


def test_relax_to_use_lighter_weights() -> None:
    """suite: Preferential Fallback / Preferred "should relax to use lighter weights"."""
    prefs = (
        (100, (Requirement(LABEL_INSTANCE_TYPE, "In", ("test-zone-3",)),)),
        (50, _zone_in(ZB)),
        (1, _zone_in(ZA)),  # never reached: the heavier one fits
    )
    p = pod("p", preferred_node_affinity=prefs)
    plan = run([p], three_zone_groups(), [pool("default", Requirement(LABEL_ZONE, "In", (ZA, ZB)))])
    assert not plan.unschedulable
    assert plan.new_nodes[0].zone == ZB


def test_relax_all_preferred_terms() -> None:
    """suite: Preferential Fallback / Preferred "should relax all terms"."""
    prefs = ((1, _zone_in("invalid")), (1, (Requirement(LABEL_INSTANCE_TYPE, "In", ("invalid",)),)))
    plan = run([pod("p", preferred_node_affinity=prefs)], three_zone_groups())
    assert not plan.unschedulable and len(plan.new_nodes) == 1


def test_preference_conflicting_with_requirement() -> None:
    """suite: "should schedule even if preference is conflicting with requirement" and "... preference
    requirements are conflicting"."""
    p = pod(
        "p",
        node_affinity=(_zone_in(ZC),),
        preferred_node_affinity=((1, (Requirement(LABEL_ZONE, "NotIn", (ZC,)),)),),
    )
    q = pod(
        "q",
        preferred_node_affinity=(
            (
                1,
                (Requirement(LABEL_ZONE, "In", ("invalid",)), Requirement(LABEL_ZONE, "NotIn", ("invalid",))),
            ),
        ),
    )
    plan = run([p, q], three_zone_groups())
    assert not plan.unschedulable
    assert new_node_of(plan, p.key).zone == ZC


def test_required_terms_are_never_relaxed() -> None:
    """suite: Preferential Fallback / Required "should not relax the final term"."""
    p = pod("p", node_affinity=(_zone_in("invalid"),))
    plan = run([p], three_zone_groups())
    assert [u.pod for u in plan.unschedulable] == [p.key]


def test_preferred_pod_affinity_is_honoured_then_violated() -> None:
    """topology: "should allow violation of preferred pod affinity" (the target does not exist), and a
    preferred hostname affinity to a pending target is honoured when it can be."""
    lonely = pod("lonely", preferred_pod_affinity=((50, _affinity(LABEL_HOSTNAME, security="s2")[0]),))
    plan = run([lonely], three_zone_groups())
    assert not plan.unschedulable
    target = pod("target", labels={"security": "s2"}, node_affinity=(_zone_in(ZB),))
    follower = pod("follower", preferred_pod_affinity=((50, _affinity(LABEL_ZONE, security="s2")[0]),))
    plan = run([target, follower], three_zone_groups(), placement_scores={ZA: 9})
    assert new_node_of(plan, follower.key).zone == ZB


def test_preferred_anti_affinity_is_honoured_then_violated() -> None:
    """topology: "should allow violation of preferred pod anti-affinity": ten pods that prefer not to
    share a zone, three zones: three go one per zone, the rest are placed anyway."""
    term = _affinity(LABEL_ZONE, app="anti")[0]
    pending = [
        pod(f"p{i}", labels={"app": "anti"}, preferred_pod_anti_affinity=((10, term),)) for i in range(10)
    ]
    plan = run(pending, three_zone_groups())
    assert not plan.unschedulable
    assert {n.zone for n in plan.new_nodes} == {ZA, ZB, ZC}


def test_lightest_pod_affinity_preference_is_relaxed_first() -> None:
    """Issue 12.2: the lightest preference goes first. The pod prefers zone b (weight 80, via a target
    there) and zone c (weight 10); both cannot hold, so the weight-10 one is dropped."""
    in_b = pod("in-b", labels={"at": "b"}, node_affinity=(_zone_in(ZB),))
    in_c = pod("in-c", labels={"at": "c"}, node_affinity=(_zone_in(ZC),))
    prefs = ((10, _affinity(LABEL_ZONE, at="c")[0]), (80, _affinity(LABEL_ZONE, at="b")[0]))
    p = pod("p", preferred_pod_affinity=prefs)
    plan = run([in_b, in_c, p], three_zone_groups())
    assert not plan.unschedulable
    assert new_node_of(plan, p.key).zone == ZB


def test_schedule_anyway_spread_is_tried_first_then_violated() -> None:
    """topology: "should violate max-skew when unsat = schedule anyway (capacity type)" and zone
    spreads: ScheduleAnyway balances when it can and never leaves a pod pending."""
    anyway = (TopologySpread(LABEL_ZONE, 1, "ScheduleAnyway", LabelSelector((("app", "spread"),))),)
    balanced = _spread_pods(6, anyway)
    plan = run(balanced, three_zone_groups())
    assert not plan.unschedulable
    per_zone = sorted(sum(len(n.pods) for n in plan.new_nodes if n.zone == z) for z in (ZA, ZB, ZC))
    assert per_zone == [2, 2, 2]
    # Only zone a can take them: the spread gives way.
    plan = run(
        _spread_pods(4, anyway),
        [*three_zone_groups()[:1]],
        [pool("default", Requirement(LABEL_ZONE, "In", (ZA, ZB, ZC)))],
    )
    assert not plan.unschedulable


# -- 3. PreferNoSchedule taints ----------------------------------------------------------------


def test_nodepool_with_prefer_no_schedule_taint_is_avoided_when_another_matches() -> None:
    """provisioning: "should not match NodePool with PreferNoSchedule taint when other NodePool match"
    (even when the tainted NodePool weighs more)."""
    taint = (Taint("foo", "PreferNoSchedule", "bar"),)
    pools = [pool("tainted", taints=taint, weight=50), pool("plain")]
    plan = run(pods("p", 3), [group("g")], pools)
    assert not plan.unschedulable
    assert {n.node_pool for n in plan.new_nodes} == {"plain"}


def test_prefer_no_schedule_nodepool_is_used_when_nothing_else_fits() -> None:
    """provisioning: "should tolerate PreferNoSchedule taint only after trying to relax Affinity terms"."""
    taint = (Taint("foo", "PreferNoSchedule", "bar"),)
    prefs = ((1, _zone_in("invalid")), (1, (Requirement(LABEL_INSTANCE_TYPE, "In", ("invalid",)),)))
    p = pod("p", preferred_node_affinity=prefs)
    plan = run([p], [group("g")], [pool("tainted", taints=taint)])
    assert not plan.unschedulable
    assert plan.new_nodes[0].node_pool == "tainted"
    # The other NodePool is full (limit): the tainted one takes what is left.
    pools = [pool("tainted", taints=taint), pool("plain", limits=(("nodes", 1),))]
    plan = run(pods("big", 2, cpu=7000), [group("g")], pools)
    assert not plan.unschedulable
    assert sorted(n.node_pool for n in plan.new_nodes) == ["plain", "tainted"]


def test_prefer_no_schedule_node_is_avoided_while_another_has_room() -> None:
    """Existing nodes too: a node tainted PreferNoSchedule (e.g. a Spot rebalance recommendation) takes
    pods only when no other node or NodePool can."""
    tainted = existing_node(
        "rebalancing", taints=(Taint("hpscaler.io/rebalance-recommended", "PreferNoSchedule"),)
    )
    healthy = existing_node("healthy")
    plan = run([pod("p")], [group("g")], nodes=[tainted, healthy])
    assert plan.existing == {"healthy": ["default/p"]}


def test_tainted_node_zone_counts_by_default() -> None:
    """Issue 12.6 with zones: a tainted node in zone c is a domain under the default nodeTaintsPolicy
    (Ignore), so with no capacity to launch in zone c only maxSkew pods go to each other zone; with
    Honor it is no domain and all four are placed."""
    tainted = existing_node("gpu-c", zone=ZC, taints=(Taint("nvidia.com/gpu", "NoSchedule"),))
    groups = [group("spot-a", zone=ZA), group("spot-b", zone=ZB)]
    default = run(_spread_pods(4, _spread(LABEL_ZONE)), groups, nodes=[tainted])
    assert len(default.unschedulable) == 2
    assert sorted(n.zone for n in default.new_nodes) == [ZA, ZB]
    honor = run(_spread_pods(4, _spread(LABEL_ZONE, node_taints_policy="Honor")), groups, nodes=[tainted])
    assert not honor.unschedulable
