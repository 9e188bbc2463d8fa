"""Calling AWS: one retry policy (tenacity) for every request, and errors turned into `BackendError`
(the subclass the code stands for: `hpscaler.aws.errors`).

botocore's own retries are switched off in `session.py`, so the policy here is the only one: it
retries throttling, 5xx answers, timeouts and lost connections with jittered exponential backoff,
never a validation error or any other 4xx, and only for requests that are safe to send twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from botocore import xform_name
from botocore.exceptions import ClientError, HTTPClientError, ParamValidationError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from hpscaler.aws.errors import backend_error
from hpscaler.backends.protocols import BackendError
from hpscaler.config.settings import Settings

log = structlog.get_logger("hpscaler.aws")

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "EC2ThrottledException",
        "PriorRequestNotComplete",
    }
)
SERVER_ERROR_CODES = frozenset(
    {
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# botocore wraps most transport failures (EndpointConnectionError, ConnectTimeoutError are
# ConnectionErrors; ReadTimeoutError, ConnectionClosedError are HTTPClientErrors); aiohttp's own
# errors and bare timeouts can still escape from the streaming body of a response.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    BotoConnectionError,
    HTTPClientError,
    aiohttp.ClientError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry: `max_attempts` in all, random waits up to `max_wait`.

    The n-th wait is uniform in [0, min(max_wait, multiplier * 2**n)] ("full jitter"), so many
    daemons throttled at once do not come back in lockstep. Tests pass a tiny multiplier.
    """

    max_attempts: int = 5
    multiplier: float = 0.5
    max_wait: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy `spec.aws.maxAttempts` asks for, with the default backoff."""
        return cls(max_attempts=settings.aws.max_attempts)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a failed call ("" for an error that has none)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or "Unknown"
    if isinstance(exc, TRANSPORT_ERRORS):
        return type(exc).__name__
    return ""


def _status(exc: ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status if isinstance(status, int) else 0


def is_retryable(exc: BaseException) -> bool:
    """Throttling, server-side failures and transport errors; never a 4xx the caller caused."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = _status(exc)
        return code in THROTTLING_CODES or code in SERVER_ERROR_CODES or status >= 500 or status == 429
    return isinstance(exc, TRANSPORT_ERRORS)


def _log_retry(service: str, operation: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "aws_call_retrying",
            service=service,
            operation=operation,
            attempt=state.attempt_number,
            code=error_code(exc) if exc is not None else "",
            wait=round(state.upcoming_sleep, 3),
        )

    return before_sleep


async def call_aws(
    client: Any,
    operation: str,
    params: Mapping[str, Any],
    policy: RetryPolicy,
    *,
    idempotent: bool = True,
) -> dict[str, Any]:
    """Call `operation` (its API name, e.g. "DescribeCluster") with retries; the parsed response.

    `idempotent=False` sends the request once: a request that may have taken effect before the
    connection broke must not be repeated blindly. Raises `BackendError` with the AWS error code.
    """
    service = str(client.meta.service_model.service_name)
    method = getattr(client, xform_name(operation))
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts if idempotent else 1),
        wait=wait_random_exponential(multiplier=policy.multiplier, max=policy.max_wait),
        retry=retry_if_exception(is_retryable),
        before_sleep=_log_retry(service, operation),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                response: dict[str, Any] = await method(**params)
    except ClientError as exc:
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
        raise backend_error(
            f"{service}:{operation} failed: {code}: {message}", code=code, retryable=is_retryable(exc)
        ) from exc
    except TRANSPORT_ERRORS as exc:
        raise BackendError(
            f"{service}:{operation} failed: {exc}", retryable=True, code=type(exc).__name__
        ) from exc
    except ParamValidationError as exc:
        # A request the service model rejects is a bug here, never worth repeating.
        raise backend_error(
            f"{service}:{operation} request is invalid: {exc}", code="ParamValidationError", retryable=False
        ) from exc
    response.pop("ResponseMetadata", None)
    return response
