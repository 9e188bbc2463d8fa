"""Draining a node: taint it, let pods checkpoint, evict them through the Eviction API.

Shared by the interruption handler (with a deadline: the instance is going away) and consolidation
(no deadline: hpscaler chose to remove the node, so PodDisruptionBudgets can make it give up).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from hpscaler.backends.protocols import BackendError
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.events import EvictionBlocked, PdbOverridden, PodEvicted
from hpscaler.model import Node, Pod, Taint

DISRUPTED_TAINT = Taint("karpenter.sh/disrupted", "NoSchedule")
INTERRUPTED_TAINT = Taint("hpscaler.io/interrupted", "NoSchedule")
DEADLINE_ANNOTATION = "hpscaler.io/interruption-deadline"
CHECKPOINT_ANNOTATION = "hpscaler.io/checkpoint"  # "true": the pod wants time to checkpoint
ACK_ANNOTATION = "hpscaler.io/checkpoint-acknowledged"
REASON_ANNOTATION = "hpscaler.io/disruption-reason"


@dataclass(frozen=True, slots=True)
class EvictionPlan:
    """When to evict one pod, with what grace period, and the last moment for a graceful stop."""

    evict_at: float
    grace_seconds: int
    last_moment: float | None = None  # with a deadline: evict_at can wait no longer than this


def plan_eviction(
    pod: Pod, now: float, deadline: float | None, margin: float, wait_for_ack: bool
) -> EvictionPlan:
    """Pure timing rule: checkpointing pods are evicted on acknowledgement or just in time, others now.

    "Just in time" leaves the pod its full terminationGracePeriodSeconds plus a safety margin before
    the deadline; when the notice is shorter than that, the grace period shrinks to what is left.
    """
    grace = pod.termination_grace_seconds
    if deadline is None:
        return EvictionPlan(now, grace)
    latest = deadline - grace - margin
    acknowledged = ACK_ANNOTATION in pod.annotations
    wants_checkpoint = wait_for_ack and pod.annotations.get(CHECKPOINT_ANNOTATION, "").lower() == "true"
    evict_at = latest if wants_checkpoint and not acknowledged else now
    evict_at = max(now, min(evict_at, latest))
    left = int(max(0.0, deadline - max(evict_at, now) - margin))
    return EvictionPlan(evict_at, min(grace, left), latest)


def rfc3339(epoch: float) -> str:
    """Epoch seconds as the RFC 3339 timestamp Kubernetes uses."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Drainer:
    """Evicts the pods of one node, honouring PDBs, grace periods and checkpoint acknowledgements."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    def pods_on(self, node_name: str) -> list[Pod]:
        """Pods that must leave the node (DaemonSet pods go with it)."""
        return [
            p
            for p in self.ctx.cache.pods.values()
            if p.node_name == node_name and not p.is_daemonset and p.phase not in ("Succeeded", "Failed")
        ]

    def pods_to_move(self, node_name: str) -> list[Pod]:
        """Pods of the node not yet terminating: the ones to evict and to find room for elsewhere.

        A terminating pod is leaving already (perhaps evicted by an earlier incarnation of the daemon,
        or by a call whose answer was lost); evicting it again could shorten its grace period, and its
        controller's replacement is what needs room, not the pod itself.
        """
        return [p for p in self.pods_on(node_name) if not p.terminating]

    async def announce(self, node: Node, deadline: float, reason: str) -> None:
        """Tell the node's pods when they will be evicted at the latest, so they can checkpoint."""
        for pod in self.pods_to_move(node.name):
            try:
                await self.ctx.backends.kubernetes.annotate_pod(
                    pod.namespace,
                    pod.name,
                    {DEADLINE_ANNOTATION: rfc3339(deadline), REASON_ANNOTATION: reason},
                )
            except BackendError as exc:
                self.ctx.log.warning("annotate_failed", pod=pod.key, error=str(exc))

    async def drain(self, node: Node, *, deadline: float | None, give_up_after: float | None = None) -> bool:
        """Evict every pod of `node`; True when none is left. PDB-blocked evictions are retried.

        With a deadline the drain ends there whatever happens (the instance disappears). Without one
        it gives up after `give_up_after` seconds of being blocked and returns False.
        """
        ctx = self.ctx
        settings = ctx.config.settings.interruption
        started = ctx.clock.now()
        evicted: set[str] = set()
        delay = 1.0
        while True:
            now = ctx.clock.now()
            pods = [p for p in self.pods_to_move(node.name) if p.key not in evicted]
            if not pods:
                return True
            if deadline is not None and now >= deadline:
                return False
            if deadline is None and give_up_after is not None and now - started > give_up_after:
                return False
            next_wake = now + delay
            blocked = False
            for pod in pods:
                plan = plan_eviction(
                    pod, now, deadline, settings.safety_margin_seconds, settings.checkpoint_acknowledgement
                )
                if plan.evict_at > now:
                    next_wake = min(next_wake, plan.evict_at)
                    continue
                try:
                    outcome = await ctx.backends.kubernetes.evict_pod(
                        pod.namespace, pod.name, plan.grace_seconds
                    )
                except BackendError as exc:
                    ctx.log.warning("evict_failed", pod=pod.key, error=str(exc))
                    blocked = True
                    continue
                if outcome == "blocked" and plan.last_moment is not None and now >= plan.last_moment:
                    # The instance goes away at the deadline whatever the budget says: a graceful
                    # stop now is better for the pod than being killed with its node.
                    await ctx.backends.kubernetes.delete_pod(pod.namespace, pod.name, plan.grace_seconds)
                    ctx.record(PdbOverridden(pod.key, node.name))
                    outcome = "evicted"
                if outcome == "blocked":
                    blocked = True
                    ctx.record(EvictionBlocked(pod.key, node.name))
                    if plan.last_moment is not None:
                        next_wake = min(next_wake, max(now + 0.05, plan.last_moment))
                else:
                    # The twin in `displaced` stays until the pod is gone: while it terminates, its
                    # room on the new nodes must not look idle to consolidation.
                    evicted.add(pod.key)
                    ctx.record(PodEvicted(pod.key, node.name, plan.grace_seconds))
            # Back off on PDB blocks like Karpenter's eviction queue (exponential, capped at 10 s).
            delay = min(10.0, delay * 2) if blocked else 1.0
            await anyio.sleep(max(0.05, min(next_wake, now + delay) - ctx.clock.now()))
