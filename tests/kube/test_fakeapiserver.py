"""The fake API server itself: REST semantics, patches, selectors, watches, eviction and faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest
from kube_harness import node_manifest, pod_manifest

from hpscaler.testing import FakeApiServer
from hpscaler.testing.patching import PatchError, json_patch, merge_patch, strategic_merge_patch
from hpscaler.testing.selectors import SelectorError, parse_field_selector, parse_label_selector

JSON_PATCH = "application/json-patch+json"
MERGE = "application/merge-patch+json"
SMP = "application/strategic-merge-patch+json"
PODS = "/api/v1/namespaces/default/pods"
NODEPOOLS = "/apis/karpenter.sh/v1/nodepools"


class Client:
    """Raw HTTP to the fake server: status codes and bodies exactly as sent."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        **query: Any,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        params = {k: str(v) for k, v in query.items()}
        async with self.session.request(
            method, self.url + path, data=data, params=params, headers={"Content-Type": content_type}
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text.startswith(("{", "[")) else text

    async def watch(self, path: str, **query: Any) -> list[dict[str, Any]]:
        """Every event of a watch stream until the server ends it."""
        params = {"watch": "true", **{k: str(v) for k, v in query.items()}}
        async with self.session.get(self.url + path, params=params) as response:
            return [json.loads(line) async for line in response.content if line.strip()]

    async def watch_until(self, path: str, last: int, **query: Any) -> list[dict[str, Any]]:
        """The events of a watch up to the one at resourceVersion `last` (no wall-clock window)."""
        params = {"watch": "true", "timeoutSeconds": "60", **{k: str(v) for k, v in query.items()}}
        events: list[dict[str, Any]] = []
        async with self.session.get(self.url + path, params=params) as response:
            async for line in response.content:
                if line.strip():
                    events.append(json.loads(line))
                    if events[-1]["object"]["metadata"]["resourceVersion"] == str(last):
                        break
        return events


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(history_limit=200) as server:
        yield server


@pytest.fixture
async def http(fake: FakeApiServer) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, fake.url)


def nodepool(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name}, "spec": spec}


# --- discovery and CRUD --------------------------------------------------------------------------------


async def test_discovery(http: Client, fake: FakeApiServer) -> None:
    assert (await http("GET", "/version"))[1]["major"] == "1"
    assert (await http("GET", "/api"))[1]["versions"] == ["v1"]
    groups = {g["name"] for g in (await http("GET", "/apis"))[1]["groups"]}
    assert {"policy", "coordination.k8s.io", "karpenter.sh", "karpenter.sagemaker.amazonaws.com"} <= groups
    core = {r["name"] for r in (await http("GET", "/api/v1"))[1]["resources"]}
    assert {"pods", "pods/status", "pods/eviction", "nodes", "namespaces", "events"} <= core
    karpenter = (await http("GET", "/apis/karpenter.sh/v1"))[1]
    assert {r["name"] for r in karpenter["resources"]} >= {"nodepools", "nodepools/status"}
    assert (await http("GET", "/apis/karpenter.sh"))[1]["preferredVersion"]["version"] == "v1"
    fake.uninstall("nodepools")
    fake.uninstall("nodeclaims")
    assert (await http("GET", "/apis/karpenter.sh/v1"))[0] == 404
    assert (await http("GET", NODEPOOLS))[0] == 404


