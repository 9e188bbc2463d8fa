"""Go duration strings ("30s", "1h30m", "720h") as Kubernetes and Karpenter write them.

Karpenter's NodePool fields (`expireAfter`, `consolidateAfter`, `terminationGracePeriod`, budget
`duration`) are Go `time.Duration` values, and two of them also accept the word "Never". The
`karpenter.sh/do-not-disrupt` pod annotation may hold one too. Pure (no pydantic, no YAML): the
scheduling core parses with it as well as the config loader.
"""

from __future__ import annotations

import re

NEVER = "Never"

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 MICRO SIGN, as Go accepts
    "μs": 1e-6,  # U+03BC GREEK SMALL LETTER MU, as Go accepts
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# Longest units first so "ms" is not read as "m" followed by garbage.
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class DurationError(ValueError):
    """A string that is not a Go duration (or not "Never" where that is allowed)."""


def parse_duration(text: str) -> float:
    """Parse a non-negative Go duration into seconds: "1h30m" -> 5400.0, "0" -> 0.0."""
    if not isinstance(text, str):
        raise DurationError(f"{text!r} is not a duration string")
    value = text.strip()
    if value in ("0", "+0", "-0"):
        return 0.0
    if value.startswith("-"):
        raise DurationError(f"{text!r} is negative; durations here must be zero or more")
    value = value.removeprefix("+")
    if not value:
        raise DurationError("the duration is empty")
    total = 0.0
    position = 0
    for match in _PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(value):
        hint = " (a unit is required: s, m or h)" if value.replace(".", "").isdigit() else ""
        raise DurationError(f"{text!r} is not a Go duration{hint}")
    return total


def parse_optional_duration(text: str) -> float | None:
    """Like `parse_duration`, but "Never" gives None."""
    if isinstance(text, str) and text.strip() == NEVER:
        return None
    return parse_duration(text)


def format_duration(seconds: float | None) -> str:
    """Render seconds as a compact Go duration ("1h30m", "45s", "0s"); None gives "Never"."""
    if seconds is None:
        return NEVER
    if seconds < 0:
        raise DurationError(f"{seconds} is negative")
    whole = int(seconds)
    fraction = seconds - whole
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or fraction or not parts:
        parts.append(f"{secs + fraction:g}s")
    return "".join(parts)
