"""Which nodes disruption may consider, and which method judges each (Karpenter's `GetCandidates`).

A node is a candidate when it belongs to a NodePool, is Ready and is not being disrupted already.
It stays when its method holds it (consolidateAfter, consolidationPolicy) or when its pods must not
be disrupted: `karpenter.sh/do-not-disrupt` on the node or a pod (true, or a duration still running),
running jobs unless the NodePool allows moving them, pods no controller would recreate, and pods a
PodDisruptionBudget protects right now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hpscaler.backends.types import DisruptionBudgetStatus
from hpscaler.durations import DurationError, parse_duration
from hpscaler.model import ANNOTATION_DO_NOT_DISRUPT, Node, NodePool, Pod
from hpscaler.scheduling.disruption.types import Candidate, ConsolidationDecision, DisruptionMethod

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

Judged = tuple[DisruptionMethod, Candidate]


def protected_for(pod: Pod) -> float | None:
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
        seconds = protected_for(pod)
        if seconds is not None and now - pod.created < seconds:
            return f"pod {pod.key} has {ANNOTATION_DO_NOT_DISRUPT}={value}, not yet elapsed"
    if pod.owner_kind in JOB_KINDS and not pool.consolidate_running_jobs:
        return f"pod {pod.key} belongs to running {pod.owner_kind} {pod.owner_name}"
    if not pod.owner_kind:
        return f"pod {pod.key} has no controller to recreate it"
    for pdb in pdbs:
        # Budgets that allow no disruption are few: test that first, the selector last.
        if (
            pdb.disruptions_allowed <= 0
            and pdb.namespace == pod.namespace
            and pdb.selector.matches(pod.labels)
        ):
            return f"pod {pod.key} is protected by PodDisruptionBudget {pdb.namespace}/{pdb.name}"
    return None


def node_blocker(
    candidate: Candidate, now: float, pdbs: Sequence[DisruptionBudgetStatus], decision: ConsolidationDecision
) -> str | None:
    """Why the node or one of its pods forbids disruption now, or None. Notes in `decision` when a
    pod's do-not-disrupt duration runs out."""
    if candidate.node.annotations.get(ANNOTATION_DO_NOT_DISRUPT, "").lower() == "true":
        return f"node has {ANNOTATION_DO_NOT_DISRUPT}=true"
    for pod in candidate.movable:
        seconds = protected_for(pod)
        if seconds is not None and now < pod.created + seconds:
            decision.recheck(pod.created + seconds)
    return next(
        (b for b in (pod_blocker(p, candidate.pool, now, pdbs) for p in candidate.movable) if b), None
    )


def disruption_cost(candidate: Candidate) -> tuple[int, float, str]:
    """The order candidates are tried in: fewest pods, then least CPU requested, then by name."""
    node, movable = candidate.node, candidate.movable
    load = sum(p.requests.get("cpu", 0) for p in movable) / max(1, node.allocatable.get("cpu", 1))
    return len(movable), load, node.name


def get_candidates(
    nodes: Sequence[Node],
    pools: Mapping[str, NodePool],
    *,
    methods: Sequence[DisruptionMethod],
    disrupting: Mapping[str, str],
    pdbs: Sequence[DisruptionBudgetStatus],
    now: float,
    last_pod_change: Mapping[str, float],
    decision: ConsolidationDecision,
) -> list[Judged]:
    """The candidates some method may disrupt, each with its method: by method, in the order the
    methods are given (as Karpenter's controller tries them), then cheapest disruption first.

    Expired nodes come first so that no other candidate's pods are simulated onto a node that
    leaves in the same decision.

    `pools` maps node names to their NodePool. Every node considered but held gets its reason in
    `decision.kept`; every timer that could make it a candidate lowers `decision.recheck_at`.
    """
    found: list[tuple[tuple[int, int, float, str], DisruptionMethod, Candidate]] = []
    for node in nodes:
        pool = pools.get(node.name)
        if pool is None or node.name in disrupting or not node.ready:
            continue
        expire = pool.expire_after_seconds
        expired = expire is not None and now - node.created >= expire
        if expire is not None and not expired:
            decision.recheck(node.created + expire)
        candidate = Candidate(
            node,
            pool,
            tuple(p for p in node.pods if not p.is_daemonset),
            expired,
            last_pod_change.get(node.name, node.created),
        )
        rank, method = next(((i, m) for i, m in enumerate(methods) if m.claims(candidate)), (0, None))
        if method is None:
            continue
        hold = method.should_disrupt(candidate, now)
        if hold is not None:
            decision.kept[node.name] = hold.why
            decision.recheck(hold.until)
            continue
        blocker = node_blocker(candidate, now, pdbs, decision)
        if blocker is not None:
            decision.kept[node.name] = blocker
            continue
        found.append(((rank, *disruption_cost(candidate)), method, candidate))
    found.sort(key=lambda f: f[0])
    return [(method, candidate) for _, method, candidate in found]
