"""Launching: the plan's new nodes -> BatchAddClusterNodes calls, their answers recorded as launches
in flight; and cancelling launches given up.

The provisioner (`daemon.provisioner`) decides what to ask for; this module sends it and records
what HyperPod answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import anyio

from hpscaler.backends.errors import CapacityError, InvalidRequestError, NotFoundError
from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import AddResult, NodeStatus
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import ApiCalled, CancelRefused, CloudProviderError, NodeCreated
from hpscaler.model import Pod
from hpscaler.planning import group_additions
from hpscaler.provisioning.batching import AddRequest, batch_additions, client_token
from hpscaler.provisioning.launches import InFlight
from hpscaler.scheduling.types import Plan

Offering = tuple[str, str, str]
"""(group, zone, instance type) of a node asked for; zone and type "" unless sent in the request."""
MAX_TOKEN_SALTS = 4
MAX_CONCURRENT_ADDS = 8  # BatchAddClusterNodes calls in flight at once (each up to 50 nodes)
REFUSED = (CapacityError, NotFoundError, InvalidRequestError)  # errors that refuse a request's groups


async def request_plan(ctx: DaemonContext, plan: Plan, extra_pending: Sequence[Pod]) -> bool:
    """Send the plan's additions; True if some group was refused (the caller re-plans)."""
    live = ctx.cache.pods
    extra = {p.key: p for p in extra_pending}
    pod_ids: dict[str, str] = {}
    pools: dict[str, str] = {}
    group_pods: dict[Offering, list[str]] = {}
    # What each new node will be labelled with, in plan order per offering: registration puts it
    # there. Per offering, not per group: the calls for two zones of one group may go in any order.
    group_labels: dict[Offering, list[tuple[tuple[str, str], ...]]] = {}
    multi_zone = {g.name for g in ctx.config.instance_groups if len(g.zones) > 1}
    multi_type = {g.name for g in ctx.config.instance_groups if len(g.instance_types) > 1}
    # One pass over the plan: this runs between the window closing and the first call.
    for node in plan.new_nodes:
        pools[node.instance_group] = node.node_pool
        offering = (
            node.instance_group,
            node.zone if node.instance_group in multi_zone else "",
            node.instance_type if node.instance_group in multi_type else "",
        )
        group_pods.setdefault(offering, []).extend(node.pods)
        group_labels.setdefault(offering, []).append(tuple(sorted(node.labels.items())))
        for key in node.pods:
            current = live.get(key)
            pod_ids[key] = _decision_id(key, extra.get(key, current), current)
    for_pods = {group: tuple(keys) for group, keys in group_pods.items()}
    additions = group_additions(plan, ctx.config.instance_groups, pod_ids)
    refused = False
    now = ctx.clock.now()
    requests = list(batch_additions(ctx.config.cluster_name, additions))
    answers, errors = await _send_all(ctx, requests)
    for request, (result, rejected) in zip(requests, answers, strict=True):
        if result is None:
            if rejected:
                for entry in request.entries:
                    group = ctx.groups.get(entry.group)
                    zones = entry.zones or (group.zones if group else ())
                    zone = zones[0] if zones else ""
                    ctx.unavailable.mark(entry.group, zone, now, "refused by the API")
                refused = True
            continue
        asked = {
            e.group: (e.zones[0] if e.zones else "", e.instance_types[0] if e.instance_types else "")
            for e in request.entries  # a group appears once per call
        }
        refused |= _record(ctx, result, pools, for_pods, group_labels, now, asked)
    if errors:
        raise errors[0] if len(errors) == 1 else ExceptionGroup("BatchAddClusterNodes calls failed", errors)
    return refused


async def _send_all(
    ctx: DaemonContext, requests: list[AddRequest]
) -> tuple[list[tuple[AddResult | None, bool]], list[Exception]]:
    """Send the requests at once (at most MAX_CONCURRENT_ADDS in flight), as Karpenter creates a
    round's NodeClaims in parallel: a burst of 1,000 nodes is 20 calls, and one after the other the
    last would be answered 20 round trips after the first. Answers come back in request order.

    A call that fails unexpectedly does not cancel the others (their nodes would be added but never
    recorded): its error is returned, for the caller to raise once it has recorded the answers.
    """
    answers: list[tuple[AddResult | None, bool]] = [(None, False)] * len(requests)
    if len(requests) == 1:  # the common case: no task group
        answers[0] = await _send(ctx, requests[0])
        return answers, []
    limiter = anyio.CapacityLimiter(MAX_CONCURRENT_ADDS)
    errors: list[Exception] = []

    async def send(position: int, request: AddRequest) -> None:
        async with limiter:
            try:
                answers[position] = await _send(ctx, request)
            except Exception as exc:  # raised by the caller once the others are recorded
                errors.append(exc)

    async with anyio.create_task_group() as tg:
        for position, request in enumerate(requests):
            tg.start_soon(send, position, request, name=f"batch-add-{position}")
    return answers, errors


