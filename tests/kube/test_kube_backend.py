"""The Kubernetes backend against the fake API server, over HTTP."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from kube_harness import (
    ManualClock,
    eventually,
    hosted,
    make_backend,
    next_event,
    node_manifest,
    pod_manifest,
    until_synced,
)

from hpscaler.backends.errors import NotFoundError
from hpscaler.backends.protocols import BackendError, KubernetesCluster, LeaseStore
from hpscaler.backends.types import WatchKind
from hpscaler.config import LoadedConfig
from hpscaler.config.settings import Settings
from hpscaler.kube.backend import KubernetesBackend, kubernetes_backend, kubernetes_backends
from hpscaler.kube.convert import SELECT_NOTHING, KubeApiError
from hpscaler.model import LabelSelector, Pod, Requirement, Taint
from hpscaler.testing import FakeApiServer

MERGE = "application/merge-patch+json"


def keys(events: list[Any]) -> list[tuple[str, str]]:
    """(kind, pod key or node name) of each event."""
    return [(e.kind.value, e.pod.key if e.pod else e.node.name if e.node else "") for e in events]


def test_backend_implements_the_protocol(backend: KubernetesBackend) -> None:
    assert isinstance(backend, KubernetesCluster)
    assert isinstance(backend, LeaseStore)  # leader election's own interface


# --- watch ------------------------------------------------------------------------------------------


async def test_watch_lists_in_pages_then_syncs_then_follows(
    server: FakeApiServer, api: Any, clock: ManualClock
) -> None:
    server.create(pod_manifest("a"))
    server.create(pod_manifest("b", "team"))
    server.create(pod_manifest("c", node="n1", phase="Running"))
    server.create(node_manifest("n1"))
    listed_at = str(server.resource_version)
    async with hosted(make_backend(api, clock, page_size=2)) as kube, aclosing(kube.watch()) as events:
        assert keys(await until_synced(events)) == [
            ("ADDED", "default/a"),
            ("ADDED", "default/c"),
            ("ADDED", "team/b"),
            ("ADDED", "n1"),
            ("SYNCED", ""),
        ]
        await eventually(lambda: server.active_watches == 3)
        server.patch("pods", "a", {"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
        event = await next_event(events)
        assert event.kind is WatchKind.MODIFIED and event.pod is not None
        assert (event.pod.node_name, event.pod.phase) == ("n1", "Running")
        server.create(pod_manifest("d"))
        server.delete("pods", "b", "team")
        server.patch("nodes", "n1", {"spec": {"unschedulable": True}})
        rest = [await next_event(events) for _ in range(3)]
        assert sorted(keys(rest)) == [("ADDED", "default/d"), ("DELETED", "team/b"), ("MODIFIED", "n1")]
        node_event = next(e for e in rest if e.node is not None)
        assert node_event.node is not None and node_event.node.unschedulable
    pages = [r.query for r in server.requests_for("list", "pods")]
    assert [q.get("limit") for q in pages] == ["2", "2"] and pages[1]["continue"]
    watches = server.requests_for("watch", "pods")
    assert watches[0].query["allowWatchBookmarks"] == "True"
    assert watches[0].query["resourceVersion"] == listed_at


async def test_bookmarks_keep_the_watch_resumable_without_a_relist(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    server.create(pod_manifest("a"))
    async with aclosing(backend.watch()) as events:
        await until_synced(events)
        await eventually(lambda: server.active_watches == 3)
        for i in range(5):  # changes no watch sees move the resourceVersion on
            server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns{i}"}})
        server.send_bookmarks()
        await eventually(lambda: server.active_watches == 3)
        await anyio.sleep(0.1)  # let the bookmarks arrive
        latest = str(server.resource_version)
        server.compact()  # only the newest resourceVersion can still be resumed from
        server.drop_watches(abort=False)  # a clean end, as when timeoutSeconds runs out
        await eventually(
            lambda: len(server.requests_for("watch", "pods")) == 2 and server.active_watches == 3
        )
        server.create(pod_manifest("b"))
        event = await next_event(events)
        assert keys([event]) == [("ADDED", "default/b")]
    assert server.requests_for("watch", "pods")[1].query["resourceVersion"] == latest
    assert len(server.requests_for("list", "pods")) == 1  # resumed, never re-listed


async def test_gone_resource_version_relists_and_reports_deletions(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    server.create(pod_manifest("a"))
    server.create(pod_manifest("b"))
    server.create(node_manifest("n1"))
    async with aclosing(backend.watch()) as events:
        await until_synced(events)
        await eventually(lambda: server.active_watches == 3)
        # The pod watch comes back late, after its resourceVersion was compacted away.
        server.fail_next("/api/v1/pods", 0, method="GET", delay=0.3)
        server.drop_watches(abort=False)
        server.delete("pods", "a")
        server.compact()
        relisted = await until_synced(events)
    assert keys(relisted) == [
        ("DELETED", "default/a"),
        ("ADDED", "default/b"),
        ("ADDED", "n1"),
        ("SYNCED", ""),
    ]
    assert len(server.requests_for("list", "pods")) == 2


async def test_dropped_stream_relists(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.create(pod_manifest("a"))
    async with aclosing(backend.watch()) as events:
        await until_synced(events)
        await eventually(lambda: server.active_watches == 3)
        assert server.drop_watches(abort=True) == 3
        relisted = await until_synced(events)
        assert keys(relisted) == [("ADDED", "default/a"), ("SYNCED", "")]
        await eventually(lambda: server.active_watches == 3)
        server.create(pod_manifest("b"))
        assert keys([await next_event(events)]) == [("ADDED", "default/b")]


async def test_watch_error_ends_the_iterator_with_backend_error(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    server.fail_next("/api/v1/pods", 403, method="GET")
    with pytest.raises(BackendError) as forbidden:
        async with aclosing(backend.watch()) as events:
            await next_event(events)
    assert not forbidden.value.retryable
    async with aclosing(backend.watch()) as events:
        await until_synced(events)
        server.fail_next("/api/v1/pods", 500, method="GET", times=10)  # the re-watch and relists fail
        server.drop_watches(abort=True)
        with pytest.raises(BackendError) as broken:
            while True:
                await next_event(events)
    assert broken.value.retryable


async def test_unparseable_objects_are_skipped(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.create(pod_manifest("bad", cpu="lots"))
    server.create(pod_manifest("good"))
    async with aclosing(backend.watch()) as events:
        assert keys(await until_synced(events)) == [("ADDED", "default/good"), ("SYNCED", "")]
        await eventually(lambda: server.active_watches == 3)
        server.create(pod_manifest("worse", cpu="-1"))
        server.create(pod_manifest("fine"))
        assert keys([await next_event(events)]) == [("ADDED", "default/fine")]


async def test_closing_the_iterator_stops_its_streams(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    async with aclosing(backend.watch()) as events:
        await until_synced(events)
        await eventually(lambda: server.active_watches == 3)
    await eventually(lambda: server.active_watches == 0)
    # An abandoned (not closed) iterator stops once it is collected.
    events = backend.watch()
    await until_synced(events)
    await eventually(lambda: server.active_watches == 3)
    del events
    await eventually(lambda: server.active_watches == 0)


async def test_watch_needs_a_running_backend(server: FakeApiServer, api: Any, clock: ManualClock) -> None:
    kube = make_backend(api, clock)
    with pytest.raises(RuntimeError):
        await anext(kube.watch())
    server.create(node_manifest("n1"))
    async with anyio.create_task_group() as tg:
        await tg.start(kube.run)
        assert kube.running
        async with aclosing(kube.watch()) as events:
            assert keys(await until_synced(events)) == [("ADDED", "n1"), ("SYNCED", "")]
        tg.cancel_scope.cancel()
    assert not kube.running


async def test_closing_the_backend_ends_its_watches(
    server: FakeApiServer, api: Any, clock: ManualClock
) -> None:
    async with make_backend(api, clock) as kube:
        events = kube.watch()
        await until_synced(events)
    with pytest.raises(BackendError) as closed:
        await next_event(events)
    assert closed.value.code == "Closed"
    await eventually(lambda: server.active_watches == 0)


async def test_errors_inside_the_backend_block_are_not_wrapped(api: Any, clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="boom"):
        async with make_backend(api, clock):
            raise ValueError("boom")


# --- node and pod writes ---------------------------------------------------------------------------


async def test_taint_node_merges_taints_with_a_precondition(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    server.create(
        node_manifest(
            "n1",
            taints=[
                {"key": "a", "effect": "NoSchedule"},
                {"key": "b", "value": "1", "effect": "NoExecute"},
                {"key": "c", "effect": "NoSchedule"},
            ],
        )
    )
    await backend.taint_node(
        "n1", add=[Taint("c", "NoSchedule", "new"), Taint("d", "NoExecute")], remove=["a"]
    )
    node = server.get("nodes", "n1")
    assert node is not None
    assert node["spec"]["taints"] == [
        {"key": "b", "value": "1", "effect": "NoExecute"},
        {"key": "c", "effect": "NoSchedule", "value": "new"},
        {"key": "d", "effect": "NoExecute"},
    ]
    (patch,) = server.requests_for("patch", "nodes")
    assert patch.content_type == MERGE
    assert patch.body["metadata"]["resourceVersion"]
    await backend.taint_node("n1", add=[Taint("d", "NoExecute")])  # already there: no write
    assert len(server.requests_for("patch", "nodes")) == 1
    await backend.taint_node("n1", remove=["b", "c", "d"])
    node = server.get("nodes", "n1")
    assert node is not None and "taints" not in node["spec"]


async def test_taint_node_retries_a_conflict(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.create(node_manifest("n1"))
    server.fail_next("/api/v1/nodes/n1", 409, method="PATCH")
    await backend.taint_node("n1", add=[Taint("x", "NoSchedule")])
    assert len(server.requests_for("get", "nodes")) == 2
    node = server.get("nodes", "n1")
    assert node is not None and node["spec"]["taints"] == [{"key": "x", "effect": "NoSchedule"}]


async def test_taint_node_with_a_stale_read_is_rejected_and_retried(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    server.create(node_manifest("n1"))
    # The node changes between the read and the patch: the server's own 409, not an injected one.
    server.fail_next("/api/v1/nodes/n1", 0, method="PATCH", delay=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(backend.taint_node, "n1", [Taint("x", "NoSchedule")])
        await eventually(lambda: len(server.requests_for("patch", "nodes")) == 1)
        server.patch("nodes", "n1", {"metadata": {"labels": {"changed": "yes"}}})
    patches = server.requests_for("patch", "nodes")
    assert [p.status for p in patches] == [409, 200]
    node = server.get("nodes", "n1")
    assert node is not None and node["metadata"]["labels"]["changed"] == "yes"
    assert node["spec"]["taints"] == [{"key": "x", "effect": "NoSchedule"}]


async def test_taint_missing_node_is_not_retryable(backend: KubernetesBackend) -> None:
    with pytest.raises(NotFoundError) as missing:
        await backend.taint_node("ghost", add=[Taint("x", "NoSchedule")])
    assert not missing.value.retryable and missing.value.code == "NotFound"


async def test_annotations_are_merge_patched(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.create(node_manifest("n1"))
    server.create(pod_manifest("p"))
    await backend.annotate_node("n1", {"a": "1", "b": "2"})
    await backend.annotate_node("n1", {"a": None})
    await backend.annotate_pod("default", "p", {"hpscaler.io/x": "y"})
    node, pod = server.get("nodes", "n1"), server.get("pods", "p", "default")
    assert node is not None and node["metadata"]["annotations"] == {"b": "2"}
    assert pod is not None and pod["metadata"]["annotations"] == {"hpscaler.io/x": "y"}
    assert {r.content_type for r in server.requests_for("patch")} == {MERGE}
    # A 404 is a NotFoundError, as the fake backend raises: callers handle both alike.
    with pytest.raises(NotFoundError) as missing:
        await backend.annotate_pod("default", "ghost", {"a": "b"})
    assert not missing.value.retryable and isinstance(missing.value, KubeApiError)
    assert missing.value.status == 404 and missing.value.code == "NotFound"


# --- eviction and deletion ---------------------------------------------------------------------------


def pdb(name: str, selector: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(spec)
    if selector is not None:
        body["selector"] = selector
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


async def test_eviction_outcomes(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.create(pdb("web", {"matchLabels": {"app": "web"}}, minAvailable=1))
    server.create(pod_manifest("web-1", node="n1", phase="Running", labels={"app": "web"}))
    assert await backend.evict_pod("default", "web-1") == "blocked"
    server.create(pod_manifest("web-2", node="n1", phase="Running", labels={"app": "web"}))
    assert await backend.evict_pod("default", "web-1", grace_seconds=7) == "evicted"
    assert server.get("pods", "web-1", "default") is None
    assert await backend.evict_pod("default", "web-1") == "not-found"
    (evicted,) = [r for r in server.requests_for("create", "pods/eviction") if r.status == 201]
    assert evicted.body["deleteOptions"] == {"gracePeriodSeconds": 7}
    assert evicted.body["kind"] == "Eviction" and evicted.body["apiVersion"] == "policy/v1"
    # A pending pod is never protected by its budget.
    server.create(pod_manifest("web-3", labels={"app": "web"}))
    assert await backend.evict_pod("default", "web-3") == "evicted"


async def test_eviction_with_two_budgets_is_not_retryable(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    server.create(pdb("one", {"matchLabels": {"app": "web"}}, maxUnavailable=1))
    server.create(pdb("two", {}, maxUnavailable="50%"))
    server.create(pod_manifest("web-1", node="n1", phase="Running", labels={"app": "web"}))
    with pytest.raises(BackendError) as error:
        await backend.evict_pod("default", "web-1")
    assert not error.value.retryable and error.value.code == "MultiplePodDisruptionBudgets"


async def test_throttling_429_is_not_a_budget_refusal(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    server.create(pod_manifest("p", node="n1", phase="Running"))
    server.fail_next("/api/v1/namespaces/default/pods/p/eviction", 429, message="Too many requests")
    with pytest.raises(BackendError) as throttled:
        await backend.evict_pod("default", "p")
    assert throttled.value.retryable


async def test_delete_pod_and_node(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.create(pod_manifest("p", node="n1", phase="Running"))
    server.create(node_manifest("n1"))
    assert await backend.delete_pod("default", "p", grace_seconds=5)
    assert server.requests_for("delete", "pods")[0].query["gracePeriodSeconds"] == "5"
    assert not await backend.delete_pod("default", "p")
    await backend.delete_node("n1")
    await backend.delete_node("n1")  # already gone: fine
    assert server.get("nodes", "n1") is None and server.get("pods", "p", "default") is None


async def test_list_disruption_budgets(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.create(
        pdb(
            "web",
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}],
            },
            minAvailable="50%",
        )
    )
    for i in range(4):
        server.create(
            pod_manifest(f"web-{i}", node="n1", phase="Running", labels={"app": "web", "tier": "a"})
        )
    server.create(pdb("nothing", None, maxUnavailable=1))
    pinned = pdb("pinned", {}, maxUnavailable=0)
    pinned["status"] = {"disruptionsAllowed": 3, "observedGeneration": 1}
    server.create(pinned)
    stale = pdb("stale", {}, maxUnavailable=1)
    stale["status"] = {"disruptionsAllowed": 5, "observedGeneration": 0}
    server.create(stale)
    budgets = {b.name: b for b in await backend.list_disruption_budgets()}
    assert budgets["web"].disruptions_allowed == 2
    assert budgets["web"].selector == LabelSelector((("app", "web"),), (Requirement("tier", "In", ("a",)),))
    assert budgets["nothing"].selector == SELECT_NOTHING
    assert budgets["pinned"].disruptions_allowed == 3 and budgets["pinned"].selector == LabelSelector()
    assert budgets["stale"].disruptions_allowed == 0


# --- events and leases ---------------------------------------------------------------------------------


async def test_events_are_recorded_and_aggregated(
    server: FakeApiServer, backend: KubernetesBackend, clock: ManualClock
) -> None:
    pod = Pod("default", "web-1", {}, uid="uid-1")
    await backend.record_event(pod, "Nominated", "will run on a new node")
    clock.advance(30)
    await backend.record_event(pod, "Nominated", "will run on a new node")
    await backend.record_event(pod, "Evicted", "consolidation", warning=True)
    events = sorted(server.list("events", "default"), key=lambda e: e["reason"])
    assert [(e["reason"], e["count"], e["type"]) for e in events] == [
        ("Evicted", 1, "Warning"),
        ("Nominated", 2, "Normal"),
    ]
    nominated = events[1]
    assert nominated["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": "default",
        "name": "web-1",
        "uid": "uid-1",
    }
    assert nominated["source"] == {"component": "hpscaler"} and nominated["reportingComponent"] == "hpscaler"
    assert nominated["lastTimestamp"] > nominated["firstTimestamp"]
    assert server.requests_for("patch", "events")[0].content_type == MERGE
    # The API server expired the event: the next repeat starts a new one.
    server.delete("events", nominated["metadata"]["name"], "default")
    await backend.record_event(pod, "Nominated", "will run on a new node")
    assert [e["count"] for e in server.list("events", "default") if e["reason"] == "Nominated"] == [1]


async def test_lease_take_renew_expire_and_transitions(
    server: FakeApiServer, api: Any, clock: ManualClock
) -> None:
    one, two = make_backend(api, clock), make_backend(api, clock)
    lease = await one.acquire_lease("leader", "one", 15)
    assert (lease.holder, lease.renewed, lease.duration_seconds, lease.transitions) == (
        "one",
        clock.now(),
        15,
        0,
    )
    stored = server.get("leases", "leader", "kube-system")
    assert stored is not None and stored["spec"]["holderIdentity"] == "one"
    clock.advance(10)
    assert (await two.acquire_lease("leader", "two", 15)).holder == "one"
    renewed = await one.acquire_lease("leader", "one", 15)
    assert renewed.renewed == clock.now() and renewed.transitions == 0
    clock.advance(14)
    assert (await two.acquire_lease("leader", "two", 15)).holder == "one"
    clock.advance(2)  # 16s since the last renewal: expired
    taken = await two.acquire_lease("leader", "two", 15)
    assert (taken.holder, taken.transitions) == ("two", 1)
    assert (await one.acquire_lease("leader", "one", 15)).holder == "two"
    stored = server.get("leases", "leader", "kube-system")
    assert stored is not None and stored["spec"]["leaseTransitions"] == 1
    assert stored["spec"]["renewTime"].endswith("Z") and "." in stored["spec"]["renewTime"]
    assert {r.verb for r in server.requests_for(resource="leases")} == {"get", "create", "update"}


async def test_lease_conflicts_leave_one_holder(server: FakeApiServer, api: Any, clock: ManualClock) -> None:
    one, two = make_backend(api, clock), make_backend(api, clock)
    results: dict[str, str] = {}

    async def contend(kube: KubernetesBackend, holder: str) -> None:
        results[holder] = (await kube.acquire_lease("leader", holder, 15)).holder

    async with anyio.create_task_group() as tg:
        tg.start_soon(contend, one, "one")
        tg.start_soon(contend, two, "two")
    assert results["one"] == results["two"]
    winner = results["one"]
    # A write that loses a race (409) makes the loser read again and see the winner.
    clock.advance(20)
    server.fail_next("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/leader", 409, method="PUT")
    loser = "two" if winner == "one" else "one"
    result = await (one if loser == "one" else two).acquire_lease("leader", loser, 15)
    assert result.holder == loser  # the retry found the lease still expired and took it


# --- errors ----------------------------------------------------------------------------------------------


async def test_retryable_errors_are_retried(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.create(node_manifest("n1"))
    server.fail_next("/api/v1/nodes/n1", 503, times=2)
    await backend.annotate_node("n1", {"a": "1"})
    assert [r.status for r in server.requests_for("patch", "nodes")] == [503, 503, 200]
    server.fail_next("/api/v1/nodes/n1", 500, times=10)
    with pytest.raises(KubeApiError) as exhausted:
        await backend.annotate_node("n1", {"a": "2"})
    assert exhausted.value.retryable and exhausted.value.status == 500
    assert len(server.requests_for("patch", "nodes")) == 3 + 4


async def test_client_errors_are_not_retried(server: FakeApiServer, backend: KubernetesBackend) -> None:
    server.create(node_manifest("n1"))
    server.fail_next("/api/v1/nodes/n1", 403, message='nodes "n1" is forbidden')
    with pytest.raises(KubeApiError) as forbidden:
        await backend.annotate_node("n1", {"a": "1"})
    assert not forbidden.value.retryable and forbidden.value.status == 403
    assert "forbidden" in str(forbidden.value)
    assert len(server.requests_for("patch", "nodes")) == 1


async def test_timeouts_and_outages_are_retryable(
    server: FakeApiServer, api: Any, clock: ManualClock
) -> None:
    kube = make_backend(api, clock, request_timeout_seconds=0.2, retry_attempts=1)
    server.fail_next("/apis/policy/v1/poddisruptionbudgets", 0, delay=1.0)
    with pytest.raises(BackendError) as slow:
        await kube.list_disruption_budgets()
    assert slow.value.retryable and slow.value.code == "Timeout"
    server.outage(0.3)
    with pytest.raises(BackendError) as down:
        await kube.list_disruption_budgets()
    assert down.value.retryable
    await anyio.sleep(0.35)
    assert await kube.list_disruption_budgets() == []


async def test_connection_refused_is_retryable(clock: ManualClock) -> None:
    async with FakeApiServer() as gone:
        url = gone.url
        configuration = gone.configuration()
    from kubernetes_asyncio.client import ApiClient

    async with ApiClient(configuration) as api:
        kube = make_backend(api, clock, retry_attempts=2)
        with pytest.raises(BackendError) as refused:
            await kube.delete_node("n1")
    assert refused.value.retryable and refused.value.code == "ConnectionError", url


async def test_kubernetes_backend_from_a_kubeconfig(server: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
                "users": [{"name": "me", "user": {"token": "secret-token"}}],
                "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "other",
            }
        )
    )
    server.create(node_manifest("n1"))
    settings = Settings.model_validate({"kubernetes": {"kubeconfig": str(kubeconfig), "context": "test"}})
    async with kubernetes_backend(settings) as kube, aclosing(kube.watch()) as events:
        assert keys(await until_synced(events)) == [("ADDED", "n1"), ("SYNCED", "")]
    assert server.requests[-1].verb in ("list", "watch")
    loaded = LoadedConfig(settings, "", (), (), (), (), ())
    async with kubernetes_backends(loaded) as backends:
        assert isinstance(backends.kubernetes, KubernetesBackend)
        assert [b.name for b in await backends.kubernetes.list_disruption_budgets()] == []
    missing = Settings.model_validate({"kubernetes": {"kubeconfig": str(tmp_path / "nope")}})
    with pytest.raises(BackendError) as error:
        async with kubernetes_backend(missing):
            pass
    assert not error.value.retryable
