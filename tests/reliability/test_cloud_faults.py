"""AWS misbehaving on every call: the cluster converges, with no doubled capacity and nothing lost.

Every call the daemon makes to HyperPod, EC2 (placement scores) and SQS fails at random (throttling,
5xx, timeouts, connection resets) and mutating calls sometimes take effect and lose their answer.
Seeded: each seed is one reproducible sequence of faults.
"""

from __future__ import annotations

import math

import anyio
import pytest
from daemon_harness import running, wait_for
from faulty import Ledger, add_pods, all_running, faulty_daemon, launched, tainted_live_nodes

from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.testing.chaos import Chaos, FaultRates

AWS_FAULTS = {
    "hyperpod": FaultRates(fail=0.3, lost_answer=0.2),
    "placement": FaultRates(fail=0.5),
    "interruptions": FaultRates(fail=0.3, lost_answer=0.2),
}
PODS = 20  # 2-CPU pods: three fit on an ml.c5.2xlarge, so 7 nodes
NODES = math.ceil(PODS / 3)


@pytest.mark.looptime
@pytest.mark.parametrize("seed", range(6))
async def test_a_burst_under_aws_faults_gets_exactly_the_nodes_it_needs(
    config: LoadedConfig, catalogue: Catalogue, seed: int
) -> None:
    async with running(config, catalogue, start_daemon=False) as h:
        # The first BatchAddClusterNodes adds the nodes and its answer never comes back.
        lost = {"batch_add_nodes": 1}
        chaos = Chaos(seed, h.world.clock.now, rates=AWS_FAULTS, lose_answers=lost)
        await h.tg.start(faulty_daemon(h, chaos).run)
        add_pods(h, PODS)
        await wait_for(lambda: all_running(h, PODS), 900)
        await anyio.sleep(600)  # long enough for any stray second request to show
        faults = chaos.counts()
        assert faults["lost-answer"] == 1
        assert sum(faults[c] for c in ("ThrottlingException", "InternalFailure", "ConnectionReset")) > 0
        assert launched(h) == NODES, chaos.log  # adopted from ListClusterNodes, not requested again
        assert len(h.world.kubernetes.nodes()) == NODES


@pytest.mark.looptime
@pytest.mark.parametrize("seed", range(4))
async def test_interruptions_under_aws_faults_replace_each_node_once_and_evict_each_pod_once(
    config: LoadedConfig, catalogue: Catalogue, seed: int
) -> None:
    async with running(config, catalogue, start_daemon=False) as h:
        ledger = Ledger()
        ledger.wrap_evictions(h.world.kubernetes)
        lost = {"batch_add_nodes": 1, "acknowledge": 1, "evict_pod": 1, "taint_node": 1}
        chaos = Chaos(seed, h.world.clock.now, rates=AWS_FAULTS, lose_answers=lost)
        await h.tg.start(faulty_daemon(h, chaos).run)
        add_pods(h, PODS)
        await wait_for(lambda: all_running(h, PODS), 900)
        await wait_for(lambda: launched(h) == NODES, 600)
        victims = [n.instance_id for n in h.world.hyperpod.nodes()][:2]
        for instance in victims:
            h.world.hyperpod.interrupt(instance, notice=True)
        await wait_for(lambda: len(h.world.interruptions) == 0, 900)  # every notice handled and deleted
        await wait_for(lambda: all_running(h, PODS), 900)
        await anyio.sleep(300)
        assert launched(h) == NODES + len(victims), chaos.log
        assert ledger.evictions and max(ledger.evictions.values()) == 1, ledger.evictions
        assert not [k for k in ledger.evictions if k.endswith("(again)")]
        assert tainted_live_nodes(h) == []
        assert all_running(h, PODS)


@pytest.mark.looptime
@pytest.mark.parametrize("seed", range(4))
async def test_scale_to_zero_under_aws_faults_removes_every_node_and_leaves_no_taint(
    config: LoadedConfig, catalogue: Catalogue, seed: int
) -> None:
    async with running(config, catalogue, start_daemon=False) as h:
        lost = {"batch_delete_nodes": 1, "taint_node": 2, "evict_pod": 1}
        chaos = Chaos(seed, h.world.clock.now, rates=AWS_FAULTS, lose_answers=lost)
        await h.tg.start(faulty_daemon(h, chaos).run)
        add_pods(h, PODS)
        await wait_for(lambda: all_running(h, PODS), 900)
        for pod in h.world.kubernetes.pods():
            h.world.kubernetes.remove_pod(pod.key)
        await wait_for(lambda: not h.world.hyperpod.nodes() and not h.world.kubernetes.nodes(), 1800)
        assert launched(h) == NODES
        assert chaos.counts()["lost-answer"] >= 2


@pytest.mark.looptime
async def test_capacity_that_vanishes_mid_burst_falls_back_and_converges(
    config: LoadedConfig, catalogue: Catalogue
) -> None:
    """Spot capacity for 3 nodes only: the rest fail to launch, are cancelled and go On-Demand."""
    from daemon_harness import C5_2X, ON_DEMAND_AZ1, SPOT_AZ1, ZONE_A

    from hpscaler.model import CapacityType

    spot = (C5_2X, ZONE_A, CapacityType.SPOT)
    async with running(config, catalogue, start_daemon=False, capacity={spot: 3}) as h:
        chaos = Chaos(7, h.world.clock.now, rates=AWS_FAULTS)
        await h.tg.start(faulty_daemon(h, chaos).run)
        add_pods(h, PODS)
        await wait_for(lambda: all_running(h, PODS), 1800)
        groups = [h.group_of(p) for p in h.running_pods()]
        assert set(groups) == {SPOT_AZ1, ON_DEMAND_AZ1}
        running_nodes = [n for n in h.world.hyperpod.nodes() if n.status.value == "Running"]
        assert sum(n.group == SPOT_AZ1 for n in running_nodes) == 3
        await anyio.sleep(600)
        running_nodes = [n for n in h.world.hyperpod.nodes() if n.status.value == "Running"]
        assert len(running_nodes) == NODES  # the failed Spot launches were not kept as well
