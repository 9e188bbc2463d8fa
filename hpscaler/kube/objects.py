"""Kubernetes manifests (plain dicts from YAML or API JSON) and manifest files -> `hpscaler.model` objects.

Pods (`hpscaler.kube.pods`), Nodes, DaemonSets (as their template pod), workloads (Deployment,
ReplicaSet, StatefulSet, Job: the pending pods their controllers create), training jobs
(`hpscaler.kube.jobkinds`) and Lists of them, from one or several files. Each problem is a
`ManifestError` (`hpscaler.kube.fields`) that names the object, the field path and a fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hpscaler.kube.fields import (
    TAINT_EFFECTS,
    At,
    ManifestError,
    check_kind,
    object_label,
    read_identity,
    read_int,
    read_list,
    read_map,
    read_quantities,
    read_strings,
    read_text,
    read_time,
)
from hpscaler.kube.jobkinds import JOB_KINDS, JobSpecError, expand_job
from hpscaler.kube.pods import pod_from_object
from hpscaler.model import Gang, Node, Pod, Taint
from hpscaler.yamlio import YamlInputError, read_documents

__all__ = [
    "MAX_PODS",
    "ManifestError",
    "daemonset_from_manifest",
    "load_manifest_file",
    "load_manifest_sources",
    "load_manifests",
    "node_from_manifest",
    "parse_manifest_text",
    "pod_from_manifest",
    "read_manifest_documents",
]

# Controllers that create pods from `spec.template`, and the owner kind their pods carry in a cluster
# (Deployment pods are owned by a ReplicaSet), so synthetic pods look like real ones to consolidation.
_WORKLOAD_OWNERS = {
    "Deployment": "ReplicaSet",
    "ReplicaSet": "ReplicaSet",
    "StatefulSet": "StatefulSet",
    "Job": "Job",
}
_KINDS = "Pod, Node, List, PodList, NodeList, DaemonSet, " + ", ".join([*_WORKLOAD_OWNERS, *JOB_KINDS])
# The apiVersion each built-in kind is served under; a typo (`bacth/v1`, `v2`) is an error, not a guess.
# (The training-job kinds check theirs in `hpscaler.kube.jobkinds`.)
_API_VERSIONS = {
    **dict.fromkeys(("Pod", "Node", "List", "PodList", "NodeList"), "v1"),
    **dict.fromkeys(("DaemonSet", "Deployment", "ReplicaSet", "StatefulSet"), "apps/v1"),
    "Job": "batch/v1",
}
# `plan` and `simulate` build every pod in memory: above this many, the input is a mistake
# (`replicas: 1000000000`), not a cluster. `hpscaler plan --max-pods` raises it.
MAX_PODS = 100_000


def pod_from_manifest(obj: Mapping[str, Any], *, source: str = "") -> Pod:
    """Build a `Pod` from a Pod manifest or API object; raises `ManifestError`."""
    return _pod_from(obj, source, "")


def _pod_from(obj: Mapping[str, Any], source: str, where: str) -> Pod:
    meta = obj.get("metadata")
    at = At(object_label("Pod", meta if isinstance(meta, Mapping) else {}, where), source)
    check_kind(at, obj, "Pod")
    name, namespace = read_identity(at, read_map(at, meta, "metadata"))
    return pod_from_object(at, obj, name, namespace)


def node_from_manifest(obj: Mapping[str, Any], pods: Iterable[Pod] = (), *, source: str = "") -> Node:
    """Build a `Node` from a Node manifest or API object, with the `pods` bound to it."""
    return _node_from(obj, pods, source, "")


def _node_from(obj: Mapping[str, Any], pods: Iterable[Pod], source: str, where: str) -> Node:
    raw_meta = obj.get("metadata")
    at = At(
        object_label("Node", raw_meta if isinstance(raw_meta, Mapping) else {}, where, namespaced=False),
        source,
    )
    check_kind(at, obj, "Node")
    meta = read_map(at, raw_meta, "metadata")
    spec = read_map(at, obj.get("spec"), "spec")
    status = read_map(at, obj.get("status"), "status")
    name, _ = read_identity(at, meta)
    allocatable = read_quantities(at, status.get("allocatable"), "status.allocatable")
    for resource in ("cpu", "memory"):
        if resource not in allocatable:
            raise at.error(
                f"status.allocatable.{resource}",
                "is required",
                "copy status.allocatable from `kubectl get node -o yaml`",
            )
    taints = []
    for i, raw in enumerate(read_list(at, spec.get("taints"), "spec.taints")):
        path = f"spec.taints[{i}]"
        item = read_map(at, raw, path)
        key = read_text(at, item.get("key"), f"{path}.key")
        if not key:
            raise at.error(f"{path}.key", "is required", "name the taint key")
        effect = item.get("effect")
        if effect not in TAINT_EFFECTS:
            raise at.error(
                f"{path}.effect", f"{effect!r} is not valid", f"use one of {', '.join(TAINT_EFFECTS)}"
            )
        taints.append(Taint(key, effect, read_text(at, item.get("value"), f"{path}.value")))
    ready = True  # a node without conditions (a hand-written manifest) is taken as Ready
    for i, raw in enumerate(read_list(at, status.get("conditions"), "status.conditions")):
        condition = read_map(at, raw, f"status.conditions[{i}]")
        if condition.get("type") == "Ready":
            ready = condition.get("status") == "True"
    unschedulable = spec.get("unschedulable")
    if unschedulable is not None and not isinstance(unschedulable, bool):
        raise at.error(
            "spec.unschedulable",
            f"expected true or false, got {unschedulable!r}",
            "write true or false without quotes",
        )
    return Node(
        name=name,
        labels=read_strings(at, meta.get("labels"), "metadata.labels"),
        allocatable=allocatable,
        taints=tuple(taints),
        pods=[p for p in pods if p.node_name == name],
        unschedulable=bool(unschedulable),
        ready=ready,
        annotations=read_strings(at, meta.get("annotations"), "metadata.annotations"),
        provider_id=read_text(at, spec.get("providerID"), "spec.providerID"),
        created=read_time(at, meta.get("creationTimestamp"), "metadata.creationTimestamp"),
    )


# --- whole files ---


def _replica_count(at: At, kind: str, spec: Mapping[str, Any]) -> int:
    if kind == "DaemonSet":
        return 1
    if kind != "Job":
        count = read_int(at, spec.get("replicas"), "spec.replicas", 1)
    elif spec.get("suspend") is True:
        count = 0  # a suspended Job has no pods
    else:
        # A Job runs `parallelism` pods at once, but never more than it still has completions for.
        count = read_int(at, spec.get("parallelism"), "spec.parallelism", 1)
        completions = spec.get("completions")
        if completions is not None:
            count = min(count, read_int(at, completions, "spec.completions", count))
    if count < 0:
        raise at.error(
            "spec.replicas" if kind != "Job" else "spec.parallelism", "must not be negative", "use 0 or more"
        )
    return count


def _template_pods(
    obj: Mapping[str, Any], kind: str, where: str, source: str, room: int = MAX_PODS
) -> list[Pod]:
    """The pods a workload controller would create from `spec.template`, all pending (at most `room`)."""
    raw_meta = obj.get("metadata")
    at = At(object_label(kind, raw_meta if isinstance(raw_meta, Mapping) else {}, where), source)
    name, namespace = read_identity(at, read_map(at, raw_meta, "metadata"))
    spec = read_map(at, obj.get("spec"), "spec")
    count = _replica_count(at, kind, spec)
    if count > room:
        raise at.error(
            "spec.parallelism" if kind == "Job" else "spec.replicas",
            f"{count} pods would exceed the limit of pods in one plan ({room} left)",
            "lower it, or raise the limit (`hpscaler plan --max-pods`)",
        )
    template = read_map(at, spec.get("template"), "spec.template")
    if not template:
        raise at.error("spec.template", "is required", "add the pod template")
    base = replace(
        pod_from_object(replace(at, prefix="spec.template."), template, name, namespace),
        owner_kind=_WORKLOAD_OWNERS.get(kind, kind),
        owner_name=name,
        created=read_time(
            at, read_map(at, raw_meta, "metadata").get("creationTimestamp"), "metadata.creationTimestamp"
        ),
    )
    if kind == "DaemonSet":
        return [base]
    # Each replica gets its own dicts so that changing one pod's labels cannot change its siblings.
    return [
        replace(
            base,
            name=f"{name}-{i}",
            requests=dict(base.requests),
            labels=dict(base.labels),
            annotations=dict(base.annotations),
            node_selector=dict(base.node_selector),
        )
        for i in range(count)
    ]


def _job_pods(obj: Mapping[str, Any], kind: str, where: str, source: str) -> list[Pod]:
    """The pods a training-job controller creates (`hpscaler.kube.jobkinds`), parsed like pods."""
    raw_meta = obj.get("metadata")
    at = At(object_label(kind, raw_meta if isinstance(raw_meta, Mapping) else {}, where), source)
    name, namespace = read_identity(at, read_map(at, raw_meta, "metadata"))
    try:
        expanded = expand_job(kind, obj, name, namespace)
    except JobSpecError as exc:
        raise at.error(exc.path, exc.message, exc.fix) from None
    pods = []
    for item in expanded:
        pod = pod_from_object(replace(at, prefix=item.template_path), item.manifest, item.name, namespace)
        # The object's own count beats the controller labels' "all in the input"; a gang convention
        # of the template (another name) wins over both.
        if item.gang is not None and (pod.gang is None or pod.gang.name == item.gang[0]):
            pod = replace(pod, gang=Gang(*item.gang))
        pods.append(pod)
    return pods


def daemonset_from_manifest(obj: Mapping[str, Any], *, source: str = "") -> Pod:
    """A DaemonSet as its template pod (what each of its pods requests, selects and tolerates)."""
    return _template_pods(obj, "DaemonSet", "", source)[0]


@dataclass(slots=True)
class _Loader:
    source: str
    pods: list[Pod]
    nodes: list[tuple[Mapping[str, Any], str, str]]
    daemonsets: list[Pod]
    max_pods: int = MAX_PODS

    def add(self, doc: Any, where: str, default_kind: str = "") -> None:
        if doc is None:  # an empty YAML document, e.g. after a trailing `---`
            return
        if not isinstance(doc, Mapping):
            raise ManifestError(
                where,
                "",
                f"expected a Kubernetes object (a mapping), got {type(doc).__name__}",
                source=self.source,
            )
        kind = doc.get("kind") or default_kind
        if not isinstance(kind, str):
            kind = repr(kind)  # never a supported kind, and hashable for the lookups below
        self._check_api_version(doc, kind, where)
        if len(self.pods) >= self.max_pods and kind in ("Pod", *_WORKLOAD_OWNERS):
            raise ManifestError(
                where,
                "",
                f"more than {self.max_pods} pods in one plan",
                "split the input, or raise the limit (`hpscaler plan --max-pods`)",
                source=self.source,
            )
        if kind == "Pod":
            self.pods.append(_pod_from(doc, self.source, where))
        elif kind == "Node":
            self.nodes.append((doc, where, self.source))
        elif kind in ("List", "PodList", "NodeList"):
            at = At(f"{kind} ({where})", self.source)
            item_kind = kind.removesuffix("List")  # API list items carry no kind of their own
            for i, item in enumerate(read_list(at, doc.get("items"), "items")):
                self.add(item, f"{where} items[{i}]", item_kind)
        elif kind == "DaemonSet":
            self.daemonsets.extend(_template_pods(doc, kind, where, self.source))
        elif kind in _WORKLOAD_OWNERS:
            room = self.max_pods - len(self.pods)
            self.pods.extend(_template_pods(doc, kind, where, self.source, room))
        elif kind in JOB_KINDS:
            pods = _job_pods(doc, kind, where, self.source)
            if len(pods) > self.max_pods - len(self.pods):
                raise ManifestError(
                    where,
                    "",
                    f"{kind}: {len(pods)} pods would exceed the limit of pods in one plan "
                    f"({self.max_pods - len(self.pods)} left)",
                    "split the input, or raise the limit (`hpscaler plan --max-pods`)",
                    source=self.source,
                )
            self.pods.extend(pods)
        else:
            meta = doc.get("metadata")
            label = object_label(str(kind or "object"), meta if isinstance(meta, Mapping) else {}, where)
            problem = f"unsupported kind {kind!r}" if kind else "kind is missing"
            raise ManifestError(
                label,
                "kind",
                problem,
                f"remove it from the input; supported kinds: {_KINDS}",
                source=self.source,
            )

    def _check_api_version(self, doc: Mapping[str, Any], kind: str, where: str) -> None:
        expected, found = _API_VERSIONS.get(kind), doc.get("apiVersion")
        if expected is None or found is None:
            return  # an API list's items carry no apiVersion of their own, and hand-written input may not

        if found != expected:
            meta = doc.get("metadata")
            raise ManifestError(
                object_label(kind, meta if isinstance(meta, Mapping) else {}, where),
                "apiVersion",
                f"{found!r} is not the apiVersion of a {kind}",
                f"use apiVersion: {expected}",
                source=self.source,
            )

    def finish(self) -> tuple[list[Pod], list[Node], list[Pod]]:
        nodes = [_node_from(doc, self.pods, source, where) for doc, where, source in self.nodes]
        # A repeated name would make the plan count one object twice.
        for label, keys in (("Pod", [p.key for p in self.pods]), ("Node", [n.name for n in nodes])):
            seen: set[str] = set()
            for key in keys:
                if key in seen:
                    fix = f"give each {label.lower()} a unique name"
                    raise ManifestError(
                        f"{label} {key}", "metadata.name", "appears twice", fix, source=self.source
                    )
                seen.add(key)
        return self.pods, nodes, self.daemonsets


def load_manifests(
    docs: Iterable[Mapping[str, Any]], *, source: str, max_pods: int = MAX_PODS
) -> tuple[list[Pod], list[Node], list[Pod]]:
    """Turn parsed manifests into (pods, nodes, daemonset_pods); nodes get the pods bound to them.

    Accepts Pod, Node, List / PodList / NodeList, DaemonSet (one template pod for DaemonSet
    overhead on new nodes), Deployment / ReplicaSet / StatefulSet / Job (`replicas` or
    `parallelism` pending pods named `<name>-<i>`) and the training-job kinds of
    `hpscaler.kube.jobkinds` (PyTorchJob, TFJob, MPIJob, JobSet, LeaderWorkerSet), at most
    `max_pods` pods. Raises `ManifestError`.
    """
    loader = _Loader(source, [], [], [], max_pods)
    for index, doc in enumerate(docs, 1):
        loader.add(doc, f"document {index}")
    return loader.finish()


def load_manifest_file(path: Path, *, max_pods: int = MAX_PODS) -> tuple[list[Pod], list[Node], list[Pod]]:
    """Load a multi-document YAML or a JSON file with `load_manifests`; errors name the file."""
    return load_manifest_sources([(str(path), read_manifest_documents(path))], max_pods=max_pods)


def read_manifest_documents(path: Path) -> list[tuple[Any, int]]:
    """The documents of a multi-document YAML or a JSON file, each with the line it starts on;
    raises `ManifestError` naming the file."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError("", "", f"cannot read the file: {exc}", "check the path", source=source) from None
    return parse_manifest_text(text, source=source, json_format=path.suffix.lower() == ".json")


