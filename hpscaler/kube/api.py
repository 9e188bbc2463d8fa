"""The typed kubernetes-asyncio APIs of one `ApiClient`, and the one way the backend calls them.

Every call has a timeout; idempotent calls are retried with jittered backoff (`convert.retrying`),
the others (`retry=False`: creates, evictions, optimistic updates) are made once. The verb modules
(`watching`, `patching`, `deleting`, `fetching`, `events`, `leases`) take an `ApiCalls`, as kopf's
`clients/` modules take its `api` helpers.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from hpscaler.kube.convert import JSON, call_json, retrying


class ApiCalls:
    """CoreV1, AppsV1, PolicyV1 and CoordinationV1 over one `ApiClient`, called with timeout and retry."""

    def __init__(
        self,
        api_client: Any,
        *,
        request_timeout_seconds: float = 30.0,
        retry_attempts: int = 4,
        retry_max_wait: float = 5.0,
        retry_base: float = 0.2,
    ) -> None:
        self.timeout = request_timeout_seconds
        self._retry = (retry_attempts, retry_max_wait, retry_base)
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)

    async def call(self, operation: str, method: Any, *args: Any, retry: bool = True, **kwargs: Any) -> JSON:
        """`method(*args, **kwargs)` as JSON; `operation` names it in errors and retry logs."""
        if not retry:
            return await call_json(operation, method, *args, seconds=self.timeout, **kwargs)
        attempts, max_wait, base = self._retry
        result: JSON = await retrying(attempts, max_wait, base=base)(
            call_json, operation, method, *args, seconds=self.timeout, **kwargs
        )
        return result
