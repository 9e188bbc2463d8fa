"""Removing pods and nodes: evictions (which PodDisruptionBudgets may refuse) and plain deletes."""

from __future__ import annotations

import structlog

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import EvictionOutcome
from hpscaler.kube.api import ApiCalls
from hpscaler.kube.convert import JSON, KubeApiError, is_budget_refusal

log = structlog.get_logger("hpscaler.kube")


async def evict_pod(
    calls: ApiCalls, namespace: str, name: str, grace_seconds: int | None = None
) -> EvictionOutcome:
    """POST the policy/v1 Eviction: 201 evicted, 429 blocked by a PDB, 404 not found."""
    body: JSON = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    }
    if grace_seconds is not None:
        body["deleteOptions"] = {"gracePeriodSeconds": grace_seconds}
    operation = f"evict pod {namespace}/{name}"
    try:
        await calls.call(
            operation, calls.core.create_namespaced_pod_eviction, name, namespace, body, retry=False
        )
    except KubeApiError as exc:
        if exc.status == 404:
            return "not-found"
        if exc.status == 429 and is_budget_refusal(exc):
            log.info("kube_eviction_blocked", pod=f"{namespace}/{name}", message=str(exc))
            return "blocked"
        if exc.status == 500 and "more than one" in str(exc):
            raise BackendError(str(exc), retryable=False, code="MultiplePodDisruptionBudgets") from exc
        raise
    log.info("kube_pod_evicted", pod=f"{namespace}/{name}", grace_seconds=grace_seconds)
    return "evicted"


async def delete_pod(calls: ApiCalls, namespace: str, name: str, grace_seconds: int | None = None) -> bool:
    """DELETE the pod (no PDB check); False if it was already gone."""
    try:
        await calls.call(
            f"delete pod {namespace}/{name}",
            calls.core.delete_namespaced_pod,
            name,
            namespace,
            grace_period_seconds=grace_seconds,
        )
    except KubeApiError as exc:
        if exc.status == 404:
            return False
        raise
    log.info("kube_pod_deleted", pod=f"{namespace}/{name}", grace_seconds=grace_seconds)
    return True


async def delete_node(calls: ApiCalls, name: str) -> None:
    """DELETE the Node object; a missing node is fine."""
    try:
        await calls.call(f"delete node {name}", calls.core.delete_node, name)
    except KubeApiError as exc:
        if exc.status != 404:
            raise
        return
    log.info("kube_node_deleted", node=name)
