"""Patching nodes and pods: taints, registration labels and annotations.

Taints are a list the API server replaces whole, so they are read, merged and written back under
the node's resourceVersion; a 409 (someone changed the node meanwhile) reads again, at most
`CONFLICT_ATTEMPTS` times. Labels and annotations are JSON merge patches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from hpscaler.backends.protocols import BackendError
from hpscaler.kube.api import ApiCalls
from hpscaler.kube.convert import JSON, MERGE_PATCH, KubeApiError, merge_taints, metadata
from hpscaler.model import Taint

log = structlog.get_logger("hpscaler.kube")

CONFLICT_ATTEMPTS = 5


async def taint_node(
    calls: ApiCalls, name: str, add: Sequence[Taint] = (), remove: Sequence[str] = ()
) -> None:
    """Read-modify-write of spec.taints with a resourceVersion precondition, retried on 409."""
    if await _patch_node(calls, name, "taint", tuple(add), tuple(remove)):
        log.info("kube_node_tainted", node=name, added=[t.key for t in add], removed=list(remove))


async def register_node(
    calls: ApiCalls, name: str, labels: Mapping[str, str], taints: Sequence[Taint]
) -> None:
    """Labels and taints in one merge patch (taints read-modify-write under the resourceVersion)."""
    if await _patch_node(calls, name, "register", tuple(taints), (), labels):
        log.info("kube_node_registered", node=name, labels=sorted(labels), taints=[t.key for t in taints])


async def _patch_node(
    calls: ApiCalls,
    name: str,
    verb: str,
    add: tuple[Taint, ...],
    remove: tuple[str, ...],
    labels: Mapping[str, str] | None = None,
) -> bool:
    """One patch of a node's taints (and labels), retried on 409; False when nothing changed."""
    for _ in range(CONFLICT_ATTEMPTS):
        node = await calls.call(f"read node {name}", calls.core.read_node, name)
        current = list((node.get("spec") or {}).get("taints") or [])
        if labels is not None:  # registration adds taints, it never replaces one already there
            have = {(t.get("key"), t.get("effect")) for t in current}
            add = tuple(t for t in add if (t.key, t.effect) not in have)
        wanted = merge_taints(current, add, remove)
        present = metadata(node).get("labels") or {}
        new_labels = {k: v for k, v in (labels or {}).items() if present.get(k) != v}
        if wanted == current and not new_labels:
            return False
        body: JSON = {"metadata": {"resourceVersion": metadata(node).get("resourceVersion")}}
        if new_labels:
            body["metadata"]["labels"] = new_labels
        if wanted != current:
            body["spec"] = {"taints": wanted or None}
        try:
            await calls.call(
                f"{verb} node {name}", calls.core.patch_node, name, body, _content_type=MERGE_PATCH
            )
        except KubeApiError as exc:
            if exc.status == 409:
                log.debug("kube_node_conflict", node=name, verb=verb)
                continue
            raise
        return True
    raise BackendError(f"{verb} node {name}: the node kept changing", code="Conflict")


async def annotate_node(calls: ApiCalls, name: str, annotations: Mapping[str, str | None]) -> None:
    """Merge-patch metadata.annotations (None removes)."""
    body = {"metadata": {"annotations": dict(annotations)}}
    await calls.call(f"annotate node {name}", calls.core.patch_node, name, body, _content_type=MERGE_PATCH)


async def annotate_pod(
    calls: ApiCalls, namespace: str, name: str, annotations: Mapping[str, str | None]
) -> None:
    """Merge-patch metadata.annotations (None removes)."""
    body = {"metadata": {"annotations": dict(annotations)}}
    await calls.call(
        f"annotate pod {namespace}/{name}",
        calls.core.patch_namespaced_pod,
        name,
        namespace,
        body,
        _content_type=MERGE_PATCH,
    )
