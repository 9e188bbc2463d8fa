"""Disruption: which nodes consolidation removes, shaped like Karpenter's `pkg/controllers/disruption`.

Rules of this package:
- Pure: plain data in, a `ConsolidationDecision` out; no I/O, no clock, no config loading (the
  do-not-disrupt duration is read with the pure `hpscaler.durations`).
- One module per disruption method (`expiration`, `emptiness`, `underutilized`), each a
  `DisruptionMethod`; candidate filtering (`candidates`) and budgets (`budgets`) stand apart.
- Fit checks place pods as the scheduler does: `fill` on the `Room` for the pods it can check, the
  scheduler itself for the rest; a decision is the same whichever of the two places a pod.
"""

from typing import TYPE_CHECKING

from hpscaler.lazy import lazy_exports

if TYPE_CHECKING:
    from hpscaler.scheduling.disruption.budgets import Budgets, allowed_disruptions
    from hpscaler.scheduling.disruption.candidates import JOB_KINDS, get_candidates, pod_blocker
    from hpscaler.scheduling.disruption.decide import METHODS, decide_consolidation
    from hpscaler.scheduling.disruption.emptiness import Emptiness
    from hpscaler.scheduling.disruption.expiration import Expiration
    from hpscaler.scheduling.disruption.types import (
        Candidate,
        ConsolidationDecision,
        DisruptionMethod,
        Hold,
        Removal,
    )
    from hpscaler.scheduling.disruption.underutilized import Underutilization

__all__ = [
    "JOB_KINDS",
    "METHODS",
    "Budgets",
    "Candidate",
    "ConsolidationDecision",
    "DisruptionMethod",
    "Emptiness",
    "Expiration",
    "Hold",
    "Removal",
    "Underutilization",
    "allowed_disruptions",
    "decide_consolidation",
    "get_candidates",
    "pod_blocker",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "budgets": ("Budgets", "allowed_disruptions"),
        "candidates": ("JOB_KINDS", "get_candidates", "pod_blocker"),
        "decide": ("METHODS", "decide_consolidation"),
        "emptiness": ("Emptiness",),
        "expiration": ("Expiration",),
        "types": ("Candidate", "ConsolidationDecision", "DisruptionMethod", "Hold", "Removal"),
        "underutilized": ("Underutilization",),
    },
)
