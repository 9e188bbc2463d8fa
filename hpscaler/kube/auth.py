"""Connecting to the API server: in-cluster config in a pod, else a kubeconfig (and its context).

EKS kubeconfigs get their token from `aws eks get-token` (an exec plugin), which lasts 15 minutes;
`refresh_token` keeps it fresh in the background.
"""

from __future__ import annotations

import os
from typing import Any

import structlog
from kubernetes_asyncio import client, config

from hpscaler.backends.protocols import BackendError
from hpscaler.config.settings import Kubernetes

log = structlog.get_logger("hpscaler.kube")


async def load_configuration(kube: Kubernetes) -> tuple[Any, Any]:
    """(client configuration, kubeconfig loader or None in a pod) for `spec.kubernetes`.

    Raises a non-retryable `BackendError` when no configuration can be loaded.
    """
    configuration = client.Configuration()
    loader: Any = None
    try:
        if not kube.kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
            load_incluster: Any = config.load_incluster_config
            load_incluster(client_configuration=configuration)
            source = "in-cluster"
        else:
            _require_kubeconfig(kube.kubeconfig)
            loader = await config.load_kube_config(
                config_file=kube.kubeconfig or None,
                context=kube.context or None,
                client_configuration=configuration,
                persist_config=False,
            )
            source = kube.kubeconfig or "~/.kube/config"
    except (config.ConfigException, OSError) as exc:
        raise BackendError(
            f"cannot load the Kubernetes configuration: {exc}", retryable=False, code="Config"
        ) from exc
    log.info("kube_config_loaded", source=source, host=configuration.host, context=kube.context or None)
    return configuration, loader


def needs_token_refresh(loader: Any) -> bool:
    """Whether the kubeconfig user gets its token from an exec plugin (which expires)."""
    return loader is not None and "exec" in getattr(loader, "_user", {})


async def refresh_token(loader: Any, configuration: Any) -> None:
    """Refresh an exec-plugin token every 5 minutes until cancelled; a failure is logged."""
    try:
        await config.refresh_token(loader, configuration, interval=300)
    except Exception:
        log.exception("kube_token_refresh_failed")


def _require_kubeconfig(configured: str) -> None:
    """Say plainly that no kubeconfig exists (kubernetes-asyncio only warns, then fails on a key)."""
    listed = configured or os.environ.get("KUBECONFIG") or "~/.kube/config"
    paths = [os.path.expanduser(p) for p in listed.split(os.pathsep) if p]
    if not any(os.path.exists(p) for p in paths):
        raise config.ConfigException(
            f"{', '.join(paths)} does not exist, and this is not a pod (KUBERNETES_SERVICE_HOST is unset); "
            "set spec.kubernetes.kubeconfig or KUBECONFIG to a kubeconfig file"
        )
