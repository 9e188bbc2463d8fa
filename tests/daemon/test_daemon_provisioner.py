"""The provisioner on the fakes: out-of-capacity fallback, refused groups, restarts without doubles."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from daemon_harness import (
    C5_2X,
    ON_DEMAND_AZ1,
    SPOT_AZ1,
    ZONE_A,
    Harness,
    running,
    wait_for,
    web_pod,
    with_settings,
)

from hpscaler.backends.errors import CapacityError, InvalidRequestError, NotFoundError
from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import AddResult, HyperPodNode, NodeStatus
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.events import LaunchFailed
from hpscaler.fake import FakeHyperPod
from hpscaler.model import CapacityType
from hpscaler.provisioning.batching import AddRequest

NO_SPOT = {(C5_2X, ZONE_A, CapacityType.SPOT): 0}


def add_pods(h: Harness, prefix: str, count: int, cpu: int = 2000) -> list[str]:
    for i in range(count):
        h.world.kubernetes.add_pod(web_pod(f"{prefix}-{i}", cpu=cpu))
    return [f"default/{prefix}-{i}" for i in range(count)]


def groups_running(h: Harness, keys: Sequence[str]) -> set[str] | None:
    """The instance groups running these pods (or their controller's replacements), once all run."""
    pods = {p.name.split("-r")[0]: p for p in h.running_pods()}
    found = [pods.get(k.split("/")[1]) for k in keys]
    if any(p is None for p in found):
        return None
    return {h.group_of(p) for p in found if p is not None}


def requested_groups(requests: Sequence[AddRequest]) -> list[str]:
    return [e.group for r in requests for e in r.entries]


@pytest.mark.looptime
async def test_spot_out_of_capacity_is_cancelled_backed_off_and_falls_back_to_on_demand(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    backoff = {"initial_seconds": 60.0, "max_seconds": 1800.0, "multiplier": 2.0}
    config = with_settings(seed_config, out_of_capacity_backoff=backoff)
    async with running(config, catalogue, capacity=NO_SPOT) as h:
        hyperpod, unavailable = h.world.hyperpod, h.ctx.unavailable
        first = add_pods(h, "a", 6)
        await wait_for(lambda: hyperpod.calls["batch_add_nodes"] == 1, 5)
        assert requested_groups(hyperpod.add_requests) == [SPOT_AZ1]
        spot_ids = set(h.ctx.inflight)
        assert len(spot_ids) == 2
        # EC2 answers within seconds; HyperPod reports Failure and would retry it forever.
        await wait_for(lambda: any(n.status is NodeStatus.FAILURE for n in hyperpod.nodes()), 15)
        await wait_for(lambda: hyperpod.calls["batch_add_nodes"] == 2, 15)
        failed_at = h.world.clock.now()
        # The failed launches were cancelled before the fallback was asked for.
        assert set(hyperpod.delete_requests[0]) == spot_ids
        assert requested_groups(hyperpod.add_requests[1:]) == [ON_DEMAND_AZ1]
        assert unavailable.is_unavailable(SPOT_AZ1, ZONE_A, failed_at)
        entry = unavailable.entries[(SPOT_AZ1, ZONE_A)]
        assert (entry.failures, entry.until - entry.last_failure) == (1, 60)
        assert h.ctx.stats.events.count(LaunchFailed) == 2
        await wait_for(lambda: groups_running(h, first) == {ON_DEMAND_AZ1}, 300)
        assert not any(n.group == SPOT_AZ1 for n in hyperpod.nodes())  # no Spot retry left behind
        assert hyperpod.launched[(SPOT_AZ1, CapacityType.SPOT)] == 0

        # Still no capacity after the first backoff: the retry fails again and backs off twice as long.
        await wait_for(lambda: not unavailable.is_unavailable(SPOT_AZ1, ZONE_A, h.world.clock.now()), 120)
        second = add_pods(h, "b", 3)
        await wait_for(lambda: unavailable.is_unavailable(SPOT_AZ1, ZONE_A, h.world.clock.now()), 60)
        entry = unavailable.entries[(SPOT_AZ1, ZONE_A)]
        assert (entry.failures, entry.until - entry.last_failure) == (2, 120)
        await wait_for(lambda: groups_running(h, second) == {ON_DEMAND_AZ1}, 300)

        # Capacity is back; once the backoff expires new pods go to Spot again.
        hyperpod.set_capacity(C5_2X, ZONE_A, CapacityType.SPOT, None)
        await wait_for(lambda: not unavailable.is_unavailable(SPOT_AZ1, ZONE_A, h.world.clock.now()), 200)
        calls = hyperpod.calls["batch_add_nodes"]
        third = add_pods(h, "c", 3)
        await wait_for(lambda: groups_running(h, third) == {SPOT_AZ1}, 300)
        assert requested_groups(hyperpod.add_requests[calls:]) == [SPOT_AZ1]
        # The launch monitor sees the nodes join within its 10 s tick; a success forgets the history.
        await wait_for(lambda: (SPOT_AZ1, ZONE_A) not in unavailable.entries, 10)


@pytest.mark.looptime
async def test_a_group_refused_by_the_api_falls_back_in_the_same_round(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, status={SPOT_AZ1: "Updating"}) as h:
        hyperpod = h.world.hyperpod
        keys = add_pods(h, "a", 3)
        await wait_for(lambda: hyperpod.calls["batch_add_nodes"] >= 1, 5)
        # Both calls in one round, at the same virtual instant: the refusal costs no waiting.
        assert requested_groups(hyperpod.add_requests) == [SPOT_AZ1, ON_DEMAND_AZ1]
        entry = h.ctx.unavailable.entries[(SPOT_AZ1, ZONE_A)]
        assert "InvalidInstanceGroupStatus" in entry.reason
        assert [r.group for r in h.ctx.inflight.values()] == [ON_DEMAND_AZ1]
        await wait_for(lambda: groups_running(h, keys) == {ON_DEMAND_AZ1}, 300)
        assert hyperpod.calls["batch_add_nodes"] == 2


@pytest.mark.looptime
@pytest.mark.parametrize(
    "refusal",
    [
        InvalidRequestError("no such group", code="ValidationException"),
        CapacityError("quota of ml.c5.2xlarge for cluster usage reached", code="ResourceLimitExceeded"),
        NotFoundError("resource not found", code="ResourceNotFound"),
    ],
)
async def test_a_request_the_api_rejects_outright_falls_back_in_the_same_round(
    seed_config: LoadedConfig, catalogue: Catalogue, refusal: BackendError
) -> None:
    async with running(seed_config, catalogue) as h:
        hyperpod = h.world.hyperpod
        hyperpod.faults.fail_next("batch_add_nodes", refusal)
        keys = add_pods(h, "a", 3)
        await wait_for(lambda: hyperpod.calls["batch_add_nodes"] >= 1, 5)
        assert requested_groups(hyperpod.add_requests) == [SPOT_AZ1, ON_DEMAND_AZ1]
        assert h.ctx.unavailable.is_unavailable(SPOT_AZ1, ZONE_A, h.world.clock.now())
        await wait_for(lambda: groups_running(h, keys) == {ON_DEMAND_AZ1}, 300)


@pytest.mark.looptime
@pytest.mark.parametrize(
    "error",
    [
        BackendError("throttled", code="ThrottlingException"),
        # Not retryable as it is, but no refusal of the group either: no fallback, no backoff.
        BackendError("not allowed", retryable=False, code="AccessDeniedException"),
    ],
)
async def test_an_api_error_that_refuses_no_group_is_retried_later_with_the_same_plan(
    seed_config: LoadedConfig, catalogue: Catalogue, error: BackendError
) -> None:
    async with running(seed_config, catalogue) as h:
        hyperpod = h.world.hyperpod
        hyperpod.faults.fail_next("batch_add_nodes", error)
        keys = add_pods(h, "a", 3)
        await wait_for(lambda: hyperpod.calls["batch_add_nodes"] == 2, 30)
        assert requested_groups(hyperpod.add_requests) == [SPOT_AZ1, SPOT_AZ1]
        assert hyperpod.add_requests[0].client_token == hyperpod.add_requests[1].client_token
        assert not h.ctx.unavailable.entries
        await wait_for(lambda: groups_running(h, keys) == {SPOT_AZ1}, 300)


class AnswerLost:
    """HyperPod whose BatchAddClusterNodes answers never arrive: the nodes are added all the same."""

    def __init__(self, inner: FakeHyperPod) -> None:
        self.inner = inner

    async def batch_add_nodes(self, request: AddRequest) -> AddResult:
        await self.inner.batch_add_nodes(request)
        raise BackendError("connection reset by peer", code="RequestTimeout")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class ListedLate:
    """HyperPod whose first ListClusterNodes calls do not show nodes yet (eventual consistency)."""

    def __init__(self, inner: FakeHyperPod, calls: int) -> None:
        self.inner = inner
        self.hidden_calls = calls

    async def list_nodes(self) -> Sequence[HyperPodNode]:
        nodes = await self.inner.list_nodes()
        if self.hidden_calls > 0:
            self.hidden_calls -= 1
            return []
        return nodes

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.looptime
async def test_a_restarted_daemon_adopts_nodes_in_flight_and_requests_nothing_again(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, start_daemon=False) as h:
        hyperpod = h.world.hyperpod
        keys = add_pods(h, "a", 6)
        first = h.daemon
        async with anyio.create_task_group() as crash:
            await crash.start(first.run)
            await wait_for(lambda: len(first.ctx.inflight) == 2, 5)
            crash.cancel_scope.cancel()  # killed between rounds: its memory is gone
        ids = set(first.ctx.inflight)
        assert {n.logical_id for n in hyperpod.nodes() if n.status is NodeStatus.PENDING} == ids

        second = h.new_daemon()
        await h.tg.start(second.run)
        await wait_for(lambda: set(second.ctx.inflight) == ids, 5)
        await wait_for(lambda: groups_running(h, keys) == {SPOT_AZ1}, 300)
        await anyio.sleep(60)
        assert hyperpod.calls["batch_add_nodes"] == 1
        assert {n.logical_id for n in hyperpod.nodes()} == ids
        assert len(h.world.kubernetes.nodes()) == 2


@pytest.mark.looptime
async def test_a_restart_between_sending_and_recording_replays_the_token_and_adds_nothing(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, start_daemon=False) as h:
        hyperpod = h.world.hyperpod
        keys = add_pods(h, "a", 6)
        first = h.new_daemon(hyperpod=AnswerLost(hyperpod))
        async with anyio.create_task_group() as crash:
            await crash.start(first.run)
            await wait_for(lambda: hyperpod.calls["batch_add_nodes"] == 1, 5)
            crash.cancel_scope.cancel()
        assert not first.ctx.inflight  # the answer never arrived
        ids = {n.logical_id for n in hyperpod.nodes()}
        assert len(ids) == 2

        # The new daemon does not see the nodes listed yet, plans the same pods again and sends
        # the same ClientToken: HyperPod replays the first answer instead of adding nodes.
        second = h.new_daemon(hyperpod=ListedLate(hyperpod, calls=1))
        await h.tg.start(second.run)
        await wait_for(lambda: hyperpod.calls["batch_add_nodes"] == 2, 5)
        first_body, second_body = hyperpod.add_requests
        assert second_body == first_body
        assert set(second.ctx.inflight) == ids
        await wait_for(lambda: groups_running(h, keys) == {SPOT_AZ1}, 300)
        await anyio.sleep(60)
        assert hyperpod.calls["batch_add_nodes"] == 2
        assert {n.logical_id for n in hyperpod.nodes()} == ids


@pytest.mark.looptime
async def test_nodes_are_requested_before_any_event_is_written_and_remember_their_pods(
    seed_config: LoadedConfig, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(seed_config, catalogue) as h:
        hyperpod, kube = h.world.hyperpod, h.world.kubernetes
        events_at_call: list[int] = []
        send = hyperpod.batch_add_nodes

        async def batch_add_nodes(request: AddRequest) -> AddResult:
            events_at_call.append(len(kube.events))
            return await send(request)

        monkeypatch.setattr(hyperpod, "batch_add_nodes", batch_add_nodes)
        before = len(kube.events)
        keys = add_pods(h, "a", 6)
        await wait_for(lambda: any(e.reason == "Nominated" for e in kube.events), 5)
        assert events_at_call == [before]  # the Events of the round came after its call
        assert {r.group for r in h.ctx.inflight.values()} == {SPOT_AZ1}
        for record in h.ctx.inflight.values():
            assert sorted(record.for_pods) == sorted(keys)
