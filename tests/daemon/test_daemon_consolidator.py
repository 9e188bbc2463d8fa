"""Consolidation: the loop on the fakes, and `decide_consolidation` / `allowed_disruptions` on plain data."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from daemon_harness import SPOT_AZ1, Harness, running, wait_for, web_pod, with_pool
from hpscaler.backends.types import DisruptionBudgetStatus
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.state import instance_id_of
from hpscaler.model import (
    ANNOTATION_DO_NOT_DISRUPT,
    LABEL_INSTANCE_TYPE,
    Disruption,
    DisruptionBudget,
    LabelSelector,
    Node,
    NodePool,
    Pod,
)
from hpscaler.scheduling.consolidation import allowed_disruptions, decide_consolidation
from hpscaler.scheduling.types import SchedulingInput

# --- on the fakes ----------------------------------------------------------------------------------


async def ready_nodes(h: Harness, count: int) -> list[Node]:
    """Wait until the world's initial nodes are Ready and the daemon stopped counting them in flight."""
    await wait_for(lambda: sum(n.ready for n in h.world.kubernetes.nodes()) == count, 200)
    await wait_for(lambda: not h.ctx.inflight, 20)
    return h.world.kubernetes.nodes()


def deleted_instances(h: Harness) -> list[str]:
    """Instances whose HyperPod nodes the daemon deleted, in order."""
    by_id = {n.logical_id: n.instance_id for n in h.world.hyperpod.nodes()}
    return [by_id.get(i, i) for ids in h.world.hyperpod.delete_requests for i in ids]


def live_nodes(h: Harness) -> list[str]:
    """Kubernetes nodes whose instance is neither deleted nor gone."""
    deleted = {i for ids in h.world.hyperpod.delete_requests for i in ids}
    alive = {n.instance_id for n in h.world.hyperpod.nodes() if n.logical_id not in deleted}
    return sorted(n.name for n in h.world.kubernetes.nodes() if instance_id_of(n) in alive)


def bind(h: Harness, name: str, node: Node, cpu: int = 1000, **kw: object) -> Pod:
    return h.world.kubernetes.add_pod(web_pod(name, cpu=cpu, node_name=node.name, **kw))  # type: ignore[arg-type]


