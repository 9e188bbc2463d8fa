"""Batching windows: the pure rule, the Batcher in virtual time, and one BatchAdd per burst."""

from __future__ import annotations

import math

import anyio
import pytest
from daemon_harness import running, wait_for, web_pod
from hypothesis import given, settings
from hypothesis import strategies as st

from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.batcher import Batcher, window_end
from hpscaler.provisioning.batching import AddRequest

times = st.floats(min_value=0, max_value=1e6, allow_nan=False)


def test_window_end_is_idle_after_the_last_trigger_capped_at_max_after_the_opening() -> None:
    assert window_end(0.0, 0.0, 1.0, 10.0) == 1.0
    assert window_end(0.0, 4.5, 1.0, 10.0) == 5.5
    assert window_end(0.0, 9.5, 1.0, 10.0) == 10.0
    assert window_end(100.0, 130.0, 1.0, 10.0) == 110.0


@settings(deadline=None, derandomize=True)  # deterministic: the same examples on every run
@given(opened=times, gap=st.floats(0, 1e4), idle=st.floats(0.01, 100), extra=st.floats(0, 1000))
def test_window_end_never_exceeds_either_bound(opened: float, gap: float, idle: float, extra: float) -> None:
    maximum = idle + extra
    last = opened + gap
    end = window_end(opened, last, idle, maximum)
    assert end <= last + idle
    assert end <= opened + maximum
    assert end in (last + idle, opened + maximum)


async def _collect(batcher: Batcher, windows: list[tuple[int, float, float]]) -> None:
    while True:
        count, opened = await batcher.wait()
        windows.append((count, opened, anyio.current_time()))


@pytest.mark.looptime
async def test_window_closes_one_idle_second_after_the_last_trigger() -> None:
    batcher = Batcher(1.0, 10.0)
    windows: list[tuple[int, float, float]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_collect, batcher, windows)
        start = anyio.current_time()
        batcher.trigger()
        await anyio.sleep(0.6)
        batcher.trigger()
        await anyio.sleep(0.6)
        batcher.trigger()  # t = 1.2: the window now ends at 2.2
        await anyio.sleep(5)
        batcher.trigger()  # a new window, alone: ends at 7.2
        await anyio.sleep(5)
        tg.cancel_scope.cancel()
    assert [(c, round(o - start, 3), round(t - start, 3)) for c, o, t in windows] == [
        (3, 0.0, 2.2),
        (1, 6.2, 7.2),
    ]


@pytest.mark.looptime
async def test_steady_triggers_give_windows_of_the_maximum_length() -> None:
    """A trigger every 0.5 s for 30 s: windows of 10 s each, none longer, none lost."""
    batcher = Batcher(1.0, 10.0)
    windows: list[tuple[int, float, float]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_collect, batcher, windows)
        await anyio.sleep(0.25)
        start = anyio.current_time()
        for _ in range(60):
            batcher.trigger()
            await anyio.sleep(0.5)
        await anyio.sleep(5)
        tg.cancel_scope.cancel()
    lengths = [round(closed - opened, 3) for _, opened, closed in windows]
    assert lengths[:2] == [10.0, 10.0], windows
    assert all(length <= 10.0 for length in lengths)
    assert sum(count for count, _, _ in windows) == 60
    assert round(windows[0][1] - start, 3) == 0.0
    # The last window ends one idle second after the last trigger (t = 29.5).
    assert round(windows[-1][2] - start, 3) == 30.5


@pytest.mark.looptime
async def test_maximum_counts_from_the_first_trigger_even_if_nobody_was_waiting() -> None:
    """Triggers that arrive while the provisioner is busy open the window at the first of them."""
    batcher = Batcher(1.0, 10.0)
    start = anyio.current_time()
    batcher.trigger()  # t = 0, nobody waits yet
    windows: list[tuple[int, float, float]] = []
    async with anyio.create_task_group() as tg:
        await anyio.sleep(0.5)
        batcher.trigger()  # t = 0.5
        tg.start_soon(_collect, batcher, windows)
        for _ in range(30):  # keeps the window busy until t = 15.5
            await anyio.sleep(0.5)
            batcher.trigger()
        await anyio.sleep(3)
        tg.cancel_scope.cancel()
    _count, opened, closed = windows[0]
    assert round(opened - start, 3) == 0.0
    assert round(closed - start, 3) == 10.0


