"""What ships for production: the systemd unit, the container image recipe, the Kubernetes manifests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hpscaler.config import load_config
from hpscaler.config.settings import Settings

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "hpscaler.service"
MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing on the CI machine")
        pytest.skip("systemd-analyze not installed")
    # verify checks that ExecStart exists: point it at this environment's hpscaler script.
    script = Path(sys.executable).parent / "hpscaler"
    unit = tmp_path / "hpscaler.service"
    unit.write_text(UNIT.read_text().replace("/opt/hpscaler/bin/hpscaler", str(script)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hpscaler.service" not in result.stderr, result.stderr


def test_systemd_unit_is_notify_with_watchdog_restart_and_hardening() -> None:
    text = UNIT.read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify" and settings["Restart"] == "on-failure"
    assert int(settings["WatchdogSec"]) > 0
    for key, value in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert settings[key] == value, key


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid_against_the_schemas(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, "1.31.0", strict=True)


def test_deployment_runs_two_non_root_replicas_with_probes_and_requests() -> None:
    docs = list(yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text()))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert pod["serviceAccountName"] == "hpscaler"


def test_dockerfile_uses_a_pinned_base_and_a_non_root_user() -> None:
    text = (REPO / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert bases and all(re.search(r":\d+\.\d+\.\d+-", b) for b in bases), bases
    (user,) = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert not user.startswith("0") and user != "root"


def _deployment_docs() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    return {d["kind"]: d for d in docs if d}


def _config_map_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "etc-hpscaler"
    directory.mkdir()
    for name, text in _deployment_docs()["ConfigMap"]["data"].items():
        (directory / name).write_text(text)
    return directory


def test_the_config_map_is_a_complete_configuration_for_hpscaler_run(tmp_path: Path) -> None:
    config = load_config(_config_map_dir(tmp_path))  # raises ConfigError listing every problem
    settings = config.settings
    assert (settings.backends.kubernetes, settings.backends.aws) == ("kubernetes", "aws")
    assert config.node_pools and config.node_classes and config.instance_groups
    pod = _deployment_docs()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (port,) = container["ports"]
    # The kubelet probes the pod IP: the health server must listen there, on the probed port.
    assert settings.health.bind == "0.0.0.0" and settings.health.port == port["containerPort"]
    assert container["livenessProbe"]["httpGet"]["port"] == port["name"]
    assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
    assert settings.shutdown_seconds < pod["terminationGracePeriodSeconds"]
    assert {"mountPath": "/etc/hpscaler", "name": "config", "readOnly": True} in container["volumeMounts"]
    assert container["args"] == ["run", "--config", "/etc/hpscaler"]


def test_a_disruption_budget_keeps_one_replica_through_drains() -> None:
    docs = _deployment_docs()
    budget, deployment = docs["PodDisruptionBudget"], docs["Deployment"]
    assert budget["spec"]["maxUnavailable"] == 1 < deployment["spec"]["replicas"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_lease_rbac_matches_the_default_lease_settings() -> None:
    rbac = [d for d in yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "rbac.yaml").read_text()) if d]
    (role,) = [d for d in rbac if d["kind"] == "Role"]
    named = [r for r in role["rules"] if "resourceNames" in r]
    defaults = Settings().kubernetes
    assert role["metadata"]["namespace"] == defaults.namespace
    assert named and named[0]["resourceNames"] == [defaults.lease_name]
    assert {"get", "update"} <= set(named[0]["verbs"])  # renew and release are updates


def test_systemd_unit_stops_within_its_timeout_and_reloads_with_sighup() -> None:
    settings = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert int(settings["TimeoutStopSec"]) > Settings().shutdown_seconds
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert settings["NotifyAccess"] == "main"
    assert int(settings["TimeoutStartSec"]) > 10  # the first reconcile comes at most 10 s after sync
    assert settings["ExecStart"].endswith("hpscaler run --config /etc/hpscaler")


def test_dockerfile_is_multi_stage_and_runs_hpscaler_as_the_deployment_user() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM\s", text, flags=re.M)) == 2  # build tools stay in the first stage
    (user,) = re.findall(r"^USER\s+(\d+):(\d+)", text, flags=re.M)
    pod = _deployment_docs()["Deployment"]["spec"]["template"]["spec"]
    assert (int(user[0]), int(user[1])) == (
        pod["securityContext"]["runAsUser"],
        pod["securityContext"]["runAsGroup"],
    )
    assert re.search(r'^ENTRYPOINT \["hpscaler"\]', text, flags=re.M)
    assert re.search(r"^EXPOSE 8080$", text, flags=re.M)


def test_agent_daemonset_reaches_imds_and_may_patch_only_its_own_node() -> None:
    docs = {
        d["kind"]: d for d in yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "agent.yaml").read_text())
    }
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    # HyperPod instances' metadata options belong to the service: one hop, through the host network.
    assert pod["hostNetwork"] is True and pod["serviceAccountName"] == "hpscaler-agent"
    (container,) = pod["containers"]
    assert container["args"][0] == "agent"
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in container[
        "env"
    ]
    (rule,) = docs["ClusterRole"]["rules"]
    assert (rule["resources"], sorted(rule["verbs"])) == (["nodes"], ["get", "patch"])
    policy = docs["ValidatingAdmissionPolicy"]["spec"]
    expressions = " ".join(v["expression"] for v in policy["validations"])
    assert (
        "authentication.kubernetes.io/node-name" in expressions
        and "object.spec == oldObject.spec" in expressions
    )
    assert (
        docs["ValidatingAdmissionPolicyBinding"]["spec"]["policyName"]
        == docs["ValidatingAdmissionPolicy"]["metadata"]["name"]
    )


QUEUE_TEMPLATE = REPO / "deploy" / "interruption-queue.yaml"


def test_interruption_queue_template_passes_cfn_lint() -> None:
    from cfnlint.api import lint

    matches = lint(QUEUE_TEMPLATE.read_text())  # the rules `cfn-lint FILE` applies
    assert not matches, "\n".join(str(m) for m in matches)
    # The linter does catch mistakes in this kind of template (the check is not vacuous).
    broken = QUEUE_TEMPLATE.read_text().replace("SqsManagedSseEnabled: true", "SqsManagedSseEnabled: maybe")
    assert lint(broken)


def test_interruption_queue_routes_only_events_hpscaler_understands() -> None:
    from cfnlint.decode import decode

    from hpscaler.aws.eventbridge import parse_message

    template, errors = decode(str(QUEUE_TEMPLATE))
    assert not errors and template is not None
    resources = template["Resources"]
    queue = resources["InterruptionQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    (allow, _deny) = resources["InterruptionQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert "events.amazonaws.com" in allow["Principal"]["Service"]
    rules = [r["Properties"]["EventPattern"] for r in resources.values() if r["Type"] == "AWS::Events::Rule"]
    routed = {(p["source"][0], p["detail-type"][0]) for p in rules}
    assert routed == {
        ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
        ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
        ("aws.ec2", "EC2 Instance State-change Notification"),
        ("aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning"),
        ("aws.health", "AWS Health Event"),
        ("aws.sagemaker", "SageMaker HyperPod Cluster Event"),
        ("aws.sagemaker", "SageMaker HyperPod Cluster State Change"),
    }
    for source, detail_type in routed:
        body = {"source": source, "detail-type": detail_type, "time": "2026-01-01T00:00:00Z", "detail": {}}
        (parsed,) = parse_message(json.dumps(body), "m", "r")[:1]
        # Known shapes: an empty detail is reported as missing fields, never as an unknown detail-type.
        assert "unknown detail-type" not in getattr(parsed, "error", "")
