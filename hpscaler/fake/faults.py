"""Errors queued per operation name: how a test makes a fake backend's next calls fail."""

from __future__ import annotations

from hpscaler.backends.protocols import BackendError


class FaultInjector:
    """Errors queued per operation name, raised by the next calls of that operation."""

    def __init__(self) -> None:
        self._queued: dict[str, list[BackendError]] = {}

    def fail_next(self, operation: str, error: BackendError | None = None, times: int = 1) -> None:
        """Make the next `times` calls of `operation` raise `error` (a retryable error by default)."""
        error = error or BackendError(f"injected failure of {operation}", code="InjectedFailure")
        self._queued.setdefault(operation, []).extend([error] * times)

    def check(self, operation: str) -> None:
        """Raise the next queued error for `operation`, if any."""
        queued = self._queued.get(operation)
        if queued:
            raise queued.pop(0)
