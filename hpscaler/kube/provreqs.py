"""ProvisioningRequest and PodTemplate objects: parsed from manifests and API objects, read from the
cluster, and their status conditions written back.

The fields follow `autoscaling.x-k8s.io/v1` (kubernetes/autoscaler, `cluster-autoscaler/apis/
provisioningrequest/autoscaling.x-k8s.io/v1/types.go`): `spec.provisioningClassName`,
`spec.podSets[].podTemplateRef.name` and `.count`, `spec.parameters`, and `status.conditions`
(`metav1.Condition`). A PodTemplate's `template` is a pod's metadata and spec. The status is written
through the status subresource with a JSON merge patch and a resourceVersion precondition, as for
NodePools (`kube.resources`); `lastTransitionTime` moves only when a condition's status changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from hpscaler.backends.protocols import BackendError
from hpscaler.kube.convert import JSON, MERGE_PATCH, KubeApiError, metadata, parse_time
from hpscaler.kube.objects import ManifestError, pod_from_manifest
from hpscaler.kube.resources import Condition, CustomResources, merge_conditions
from hpscaler.model import Pod
from hpscaler.provisioning.provreq import (
    BEST_EFFORT_ATOMIC,
    CHECK_CAPACITY,
    PodSet,
    ProvisioningRequest,
    RequestCondition,
    RequestSet,
)

log = structlog.get_logger("hpscaler.kube")

GROUP, VERSION, PLURAL = "autoscaling.x-k8s.io", "v1", "provisioningrequests"
_CONFLICT_ATTEMPTS = 5


def _where(obj: Mapping[str, Any], kind: str) -> str:
    meta = metadata(obj)
    return f"{kind} {meta.get('namespace') or 'default'}/{meta.get('name') or '?'}"


def request_from_object(obj: Mapping[str, Any], *, source: str = "") -> ProvisioningRequest:
    """A `ProvisioningRequest` from a manifest or API object; raises `ManifestError` naming the field."""
    where = _where(obj, "ProvisioningRequest")
    meta = metadata(obj)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(where, "metadata.name", "is required", "name the request", source=source)
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise ManifestError(
            where, "spec", "is required", "add spec.provisioningClassName and spec.podSets", source=source
        )
    class_name = spec.get("provisioningClassName")
    if not isinstance(class_name, str) or not class_name:
        fix = f"set it to {CHECK_CAPACITY} or {BEST_EFFORT_ATOMIC}"
        raise ManifestError(where, "spec.provisioningClassName", "is required", fix, source=source)
    raw_sets = spec.get("podSets")
    if not isinstance(raw_sets, list) or not raw_sets:
        raise ManifestError(
            where, "spec.podSets", "needs at least one pod set", "list the pod sets", source=source
        )
    pod_sets: list[PodSet] = []
    for i, item in enumerate(raw_sets):
        ref = item.get("podTemplateRef") if isinstance(item, Mapping) else None
        template = ref.get("name") if isinstance(ref, Mapping) else None
        if not isinstance(template, str) or not template:
            fix = "name the PodTemplate: podTemplateRef: {name: ...}"
            raise ManifestError(
                where, f"spec.podSets[{i}].podTemplateRef.name", "is required", fix, source=source
            )
        count = item.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            fix = "write a positive integer, e.g. count: 8"
            raise ManifestError(
                where, f"spec.podSets[{i}].count", f"{count!r} is not a positive integer", fix, source=source
            )
        pod_sets.append(PodSet(template, count))
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise ManifestError(where, "spec.parameters", "must be a mapping of strings", "", source=source)
    raw_status = obj.get("status")
    status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
    conditions = tuple(
        RequestCondition(
            str(c.get("type", "")),
            str(c.get("status", "")),
            str(c.get("reason", "")),
            str(c.get("message", "")),
            parse_time(c.get("lastTransitionTime")) or 0.0,
        )
        for c in (status.get("conditions") or [])
        if isinstance(c, Mapping)
    )
    return ProvisioningRequest(
        namespace=str(meta.get("namespace") or "default"),
        name=name,
        class_name=class_name,
        pod_sets=tuple(pod_sets),
        parameters={str(k): str(v) for k, v in parameters.items()},
        created=parse_time(meta.get("creationTimestamp")) or 0.0,
        uid=str(meta.get("uid") or ""),
        conditions=conditions,
    )


def template_from_object(obj: Mapping[str, Any], *, source: str = "") -> Pod:
    """The pod a PodTemplate describes (named like the template); raises `ManifestError`."""
    meta = metadata(obj)
    template = obj.get("template")
    if not isinstance(template, Mapping):
        where = _where(obj, "PodTemplate")
        raise ManifestError(
            where, "template", "is required", "add template.spec with the pods' containers", source=source
        )
    inner = metadata(template)
    pod = {
        "kind": "Pod",
        "metadata": {**inner, "name": meta.get("name"), "namespace": meta.get("namespace") or "default"},
        "spec": template.get("spec") or {},
    }
    return pod_from_manifest(pod, source=source)


def split_requests(docs: Sequence[Any], *, source: str = "") -> tuple[RequestSet, list[Any]]:
    """Take the ProvisioningRequest and PodTemplate documents out of parsed manifests; the rest stay
    for `load_manifests`. Raises `ManifestError` for a bad request or template, or a name used twice."""
    requests: list[ProvisioningRequest] = []
    templates: dict[str, Pod] = {}
    rest: list[Any] = []
    for doc in docs:
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if kind == "ProvisioningRequest":
            request = request_from_object(doc, source=source)
            if any(r.key == request.key for r in requests):
                raise ManifestError(
                    f"ProvisioningRequest {request.key}", "metadata.name", "appears twice", "", source=source
                )
            requests.append(request)
        elif kind == "PodTemplate":
            pod = template_from_object(doc, source=source)
            templates[pod.key] = pod
        else:
            rest.append(doc)
    return RequestSet(tuple(requests), templates), rest


class ProvisioningRequestClient:
    """Reads ProvisioningRequests and PodTemplates and writes request conditions (kubernetes-asyncio).

    Shares the custom-object client, clock, timeouts and retries of the backend's `CustomResources`.
    """

    def __init__(self, api_client: Any, resources: CustomResources) -> None:
        from kubernetes_asyncio import client

        self.resources = resources
        self.custom = resources.api
        self.core = client.CoreV1Api(api_client)
        self._missing_logged = False

    async def _pages(self, operation: str, method: Any, *args: Any) -> list[JSON]:
        items: list[JSON] = []
        token = ""
        while True:
            page = await self.resources.call(operation, method, *args, limit=500, _continue=token or None)
            items.extend(page.get("items") or [])
            token = str(metadata(page).get("continue") or "")
            if not token:
                return items

    async def read(self) -> RequestSet:
        """Every request and PodTemplate; an uninstalled CRD means no requests."""
        try:
            raw = await self._pages(
                "list provisioningrequests", self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL
            )
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            if not self._missing_logged:
                log.info("kube_provisioning_requests_not_installed")
                self._missing_logged = True
            return RequestSet()
        requests: list[ProvisioningRequest] = []
        invalid: dict[str, str] = {}
        for obj in raw:
            try:
                requests.append(request_from_object(obj))
            except ManifestError as exc:
                meta = metadata(obj)
                invalid[f"{meta.get('namespace')}/{meta.get('name')}"] = str(exc)
        templates: dict[str, Pod] = {}
        if requests:
            for obj in await self._pages("list podtemplates", self.core.list_pod_template_for_all_namespaces):
                obj = {**obj, "template": obj.get("template")}
                try:
                    pod = template_from_object(obj)
                except ManifestError as exc:
                    meta = metadata(obj)
                    invalid[f"PodTemplate {meta.get('namespace')}/{meta.get('name')}"] = str(exc)
                    continue
                templates[pod.key] = pod
        return RequestSet(tuple(requests), templates, invalid)

    async def write(self, namespace: str, name: str, conditions: Sequence[RequestCondition]) -> bool:
        """Merge `conditions` into the request's status; False if nothing changed or it is gone."""
        wanted = [
            Condition(c.type, "True" if c.status == "True" else "False", c.reason, c.message)
            for c in conditions
        ]
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                obj = await self.resources.call(
                    f"read provisioningrequest {namespace}/{name}",
                    self.custom.get_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                )
            except KubeApiError as exc:
                if exc.status == 404:
                    return False
                raise
            meta = metadata(obj)
            current = list((obj.get("status") or {}).get("conditions") or [])
            merged = merge_conditions(
                current, wanted, int(meta.get("generation") or 0), self.resources.clock.now()
            )
            if merged == current:
                return False
            body = {
                "metadata": {"resourceVersion": meta.get("resourceVersion")},
                "status": {"conditions": merged},
            }
            try:
                await self.resources.call(
                    f"update provisioningrequest {namespace}/{name} status",
                    self.custom.patch_namespaced_custom_object_status,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    body,
                    _content_type=MERGE_PATCH,
                )
            except KubeApiError as exc:
                if exc.status == 409:
                    continue
                if exc.status == 404:
                    return False
                raise
            return True
        raise BackendError(
            f"provisioningrequest {namespace}/{name} kept changing while its status was written",
            code="Conflict",
        )
