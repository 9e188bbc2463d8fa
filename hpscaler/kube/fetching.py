"""Listing what the backend reads on demand rather than watches: PodDisruptionBudgets."""

from __future__ import annotations

from collections.abc import Sequence

from hpscaler.backends.types import DisruptionBudgetStatus
from hpscaler.kube.api import ApiCalls
from hpscaler.kube.convert import label_selector, metadata


async def list_disruption_budgets(calls: ApiCalls, page_size: int = 500) -> Sequence[DisruptionBudgetStatus]:
    """Every policy/v1 PodDisruptionBudget and its disruptionsAllowed (0 while the status is stale)."""
    budgets: list[DisruptionBudgetStatus] = []
    token = ""
    while True:
        page = await calls.call(
            "list poddisruptionbudgets",
            calls.policy.list_pod_disruption_budget_for_all_namespaces,
            limit=page_size,
            _continue=token or None,
        )
        for pdb in page.get("items") or []:
            meta, status = metadata(pdb), pdb.get("status") or {}
            allowed = int(status.get("disruptionsAllowed") or 0)
            if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
                allowed = 0  # the disruption controller has not seen the current spec yet
            budgets.append(
                DisruptionBudgetStatus(
                    str(meta.get("namespace", "")),
                    str(meta.get("name", "")),
                    label_selector((pdb.get("spec") or {}).get("selector")),
                    allowed,
                )
            )
        token = str(metadata(page).get("continue") or "")
        if not token:
            return budgets
