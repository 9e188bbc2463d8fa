"""PodDisruptionBudget arithmetic and the workload controllers' decisions, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from hpscaler.fake.budgets import DisruptionBudget, scaled
from hpscaler.fake.controllers import Replacements, daemon_pod, dies_with_node, is_replaced
from hpscaler.model import LabelSelector, Node, Pod, Requirement, Taint, Toleration

WEB = LabelSelector((("app", "web"),))


def pod(name: str, phase: str = "Running", **kw: Any) -> Pod:
    return Pod(
        namespace="default", name=name, requests={"cpu": 100}, labels={"app": "web"}, phase=phase, **kw
    )


def test_percentages_round_up_as_the_disruption_controller_does() -> None:
    assert [scaled("50%", 3), scaled("10%", 1), scaled(2, 9), scaled("4", 9)] == [2, 1, 2, 4]


def test_disruptions_allowed_counts_healthy_pods_against_the_desired_count() -> None:
    pods = [pod("a"), pod("b"), pod("c"), pod("d", phase="Pending"), pod("e", terminating=True)]
    pods += [
        pod("done", phase="Succeeded"),
        Pod(namespace="other", name="x", requests={}, labels={"app": "web"}),
    ]
    # expected 5 (a-e), healthy 3 (a-c): minAvailable 2 allows 1; maxUnavailable 40% (2) allows 0.
    assert DisruptionBudget("default", "min", WEB, 2, None).disruptions_allowed(pods) == 1
    assert DisruptionBudget("default", "max", WEB, None, "40%").disruptions_allowed(pods) == 0
    assert DisruptionBudget("default", "max", WEB, None, 3).disruptions_allowed(pods) == 1
    pinned = DisruptionBudget("default", "pin", WEB, 2, None, pinned=-1)
    assert pinned.disruptions_allowed(pods) == 0


def test_a_budget_needs_exactly_one_of_min_available_and_max_unavailable() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        DisruptionBudget("default", "both", WEB, 1, 1)
    with pytest.raises(ValueError, match="exactly one"):
        DisruptionBudget("default", "neither", WEB, None, None)


def test_a_daemonset_runs_on_nodes_it_selects_and_tolerates() -> None:
    template = Pod(
        namespace="kube-system",
        name="agent",
        requests={"cpu": 50},
        node_selector={"gpu": "yes"},
        node_affinity=((Requirement("zone", "In", ("z1",)),),),
        owner_kind="DaemonSet",
    )
    fit = Node(name="n1", labels={"gpu": "yes", "zone": "z1"}, allocatable={})
    made = daemon_pod(template, fit)
    assert made is not None and (made.name, made.node_name) == ("agent-n1", "n1")
    assert daemon_pod(template, Node(name="n2", labels={"gpu": "no", "zone": "z1"}, allocatable={})) is None
    assert daemon_pod(template, Node(name="n3", labels={"gpu": "yes", "zone": "z2"}, allocatable={})) is None
    tainted = Node(name="n4", labels=fit.labels, allocatable={}, taints=(Taint("gpu", "NoSchedule"),))
    assert daemon_pod(template, tainted) is None
    tolerant = Pod(
        namespace="kube-system", name="t", requests={}, tolerations=(Toleration(operator="Exists"),)
    )
    assert daemon_pod(tolerant, tainted) is not None


def test_controlled_pods_are_replaced_with_numbered_names_and_node_bound_pods_die_with_the_node() -> None:
    owned = pod("web-0", owner_kind="ReplicaSet")
    assert is_replaced(owned) and not dies_with_node(owned)
    assert not is_replaced(pod("bare")) and not is_replaced(pod("job", phase="Succeeded", owner_kind="Job"))
    assert dies_with_node(pod("ds", owner_kind="DaemonSet")) and not is_replaced(
        pod("ds", owner_kind="DaemonSet")
    )
    names = Replacements()
    first = names.replacement(owned, "web-0", uid="u1", now=5.0)
    second = names.replacement(owned, "web-0", uid="u2", now=6.0)
    assert [(p.name, p.uid, p.created) for p in (first, second)] == [
        ("web-0-r1", "u1", 5.0),
        ("web-0-r2", "u2", 6.0),
    ]
    assert names.replacement(owned, "other", uid="u3", now=7.0).name == "other-r1"
