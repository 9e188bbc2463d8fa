"""Training-job kinds expand into the pods their controllers create, and `plan` reads them anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from hpscaler.cli import main
from hpscaler.kube.objects import ManifestError, load_manifest_file, load_manifests
from hpscaler.model import Gang, Pod

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "config" / "workloads" / "training"
SEED = REPO / "config" / "examples"


def pods_of(name: str) -> dict[str, Pod]:
    pods, _, _ = load_manifest_file(TRAINING / name)
    return {p.name: p for p in pods}


def doc(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((TRAINING / name).read_text())
    return loaded


def test_pytorchjob_pods_carry_the_training_operator_names_labels_and_owner() -> None:
    pods = pods_of("pytorchjob.yaml")
    assert sorted(pods) == ["bert-master-0", "bert-worker-0", "bert-worker-1", "bert-worker-2"]
    master, worker = pods["bert-master-0"], pods["bert-worker-2"]
    assert master.namespace == "ml"
    assert master.labels == {
        "training.kubeflow.org/operator-name": "pytorchjob-controller",
        "training.kubeflow.org/job-name": "bert",
        "training.kubeflow.org/replica-type": "master",
        "training.kubeflow.org/replica-index": "0",
        "training.kubeflow.org/job-role": "master",
    }
    assert worker.labels["training.kubeflow.org/replica-type"] == "worker"
    assert worker.labels["training.kubeflow.org/replica-index"] == "2"
    assert "training.kubeflow.org/job-role" not in worker.labels
    assert (master.owner_kind, master.owner_name) == ("PyTorchJob", "bert")
    assert master.requests == {"cpu": 2000, "memory": 4 * 2**30}
    # all-or-nothing: one gang of every replica
    assert {p.gang for p in pods.values()} == {Gang("ml/bert", 4)}


def test_tfjob_without_chief_makes_worker_zero_the_master_role() -> None:
    pods = pods_of("tfjob.yaml")
    assert sorted(pods) == ["mnist-ps-0", "mnist-worker-0", "mnist-worker-1"]
    roles = {n: p.labels.get("training.kubeflow.org/job-role") for n, p in pods.items()}
    assert roles == {"mnist-ps-0": None, "mnist-worker-0": "master", "mnist-worker-1": None}
    assert pods["mnist-ps-0"].labels["training.kubeflow.org/operator-name"] == "tfjob-controller"
    assert {p.gang for p in pods.values()} == {Gang("default/mnist", 3)}


def test_mpijob_launcher_is_named_launcher_and_is_the_master_role() -> None:
    pods = pods_of("mpijob.yaml")
    assert sorted(pods) == ["allreduce-launcher", "allreduce-worker-0", "allreduce-worker-1"]
    launcher = pods["allreduce-launcher"]
    assert launcher.labels["training.kubeflow.org/replica-type"] == "launcher"
    assert launcher.labels["training.kubeflow.org/job-role"] == "master"
    assert launcher.owner_kind == "MPIJob"


def test_jobset_child_jobs_own_their_pods_with_jobset_labels_and_exclusive_placement() -> None:
    pods = pods_of("jobset.yaml")
    assert sorted(pods) == [
        "llm-driver-0-0",
        "llm-workers-0-0",
        "llm-workers-0-1",
        "llm-workers-1-0",
        "llm-workers-1-1",
    ]
    pod = pods["llm-workers-1-0"]
    assert (pod.owner_kind, pod.owner_name) == ("Job", "llm-workers-1")
    labels = pod.labels
    assert labels["jobset.sigs.k8s.io/jobset-name"] == "llm"
    assert labels["jobset.sigs.k8s.io/replicatedjob-name"] == "workers"
    assert labels["jobset.sigs.k8s.io/replicatedjob-replicas"] == "2"
    assert labels["jobset.sigs.k8s.io/job-index"] == "1"
    assert labels["jobset.sigs.k8s.io/job-global-index"] == "2"
    assert labels["jobset.sigs.k8s.io/global-replicas"] == "3"
    assert labels["batch.kubernetes.io/job-name"] == labels["job-name"] == "llm-workers-1"
    assert labels["batch.kubernetes.io/job-completion-index"] == "0"
    assert "batch.kubernetes.io/job-completion-index" not in pods["llm-driver-0-0"].labels
    # exclusive topology: together with its own Job, apart from the JobSet's other Jobs
    assert [t.topology_key for t in pod.pod_affinity] == ["kubernetes.io/hostname"]
    assert [t.topology_key for t in pod.pod_anti_affinity] == ["kubernetes.io/hostname"]
    assert {p.gang for p in pods.values()} == {Gang("default/llm", 5)}


def test_jobset_exclusive_placement_gives_each_job_its_own_nodes_in_plan() -> None:
    result = CliRunner().invoke(
        main, ["plan", "--pods", str(TRAINING / "jobset.yaml"), "--output", "json"], catch_exceptions=False
    )
    plan = json.loads(result.output)
    jobs_per_node = [{p.rsplit("-", 1)[0] for p in node["pods"]} for node in plan["newNodes"]]
    assert plan["unschedulable"] == []
    assert all(len(jobs) == 1 for jobs in jobs_per_node), jobs_per_node
    assert len(plan["newNodes"]) == 3


def test_leaderworkerset_groups_are_gangs_of_size_with_statefulset_owners() -> None:
    pods = pods_of("leaderworkerset.yaml")
    assert sorted(pods) == [f"vllm-{g}{w}" for g in (0, 1) for w in ("", "-1", "-2", "-3")]
    leader, worker = pods["vllm-1"], pods["vllm-1-3"]
    assert (leader.owner_kind, leader.owner_name) == ("StatefulSet", "vllm")
    assert (worker.owner_kind, worker.owner_name) == ("StatefulSet", "vllm-1")
    assert leader.labels["leaderworkerset.sigs.k8s.io/name"] == "vllm"
    assert leader.labels["leaderworkerset.sigs.k8s.io/group-index"] == "1"
    assert (
        leader.labels["leaderworkerset.sigs.k8s.io/worker-index"],
        worker.labels["leaderworkerset.sigs.k8s.io/worker-index"],
    ) == ("0", "3")
    assert (
        leader.labels["leaderworkerset.sigs.k8s.io/group-key"]
        == worker.labels["leaderworkerset.sigs.k8s.io/group-key"]
    )
    assert worker.annotations["leaderworkerset.sigs.k8s.io/leader-name"] == "vllm-1"
    assert leader.annotations["leaderworkerset.sigs.k8s.io/size"] == "4"
    assert leader.requests["cpu"] == 2000 and worker.requests["cpu"] == 1000  # leaderTemplate is used
    assert leader.gang == worker.gang == Gang("default/vllm-1", 4)
    assert pods["vllm-0"].gang == Gang("default/vllm-0", 4)


def test_gang_can_be_turned_off_and_min_available_lowers_min_member() -> None:
    job = doc("pytorchjob.yaml")
    job["metadata"]["annotations"] = {"hpscaler.io/gang-scheduling": "false"}
    pods, _, _ = load_manifests([job], source="t")
    assert {p.gang for p in pods} == {None}
    job = doc("pytorchjob.yaml")
    job["spec"]["runPolicy"] = {"schedulingPolicy": {"minAvailable": 2}}
    pods, _, _ = load_manifests([job], source="t")
    assert {p.gang for p in pods} == {Gang("ml/bert", 2)}


def test_a_gang_convention_on_the_template_wins() -> None:
    job = doc("pytorchjob.yaml")
    for spec in job["spec"]["pytorchReplicaSpecs"].values():
        spec["template"]["metadata"] = {"annotations": {"scheduling.k8s.io/group-name": "bert-pg"}}
    pods, _, _ = load_manifests([job], source="t")
    assert {p.gang for p in pods} == {Gang("ml/bert-pg", 0)}


def test_suspended_jobs_have_no_pods() -> None:
    job = doc("pytorchjob.yaml")
    job["spec"]["runPolicy"] = {"suspend": True}
    jobset = {**doc("jobset.yaml"), "spec": {**doc("jobset.yaml")["spec"], "suspend": True}}
    pods, _, _ = load_manifests([job, jobset], source="t")
    assert pods == []


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda d: d.update(apiVersion="kubeflow.org/v2"), "apiVersion", "use apiVersion: kubeflow.org/v1"),
        (
            lambda d: d["spec"]["pytorchReplicaSpecs"]["Worker"].update(replicas=-1),
            "spec.pytorchReplicaSpecs.Worker.replicas",
            "non-negative integer",
        ),
        (lambda d: d["spec"].pop("pytorchReplicaSpecs"), "spec.pytorchReplicaSpecs", "is required"),
        (
            lambda d: d["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
                "resources"
            ]["requests"].update(cpu="lots"),
            "spec.pytorchReplicaSpecs.Worker.template.spec.containers[0].resources.requests.cpu",
            "quantity",
        ),
    ],
)
def test_bad_training_jobs_name_the_object_and_the_field(mutate: Any, field: str, words: str) -> None:
    job = doc("pytorchjob.yaml")
    mutate(job)
    with pytest.raises(ManifestError) as caught:
        load_manifests([job], source="jobs.yaml")
    text = str(caught.value)
    assert "jobs.yaml" in text and "PyTorchJob ml/bert" in text and field in text and words in text


def test_lws_and_jobset_errors_name_their_fields() -> None:
    lws = doc("leaderworkerset.yaml")
    lws["spec"]["leaderWorkerTemplate"]["size"] = 0
    with pytest.raises(ManifestError, match=r"spec.leaderWorkerTemplate.size: must be at least 1"):
        load_manifests([lws], source="t")
    jobset = doc("jobset.yaml")
    del jobset["spec"]["replicatedJobs"][1]["name"]
    with pytest.raises(ManifestError, match=r"spec.replicatedJobs\[1\].name: is required"):
        load_manifests([jobset], source="t")


# --- where plan reads from ---


def run_plan(*args: str, stdin: str | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(
        main, ["plan", "--config", str(SEED), *args, "--output", "json"], input=stdin, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def planned(plan: dict[str, Any]) -> list[str]:
    return sorted(
        [*(p for n in plan["newNodes"] for p in n["pods"]), *(u["pod"] for u in plan["unschedulable"])]
    )


def test_plan_reads_a_pytorchjob_and_plans_its_gang_in_one_zone() -> None:
    plan = run_plan("--pods", str(TRAINING / "pytorchjob.yaml"))
    assert plan["schemaVersion"] == 1
    assert planned(plan) == ["ml/bert-master-0", *(f"ml/bert-worker-{i}" for i in range(3))]
    assert len({n["zone"] for n in plan["newNodes"]}) == 1


def test_plan_reads_standard_input_as_yaml_and_as_kubectl_json() -> None:
    text = (TRAINING / "tfjob.yaml").read_text()
    from_yaml = run_plan("--pods", "-", stdin=text)
    as_list = json.dumps({"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(text)]})
    from_json = run_plan("--pods", "-", stdin=as_list)
    assert (
        planned(from_yaml)
        == planned(from_json)
        == ["default/mnist-ps-0", "default/mnist-worker-0", "default/mnist-worker-1"]
    )


def test_plan_reads_every_manifest_file_of_a_folder(tmp_path: Path) -> None:
    for name in ("pytorchjob.yaml", "mpijob.yaml"):
        (tmp_path / name).write_text((TRAINING / name).read_text())
    (tmp_path / "notes.txt").write_text("not a manifest")
    plan = run_plan("--pods", str(tmp_path))
    assert len(planned(plan)) == 4 + 3


def test_an_empty_folder_and_two_stdin_inputs_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["plan", "--pods", str(tmp_path)])
    assert result.exit_code == 2 and "holds no .yaml, .yml or .json files" in result.output
    result = CliRunner().invoke(main, ["plan", "--pods", "-", "--nodes", "-"], input="")
    assert result.exit_code == 2 and "cannot both read standard input" in result.output
    result = CliRunner().invoke(main, ["plan"])
    assert result.exit_code == 2 and "--pods FILE|DIR|- or --live" in result.output


def test_bad_yaml_on_stdin_names_stdin_and_the_line() -> None:
    result = CliRunner().invoke(main, ["plan", "--pods", "-"], input="kind: Pod\n  bad: [\n")
    assert result.exit_code == 2
    assert "<stdin>" in result.output and "line" in result.output


# --- live pods, as the controllers created them ---


def live_pod(name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "labels": labels, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
    }


def test_live_pods_of_training_controllers_are_recognised_as_gangs() -> None:
    kubeflow = {
        "training.kubeflow.org/operator-name": "pytorchjob-controller",
        "training.kubeflow.org/job-name": "bert",
    }
    lws = {"leaderworkerset.sigs.k8s.io/name": "vllm", "leaderworkerset.sigs.k8s.io/group-index": "1"}
    pods, _, _ = load_manifests(
        [
            live_pod("bert-worker-0", kubeflow),
            live_pod("llm-workers-0-0-x7k2p", {"jobset.sigs.k8s.io/jobset-name": "llm"}),
            live_pod("vllm-1-2", lws, {"leaderworkerset.sigs.k8s.io/size": "4"}),
            live_pod(
                "solo-0",
                {**lws, "leaderworkerset.sigs.k8s.io/name": "solo"},
                {"leaderworkerset.sigs.k8s.io/size": "1"},
            ),
            live_pod("opted-out", kubeflow, {"hpscaler.io/gang-scheduling": "false"}),
            live_pod("plain", {"app": "web"}),
        ],
        source="kubectl",
    )
    gangs = {p.name: p.gang for p in pods}
    assert gangs == {
        "bert-worker-0": Gang("ml/bert", 0),  # every member in the input: a pod does not carry the count
        "llm-workers-0-0-x7k2p": Gang("ml/llm", 0),
        "vllm-1-2": Gang("ml/vllm-1", 4),
        "solo-0": None,
        "opted-out": None,
        "plain": None,
    }


def test_expanded_pods_keep_the_objects_count_over_the_labels() -> None:
    """The labels alone would say "all in the input"; the object knows minAvailable."""
    job = doc("pytorchjob.yaml")
    job["spec"]["runPolicy"] = {"schedulingPolicy": {"minAvailable": 3}}
    pods, _, _ = load_manifests([job], source="t")
    assert {p.gang for p in pods} == {Gang("ml/bert", 3)}
