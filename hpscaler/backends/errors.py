"""What a backend call's failure means, so the daemon decides on the kind of error, never on its code.

`BackendError` is the base: `retryable` says whether sending the same call again later may help
(throttling, a 5xx, a lost connection). Its subclasses say what the caller should do instead, as
Karpenter's cloud provider errors do (sigs.k8s.io/karpenter pkg/cloudprovider/types.go):

- `CapacityError` (Karpenter's InsufficientCapacityError): there is no room for this request now,
  an offering out of capacity or an account quota reached. Another offering may have room: mark
  this one unavailable and fall back.
- `NotFoundError` (Karpenter's NodeClaimNotFoundError): the object the call names does not exist
  (any more). Forget it rather than retry.
- `InvalidRequestError`: the service refused the request itself (a validation error). The same
  request fails again; only a different one can succeed.

Backends map their own codes to these (`hpscaler.aws.retry.error_for` for AWS); `code` keeps the
service's code for logs.
"""

from __future__ import annotations


class BackendError(Exception):
    """A call to an outside system failed; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True, code: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


class CapacityError(BackendError):
    """No capacity for the request now: an offering ran out or an account quota is reached."""

    def __init__(self, message: str, *, code: str = "", retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable, code=code)


class NotFoundError(BackendError):
    """The object the call names (cluster, instance group, node, pod) does not exist."""

    def __init__(self, message: str, *, code: str = "", retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable, code=code)


class InvalidRequestError(BackendError):
    """The service refused the request as invalid; sending it again fails again."""

    def __init__(self, message: str, *, code: str = "", retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable, code=code)
