"""One consolidation decision: which nodes go now, and why every other candidate stays.

As Karpenter's disruption controller: the candidates (`get_candidates`) are each judged by their
method, and tried one after the other, cheapest disruption first, against their NodePool's budget for
the method's reason. The pods of a removed node are simulated onto the nodes that stay (`Room`): a
later candidate must find room for those too.

Karpenter's controller lets one method act per pass (emptiness, drift, multi-node, then single-node
consolidation). Here one decision covers every method, and their candidates are tried in one order,
cheapest disruption first, so that a poll shows the whole plan and the budgets are spent once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from hpscaler.backends.types import DisruptionBudgetStatus
from hpscaler.model import Node, NodePool, Pod
from hpscaler.scheduling.disruption.budgets import Budgets
from hpscaler.scheduling.disruption.candidates import get_candidates
from hpscaler.scheduling.disruption.emptiness import Emptiness
from hpscaler.scheduling.disruption.expiration import Expiration
from hpscaler.scheduling.disruption.room import Room
from hpscaler.scheduling.disruption.types import ConsolidationDecision, DisruptionMethod, Removal
from hpscaler.scheduling.disruption.underutilized import Underutilization
from hpscaler.scheduling.types import SchedulingInput

METHODS: tuple[DisruptionMethod, ...] = (Expiration(), Emptiness(), Underutilization())
"""The methods in the order they claim candidates: an expired node is Expired even when empty."""


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
    methods: Sequence[DisruptionMethod] = METHODS,
) -> ConsolidationDecision:
    """Choose nodes to remove. `base` supplies the catalogue for the fit simulation."""
    decision = ConsolidationDecision()
    if pending:
        decision.kept = {n.name: "pods are pending; consolidation waits" for n in nodes}
        return decision
    pools = {node.name: pool for node in nodes if (pool := pool_of(node)) is not None}
    budgets = Budgets(pools, disrupting)
    judged = get_candidates(
        nodes,
        pools,
        methods=methods,
        disrupting=disrupting,
        pdbs=pdbs,
        now=now,
        last_pod_change=last_pod_change,
        decision=decision,
    )
    room = Room([n for n in nodes if n.name not in disrupting], base)
    for method, candidate in judged:
        name, pool = candidate.node.name, candidate.pool
        if not budgets.allows(pool, method.reason):
            decision.kept[name] = f"disruption budget of NodePool {pool.name} is used up"
            continue
        why = method.simulate(candidate, room)
        if why is not None:
            decision.kept[name] = why
            continue
        budgets.spend(pool)
        decision.remove.append(Removal(name, method.reason, pool.name))
    return decision
