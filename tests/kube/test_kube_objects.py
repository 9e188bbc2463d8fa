"""Tests for `hpscaler.kube.objects`: manifests -> model objects, with errors that point at the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpscaler.kube.objects import (
    ManifestError,
    load_manifest_file,
    load_manifests,
    node_from_manifest,
    pod_from_manifest,
)
from hpscaler.model import Gang, LabelSelector, Requirement, Taint, Toleration

ROOT = Path(__file__).resolve().parents[2]
GI = 2**30


def pod(
    name: str = "web-1",
    *,
    containers: list[dict[str, Any]] | None = None,
    spec: dict[str, Any] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    """A Pod manifest with one 1-CPU container unless told otherwise."""
    body: dict[str, Any] = {
        "containers": containers
        if containers is not None
        else [{"name": "app", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
    }
    body.update(spec or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **meta}, "spec": body}


def container(
    requests: dict[str, Any] | None = None, limits: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": "c", "resources": resources, **extra}


def node(name: str = "n1", **status: Any) -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}, **status},
    }


def error_of(obj: dict[str, Any]) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        pod_from_manifest(obj, source="pods.yaml")
    return info.value


# --- requests ---


def test_app_containers_are_summed() -> None:
    p = pod_from_manifest(
        pod(
            containers=[
                container({"cpu": "500m", "memory": "1Gi"}),
                container({"cpu": "250m", "nvidia.com/gpu": 1}),
            ]
        )
    )
    assert p.requests == {"cpu": 750, "memory": GI, "nvidia.com/gpu": 1}
    assert "pods" not in p.requests


def test_init_containers_take_the_max_not_the_sum() -> None:
    p = pod_from_manifest(
        pod(
            containers=[container({"cpu": "1", "memory": "1Gi"})],
            spec={"initContainers": [container({"cpu": "3"}), container({"cpu": "2", "memory": "4Gi"})]},
        )
    )
    # cpu: max(1, 3, 2) = 3; memory: max(1Gi, 4Gi)
    assert p.requests == {"cpu": 3000, "memory": 4 * GI}


def test_smaller_init_container_does_not_change_requests() -> None:
    p = pod_from_manifest(pod(spec={"initContainers": [container({"cpu": "100m"})]}))
    assert p.requests == {"cpu": 1000, "memory": GI}


def test_sidecar_init_containers_add_to_the_sum_and_to_later_init_containers() -> None:
    p = pod_from_manifest(
        pod(
            containers=[container({"cpu": "1"})],
            spec={
                "initContainers": [
                    container({"cpu": "500m"}, restartPolicy="Always"),
                    container({"cpu": "2"}),  # runs while the sidecar runs: 2.5
                    container({"cpu": "250m"}, restartPolicy="Always"),
                ]
            },
        )
    )
    # app 1 + sidecars 0.75 = 1.75; the plain init container peaks at 0.5 + 2 = 2.5
    assert p.requests == {"cpu": 2500}


def test_sidecars_alone_add_to_app_containers() -> None:
    p = pod_from_manifest(
        pod(
            containers=[container({"cpu": "1"})],
            spec={"initContainers": [container({"cpu": "1", "memory": "1Gi"}, restartPolicy="Always")]},
        )
    )
    assert p.requests == {"cpu": 2000, "memory": GI}


def test_init_container_before_a_sidecar_does_not_include_it() -> None:
    p = pod_from_manifest(
        pod(
            containers=[container({"cpu": "100m"})],
            spec={
                "initContainers": [container({"cpu": "2"}), container({"cpu": "1"}, restartPolicy="Always")]
            },
        )
    )
    # the first init container runs alone (2), app + sidecar is 1.1
    assert p.requests == {"cpu": 2000}


def test_overhead_is_added_after_the_max() -> None:
    p = pod_from_manifest(
        pod(
            containers=[container({"cpu": "1"})],
            spec={
                "initContainers": [container({"cpu": "2"})],
                "overhead": {"cpu": "250m", "memory": "120Mi"},
            },
        )
    )
    assert p.requests == {"cpu": 2250, "memory": 120 * 2**20}


def test_limits_without_requests_become_requests() -> None:
    p = pod_from_manifest(
        pod(
            containers=[
                container(limits={"cpu": "2", "nvidia.com/gpu": "1"}),
                container({"cpu": "1"}, {"cpu": "3"}),
            ]
        )
    )
    assert p.requests == {"cpu": 3000, "nvidia.com/gpu": 1}


def test_init_container_limits_become_requests() -> None:
    p = pod_from_manifest(pod(spec={"initContainers": [container(limits={"memory": "8Gi"})]}))
    assert p.requests == {"cpu": 1000, "memory": 8 * GI}


def test_pod_level_resources_replace_the_container_sum() -> None:
    p = pod_from_manifest(pod(spec={"resources": {"requests": {"cpu": "3"}}}))
    assert p.requests == {"cpu": 3000, "memory": GI}


def test_zero_requests_and_pods_resource_are_left_out() -> None:
    p = pod_from_manifest(pod(containers=[container({"cpu": "0", "memory": "1Gi", "pods": "1"})]))
    assert p.requests == {"memory": GI}


def test_numeric_quantities_are_accepted() -> None:
    p = pod_from_manifest(pod(containers=[container({"cpu": 0.5, "memory": 1024})]))
    assert p.requests == {"cpu": 500, "memory": 1024}


# --- metadata and simple fields ---


def test_defaults() -> None:
    p = pod_from_manifest({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c"}]}})
    assert (p.namespace, p.name, p.requests) == ("default", "x", {})
    assert (p.priority, p.termination_grace_seconds, p.phase, p.created) == (0, 30, "Pending", 0.0)
    assert (p.node_name, p.owner_kind, p.gang, p.uid) == ("", "", None, "")


def test_metadata_and_spec_fields() -> None:
    manifest = pod(
        namespace="ml",
        uid="u-1",
        labels={"app": "web"},
        annotations={"a": "b"},
        creationTimestamp="2024-05-01T12:00:00Z",
        ownerReferences=[
            {"kind": "Foo", "name": "first"},
            {"kind": "ReplicaSet", "name": "web-abc", "controller": True},
        ],
        spec={
            "nodeSelector": {"zone": "a"},
            "priority": 1000,
            "terminationGracePeriodSeconds": 5,
            "nodeName": "n1",
        },
    )
    manifest["status"] = {"phase": "Running"}
    p = pod_from_manifest(manifest)
    assert (p.namespace, p.uid, p.labels, p.annotations) == ("ml", "u-1", {"app": "web"}, {"a": "b"})
    assert p.key == "ml/web-1"
    assert p.created == 1714564800.0
    assert (p.owner_kind, p.owner_name) == ("ReplicaSet", "web-abc")
    assert p.node_selector == {"zone": "a"}
    assert (p.priority, p.termination_grace_seconds, p.node_name, p.phase) == (1000, 5, "n1", "Running")


def test_first_owner_when_none_is_controller() -> None:
    p = pod_from_manifest(pod(ownerReferences=[{"kind": "Job", "name": "j"}, {"kind": "X", "name": "y"}]))
    assert (p.owner_kind, p.owner_name) == ("Job", "j")


def test_nulls_from_api_json_mean_absent() -> None:
    manifest = pod(creationTimestamp=None, labels=None, spec={"tolerations": None, "affinity": None})
    p = pod_from_manifest(manifest)
    assert (p.created, p.labels, p.tolerations, p.node_affinity) == (0.0, {}, (), ())


def test_timestamp_with_offset() -> None:
    assert pod_from_manifest(pod(creationTimestamp="2024-05-01T14:00:00+02:00")).created == 1714564800.0


def test_tolerations() -> None:
    p = pod_from_manifest(
        pod(
            spec={
                "tolerations": [
                    {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"},
                    {"key": "spot", "operator": "Exists"},
                    {"operator": "Exists"},
                    {"key": "k", "value": "v"},
                ]
            }
        )
    )
    assert p.tolerations == (
        Toleration("gpu", "Equal", "yes", "NoSchedule"),
        Toleration("spot", "Exists"),
        Toleration("", "Exists"),
        Toleration("k", "Equal", "v"),
    )


# --- affinity, spread ---


def test_required_node_affinity_terms_and_match_fields() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "zone", "operator": "In", "values": ["a", "b"]},
                            {"key": "gpu", "operator": "Exists"},
                            {"key": "cores", "operator": "Gt", "values": ["8"]},
                        ]
                    },
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                    {},  # an empty term matches nothing, so it is dropped from the OR
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 1,
                    "preference": {"matchExpressions": [{"key": "x", "operator": "In", "values": ["y"]}]},
                }
            ],
        }
    }
    p = pod_from_manifest(pod(spec={"affinity": affinity}))
    assert p.node_affinity == (
        (
            Requirement("zone", "In", ("a", "b")),
            Requirement("gpu", "Exists"),
            Requirement("cores", "Gt", ("8",)),
        ),
        (Requirement("kubernetes.io/hostname", "In", ("n1",)),),
    )


def test_preferred_node_affinity_is_kept_with_its_weight() -> None:
    # Issue 12.2: Karpenter tries preferred terms as requirements, so the parser keeps them.
    prefs = [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "x", "operator": "In", "values": ["y"]}]}},
        {
            "weight": 50,
            "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]},
        },
        {"weight": 9, "preference": {}},  # matches every node: nothing to prefer
    ]
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": prefs}}
    p = pod_from_manifest(pod(spec={"affinity": affinity}))
    assert p.node_affinity == ()
    assert p.preferred_node_affinity == (
        (1, (Requirement("x", "In", ("y",)),)),
        (50, (Requirement("kubernetes.io/hostname", "In", ("n",)),)),
    )


def test_preferred_pod_affinity_and_anti_affinity_are_kept_with_their_weights() -> None:
    term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "db"}}}
    affinity = {
        "podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 80, "podAffinityTerm": term}]
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "podAffinityTerm": {**term, "namespaces": ["other"]}}
            ]
        },
    }
    p = pod_from_manifest(pod(namespace="ml", spec={"affinity": affinity}))
    assert p.pod_affinity == () and p.pod_anti_affinity == ()
    ((weight, aff),) = p.preferred_pod_affinity
    assert (weight, aff.topology_key, aff.namespaces) == (80, "kubernetes.io/hostname", ("ml",))
    assert aff.selector == LabelSelector((("app", "db"),))
    ((weight, anti),) = p.preferred_pod_anti_affinity
    assert (weight, anti.namespaces) == (5, ("other",))


@pytest.mark.parametrize("weight", [0, 101, "x"])
def test_preferred_term_weight_must_be_1_to_100(weight: Any) -> None:
    pref = {"weight": weight, "preference": {"matchExpressions": [{"key": "x", "operator": "Exists"}]}}
    error = error_of(
        pod(spec={"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [pref]}}})
    )
    assert (
        error.field == "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight"
    )


def test_spread_node_inclusion_policies() -> None:
    base = {"maxSkew": 1, "topologyKey": "k", "whenUnsatisfiable": "DoNotSchedule"}
    spreads = [base, {**base, "nodeAffinityPolicy": "Ignore", "nodeTaintsPolicy": "Honor"}]
    default, explicit = pod_from_manifest(pod(spec={"topologySpreadConstraints": spreads})).topology_spread
    assert (default.node_affinity_policy, default.node_taints_policy) == ("Honor", "Ignore")
    assert (explicit.node_affinity_policy, explicit.node_taints_policy) == ("Ignore", "Honor")
    bad = {**base, "nodeTaintsPolicy": "honor"}
    error = error_of(pod(spec={"topologySpreadConstraints": [bad]}))
    assert error.field == "spec.topologySpreadConstraints[0].nodeTaintsPolicy"


def test_topology_spread() -> None:
    spread = [
        {
            "maxSkew": 2,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["batch"]}],
            },
            "minDomains": 3,
            "matchLabelKeys": ["pod-template-hash", "missing"],
        },
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"},
    ]
    p = pod_from_manifest(
        pod(labels={"app": "web", "pod-template-hash": "abc"}, spec={"topologySpreadConstraints": spread})
    )
    zone, host = p.topology_spread
    assert (zone.topology_key, zone.max_skew, zone.when_unsatisfiable, zone.min_domains) == (
        "topology.kubernetes.io/zone",
        2,
        "DoNotSchedule",
        3,
    )
    assert zone.selector == LabelSelector(
        (("app", "web"),),
        (Requirement("tier", "NotIn", ("batch",)), Requirement("pod-template-hash", "In", ("abc",))),
    )
    assert zone.selector.matches(p.labels)
    assert (host.when_unsatisfiable, host.min_domains) == ("ScheduleAnyway", 1)
    # no labelSelector: the constraint selects no pod, not every pod
    assert not host.selector.matches({})
    assert not host.selector.matches(p.labels)


def test_pod_affinity_and_anti_affinity() -> None:
    affinity = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "cache"}},
                    "topologyKey": "topology.kubernetes.io/zone",
                    "namespaces": ["infra", "ml"],
                }
            ],
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "podAffinityTerm": {"topologyKey": "x", "labelSelector": {}}}
            ],
        },
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {
                        "matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]
                    },
                    "topologyKey": "kubernetes.io/hostname",
                    "mismatchLabelKeys": ["tenant"],
                }
            ]
        },
    }
    p = pod_from_manifest(
        pod(namespace="ml", labels={"app": "web", "tenant": "t1"}, spec={"affinity": affinity})
    )
    (term,) = p.pod_affinity
    assert term.topology_key == "topology.kubernetes.io/zone"
    assert term.selector == LabelSelector((("app", "cache"),))
    assert term.namespaces == ("infra", "ml")
    (anti,) = p.pod_anti_affinity
    assert anti.namespaces == ("ml",)  # defaults to the pod's own namespace
    assert anti.selector.match_expressions == (
        Requirement("app", "In", ("web",)),
        Requirement("tenant", "NotIn", ("t1",)),
    )


def test_affinity_term_without_selector_selects_nothing() -> None:
    term = {"topologyKey": "kubernetes.io/hostname"}
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    (anti,) = pod_from_manifest(pod(spec={"affinity": affinity})).pod_anti_affinity
    assert not anti.selector.matches({"app": "web"})


# --- gangs ---


@pytest.mark.parametrize(
    ("labels", "annotations", "expected"),
    [
        ({"hpscaler.io/gang": "train"}, {"hpscaler.io/gang-min-member": "8"}, Gang("ml/train", 8)),
        ({"hpscaler.io/gang": "train"}, {}, Gang("ml/train", 0)),
        ({"scheduling.x-k8s.io/pod-group": "pg"}, {}, Gang("ml/pg", 0)),
        (
            {"kueue.x-k8s.io/pod-group-name": "kg"},
            {"kueue.x-k8s.io/pod-group-total-count": "4"},
            Gang("ml/kg", 4),
        ),
        ({}, {"scheduling.k8s.io/group-name": "vg"}, Gang("ml/vg", 0)),
        # hpscaler's own label wins over the others
        (
            {"hpscaler.io/gang": "own", "scheduling.x-k8s.io/pod-group": "pg"},
            {"scheduling.k8s.io/group-name": "vg"},
            Gang("ml/own", 0),
        ),
        (
            {"scheduling.x-k8s.io/pod-group": "pg", "kueue.x-k8s.io/pod-group-name": "kg"},
            {},
            Gang("ml/pg", 0),
        ),
        ({"kueue.x-k8s.io/pod-group-name": "kg"}, {"scheduling.k8s.io/group-name": "vg"}, Gang("ml/kg", 0)),
        ({"app": "x"}, {}, None),
    ],
)
def test_gangs(labels: dict[str, str], annotations: dict[str, str], expected: Gang | None) -> None:
    assert pod_from_manifest(pod(namespace="ml", labels=labels, annotations=annotations)).gang == expected


@pytest.mark.parametrize(
    ("label", "annotation"),
    [
        ("hpscaler.io/gang", "hpscaler.io/gang-min-member"),
        ("kueue.x-k8s.io/pod-group-name", "kueue.x-k8s.io/pod-group-total-count"),
    ],
)
@pytest.mark.parametrize("value", ["eight", "-1", "2.5", ""])
def test_gang_bad_min_member(label: str, annotation: str, value: str) -> None:
    err = error_of(pod(labels={label: "g"}, annotations={annotation: value}))
    assert err.field == f"metadata.annotations[{annotation}]"
    assert "Pod default/web-1" in str(err)


# --- errors ---


def test_error_text_names_file_object_field_and_fix() -> None:
    err = error_of(pod(containers=[container({"cpu": "1x"})]))
    assert (err.obj, err.field, err.source) == (
        "Pod default/web-1",
        "spec.containers[0].resources.requests.cpu",
        "pods.yaml",
    )
    assert "'1x' is not a Kubernetes quantity" in err.message
    assert err.fix
    assert str(err).startswith(
        "pods.yaml: Pod default/web-1: spec.containers[0].resources.requests.cpu: '1x'"
    )
    assert f". Fix: {err.fix}" in str(err)
    assert isinstance(err, ValueError)


def test_manifest_error_without_source_or_fix() -> None:
    err = ManifestError("Pod a/b", "spec.x", "is wrong")
    assert str(err) == "Pod a/b: spec.x: is wrong"
    assert (
        str(ManifestError("Pod a/b", "spec.x", "is wrong.", "do y")) == "Pod a/b: spec.x: is wrong. Fix: do y"
    )


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        (
            pod(containers=[container({"cpu": "1"}), container({"memory": "lots"})]),
            "spec.containers[1].resources.requests.memory",
        ),
        (pod(containers=[container({"cpu": "-1"})]), "spec.containers[0].resources.requests.cpu"),
        (pod(containers=[container({"cpu": True})]), "spec.containers[0].resources.requests.cpu"),
        (
            pod(containers=[container(limits={"nvidia.com/gpu": "x"})]),
            "spec.containers[0].resources.limits[nvidia.com/gpu]",
        ),
        (
            pod(containers=[container({"cpu": "2"}, {"cpu": "1"})]),
            "spec.containers[0].resources.requests.cpu",
        ),
        (
            pod(spec={"initContainers": [container({"cpu": "1q"})]}),
            "spec.initContainers[0].resources.requests.cpu",
        ),
        (pod(spec={"overhead": {"memory": "1 Gi"}}), "spec.overhead.memory"),
        (pod(containers=[]), "spec.containers"),
        (pod(containers=["app"]), "spec.containers[0]"),  # type: ignore[list-item]
        (pod(spec={"containers": {"name": "c"}}), "spec.containers"),
        ({"kind": "Pod", "metadata": {"namespace": "x"}, "spec": {"containers": [{}]}}, "metadata.name"),
        ({"kind": "Pod", "spec": {"containers": [{}]}}, "metadata.name"),
        ({"kind": "Node", "metadata": {"name": "x"}}, "kind"),
        (pod(labels={"version": 1}), "metadata.labels[version]"),
        (pod(spec={"nodeSelector": {"gpu": True}}), "spec.nodeSelector[gpu]"),
        (pod(spec={"priority": "high"}), "spec.priority"),
        (pod(spec={"terminationGracePeriodSeconds": "30"}), "spec.terminationGracePeriodSeconds"),
        (pod(creationTimestamp="yesterday"), "metadata.creationTimestamp"),
        (pod(spec={"tolerations": [{"key": "a", "operator": "Equals"}]}), "spec.tolerations[0].operator"),
        (pod(spec={"tolerations": [{"key": "a", "effect": "NoExecut"}]}), "spec.tolerations[0].effect"),
        (
            pod(spec={"tolerations": [{"key": "a", "operator": "Exists", "value": "v"}]}),
            "spec.tolerations[0].value",
        ),
        (pod(spec={"tolerations": [{"value": "v"}]}), "spec.tolerations[0].operator"),
    ],
)
def test_field_errors(manifest: dict[str, Any], field: str) -> None:
    err = error_of(manifest)
    assert err.field == field
    assert field in str(err)
    assert str(err).startswith("pods.yaml: Pod ")


def _node_affinity(*expressions: dict[str, Any]) -> dict[str, Any]:
    terms = [{"matchExpressions": list(expressions)}]
    return pod(
        spec={
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
                }
            }
        }
    )


AFFINITY = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"


@pytest.mark.parametrize(
    ("expression", "suffix"),
    [
        ({"key": "a", "operator": "Is", "values": ["b"]}, "operator"),
        ({"key": "a", "operator": "In"}, "values"),
        ({"key": "a", "operator": "NotIn", "values": []}, "values"),
        ({"key": "a", "operator": "Exists", "values": ["b"]}, "values"),
        ({"key": "a", "operator": "DoesNotExist", "values": ["b"]}, "values"),
        ({"key": "a", "operator": "Gt", "values": ["1", "2"]}, "values"),
        ({"key": "a", "operator": "Lt", "values": ["ten"]}, "values"),
        ({"key": "a", "operator": "Gt"}, "values"),
        ({"operator": "Exists"}, "key"),
        ({"key": "a", "operator": "In", "values": [3]}, "values[0]"),
    ],
)
def test_node_affinity_errors(expression: dict[str, Any], suffix: str) -> None:
    err = error_of(_node_affinity({"key": "ok", "operator": "Exists"}, expression))
    assert err.field == f"{AFFINITY}[0].matchExpressions[1].{suffix}"
    assert "Pod default/web-1" in str(err)


def test_node_affinity_without_usable_terms_is_an_error() -> None:
    required: dict[str, Any] = {"nodeSelectorTerms": [{}]}
    err = error_of(
        pod(spec={"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}})
    )
    assert err.field == AFFINITY


def test_match_fields_only_metadata_name() -> None:
    term = {"matchFields": [{"key": "spec.providerID", "operator": "In", "values": ["x"]}]}
    required = {"nodeSelectorTerms": [term]}
    err = error_of(
        pod(spec={"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}})
    )
    assert err.field == f"{AFFINITY}[0].matchFields[0].key"


SPREAD = {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"maxSkew": 0}, "maxSkew"),
        ({"maxSkew": None}, "maxSkew"),
        ({"maxSkew": "1"}, "maxSkew"),
        ({"whenUnsatisfiable": "Never"}, "whenUnsatisfiable"),
        ({"topologyKey": ""}, "topologyKey"),
        ({"minDomains": 0}, "minDomains"),
        (
            {"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}},
            "labelSelector.matchExpressions[0].operator",
        ),
        ({"labelSelector": ["app"]}, "labelSelector"),
        ({"matchLabelKeys": [1]}, "matchLabelKeys[0]"),
    ],
)
def test_spread_errors(change: dict[str, Any], field: str) -> None:
    err = error_of(pod(spec={"topologySpreadConstraints": [SPREAD, {**SPREAD, **change}]}))
    assert err.field == f"spec.topologySpreadConstraints[1].{field}"


@pytest.mark.parametrize(
    ("term", "field"),
    [
        ({"labelSelector": {}}, "topologyKey"),
        ({"topologyKey": "z", "labelSelector": {"matchLabels": {"a": 1}}}, "labelSelector.matchLabels[a]"),
        ({"topologyKey": "z", "namespaces": "ml"}, "namespaces"),
    ],
)
def test_pod_affinity_errors(term: dict[str, Any], field: str) -> None:
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    err = error_of(pod(spec={"affinity": affinity}))
    assert (
        err.field
        == f"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].{field}"
    )


# --- nodes ---


def test_node_fields_and_bound_pods() -> None:
    manifest = node(
        conditions=[{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]
    )
    manifest["metadata"]["annotations"] = {"a": "b"}
    manifest["metadata"]["creationTimestamp"] = "2024-05-01T12:00:00Z"
    manifest["spec"] = {
        "providerID": "aws:///us-west-2a/i-1",
        "unschedulable": True,
        "taints": [
            {"key": "gpu", "value": "yes", "effect": "NoSchedule"},
            {"key": "x", "effect": "NoExecute"},
        ],
    }
    mine = pod_from_manifest(pod("a", spec={"nodeName": "n1"}))
    other = pod_from_manifest(pod("b", spec={"nodeName": "n2"}))
    pending = pod_from_manifest(pod("c"))
    n = node_from_manifest(manifest, [mine, other, pending])
    assert n.name == "n1"
    assert n.allocatable == {"cpu": 4000, "memory": 16 * GI, "pods": 110}
    assert n.taints == (Taint("gpu", "NoSchedule", "yes"), Taint("x", "NoExecute"))
    assert (n.unschedulable, n.ready, n.provider_id, n.annotations) == (
        True,
        True,
        "aws:///us-west-2a/i-1",
        {"a": "b"},
    )
    assert n.created == 1714564800.0
    assert n.pods == [mine]
    assert n.free()["cpu"] == 3000


@pytest.mark.parametrize(
    ("conditions", "ready"),
    [
        (None, True),
        ([], True),
        ([{"type": "Ready", "status": "True"}], True),
        ([{"type": "Ready", "status": "False"}], False),
        ([{"type": "Ready", "status": "Unknown"}], False),
        ([{"type": "DiskPressure", "status": "True"}], True),
    ],
)
def test_node_readiness(conditions: list[dict[str, str]] | None, ready: bool) -> None:
    assert node_from_manifest(node(conditions=conditions)).ready is ready


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda n: n["status"]["allocatable"].pop("cpu"), "status.allocatable.cpu"),
        (lambda n: n["status"]["allocatable"].pop("memory"), "status.allocatable.memory"),
        (lambda n: n["status"].pop("allocatable"), "status.allocatable.cpu"),
        (lambda n: n["status"]["allocatable"].update(memory="16 GB"), "status.allocatable.memory"),
        (lambda n: n["spec"].update(taints=[{"key": "a", "effect": "NoSchedul"}]), "spec.taints[0].effect"),
        (lambda n: n["spec"].update(taints=[{"key": "a"}]), "spec.taints[0].effect"),
        (lambda n: n["spec"].update(taints=[{"effect": "NoSchedule"}]), "spec.taints[0].key"),
        (lambda n: n["spec"].update(unschedulable="yes"), "spec.unschedulable"),
        (lambda n: n["metadata"].pop("name"), "metadata.name"),
        (lambda n: n["metadata"]["labels"].update(cores=8), "metadata.labels[cores]"),
    ],
)
def test_node_errors(change: Any, field: str) -> None:
    manifest = node()
    change(manifest)
    with pytest.raises(ManifestError) as info:
        node_from_manifest(manifest, source="nodes.yaml")
    assert info.value.field == field
    assert str(info.value).startswith("nodes.yaml: Node ")
    if field != "metadata.name":
        assert info.value.obj == "Node n1"


# --- whole inputs ---


def deployment(kind: str = "Deployment", name: str = "web", **spec: Any) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": name}, "creationTimestamp": None},
        "spec": {"containers": [container({"cpu": "500m"})]},
    }
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {"template": template, **spec},
    }


def test_seed_inflate_deployment_gives_30_pods() -> None:
    pods, nodes, daemonsets = load_manifest_file(ROOT / "config/workloads/inflate.yaml")
    assert (len(pods), nodes, daemonsets) == (30, [], [])
    assert [p.name for p in pods[:2]] == ["inflate-0", "inflate-1"]
    assert len({p.key for p in pods}) == 30
    for p in pods:
        assert p.requests == {"cpu": 1000, "memory": 256000000}
        assert (p.namespace, p.labels, p.phase, p.node_name) == ("default", {"app": "inflate"}, "Pending", "")
        assert (p.owner_kind, p.owner_name, p.termination_grace_seconds) == ("ReplicaSet", "inflate", 0)


@pytest.mark.parametrize(
    ("kind", "spec", "count", "owner"),
    [
        ("Deployment", {"replicas": 3}, 3, "ReplicaSet"),
        ("Deployment", {}, 1, "ReplicaSet"),
        ("Deployment", {"replicas": 0}, 0, "ReplicaSet"),
        ("ReplicaSet", {"replicas": 2}, 2, "ReplicaSet"),
        ("StatefulSet", {"replicas": 4}, 4, "StatefulSet"),
        ("Job", {"parallelism": 5}, 5, "Job"),
        ("Job", {}, 1, "Job"),
        ("Job", {"parallelism": 5, "completions": 2}, 2, "Job"),
        ("Job", {"parallelism": 5, "suspend": True}, 0, "Job"),
    ],
)
def test_workload_expansion(kind: str, spec: dict[str, Any], count: int, owner: str) -> None:
    pods, _, _ = load_manifests([deployment(kind, **spec)], source="w.yaml")
    assert [p.name for p in pods] == [f"web-{i}" for i in range(count)]
    assert all(p.owner_kind == owner and p.owner_name == "web" and p.namespace == "ml" for p in pods)
    assert all(p.requests == {"cpu": 500} for p in pods)


def test_expanded_pods_do_not_share_dicts() -> None:
    pods, _, _ = load_manifests([deployment(replicas=2)], source="w.yaml")
    pods[0].labels["changed"] = "yes"
    pods[0].requests["cpu"] = 1
    assert "changed" not in pods[1].labels
    assert pods[1].requests == {"cpu": 500}


def test_template_errors_name_the_workload_and_template_path() -> None:
    manifest = deployment(replicas=2)
    manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "fast"
    with pytest.raises(ManifestError) as info:
        load_manifests([manifest], source="w.yaml")
    assert info.value.obj == "Deployment ml/web"
    assert info.value.field == "spec.template.spec.containers[0].resources.requests.cpu"
    assert str(info.value).startswith("w.yaml: Deployment ml/web: spec.template.spec.containers[0]")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"replicas": -1}, "spec.replicas"),
        ({"replicas": "3"}, "spec.replicas"),
        ({"template": None}, "spec.template"),
    ],
)
def test_workload_errors(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifests([deployment(**spec)], source="w.yaml")
    assert info.value.field == field


def test_gang_label_on_template_is_namespaced() -> None:
    manifest = deployment("Job", parallelism=4)
    manifest["spec"]["template"]["metadata"]["labels"]["hpscaler.io/gang"] = "train"
    pods, _, _ = load_manifests([manifest], source="w.yaml")
    assert {p.gang for p in pods} == {Gang("ml/train", 0)}


def test_daemonset_gives_one_template_pod() -> None:
    ds = deployment("DaemonSet", name="agent")
    ds["spec"]["template"]["spec"]["tolerations"] = [{"operator": "Exists"}]
    pods, nodes, daemonsets = load_manifests([ds], source="ds.yaml")
    assert (pods, nodes) == ([], [])
    (template,) = daemonsets
    assert (template.name, template.namespace, template.owner_kind, template.owner_name) == (
        "agent",
        "ml",
        "DaemonSet",
        "agent",
    )
    assert template.is_daemonset
    assert template.requests == {"cpu": 500}
    assert template.tolerations == (Toleration("", "Exists"),)


def test_lists_and_node_binding() -> None:
    bound = pod("bound", spec={"nodeName": "n1"})
    bare_pod = pod("bare")
    del bare_pod["kind"]  # API PodList items carry no kind
    bare_node = node("n2")
    del bare_node["kind"]
    docs: list[Any] = [
        {"kind": "List", "items": [bound, node("n1"), deployment(replicas=2)]},
        {"kind": "PodList", "items": [bare_pod]},
        {"kind": "NodeList", "items": [bare_node]},
        None,  # an empty YAML document
    ]
    pods, nodes, _ = load_manifests(docs, source="cluster.json")
    assert [p.name for p in pods] == ["bound", "web-0", "web-1", "bare"]
    assert [n.name for n in nodes] == ["n1", "n2"]
    assert [p.name for p in nodes[0].pods] == ["bound"]
    assert nodes[1].pods == []


@pytest.mark.parametrize(
    ("docs", "obj", "field"),
    [
        ([{"kind": "Service", "metadata": {"name": "svc"}}], "Service default/svc", "kind"),
        ([{"metadata": {"name": "x"}}], "object default/x", "kind"),
        ([{"kind": ["Pod"], "metadata": {"name": "x"}}], "['Pod'] default/x", "kind"),
        (["just text"], "document 1", ""),
        ([pod("a"), pod("a")], "Pod default/a", "metadata.name"),
        ([node("n"), node("n")], "Node n", "metadata.name"),
        ([{"kind": "List", "items": [{"metadata": {"name": "x"}}]}], "object default/x", "kind"),
        ([{"kind": "List", "items": {"a": 1}}], "List (document 1)", "items"),
        (
            [{"kind": "PodList", "items": [{"spec": {"containers": [{}]}}]}],
            "Pod (document 1 items[0])",
            "metadata.name",
        ),
        ([pod("a"), {"kind": "Pod", "spec": {}}], "Pod (document 2)", "metadata.name"),
    ],
)
def test_load_errors(docs: list[Any], obj: str, field: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifests(docs, source="in.yaml")
    assert (info.value.obj, info.value.field, info.value.source) == (obj, field, "in.yaml")
    assert str(info.value).startswith(f"in.yaml: {obj}")


def test_unknown_kind_lists_the_supported_ones() -> None:
    with pytest.raises(ManifestError) as info:
        load_manifests([{"kind": "CronJob", "metadata": {"name": "c"}}], source="in.yaml")
    assert "unsupported kind 'CronJob'" in str(info.value)
    assert "Deployment" in info.value.fix and "DaemonSet" in info.value.fix


# --- files ---


def test_yaml_file_multi_document(tmp_path: Path) -> None:
    path = tmp_path / "in.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, creationTimestamp: 2024-05-01T12:00:00Z}\n"
        "spec: {containers: [{name: c, resources: {requests: {cpu: 250m}}}]}\n---\n"
        + json.dumps(node("n1"))
        + "\n---\n"
    )
    pods, nodes, _ = load_manifest_file(path)
    assert [(p.name, p.requests, p.created) for p in pods] == [("a", {"cpu": 250}, 1714564800.0)]
    assert [n.name for n in nodes] == ["n1"]


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "pods.json"
    path.write_text(json.dumps({"kind": "List", "items": [pod("a"), node("n1")]}))
    pods, nodes, _ = load_manifest_file(path)
    assert ([p.name for p in pods], [n.name for n in nodes]) == (["a"], ["n1"])


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kind: Pod\nmetadata:\n  name: a\n  labels: {app: x\n")
    with pytest.raises(ManifestError) as info:
        load_manifest_file(path)
    assert info.value.source == str(path)
    assert info.value.field.startswith("line ")
    assert str(info.value).startswith(f"{path}: line ")
    assert "invalid YAML" in str(info.value)


def test_yaml_error_line_number_is_one_based(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kind: Pod\nmetadata: a: b\n")
    with pytest.raises(ManifestError) as info:
        load_manifest_file(path)
    assert info.value.field == "line 2, column 12"


def test_json_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"kind": "Pod",\n "metadata": }')
    with pytest.raises(ManifestError) as info:
        load_manifest_file(path)
    assert info.value.field == "line 2, column 14"
    assert "invalid JSON" in str(info.value)


def test_manifest_errors_in_files_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pods.yaml"
    path.write_text(
        "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{resources: {requests: {cpu: 1x}}}]}\n"
    )
    with pytest.raises(ManifestError) as info:
        load_manifest_file(path)
    assert str(info.value).startswith(
        f"{path}: Pod default/a: spec.containers[0].resources.requests.cpu: '1x'"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest_file(tmp_path / "nope.yaml")
    assert info.value.source.endswith("nope.yaml")
    assert "cannot read" in info.value.message
