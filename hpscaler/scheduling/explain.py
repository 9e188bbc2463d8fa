"""Why a pod cannot be placed: one sentence a user can act on, for plans and pod Events."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hpscaler.model import Pod, fits, tolerates_all
from hpscaler.quantity import format_resource
from hpscaler.scheduling.options import Option
from hpscaler.scheduling.requirements import first_conflict, pod_terms
from hpscaler.scheduling.types import SchedulingInput


def _incompatibility(pod: Pod, option: Option) -> str | None:
    taint = tolerates_all(pod.tolerations, option.taints)
    if taint is not None:
        return f"does not tolerate taint {taint.key}={taint.value}:{taint.effect}"
    conflicts = []
    for term in pod_terms(pod):
        conflict = first_conflict(term, option.node_sets)
        if conflict is None:
            return None
        key, wanted, offered = conflict
        conflicts.append(f"requires {key} {wanted.describe()} but the node would have {offered.describe()}")
    return conflicts[0]


def _too_big(pod: Pod, option: Option) -> str | None:
    request = {k: v for k, v in pod.requests.items() if v > 0}
    if fits({**request, "pods": 1}, option.allocatable):
        return None
    over = [
        f"{name} {format_resource(name, amount)} > {format_resource(name, option.allocatable.get(name, 0))}"
        for name, amount in sorted(request.items())
        if amount > option.allocatable.get(name, 0)
    ]
    return f"requests exceed {option.spec.name} allocatable ({', '.join(over) or 'pod slots'})"


def explain_unschedulable(
    pod: Pod,
    inp: SchedulingInput,
    options: Sequence[Option],
    compatible: Sequence[Option],
    within_limits: Callable[[Option], bool],
) -> str:
    """The most useful reason why `pod` got no node, given all options and the ones its class fits."""
    if not inp.node_pools:
        return "no NodePool is configured"
    if not options:
        return (
            "no instance group of any NodePool's HyperpodNodeClass can launch nodes "
            "(check the NodeClass groups)"
        )
    if not compatible:
        per_pool: dict[str, str] = {}
        for option in options:
            reason = _incompatibility(pod, option)
            if reason is not None:
                per_pool.setdefault(option.node_pool.name, reason)
        details = "; ".join(f"NodePool {pool}: {reason}" for pool, reason in sorted(per_pool.items()))
        return f"incompatible with every NodePool ({details})"
    big = [_too_big(pod, o) for o in compatible]
    if all(b is not None for b in big):
        return f"too large for every compatible instance type: {big[0]}"
    blocked = [o for o in compatible if (o.group.name, o.zone) in inp.unavailable]
    if len(blocked) == len(compatible):
        why = "; ".join(
            f"{o.group.name} in {o.zone}: {inp.unavailable[(o.group.name, o.zone)]}" for o in blocked[:5]
        )
        return f"all {len(compatible)} compatible instance group offerings are out of capacity ({why})"
    pools = sorted({o.node_pool.name for o in compatible if o not in blocked})
    if pools and not any(within_limits(o) for o in compatible if o not in blocked):
        return f"NodePool limits reached for {', '.join(pools)}"
    if pod.topology_spread or pod.pod_affinity or pod.pod_anti_affinity:
        return "topology spread or pod (anti-)affinity constraints cannot be satisfied by any node"
    return "no node with room could be planned (limits or capacity left no room)"
