"""Pods and clusters of the hard mix (W7, W8): every pod a different size, many topology groups.

Also the validity check every W7/W8 plan goes through: capacity on every node (new and existing,
with the pods already running there), required hostname anti-affinity, and the skew of every
DoNotSchedule spread whose selector selects its own pods, counted over the end state (existing
pods included).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.common import MIB, ZONES, fake_type_name
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_ZONE,
    CapacityType,
    InstanceGroup,
    LabelSelector,
    Node,
    Pod,
    PodAffinityTerm,
    TopologySpread,
)

# A realistic NodeClass: 3 zones x (Spot, On-Demand), each group a flexible list of 8 sizes.
HARD_MIX_TYPES = tuple(fake_type_name(i) for i in (2, 4, 8, 16, 32, 48, 64, 96))
EXISTING_TYPE = fake_type_name(16)


def hard_mix_groups() -> list[InstanceGroup]:
    """6 instance groups (HyperPod allows at most 10 per NodeClass): Spot and On-Demand in each zone."""
    return [
        InstanceGroup(f"{ct.value}-{zone[-1]}", HARD_MIX_TYPES, ct, (zone,))
        for zone in ZONES
        for ct in (CapacityType.SPOT, CapacityType.ON_DEMAND)
    ]


def _distinct_requests(rng: random.Random, index: int) -> dict[str, int]:
    """CPU 100m-1.5 CPU and memory 100Mi-4Gi, drawn so that no two pods ask for the same."""
    return {"cpu": rng.randint(100, 1500), "memory": rng.randint(100 * MIB, 4096 * MIB) + index}


def _pod(index: int, kind: str, requests: dict[str, int], **fields: object) -> Pod:
    return Pod(
        namespace="default",
        name=f"{kind}-{index:06d}",
        requests=requests,
        uid=f"uid-{kind}-{index}",
        owner_kind="ReplicaSet",
        owner_name=kind,
        created=float(index),
        **fields,  # type: ignore[arg-type]
    )


def plain_pods(n: int, seed: int = 7) -> list[Pod]:
    """The plain mix: Karpenter's 30 request sizes, no topology constraints."""
    rng = random.Random(seed)
    return [
        _pod(
            i,
            "plain",
            {
                "cpu": rng.choice((100, 250, 500, 1000, 1500)),
                "memory": rng.choice((100, 256, 512, 1024, 2048, 4096)) * MIB,
            },
            labels={"app": "plain"},
        )
        for i in range(n)
    ]


def hard_pods(
    n: int,
    seed: int = 11,
    zone_groups: int = 1000,
    anti_groups: int = 500,
    host_spread_groups: int = 300,
) -> list[Pod]:
    """30% zone spread, 20% hostname anti-affinity, 10% hostname spread, 40% plain; every size distinct."""
    rng = random.Random(seed)
    pods: list[Pod] = []
    n_zone, n_anti, n_host = (n * 30) // 100, (n * 20) // 100, (n * 10) // 100
    for i in range(n_zone):
        labels = {"zs": f"z{i % zone_groups}"}
        spread = TopologySpread(LABEL_ZONE, 1, "DoNotSchedule", LabelSelector(tuple(labels.items())))
        pods.append(
            _pod(
                len(pods),
                "zone-spread",
                _distinct_requests(rng, len(pods)),
                labels=labels,
                topology_spread=(spread,),
            )
        )
    for i in range(n_anti):
        labels = {"anti": f"a{i % anti_groups}"}
        term = PodAffinityTerm(LABEL_HOSTNAME, LabelSelector(tuple(labels.items())))
        pods.append(
            _pod(
                len(pods),
                "anti-host",
                _distinct_requests(rng, len(pods)),
                labels=labels,
                pod_anti_affinity=(term,),
            )
        )
    for i in range(n_host):
        labels = {"hs": f"h{i % host_spread_groups}"}
        spread = TopologySpread(LABEL_HOSTNAME, 1, "DoNotSchedule", LabelSelector(tuple(labels.items())))
        pods.append(
            _pod(
                len(pods),
                "host-spread",
                _distinct_requests(rng, len(pods)),
                labels=labels,
                topology_spread=(spread,),
            )
        )
    while len(pods) < n:
        pods.append(_pod(len(pods), "plain", _distinct_requests(rng, len(pods)), labels={"app": "plain"}))
    rng.shuffle(pods)
    return pods


