"""Why a pod cannot be placed: one sentence a user can act on, for plans and pod Events."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hpscaler.model import Pod, fits, tolerates_all
from hpscaler.quantity import format_resource
from hpscaler.scheduling.options import Option
from hpscaler.scheduling.requirements import first_conflict, pod_terms
from hpscaler.scheduling.types import SchedulingInput


def _incompatibility(pod: Pod, option: Option) -> str | None:
    taint = tolerates_all(pod.tolerations, option.taints, prefer=pod.avoids_prefer_no_schedule)
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
    # Say so when the instance itself would do: the DaemonSets' share is what leaves too little.
    overhead = " after DaemonSet overhead" if fits({**request, "pods": 1}, option.spec.allocatable()) else ""
    return f"requests exceed {option.spec.name} allocatable{overhead} ({', '.join(over) or 'pod slots'})"


def static_reason(
    pod: Pod, inp: SchedulingInput, options: Sequence[Option], compatible: Sequence[Option]
) -> str | None:
    """Why no new node could ever take `pod`, whatever else is placed (None if one could)."""
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
    return None


def _topology_constraints(pod: Pod) -> str:
    parts = [
        f"topology spread on {s.topology_key} (maxSkew {s.max_skew})"
        for s in pod.topology_spread
        if s.when_unsatisfiable == "DoNotSchedule"
    ]
    parts += [f"required pod affinity on {t.topology_key}" for t in pod.pod_affinity]
    parts += [f"required pod anti-affinity on {t.topology_key}" for t in pod.pod_anti_affinity]
    return ", ".join(parts)


def explain_unschedulable(
    pod: Pod,
    inp: SchedulingInput,
    options: Sequence[Option],
    compatible: Sequence[Option],
    within_limits: Callable[[Option], bool],
) -> str:
    """The most useful reason why `pod` got no node, given all options and the ones its class fits."""
    reason = static_reason(pod, inp, options, compatible)
    if reason is not None:
        return reason
    available = [o for o in compatible if (o.group.name, o.zone) not in inp.unavailable]
    if not available:
        why = "; ".join(
            f"{o.group.name} in {o.zone}: {inp.unavailable[(o.group.name, o.zone)]}" for o in compatible[:5]
        )
        return f"all {len(compatible)} compatible instance group offerings are out of capacity ({why})"
    if not any(within_limits(o) for o in available):
        pools = sorted({o.node_pool.name for o in available})
        return f"NodePool limits reached for {', '.join(pools)}"
    constraints = _topology_constraints(pod)
    if constraints:
        return f"no node satisfies the pod's {constraints}"
    return "no node with room could be planned (limits or capacity left no room)"