async def _send(ctx: DaemonContext, request: AddRequest) -> tuple[AddResult | None, bool]:
    """Send one request; returns (answer, whether the API rejected it outright).

    A replay that answers NotFound (or a node seen going away) means the token was used before for
    nodes cancelled or lost since: this is a new decision, so it is re-sent under a new token.
    """
    for attempt in range(MAX_TOKEN_SALTS):
        sent = request
        if attempt:
            token = client_token(
                request.cluster, request.entries, [request.client_token], salt=f"retry-{attempt}"
            )
            sent = replace(request, client_token=token)
        try:
            result = await ctx.backends.hyperpod.batch_add_nodes(sent)
        except BackendError as exc:
            ctx.record(CloudProviderError("BatchAddClusterNodes", str(exc)))
            ctx.log.warning("batch_add_failed", error=str(exc), code=exc.code, token=sent.client_token)
            # Refused for this request's groups (no capacity or quota, nothing found, or invalid):
            # the same request cannot succeed, another group may. Other errors wait for a round.
            return None, isinstance(exc, REFUSED)
        ctx.record(ApiCalled("BatchAddClusterNodes"))
        # A replay answers with the nodes' latest status: one deleted, going or gone since
        # (ShuttingDown, then Failure when its termination fails) is no capacity for a new decision.
        if not any(
            a.status in (NodeStatus.NOT_FOUND, NodeStatus.SHUTTING_DOWN) or a.logical_id in ctx.gone
            for a in result.successful
        ):
            return result, False
        ctx.log.info("client_token_replayed_cancelled_nodes", token=sent.client_token)
    return None, False


def _record(
    ctx: DaemonContext,
    result: AddResult,
    pools: dict[str, str],
    for_pods: dict[Offering, tuple[str, ...]],
    group_labels: dict[Offering, list[tuple[tuple[str, str], ...]]],
    now: float,
    asked: dict[str, tuple[str, str]] | None = None,
) -> bool:
    for added in result.successful:
        if added.logical_id not in ctx.inflight and added.status is not NodeStatus.NOT_FOUND:
            zone, instance_type = (asked or {}).get(added.group, ("", ""))
            offering = (added.group, zone, instance_type)
            planned = group_labels.get(offering)
            record = InFlight(
                added.logical_id,
                added.group,
                pools.get(added.group, ""),
                now,
                for_pods.get(offering, ()),
                labels=planned.pop(0) if planned else (),
                zone=zone,
                instance_type=instance_type,
            )
            ctx.track_launch(record)
            ctx.record(NodeCreated(added.group, added.logical_id))
    for group_name, count in _counts(result).items():
        ctx.log.info("nodes_requested", group=group_name, count=count)
    for failure in result.failed:
        group = ctx.groups.get(failure.group)
        # The zone asked for (a group appears once per call), else the group's first.
        zone = (asked or {}).get(failure.group, ("", ""))[0]
        zone = zone or (group.zones[0] if group and group.zones else "")
        ctx.unavailable.mark(failure.group, zone, now, f"{failure.error_code}: {failure.message}")
        ctx.log.warning("nodes_refused", group=failure.group, code=failure.error_code, count=failure.count)
    return bool(result.failed)


async def cancel_launches(ctx: DaemonContext, ids: list[str]) -> None:
    """Delete nodes in flight, and forget the ones HyperPod no longer has."""
    try:
        result = await ctx.backends.hyperpod.batch_delete_nodes(ids)
    except BackendError as exc:
        ctx.record(CloudProviderError("BatchDeleteClusterNodes", str(exc)))
        ctx.log.warning("cancel_launches_failed", nodes=ids, error=str(exc))
        return
    ctx.record(ApiCalled("BatchDeleteClusterNodes"))
    for logical_id in (
        *result.deleted,
        *(f.logical_id for f in result.failed if f.code == "NodeIdNotFound"),
    ):
        ctx.cancel_launch(logical_id)
    ctx.log.info("launches_cancelled", nodes=list(result.deleted))
    refused = [(f.logical_id, f.code, f.message) for f in result.failed if f.code != "NodeIdNotFound"]
    if refused:
        # Still in flight and still given up: the next round cancels them again.
        for logical_id, code, _ in refused:
            ctx.record(CancelRefused(logical_id, code))
        ctx.log.warning("cancel_launches_refused", nodes=refused, retry="next provisioning round")


def _decision_id(key: str, pod: Pod | None, live: Pod | None) -> str:
    """What a pod contributes to the ClientToken: its identity, and the node it must leave if any.

    A restarted daemon re-deciding for the same pods derives the same token (HyperPod replays the
    first answer instead of adding nodes twice). Room for pods that must leave their node (expiry,
    interruption, rebalance) is a new decision even for pods that were provisioned for before: with
    the pod's identity alone the token would replay the request that made their current node.
    """
    identity = (pod.uid or key) if pod is not None else key
    leaving = live.node_name if live is not None else ""
    return f"{identity}@{leaving}" if leaving else identity


def _counts(result: AddResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for added in result.successful:
        counts[added.group] = counts.get(added.group, 0) + 1
    return counts
