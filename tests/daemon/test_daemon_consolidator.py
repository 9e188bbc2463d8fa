"""Consolidation: the loop on the fakes, and `decide_consolidation` / `allowed_disruptions` on plain data."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from daemon_harness import SPOT_AZ1, Harness, running, wait_for, web_pod, with_pool

from hpscaler.backends.types import DisruptionBudgetStatus
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.events import NodeDisrupted
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
from hpscaler.scheduling.disruption import allowed_disruptions, decide_consolidation
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
        assert h.ctx.stats.events.count(NodeDisrupted, reason="Empty") == 2
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
        assert h.ctx.stats.events.count(NodeDisrupted, reason="Underutilized") == 1
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

        # poll (10 s) + validation (15 s) + the pod's grace period (30 s) after the 10 minutes
        await wait_for(lambda: live_nodes(h) == [first.name], 70)
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
        assert h.ctx.stats.events.count(NodeDisrupted, reason="Empty") == 4


# --- decide_consolidation and allowed_disruptions on plain data -------------------------------------

GIB = 1024**3
NOW = 10_000.0


def pool(**kw: object) -> NodePool:
    disruption = Disruption(
        consolidation_policy=kw.pop("policy", "WhenEmptyOrUnderutilized"),  # type: ignore[arg-type]
        consolidate_after_seconds=kw.pop("after", 0.0),  # type: ignore[arg-type]
        budgets=tuple(DisruptionBudget(n) for n in kw.pop("budgets", ("100%",))),  # type: ignore[attr-defined]
    )
    return NodePool("pool", "class", disruption=disruption, expire_after_seconds=None, **kw)  # type: ignore[arg-type]


def node(name: str, *pods: Pod, cpu: int = 8000) -> Node:
    bound = [Pod(p.namespace, p.name, p.requests, **_rest(p), node_name=name, phase="Running") for p in pods]
    return Node(
        name,
        {LABEL_INSTANCE_TYPE: "ml.c5.2xlarge"},
        {"cpu": cpu, "memory": 16 * GIB, "pods": 58},
        pods=bound,
        created=0.0,
    )


def _rest(p: Pod) -> dict[str, object]:
    return {
        "labels": p.labels,
        "annotations": p.annotations,
        "owner_kind": p.owner_kind,
        "owner_name": p.owner_name,
        "created": p.created,
    }


def app(name: str, cpu: int = 1000, owner: str = "ReplicaSet", **annotations: str) -> Pod:
    return Pod(
        "default",
        name,
        {"cpu": cpu, "memory": GIB},
        labels={"app": "web"},
        annotations=annotations,
        owner_kind=owner,
        owner_name="web",
        created=NOW - 60,
    )


def decide(
    nodes: Sequence[Node],
    the_pool: NodePool,
    catalogue: Catalogue,
    *,
    pending: Sequence[Pod] = (),
    pdbs: Sequence[DisruptionBudgetStatus] = (),
    changed: float = 0.0,
    disrupting: dict[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, str], float]:
    base = SchedulingInput(pods=(), node_pools=(), node_classes=(), groups=(), catalogue=catalogue)
    decision = decide_consolidation(
        nodes=nodes,
        pending=pending,
        pool_of=lambda _: the_pool,
        base=base,
        pdbs=pdbs,
        now=NOW,
        last_pod_change={n.name: changed for n in nodes},
        disrupting=disrupting or {},
    )
    return {r.node: r.reason for r in decision.remove}, decision.kept, decision.recheck_at


def test_allowed_disruptions_takes_the_tightest_budget_for_the_reason() -> None:
    assert allowed_disruptions(pool(budgets=("20%",)), "Empty", 10, 0) == 2
    assert allowed_disruptions(pool(budgets=("20%",)), "Empty", 3, 0) == 1  # percentages round up
    assert allowed_disruptions(pool(budgets=("50%", "1")), "Empty", 10, 0) == 1
    assert allowed_disruptions(pool(budgets=("3",)), "Empty", 10, 1) == 2
    assert allowed_disruptions(pool(budgets=("1",)), "Empty", 10, 4) == 0  # never negative
    assert allowed_disruptions(pool(budgets=("0",)), "Empty", 10, 0) == 0
    only_drift = NodePool(
        "p", "c", disruption=Disruption(budgets=(DisruptionBudget("0", reasons=("Underutilized",)),))
    )
    assert allowed_disruptions(only_drift, "Empty", 4, 0) == 4
    assert allowed_disruptions(only_drift, "Underutilized", 4, 0) == 0


def test_empty_nodes_are_removed_once_consolidate_after_has_passed(catalogue: Catalogue) -> None:
    nodes = [node("a"), node("b", app("x"))]
    removed, kept, recheck = decide(nodes, pool(after=120.0), catalogue, changed=NOW - 60)
    assert removed == {}
    assert kept["a"] == "pods changed less than consolidateAfter ago"
    assert recheck == NOW + 60
    removed, _, _ = decide(nodes, pool(after=120.0), catalogue, changed=NOW - 120)
    assert removed == {"a": "Empty"}  # and b's pod has nowhere else to go


def test_pending_pods_and_consolidate_after_never_hold_consolidation_back(catalogue: Catalogue) -> None:
    nodes = [node("a")]
    removed, kept, _ = decide(nodes, pool(), catalogue, pending=[app("new")])
    assert removed == {} and kept == {"a": "pods are pending; consolidation waits"}
    removed, kept, _ = decide(nodes, pool(after=None), catalogue)
    assert removed == {} and kept == {"a": "consolidateAfter is Never"}


def test_an_underutilized_node_goes_only_if_its_pods_fit_on_the_others(catalogue: Catalogue) -> None:
    fits = [node("a", app("x", 6000)), node("b", app("y", 1000))]
    removed, _, _ = decide(fits, pool(), catalogue)
    assert removed == {"b": "Underutilized"}
    crowded = [node("a", app("x", 7000)), node("b", app("y", 2000))]
    removed, kept, _ = decide(crowded, pool(), catalogue)
    assert removed == {}
    assert kept["b"] == "its pods do not fit on the other nodes"
    removed, kept, _ = decide(fits, pool(policy="WhenEmpty"), catalogue)
    assert removed == {} and kept["b"] == "consolidationPolicy is WhenEmpty"


def test_removals_never_overbook_the_nodes_that_stay(catalogue: Catalogue) -> None:
    # Each of b and c fits on a alone, but not both: only one of them may go.
    nodes = [node("a", app("x", 4000)), node("b", app("y", 3000)), node("c", app("z", 3000))]
    removed, kept, _ = decide(nodes, pool(), catalogue)
    assert len(removed) == 1
    assert set(kept) == {"a", "b", "c"} - set(removed)


def test_pods_that_must_not_move_keep_their_node(catalogue: Catalogue) -> None:
    spare = node("spare", app("s", **{ANNOTATION_DO_NOT_DISRUPT: "true"}))
    cases = {
        "pinned": app("p", **{ANNOTATION_DO_NOT_DISRUPT: "true"}),
        "job": app("j", owner="Job"),
        "bare": app("b", owner=""),
    }
    for name, the_pod in cases.items():
        removed, kept, _ = decide([node(name, the_pod), spare], pool(), catalogue)
        assert name not in removed, name
        assert the_pod.name in kept[name], kept
    removed, _, _ = decide([node("job", cases["job"]), spare], pool(consolidate_running_jobs=True), catalogue)
    assert "job" in removed


def test_a_do_not_disrupt_duration_protects_until_it_elapses(catalogue: Catalogue) -> None:
    young = app("p", **{ANNOTATION_DO_NOT_DISRUPT: "10m"})  # created a minute ago
    nodes = [node("a", young), node("spare")]
    removed, kept, recheck = decide(nodes, pool(budgets=("1",)), catalogue)
    assert "a" not in removed and "not yet elapsed" in kept["a"]
    assert recheck == young.created + 600
    old = app("p", **{ANNOTATION_DO_NOT_DISRUPT: "30s"})
    removed, _, _ = decide([node("a", old), node("spare", app("s", 7000))], pool(), catalogue)
    assert removed == {"a": "Underutilized"}


def test_a_pod_disruption_budget_that_allows_nothing_keeps_the_node(catalogue: Catalogue) -> None:
    selector = LabelSelector((("app", "web"),))
    nodes = [node("a", app("x")), node("b", app("y", 6000))]
    blocked = [DisruptionBudgetStatus("default", "web", selector, 0)]
    removed, kept, _ = decide(nodes, pool(), catalogue, pdbs=blocked)
    assert removed == {}
    assert "PodDisruptionBudget default/web" in kept["a"]
    allowing = [DisruptionBudgetStatus("default", "web", selector, 1)]
    removed, _, _ = decide(nodes, pool(), catalogue, pdbs=allowing)
    assert removed == {"a": "Underutilized"}


def test_the_node_budget_counts_nodes_already_in_disruption(catalogue: Catalogue) -> None:
    nodes = [node(n) for n in "abcd"]
    removed, kept, _ = decide(nodes, pool(budgets=("2",)), catalogue)
    assert len(removed) == 2
    assert sum(reason.startswith("disruption budget") for reason in kept.values()) == 2
    removed, _, _ = decide(nodes, pool(budgets=("2",)), catalogue, disrupting={"a": "consolidation:Empty"})
    assert len(removed) == 1 and "a" not in removed
    removed, _, _ = decide(nodes, pool(budgets=("2",)), catalogue, disrupting={"a": "x", "b": "y"})
    assert removed == {}


@pytest.mark.looptime
async def test_the_multi_az_pool_scales_to_zero_after_two_minutes_within_its_20_percent_budget(
    multi_az_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(multi_az_config, catalogue) as h:
        kube = h.world.kubernetes
        for i in range(9):
            kube.add_pod(web_pod(f"w-{i}", cpu=2000))
        await wait_for(lambda: len(h.running_pods()) == 9, 300)
        await wait_for(lambda: not h.ctx.inflight, 20)
        assert len(kube.nodes()) == 3
        for p in kube.pods():
            kube.remove_pod(p.key)
        emptied = h.world.clock.now()
        most, first_delete = 0, None
        with anyio.move_on_after(900):
            while h.world.hyperpod.nodes():
                consolidating = [r for r in h.ctx.disrupting.values() if r.startswith("consolidation")]
                most = max(most, len(consolidating))
                if first_delete is None and h.world.hyperpod.delete_requests:
                    first_delete = h.world.clock.now() - emptied
                await anyio.sleep(0.5)
        assert not h.world.hyperpod.nodes() and not kube.nodes()
        assert most == 1  # ceil(20% of 3 nodes)
        assert first_delete is not None and 120 <= first_delete <= 120 + 10 + 15 + 1
        assert [len(ids) for ids in h.world.hyperpod.delete_requests] == [1, 1, 1]


@pytest.mark.looptime
async def test_a_pod_that_fits_nowhere_does_not_hold_scale_down_back(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    config = with_pool(seed_config, consolidate_after_seconds=0.0, budgets=("100%",))
    async with running(config, catalogue, initial={SPOT_AZ1: 2}) as h:
        kube, hyperpod = h.world.kubernetes, h.world.hyperpod
        kube.add_pod(web_pod("huge", cpu=100_000))  # larger than every instance type allowed
        # HyperPod cannot be read until t = 150 s: consolidation first decides (at 130 s, once the
        # nodes are Ready) while the pod is pending and not yet planned, so it waits; the plan
        # that finds the pod hopeless comes later, with no change in the cluster to wake it.
        hyperpod.faults.fail_next("list_nodes", times=15)
        await wait_for(lambda: sum(n.ready for n in kube.nodes()) == 2, 200)
        await wait_for(lambda: h.daemon.provisioner.last_plan is not None, 60)
        (unschedulable,) = h.daemon.provisioner.last_plan.unschedulable  # type: ignore[union-attr]
        assert unschedulable.pod == "default/huge"
        planned = h.world.clock.now()
        await wait_for(lambda: not live_nodes(h), 30)
        assert h.world.clock.now() - planned <= 10 + 15 + 1
        assert h.ctx.stats.events.count(NodeDisrupted, reason="Empty") == 2
        assert any(e.pod == "default/huge" and e.reason == "FailedScaling" for e in kube.events)
