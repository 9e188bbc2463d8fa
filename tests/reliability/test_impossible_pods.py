"""Pods that fit nowhere: a clear reason on the pod, no crash, no endless provisioning loop, and the
pods that can run still do.
"""

from __future__ import annotations

import anyio
import pytest
from daemon_harness import running, wait_for, web_pod

from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.events import ReconcileRan
from hpscaler.model import LABEL_INSTANCE_TYPE, LABEL_ZONE, LabelSelector, Pod, PodAffinityTerm, Requirement

HOUR = 3600.0


def impossible_pods() -> dict[str, Pod]:
    """Each pod is impossible in the embedded example cluster (ml.c5.2xlarge in us-west-2a only)."""
    gpu = Pod("default", "gpus-on-cpu-nodes", {"cpu": 1000, "nvidia.com/gpu": 8}, owner_kind="ReplicaSet")
    pods = [
        web_pod("too-much-cpu", cpu=500_000),
        gpu,
        web_pod("zone-that-does-not-exist", node_selector={LABEL_ZONE: "mars-1a"}),
        web_pod(
            "affinity-to-nothing",
            node_affinity=((Requirement(LABEL_INSTANCE_TYPE, "In", ("ml.p5.48xlarge",)),),),
        ),
        web_pod(
            "needs-a-missing-peer",
            pod_affinity=(PodAffinityTerm(LABEL_ZONE, LabelSelector((("app", "nobody"),))),),
        ),
    ]
    return {p.name: p for p in pods}


@pytest.mark.looptime
async def test_impossible_pods_get_a_reason_and_an_event_once_and_no_nodes(
    config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(config, catalogue) as h:
        kube = h.world.kubernetes
        for pod in impossible_pods().values():
            kube.add_pod(pod)
        for i in range(4):
            kube.add_pod(web_pod(f"fine-{i}", cpu=2000))
        await wait_for(lambda: sum(p.phase == "Running" for p in kube.pods()) == 4, 600)
        rounds_before = h.ctx.stats.events.count(ReconcileRan)
        await anyio.sleep(HOUR)

        assert h.world.hyperpod.calls["batch_add_nodes"] == 1  # the fine pods' nodes, nothing more
        assert len(h.world.hyperpod.nodes()) == 2
        assert h.ctx.stats.events.count(ReconcileRan) > rounds_before + 100  # alive and still looking
        plan = h.daemon.provisioner.last_plan
        assert plan is not None
        reasons = {u.pod.split("/")[1]: u.reason for u in plan.unschedulable}
        assert set(reasons) == set(impossible_pods())
        assert all(reasons.values())
        failed = [e for e in kube.events if e.reason == "FailedScaling"]
        assert sorted(e.pod.split("/")[1] for e in failed) == sorted(impossible_pods())  # once each
        assert all(e.warning and e.message for e in failed)
        for pod in kube.pods():
            if pod.name in reasons:
                assert pod.phase == "Pending" and not pod.node_name
