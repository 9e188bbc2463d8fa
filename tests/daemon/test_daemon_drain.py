"""Draining on the fakes: PodDisruptionBudgets, deadlines, checkpoint acknowledgements; `plan_eviction`."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import anyio
import pytest
from daemon_harness import SPOT_AZ1, Harness, running, wait_for, web_pod, with_pool, with_settings

from hpscaler.backends.types import EvictionOutcome
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.drain import (
    ACK_ANNOTATION,
    CHECKPOINT_ANNOTATION,
    DEADLINE_ANNOTATION,
    DISRUPTED_TAINT,
    EvictionPlan,
    plan_eviction,
    rfc3339,
)
from hpscaler.daemon.events import PdbOverridden
from hpscaler.daemon.state import instance_id_of
from hpscaler.model import LabelSelector, Node, Pod

MARGIN = 10.0
CHECKPOINTING = {CHECKPOINT_ANNOTATION: "true"}


# --- plan_eviction, the pure timing rule ----------------------------------------------------------


def pod(grace: int = 30, **annotations: str) -> Pod:
    return Pod("default", "p", {"cpu": 100}, annotations=dict(annotations), termination_grace_seconds=grace)


def test_without_a_deadline_pods_are_evicted_now_with_their_full_grace_period() -> None:
    assert plan_eviction(pod(45), 100.0, None, MARGIN, True) == EvictionPlan(100.0, 45)
    assert plan_eviction(pod(45, **CHECKPOINTING), 100.0, None, MARGIN, True) == EvictionPlan(100.0, 45)


def test_with_a_deadline_ordinary_pods_go_now_and_keep_their_grace_period() -> None:
    assert plan_eviction(pod(30), 0.0, 120.0, MARGIN, True) == EvictionPlan(0.0, 30, 80.0)


def test_checkpointing_pods_wait_for_the_acknowledgement_or_the_last_moment() -> None:
    waiting = plan_eviction(pod(30, **CHECKPOINTING), 0.0, 120.0, MARGIN, True)
    assert waiting == EvictionPlan(80.0, 30, 80.0)  # deadline - grace - margin
    acknowledged = pod(30, **CHECKPOINTING, **{ACK_ANNOTATION: "2026-01-01T00:00:20Z"})
    assert plan_eviction(acknowledged, 20.0, 120.0, MARGIN, True) == EvictionPlan(20.0, 30, 80.0)
    # Past the last moment it is evicted at once, with what is left of the grace period.
    assert plan_eviction(pod(30, **CHECKPOINTING), 95.0, 120.0, MARGIN, True) == EvictionPlan(95.0, 15, 80.0)


def test_checkpoint_requests_are_ignored_when_acknowledgements_are_disabled() -> None:
    assert plan_eviction(pod(30, **CHECKPOINTING), 0.0, 120.0, MARGIN, False) == EvictionPlan(0.0, 30, 80.0)
    assert plan_eviction(pod(30, **{CHECKPOINT_ANNOTATION: "no"}), 0.0, 120.0, MARGIN, True).evict_at == 0.0


def test_a_notice_shorter_than_the_grace_period_shrinks_the_grace_period() -> None:
    assert plan_eviction(pod(300), 0.0, 120.0, MARGIN, True) == EvictionPlan(0.0, 110, -190.0)
    assert plan_eviction(pod(30), 115.0, 120.0, MARGIN, True).grace_seconds == 0


# --- on the fakes ----------------------------------------------------------------------------------


async def running_on_one_node(h: Harness, pods: list[Pod]) -> Node:
    """Start the pods (3 fit a node), wait until they run, return their node."""
    for p in pods:
        h.world.kubernetes.add_pod(p)
    await wait_for(lambda: len(h.running_pods()) == len(pods), 300)
    await wait_for(lambda: not h.ctx.inflight, 20)
    (node,) = h.world.kubernetes.nodes()
    return node


def record_evictions(h: Harness) -> dict[str, list[tuple[float, EvictionOutcome]]]:
    """Wrap the fake's Eviction API to log every call's time and outcome per pod."""
    calls: dict[str, list[tuple[float, EvictionOutcome]]] = {}
    evict: Callable[..., object] = h.world.kubernetes.evict_pod

    async def recording(namespace: str, name: str, grace_seconds: int | None = None) -> EvictionOutcome:
        outcome = await evict(namespace, name, grace_seconds)  # type: ignore[misc]
        calls.setdefault(f"{namespace}/{name}", []).append((h.world.clock.now(), outcome))
        return outcome  # type: ignore[no-any-return]

    h.world.kubernetes.evict_pod = recording  # type: ignore[method-assign]
    return calls


def web_pods(count: int, **kw: object) -> list[Pod]:
    return [web_pod(f"w-{i}", cpu=2000, **kw) for i in range(count)]  # type: ignore[arg-type]


@pytest.mark.looptime
async def test_pdb_blocked_evictions_back_off_and_proceed_once_the_budget_allows(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        kube = h.world.kubernetes
        node = await running_on_one_node(h, web_pods(3))
        kube.add_pdb("default", "web", LabelSelector((("app", "web"),)), min_available=0)
        kube.pin_disruptions_allowed("default", "web", 0)
        calls = record_evictions(h)
        noticed = h.world.clock.now()
        h.world.hyperpod.interrupt(instance_id_of(node))
        await anyio.sleep(20)
        attempts = [t - noticed for t, outcome in calls["default/w-0"]]
        assert all(outcome == "blocked" for _, outcome in calls["default/w-0"])
        gaps = [round(b - a, 1) for a, b in itertools.pairwise(attempts)]
        assert gaps[:4] == [1.0, 2.0, 4.0, 8.0], attempts  # exponential backoff

        kube.pin_disruptions_allowed("default", "web", 3)
        await wait_for(lambda: len(kube.evicted_at) == 3, 11)
        assert all(calls[k][-1][1] == "evicted" for k in calls)
        assert kube.counters.deletions == 0  # the budget was honoured, not bypassed
        await wait_for(lambda: kube.node(node.name) is None, 120)
        assert not kube.kills


@pytest.mark.looptime
async def test_a_budget_that_never_allows_is_bypassed_gracefully_at_the_last_moment(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        kube = h.world.kubernetes
        node = await running_on_one_node(h, web_pods(3))
        kube.add_pdb("default", "web", LabelSelector((("app", "web"),)), min_available=3)
        calls = record_evictions(h)
        noticed = h.world.clock.now()
        h.world.hyperpod.interrupt(instance_id_of(node))
        last_moment = noticed + 120 - 30 - MARGIN
        await wait_for(lambda: kube.counters.deletions == 3, 100)
        deleted = h.world.clock.now()
        assert last_moment <= deleted <= last_moment + 1
        assert all(outcome == "blocked" for k in calls for _, outcome in calls[k])
        assert h.ctx.stats.events.count(PdbOverridden) == 3
        await wait_for(lambda: kube.node(node.name) is None, 60)
        assert not kube.kills  # they stopped within their grace period instead of dying with the node


@pytest.mark.looptime
async def test_checkpointing_pods_are_evicted_on_acknowledgement_or_at_the_last_moment(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = with_settings(seed_config, interruption={"safety_margin_seconds": MARGIN})
    async with running(config, catalogue) as h:
        kube, queue = h.world.kubernetes, h.world.interruptions
        pods = [*web_pods(2, annotations=dict(CHECKPOINTING)), web_pod("plain", cpu=2000)]
        node = await running_on_one_node(h, pods)
        noticed = h.world.clock.now()
        h.world.hyperpod.interrupt(instance_id_of(node))
        deadline = noticed + 120

        await anyio.sleep(1)
        for key in ("default/w-0", "default/w-1"):
            annotated = kube.pod(key)
            assert annotated is not None
            assert annotated.annotations[DEADLINE_ANNOTATION] == rfc3339(deadline)
        assert set(kube.evicted_at) == {"default/plain"}  # it asked for no time to checkpoint

        await anyio.sleep(19)
        assert set(kube.evicted_at) == {"default/plain"}
        await kube.annotate_pod("default", "w-0", {ACK_ANNOTATION: "saved"})
        acked = h.world.clock.now()
        await wait_for(lambda: "default/w-0" in kube.evicted_at, 2)
        assert kube.evicted_at["default/w-0"] - acked <= 1.0
        assert "default/w-1" not in kube.evicted_at

        await wait_for(lambda: "default/w-1" in kube.evicted_at, 70)
        assert kube.evicted_at["default/w-1"] == pytest.approx(deadline - 30 - MARGIN, abs=0.5)
        await wait_for(lambda: kube.node(node.name) is None, 60)
        assert not kube.kills
        # Handling took longer than the queue's visibility timeout; the notice is still deleted
        # with the receipt of its latest delivery.
        await wait_for(lambda: len(queue) == 0, 30)
        assert queue.stale_acknowledgements == 0


@pytest.mark.looptime
async def test_a_consolidation_drain_blocked_for_five_minutes_gives_up_and_keeps_the_node(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = with_pool(seed_config, consolidate_after_seconds=0.0, budgets=("100%",))
    async with running(config, catalogue, initial={SPOT_AZ1: 2}) as h:
        kube = h.world.kubernetes
        await wait_for(lambda: sum(n.ready for n in kube.nodes()) == 2, 200)
        await wait_for(lambda: not h.ctx.inflight, 20)
        big, small = kube.nodes()
        kube.add_pod(web_pod("big", cpu=3000, node_name=big.name))
        kube.add_pod(web_pod("small", cpu=1000, node_name=small.name))
        # The budget allowed a disruption when consolidation chose the node, but by the time it
        # drains, evictions are refused (another budget, or a rollout using up the allowance).
        refused: list[float] = []

        async def refuse(namespace: str, name: str, grace_seconds: int | None = None) -> EvictionOutcome:
            refused.append(h.world.clock.now())
            return "blocked"

        kube.evict_pod = refuse  # type: ignore[method-assign]
        await wait_for(lambda: DISRUPTED_TAINT in kube.node(small.name).taints, 60)  # type: ignore[union-attr]
        tainted = h.world.clock.now()
        await wait_for(lambda: DISRUPTED_TAINT not in kube.node(small.name).taints, 400)  # type: ignore[union-attr]
        assert h.world.clock.now() - tainted >= 300
        assert len(refused) > 30  # retried all along, at most 10 s apart
        assert not h.world.hyperpod.delete_requests
        pod = kube.pod("default/small")
        assert pod is not None and pod.node_name == small.name and not kube.is_terminating(pod.key)
        assert small.name not in h.ctx.disrupting
