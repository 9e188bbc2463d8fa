"""Go duration strings for the config loader: the parser is `hpscaler.durations`, shared with the core."""

from hpscaler.durations import NEVER, DurationError, format_duration, parse_duration, parse_optional_duration

__all__ = ["NEVER", "DurationError", "format_duration", "parse_duration", "parse_optional_duration"]
