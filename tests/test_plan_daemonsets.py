"""`hpscaler plan` reserves DaemonSet overhead on new nodes, as the daemon and the simulator do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from hpscaler.cli import main

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "config" / "examples"


def daemonset(name: str, cpu: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "c", "image": "agent", "resources": {"requests": {"cpu": cpu, "memory": "128Mi"}}}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container], **spec}},
        },
    }


def plan(tmp_path: Path, *documents: dict[str, Any]) -> dict[str, Any]:
    inflate = yaml.safe_load((REPO / "config" / "workloads" / "inflate.yaml").read_text())
    inflate["spec"]["replicas"] = 35
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump_all([inflate, *documents]))
    result = CliRunner().invoke(
        main, ["plan", "--config", str(SEED), "--pods", str(path), "--output", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_new_nodes_reserve_the_daemonsets_that_would_run_on_them(tmp_path: Path) -> None:
    assert len(plan(tmp_path)["newNodes"]) == 5  # 7 one-CPU pods per ml.c5.2xlarge (7910m)
    overhead = [
        daemonset("health-agent", "500m", tolerations=[{"operator": "Exists"}]),
        daemonset("aws-node", "450m"),
        # Selects GPU nodes only: it reserves nothing on a c5.
        daemonset("gpu-plugin", "2", nodeSelector={"karpenter.k8s.aws/instance-gpu-count": "1"}),
    ]
    result = plan(tmp_path, *overhead)
    assert len(result["newNodes"]) == 6  # 950m less room: 6 pods per node
    assert {n["allocatable"]["cpu"] for n in result["newNodes"]} == {"6960m"}
    assert max(len(n["pods"]) for n in result["newNodes"]) == 6
