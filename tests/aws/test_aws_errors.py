"""AWS error codes map to what they mean to the daemon: capacity, not found, an invalid request."""

from __future__ import annotations

import botocore.session
import pytest

from hpscaler.aws.errors import CAPACITY_CODES, INVALID_REQUEST_CODES, NOT_FOUND_CODES, backend_error
from hpscaler.backends.errors import BackendError, CapacityError, InvalidRequestError, NotFoundError


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        *((c, CapacityError) for c in sorted(CAPACITY_CODES)),
        *((c, NotFoundError) for c in sorted(NOT_FOUND_CODES)),
        *((c, InvalidRequestError) for c in sorted(INVALID_REQUEST_CODES)),
    ],
)
def test_each_code_maps_to_its_kind_and_is_not_retried(code: str, kind: type[BackendError]) -> None:
    error = backend_error(f"it failed: {code}", code=code, retryable=True)
    assert type(error) is kind
    assert (error.code, error.retryable, str(error)) == (code, False, f"it failed: {code}")


@pytest.mark.parametrize(("code", "retryable"), [("ThrottlingException", True), ("AccessDenied", False)])
def test_other_codes_stay_plain_backend_errors(code: str, retryable: bool) -> None:
    error = backend_error("no", code=code, retryable=retryable)
    assert type(error) is BackendError and error.retryable is retryable


def test_the_sagemaker_errors_of_the_operations_hpscaler_calls_are_all_mapped() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    calls = (
        "BatchAddClusterNodes",
        "BatchDeleteClusterNodes",
        "DescribeCluster",
        "DescribeClusterNode",
        "DescribeClusterEvent",
        "ListClusterNodes",
        "ListClusterEvents",
    )
    declared = {shape.name for op in calls for shape in model.operation_model(op).error_shapes}
    assert declared == {"ResourceLimitExceeded", "ResourceNotFound"}
    assert declared <= CAPACITY_CODES | NOT_FOUND_CODES
    add = {shape.name for shape in model.operation_model("BatchAddClusterNodes").error_shapes}
    assert "ResourceLimitExceeded" in add and "ResourceLimitExceeded" in CAPACITY_CODES