async def test_create_get_and_server_set_fields(http: Client) -> None:
    status, pod = await http("POST", PODS, pod_manifest("a"))
    assert status == 201
    meta = pod["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and meta["namespace"] == "default" and pod["status"]["phase"] == "Pending"
    assert (await http("POST", PODS, pod_manifest("a")))[0] == 409
    status, missing = await http("GET", f"{PODS}/nope")
    assert status == 404 and missing["reason"] == "NotFound" and missing["message"] == 'pods "nope" not found'
    assert (await http("POST", "/api/v1/namespaces/ghost/pods", pod_manifest("a", "ghost")))[0] == 404
    generated = pod_manifest("")
    generated["metadata"] = {"generateName": "web-"}
    status, made = await http("POST", PODS, generated)
    assert status == 201 and made["metadata"]["name"].startswith("web-")
    status, pool = await http("POST", NODEPOOLS, {**nodepool("np"), "status": {"x": 1}})
    assert status == 201 and "status" not in pool  # custom resources take status only via /status


async def test_list_pages_with_a_consistent_resource_version(http: Client, fake: FakeApiServer) -> None:
    for i in range(5):
        fake.create(pod_manifest(f"p{i}"))
    status, first = await http("GET", PODS, limit=2)
    assert status == 200 and [p["metadata"]["name"] for p in first["items"]] == ["p0", "p1"]
    assert "kind" not in first["items"][0] and first["kind"] == "PodList"
    assert first["metadata"]["remainingItemCount"] == 3
    fake.create(pod_manifest("p9"))  # not part of the paginated snapshot
    _, second = await http("GET", PODS, limit=2, **{"continue": first["metadata"]["continue"]})
    _, third = await http("GET", PODS, limit=2, **{"continue": second["metadata"]["continue"]})
    assert [p["metadata"]["name"] for p in second["items"] + third["items"]] == ["p2", "p3", "p4"]
    assert "continue" not in third["metadata"]
    assert first["metadata"]["resourceVersion"] == third["metadata"]["resourceVersion"]
    _, again = await http("GET", PODS, limit=2)
    fake.create(pod_manifest("later"))
    fake.compact()  # the paginated list's resourceVersion is now older than the history
    status, expired = await http("GET", PODS, limit=2, **{"continue": again["metadata"]["continue"]})
    assert status == 410 and expired["reason"] == "Expired"
    fake.create(nodepool("np"))
    _, pools = await http("GET", NODEPOOLS)
    assert pools["items"][0]["kind"] == "NodePool"  # custom resource list items keep kind


async def test_put_checks_resource_version_and_bumps_generation(http: Client, fake: FakeApiServer) -> None:
    pool = fake.create(nodepool("np", weight=1))
    stale = json.loads(json.dumps(pool))
    pool["spec"]["weight"] = 2
    pool["status"] = {"ignored": True}
    status, updated = await http("PUT", f"{NODEPOOLS}/np", pool)
    assert status == 200 and updated["metadata"]["generation"] == 2 and "status" not in updated
    stale["spec"]["weight"] = 3
    status, conflict = await http("PUT", f"{NODEPOOLS}/np", stale)
    assert status == 409 and conflict["reason"] == "Conflict"
    updated["metadata"]["labels"] = {"a": "b"}
    _, relabelled = await http("PUT", f"{NODEPOOLS}/np", updated)
    assert relabelled["metadata"]["generation"] == 2  # metadata changes leave the generation alone
    relabelled["status"] = {"ready": True}
    relabelled["spec"]["weight"] = 50
    _, status_only = await http("PUT", f"{NODEPOOLS}/np/status", relabelled)
    assert status_only["status"] == {"ready": True} and status_only["spec"]["weight"] == 2
    relabelled["metadata"]["name"] = "other"
    assert (await http("PUT", f"{NODEPOOLS}/np", relabelled))[0] == 400
    unconditional = fake.get("nodepools", "np")
    assert unconditional is not None
    del unconditional["metadata"]["resourceVersion"]
    assert (await http("PUT", f"{NODEPOOLS}/np", unconditional))[0] == 200


async def test_patch_flavours(http: Client, fake: FakeApiServer) -> None:
    fake.create(
        {
            **pod_manifest("a"),
            "spec": {
                "containers": [{"name": "app", "image": "v1"}, {"name": "side", "image": "s1"}],
                "tolerations": [{"key": "x", "operator": "Exists"}],
            },
        }
    )
    status, pod = await http(
        "PATCH", f"{PODS}/a", {"spec": {"containers": [{"name": "app", "image": "v2"}]}}, content_type=SMP
    )
    assert status == 200 and [c["image"] for c in pod["spec"]["containers"]] == ["v2", "s1"]
    _, pod = await http(
        "PATCH",
        f"{PODS}/a",
        {"spec": {"tolerations": [{"key": "y", "operator": "Exists"}]}},
        content_type=SMP,
    )
    assert pod["spec"]["tolerations"] == [{"key": "y", "operator": "Exists"}]  # atomic list
    _, pod = await http(
        "PATCH",
        f"{PODS}/a",
        {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}},
        content_type=SMP,
    )
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    _, pod = await http(
        "PATCH", f"{PODS}/a", {"metadata": {"labels": {"a": "1", "b": "2"}}}, content_type=MERGE
    )
    _, pod = await http("PATCH", f"{PODS}/a", {"metadata": {"labels": {"a": None}}}, content_type=MERGE)
    assert pod["metadata"]["labels"] == {"b": "2"}
    ops = [
        {"op": "add", "path": "/metadata/annotations", "value": {"k~/": "v"}},
        {"op": "test", "path": "/metadata/annotations/k~0~1", "value": "v"},
    ]
    status, pod = await http("PATCH", f"{PODS}/a", ops, content_type=JSON_PATCH)
    assert status == 200 and pod["metadata"]["annotations"] == {"k~/": "v"}
    assert (await http("PATCH", f"{PODS}/a", {"metadata": {}}, content_type=JSON_PATCH))[0] == 400
    failing = [{"op": "test", "path": "/metadata/name", "value": "b"}]
    assert (await http("PATCH", f"{PODS}/a", failing, content_type=JSON_PATCH))[0] == 422
    assert (await http("PATCH", f"{PODS}/a", {}, content_type="application/apply-patch+yaml"))[0] == 415
    assert (await http("PATCH", f"{PODS}/a", {}, content_type="application/json"))[0] == 415
    stale = {"metadata": {"resourceVersion": "1", "labels": {"c": "3"}}}
    assert (await http("PATCH", f"{PODS}/a", stale, content_type=MERGE))[0] == 409
    fake.create(nodepool("np"))
    assert (await http("PATCH", f"{NODEPOOLS}/np", {"spec": {"weight": 1}}, content_type=SMP))[0] == 415
    version, before = fake.resource_version, fake.get("pods", "a")
    _, same = await http("PATCH", f"{PODS}/a", {"metadata": {"labels": {"b": "2"}}}, content_type=MERGE)
    assert before is not None and fake.resource_version == version  # a no-op writes nothing
    assert same["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_delete_finalizers_preconditions_and_collections(http: Client, fake: FakeApiServer) -> None:
    fake.create({**pod_manifest("held"), "metadata": {"name": "held", "finalizers": ["x/y"]}})
    status, held = await http("DELETE", f"{PODS}/held")
    assert status == 200 and held["metadata"]["deletionTimestamp"]
    assert fake.get("pods", "held") is not None
    _, _ = await http("PATCH", f"{PODS}/held", {"metadata": {"finalizers": None}}, content_type=MERGE)
    assert fake.get("pods", "held") is None
    pod = fake.create(pod_manifest("a"))
    assert (await http("DELETE", f"{PODS}/a", {"preconditions": {"uid": "other"}}))[0] == 409
    status, gone = await http(
        "DELETE", f"{PODS}/a", {"preconditions": {"uid": pod["metadata"]["uid"]}}, gracePeriodSeconds=3
    )
    assert status == 200 and gone["metadata"]["deletionGracePeriodSeconds"] == 3
    assert (await http("DELETE", f"{PODS}/a"))[0] == 404
    for name, app in (("w1", "web"), ("w2", "web"), ("d1", "db")):
        fake.create(pod_manifest(name, labels={"app": app}))
    status, deleted = await http("DELETE", PODS, labelSelector="app=web")
    assert status == 200 and [p["metadata"]["name"] for p in deleted["items"]] == ["w1", "w2"]
    assert [p["metadata"]["name"] for p in fake.list("pods")] == ["d1"]


# --- selectors --------------------------------------------------------------------------------------------


async def test_label_and_field_selectors(http: Client, fake: FakeApiServer) -> None:
    fake.create(pod_manifest("a", labels={"app": "web", "tier": "1"}, node="n1", phase="Running"))
    fake.create(pod_manifest("b", labels={"app": "db", "tier": "2"}))
    fake.create(pod_manifest("c", "other", labels={"app": "web"}))

    async def names(path: str = "/api/v1/pods", **query: Any) -> list[str]:
        status, found = await http("GET", path, **query)
        assert status == 200, found
        return [p["metadata"]["name"] for p in found["items"]]

    assert await names(labelSelector="app=web") == ["a", "c"]
    assert await names(labelSelector="app!=web") == ["b"]
    assert await names(labelSelector="app in (web, db),tier") == ["a", "b"]
    assert await names(labelSelector="app notin (web),!missing") == ["b"]
    assert await names(labelSelector="tier>1") == ["b"]
    assert await names(PODS, labelSelector="app==web") == ["a"]
    assert await names(fieldSelector="spec.nodeName=n1") == ["a"]
    assert await names(fieldSelector="spec.nodeName=,status.phase!=Running") == ["b", "c"]
    assert await names(fieldSelector="metadata.namespace=other") == ["c"]
    status, error = await http("GET", "/api/v1/pods", fieldSelector="spec.priority=1")
    assert status == 400 and "field label not supported: spec.priority" in error["message"]
    assert (await http("GET", "/api/v1/pods", labelSelector="a in (b"))[0] == 400
    assert (await http("GET", "/api/v1/nodes", fieldSelector="spec.unschedulable=true"))[0] == 200


def test_selector_parsing() -> None:
    parsed = parse_label_selector("a in (x, y), b notin (z),c,!d,e=f,g!=h")
    assert [(r.key, r.op, r.values) for r in parsed] == [
        ("a", "In", ("x", "y")),
        ("b", "NotIn", ("z",)),
        ("c", "Exists", ()),
        ("d", "DoesNotExist", ()),
        ("e", "In", ("f",)),
        ("g", "NotIn", ("h",)),
    ]
    assert parse_label_selector("") == ()
    for bad in ("a=b,,c", "-a", "a<x", "a=b c"):
        with pytest.raises(SelectorError):
            parse_label_selector(bad)
    assert parse_field_selector("metadata.name==x", ["metadata.name"])[0].value == "x"
    with pytest.raises(SelectorError):
        parse_field_selector("spec.x=1", ["metadata.name"])


# --- watches ----------------------------------------------------------------------------------------------


async def test_watch_replays_exactly_the_later_events(http: Client, fake: FakeApiServer) -> None:
    fake.create(pod_manifest("a"))
    start = fake.resource_version
    fake.create(pod_manifest("b"))
    fake.patch("pods", "a", {"metadata": {"labels": {"x": "1"}}})
    fake.delete("pods", "b")
    deleted = fake.resource_version
    fake.create(node_manifest("n1"))  # another kind: not in a pod watch
    events = await http.watch_until("/api/v1/pods", deleted, resourceVersion=start)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    assert events[0]["object"]["kind"] == "Pod"
    patched = int(fake.get("pods", "a", "default")["metadata"]["resourceVersion"])
    synthetic = await http.watch_until("/api/v1/pods", patched, resourceVersion="0")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in synthetic] == [("ADDED", "a")]


