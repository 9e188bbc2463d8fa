"""Node lifecycle on the fakes: NodePool expireAfter (replace, then drain) and rebalance
recommendations as an early warning (pre-provision, no eviction).
"""

from __future__ import annotations

import anyio
import pytest
from daemon_harness import Harness, running, wait_for, web_pod, with_pool, with_settings

from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.events import InterruptionOutcome, InterruptionReceived, NodeDisrupted
from hpscaler.daemon.interruption import REBALANCE_TAINT
from hpscaler.daemon.state import instance_id_of

HOUR = 3600.0


async def busy_nodes(h: Harness, pods: int = 6) -> list[str]:
    """`pods` two-CPU pods running (three a node); returns the node names."""
    for i in range(pods):
        h.world.kubernetes.add_pod(web_pod(f"w-{i}", cpu=2000))
    await wait_for(lambda: len(h.running_pods()) == pods, 300)
    await wait_for(lambda: not h.ctx.inflight, 60)
    return [n.name for n in h.world.kubernetes.nodes()]


@pytest.mark.looptime
async def test_expired_nodes_are_replaced_before_their_pods_are_evicted(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = with_pool(seed_config, expire_after_seconds=2 * HOUR, budgets=("100%",))
    async with running(config, catalogue) as h:
        kube = h.world.kubernetes
        old = await busy_nodes(h)
        assert len(old) == 2
        adds = h.world.hyperpod.calls["batch_add_nodes"]
        await anyio.sleep(2 * HOUR - 300)
        assert [n.name for n in kube.nodes()] == old  # not before expireAfter
        assert kube.counters.evictions == 0

        await wait_for(lambda: kube.counters.evictions > 0, 600)
        # By the first eviction the replacements were requested (and had time to join).
        assert h.world.hyperpod.calls["batch_add_nodes"] > adds
        await wait_for(lambda: not set(old) & {n.name for n in kube.nodes()}, 1800)
        assert len(h.running_pods()) == 6
        assert all(p.node_name not in old for p in h.running_pods())
        assert h.ctx.stats.events.count(NodeDisrupted, reason="Expired") == 2
        assert kube.counters.pods_killed == 0  # every pod left gracefully


@pytest.mark.looptime
async def test_a_rebalance_recommendation_preprovisions_without_evicting(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = with_settings(seed_config, interruption={"rebalance_as_warning": True})
    async with running(config, catalogue) as h:
        kube = h.world.kubernetes
        await busy_nodes(h)
        node = max(kube.nodes(), key=lambda n: (len(n.pods), n.name))
        adds = h.world.hyperpod.calls["batch_add_nodes"]
        h.world.hyperpod.rebalance(instance_id_of(node))
        await wait_for(lambda: len(h.world.interruptions) == 0, 60)
        tainted = kube.node(node.name)
        assert tainted is not None and REBALANCE_TAINT in tainted.taints
        assert h.world.hyperpod.calls["batch_add_nodes"] == adds + 1  # room for its pods, ahead of time
        assert h.ctx.stats.events.count(InterruptionOutcome, outcome="rebalance-preprovisioned") == 1
        await anyio.sleep(600)
        assert kube.counters.evictions == 0  # only a real notice drains
        assert {p.node_name for p in h.running_pods()} >= {node.name}


@pytest.mark.looptime
async def test_a_rebalance_recommendation_is_only_logged_when_not_taken_as_a_warning(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = with_settings(seed_config, interruption={"rebalance_as_warning": False})
    async with running(config, catalogue) as h:
        kube = h.world.kubernetes
        await busy_nodes(h)
        node = kube.nodes()[0]
        adds = h.world.hyperpod.calls["batch_add_nodes"]
        h.world.hyperpod.rebalance(instance_id_of(node))
        await wait_for(lambda: len(h.world.interruptions) == 0, 60)
        await anyio.sleep(300)
        untouched = kube.node(node.name)
        assert untouched is not None and REBALANCE_TAINT not in untouched.taints
        assert h.world.hyperpod.calls["batch_add_nodes"] == adds
        assert h.ctx.stats.events.count(InterruptionReceived, kind="rebalance-recommendation") == 1
