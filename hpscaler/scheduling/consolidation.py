"""Consolidation decisions: which nodes can go, and why the others stay. Pure: no I/O.

A node is removed when it is empty, or when every pod on it fits on the nodes that stay (checked
with the scheduler itself, with no new nodes allowed), or when it outlived its NodePool's
expireAfter. Nodes whose pods must not be disrupted stay: `karpenter.sh/do-not-disrupt` (true, or a
duration still running), running jobs unless the NodePool allows moving them, pods no controller
would recreate, and pods a PodDisruptionBudget protects right now. Disruption budgets cap how many
nodes of a pool are in disruption at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from hpscaler.backends.types import DisruptionBudgetStatus
from hpscaler.config.durations import DurationError, parse_duration
from hpscaler.model import ANNOTATION_DO_NOT_DISRUPT, Node, NodePool, Pod, as_pending, sum_resources
from hpscaler.scheduling.scheduler import solve
from hpscaler.scheduling.types import SchedulingInput

JOB_KINDS = frozenset(
    {
        "Job",
        "PyTorchJob",
        "TFJob",
        "MPIJob",
        "XGBoostJob",
        "PaddleJob",
        "JAXJob",
        "RayJob",
        "TrainJob",
        "HyperPodPyTorchJob",
        "JobSet",
        "Workflow",
    }
)


@dataclass(frozen=True, slots=True)
class Removal:
    """A node to remove and the reason (Karpenter's: Empty, Underutilized, Expired)."""

    node: str
    reason: str
    node_pool: str


@dataclass(slots=True)
class ConsolidationDecision:
    """Nodes to remove now, why every other candidate stays, and when time alone could change that."""

    remove: list[Removal] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    recheck_at: float = math.inf


def _protected_for(pod: Pod) -> float | None:
    """Seconds of `karpenter.sh/do-not-disrupt: <duration>` protection, if the pod has a duration."""
    value = pod.annotations.get(ANNOTATION_DO_NOT_DISRUPT, "")
    if not value or value.lower() == "true":
        return None
    try:
        return parse_duration(value)
    except DurationError:
        return None


def pod_blocker(pod: Pod, pool: NodePool, now: float, pdbs: Sequence[DisruptionBudgetStatus]) -> str | None:
    """Why moving this pod is not allowed right now, or None."""
    value = pod.annotations.get(ANNOTATION_DO_NOT_DISRUPT, "")
    if value:
        if value.lower() == "true":
            return f"pod {pod.key} has {ANNOTATION_DO_NOT_DISRUPT}=true"
        seconds = _protected_for(pod)
        if seconds is not None and now - pod.created < seconds:
            return f"pod {pod.key} has {ANNOTATION_DO_NOT_DISRUPT}={value}, not yet elapsed"
    if pod.owner_kind in JOB_KINDS and not pool.consolidate_running_jobs:
        return f"pod {pod.key} belongs to running {pod.owner_kind} {pod.owner_name}"
    if not pod.owner_kind:
        return f"pod {pod.key} has no controller to recreate it"
    for pdb in pdbs:
        if (
            pdb.namespace == pod.namespace
            and pdb.selector.matches(pod.labels)
            and pdb.disruptions_allowed <= 0
        ):
            return f"pod {pod.key} is protected by PodDisruptionBudget {pdb.namespace}/{pdb.name}"
    return None


def allowed_disruptions(pool: NodePool, reason: str, pool_nodes: int, disrupting: int) -> int:
    """How many more nodes of `pool` may be disrupted for `reason` now (the tightest budget wins)."""
    allowed = pool_nodes
    for budget in pool.disruption.budgets:
        if budget.reasons and reason not in budget.reasons:
            continue
        # Scheduled budgets are treated as always active: stricter than the schedule, never looser.
        text = budget.nodes.strip()
        cap = math.ceil(pool_nodes * float(text[:-1]) / 100) if text.endswith("%") else int(text)
        allowed = min(allowed, cap)
    return max(0, allowed - disrupting)


def decide_consolidation(
    *,
    nodes: Sequence[Node],
    pending: Sequence[Pod],
    pool_of: Callable[[Node], NodePool | None],
    base: SchedulingInput,
    pdbs: Sequence[DisruptionBudgetStatus],
    now: float,
    last_pod_change: Mapping[str, float],
    disrupting: Mapping[str, str],
) -> ConsolidationDecision:
    """Choose nodes to remove. `base` supplies the catalogue and groups for the fit simulation."""
    decision = ConsolidationDecision()
    if pending:
        decision.kept = {n.name: "pods are pending; consolidation waits" for n in nodes}
        return decision
    per_pool_nodes: dict[str, int] = {}
    per_pool_disrupting: dict[str, int] = {}
    pools: dict[str, NodePool] = {}
    for node in nodes:
        pool = pool_of(node)
        if pool is None:
            continue
        pools[node.name] = pool
        per_pool_nodes[pool.name] = per_pool_nodes.get(pool.name, 0) + 1
        if node.name in disrupting:
            per_pool_disrupting[pool.name] = per_pool_disrupting.get(pool.name, 0) + 1

    candidates: list[tuple[tuple[int, float, str], Node, str]] = []
    for node in nodes:
        pool = pools.get(node.name)
        if pool is None or node.name in disrupting or not node.ready:
            continue
        movable = [p for p in node.pods if not p.is_daemonset]
        expire = pool.expire_after_seconds
        expired = expire is not None and now - node.created >= expire
        if expire is not None and not expired:
            decision.recheck_at = min(decision.recheck_at, node.created + expire)
        after = pool.disruption.consolidate_after_seconds
        if not expired:
            if after is None:
                decision.kept[node.name] = "consolidateAfter is Never"
                continue
            settled_at = last_pod_change.get(node.name, node.created) + after
            if now < settled_at:
                decision.kept[node.name] = "pods changed less than consolidateAfter ago"
                decision.recheck_at = min(decision.recheck_at, settled_at)
                continue
        if node.annotations.get(ANNOTATION_DO_NOT_DISRUPT, "").lower() == "true":
            decision.kept[node.name] = f"node has {ANNOTATION_DO_NOT_DISRUPT}=true"
            continue
        for pod in movable:
            seconds = _protected_for(pod)
            if seconds is not None and now < pod.created + seconds:
                decision.recheck_at = min(decision.recheck_at, pod.created + seconds)
        blocker = next((b for b in (pod_blocker(p, pool, now, pdbs) for p in movable) if b), None)
        if blocker is not None:
            decision.kept[node.name] = blocker
            continue
        reason = "Expired" if expired else "Empty" if not movable else "Underutilized"
        if reason == "Underutilized" and pool.disruption.consolidation_policy == "WhenEmpty":
            decision.kept[node.name] = "consolidationPolicy is WhenEmpty"
            continue
        load = sum(p.requests.get("cpu", 0) for p in movable) / max(1, node.allocatable.get("cpu", 1))
        candidates.append(((len(movable), load, node.name), node, reason))
    candidates.sort(key=lambda c: c[0])

    staying = {n.name: n for n in nodes if n.name not in disrupting}
    spare = sum_resources(n.free() for n in staying.values() if n.ready and not n.unschedulable)
    for _, node, reason in candidates:
        pool = pools[node.name]
        used = per_pool_disrupting.get(pool.name, 0)
        if allowed_disruptions(pool, reason, per_pool_nodes[pool.name], used) <= 0:
            decision.kept[node.name] = f"disruption budget of NodePool {pool.name} is used up"
            continue
        movable = [p for p in node.pods if not p.is_daemonset]
        if movable and reason != "Expired":
            # Cheap necessary condition first: the other nodes' spare capacity, summed, must cover
            # the pods. On a busy cluster it rules out nearly every candidate without a simulation.
            need = sum_resources(p.requests for p in movable)
            own = node.free()
            if any(amount > spare.get(name, 0) - own.get(name, 0) for name, amount in need.items()):
                decision.kept[node.name] = "its pods do not fit on the other nodes"
                continue
            # Only nodes with room for the smallest of the pods can take any of them.
            smallest = {r: min(p.requests.get(r, 0) for p in movable) for r in ("cpu", "memory")}
            others = {
                name: n
                for name, n in staying.items()
                if name != node.name and all(n.free().get(r, 0) >= a for r, a in smallest.items())
            }
            placement = _simulate([as_pending(p) for p in movable], others, base)
            if placement is None:
                decision.kept[node.name] = "its pods do not fit on the other nodes"
                continue
            _move(movable, placement, staying)
            for name, amount in need.items():
                spare[name] = spare.get(name, 0) - amount
        if node.ready and not node.unschedulable:
            for name, amount in node.free().items():
                spare[name] = spare.get(name, 0) - amount
        staying.pop(node.name, None)
        per_pool_disrupting[pool.name] = used + 1
        decision.remove.append(Removal(node.name, reason, pool.name))
    return decision


def _simulate(
    pods: Sequence[Pod], staying: Mapping[str, Node], base: SchedulingInput
) -> dict[str, list[str]] | None:
    inp = SchedulingInput(
        pods=pods,
        nodes=list(staying.values()),
        node_pools=(),
        node_classes=(),
        groups=(),
        catalogue=base.catalogue,
    )
    plan = solve(inp)
    if plan.unschedulable or plan.new_nodes:
        return None
    return plan.existing


def _move(pods: Sequence[Pod], placement: Mapping[str, list[str]], staying: dict[str, Node]) -> None:
    """Put the pods where the simulation placed them, so later candidates see the fuller nodes."""
    by_key = {p.key: p for p in pods}
    for target, keys in placement.items():
        staying[target] = replace(staying[target], pods=[*staying[target].pods, *(by_key[k] for k in keys)])