async def test_watch_streams_live_events_bookmarks_and_times_out(http: Client, fake: FakeApiServer) -> None:
    async with anyio.create_task_group() as tg:
        found: list[dict[str, Any]] = []

        async def run() -> None:
            found.extend(
                await http.watch(PODS, resourceVersion="", timeoutSeconds=60, allowWatchBookmarks="true")
            )

        tg.start_soon(run)
        while fake.active_watches == 0:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        fake.create(pod_manifest("live"))
        fake.create(pod_manifest("elsewhere", "other"))  # outside the watched namespace
        fake.send_bookmarks()
        fake.drop_watches(abort=False)  # ends the stream as a timeout would, without waiting for one
    assert [e["type"] for e in found] == ["ADDED", "BOOKMARK", "BOOKMARK"]
    assert found[1]["object"]["metadata"]["resourceVersion"] == str(fake.resource_version)
    assert fake.active_watches == 0


async def test_periodic_bookmarks() -> None:
    async with FakeApiServer(bookmark_interval=0.1) as server, aiohttp.ClientSession() as session:
        events = await Client(session, server.url).watch(
            "/api/v1/nodes", allowWatchBookmarks="1", timeoutSeconds=3
        )
    # Every 0.1 s for 3 s: at least 3 even on a machine that stalls the loop for a second at a time.
    assert [e["type"] for e in events].count("BOOKMARK") >= 3