def _nodes_requested(requests: list[AddRequest]) -> int:
    return sum(r.node_count for r in requests)


@pytest.mark.looptime
@pytest.mark.parametrize(("cpu", "per_node"), [(1000, 7), (2000, 3)])
async def test_a_burst_of_200_pods_is_one_plan_in_ceil_nodes_over_50_calls(
    seed_config: LoadedConfig, catalogue: Catalogue, cpu: int, per_node: int
) -> None:
    async with running(seed_config, catalogue) as h:
        # Straddle the launch monitor's tick at t = 20: it must not plan half a burst.
        await anyio.sleep(15.5)
        for i in range(200):
            h.world.kubernetes.add_pod(web_pod(f"burst-{i}", cpu=cpu))
            await anyio.sleep(0.025)  # 200 pods over 5 s: one window
        last_pod = anyio.current_time()
        await wait_for(lambda: h.world.hyperpod.calls["batch_add_nodes"] > 0, 30)
        assert anyio.current_time() - last_pod <= 1.5  # the window closed 1 idle second after the burst
        await anyio.sleep(30)
        nodes = math.ceil(200 / per_node)
        bodies = h.world.hyperpod.add_requests
        assert len(bodies) == math.ceil(nodes / 50)
        assert _nodes_requested(bodies) == nodes
        assert len(h.ctx.inflight) == nodes
        planned = {key for record in h.ctx.inflight.values() for key in record.for_pods}
        assert planned == {f"default/burst-{i}" for i in range(200)}
        await wait_for(lambda: len(h.running_pods()) == 200, 300)
        assert len(h.world.hyperpod.add_requests) == math.ceil(nodes / 50)


@pytest.mark.looptime
async def test_the_calls_of_a_burst_are_in_flight_at_once(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    """Like Karpenter's parallel NodeClaim creation: a 67-node burst is two calls, the second not held
    back for the first's answer (each takes 2 s here)."""
    async with running(seed_config, catalogue) as h:
        hyperpod = h.world.hyperpod
        original = hyperpod.batch_add_nodes
        in_flight, most, answered = 0, 0, []

        async def slow_add(request: AddRequest) -> object:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await anyio.sleep(2.0)
            in_flight -= 1
            answered.append(anyio.current_time())
            return await original(request)

        hyperpod.batch_add_nodes = slow_add  # type: ignore[method-assign]
        for i in range(200):
            h.world.kubernetes.add_pod(web_pod(f"burst-{i}", cpu=2000))
        await wait_for(lambda: len(answered) == 2, 60)
        assert most == 2
        assert answered[1] - answered[0] < 2.0  # answered together, not one round trip apart
        await wait_for(lambda: len(h.ctx.inflight) == math.ceil(200 / 3), 30)


@pytest.mark.looptime
async def test_a_call_failing_unexpectedly_loses_none_of_the_other_calls_nodes(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    """An error that is not a BackendError (a bug, a broken transport) stops the daemon, as before; the
    call sent alongside is still answered and its nodes recorded first, not cancelled mid-call."""
    calls: list[int] = []
    harness = None
    with pytest.raises(BaseExceptionGroup) as raised:
        async with running(seed_config, catalogue) as h:
            harness = h
            hyperpod = h.world.hyperpod
            original = hyperpod.batch_add_nodes

            async def first_breaks(request: AddRequest) -> object:
                calls.append(request.node_count)
                if len(calls) == 1:
                    raise RuntimeError("connection reset")
                await anyio.sleep(1.0)  # answered after the other call failed
                return await original(request)

            hyperpod.batch_add_nodes = first_breaks  # type: ignore[method-assign]
            for i in range(200):
                h.world.kubernetes.add_pod(web_pod(f"burst-{i}", cpu=2000))
            await anyio.sleep(120)  # the daemon stops on the error before this ends
    assert raised.group_contains(RuntimeError, match="connection reset", depth=None)
    assert harness is not None and len(calls) == 2
    assert len(harness.ctx.inflight) == calls[1] > 0
    assert len(harness.world.hyperpod.nodes()) == calls[1]
