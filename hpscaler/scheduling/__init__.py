"""The pure core: requirement algebra, launch options and ranking, topology, bin-packing, consolidation.

Rules of this package:
- Pure: plain data in (`hpscaler.model`, `hpscaler.backends.types`, the catalogue), plain data out
  (a `Plan`, a consolidation decision). The daemon, `plan`, the simulator and the benchmarks call
  the same functions and get the same answers.
- No I/O, no clock, no config loading: no anyio, aiobotocore, kubernetes_asyncio, yaml, pydantic,
  time or `hpscaler.config` (the import-linter contract in pyproject.toml enforces it). Times come
  in as numbers; durations are parsed before they get here, or with the pure `hpscaler.durations`.
- Semantics are Kubernetes' and Karpenter's; a module that departs from them says where and why.
- Consolidation decisions are a package of their own (`disruption`), with their own exports.
"""

from typing import TYPE_CHECKING

from hpscaler.lazy import lazy_exports

if TYPE_CHECKING:
    from hpscaler.scheduling.gangs import gang_key
    from hpscaler.scheduling.membership import PoolMembership, planning_nodes
    from hpscaler.scheduling.options import template_labels
    from hpscaler.scheduling.scheduler import solve
    from hpscaler.scheduling.types import InFlightNode, Plan, PlannedNode, SchedulingInput, Unschedulable
    from hpscaler.scheduling.unavailable import UnavailableOfferings

__all__ = [
    "InFlightNode",
    "Plan",
    "PlannedNode",
    "PoolMembership",
    "SchedulingInput",
    "UnavailableOfferings",
    "Unschedulable",
    "gang_key",
    "planning_nodes",
    "solve",
    "template_labels",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "gangs": ("gang_key",),
        "membership": ("PoolMembership", "planning_nodes"),
        "options": ("template_labels",),
        "scheduler": ("solve",),
        "types": ("InFlightNode", "Plan", "PlannedNode", "SchedulingInput", "Unschedulable"),
        "unavailable": ("UnavailableOfferings",),
    },
)
