"""The scheduler on the hard mix (benchmark W7, small): every pod a different size, many zone-spread,
hostname anti-affinity and hostname-spread groups, existing nodes. Every plan must be valid: each pod
once, no node over its allocatable, no two pods of an anti-affinity group on a host, and every
self-selecting spread within its skew in the end state (existing pods counted).
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from hpscaler.catalogue import load_catalogue
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_ZONE,
    CapacityType,
    InstanceGroup,
    LabelSelector,
    Node,
    NodeClass,
    NodePool,
    Pod,
    PodAffinityTerm,
    TopologySpread,
)
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import Plan, SchedulingInput

CAT = load_catalogue()
ZONES = ("us-west-2a", "us-west-2b", "us-west-2c")
MI = 2**20
GROUPS = [
    InstanceGroup(f"{ct.value}-{z[-1]}", ("ml.c5.2xlarge", "ml.c5.4xlarge"), ct, (z,))
    for z in ZONES
    for ct in (CapacityType.SPOT, CapacityType.ON_DEMAND)
]


def _pods(rng: random.Random, n: int) -> list[Pod]:
    pods = []
    for i in range(n):
        requests = {"cpu": rng.randint(100, 1500), "memory": rng.randint(100 * MI, 3000 * MI) + i}
        kind = i % 10
        kw: dict[str, object] = {}
        if kind < 3:
            labels = {"zs": f"z{i % 12}"}
            kw["topology_spread"] = (
                TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", LabelSelector(tuple(labels.items()))),
            )
        elif kind < 5:
            labels = {"anti": f"a{i % 7}"}
            kw["pod_anti_affinity"] = (PodAffinityTerm(LABEL_HOSTNAME, LabelSelector(tuple(labels.items()))),)
        elif kind < 6:
            labels = {"hs": f"h{i % 5}"}
            kw["topology_spread"] = (
                TopologySpread(LABEL_HOSTNAME, 1, "DoNotSchedule", LabelSelector(tuple(labels.items()))),
            )
        else:
            labels = {"app": "plain"}
        pods.append(Pod("default", f"p{i:04d}", requests, uid=f"u{i}", labels=labels, created=float(i), **kw))  # type: ignore[arg-type]
    rng.shuffle(pods)
    return pods


def _nodes(rng: random.Random, count: int) -> list[Node]:
    allocatable = CAT.get("ml.c5.4xlarge").allocatable()
    nodes = []
    for i in range(count):
        name = f"old-{i:03d}"
        node = Node(name, {LABEL_ZONE: ZONES[i % 3], LABEL_HOSTNAME: name}, dict(allocatable))
        for j in range(rng.randrange(0, 4)):
            req = {"cpu": rng.randint(500, 3000), "memory": rng.randint(256 * MI, 4096 * MI)}
            node.pods.append(
                Pod("running", f"{name}-{j}", req, node_name=name, phase="Running", labels={"app": "svc"})
            )
        nodes.append(node)
    return nodes


def _problems(plan: Plan, pods: list[Pod], nodes: list[Node]) -> list[str]:
    by_key = {p.key: p for p in pods}
    hosts: list[tuple[str, str, dict[str, int], list[Pod]]] = [
        (n.name, n.zone, n.allocatable, [by_key[k] for k in n.pods]) for n in plan.new_nodes
    ]
    hosts += [
        (n.name, n.zone, n.allocatable, [*n.pods, *(by_key[k] for k in plan.existing.get(n.name, ()))])
        for n in nodes
    ]
    problems = []
    seen = Counter(p.key for _, _, _, placed in hosts for p in placed if p.key in by_key)
    if any(seen[p.key] != 1 for p in pods):
        problems.append("a pod is missing or placed twice")
    for name, _, allocatable, placed in hosts:
        for resource in ("cpu", "memory"):
            if sum(p.requests.get(resource, 0) for p in placed) > allocatable[resource]:
                problems.append(f"{name} over its {resource}")
        for pod in placed:
            for term in pod.pod_anti_affinity:
                if any(o is not pod and term.selector.matches(o.labels) for o in placed):
                    problems.append(f"{pod.key}: anti-affinity broken on {name}")
    for pod in pods:
        for spread in pod.topology_spread:
            counts = Counter(
                (zone if spread.topology_key == LABEL_ZONE else name)
                for name, zone, _, placed in hosts
                for p in placed
                if spread.selector.matches(p.labels)
            )
            domains = ZONES if spread.topology_key == LABEL_ZONE else [h[0] for h in hosts]
            low = 0 if spread.topology_key == LABEL_HOSTNAME else min(counts.get(d, 0) for d in domains)
            if max(counts.values()) - low > spread.max_skew:
                problems.append(f"{pod.key}: spread over {spread.topology_key} beyond its skew")
    return problems


# 600 pods are past `podwise.MANY_DEMANDS`: the existing nodes are filled pod by pod.
@pytest.mark.parametrize(
    ("seed", "existing", "count"), [(1, 0, 300), (2, 0, 300), (3, 30, 300), (4, 30, 300), (5, 60, 600)]
)
def test_the_hard_mix_gets_a_valid_plan(seed: int, existing: int, count: int) -> None:
    rng = random.Random(seed)
    pods, nodes = _pods(rng, count), _nodes(rng, existing)
    inp = SchedulingInput(
        pods=pods,
        node_pools=[NodePool("default", "nc")],
        node_classes=[NodeClass("nc", tuple(g.name for g in GROUPS))],
        groups=GROUPS,
        catalogue=CAT,
        nodes=nodes,
    )
    plan = solve(inp)
    assert plan.unschedulable == []
    assert _problems(plan, pods, nodes) == []
    if existing:
        assert plan.existing  # the existing nodes' room is used
