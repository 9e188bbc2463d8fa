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

import anyio
import structlog
from kubernetes_asyncio import watch

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
WATCH_SECONDS = 300  # a watch request's server-side timeout; the stream then resumes
RELIST_SECONDS = 1.0  # first pause before listing again after a broken watch
MAX_RELIST_SECONDS = 60.0
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


def split_requests(
    docs: Sequence[tuple[Any, int]], *, source: str = ""
) -> tuple[RequestSet, list[tuple[Any, int]]]:
    """Take the ProvisioningRequest and PodTemplate documents (with the lines they start on) out of
    parsed manifests; the rest stay for `load_manifest_sources`. Raises `ManifestError` for a bad request or
    template, or a request named twice."""
    requests: list[ProvisioningRequest] = []
    templates: dict[str, Pod] = {}
    rest: list[tuple[Any, int]] = []
    for doc, line in docs:
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if kind == "ProvisioningRequest":
            request = request_from_object(doc, source=source)
            if any(r.key == request.key for r in requests):
                where = f"ProvisioningRequest {request.key} (line {line})"
                raise ManifestError(where, "metadata.name", "appears twice", "", source=source)
            requests.append(request)
        elif kind == "PodTemplate":
            pod = template_from_object(doc, source=source)
            templates[pod.key] = pod
        else:
            rest.append((doc, line))
    return RequestSet(tuple(requests), templates), rest


class _Watched:
    """The objects of one kind, kept current by a list and then a watch from its resourceVersion."""

    def __init__(self, name: str, method: Any, args: tuple[Any, ...]) -> None:
        self.name = name
        self.method = method
        self.args = args
        self.objects: dict[str, JSON] | None = None  # None until listed, and after the watch broke

    def apply(self, event: str, obj: JSON) -> None:
        """One watch event (or, as MODIFIED, the answer to our own write)."""
        if self.objects is None or event not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: only a resourceVersion, which the stream keeps
        key = _object_key(obj)
        if event == "DELETED":
            self.objects.pop(key, None)
        elif not _older(obj, self.objects.get(key)):
            self.objects[key] = obj


def _older(obj: JSON, than: JSON | None) -> bool:
    """Whether `obj` is an older version than `than` (resourceVersions compared when numeric, as
    etcd's are; otherwise the newest arrival wins)."""
    if than is None:
        return False
    mine, theirs = str(metadata(obj).get("resourceVersion")), str(metadata(than).get("resourceVersion"))
    return mine.isdigit() and theirs.isdigit() and int(mine) < int(theirs)


def _object_key(obj: JSON) -> str:
    meta = metadata(obj)
    return f"{meta.get('namespace')}/{meta.get('name')}"


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
        self.watching = False
        self._requests = _Watched(PLURAL, self.custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL))
        self._templates = _Watched("podtemplates", self.core.list_pod_template_for_all_namespaces, ())

    async def _pages(self, operation: str, method: Any, *args: Any) -> tuple[list[JSON], str]:
        """Every item (all pages) and the list's resourceVersion."""
        items: list[JSON] = []
        token = ""
        while True:
            page = await self.resources.call(operation, method, *args, limit=500, _continue=token or None)
            items.extend(page.get("items") or [])
            token = str(metadata(page).get("continue") or "")
            if not token:
                return items, str(metadata(page).get("resourceVersion") or "")

    @property
    def synced(self) -> bool:
        """Whether both kinds are listed and watched, so reads need no API call."""
        return self._requests.objects is not None and self._templates.objects is not None

    async def keep_watching(self) -> None:
        """List and watch ProvisioningRequests and PodTemplates until cancelled (hosted by the backend)."""
        self.watching = True
        try:
            async with anyio.create_task_group() as tg:
                for kind in (self._requests, self._templates):
                    tg.start_soon(self._keep, kind, name=f"kube:watch:{kind.name}")
        finally:
            self.watching = False
            self._requests.objects = self._templates.objects = None

    async def _keep(self, kind: _Watched) -> None:
        delay = RELIST_SECONDS
        while True:
            try:
                items, version = await self._pages(f"list {kind.name}", kind.method, *kind.args)
                kind.objects = {_object_key(o): o for o in items}
                while True:  # a stream the server ends (timeoutSeconds) resumes from where it was
                    stream = watch.Watch()
                    async for event in stream.stream(
                        kind.method,
                        *kind.args,
                        resource_version=version,
                        timeout_seconds=WATCH_SECONDS,
                        allow_watch_bookmarks=True,
                    ):
                        kind.apply(str(event.get("type")), event.get("raw_object") or {})
                        delay = RELIST_SECONDS
                    version = str(stream.resource_version or version)
            except Exception as exc:  # 410 Gone, a dropped stream, no CRD: list again after a pause
                kind.objects = None
                log.info("kube_provisioning_relist", kind=kind.name, error=str(exc)[:200], retry_in=delay)
                await anyio.sleep(delay)
                delay = min(MAX_RELIST_SECONDS, delay * 2)

    async def read(self) -> RequestSet:
        """Every request and PodTemplate, from the watch's cache once it is synced (listed otherwise);
        an uninstalled CRD means no requests."""
        if self._requests.objects is not None and self._templates.objects is not None:
            return self._convert(
                list(self._requests.objects.values()), list(self._templates.objects.values())
            )
        try:
            raw, _ = await self._pages(
                "list provisioningrequests", self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL
            )
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            if not self._missing_logged:
                log.info("kube_provisioning_requests_not_installed")
                self._missing_logged = True
            return RequestSet()
        templates: list[JSON] = []
        if raw:
            templates, _ = await self._pages(
                "list podtemplates", self.core.list_pod_template_for_all_namespaces
            )
        return self._convert(raw, templates)

    def _convert(self, raw: list[JSON], raw_templates: list[JSON]) -> RequestSet:
        requests: list[ProvisioningRequest] = []
        invalid: dict[str, str] = {}
        for obj in raw:
            try:
                requests.append(request_from_object(obj))
            except ManifestError as exc:
                meta = metadata(obj)
                invalid[f"{meta.get('namespace')}/{meta.get('name')}"] = str(exc)
        templates: dict[str, Pod] = {}
        for obj in raw_templates if requests else ():
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
                updated = await self.resources.call(
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
            # Our own write is seen at once, before the watch brings it back.
            self._requests.apply("MODIFIED", updated)
            return True
        raise BackendError(
            f"provisioningrequest {namespace}/{name} kept changing while its status was written",
            code="Conflict",
        )