@pytest.mark.looptime
async def test_empty_nodes_go_after_consolidate_after_down_to_zero(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = with_pool(seed_config, consolidate_after_seconds=60.0, budgets=("100%",))
    async with running(config, catalogue) as h:
        kube = h.world.kubernetes
        for i in range(6):
            kube.add_pod(web_pod(f"w-{i}", cpu=2000))
        await wait_for(lambda: len(h.running_pods()) == 6, 300)
        await wait_for(lambda: not h.ctx.inflight, 20)
        assert len(kube.nodes()) == 2
        await anyio.sleep(120)
        assert not h.world.hyperpod.delete_requests  # busy nodes stay

        for p in kube.pods():
            kube.remove_pod(p.key)  # scaled to zero
        emptied = h.world.clock.now()
        await anyio.sleep(59)
        assert not h.world.hyperpod.delete_requests
        await wait_for(lambda: not live_nodes(h), 60)
        assert h.world.clock.now() - emptied <= 60 + 10 + 15 + 1  # consolidateAfter + poll + validation
        await wait_for(lambda: not kube.nodes() and not h.world.hyperpod.nodes(), 60)
        assert h.ctx.stats.counters["nodes_disrupted:Empty"] == 2
        assert h.world.hyperpod.calls["batch_add_nodes"] == 1
        assert kube.counters.evictions == 0


@pytest.mark.looptime
async def test_an_underutilized_node_is_drained_onto_the_others_and_removed(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = with_pool(seed_config, consolidate_after_seconds=60.0, budgets=("100%",))
    async with running(config, catalogue, initial={SPOT_AZ1: 2}) as h:
        kube = h.world.kubernetes
        first, second = await ready_nodes(h, 2)
        bind(h, "a", first, cpu=3000)
        bind(h, "b", second, cpu=1000)
        await wait_for(lambda: len(live_nodes(h)) == 1, 200)
        assert live_nodes(h) == [first.name]  # the emptier node went
        assert kube.counters.evictions == 1
        await wait_for(lambda: kube.node(second.name) is None, 60)
        pods = kube.pods()
        assert [(p.name, p.phase, p.node_name) for p in pods] == [
            ("a", "Running", first.name),
            ("b-r1", "Running", first.name),
        ]
        assert not kube.kills
        assert h.ctx.stats.counters["nodes_disrupted:Underutilized"] == 1
        assert h.world.hyperpod.calls["batch_add_nodes"] == 0


@pytest.mark.looptime
async def test_do_not_disrupt_keeps_a_node_forever_or_until_its_duration_elapses(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = with_pool(seed_config, consolidate_after_seconds=0.0, budgets=("100%",))
    async with running(config, catalogue, initial={SPOT_AZ1: 2}) as h:
        kube = h.world.kubernetes
        first, second = await ready_nodes(h, 2)
        bind(h, "forever", first, annotations={ANNOTATION_DO_NOT_DISRUPT: "true"})
        bind(h, "for-a-while", second, annotations={ANNOTATION_DO_NOT_DISRUPT: "10m"})
        created = h.world.clock.now()
        await anyio.sleep(590)
        assert live_nodes(h) == sorted([first.name, second.name])
        assert kube.counters.evictions == 0
        decision = await h.daemon.consolidator.decide()
        assert "do-not-disrupt=true" in decision.kept[first.name]
        assert "not yet elapsed" in decision.kept[second.name]

        await wait_for(lambda: live_nodes(h) == [first.name], 40)
        assert h.world.clock.now() - created >= 600
        await wait_for(lambda: kube.node(second.name) is None, 60)
        assert {p.name: p.node_name for p in kube.pods()} == {
            "forever": first.name,
            "for-a-while-r1": first.name,
        }
        await anyio.sleep(300)
        assert live_nodes(h) == [first.name]


@pytest.mark.looptime
@pytest.mark.parametrize("allowed", [False, True])
async def test_running_jobs_are_moved_only_if_the_node_pool_allows_it(
    seed_config: LoadedConfig, catalogue: Catalogue, allowed: bool
) -> None:
    config = with_pool(
        seed_config, consolidate_after_seconds=0.0, budgets=("100%",), consolidate_running_jobs=allowed
    )
    async with running(config, catalogue, initial={SPOT_AZ1: 2}) as h:
        kube = h.world.kubernetes
        first, second = await ready_nodes(h, 2)
        bind(h, "pinned", first, annotations={ANNOTATION_DO_NOT_DISRUPT: "true"})
        bind(h, "train", second, owner_kind="Job", owner_name="train")
        await anyio.sleep(300)
        if allowed:
            assert live_nodes(h) == [first.name]
            assert kube.counters.evictions == 1
        else:
            assert live_nodes(h) == sorted([first.name, second.name])
            assert kube.counters.evictions == 0
            decision = await h.daemon.consolidator.decide()
            assert "Job" in decision.kept[second.name]


@pytest.mark.looptime
async def test_a_budget_of_one_node_disrupts_one_node_at_a_time(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = with_pool(seed_config, consolidate_after_seconds=0.0, budgets=("1",))
    async with running(config, catalogue, initial={SPOT_AZ1: 4}) as h:
        await ready_nodes(h, 4)
        most = 0
        with anyio.move_on_after(600):
            while h.world.hyperpod.nodes():
                consolidating = [r for r in h.ctx.disrupting.values() if r.startswith("consolidation")]
                most = max(most, len(consolidating))
                await anyio.sleep(0.5)
        assert not h.world.hyperpod.nodes() and not h.world.kubernetes.nodes()
        assert most == 1
        assert [len(ids) for ids in h.world.hyperpod.delete_requests] == [1, 1, 1, 1]
        assert h.ctx.stats.counters["nodes_disrupted:Empty"] == 4
