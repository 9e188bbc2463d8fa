"""ProvisioningRequests in `hpscaler plan`: which would be provisioned, and the pods that then get placed.

The daemon's decisions (`capacity.decide`) run round after round, with each best-effort-atomic
request's new nodes taken as launched (in flight) before the next request is looked at, as the
daemon does once BatchAddClusterNodes answered. A request's pods are placed only when it is
provisioned; the others say why not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hpscaler.model import Node, Pod
from hpscaler.provisioning.capacity import decide
from hpscaler.provisioning.provreq import (
    CAPACITY_IS_PROVISIONED,
    FAILED,
    PROVISIONED,
    ProvisioningRequest,
    RequestCondition,
    merge_conditions,
    queue_order,
    request_pods,
)
from hpscaler.scheduling.types import InFlightNode, Plan, SchedulingInput

_NEVER = float("inf")


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What `plan` reports for one request."""

    name: str  # namespace/name
    class_name: str
    provisioned: bool
    reason: str
    message: str
    nodes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The `provisioningRequests` entry of `plan --output json`."""
        return {
            "name": self.name,
            "class": self.class_name,
            "provisioned": self.provisioned,
            "reason": self.reason,
            "message": self.message,
            "nodes": list(self.nodes),
        }


def plan_requests(
    requests: Sequence[ProvisioningRequest],
    templates: Mapping[str, Pod],
    nodes: Sequence[Node],
    base: SchedulingInput,
) -> tuple[list[RequestOutcome], list[Pod]]:
    """Each request's outcome, and the pods of the provisioned ones (to be planned with the rest)."""
    current = {r.key: r for r in requests}
    inflight: list[InFlightNode] = []
    placed: dict[str, list[str]] = {}
    now = max((r.created for r in requests), default=0.0)
    for _ in range(len(requests) + 1):
        decision = decide(
            list(current.values()), templates, [], nodes, inflight, base, now, booking_seconds=_NEVER
        )
        for change in decision.changes:
            req = current[change.request]
            current[req.key] = dataclasses.replace(
                req, conditions=merge_conditions(req.conditions, change.conditions, now)
            )
        for key, names in decision.nodes.items():
            placed[key] = names
        attempt = decision.attempt
        if attempt is None:
            break
        for node in attempt.plan.new_nodes:
            inflight.append(
                InFlightNode(
                    node.name,
                    node.node_pool,
                    node.instance_group,
                    node.instance_type,
                    node.zone,
                    node.capacity_type,
                )
            )
        message = f"{len(attempt.plan.new_nodes)} new nodes for all {len(attempt.pods)} pods"
        done = RequestCondition(PROVISIONED, "True", CAPACITY_IS_PROVISIONED, message, now)
        req = attempt.request
        current[req.key] = dataclasses.replace(req, conditions=merge_conditions(req.conditions, (done,), now))
    outcomes: list[RequestOutcome] = []
    pods: list[Pod] = []
    for req in queue_order(current.values()):
        provisioned = req.booked
        shown = req.condition(FAILED) if req.is_true(FAILED) else req.condition(PROVISIONED)
        outcomes.append(
            RequestOutcome(
                req.key,
                req.class_name,
                provisioned,
                shown.reason if shown else "",
                shown.message if shown else "",
                tuple(placed.get(req.key, ())) if provisioned else (),
            )
        )
        if provisioned:
            pods.extend(request_pods(req, templates))
    for req in requests:
        if req.key not in {o.name for o in outcomes}:
            message = f"provisioningClassName {req.class_name!r} is not served by hpscaler"
            outcomes.append(RequestOutcome(req.key, req.class_name, False, "UnsupportedClass", message))
    return outcomes, pods


def with_final_nodes(outcomes: Sequence[RequestOutcome], plan: Plan) -> list[RequestOutcome]:
    """The provisioned requests' nodes as named in the final plan (new, existing or in-flight)."""
    where: dict[str, set[str]] = {}
    for name, keys in (
        *plan.existing.items(),
        *plan.inflight.items(),
        *((n.name, n.pods) for n in plan.new_nodes),
    ):
        for key in keys:
            where.setdefault(key, set()).add(name)
    result = []
    for outcome in outcomes:
        if not outcome.provisioned:
            result.append(outcome)
            continue
        namespace, _, name = outcome.name.partition("/")
        prefix = f"{namespace}/{name}-provreq-"
        names = sorted({n for key, found in where.items() if key.startswith(prefix) for n in found})
        result.append(dataclasses.replace(outcome, nodes=tuple(names) or outcome.nodes))
    return result


def requests_table(outcomes: Sequence[RequestOutcome]) -> str:
    """The requests' outcomes for `plan --output table`."""
    lines = [f"ProvisioningRequests ({len(outcomes)}):"]
    for o in outcomes:
        verdict = "provisioned" if o.provisioned else "not provisioned"
        where = f" on {', '.join(o.nodes)}" if o.nodes else ""
        lines.append(f"  {o.name} ({o.class_name}): {verdict}{where}: {o.reason}: {o.message}")
    return "\n".join(lines)
