"""FakeKubernetes: scheduler and controller stand-ins, evictions under PDBs, watch, leases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from hpscaler.backends.errors import NotFoundError
from hpscaler.backends.protocols import BackendError, KubernetesCluster
from hpscaler.backends.types import WatchEvent, WatchKind
from hpscaler.clock import LoopClock
from hpscaler.fake import FakeKubernetes, PodKill
from hpscaler.model import (
    LABEL_HOSTNAME,
    LABEL_ZONE,
    LabelSelector,
    Node,
    Pod,
    PodAffinityTerm,
    Requirement,
    Taint,
    Toleration,
)

GIB = 1024**3


def make_pod(name: str, cpu: int = 1000, *, owner: str = "ReplicaSet", **kw: Any) -> Pod:
    return Pod(
        namespace="default",
        name=name,
        requests={"cpu": cpu, "memory": GIB},
        labels=kw.pop("labels", {"app": "web"}),
        owner_kind=owner,
        owner_name="web" if owner else "",
        **kw,
    )


def make_node(name: str, cpu: int = 4000, **kw: Any) -> Node:
    labels = {"zone": "a", **kw.pop("labels", {})}
    return Node(name=name, labels=labels, allocatable={"cpu": cpu, "memory": 16 * GIB, "pods": 110}, **kw)


@asynccontextmanager
async def running(kube: FakeKubernetes) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(kube.run)
        yield
        tg.cancel_scope.cancel()


def fresh() -> FakeKubernetes:
    return FakeKubernetes(LoopClock())


async def test_implements_the_protocol() -> None:
    assert isinstance(fresh(), KubernetesCluster)


async def test_scheduler_binds_oldest_pods_that_fit_by_node_name() -> None:
    kube = fresh()
    for i, created in enumerate((3.0, 1.0, 2.0)):
        kube.add_pod(make_pod(f"p{i}", cpu=1500, created=created))
    assert kube.counters.binds == 0  # no nodes yet
    kube.add_node(make_node("n-b"))
    kube.add_node(make_node("n-a"))
    placed = {p.name: (p.node_name, p.phase) for p in kube.pods()}
    # n-b arrived first and took the two oldest; the youngest waited for n-a.
    assert placed["p1"] == ("n-b", "Running")
    assert placed["p2"] == ("n-b", "Running")
    assert placed["p0"] == ("n-a", "Running")
    assert kube.counters.binds == 3
    node = kube.node("n-b")
    assert node is not None and sorted(p.name for p in node.pods) == ["p1", "p2"]


async def test_scheduler_respects_resources_and_pod_slots() -> None:
    kube = fresh()
    kube.add_node(Node("tiny", {}, {"cpu": 8000, "memory": 16 * GIB, "pods": 1}))
    kube.add_pod(make_pod("a"))
    kube.add_pod(make_pod("b"))
    kube.add_pod(make_pod("huge", cpu=9000))
    assert [(p.name, p.node_name) for p in kube.pods()] == [("a", "tiny"), ("b", ""), ("huge", "")]


async def test_scheduler_respects_taints_selectors_and_affinity() -> None:
    kube = fresh()
    kube.add_node(make_node("gpu", taints=(Taint("nvidia.com/gpu", "NoSchedule"),), labels={"kind": "gpu"}))
    kube.add_node(make_node("soft", taints=(Taint("x", "PreferNoSchedule"),), labels={"zone": "b"}))
    kube.add_pod(make_pod("selects-gpu", node_selector={"kind": "gpu"}))
    kube.add_pod(
        make_pod(
            "tolerates", node_selector={"kind": "gpu"}, tolerations=(Toleration("nvidia.com/gpu", "Exists"),)
        )
    )
    kube.add_pod(make_pod("zone-c", node_affinity=((Requirement("zone", "In", ("c",)),),)))
    kube.add_pod(make_pod("zone-b-or-c", node_affinity=((Requirement("zone", "In", ("b", "c")),),)))
    placed = {p.name: p.node_name for p in kube.pods()}
    assert placed == {"selects-gpu": "", "tolerates": "gpu", "zone-c": "", "zone-b-or-c": "soft"}


async def test_scheduler_waits_for_ready_untainted_nodes() -> None:
    kube = fresh()
    kube.add_node(make_node("n", ready=False))
    kube.add_pod(make_pod("p"))
    assert kube.pods()[0].phase == "Pending"
    kube.set_node_ready("n")
    assert kube.pods()[0].node_name == "n"
    await kube.taint_node("n", add=[Taint("stop", "NoSchedule")])
    kube.add_pod(make_pod("q"))
    assert kube.pod("default/q") is not None and kube.pod("default/q").node_name == ""  # type: ignore[union-attr]
    await kube.taint_node("n", remove=["stop"])
    assert kube.pod("default/q").node_name == "n"  # type: ignore[union-attr]


async def test_hostname_anti_affinity_in_both_directions() -> None:
    kube = fresh()
    kube.add_node(make_node("n1"))
    kube.add_node(make_node("n2"))
    spread = (PodAffinityTerm(LABEL_HOSTNAME, LabelSelector((("app", "db"),))),)
    for i in range(3):
        kube.add_pod(make_pod(f"db{i}", labels={"app": "db"}, pod_anti_affinity=spread))
    # A plain pod labelled app=db is refused by the db pods already on both nodes.
    kube.add_pod(make_pod("intruder", labels={"app": "db"}))
    placed = {p.name: p.node_name for p in kube.pods()}
    assert placed == {"db0": "n1", "db1": "n2", "db2": "", "intruder": ""}


async def test_taints_and_annotations() -> None:
    kube = fresh()
    kube.add_node(make_node("n", taints=(Taint("a", "NoSchedule", "1"),)))
    await kube.taint_node("n", add=[Taint("a", "NoSchedule", "2"), Taint("a", "NoExecute")])
    assert kube.node("n").taints == (Taint("a", "NoSchedule", "2"), Taint("a", "NoExecute"))  # type: ignore[union-attr]
    await kube.taint_node("n", remove=["a"])
    assert kube.node("n").taints == ()  # type: ignore[union-attr]
    await kube.annotate_node("n", {"k": "v"})
    await kube.annotate_node("n", {"k": None, "j": "w"})
    assert kube.node("n").annotations == {"j": "w"}  # type: ignore[union-attr]
    kube.add_pod(make_pod("p"))
    await kube.annotate_pod("default", "p", {"karpenter.sh/do-not-disrupt": "true"})
    assert kube.pod("default/p").annotations == {"karpenter.sh/do-not-disrupt": "true"}  # type: ignore[union-attr]
    with pytest.raises(NotFoundError) as missing:
        await kube.taint_node("ghost", add=[Taint("a", "NoSchedule")])
    assert (missing.value.code, missing.value.retryable) == ("NotFound", False)
    with pytest.raises(NotFoundError):
        await kube.annotate_pod("default", "ghost", {"k": "v"})


@pytest.mark.looptime
async def test_eviction_respects_pdb_then_waits_grace_and_controller_recreates() -> None:
    kube = fresh()
    kube.add_node(make_node("n"))
    for i in range(3):
        kube.add_pod(make_pod(f"web{i}", termination_grace_seconds=45))
    kube.add_pdb("default", "web", LabelSelector((("app", "web"),)), min_available=2)
    assert [b.disruptions_allowed for b in await kube.list_disruption_budgets()] == [1]
    async with running(kube):
        assert await kube.evict_pod("default", "web0") == "evicted"
        assert kube.is_terminating("default/web0")
        assert kube.evicted_at == {"default/web0": 0.0}
        # The terminating pod no longer counts as healthy: the budget is used up.
        assert await kube.evict_pod("default", "web1") == "blocked"
        assert kube.counters.evictions_blocked == 1
        assert await kube.evict_pod("default", "nope") == "not-found"
        await anyio.sleep(44)
        assert kube.pod("default/web0") is not None  # still occupying its node within the grace period
        await anyio.sleep(2)
        assert kube.pod("default/web0") is None
        replacement = kube.pod("default/web0-r1")
        assert replacement is not None
        # The node still has room, so the default scheduler places the replacement at once.
        assert (replacement.created, replacement.node_name, replacement.owner_kind) == (
            45.0,
            "n",
            "ReplicaSet",
        )
        assert kube.counters.pods_recreated == 1 and kube.counters.evictions == 1


@pytest.mark.looptime
async def test_eviction_rules_for_pending_pods_overlapping_and_pinned_budgets() -> None:
    kube = fresh()
    kube.add_pod(make_pod("pending"))
    kube.add_pdb("default", "all", LabelSelector(), max_unavailable=0)
    # Pods that are not Running skip the PDB check; grace 0 deletes and recreates at once.
    assert await kube.evict_pod("default", "pending", grace_seconds=0) == "evicted"
    assert [p.name for p in kube.pods()] == ["pending-r1"]
    kube.add_node(make_node("n"))
    kube.add_pdb("default", "web", LabelSelector((("app", "web"),)), max_unavailable="50%")
    with pytest.raises(BackendError):
        await kube.evict_pod("default", "pending-r1")
    kube.remove_pod("default/pending-r1")
    kube.add_pod(make_pod("solo", labels={"app": "solo"}))
    kube.pin_disruptions_allowed("default", "all", 1)
    assert await kube.evict_pod("default", "solo", grace_seconds=0) == "evicted"
    kube.add_pod(make_pod("solo2", labels={"app": "solo"}))
    assert await kube.evict_pod("default", "solo2") == "blocked"  # the pinned allowance was used up


@pytest.mark.looptime
async def test_node_loss_kills_pods_and_jobs_finish() -> None:
    kube = fresh()
    kube.add_daemonset(Pod("kube-system", "agent", {"cpu": 100}))
    kube.add_node(make_node("n1"))
    kube.add_pod(make_pod("job", owner="PyTorchJob"), run_seconds=100)
    kube.add_pod(make_pod("bare", owner=""))
    kube.add_pod(make_pod("web"))
    assert {p.name: p.node_name for p in kube.pods()}["agent-n1"] == "n1"
    async with running(kube):
        await anyio.sleep(10)
        assert await kube.evict_pod("default", "web") == "evicted"
        kube.remove_node("n1", "spot-interruption")
        assert kube.kills == [
            PodKill("default/job", 10.0, "spot-interruption", False),
            PodKill("default/bare", 10.0, "spot-interruption", False),
            PodKill("default/web", 10.0, "spot-interruption", True),
        ]
        # The bare pod and the DaemonSet pod are gone for good; the job and web pods come back.
        assert sorted(p.name for p in kube.pods()) == ["job-r1", "web-r1"]
        kube.add_node(make_node("n2"))
        await anyio.sleep(99)
        assert kube.counters.pods_completed == 0  # the job restarted from scratch at t=10
        await anyio.sleep(2)
        assert kube.completions == [("default/job-r1", 110.0)]
        assert sorted(p.name for p in kube.pods()) == ["agent-n2", "web-r1"]


@pytest.mark.looptime
async def test_watch_lists_then_syncs_then_streams_copies() -> None:
    kube = fresh()
    kube.add_node(make_node("n"))
    kube.add_pod(make_pod("p"))
    seen: list[WatchEvent] = []

    async def consume() -> None:
        async for event in kube.watch():
            seen.append(event)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.sleep(1)
        assert [(e.kind, e.pod.name if e.pod else e.node.name if e.node else "") for e in seen] == [
            (WatchKind.ADDED, "p"),
            (WatchKind.ADDED, "n"),
            (WatchKind.SYNCED, ""),
        ]
        seen[0].pod.labels["mutated"] = "yes"  # type: ignore[union-attr]
        assert "mutated" not in kube.pod("default/p").labels  # type: ignore[union-attr]
        kube.add_pod(make_pod("q"))
        await kube.delete_node("n")
        kube.relist()
        await anyio.sleep(1)
        tg.cancel_scope.cancel()
    live = [(e.kind, e.pod.name if e.pod else e.node.name if e.node else "") for e in seen[3:]]
    assert live == [
        (WatchKind.ADDED, "q"),
        (WatchKind.MODIFIED, "q"),  # bound
        (WatchKind.DELETED, "n"),
        (WatchKind.DELETED, "p"),
        (WatchKind.ADDED, "p-r1"),
        (WatchKind.DELETED, "q"),
        (WatchKind.ADDED, "q-r1"),
        (WatchKind.ADDED, "p-r1"),
        (WatchKind.ADDED, "q-r1"),
        (WatchKind.SYNCED, ""),
    ]


@pytest.mark.looptime
async def test_leases_take_renew_refuse_and_expire() -> None:
    kube = fresh()
    first = await kube.acquire_lease("hpscaler", "a", 15)
    assert (first.holder, first.renewed, first.transitions) == ("a", 0.0, 0)
    await anyio.sleep(10)
    assert (await kube.acquire_lease("hpscaler", "b", 15)).holder == "a"
    renewed = await kube.acquire_lease("hpscaler", "a", 15)
    assert (renewed.holder, renewed.renewed) == ("a", 10.0)
    await anyio.sleep(14)
    assert (await kube.acquire_lease("hpscaler", "b", 15)).holder == "a"
    await anyio.sleep(2)
    taken = await kube.acquire_lease("hpscaler", "b", 15)
    assert (taken.holder, taken.renewed, taken.transitions) == ("b", 26.0, 1)


async def test_recorded_events_and_injected_faults() -> None:
    kube = fresh()
    pod = make_pod("p")
    await kube.record_event(pod, "Nominated", "waiting for a node", warning=False)
    assert kube.events == [("default/p", "Nominated", "waiting for a node", False)]
    kube.faults.fail_next("evict_pod")
    with pytest.raises(BackendError) as failure:
        await kube.evict_pod("default", "p")
    assert failure.value.retryable
    assert await kube.evict_pod("default", "p") == "not-found"


async def test_lineages_removals_and_terminations_are_recorded_for_the_simulator() -> None:
    kube = fresh()
    kube.add_node(make_node("n1"))
    kube.add_pod(make_pod("web-0", annotations={"karpenter.sh/do-not-disrupt": "true"}))
    kube.add_pod(make_pod("job-0", owner="Job"), run_seconds=60)
    kube.add_pod(make_pod("web-1"))
    assert kube.origin("default/web-0") == "default/web-0"
    assert dict(kube.live_origins()) == {f"default/{n}": f"default/{n}" for n in ("web-0", "job-0", "web-1")}
    assert await kube.evict_pod("default", "web-1", grace_seconds=0) == "evicted"
    (ended,) = kube.terminations
    assert (ended.key, ended.node, ended.via) == ("default/web-1", "n1", "evict")
    # Evicted with no grace: the controller's replacement carries the lineage on, pending.
    assert kube.live_origins()["default/web-1"] == "default/web-1-r1"
    assert kube.origin("default/web-1-r1") == "default/web-1"
    assert kube.pending_keys() == set()  # bound again at once: n1 has room
    kube.remove_node("n1", "deleted")
    (removal,) = kube.node_removals
    assert (removal.name, removal.reason) == ("n1", "deleted")
    assert {p.key for p in removal.pods} == {"default/web-0", "default/job-0", "default/web-1-r1"}
    assert kube.live_origins()["default/web-0"] == "default/web-0-r1"
    assert kube.pending_keys() == {"default/web-0-r1", "default/job-0-r1", "default/web-1-r2"}
    kube.remove_pod("default/web-0-r1")
    assert "default/web-0" not in kube.live_origins()


@pytest.mark.looptime
async def test_finished_job_lineages_are_recorded() -> None:
    kube = fresh()
    kube.add_node(make_node("n1"))
    kube.add_pod(make_pod("job-0", owner="Job"), run_seconds=60)
    async with running(kube):
        await anyio.sleep(61)
    assert kube.finished_origins == {"default/job-0": 60.0}
    assert "default/job-0" not in kube.live_origins()


async def test_required_pod_affinity_binds_only_next_to_a_matching_pod() -> None:
    kube = FakeKubernetes(LoopClock())
    for name, zone in (("n-a", "us-west-2a"), ("n-b", "us-west-2b")):
        kube.add_node(
            Node(name, labels={LABEL_ZONE: zone}, allocatable={"cpu": 8000, "memory": 32 * 1024**3})
        )
    near_db = (PodAffinityTerm(LABEL_ZONE, LabelSelector((("app", "db"),))),)
    lonely = kube.add_pod(Pod("default", "lonely", {"cpu": 100}, labels={"app": "web"}, pod_affinity=near_db))
    assert kube.pod(lonely.key).node_name == ""  # type: ignore[union-attr]  # no db anywhere: pending
    kube.add_pod(
        Pod("default", "db", {"cpu": 100}, labels={"app": "db"}, node_selector={LABEL_ZONE: "us-west-2b"})
    )
    assert kube.pod(lonely.key).node_name == "n-b"  # type: ignore[union-attr]
    first = kube.add_pod(
        Pod(
            "default",
            "first",
            {"cpu": 100},
            labels={"app": "cache"},
            pod_affinity=(PodAffinityTerm(LABEL_ZONE, LabelSelector((("app", "cache"),))),),
        )
    )
    assert kube.pod(first.key).node_name != ""  # type: ignore[union-attr]  # self-affine: may start a group
