"""What hpscaler does with one interruption signal, whichever source delivered it (pure).

The daemon's interruption handler and `hpscaler interruption parse` share this decision, so what
the command prints is what the daemon does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from hpscaler.backends.types import HyperPodEventKind, InterruptionKind, InterruptionMessage, JunkMessage
from hpscaler.config.settings import Settings

Action = Literal["drain", "replace", "backoff", "none"]
GONE_STATES = frozenset({"stopping", "stopped", "shutting-down", "terminated"})
NOTICE_KINDS = frozenset(
    {
        InterruptionKind.SPOT_INTERRUPTION,
        InterruptionKind.SCHEDULED_CHANGE,
        InterruptionKind.CAPACITY_RESERVATION,
    }
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The action for one signal and why."""

    action: Action
    reason: str


def decide(message: InterruptionMessage | JunkMessage, *, rebalance_as_warning: bool = False) -> Decision:
    """The action a signal calls for, before looking at the cluster (is the node ours, handled yet)."""
    if isinstance(message, JunkMessage):
        return Decision("none", f"not an interruption signal hpscaler understands: {message.error}")
    kind = message.kind
    if kind in NOTICE_KINDS:
        until = "at its deadline" if message.deadline is not None else "in 2 minutes"
        return Decision(
            "drain", f"{kind.value}: taint, request replacement capacity, evict before the node goes {until}"
        )
    if kind is InterruptionKind.REBALANCE:
        if rebalance_as_warning:
            return Decision("replace", "rebalance recommendation: line up replacement capacity early")
        return Decision("none", "rebalance recommendation: spec.interruption.rebalanceAsWarning is off")
    if kind is InterruptionKind.STATE_CHANGE:
        if message.state in GONE_STATES:
            return Decision("replace", f"instance is {message.state}: replace its capacity now (no notice)")
        return Decision("none", f"instance is {message.state or 'in an unknown state'}: not an interruption")
    event = message.state
    if event == HyperPodEventKind.INSTANCE_LOST:
        return Decision("replace", f"HyperPod reports the instance lost: {message.detail}")
    if event == HyperPodEventKind.CAPACITY_FAILURE:
        return Decision("backoff", f"HyperPod reports a capacity failure: {message.detail}")
    if event == HyperPodEventKind.CLUSTER_CHANGED:
        return Decision("none", f"cluster changed, instance groups are read again: {message.detail}")
    return Decision("none", f"HyperPod event with no interruption meaning: {message.detail}")


def _rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signal_to_json(
    message: InterruptionMessage | JunkMessage, *, rebalance_as_warning: bool = False
) -> dict[str, Any]:
    """The `hpscaler interruption parse --output json` contract for one signal."""
    decision = decide(message, rebalance_as_warning=rebalance_as_warning)
    if isinstance(message, JunkMessage):
        return {
            "kind": "ignored",
            "instanceId": None,
            "deadline": None,
            "action": decision.action,
            "reason": decision.reason,
        }
    return {
        "kind": message.kind.value,
        "instanceId": message.instance_id or None,
        "deadline": _rfc3339(message.deadline),
        "action": decision.action,
        "reason": decision.reason,
    }


def missing_source_warning(settings: Settings) -> str | None:
    """The warning `check-config` and `run` give when no source can deliver a notice in advance.

    ListClusterEvents is always polled, but it reports an instance only once it is gone; the
    default taint keys are other tools' (HyperPod's key is not documented). Only the queue and the
    node agent give the two-minute notice.
    """
    if settings.backends.aws != "aws":
        return None  # a plugin or the fake backend brings its own interruption source
    if settings.aws.interruption_queue_url or settings.interruption.node_agent:
        return None
    return (
        "warning: no interruption notice source is configured: hpscaler learns of a Spot interruption "
        "only once the instance is gone (HyperPod's ListClusterEvents) or when the node gets a taint in "
        "spec.interruption.taintKeys. Deploy deploy/interruption-queue.yaml and set "
        "spec.aws.interruptionQueueUrl, or run the node agent (deploy/kubernetes/agent.yaml) and set "
        "spec.interruption.nodeAgent: true (see the README, 'Interruption signals')."
    )
