"""Properties (issue 12.4, 12.5): every pod on a node agrees on each label's single value, and a
topology spread holds on any label key, for random NodePool requirements, pods and spreads."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from test_scheduler_cases import ON_DEMAND, ZA, ZB, ZC, group, pod, pool, run

from hpscaler.model import (
    LABEL_CAPACITY_TYPE,
    LABEL_INSTANCE_TYPE,
    LABEL_ZONE,
    LabelSelector,
    Pod,
    Requirement,
    TopologySpread,
)
from hpscaler.scheduling.requirements import pod_terms, term_fits_labels

KEYS = {"rack": ("r1", "r2", "r3"), "tier": ("gold", "silver")}
GROUPS = [group("spot-a", zone=ZA), group("od-b", "ml.m5.2xlarge", ZB, ON_DEMAND), group("spot-c", zone=ZC)]


@st.composite
def constrained_pod(draw: st.DrawFn, index: int) -> Pod:
    requirements = []
    selector = {}
    for key, values in KEYS.items():
        how = draw(st.sampled_from(["none", "selector", "in", "notin"]))
        chosen = tuple(sorted(draw(st.sets(st.sampled_from(values), min_size=1, max_size=len(values)))))
        if how == "selector":
            selector[key] = chosen[0]
        elif how == "in":
            requirements.append(Requirement(key, "In", chosen))
        elif how == "notin":
            requirements.append(Requirement(key, "NotIn", chosen))
    cpu = draw(st.sampled_from([250, 1000, 3000]))
    return pod(
        f"p{index}",
        cpu=cpu,
        node_selector=selector,
        node_affinity=(tuple(requirements),) if requirements else (),
    )


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.data())
def test_pods_on_a_node_agree_on_every_label_value(data: st.DataObject) -> None:
    allowed = {
        key: tuple(sorted(data.draw(st.sets(st.sampled_from(values), min_size=1, max_size=len(values)))))
        for key, values in KEYS.items()
    }
    nodepool = pool("default", *(Requirement(k, "In", v) for k, v in allowed.items()))
    pending = [data.draw(constrained_pod(i)) for i in range(data.draw(st.integers(1, 25)))]
    plan = run(pending, GROUPS, [nodepool])
    by_key = {p.key: p for p in pending}
    placed = [key for node in plan.new_nodes for key in node.pods]
    assert sorted([*placed, *(u.pod for u in plan.unschedulable)]) == sorted(by_key)
    for node in plan.new_nodes:
        for key, values in allowed.items():
            assert node.labels.get(key) in values  # one value, one the NodePool allows
        for key in node.pods:
            # Each pod's constraints hold against the node's one value of every label.
            assert any(term_fits_labels(term, node.labels) for term in pod_terms(by_key[key])), (
                key,
                node.labels,
            )
    # Capacity is unlimited: a pod is refused only when no allowed value satisfies it.
    for item in plan.unschedulable:
        p = by_key[item.pod]
        combos = [{"rack": r, "tier": t} for r in allowed["rack"] for t in allowed["tier"]]
        assert not any(term_fits_labels(term, combo) for term in pod_terms(p) for combo in combos)


SPREAD_KEYS = {
    LABEL_ZONE: (ZA, ZB, ZC),
    LABEL_CAPACITY_TYPE: ("on-demand", "spot"),
    LABEL_INSTANCE_TYPE: ("ml.c5.2xlarge", "ml.m5.2xlarge"),
    "rack": ("r1", "r2", "r3"),
}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.sampled_from(sorted(SPREAD_KEYS)),
    st.integers(1, 3),
    st.integers(1, 30),
    st.sampled_from([250, 1000, 3000]),
    st.integers(0, 10),
)
def test_spread_holds_on_any_label_key(key: str, max_skew: int, count: int, cpu: int, others: int) -> None:
    spread = (TopologySpread(key, max_skew, "DoNotSchedule", LabelSelector((("app", "web"),))),)
    web = [pod(f"web-{i}", cpu=cpu, labels={"app": "web"}, topology_spread=spread) for i in range(count)]
    filler = [pod(f"other-{i}", cpu=500) for i in range(others)]
    nodepool = pool("default", Requirement("rack", "In", SPREAD_KEYS["rack"]))
    plan = run([*web, *filler], GROUPS, [nodepool])
    assert not plan.unschedulable  # capacity is unlimited: every domain can always take one more
    per_domain = Counter({value: 0 for value in SPREAD_KEYS[key]})
    for node in plan.new_nodes:
        per_domain[node.labels[key]] += sum(1 for k in node.pods if k.startswith("default/web-"))
    assert set(per_domain) == set(SPREAD_KEYS[key])  # the domains are the key's values, not zones
    assert max(per_domain.values()) - min(per_domain.values()) <= max_skew