async def test_list_then_watch_misses_and_repeats_nothing_under_concurrent_writes(
    http: Client, fake: FakeApiServer
) -> None:
    names = [f"p{i}" for i in range(150)]
    started = anyio.Event()

    async def write() -> None:
        for i, name in enumerate(names):
            fake.create(pod_manifest(name))
            if i == 20:
                started.set()  # the list below begins while the other 129 are still being written
            await anyio.lowlevel.checkpoint()

    seen: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        await started.wait()
        _, listed = await http("GET", PODS)
        seen += [p["metadata"]["name"] for p in listed["items"]]
        version = listed["metadata"]["resourceVersion"]
    last = str(fake.resource_version)
    # Read until the event of the last write: no wall-clock window that a loaded machine could miss.
    params = {"watch": "true", "resourceVersion": version, "timeoutSeconds": "60"}
    async with http.session.get(http.url + PODS, params=params) as response:
        async for line in response.content:
            if version == last or not line.strip():
                break  # nothing was written after the list
            event = json.loads(line)
            assert event["type"] == "ADDED"
            seen.append(event["object"]["metadata"]["name"])
            if event["object"]["metadata"]["resourceVersion"] == last:
                break
    assert sorted(seen) == sorted(names)


async def test_too_old_resource_version_is_410_gone(http: Client, fake: FakeApiServer) -> None:
    start = fake.resource_version
    for i in range(205):  # more than the history keeps (200)
        fake.create(pod_manifest(f"p{i}"))
    events = await http.watch(PODS, resourceVersion=start)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
    recent = await http.watch_until(PODS, fake.resource_version, resourceVersion=fake.resource_version - 3)
    assert [e["object"]["metadata"]["name"] for e in recent] == ["p202", "p203", "p204"]


