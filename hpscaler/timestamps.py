"""Timestamps as AWS sends them: ISO 8601 / RFC 3339 (EventBridge, IMDS) or RFC 1123 (AWS Health)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_timestamp(value: object) -> float | None:
    """Epoch seconds of an ISO 8601 or RFC 1123 date (UTC when it names no zone); None if neither."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
