"""Cases translated from Karpenter's and Kubernetes' own scheduling tests, one per semantic of issue 12.

Each test names the Karpenter test it comes from (kubernetes-sigs/karpenter,
`pkg/controllers/provisioning/scheduling/suite_test.go` = suite, `topology_test.go` = topology,
`pkg/controllers/provisioning/suite_test.go` = provisioning). Karpenter's fake cloud provider has
zones test-zone-1..3 and instance types of every size; here they are HyperPod instance groups in
us-west-2a..c, expressed through NodePool requirements, instance groups and pods as our config can.
"""

from __future__ import annotations

from dataclasses import replace

from test_scheduler_cases import (
    existing_node,
    gang_pods,
    group,
    pod,
    pool,
    run,
    three_zone_groups,
    where,
)

from hpscaler.model import Gang, Requirement
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