async def test_watch_selector_transitions(http: Client, fake: FakeApiServer) -> None:
    fake.create(pod_manifest("a", labels={"app": "web"}))
    start = fake.resource_version
    fake.patch("pods", "a", {"metadata": {"labels": {"app": "db"}}})
    fake.patch("pods", "a", {"metadata": {"labels": {"app": "web"}}})
    fake.patch("pods", "a", {"metadata": {"labels": {"app": "web", "x": "1"}}})
    events = await http.watch_until(
        "/api/v1/pods", fake.resource_version, resourceVersion=start, labelSelector="app=web"
    )
    assert [e["type"] for e in events] == ["DELETED", "ADDED", "MODIFIED"]


async def test_dropped_watch_is_cut(http: Client, fake: FakeApiServer) -> None:
    async with anyio.create_task_group() as tg:
        errors: list[BaseException] = []

        async def run() -> None:
            try:
                await http.watch(PODS)
            except aiohttp.ClientPayloadError as exc:
                errors.append(exc)

        tg.start_soon(run)
        while fake.active_watches == 0:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        assert fake.drop_watches() == 1
    assert errors


# --- eviction ---------------------------------------------------------------------------------------------


def budget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
    }


async def evict(http: Client, name: str, grace: int | None = None) -> tuple[int, Any]:
    body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
    if grace is not None:
        body["deleteOptions"] = {"gracePeriodSeconds": grace}
    return await http("POST", f"{PODS}/{name}/eviction", body)


async def test_eviction_uses_live_budget_math(http: Client, fake: FakeApiServer) -> None:
    fake.create(budget("web", maxUnavailable="34%"))  # of 3 pods: 2 may be unavailable (rounded up)
    for i in range(3):
        fake.create(pod_manifest(f"w{i}", node="n1", phase="Running", labels={"app": "web"}))
    pdb = fake.get("poddisruptionbudgets", "web", "default")
    assert pdb is not None and pdb["status"]["disruptionsAllowed"] == 2 and pdb["status"]["expectedPods"] == 3
    fake.patch(
        "pods", "w2", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}, "default"
    )  # unhealthy now
    status, result = await evict(http, "w0", grace=4)
    assert status == 201 and result["status"] == "Success"
    removed = fake.get("pods", "w0", "default")
    assert removed is None
    status, refused = await evict(http, "w1")
    assert status == 429 and refused["reason"] == "TooManyRequests"
    assert "needs 1 healthy pods and has 1 currently" in refused["details"]["causes"][0]["message"]
    fake.create(pod_manifest("w3", labels={"app": "web"}))  # pending: no budget check
    assert (await evict(http, "w3"))[0] == 201
    assert (await evict(http, "ghost"))[0] == 404
    assert (await http("POST", f"{PODS}/w1/eviction", {"metadata": {"name": "other"}}))[0] == 400
    fake.create(budget("second", minAvailable=0))
    status, error = await evict(http, "w1")
    assert status == 500 and "more than one PodDisruptionBudget" in error["message"]


