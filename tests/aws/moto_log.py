"""The request log of the moto server: every SageMaker, EC2 and SQS request that reaches it, with its
parameters as the client serialised them, so tests that cannot hook the client (a daemon started by
the CLI, a subprocess) still see and validate each call. A reset (`/moto-api/reset`) forgets them.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from moto.core.parse import PROTOCOL_PARSERS
from moto.core.request import determine_request_protocol
from moto.core.responses import BaseResponse
from moto.core.utils import get_service_model
from moto.moto_api._internal.models import MotoAPIBackend

RECORDED_SERVICES = frozenset({"sagemaker", "ec2", "sqs"})


@dataclass(frozen=True)
class AwsRequest:
    """One request as it reached the server."""

    service: str  # botocore's service name: "sagemaker", "ec2", "sqs"
    operation: str  # "BatchAddClusterNodes"
    params: dict[str, Any]  # JSON protocols: the body as sent; query protocols: parsed by the model
    time: float  # time.monotonic() on arrival (the server runs in the test's process)
    user_agent: str  # hpscaler's clients say "app/hpscaler"

    @property
    def from_hpscaler(self) -> bool:
        """Sent by hpscaler's own clients (not by a test arranging the world)."""
        return "app/hpscaler" in self.user_agent


_requests: list[AwsRequest] = []
_requests_lock = threading.Lock()


def requests(operation: str | None = None) -> list[AwsRequest]:
    """The requests received since the last reset, oldest first (of one operation, or all)."""
    with _requests_lock:
        return [r for r in _requests if operation is None or r.operation == operation]


def _request_params(response: BaseResponse, operation: str) -> dict[str, Any]:
    request = response.normalized_request
    model = get_service_model(response.boto3_service_name)
    protocol = determine_request_protocol(model, request.content_type)
    if protocol == "json":  # exactly what the client sent, unknown keys included
        body = response.body or "{}"
        params: dict[str, Any] = json.loads(body)
        return params
    parser = PROTOCOL_PARSERS[protocol](model.operation_model(operation), map_type=dict)
    parsed = parser.parse(
        {
            "method": request.method,
            "values": request.values,
            "headers": request.headers,
            "body": request.data,
            "url_path": request.path,
            "url_params": getattr(response, "uri_match", None),
        }
    )
    return dict(parsed)


_moto_call_action = BaseResponse.call_action


def _recorded_call_action(self: BaseResponse) -> Any:
    service = self.boto3_service_name
    if service in RECORDED_SERVICES:
        operation = ""
        try:
            operation = self._get_action()
            params = _request_params(self, operation)
        except Exception as exc:  # recorded all the same: the validating test then fails on it
            params = {"__unparsable__": repr(exc)}
        with _requests_lock:
            _requests.append(
                AwsRequest(
                    service,
                    operation,
                    params,
                    time.monotonic(),
                    str(self.normalized_request.headers.get("User-Agent", "")),
                )
            )
    return _moto_call_action(self)


_moto_reset = MotoAPIBackend.reset


def _reset(self: MotoAPIBackend) -> None:
    _moto_reset(self)
    with _requests_lock:
        _requests.clear()


def install_log() -> None:
    """Record every request, and forget them at a reset (called once, by `moto_ext.install`)."""
    BaseResponse.call_action = _recorded_call_action
    MotoAPIBackend.reset = _reset
