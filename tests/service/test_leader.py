"""Leader election on a Lease: one leader acts; a standby takes over; a deposed leader stops at once."""

from __future__ import annotations

import anyio
import pytest

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import Lease
from hpscaler.clock import LoopClock
from hpscaler.fake import FakeKubernetes
from hpscaler.service.leader import LeaderElector

LEASE, RENEW = 15.0, 5.0


def elector(kube: FakeKubernetes, holder: str) -> LeaderElector:
    return LeaderElector(
        kube,
        name="hpscaler-leader",
        holder=holder,
        lease_seconds=LEASE,
        renew_seconds=RENEW,
        clock=kube.clock,
    )


class Worker:
    """Work that records whether it is running; it runs until cancelled."""

    def __init__(self) -> None:
        self.running = False
        self.starts = 0
        self.started = anyio.Event()

    async def __call__(self) -> None:
        self.running = True
        self.starts += 1
        self.started.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.running = False


@pytest.mark.looptime
async def test_only_one_of_two_replicas_acts() -> None:
    kube = FakeKubernetes(LoopClock())
    a, b = elector(kube, "a"), elector(kube, "b")
    work_a, work_b = Worker(), Worker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run, work_a)
        await anyio.sleep(1)
        tg.start_soon(b.run, work_b)
        for _ in range(10):
            await anyio.sleep(RENEW)
            assert work_a.running and not work_b.running
            assert a.is_leader and not b.is_leader
        tg.cancel_scope.cancel()
    assert kube.lease("hpscaler-leader").holder == "a"  # type: ignore[union-attr]


@pytest.mark.looptime
async def test_standby_takes_over_within_the_lease_duration_when_the_leader_dies() -> None:
    kube = FakeKubernetes(LoopClock())
    b = elector(kube, "b")
    work_b = Worker()
    async with anyio.create_task_group() as tg:
        leader_scope = anyio.CancelScope()  # the leader process
        tg.start_soon(_run_in_scope, leader_scope, elector(kube, "a"), Worker())
        await anyio.sleep(1)
        tg.start_soon(b.run, work_b)
        await anyio.sleep(20)
        assert not work_b.running
        died_at = anyio.current_time()
        leader_scope.cancel()  # the leader dies without releasing the lease
        await work_b.started.wait()
        assert anyio.current_time() - died_at <= LEASE + RENEW
        tg.cancel_scope.cancel()


async def _run_in_scope(scope: anyio.CancelScope, elector: LeaderElector, work: Worker) -> None:
    with scope:
        await elector.run(work)


@pytest.mark.looptime
async def test_a_leader_that_loses_its_lease_stops_acting_at_once() -> None:
    kube = FakeKubernetes(LoopClock())
    a = elector(kube, "a")
    work_a = Worker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run, work_a)
        await anyio.sleep(1)
        assert work_a.running
        # Someone else takes the lease (e.g. after a network partition healed).
        await anyio.sleep(LEASE + 1)
        kube.leases.put(
            "hpscaler-leader", Lease(holder="intruder", renewed=kube.clock.now(), duration_seconds=LEASE)
        )
        await anyio.sleep(RENEW + 0.1)  # the next renewal sees it
        assert not work_a.running and not a.is_leader
        tg.cancel_scope.cancel()


@pytest.mark.looptime
async def test_a_leader_that_cannot_renew_stops_before_its_lease_expires() -> None:
    kube = FakeKubernetes(LoopClock())
    a = elector(kube, "a")
    work_a = Worker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run, work_a)
        await anyio.sleep(1)
        kube.faults.fail_next("acquire_lease", BackendError("apiserver unavailable"), times=100)
        stopped = None
        for _ in range(40):
            await anyio.sleep(0.5)
            if not work_a.running:
                stopped = kube.clock.now()
                break
        assert stopped is not None
        lease = kube.lease("hpscaler-leader")
        assert lease is not None and stopped < lease.renewed + LEASE  # never acts on an expired lease
        tg.cancel_scope.cancel()


@pytest.mark.looptime
async def test_with_the_default_15s_lease_and_10s_renewal_one_term_lasts() -> None:
    # Regression: renewing at 10 s of a 15 s lease used to count as "too late" and end the term.
    kube = FakeKubernetes(LoopClock())
    a = LeaderElector(
        kube, name="hpscaler-leader", holder="a", lease_seconds=15, renew_seconds=10, clock=kube.clock
    )
    work = Worker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run, work)
        await anyio.sleep(600)
        assert a.terms == 1 and work.starts == 1 and work.running
        tg.cancel_scope.cancel()


@pytest.mark.looptime
async def test_a_backend_on_another_clock_does_not_unseat_the_leader() -> None:
    # Regression: expiry was computed from the Lease's renewTime, written on the backend's clock.
    kube = FakeKubernetes(LoopClock(0.0))  # the backend's clock is at the epoch
    a = LeaderElector(
        kube,
        name="hpscaler-leader",
        holder="a",
        lease_seconds=LEASE,
        renew_seconds=RENEW,
        clock=LoopClock(1.8e9),
    )
    work = Worker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run, work)
        await anyio.sleep(120)
        assert a.terms == 1 and work.starts == 1 and a.is_leader
        tg.cancel_scope.cancel()


@pytest.mark.looptime
async def test_a_failed_renewal_is_retried_and_the_term_survives_a_short_outage() -> None:
    kube = FakeKubernetes(LoopClock())
    a = elector(kube, "a")
    work = Worker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run, work)
        await anyio.sleep(1)
        kube.faults.fail_next("acquire_lease", BackendError("apiserver unavailable"), times=2)
        await anyio.sleep(3 * RENEW)
        assert a.terms == 1 and work.starts == 1 and work.running
        tg.cancel_scope.cancel()


@pytest.mark.looptime
async def test_cancelling_the_leader_releases_the_lease_after_its_work_stopped() -> None:
    kube = FakeKubernetes(LoopClock())
    b = elector(kube, "b")
    work_b = Worker()
    order: list[str] = []

    class Recording(Worker):
        async def __call__(self) -> None:
            try:
                await super().__call__()
            finally:
                order.append("work stopped")

    async with anyio.create_task_group() as tg:
        leader_scope = anyio.CancelScope()
        a = elector(kube, "a")
        tg.start_soon(_run_in_scope, leader_scope, a, Recording())
        await anyio.sleep(1)
        tg.start_soon(b.run, work_b)
        await anyio.sleep(10)
        leader_scope.cancel()  # a graceful stop
        stopped_at = anyio.current_time()
        await work_b.started.wait()
        assert anyio.current_time() - stopped_at <= b.retry_seconds  # no waiting out the lease
        assert order == ["work stopped"] and a.released == 1 and not a.is_leader
        tg.cancel_scope.cancel()
