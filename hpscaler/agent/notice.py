"""The notice the node agent writes on its Node, and how the daemon reads it back (pure).

One annotation, `hpscaler.io/interruption-notice`, holds a JSON object:
`{"kind": "spot-interruption"|"rebalance-recommendation"|"scheduled-change", "time": RFC 3339,
"deadline": RFC 3339 or null, "detail": "..."}`. The agent writes only a more urgent notice over a
less urgent one, so the annotation always holds the one that matters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from hpscaler.backends.types import InterruptionKind

NOTICE_ANNOTATION = "hpscaler.io/interruption-notice"
AGENT_KINDS = (
    InterruptionKind.SPOT_INTERRUPTION,
    InterruptionKind.SCHEDULED_CHANGE,
    InterruptionKind.REBALANCE,
)


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True, slots=True)
class Notice:
    """One IMDS notice about the node's own instance."""

    kind: InterruptionKind
    time: float
    deadline: float | None = None
    detail: str = ""

    def urgency(self) -> int:
        """Higher wins: a Spot notice over a scheduled change over a rebalance recommendation."""
        return len(AGENT_KINDS) - AGENT_KINDS.index(self.kind)

    def encode(self) -> str:
        """The annotation value."""
        return json.dumps(
            {
                "kind": self.kind.value,
                "time": _rfc3339(self.time),
                "deadline": _rfc3339(self.deadline) if self.deadline is not None else None,
                "detail": self.detail,
            },
            sort_keys=True,
        )


def decode_notice(value: str) -> Notice | str:
    """The notice in an annotation value, or why it cannot be read."""
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(data, dict):
        return "not a JSON object"
    try:
        kind = InterruptionKind(str(data.get("kind")))
    except ValueError:
        return f"unknown kind {data.get('kind')!r}"
    if kind not in AGENT_KINDS:
        return f"kind {kind.value} is not one the agent reports"
    time = _epoch(data.get("time"))
    if time is None:
        return f"time {data.get('time')!r} is not RFC 3339"
    deadline = _epoch(data.get("deadline"))
    if data.get("deadline") is not None and deadline is None:
        return f"deadline {data.get('deadline')!r} is not RFC 3339"
    return Notice(kind, time, deadline, str(data.get("detail", "")))
