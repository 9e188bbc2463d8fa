"""What ships for production: the systemd unit, the container image recipe, the Kubernetes manifests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

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