async def test_pinned_budget_is_decremented(http: Client, fake: FakeApiServer) -> None:
    pinned = budget("web", minAvailable=5)
    pinned["status"] = {"disruptionsAllowed": 1}
    fake.create(pinned)
    fake.create(pod_manifest("w0", node="n1", phase="Running", labels={"app": "web"}))
    fake.create(pod_manifest("w1", node="n1", phase="Running", labels={"app": "web"}))
    assert (await evict(http, "w0"))[0] == 201
    after = fake.get("poddisruptionbudgets", "web", "default")
    assert after is not None and after["status"]["disruptionsAllowed"] == 0
    assert (await evict(http, "w1"))[0] == 429
    fake.patch("poddisruptionbudgets", "web", {"status": None}, "default")  # unpinned: computed again
    live = fake.get("poddisruptionbudgets", "web", "default")
    assert live is not None and live["status"]["desiredHealthy"] == 5


# --- faults and the request log ------------------------------------------------------------------------


async def test_fault_injection_and_request_log(http: Client, fake: FakeApiServer) -> None:
    fake.fail_next("/api/v1/namespaces/*/pods", 503, times=2, method="POST")
    assert (await http("POST", PODS, pod_manifest("a")))[0] == 503
    assert (await http("GET", PODS))[0] == 200  # another method: unaffected
    assert (await http("POST", PODS, pod_manifest("a")))[0] == 503
    assert (await http("POST", PODS, pod_manifest("a")))[0] == 201
    fake.fail_next(f"{PODS}/a", 0, delay=0.2)
    with anyio.fail_after(2):
        started = anyio.current_time()
        assert (await http("GET", f"{PODS}/a"))[0] == 200
        assert anyio.current_time() - started >= 0.2
    fake.outage(0.2)
    status, body = await http("GET", PODS)
    assert status == 503 and body["reason"] == "ServiceUnavailable"
    await anyio.sleep(0.25)
    assert (await http("GET", PODS))[0] == 200
    fake.outage()
    assert (await http("GET", "/version"))[0] == 503
    fake.restore()
    assert (await http("GET", "/version"))[0] == 200
    verbs = [(r.verb, r.resource, r.status) for r in fake.requests if r.verb][:4]
    assert verbs == [
        ("create", "pods", 503),
        ("list", "pods", 200),
        ("create", "pods", 503),
        ("create", "pods", 201),
    ]
    assert fake.requests_for("create", "pods")[-1].body["metadata"]["name"] == "a"
    fake.clear_requests()
    assert fake.requests == []


# --- the patch engines ------------------------------------------------------------------------------------


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": 1}
    patched = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "replace", "path": "/c", "value": 2},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e"},
            {"op": "remove", "path": "/a/b/1"},
            {"op": "test", "path": "/e", "value": 2},
        ],
    )
    assert patched == {"a": {"b": [0, 2, 3]}, "c": 2, "e": 2}
    assert doc == {"a": {"b": [1, 2]}, "c": 1}
    for bad in (
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/x", "value": 1}],
        [{"op": "add", "path": "/a/b/9", "value": 1}],
    ):
        with pytest.raises(PatchError) as error:
            json_patch(doc, bad)
        assert error.value.code == 422
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "frobnicate", "path": "/a"}])


def test_merge_and_strategic_merge() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == {
        "a": {"c": 2, "d": 3},
        "l": [2],
    }
    target = {
        "metadata": {"finalizers": ["a", "b"]},
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Other", "status": "True"}]},
        "spec": {"keep": {"x": 1, "y": 2}},
    }
    patched = strategic_merge_patch(
        target,
        {
            "metadata": {"finalizers": ["b", "c"], "$deleteFromPrimitiveList/finalizers": ["a"]},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "$setElementOrder/conditions": [],
            },
            "spec": {"keep": {"$retainKeys": ["x"], "x": 5}},
        },
    )
    assert patched["metadata"]["finalizers"] == ["b", "c"]
    assert patched["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "Other", "status": "True"},
    ]
    assert patched["spec"]["keep"] == {"x": 5}
    replaced = strategic_merge_patch(
        target, {"status": {"conditions": [{"$patch": "replace"}, {"type": "New"}]}}
    )
    assert replaced["status"]["conditions"] == [{"type": "New"}]
    assert strategic_merge_patch(target, {"spec": {"$patch": "delete"}}).get("spec") is None
