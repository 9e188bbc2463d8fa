"""`Budgets`: each NodePool's disruption budget, counted once per decision and spent per removal."""

from __future__ import annotations

from hpscaler.model import Disruption, DisruptionBudget, NodePool
from hpscaler.scheduling.disruption import Budgets


def pool(name: str, *budgets: DisruptionBudget) -> NodePool:
    return NodePool(name, "c", disruption=Disruption(budgets=budgets))


def test_budgets_count_each_pools_nodes_and_those_already_going() -> None:
    a, b = pool("a", DisruptionBudget("50%")), pool("b", DisruptionBudget("1"))
    pools = {"a1": a, "a2": a, "a3": a, "a4": a, "b1": b, "b2": b}
    budgets = Budgets(pools, {"a1": "consolidation:Empty", "b1": "interrupted"})
    assert budgets.nodes == {"a": 4, "b": 2}
    assert budgets.disrupting == {"a": 1, "b": 1}
    assert budgets.allows(a, "Empty") and not budgets.allows(b, "Empty")
    budgets.spend(a)
    assert not budgets.allows(a, "Empty")  # 2 of 4 = 50%


def test_a_budget_for_other_reasons_does_not_hold_this_one() -> None:
    p = pool("p", DisruptionBudget("0", reasons=("Underutilized",)))
    budgets = Budgets({"n1": p, "n2": p}, {})
    assert budgets.allows(p, "Empty") and budgets.allows(p, "Expired")
    assert not budgets.allows(p, "Underutilized")