def load_manifest_sources(
    sources: Iterable[tuple[str, Iterable[tuple[Any, int]]]], *, max_pods: int = MAX_PODS
) -> tuple[list[Pod], list[Node], list[Pod]]:
    """`load_manifests` over several sources (files, stdin) of (document, first line) at once.

    Nodes get their pods from any of the sources.
    """
    loader = _Loader("", [], [], [], max_pods)
    for source, docs in sources:
        loader.source = source
        for index, (doc, line) in enumerate(docs, 1):
            loader.add(doc, f"document {index}, line {line}")  # the line helps find it in a long file
    return loader.finish()


def parse_manifest_text(text: str, *, source: str, json_format: bool = False) -> list[tuple[Any, int]]:
    """The documents of a multi-document YAML (or one JSON) text with the line each starts on.

    Syntax errors name the source.
    """
    try:
        if json_format:
            return [(json.loads(text), 1)]
        return [(doc.data, doc.line) for doc in read_documents(text, keep_nodes=False)]
    except json.JSONDecodeError as exc:
        raise ManifestError(
            "",
            f"line {exc.lineno}, column {exc.colno}",
            f"invalid JSON: {exc.msg}",
            "fix the JSON syntax",
            source=source,
        ) from None
    except RecursionError:
        raise ManifestError("", "", "invalid JSON: nested too deeply", "flatten it", source=source) from None
    except YamlInputError as exc:
        where = f"line {exc.line}" + (f", column {exc.column}" if exc.column else "") if exc.line else ""
        raise ManifestError(
            "",
            where,
            f"invalid YAML: {exc.problem}",
            "fix the YAML syntax (indentation, quoting, `key: value`)",
            source=source,
        ) from None
