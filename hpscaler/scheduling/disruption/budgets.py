"""NodePool disruption budgets: how many nodes of a pool may be in disruption at once, per reason."""

from __future__ import annotations

import math
from collections.abc import Mapping

from hpscaler.model import NodePool


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


class Budgets:
    """The budgets of one decision: each pool's nodes, and those in disruption so far (Karpenter's
    `BuildDisruptionBudgetMapping`, counted once and spent as removals are chosen)."""

    def __init__(self, pools: Mapping[str, NodePool], disrupting: Mapping[str, str]) -> None:
        """`pools` maps every node of a NodePool to its pool; `disrupting` names the nodes already going."""
        self.nodes: dict[str, int] = {}
        self.disrupting: dict[str, int] = {}
        for name, pool in pools.items():
            self.nodes[pool.name] = self.nodes.get(pool.name, 0) + 1
            if name in disrupting:
                self.disrupting[pool.name] = self.disrupting.get(pool.name, 0) + 1

    def allows(self, pool: NodePool, reason: str) -> bool:
        """Whether one more node of `pool` may be disrupted for `reason`."""
        used = self.disrupting.get(pool.name, 0)
        return allowed_disruptions(pool, reason, self.nodes.get(pool.name, 0), used) > 0

    def spend(self, pool: NodePool) -> None:
        """Count one more node of `pool` in disruption."""
        self.disrupting[pool.name] = self.disrupting.get(pool.name, 0) + 1
