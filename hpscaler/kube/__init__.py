"""The real Kubernetes backend (kubernetes-asyncio) and the manifest parser.

Rules of this package:
- Adapters only: Kubernetes objects (manifests, API JSON) in, `hpscaler.model` out, and back. No
  scheduling or consolidation decisions are made here.
- `KubernetesBackend` is a facade over one module per verb, as kopf's `clients/` is: `watching`,
  `patching`, `deleting`, `fetching`, `events`, `leases`, custom resources in `resources` and
  `provreqs`, over `api` (timeouts, retries) and `auth` (kubeconfig or in-cluster configuration).
- A bad object in a watch is skipped with its reason (a pod also gets a FailedScaling Event), never
  the end of the watch; a bad manifest is a `ManifestError` naming the file, object, field and fix.
"""

from typing import TYPE_CHECKING

from hpscaler.lazy import lazy_exports

if TYPE_CHECKING:
    from hpscaler.kube.backend import KubernetesBackend, kubernetes_backend, kubernetes_backends
    from hpscaler.kube.objects import (
        MAX_PODS,
        ManifestError,
        daemonset_from_manifest,
        load_manifest_file,
        load_manifest_sources,
        load_manifests,
        node_from_manifest,
        pod_from_manifest,
    )
    from hpscaler.kube.snapshot import ClusterSnapshot, LiveReadError, read_cluster

__all__ = [
    "MAX_PODS",
    "ClusterSnapshot",
    "KubernetesBackend",
    "LiveReadError",
    "ManifestError",
    "daemonset_from_manifest",
    "kubernetes_backend",
    "kubernetes_backends",
    "load_manifest_file",
    "load_manifest_sources",
    "load_manifests",
    "node_from_manifest",
    "pod_from_manifest",
    "read_cluster",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "backend": ("KubernetesBackend", "kubernetes_backend", "kubernetes_backends"),
        "objects": (
            "MAX_PODS",
            "ManifestError",
            "daemonset_from_manifest",
            "load_manifest_file",
            "load_manifest_sources",
            "load_manifests",
            "node_from_manifest",
            "pod_from_manifest",
        ),
        "snapshot": ("ClusterSnapshot", "LiveReadError", "read_cluster"),
    },
)
