"""The boundary with kubernetes-asyncio: raw JSON calls, error translation, times and selectors.

kubernetes-asyncio is untyped, so everything it returns stays `Any` here and callers get plain
JSON (dicts) or `hpscaler.model` objects. Calls run with `_preload_content=False`: the body is
parsed as JSON without the client's model classes, which are slow and reject objects the API
server accepts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import anyio
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from hpscaler.backends.errors import NotFoundError
from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import Lease
from hpscaler.model import LabelSelector, Pod, Requirement, Taint

log = structlog.get_logger("hpscaler.kube")

T = TypeVar("T")
JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
COMPONENT = "hpscaler"  # Event source and reportingComponent
# A nil PodDisruptionBudget selector selects no pods; an empty LabelSelector would select them all.
SELECT_NOTHING = LabelSelector(match_expressions=(Requirement("hpscaler.io/select-nothing", "In", ()),))


class KubeApiError(BackendError):
    """An API call failed; `status` is the HTTP status (0 when no response arrived)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "", details: Any = None) -> None:
        retryable = status == 0 or status in (408, 429) or status >= 500
        super().__init__(
            message, retryable=retryable, code=reason or (str(status) if status else "Unavailable")
        )
        self.status = status
        self.reason = reason
        self.details = details


class KubeNotFoundError(KubeApiError, NotFoundError):
    """HTTP 404: the object does not exist (any more). A `NotFoundError`, as the fake raises."""


def api_error(operation: str, status: int, body: bytes) -> KubeApiError:
    """The error for a non-2xx answer, with the metav1.Status message and reason when there is one."""
    message, reason, details = body.decode("utf-8", "replace")[:500], "", None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        message = str(parsed.get("message") or message)
        reason = str(parsed.get("reason") or "")
        details = parsed.get("details")
    kind = KubeNotFoundError if status == 404 else KubeApiError
    return kind(f"{operation}: HTTP {status}: {message}", status=status, reason=reason, details=details)


async def call_json(
    operation: str, method: Callable[..., Awaitable[Any]], *args: Any, seconds: float, **kwargs: Any
) -> JSON:
    """Call a kubernetes-asyncio API method; the parsed JSON body, or `KubeApiError`."""
    try:
        with anyio.fail_after(seconds):
            response = await method(*args, _preload_content=False, **kwargs)
            async with response:
                status = int(response.status)
                data = await response.read()
    except TimeoutError as exc:
        raise KubeApiError(f"{operation}: no answer within {seconds:g}s", reason="Timeout") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise KubeApiError(f"{operation}: {type(exc).__name__}: {exc}", reason="ConnectionError") from exc
    if status >= 400:
        raise api_error(operation, status, data)
    if not data:
        return {}
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise KubeApiError(
            f"{operation}: the answer is not JSON", status=status, reason="BadResponse"
        ) from exc
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, BackendError) and exc.retryable


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.debug("kube_call_retry", attempt=state.attempt_number, error=str(error))


def retrying(attempts: int, max_wait: float, *, base: float = 0.2) -> AsyncRetrying:
    """Bounded retries of retryable errors, with full-jitter exponential backoff."""
    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=base, max=max_wait),
        retry=retry_if_exception(_is_retryable),
        before_sleep=_log_retry,
        reraise=True,
    )


def metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """obj["metadata"] as a mapping (empty when missing)."""
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


# --- times ------------------------------------------------------------------------------------------


def format_time(moment: float) -> str:
    """metav1.Time: RFC 3339 UTC, whole seconds."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(moment: float) -> str:
    """metav1.MicroTime: RFC 3339 UTC with microseconds (Leases)."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp, or None when missing or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# --- selectors and taints ---------------------------------------------------------------------------


def label_selector(spec: Any) -> LabelSelector:
    """A metav1.LabelSelector as the model's LabelSelector; nil selects nothing, {} everything."""
    if not isinstance(spec, Mapping):
        return SELECT_NOTHING
    labels = spec.get("matchLabels") or {}
    expressions = []
    for expr in spec.get("matchExpressions") or []:
        operator = expr.get("operator")
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return SELECT_NOTHING  # the API server rejects these; never match rather than guess
        values = tuple(str(v) for v in expr.get("values") or ())
        expressions.append(Requirement(str(expr.get("key", "")), operator, values))
    return LabelSelector(tuple(sorted((str(k), str(v)) for k, v in labels.items())), tuple(expressions))


def taint_to_api(taint: Taint) -> JSON:
    """A model Taint as core/v1 JSON."""
    body: JSON = {"key": taint.key, "effect": taint.effect}
    if taint.value:
        body["value"] = taint.value
    return body


def merge_taints(current: list[JSON], add: tuple[Taint, ...], remove: tuple[str, ...]) -> list[JSON]:
    """Drop taints whose key is in `remove` or whose key and effect an added taint replaces; append `add`."""
    replaced = {(t.key, t.effect) for t in add}
    kept = [
        t for t in current if t.get("key") not in remove and (t.get("key"), t.get("effect")) not in replaced
    ]
    return [*kept, *(taint_to_api(t) for t in add)]


# --- leases, events, watch streams --------------------------------------------------------------------


def lease_spec(holder: str, seconds: int, acquired: float, renewed: float, transitions: int) -> JSON:
    """A coordination.k8s.io/v1 LeaseSpec."""
    return {
        "holderIdentity": holder,
        "leaseDurationSeconds": seconds,
        "acquireTime": format_micro_time(acquired),
        "renewTime": format_micro_time(renewed),
        "leaseTransitions": transitions,
    }


def lease_from_spec(spec: Mapping[str, Any]) -> Lease:
    """The Lease a LeaseSpec describes (renewTime, else acquireTime)."""
    renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime")) or 0.0
    return Lease(
        str(spec.get("holderIdentity") or ""),
        renewed,
        float(spec.get("leaseDurationSeconds") or 0),
        int(spec.get("leaseTransitions") or 0),
    )


def is_budget_refusal(exc: KubeApiError) -> bool:
    """Whether a 429 from the Eviction API is a PodDisruptionBudget refusal (not API throttling)."""
    causes = exc.details.get("causes") if isinstance(exc.details, dict) else None
    if any(
        isinstance(c, dict) and "DisruptionBudget" in (c.get("reason"), c.get("type")) for c in causes or []
    ):
        return True
    return "disruption budget" in str(exc).lower()


def event_body(pod: Pod, name: str, reason: str, message: str, kind: str, now: str, instance: str) -> JSON:
    """A core/v1 Event about `pod`, counted once."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": pod.namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
    }


async def watch_lines(response: Any) -> AsyncGenerator[bytes, None]:
    """The non-empty lines of a streamed response body (watch events), of any length."""
    buffer = bytearray()
    async for chunk in response.content.iter_any():
        start = len(buffer)  # only the new bytes can hold the next newline
        buffer.extend(chunk)
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[:end]).strip()
            del buffer[: end + 1]
            start = 0
            if line:
                yield line
    if buffer.strip():
        yield bytes(buffer).strip()
