"""The pods of a scenario workload, built and validated as the manifests `plan` reads.

A workload either describes identical pods compactly (`cpu`, `memory`, `gpu`, `labels`,
`nodeSelector`, `tolerations`, `affinity`, `topologySpreadConstraints`, ...) or embeds a whole
Kubernetes object under `manifest:` (inline, or a path relative to the scenario file), e.g. a
PyTorchJob, a JobSet or a LeaderWorkerSet. Both go through `hpscaler.kube.objects`, so a scenario
accepts exactly what a pod or a controller would, and a bad field is reported with its path at load
time, not half-way through a run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpscaler.daemon.drain import CHECKPOINT_ANNOTATION
from hpscaler.fake.copies import copy_pod
from hpscaler.kube.objects import ManifestError, load_manifests, pod_from_manifest
from hpscaler.model import ANNOTATION_DO_NOT_DISRUPT, Gang, Pod
from hpscaler.yamlio import YamlInputError, read_documents

if TYPE_CHECKING:
    from hpscaler.simulate.scenario import Workload

GPU_RESOURCE = "nvidia.com/gpu"
NAMESPACE = "default"


class WorkloadError(ValueError):
    """A workload whose pods cannot be built; the message names the field."""


def _annotations(workload: Workload) -> dict[str, str]:
    annotations: dict[str, str] = {}
    if workload.checkpoint:
        annotations[CHECKPOINT_ANNOTATION] = "true"
    if workload.do_not_disrupt:
        annotations[ANNOTATION_DO_NOT_DISRUPT] = "true"
    return annotations


def pod_manifest(workload: Workload) -> dict[str, Any]:
    """The Pod manifest a compact workload stands for."""
    requests: dict[str, Any] = {"cpu": workload.cpu, "memory": workload.memory}
    limits: dict[str, Any] = {}
    if workload.gpu:
        # Extended resources are requested through limits (the API server copies them to requests).
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = workload.gpu
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "resources": {"requests": requests, "limits": limits}}],
        "terminationGracePeriodSeconds": workload.grace_period_seconds,
        "nodeSelector": dict(workload.node_selector),
        "tolerations": list(workload.tolerations),
        "affinity": dict(workload.affinity),
        "topologySpreadConstraints": list(workload.topology_spread_constraints),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": workload.name,
            "namespace": NAMESPACE,
            "labels": {"app": workload.name, **workload.labels},
            "annotations": _annotations(workload),
        },
        "spec": spec,
    }


def template_pod(workload: Workload, source: str = "") -> Pod:
    """The pod every replica of a compact workload copies; raises `WorkloadError`."""
    try:
        return pod_from_manifest(pod_manifest(workload), source=source)
    except ManifestError as exc:
        raise WorkloadError(str(exc)) from None


def _manifest_document(workload: Workload, base: Path) -> tuple[dict[str, Any], str]:
    manifest = workload.manifest
    if isinstance(manifest, str):
        path = (base / manifest).resolve()
        try:
            # libyaml's parser and the manifest bounds, as `plan` reads manifests.
            documents = read_documents(path.read_text(encoding="utf-8"), keep_nodes=False)
        except (OSError, UnicodeDecodeError, YamlInputError) as exc:
            raise WorkloadError(f"manifest: cannot read {path}: {exc}") from None
        loaded = documents[0].data if len(documents) == 1 else None
        if not isinstance(loaded, dict):
            raise WorkloadError(f"manifest: {path} does not hold one Kubernetes object")
        return loaded, str(path)
    assert manifest is not None
    return dict(manifest), "manifest"


def manifest_pods(workload: Workload, base: Path) -> list[Pod]:
    """The pods the embedded object's controller would create, with the workload's annotations."""
    document, source = _manifest_document(workload, base)
    try:
        pods, nodes, daemonsets = load_manifests([document], source=source)
    except ManifestError as exc:
        raise WorkloadError(str(exc)) from None
    if nodes or daemonsets or not pods:
        raise WorkloadError(f"manifest: {source} must be a workload that creates pods (found none)")
    extra = _annotations(workload)
    return [replace(p, annotations={**p.annotations, **extra}) for p in pods]


def submission(pods: list[Pod], round_index: int, repeated: bool) -> list[Pod]:
    """Fresh copies of an object's pods for one submission; a repeated object gets `-<round>` names."""
    if not repeated:
        return [copy_pod(p) for p in pods]
    suffix = f"-{round_index + 1}"
    fresh = []
    for pod in pods:
        copy = copy_pod(pod)
        gang = Gang(pod.gang.name + suffix, pod.gang.min_member) if pod.gang else None
        fresh.append(replace(copy, name=pod.name + suffix, owner_name=pod.owner_name + suffix, gang=gang))
    return fresh


def workload_pods(workload: Workload, base: Path) -> list[Pod]:
    """One submission's template pods: the embedded object's, or the compact workload's template."""
    if workload.manifest is not None:
        return manifest_pods(workload, base)
    return [template_pod(workload)]
