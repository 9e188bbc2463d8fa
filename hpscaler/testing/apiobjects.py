"""What every part of the fake API server shares: the object type, metav1.Status errors, metadata helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hpscaler.testing.apiresources import ResourceType

Obj = dict[str, Any]
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A failed request, answered with a metav1.Status of `code`."""

    def __init__(self, code: int, message: str, reason: str = "", details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> Obj:
        """The metav1.Status body."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(rtype: ResourceType, name: str) -> ApiError:
    """404 in the API server's words."""
    plural = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
    return ApiError(404, f'{plural} "{name}" not found', details={"name": name, "kind": rtype.plural})


def timestamp(moment: float, *, micro: bool = False) -> str:
    """RFC 3339 in UTC, as metav1.Time (seconds) or metav1.MicroTime."""
    text = datetime.fromtimestamp(moment, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%f" if micro else "%Y-%m-%dT%H:%M:%S"
    )
    return text + "Z"


def meta(obj: Obj) -> Obj:
    """obj["metadata"], created if missing."""
    value = obj.setdefault("metadata", {})
    if not isinstance(value, dict):
        raise ApiError(400, "metadata must be an object")
    return value
