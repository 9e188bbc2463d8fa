"""AWS error codes, mapped to what they mean to the daemon (`hpscaler.backends.errors`).

SageMaker: BatchAddClusterNodes raises `ResourceLimitExceeded` ("You have exceeded an SageMaker
resource limit", e.g. the account's quota of an instance type for cluster usage) and
`ResourceNotFound` (the cluster); every other cluster operation raises `ResourceNotFound`
(botocore's sagemaker service-2.json, the operations' `errors`). A request the service refuses as
invalid answers `ValidationException`, and a ClientToken reused with other parameters
`IdempotentParameterMismatch`.

EC2 capacity and not-found codes as karpenter-provider-aws classifies them (pkg/errors/errors.go:
`unfulfillableCapacityErrorCodes`, `notFoundErrorCodes`); SQS's queue-not-found code by its API
reference (`AWS.SimpleQueueService.NonExistentQueue`, `QueueDoesNotExist` in the JSON protocol).
"""

from __future__ import annotations

from hpscaler.backends.errors import BackendError, CapacityError, InvalidRequestError, NotFoundError

CAPACITY_CODES = frozenset(
    {
        "ResourceLimitExceeded",
        "InsufficientInstanceCapacity",
        "MaxSpotInstanceCountExceeded",
        "VcpuLimitExceeded",
        "UnfulfillableCapacity",
        "InsufficientFreeAddressesInSubnet",
        "ReservationCapacityExceeded",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "ResourceNotFound",
        "InvalidInstanceID.NotFound",
        "InvalidSubnetID.NotFound",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
    }
)
INVALID_REQUEST_CODES = frozenset(
    {
        "ValidationException",
        "ValidationError",
        "ParamValidationError",  # botocore's own check, before the request is sent
        "IdempotentParameterMismatch",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "MissingParameter",
    }
)


def backend_error(message: str, *, code: str, retryable: bool) -> BackendError:
    """The `BackendError` subclass an AWS error code stands for (the base class for any other)."""
    if code in CAPACITY_CODES:
        return CapacityError(message, code=code)
    if code in NOT_FOUND_CODES:
        return NotFoundError(message, code=code)
    if code in INVALID_REQUEST_CODES:
        return InvalidRequestError(message, code=code)
    return BackendError(message, retryable=retryable, code=code)