def existing_nodes(count: int, allocatable: dict[str, int], fill: float = 0.5, seed: int = 5) -> list[Node]:
    """`count` Ready nodes of EXISTING_TYPE over 3 zones, each running pods up to about `fill` of its CPU."""
    rng = random.Random(seed)
    nodes = []
    for i in range(count):
        zone = ZONES[i % len(ZONES)]
        name = f"existing-{i:05d}"
        node = Node(
            name,
            {
                LABEL_ZONE: zone,
                LABEL_HOSTNAME: name,
                "node.kubernetes.io/instance-type": EXISTING_TYPE,
                "karpenter.sh/capacity-type": "on-demand",
            },
            dict(allocatable),
        )
        used = 0
        j = 0
        while True:
            req = {"cpu": rng.randint(200, 2000), "memory": rng.randint(256 * MIB, 4096 * MIB)}
            if used + req["cpu"] > fill * allocatable["cpu"]:
                break
            used += req["cpu"]
            node.pods.append(
                Pod(
                    "running",
                    f"{name}-p{j}",
                    req,
                    uid=f"run-{i}-{j}",
                    labels={"app": f"svc{j % 20}"},
                    node_name=name,
                    phase="Running",
                    owner_kind="ReplicaSet",
                    owner_name=f"svc{j % 20}",
                )
            )
            j += 1
        nodes.append(node)
    return nodes


@dataclass
class EndNode:
    """A node of the end state: where it is, what it holds."""

    name: str
    zone: str
    allocatable: dict[str, int]
    pods: list[Pod]


def check_end_state(nodes: Sequence[EndNode], pods: Iterable[Pod]) -> list[str]:
    """Problems with an end state; `pods` are the ones that must each be on exactly one node."""
    problems: list[str] = []
    where: dict[str, str] = {}
    for node in nodes:
        used: dict[str, int] = {"pods": len(node.pods)}
        for pod in node.pods:
            if pod.key in where:
                problems.append(f"{pod.key} on {where[pod.key]} and {node.name}")
            where[pod.key] = node.name
            for name, amount in pod.requests.items():
                used[name] = used.get(name, 0) + amount
        for name, amount in used.items():
            if amount > node.allocatable.get(name, 0):
                problems.append(f"{node.name}: {name} {amount} > {node.allocatable.get(name, 0)}")
        for pod in node.pods:
            for term in pod.pod_anti_affinity:
                if term.topology_key == LABEL_HOSTNAME and any(
                    p is not pod and p.namespace == pod.namespace and term.selector.matches(p.labels)
                    for p in node.pods
                ):
                    problems.append(f"{pod.key}: hostname anti-affinity broken on {node.name}")
                    break
    wanted = list(pods)
    missing = [p.key for p in wanted if p.key not in where]
    if missing:
        problems.append(f"{len(missing)} pods not placed, e.g. {missing[:3]}")
    spreads = {
        (s.topology_key, s.selector, s.max_skew)
        for p in wanted
        for s in p.topology_spread
        if s.when_unsatisfiable == "DoNotSchedule" and s.selector.matches(p.labels)
    }
    # Pods per (label, value) and domain, so that a one-label selector's counts are a lookup.
    by_label: dict[tuple[str, str, str], dict[str, int]] = {}
    for node in nodes:
        for pod in node.pods:
            for label, value in pod.labels.items():
                for key, domain in ((LABEL_ZONE, node.zone), (LABEL_HOSTNAME, node.name)):
                    per = by_label.setdefault((key, label, value), {})
                    per[domain] = per.get(domain, 0) + 1
    zones = {node.zone for node in nodes}
    for key, selector, skew in spreads:
        if len(selector.match_labels) == 1 and not selector.match_expressions:
            counts = dict(by_label.get((key, *selector.match_labels[0]), {}))
        else:
            counts = {}
            for node in nodes:
                domain = node.zone if key == LABEL_ZONE else node.name
                counts[domain] = counts.get(domain, 0) + sum(
                    1 for p in node.pods if selector.matches(p.labels)
                )
        low = 0 if key == LABEL_HOSTNAME else min(counts.get(z, 0) for z in zones)
        high = max(counts.values(), default=0)
        if high - low > skew:
            problems.append(f"spread {key} {selector.match_labels}: skew {high - low} > {skew}")
    return problems
