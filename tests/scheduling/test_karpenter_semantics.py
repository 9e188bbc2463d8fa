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

from test_scheduler_cases import (
    C5_2X,
    GI,
    ON_DEMAND,
    ZA,
    ZB,
    existing_node,
    gang_pods,
    group,
    pod,
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
    """provisioning: "should not schedule if limits would be met" (existing usage counts against limits)."""
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


def test_node_taints_policy_ignore_counts_tainted_nodes() -> None:
    """topology: "should balance pods across a label (NodeTaintsPolicy=ignore)": three domains are known
    (foo and bar from tainted nodes, baz from the NodePool) and only baz can take pods, so one does."""
    spreads = _spread(SPREAD_LABEL, node_taints_policy="Ignore")
    pending = _spread_pods(5, spreads)
    plan = run(
        pending,
        [group("g")],
        [BAZ_POOL],
        nodes=_tainted_foo_bar_nodes(),
    )
    assert _counts(plan, SPREAD_LABEL) == [1]
    assert len(plan.unschedulable) == 4


def test_node_taints_policy_defaults_to_ignore() -> None:
    """Kubernetes' default for nodeTaintsPolicy is Ignore: a tainted node's domain counts."""
    pending = [
        pod(f"p{i}", labels={"app": "spread"}, topology_spread=_spread(SPREAD_LABEL)) for i in range(5)
    ]
    plan = run(
        pending,
        [group("g")],
        [BAZ_POOL],
        nodes=_tainted_foo_bar_nodes(),
    )
    assert _counts(plan, SPREAD_LABEL) == [1]


def test_node_taints_policy_honor_skips_tainted_nodes() -> None:
    """topology: "should balance pods across a label (NodeTaintsPolicy=honor)"."""
    spreads = _spread(SPREAD_LABEL, node_taints_policy="Honor")
    pending = _spread_pods(5, spreads)
    plan = run(
        pending,
        [group("g")],
        [BAZ_POOL],
        nodes=_tainted_foo_bar_nodes(),
    )
    assert not plan.unschedulable
    assert _counts(plan, SPREAD_LABEL) == [5]


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
