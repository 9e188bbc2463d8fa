"""structlog set-up: key-value events, JSON in production, readable on a terminal.

Libraries that log through the standard `logging` module (aiohttp, botocore, kubernetes-asyncio)
are rendered the same way, so every line of a service's output is one JSON object. They log at
WARNING and above unless the level is "debug".
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Collection, MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
Format = Literal["auto", "json", "console"]
FORMATS: tuple[str, ...] = get_args(Format)


_time_source: Callable[[], float] = time.time


def set_time_source(source: Callable[[], float] | None) -> None:
    """Stamp log events with `source()` (epoch seconds), e.g. the simulated clock; None: wall time."""
    global _time_source
    _time_source = source or time.time


def _timestamp(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["timestamp"] = datetime.fromtimestamp(_time_source(), UTC).isoformat().replace("+00:00", "Z")
    return event


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` installs on the root logger (found again and replaced on reconfigure)."""


def _choice(value: str, choices: Collection[str], what: str) -> str:
    name = value.strip().lower()
    if name not in choices:
        raise ValueError(f"unknown log {what} {value!r}; use one of {', '.join(choices)}")
    return name


def parse_level(value: str) -> str:
    """A level name from configuration or the environment; ValueError naming the choices."""
    return _choice(value, LEVELS, "level")


def parse_format(value: str) -> Format:
    """A format name from configuration or the environment; ValueError naming the choices."""
    return cast(Format, _choice(value, FORMATS, "format"))


def configure(level: str = "info", fmt: Format = "auto") -> None:
    """Route structlog events and stdlib logging to stderr at `level`; "auto": console on a terminal."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    threshold = LEVELS.get(level, logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = _Handler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                _timestamp,
                structlog.processors.format_exc_info,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold if threshold == logging.DEBUG else max(threshold, logging.WARNING))
