"""Scenario workloads: pod fields like a pod spec, embedded job manifests, and the GPU example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hpscaler.model import Gang
from hpscaler.simulate.runner import simulate
from hpscaler.simulate.scenario import ScenarioError, Workload, load_scenario
from hpscaler.simulate.workloads import submission, template_pod, workload_pods

REPO = Path(__file__).resolve().parents[2]
GPU = REPO / "config" / "examples" / "gpu"
GPU_SCENARIO = GPU / "scenarios" / "gpu-spot-fallback.yaml"
TOLERATE_GPU = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def write_scenario(tmp_path: Path, workloads: list[dict[str, Any]], duration: str = "30m") -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "hpscaler.io/v1alpha1",
                "kind": "Scenario",
                "metadata": {"name": "t"},
                "spec": {"config": str(GPU), "duration": duration, "workloads": workloads},
            }
        )
    )
    return path


def test_the_gpu_example_trains_on_spot_and_falls_back_to_p5_on_demand() -> None:
    report = simulate(load_scenario(GPU_SCENARIO))
    assert report["violations"] == []
    assert report["podsScheduled"] == report["podsTotal"] and report["podsPendingAtEnd"] == 0
    launched = report["nodesLaunched"]
    assert launched["gpu-spot-g5-az1"] == {"spot": launched["gpu-spot-g5-az1"]["spot"]}
    assert launched["gpu-ondemand-p5-az1"]["on-demand"] >= 1  # the fallback once g5 Spot ran dry
    assert report["podsKilledBeforeGracePeriod"] == 0 and report["interruptionsHandled"] == 1
    assert report["cost"] < report["costAllOnDemand"]


def test_a_tainted_gpu_pool_needs_the_toleration_in_a_scenario_too(tmp_path: Path) -> None:
    gpu_pod = {"name": "infer", "replicas": 2, "cpu": "8", "memory": "32Gi", "gpu": 1}
    tolerated = simulate(load_scenario(write_scenario(tmp_path, [{**gpu_pod, "tolerations": TOLERATE_GPU}])))
    assert tolerated["podsScheduled"] == 2 and tolerated["violations"] == []
    untolerated = simulate(load_scenario(write_scenario(tmp_path, [gpu_pod])))
    assert untolerated["podsScheduled"] == 0 and untolerated["podsPendingAtEnd"] == 2
    assert untolerated["nodesLaunched"] == {}


def test_pod_fields_are_parsed_like_a_pod_spec() -> None:
    workload = Workload.model_validate(
        {
            "name": "w",
            "replicas": 1,
            "gpu": 2,
            "nodeSelector": {"workload-class": "gpu"},
            "tolerations": TOLERATE_GPU,
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "topology.kubernetes.io/zone",
                                        "operator": "In",
                                        "values": ["us-west-2b"],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "w"}},
                }
            ],
        }
    )
    pod = template_pod(workload)
    assert pod.requests["nvidia.com/gpu"] == 2
    assert pod.node_selector == {"workload-class": "gpu"}
    assert [t.key for t in pod.tolerations] == ["nvidia.com/gpu"]
    assert [r.values for term in pod.node_affinity for r in term] == [("us-west-2b",)]
    assert [s.topology_key for s in pod.topology_spread] == ["topology.kubernetes.io/zone"]


def test_a_bad_pod_field_is_reported_at_load_time_with_its_path(tmp_path: Path) -> None:
    bad = [{"name": "w", "replicas": 1, "tolerations": [{"key": "k", "operator": "Sometimes"}]}]
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write_scenario(tmp_path, bad))
    text = str(caught.value)
    assert (
        "spec.workloads.0 (w)" in text
        and "spec.tolerations[0].operator" in text
        and "Equal or Exists" in text
    )


def test_training_kinds_are_gangs_by_default() -> None:
    def gang(**fields: Any) -> bool:
        return Workload.model_validate({"name": "w", "replicas": 2, **fields}).is_gang

    assert gang(kind="PyTorchJob") and gang(kind="TFJob") and gang(kind="MPIJob")
    assert not gang(kind="Job") and not gang()
    assert not gang(kind="PyTorchJob", gang=False) and gang(kind="Job", gang=True)


def test_a_manifest_workload_runs_the_pods_its_controller_creates(tmp_path: Path) -> None:
    lws = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": "serve"},
        "spec": {
            "replicas": 2,
            "leaderWorkerTemplate": {
                "size": 2,
                "workerTemplate": {
                    "spec": {
                        "tolerations": TOLERATE_GPU,
                        "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 4}}}],
                    }
                },
            },
        },
    }
    path = write_scenario(tmp_path, [{"name": "serve", "manifest": lws}])
    report = simulate(load_scenario(path))
    assert report["podsScheduled"] == 4 and report["violations"] == []
    assert sum(sum(by.values()) for by in report["nodesLaunched"].values()) == 4  # 4 GPUs per g5.12xlarge


def test_a_manifest_file_is_read_relative_to_the_scenario() -> None:
    scenario = load_scenario(GPU_SCENARIO)
    (finetune,) = [w for w in scenario.workloads if w.name == "llama-finetune"]
    pods = workload_pods(finetune, GPU_SCENARIO.parent)
    assert sorted(p.name for p in pods) == [
        "llama-finetune-master-0",
        *(f"llama-finetune-worker-{i}" for i in range(3)),
    ]
    assert {p.gang for p in pods} == {Gang("default/llama-finetune", 4)}
    assert all(p.owner_kind == "PyTorchJob" for p in pods)


def test_a_repeated_manifest_gets_fresh_names_and_gangs_each_time() -> None:
    scenario = load_scenario(GPU_SCENARIO)
    (finetune,) = [w for w in scenario.workloads if w.name == "llama-finetune"]
    pods = workload_pods(finetune, GPU_SCENARIO.parent)
    second = submission(pods, 1, repeated=True)
    assert {p.name for p in second} == {f"{p.name}-2" for p in pods}
    assert {p.gang for p in second} == {Gang("default/llama-finetune-2", 4)}
    assert {p.owner_name for p in second} == {"llama-finetune-2"}
    assert pods[0].name == "llama-finetune-master-0"  # the templates are not changed


@pytest.mark.parametrize(
    ("workload", "words"),
    [
        ({"name": "w", "manifest": {"kind": "Pod"}, "cpu": "2"}, "manifest describes the pods; remove cpu"),
        ({"name": "w", "manifest": "missing.yaml"}, "cannot read"),
        (
            {
                "name": "w",
                "manifest": {
                    "apiVersion": "kubeflow.org/v1",
                    "kind": "PyTorchJob",
                    "metadata": {"name": "j"},
                },
            },
            "spec.pytorchReplicaSpecs: is required",
        ),
        (
            {"name": "w", "manifest": {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}},
            "allocatable",
        ),
    ],
)
def test_bad_manifests_are_reported_with_the_workload(
    tmp_path: Path, workload: dict[str, Any], words: str
) -> None:
    with pytest.raises(ScenarioError, match=r"spec\.workloads") as caught:
        load_scenario(write_scenario(tmp_path, [workload]))
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "a0: &a0 [x]\n"
            + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)),
            "aliases",
        ),
        ("kind: Pod\nmetadata: {name: [x\n", "invalid YAML at line 3"),
        ("kind: Pod\n---\nkind: Pod\n", "does not hold one Kubernetes object"),
    ],
    ids=["billion-laughs", "syntax", "two-documents"],
)
def test_a_bad_manifest_file_is_refused_naming_it(tmp_path: Path, text: str, words: str) -> None:
    """A workload's manifest file is read with the manifest bounds, as `plan` reads one."""
    (tmp_path / "job.yaml").write_text(text)
    with pytest.raises(ScenarioError, match=r"job\.yaml") as caught:
        load_scenario(write_scenario(tmp_path, [{"name": "j", "manifest": "job.yaml"}]))
    assert words in str(caught.value)
