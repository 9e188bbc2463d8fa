"""`hpscaler run --config PATH` as its own process: it provisions through the real backends and stops
cleanly (exit code 0, lease released) within its shutdown timeout on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import moto_ext
from aws_harness import CLUSTER, REGION, Admin
from e2e_harness import (
    SHUTDOWN_SECONDS,
    SPOT_GROUP,
    Cloud,
    Setup,
    batch_adds,
    check_batch_add,
    eventually,
    nominated,
    web_pod,
    write_config,
)

from hpscaler.testing import FakeApiServer

HPSCALER = Path(sys.executable).with_name("hpscaler")  # the console script `pip install` made
START_SECONDS = 60.0  # a cold interpreter on a busy 2-core machine imports botocore's models slowly


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines the process wrote (spec.logging.format: json)."""
    events = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


async def test_hpscaler_run_process_provisions_then_exits_0_on_sigterm(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    for name in ("web-0", "web-1", "web-2"):
        kube.create(web_pod(name))
    config = await write_config(tmp_path / "config", admin, cloud, kube)
    log = tmp_path / "hpscaler.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSCALER_", "KUBERNETES_SERVICE_"))}
    with log.open("wb") as out:
        process = await anyio.open_process(
            [str(HPSCALER), "run", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        try:
            (add,) = await eventually(lambda: batch_adds()[:1], START_SECONDS, "BatchAddClusterNodes")
            assert add.from_hpscaler
            assert check_batch_add(add) == {SPOT_GROUP: 2}
            await eventually(lambda: len(nominated(kube)) == 3, what="the pods' Nominated events")
            await eventually(
                lambda: any(e.get("event") == "service_ready" for e in log_events(log)), what="ready"
            )

            process.send_signal(signal.SIGTERM)
            # Exit code 0 below means the stop ended within shutdownSeconds (past it, exit code 1);
            # this bound only keeps a hung process from hanging the suite.
            with anyio.fail_after(SHUTDOWN_SECONDS + 60):
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = log.read_text()
    assert process.returncode == 0, output
    events = {e.get("event"): e for e in log_events(log)}
    assert events["shutdown_requested"]["reason"] == "SIGTERM"
    assert events["service_stopped"]["lease_released"] is True
    assert "shutdown_timeout" not in events
    assert not [e for e in log_events(log) if e.get("level") in ("error", "critical")], output
    assert "Traceback" not in output and "Unclosed" not in output, output
    # Released: renewed for the shortest duration the API allows, so a standby takes over at once.
    lease = kube.get("leases", "hpscaler-leader", "kube-system")
    assert lease is not None and lease["spec"]["leaseDurationSeconds"] == 1
    # Nothing was asked of HyperPod twice, and the nodes are the ones the request added.
    assert len(batch_adds()) == 1
    assert [n.group for n in moto_ext.cluster_nodes(REGION, CLUSTER)] == [SPOT_GROUP] * 2


async def test_hpscaler_run_exits_2_naming_the_fix_on_a_cluster_without_continuous_provisioning(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    moto_ext.set_cluster_settings(REGION, CLUSTER, NodeProvisioningMode=None)  # created without it
    kube.create(web_pod("web-0"))
    config = await write_config(tmp_path / "config", admin, cloud, kube, Setup(cluster_file=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSCALER_", "KUBERNETES_SERVICE_"))}

    with anyio.fail_after(START_SECONDS + 30):
        result = await anyio.run_process(
            [str(HPSCALER), "run", "--config", str(config)], check=False, env=env, stderr=subprocess.STDOUT
        )

    output = result.stdout.decode()
    assert result.returncode == 2, output
    assert (
        f"aws sagemaker update-cluster --cluster-name {CLUSTER} --node-provisioning-mode Continuous" in output
    )
    assert "Traceback" not in output
    assert [r for r in batch_adds() if r.from_hpscaler] == []
