"""The training-job kinds ML teams submit, expanded into the pods their controllers create.

Each kind is turned into Pod manifests (plain dicts) with the names, labels, annotations and owner
references its controller gives them, so that plans and simulations see what the cluster will see:

- Kubeflow `PyTorchJob`, `TFJob`, `MPIJob` (`kubeflow.org/v1`, training-operator): one pod per
  replica of each replica spec, named `<job>-<type>-<index>` (`GenGeneralName`), labelled
  `training.kubeflow.org/{operator-name,job-name,replica-type,replica-index}` and
  `training.kubeflow.org/job-role: master` on the master role (PyTorch Master, TF Chief/Master or
  worker 0 without one, MPI Launcher, whose pod is `<job>-launcher`), owned by the job.
- `JobSet` (`jobset.x-k8s.io/v1alpha2`): `replicas` child Jobs `<jobset>-<replicatedJob>-<index>` per
  replicated job, each running `min(parallelism, completions)` pods with the Job controller's
  `batch.kubernetes.io/job-name` labels and the JobSet labels (`jobset.sigs.k8s.io/jobset-name`,
  `replicatedjob-name`, `replicatedjob-replicas`, `job-index`, `job-global-index`,
  `global-replicas`, `job-key`), owned by their Job. `alpha.jobset.sigs.k8s.io/exclusive-topology`
  becomes the pod affinity / anti-affinity the JobSet webhook injects (one Job per topology domain).
- `LeaderWorkerSet` (`leaderworkerset.x-k8s.io/v1`): `replicas` groups of `size` pods: the leader
  `<lws>-<group>` owned by the StatefulSet `<lws>`, workers `<lws>-<group>-<worker>` owned by the
  StatefulSet `<lws>-<group>`, labelled `leaderworkerset.sigs.k8s.io/{name,group-index,worker-index,
  group-key}`; `leaderworkerset.sigs.k8s.io/exclusive-topology` keeps one group per domain.

Sources: kubeflow/training-operator `pkg/apis/kubeflow.org/v1/common_types.go` and
`pkg/controller.v1/common/pod.go`; kubernetes-sigs/jobset `api/jobset/v1alpha2/jobset_types.go`;
kubernetes-sigs/lws `api/leaderworkerset/v1/leaderworkerset_types.go`.

All-or-nothing kinds are gangs by default: a Kubeflow job or a JobSet as a whole (minMember the
runPolicy's `schedulingPolicy.minAvailable`, else every pod), each LeaderWorkerSet group on its own
(its default restart policy recreates the whole group when one pod fails). The annotation
`hpscaler.io/gang-scheduling: "false"` on the object turns that off; a gang convention already on
the pod template (`hpscaler.io/gang`, coscheduling, Kueue, Volcano) wins. Live pods these
controllers created are recognised by their labels (`controller_gang`), so `plan --live`, `plan
--pods -` of `kubectl get pods` and the daemon treat them as the same gangs.

This module only works on dicts; `hpscaler.kube.objects` parses the pods it returns.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GANG_SCHEDULING_ANNOTATION = "hpscaler.io/gang-scheduling"

KUBEFLOW_API = "kubeflow.org/v1"
JOBSET_API = "jobset.x-k8s.io/v1alpha2"
LWS_API = "leaderworkerset.x-k8s.io/v1"

KF_OPERATOR_NAME = "training.kubeflow.org/operator-name"
KF_JOB_NAME = "training.kubeflow.org/job-name"
KF_REPLICA_TYPE = "training.kubeflow.org/replica-type"
KF_REPLICA_INDEX = "training.kubeflow.org/replica-index"
KF_JOB_ROLE = "training.kubeflow.org/job-role"

JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
JOBSET_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
JOBSET_REPLICATED_JOB_REPLICAS = "jobset.sigs.k8s.io/replicatedjob-replicas"
JOBSET_JOB_INDEX = "jobset.sigs.k8s.io/job-index"
JOBSET_JOB_GLOBAL_INDEX = "jobset.sigs.k8s.io/job-global-index"
JOBSET_GLOBAL_REPLICAS = "jobset.sigs.k8s.io/global-replicas"
JOBSET_JOB_KEY = "jobset.sigs.k8s.io/job-key"
JOBSET_EXCLUSIVE = "alpha.jobset.sigs.k8s.io/exclusive-topology"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
JOB_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"

LWS_NAME = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
LWS_GROUP_KEY = "leaderworkerset.sigs.k8s.io/group-key"
LWS_SIZE = "leaderworkerset.sigs.k8s.io/size"
LWS_LEADER_NAME = "leaderworkerset.sigs.k8s.io/leader-name"
LWS_EXCLUSIVE = "leaderworkerset.sigs.k8s.io/exclusive-topology"


@dataclass(frozen=True, slots=True)
class _Kubeflow:
    replica_specs: str  # the field holding the replica specs
    operator: str  # training.kubeflow.org/operator-name
    master_roles: tuple[str, ...]  # replica types whose index 0 is the master role


_KUBEFLOW = {
    "PyTorchJob": _Kubeflow("pytorchReplicaSpecs", "pytorchjob-controller", ("Master",)),
    "TFJob": _Kubeflow("tfReplicaSpecs", "tfjob-controller", ("Chief", "Master")),
    "MPIJob": _Kubeflow("mpiReplicaSpecs", "mpijob-controller", ("Launcher",)),
}
JOB_KINDS: dict[str, str] = {
    **{kind: KUBEFLOW_API for kind in _KUBEFLOW},
    "JobSet": JOBSET_API,
    "LeaderWorkerSet": LWS_API,
}


class JobSpecError(ValueError):
    """A job object that cannot be expanded: the field path, what is wrong, and the fix."""

    def __init__(self, path: str, message: str, fix: str = "") -> None:
        self.path, self.message, self.fix = path, message, fix
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True, slots=True)
class ExpandedPod:
    """One pod a controller would create: its manifest, and where its template sits in the object."""

    name: str
    manifest: dict[str, Any]
    template_path: str  # prefix for error paths, e.g. "spec.pytorchReplicaSpecs.Worker.template."
    gang: tuple[str, int] | None  # (name, minMember) when the object is all-or-nothing


# --- field access (the object parser validates the pod templates themselves) ---


def _map(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise JobSpecError(path, f"expected a mapping, got {type(value).__name__} {value!r}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise JobSpecError(path, f"expected a list, got {type(value).__name__} {value!r}")
    return value


def _count(value: Any, path: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise JobSpecError(path, f"expected a non-negative integer, got {value!r}", "write e.g. 4")
    return value


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise JobSpecError(path, "is required", "give it a name")
    return value


def _owner(api_version: str, kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "controller": True}


def _pod(
    template: Mapping[str, Any],
    template_path: str,
    name: str,
    namespace: str,
    created: Any,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    owner: dict[str, Any],
    gang: tuple[str, int] | None,
    opted_out: bool = False,
) -> ExpandedPod:
    meta = _map(template.get("metadata"), f"{template_path}metadata")
    # Controllers copy the template's labels and annotations and then set their own over them.
    merged_labels = {**_map(meta.get("labels"), f"{template_path}metadata.labels"), **labels}
    merged_annotations = {
        **_map(meta.get("annotations"), f"{template_path}metadata.annotations"),
        **annotations,
    }
    if opted_out:  # carried to the pods, so that the live pods are not taken for a gang either
        merged_annotations[GANG_SCHEDULING_ANNOTATION] = "false"
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": merged_labels,
            "annotations": merged_annotations,
            "ownerReferences": [owner],
            "creationTimestamp": created,
        },
        "spec": copy.deepcopy(dict(_map(template.get("spec"), f"{template_path}spec"))),
    }
    return ExpandedPod(name, manifest, template_path, gang)


def _gang_enabled(meta: Mapping[str, Any]) -> bool:
    annotations = _map(meta.get("annotations"), "metadata.annotations")
    return str(annotations.get(GANG_SCHEDULING_ANNOTATION, "true")).lower() != "false"


def _template(spec: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    template = _map(spec.get("template"), f"{path}.template")
    if not template:
        raise JobSpecError(f"{path}.template", "is required", "add the pod template")
    return template


# --- Kubeflow training-operator ---


def _kubeflow(kind: str, obj: Mapping[str, Any], name: str, namespace: str) -> list[ExpandedPod]:
    facts = _KUBEFLOW[kind]
    meta = _map(obj.get("metadata"), "metadata")
    spec = _map(obj.get("spec"), "spec")
    specs_path = f"spec.{facts.replica_specs}"
    replica_specs = _map(spec.get(facts.replica_specs), specs_path)
    if not replica_specs:
        raise JobSpecError(specs_path, "is required", "add at least one replica spec, e.g. Worker")
    run_policy = _map(spec.get("runPolicy"), "spec.runPolicy")
    if run_policy.get("suspend") is True:
        return []  # a suspended job has no pods
    counts = {
        rtype: _count(
            _map(rspec, f"{specs_path}.{rtype}").get("replicas"), f"{specs_path}.{rtype}.replicas", 1
        )
        for rtype, rspec in replica_specs.items()
    }
    total = sum(counts.values())
    scheduling = _map(run_policy.get("schedulingPolicy"), "spec.runPolicy.schedulingPolicy")
    min_member = _count(scheduling.get("minAvailable"), "spec.runPolicy.schedulingPolicy.minAvailable", total)
    gang = (f"{namespace}/{name}", min(min_member, total)) if _gang_enabled(meta) else None
    has_master = any(rtype in facts.master_roles for rtype in replica_specs)
    owner = _owner(KUBEFLOW_API, kind, name)
    pods = []
    for rtype, rspec in replica_specs.items():
        path = f"{specs_path}.{rtype}"
        template = _template(_map(rspec, path), path)
        rt = rtype.lower()
        for index in range(counts[rtype]):
            labels = {
                KF_OPERATOR_NAME: facts.operator,
                KF_JOB_NAME: name.replace("/", "-"),
                KF_REPLICA_TYPE: rt,
                KF_REPLICA_INDEX: str(index),
            }
            # TFJob without a Chief or Master makes worker 0 the master (IsMasterRole).
            is_master = rtype in facts.master_roles or (
                kind == "TFJob" and not has_master and rtype == "Worker" and index == 0
            )
            if is_master and index == 0:
                labels[KF_JOB_ROLE] = "master"
            pod_name = (
                f"{name}-launcher" if kind == "MPIJob" and rtype == "Launcher" else f"{name}-{rt}-{index}"
            )
            pods.append(
                _pod(
                    template,
                    f"{path}.template.",
                    pod_name,
                    namespace,
                    meta.get("creationTimestamp"),
                    labels,
                    {},
                    owner,
                    gang,
                    not _gang_enabled(meta),
                )
            )
    return pods


# --- JobSet ---


def _job_pod_count(job_spec: Mapping[str, Any], path: str) -> int:
    if job_spec.get("suspend") is True:
        return 0
    count = _count(job_spec.get("parallelism"), f"{path}.parallelism", 1)
    completions = job_spec.get("completions")
    if completions is not None:
        count = min(count, _count(completions, f"{path}.completions", count))
    return count


def _exclusive(
    template: Mapping[str, Any], topology: str, key: str, value: str, group_key: str
) -> dict[str, Any]:
    """The template with the affinity that keeps one group (same `key` value) per `topology` domain."""
    result = copy.deepcopy(dict(template))
    spec = result.setdefault("spec", {})
    if not isinstance(spec, dict):
        return result  # the pod parser reports the bad spec
    affinity = spec.setdefault("affinity", {})
    if not isinstance(affinity, dict):
        return result
    together = {
        "labelSelector": {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]},
        "topologyKey": topology,
    }
    apart = {
        "labelSelector": {
            "matchExpressions": [
                {"key": group_key, "operator": "Exists"},
                {"key": key, "operator": "NotIn", "values": [value]},
            ]
        },
        "topologyKey": topology,
    }
    for field, term in (("podAffinity", together), ("podAntiAffinity", apart)):
        section = affinity.setdefault(field, {})
        if isinstance(section, dict):
            section.setdefault("requiredDuringSchedulingIgnoredDuringExecution", []).append(term)
    return result


def _jobset(obj: Mapping[str, Any], name: str, namespace: str) -> list[ExpandedPod]:
    meta = _map(obj.get("metadata"), "metadata")
    spec = _map(obj.get("spec"), "spec")
    if spec.get("suspend") is True:
        return []
    rjobs = _list(spec.get("replicatedJobs"), "spec.replicatedJobs")
    if not rjobs:
        raise JobSpecError("spec.replicatedJobs", "is required", "add at least one replicated job")
    jobset_exclusive = _map(meta.get("annotations"), "metadata.annotations").get(JOBSET_EXCLUSIVE)
    parsed = []
    for i, raw in enumerate(rjobs):
        path = f"spec.replicatedJobs[{i}]"
        rjob = _map(raw, path)
        rname = _name(rjob.get("name"), f"{path}.name")
        replicas = _count(rjob.get("replicas"), f"{path}.replicas", 1)
        job_template = _map(rjob.get("template"), f"{path}.template")
        job_spec = _map(job_template.get("spec"), f"{path}.template.spec")
        pod_template = _template(job_spec, f"{path}.template.spec")
        parsed.append((path, rname, replicas, job_template, job_spec, pod_template))
    global_replicas = sum(p[2] for p in parsed)
    total = sum(p[2] * _job_pod_count(p[4], f"{p[0]}.template.spec") for p in parsed)
    gang = (f"{namespace}/{name}", total) if _gang_enabled(meta) else None
    owner_api = "batch/v1"
    pods: list[ExpandedPod] = []
    global_index = 0
    for path, rname, replicas, job_template, job_spec, pod_template in parsed:
        job_annotations = _map(_map(job_template.get("metadata"), "").get("annotations"), "")
        exclusive = job_annotations.get(JOBSET_EXCLUSIVE, jobset_exclusive)
        indexed = job_spec.get("completionMode") == "Indexed"
        per_job = _job_pod_count(job_spec, f"{path}.template.spec")
        for job_index in range(replicas):
            job_name = f"{name}-{rname}-{job_index}"
            job_key = hashlib.sha1(f"{namespace}/{job_name}".encode()).hexdigest()
            labels = {
                JOBSET_NAME: name,
                JOBSET_REPLICATED_JOB: rname,
                JOBSET_REPLICATED_JOB_REPLICAS: str(replicas),
                JOBSET_JOB_INDEX: str(job_index),
                JOBSET_JOB_GLOBAL_INDEX: str(global_index),
                JOBSET_GLOBAL_REPLICAS: str(global_replicas),
                JOBSET_JOB_KEY: job_key,
                **dict.fromkeys(JOB_NAME_LABELS, job_name),
            }
            template = pod_template
            if isinstance(exclusive, str) and exclusive:
                template = _exclusive(pod_template, exclusive, JOBSET_JOB_KEY, job_key, JOBSET_NAME)
            for pod_index in range(per_job):
                pod_labels = {**labels, JOB_COMPLETION_INDEX: str(pod_index)} if indexed else labels
                pods.append(
                    _pod(
                        template,
                        f"{path}.template.spec.template.",
                        f"{job_name}-{pod_index}",
                        namespace,
                        meta.get("creationTimestamp"),
                        pod_labels,
                        {},
                        _owner(owner_api, "Job", job_name),
                        gang,
                        not _gang_enabled(meta),
                    )
                )
            global_index += 1
    return pods


# --- LeaderWorkerSet ---


def _lws(obj: Mapping[str, Any], name: str, namespace: str) -> list[ExpandedPod]:
    meta = _map(obj.get("metadata"), "metadata")
    spec = _map(obj.get("spec"), "spec")
    replicas = _count(spec.get("replicas"), "spec.replicas", 1)
    lwt_path = "spec.leaderWorkerTemplate"
    lwt = _map(spec.get("leaderWorkerTemplate"), lwt_path)
    if not lwt:
        raise JobSpecError(lwt_path, "is required", "add leaderWorkerTemplate with a workerTemplate")
    size = _count(lwt.get("size"), f"{lwt_path}.size", 1)
    if size < 1:
        raise JobSpecError(f"{lwt_path}.size", "must be at least 1 (the leader)", "set size: 1 or more")
    worker = _map(lwt.get("workerTemplate"), f"{lwt_path}.workerTemplate")
    if not worker:
        raise JobSpecError(f"{lwt_path}.workerTemplate", "is required", "add the worker pod template")
    leader_path = (
        f"{lwt_path}.leaderTemplate"
        if lwt.get("leaderTemplate") is not None
        else f"{lwt_path}.workerTemplate"
    )
    leader = _map(lwt.get("leaderTemplate"), leader_path) or worker
    exclusive = _map(meta.get("annotations"), "metadata.annotations").get(LWS_EXCLUSIVE)
    gang_enabled = _gang_enabled(meta)
    pods: list[ExpandedPod] = []
    for group in range(replicas):
        leader_name = f"{name}-{group}"
        group_key = hashlib.sha1(f"{namespace}/{leader_name}".encode()).hexdigest()
        gang = (f"{namespace}/{leader_name}", size) if gang_enabled and size > 1 else None
        common = {LWS_NAME: name, LWS_GROUP_INDEX: str(group), LWS_GROUP_KEY: group_key}
        for worker_index in range(size):
            is_leader = worker_index == 0
            template, path = (leader, leader_path) if is_leader else (worker, f"{lwt_path}.workerTemplate")
            if isinstance(exclusive, str) and exclusive:
                template = _exclusive(template, exclusive, LWS_GROUP_KEY, group_key, LWS_NAME)
            annotations = {LWS_SIZE: str(size)}
            if not is_leader:
                annotations[LWS_LEADER_NAME] = leader_name
            pods.append(
                _pod(
                    template,
                    f"{path}.",
                    leader_name if is_leader else f"{leader_name}-{worker_index}",
                    namespace,
                    meta.get("creationTimestamp"),
                    {**common, LWS_WORKER_INDEX: str(worker_index)},
                    annotations,
                    _owner("apps/v1", "StatefulSet", name if is_leader else leader_name),
                    gang,
                    not gang_enabled,
                )
            )
    return pods


def controller_gang(labels: Mapping[str, str], annotations: Mapping[str, str]) -> tuple[str, int] | None:
    """The gang a live pod belongs to by the labels its training controller gave it.

    (name, minMember) without the namespace; minMember 0 means "every member in the input", since
    a pod does not say how many replicas its Kubeflow job or JobSet has. A LeaderWorkerSet pod
    does (`leaderworkerset.sigs.k8s.io/size`). None for other pods, a group of one, or a pod
    annotated `hpscaler.io/gang-scheduling: "false"`.
    """
    if annotations.get(GANG_SCHEDULING_ANNOTATION, "").lower() == "false":
        return None
    if labels.get(KF_JOB_NAME) and labels.get(KF_OPERATOR_NAME):
        return labels[KF_JOB_NAME], 0
    if labels.get(JOBSET_NAME):
        return labels[JOBSET_NAME], 0
    if labels.get(LWS_NAME) and labels.get(LWS_GROUP_INDEX, "").isdigit():
        size_text = annotations.get(LWS_SIZE, "")
        size = int(size_text) if size_text.isdigit() else 0
        return (f"{labels[LWS_NAME]}-{labels[LWS_GROUP_INDEX]}", size) if size != 1 else None
    return None


def expand_job(kind: str, obj: Mapping[str, Any], name: str, namespace: str) -> list[ExpandedPod]:
    """The pods the controller of `kind` creates for `obj`; raises `JobSpecError`."""
    api_version = obj.get("apiVersion")
    expected = JOB_KINDS[kind]
    if api_version is not None and api_version != expected:
        raise JobSpecError(
            "apiVersion", f"{api_version!r} is not supported for {kind}", f"use apiVersion: {expected}"
        )
    if kind in _KUBEFLOW:
        return _kubeflow(kind, obj, name, namespace)
    if kind == "JobSet":
        return _jobset(obj, name, namespace)
    return _lws(obj, name, namespace)
