"""`hpscaler plan`: the scheduler's decision for given pods, as JSON for scripts or a table for people."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from hpscaler.model import InstanceGroup, Node, Pod
from hpscaler.provisioning.batching import AddRequest, GroupAddition, batch_additions
from hpscaler.quantity import format_resource
from hpscaler.scheduling.membership import PoolMembership, planning_nodes
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import Plan, SchedulingInput, Unschedulable


def group_additions(
    plan: Plan, groups: Sequence[InstanceGroup], pod_ids: Mapping[str, str]
) -> list[GroupAddition]:
    """Turn the plan's new nodes into additions, remembering which pods they are for.

    A group offering several zones (or instance types) gets one addition per zone (and type) the
    plan chose, carrying that zone in AvailabilityZones: HyperPod would otherwise place the nodes
    in any of the group's zones, and a zone spread or a gang planned into one zone would not hold.
    """
    by_name = {g.name: g for g in groups}
    counts: dict[tuple[str, str, str], int] = {}
    reasons: dict[tuple[str, str, str], list[str]] = {}
    for node in plan.new_nodes:
        group = by_name.get(node.instance_group)
        zone = node.zone if group is not None and len(group.zones) > 1 else ""
        kind = node.instance_type if group is not None and len(group.instance_types) > 1 else ""
        key = (node.instance_group, zone, kind)
        counts[key] = counts.get(key, 0) + 1
        reasons.setdefault(key, []).extend(pod_ids.get(p, p) for p in node.pods)
    return [
        GroupAddition(
            group=name,
            count=count,
            zones=(zone,) if zone else (),
            instance_types=(kind,) if kind else (),
            reasons=tuple(reasons[(name, zone, kind)]),
        )
        for (name, zone, kind), count in sorted(counts.items())
    ]


def plan_pods(
    *,
    cluster: str,
    pods: Sequence[Pod],
    nodes: Sequence[Node],
    daemonsets: Sequence[Pod],
    inp_base: SchedulingInput,
) -> tuple[Plan, list[AddRequest]]:
    """Solve for `pods` on `nodes` and derive the BatchAddClusterNodes calls the daemon would make.

    A pod already bound to a node (`spec.nodeName`) is not the scheduler's to place: it counts as
    running on that node (it takes room there and shows under the node), or, when no such node is
    given, is reported unschedulable with the reason. Every input pod appears exactly once.
    """
    # Startup taints do not close a node to its NodePool's pods (Karpenter's semantics).
    by_name = {
        n.name: n for n in planning_nodes(nodes, PoolMembership(inp_base.node_pools, inp_base.node_classes))
    }
    pending: list[Pod] = []
    bound: dict[str, list[str]] = {}
    lost: list[Unschedulable] = []
    for pod in pods:
        if not pod.node_name:
            pending.append(pod)
            continue
        node = by_name.get(pod.node_name)
        if node is None:
            lost.append(
                Unschedulable(
                    pod.key,
                    f"bound to node {pod.node_name} (spec.nodeName), which is not among the given nodes; "
                    "add its Node manifest with --nodes, or clear spec.nodeName to plan it",
                )
            )
            continue
        if all(p.key != pod.key for p in node.pods):
            by_name[node.name] = node = replace(node, pods=[*node.pods, pod])
        bound.setdefault(node.name, []).append(pod.key)
    inp = SchedulingInput(
        pods=pending,
        nodes=list(by_name.values()),
        daemonsets=daemonsets,
        node_pools=inp_base.node_pools,
        node_classes=inp_base.node_classes,
        groups=inp_base.groups,
        catalogue=inp_base.catalogue,
        placement_scores=inp_base.placement_scores,
        unavailable=inp_base.unavailable,
        region=inp_base.region,
    )
    plan = solve(inp)
    for name, keys in bound.items():
        plan.existing[name] = [*keys, *plan.existing.get(name, [])]
    plan.unschedulable.extend(lost)
    pod_ids = {p.key: p.uid or p.key for p in pods}
    requests = batch_additions(cluster, group_additions(plan, inp.groups, pod_ids))
    return plan, requests


PLAN_SCHEMA_VERSION = 1  # raised when a field of `plan --output json` changes meaning or goes away


def plan_to_json(plan: Plan, requests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The stable JSON contract of `hpscaler plan --output json`; `requests` are the exact request
    bodies (`hpscaler.aws.bodies.add_nodes_body`)."""
    return {
        "schemaVersion": PLAN_SCHEMA_VERSION,
        "newNodes": [
            {
                "name": n.name,
                "nodePool": n.node_pool,
                "instanceGroup": n.instance_group,
                "instanceType": n.instance_type,
                "zone": n.zone,
                "capacityType": n.capacity_type.value,
                "pricePerHour": round(n.price_per_hour, 6),
                "allocatable": {k: format_resource(k, v) for k, v in sorted(n.allocatable.items())},
                "pods": list(n.pods),
                "labels": dict(sorted(n.labels.items())),
            }
            for n in plan.new_nodes
        ],
        "existingNodes": [{"name": name, "pods": pods} for name, pods in sorted(plan.existing.items())],
        "unschedulable": [{"pod": u.pod, "reason": u.reason} for u in plan.unschedulable],
        "batchAddClusterNodes": list(requests),
        "costPerHour": round(plan.cost_per_hour, 6),
    }


def plan_to_table(plan: Plan, requests: Sequence[AddRequest]) -> str:
    """A readable summary of the plan."""
    lines: list[str] = []
    if plan.new_nodes:
        lines.append(f"New nodes ({len(plan.new_nodes)}, ${plan.cost_per_hour:.2f}/h):")
        header = f"  {'NAME':<32} {'GROUP':<28} {'TYPE':<18} {'ZONE':<12} {'CAPACITY':<10} {'PODS':>5}"
        lines.append(header)
        for n in plan.new_nodes:
            lines.append(
                f"  {n.name:<32} {n.instance_group:<28} {n.instance_type:<18} {n.zone:<12} "
                f"{n.capacity_type.value:<10} {len(n.pods):>5}"
            )
    else:
        lines.append("New nodes: none")
    if plan.existing:
        lines.append(f"Existing nodes taking pods ({len(plan.existing)}):")
        lines.extend(f"  {name}: {len(pods)} pods" for name, pods in sorted(plan.existing.items()))
    if plan.unschedulable:
        lines.append(f"Unschedulable pods ({len(plan.unschedulable)}):")
        lines.extend(f"  {u.pod}: {u.reason}" for u in plan.unschedulable)
    if requests:
        lines.append(f"BatchAddClusterNodes calls ({len(requests)}):")
        for request in requests:
            parts = ", ".join(f"{e.group} +{e.count}" for e in request.entries)
            lines.append(f"  {request.client_token}: {parts}")
    return "\n".join(lines)
