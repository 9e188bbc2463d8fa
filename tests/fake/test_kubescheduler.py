"""The pure kube-scheduler stand-in: queue order, the filter plugins, and passes for affine pods."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hpscaler.fake.kubescheduler import DEFAULT_MAX_PODS, Binding, bind_pending
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_ZONE,
    LabelSelector,
    Node,
    Pod,
    PodAffinityTerm,
    Requirement,
    Taint,
    Toleration,
)

GIB = 1024**3


def pod(name: str, cpu: int = 1000, **kw: Any) -> Pod:
    labels = kw.pop("labels", {"app": name})
    return Pod(namespace="default", name=name, requests={"cpu": cpu, "memory": GIB}, labels=labels, **kw)


def node(name: str, cpu: int = 4000, **kw: Any) -> Node:
    labels = {LABEL_ZONE: "z1", **kw.pop("labels", {})}
    return Node(name=name, labels=labels, allocatable={"cpu": cpu, "memory": 16 * GIB}, **kw)


def placed(bindings: list[Binding]) -> dict[str, str]:
    return {b.pod.split("/")[1]: b.node for b in bindings}


def test_higher_priority_then_older_then_earlier_created_pods_bind_first() -> None:
    pending = [
        pod("young", created=5.0),
        pod("old", created=1.0),
        pod("urgent", created=9.0, priority=100),
        pod("old-twin", created=1.0),
    ]
    bindings = bind_pending(pending, [node("n", cpu=3000)], [])
    assert [b.pod for b in bindings] == ["default/urgent", "default/old", "default/old-twin"]


def test_first_node_by_name_that_passes_is_taken() -> None:
    bindings = bind_pending([pod("a"), pod("b")], [node("n-b"), node("n-a")], [])
    assert placed(bindings) == {"a": "n-a", "b": "n-a"}


def test_requests_count_bound_and_just_bound_pods_and_nothing_is_changed() -> None:
    on_node = pod("running", cpu=2500, node_name="n-a", phase="Running")
    pending = [pod("p1", cpu=1000), pod("p2", cpu=1000)]
    bindings = bind_pending(pending, [node("n-a"), node("n-b")], [on_node])
    assert placed(bindings) == {"p1": "n-a", "p2": "n-b"}
    assert all(not p.node_name and p.phase == "Pending" for p in pending)


def test_a_node_without_a_pod_limit_holds_the_kubelet_default_of_110() -> None:
    tiny = [replace(pod(f"p{i}"), requests={"cpu": 1}) for i in range(DEFAULT_MAX_PODS + 5)]
    bindings = bind_pending(tiny, [node("n", cpu=10_000)], [])
    assert len(bindings) == DEFAULT_MAX_PODS
    limited = Node(name="m", labels={}, allocatable={"cpu": 10_000, "memory": GIB, "pods": 3})
    assert len(bind_pending(tiny, [limited], [])) == 3


def test_not_ready_cordoned_and_tainted_nodes_are_filtered() -> None:
    nodes = [
        node("a-not-ready", ready=False),
        node("b-cordoned", unschedulable=True),
        node("c-tainted", taints=(Taint("gpu", "NoSchedule"),)),
        node("d-free"),
    ]
    assert placed(bind_pending([pod("p")], nodes, [])) == {"p": "d-free"}
    tolerant = pod("t", tolerations=(Toleration("gpu", "Exists"),))
    assert placed(bind_pending([tolerant], nodes, [])) == {"t": "c-tainted"}
    assert bind_pending([pod("p")], nodes[:3], []) == []


def test_node_selector_and_required_node_affinity() -> None:
    nodes = [node("a", labels={"team": "x"}), node("b", labels={"team": "ml", LABEL_ZONE: "z2"})]
    selected = pod("s", node_selector={"team": "ml"})
    affine = pod("f", node_affinity=((Requirement(LABEL_ZONE, "In", ("z2",)),),))
    assert placed(bind_pending([selected, affine], nodes, [])) == {"s": "b", "f": "b"}
    nowhere = pod("n", node_selector={"team": "none"})
    assert bind_pending([nowhere], nodes, []) == []


def test_hostname_anti_affinity_holds_in_both_directions() -> None:
    spread = PodAffinityTerm(LABEL_HOSTNAME, LabelSelector((("app", "db"),)))
    existing = pod("db-0", labels={"app": "db"}, node_name="a", pod_anti_affinity=(spread,))
    # The newcomer has no anti-affinity of its own: the running pod's term keeps it off node a.
    newcomer = pod("db-1", labels={"app": "db"})
    assert placed(bind_pending([newcomer], [node("a"), node("b")], [existing])) == {"db-1": "b"}
    # Two anti-affine pods of one batch land on two nodes, the third finds none.
    batch = [pod(f"w{i}", labels={"app": "db"}, pod_anti_affinity=(spread,)) for i in range(3)]
    assert placed(bind_pending(batch, [node("a"), node("b")], [])) == {"w0": "a", "w1": "b"}


def test_zone_anti_affinity_uses_the_topology_key() -> None:
    per_zone = PodAffinityTerm(LABEL_ZONE, LabelSelector((("app", "q"),)))
    batch = [pod(f"q{i}", labels={"app": "q"}, pod_anti_affinity=(per_zone,)) for i in range(2)]
    nodes = [node("a"), node("b"), node("c", labels={LABEL_ZONE: "z2"})]
    assert placed(bind_pending(batch, nodes, [])) == {"q0": "a", "q1": "c"}


def test_required_affinity_waits_for_its_peer_and_binds_in_a_later_pass() -> None:
    near_db = PodAffinityTerm(LABEL_HOSTNAME, LabelSelector((("app", "db"),)))
    # The web pod is older, so it is tried first, when no db pod runs anywhere yet.
    web = pod("web", created=1.0, labels={"app": "web"}, pod_affinity=(near_db,))
    db = pod("db", created=2.0, labels={"app": "db"})
    bindings = bind_pending([web, db], [node("a"), node("b")], [])
    assert [b.pod for b in bindings] == ["default/db", "default/web"]
    assert placed(bindings) == {"db": "a", "web": "a"}


def test_the_first_pod_of_a_self_matching_affinity_group_may_go_anywhere() -> None:
    together = PodAffinityTerm(LABEL_HOSTNAME, LabelSelector((("app", "g"),)))
    group = [pod(f"g{i}", cpu=1500, labels={"app": "g"}, pod_affinity=(together,)) for i in range(3)]
    # Two fit next to each other on a; the third may not go to b, where no group member runs.
    assert placed(bind_pending(group, [node("a", cpu=3000), node("b")], [])) == {"g0": "a", "g1": "a"}
    # A topology key the node lacks rules the node out even for the first pod.
    racked = PodAffinityTerm("rack", LabelSelector((("app", "g"),)))
    assert bind_pending([pod("r", labels={"app": "g"}, pod_affinity=(racked,))], [node("a")], []) == []


def test_pods_bound_to_unknown_nodes_are_ignored_and_no_nodes_bind_nothing() -> None:
    ghost = pod("ghost", cpu=4000, node_name="gone")
    assert placed(bind_pending([pod("p", cpu=4000)], [node("a")], [ghost])) == {"p": "a"}
    assert bind_pending([pod("p")], [], []) == []
