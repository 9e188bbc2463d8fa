"""deploy/kubernetes/rbac.yaml grants exactly what the Kubernetes backend uses.

The conftest records (apiGroup, resource, verb) of every request the backend made in the other
tests of this directory and runs this module last. A tour of every backend operation runs here
too, so the check also holds when this module runs alone.
"""

from __future__ import annotations

from contextlib import aclosing

import yaml
from kube_harness import (
    RBAC,
    USED,
    ManualClock,
    eventually,
    granted,
    hosted,
    make_backend,
    node_manifest,
    pod_manifest,
    rbac_documents,
    until_synced,
)
from kubernetes_asyncio.client import ApiClient

from hpscaler.config.settings import Kubernetes
from hpscaler.kube.backend import KubernetesBackend
from hpscaler.kube.resources import CustomResources
from hpscaler.model import Pod, Taint
from hpscaler.provisioning.provreq import RequestCondition
from hpscaler.testing import FakeApiServer
from hpscaler.testing.spy import public_coroutines, spy

LIFECYCLE = frozenset({"run"})  # hosts the watch streams; makes no request of its own

DEPLOYMENT = RBAC.with_name("deployment.yaml")
PODTEMPLATE = {
    "apiVersion": "v1",
    "kind": "PodTemplate",
    "metadata": {"name": "train", "namespace": "ml"},
    "template": {"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}},
}
PROVREQ = {
    "apiVersion": "autoscaling.x-k8s.io/v1",
    "kind": "ProvisioningRequest",
    "metadata": {"name": "train", "namespace": "ml"},
    "spec": {
        "provisioningClassName": "check-capacity.autoscaling.x-k8s.io",
        "podSets": [{"podTemplateRef": {"name": "train"}, "count": 1}],
    },
}


async def tour(server: FakeApiServer) -> set[str]:
    """Every backend operation once, against `server`; the names of the methods called."""
    called: set[str] = set()
    settings = Kubernetes()
    server.create(node_manifest("n1"))
    server.create(pod_manifest("p1", node="n1", phase="Running"))
    server.create(pod_manifest("p2", node="n1", phase="Running"))
    server.create(
        {
            "apiVersion": "karpenter.sagemaker.amazonaws.com/v1",
            "kind": "HyperpodNodeClass",
            "metadata": {"name": "gpu"},
            "spec": {"instanceGroups": ["g5"]},
        }
    )
    server.create(
        {
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": "gpu"},
            "spec": {
                "template": {
                    "spec": {
                        "nodeClassRef": {
                            "group": "karpenter.sagemaker.amazonaws.com",
                            "kind": "HyperpodNodeClass",
                            "name": "gpu",
                        }
                    }
                }
            },
        }
    )
    async with ApiClient(server.configuration()) as api:
        clock = ManualClock()
        async with hosted(make_backend(api, clock)) as kube:
            kube.settings = settings
            spy(kube, called, exclude=LIFECYCLE)
            spy(kube.custom_resources, called)
            async with aclosing(kube.watch()) as events:
                await until_synced(events)
                await eventually(lambda: server.active_watches == 3)
            await kube.taint_node("n1", add=[Taint("x", "NoSchedule")])
            await kube.register_node("n1", {"karpenter.sh/nodepool": "gpu"}, [Taint("y", "NoSchedule")])
            await kube.annotate_node("n1", {"a": "1"})
            await kube.annotate_pod("default", "p1", {"a": "1"})
            assert await kube.evict_pod("default", "p1") == "evicted"
            assert await kube.delete_pod("default", "p2", grace_seconds=1)
            await kube.delete_node("n1")
            await kube.list_disruption_budgets()
            pod = Pod("default", "p1", {}, uid="u1")
            await kube.record_event(pod, "Test", "once")
            await kube.record_event(pod, "Test", "once")
            await kube.acquire_lease(settings.lease_name, "me", 15)
            await kube.acquire_lease(settings.lease_name, "me", 15)
            await kube.node_config()  # reads through custom_resources
            await kube.publish_status({})
            server.create(PODTEMPLATE)
            server.create(PROVREQ)
            assert (await kube.provisioning_requests()).requests
            await eventually(  # listed, then watched
                lambda: (
                    bool(server.requests_for("watch", "provisioningrequests"))
                    and bool(server.requests_for("watch", "podtemplates"))
                )
            )
            condition = RequestCondition("Accepted", "True", "Accepted", "accepted")
            assert await kube.write_provisioning_request_status("ml", "train", [condition])
    return called


async def test_rbac_grants_exactly_what_the_backend_uses() -> None:
    async with FakeApiServer() as server:
        called = await tour(server)
        toured = [r for r in server.requests if r.verb]
    # The tour exercises every operation the backend has, so its requests are all it can make.
    assert called == public_coroutines(KubernetesBackend, exclude=LIFECYCLE) | public_coroutines(
        CustomResources
    )
    used = USED | {(r.group, r.resource, r.verb) for r in toured}
    rules = granted()
    assert used - rules.keys() == set(), "the backend uses permissions rbac.yaml does not grant"
    assert rules.keys() - used == set(), "rbac.yaml grants permissions the backend never uses"
    settings = Kubernetes()
    for request in toured:  # namespaced (Role) rules must cover the namespaces and names used
        rule = rules[(request.group, request.resource, request.verb)]
        if rule["namespace"] is not None:
            assert request.namespace == rule["namespace"] == settings.namespace
        if "resourceNames" in rule:
            assert request.name in rule["resourceNames"]


def test_bindings_give_the_roles_to_the_deployment_service_account() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in rbac_documents()}
    account = docs[("ServiceAccount", "hpscaler")]
    subject = {"kind": "ServiceAccount", "name": "hpscaler", "namespace": account["metadata"]["namespace"]}
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = next(d for (k, _), d in docs.items() if k == kind)
        assert binding["subjects"] == [subject]
        assert (role_kind, binding["roleRef"]["name"]) in docs
    deployment = next(
        d for d in yaml.safe_load_all(DEPLOYMENT.read_text()) if d and d["kind"] == "Deployment"
    )
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "hpscaler"
    assert deployment["metadata"]["namespace"] == account["metadata"]["namespace"]
