"""In-memory ProvisioningRequests and PodTemplates, as the API server holds them.

Modelled on the API's definition (kubernetes/autoscaler `apis/provisioningrequest/autoscaling.x-k8s.io/
v1/types.go` and its CRD): the spec is immutable (users delete and re-create a request to change it),
the status is written only through the status subresource, and conditions are `metav1.Condition`s
whose `lastTransitionTime` changes only when their status does (`meta.SetStatusCondition`). Kueue
creates the PodTemplates first and deletes them with the request (they are owned by it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from hpscaler.backends.protocols import BackendError
from hpscaler.clock import Clock
from hpscaler.model import Pod
from hpscaler.provisioning.provreq import ProvisioningRequest, RequestCondition, RequestSet, merge_conditions


class FakeProvisioningRequests:
    """The store: submit, delete and read requests; status writes are recorded in `writes`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.writes: list[tuple[str, tuple[RequestCondition, ...]]] = []
        self.fail_reads = 0  # the next N reads fail (a retryable API error)
        self._requests: dict[str, ProvisioningRequest] = {}
        self._templates: dict[str, Pod] = {}

    def submit(self, request: ProvisioningRequest, templates: Mapping[str, Pod] = {}) -> ProvisioningRequest:
        """Create the PodTemplates (by name, in the request's namespace), then the request."""
        for name, pod in templates.items():
            self._templates[f"{request.namespace}/{name}"] = pod
        created = dataclasses.replace(request, created=request.created or self.clock.now(), conditions=())
        self._requests[created.key] = created
        return created

    def delete(self, key: str) -> None:
        """Delete a request and the PodTemplates only it used (Kueue's owner references)."""
        request = self._requests.pop(key, None)
        if request is None:
            return
        used = {f"{r.namespace}/{s.template}" for r in self._requests.values() for s in r.pod_sets}
        for pod_set in request.pod_sets:
            template = f"{request.namespace}/{pod_set.template}"
            if template not in used:
                self._templates.pop(template, None)

    def get(self, key: str) -> ProvisioningRequest | None:
        """A request as it is now."""
        return self._requests.get(key)

    def requests(self) -> list[ProvisioningRequest]:
        """Every request, in creation order."""
        return sorted(self._requests.values(), key=lambda r: (r.created, r.key))

    async def provisioning_requests(self) -> RequestSet:
        """`ProvisioningRequestSource`: every request and the PodTemplates."""
        if self.fail_reads:
            self.fail_reads -= 1
            raise BackendError("injected: list provisioningrequests failed", retryable=True)
        return RequestSet(tuple(self.requests()), dict(self._templates))

    async def write_provisioning_request_status(
        self, namespace: str, name: str, conditions: Sequence[RequestCondition]
    ) -> bool:
        """`ProvisioningRequestSource`: merge the conditions through the status subresource."""
        key = f"{namespace}/{name}"
        request = self._requests.get(key)
        if request is None:
            return False
        merged = merge_conditions(request.conditions, conditions, self.clock.now())
        if merged == request.conditions:
            return False
        self._requests[key] = dataclasses.replace(request, conditions=merged)
        self.writes.append((key, tuple(conditions)))
        return True


class ProvisioningRequestsMixin:
    """Gives the fake Kubernetes cluster a ProvisioningRequest store (`ProvisioningRequestSource`)."""

    clock: Clock

    @property
    def provisioning(self) -> FakeProvisioningRequests:
        """The cluster's ProvisioningRequests and PodTemplates."""
        store: FakeProvisioningRequests | None = getattr(self, "_provisioning_store", None)
        if store is None:
            store = FakeProvisioningRequests(self.clock)
            self._provisioning_store = store
        return store

    async def provisioning_requests(self) -> RequestSet:
        """`ProvisioningRequestSource`: see `FakeProvisioningRequests`."""
        return await self.provisioning.provisioning_requests()

    async def write_provisioning_request_status(
        self, namespace: str, name: str, conditions: Sequence[RequestCondition]
    ) -> bool:
        """`ProvisioningRequestSource`: see `FakeProvisioningRequests`."""
        return await self.provisioning.write_provisioning_request_status(namespace, name, conditions)
