"""A read-only snapshot of the cluster for `hpscaler plan --live`: pending pods, nodes, DaemonSets.

Only `list` calls are made (pods, nodes and DaemonSets in all namespaces, paginated), so a
kubeconfig whose user may only `get`/`list` is enough. Objects hpscaler cannot read are skipped
with the reason, as the daemon's watch does, so one odd pod never hides the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from hpscaler.config.settings import Settings
from hpscaler.kube.backend import kubernetes_backend
from hpscaler.kube.convert import JSON, KubeApiError, call_json, metadata
from hpscaler.kube.objects import ManifestError, load_manifests, node_from_manifest, pod_from_manifest
from hpscaler.model import Node, Pod, is_provisionable

PAGE_SIZE = 500
TIMEOUT_SECONDS = 30.0
_DONE_PHASES = ("Succeeded", "Failed")


@dataclass(slots=True)
class ClusterSnapshot:
    """What the cluster holds now, in `plan`'s terms."""

    pending: list[Pod] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    daemonsets: list[Pod] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "kind name: why", for the user


async def _list(operation: str, method: Any) -> list[JSON]:
    items: list[JSON] = []
    token = ""
    while True:
        page = await call_json(
            operation, method, limit=PAGE_SIZE, _continue=token or None, seconds=TIMEOUT_SECONDS
        )
        items.extend(page.get("items") or [])
        token = str(metadata(page).get("continue") or "")
        if not token:
            return items


def _name(obj: Mapping[str, Any]) -> str:
    meta = metadata(obj)
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


def snapshot_from_objects(pods: list[JSON], nodes: list[JSON], daemonsets: list[JSON]) -> ClusterSnapshot:
    """Turn listed API objects into a snapshot; pure, so it is tested without a server."""
    snap = ClusterSnapshot()
    bound: list[Pod] = []
    for obj in pods:
        try:
            pod = pod_from_manifest(obj)
        except ManifestError as exc:
            snap.skipped.append(f"Pod {_name(obj)}: {exc}")
            continue
        if pod.terminating or pod.phase in _DONE_PHASES:
            continue
        if pod.node_name:
            bound.append(pod)
        elif is_provisionable(pod):  # as the daemon decides: not DaemonSet or static pods
            snap.pending.append(pod)
    for obj in nodes:
        try:
            snap.nodes.append(node_from_manifest(obj, bound))
        except ManifestError as exc:
            snap.skipped.append(f"Node {_name(obj)}: {exc}")
    for obj in daemonsets:
        try:
            _, _, found = load_manifests([{**obj, "kind": "DaemonSet"}], source="cluster")
        except ManifestError as exc:
            snap.skipped.append(f"DaemonSet {_name(obj)}: {exc}")
            continue
        snap.daemonsets.extend(found)
    return snap


async def read_cluster(settings: Settings) -> ClusterSnapshot:
    """List pods, nodes and DaemonSets through the kubeconfig (or in-cluster) credentials."""
    async with kubernetes_backend(settings) as backend:
        core = client.CoreV1Api(backend.api)
        apps = client.AppsV1Api(backend.api)
        try:
            pods = await _list("list pods", core.list_pod_for_all_namespaces)
            nodes = await _list("list nodes", core.list_node)
            daemonsets = await _list("list daemonsets", apps.list_daemon_set_for_all_namespaces)
        except KubeApiError as exc:
            raise LiveReadError(str(exc)) from exc
    return snapshot_from_objects(pods, nodes, daemonsets)


class LiveReadError(RuntimeError):
    """The cluster could not be read; the message says which call failed and why."""
