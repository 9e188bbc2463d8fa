"""Pod Events go out in the background: a stalled Events API never holds a provisioning round."""

from __future__ import annotations

import anyio
import pytest
from daemon_harness import running, wait_for, web_pod

from hpscaler.catalogue import Catalogue
from hpscaler.clock import LoopClock
from hpscaler.config import LoadedConfig
from hpscaler.daemon.context import Backends, DaemonContext
from hpscaler.daemon.events import PodEventDropped
from hpscaler.daemon.posting import EventPoster, PodEvent
from hpscaler.fake import FakeHyperPod, FakeKubernetes
from hpscaler.model import Pod


class StalledEvents:
    """Kubernetes whose Events API hangs until `opened` is set; notes whether `plan_lock` was held."""

    def __init__(self, inner: FakeKubernetes) -> None:
        self.inner = inner
        self.lock: anyio.Lock | None = None
        self.posted: list[tuple[str, str, bool]] = []  # pod, reason, plan_lock held
        self.arrived = anyio.Event()
        self.opened = anyio.Event()

    async def record_event(self, pod: Pod, reason: str, message: str, *, warning: bool = False) -> None:
        self.posted.append((pod.key, reason, self.lock is not None and self.lock.locked()))
        self.arrived.set()
        await self.opened.wait()
        await self.inner.record_event(pod, reason, message, warning=warning)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.looptime
async def test_a_stalled_event_sink_delays_no_planning(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, start_daemon=False) as h:
        kube = h.world.kubernetes
        sink = StalledEvents(kube)
        daemon = h.new_daemon(kubernetes=sink)
        sink.lock = daemon.ctx.plan_lock
        await h.tg.start(daemon.run)

        kube.add_pod(web_pod("w-0", cpu=5000))
        with anyio.fail_after(60):
            await sink.arrived.wait()  # the round's Nominated event is on its way, and hangs
        assert sink.posted == [("default/w-0", "Nominated", False)]  # posted outside plan_lock

        # The Events API still hangs, and the next pods still get their node asked for at once.
        kube.add_pod(web_pod("w-1", cpu=5000))
        await wait_for(lambda: len(h.world.hyperpod.add_requests) == 2, 60)
        assert not sink.opened.is_set() and not kube.events

        sink.opened.set()
        await wait_for(lambda: len(kube.events) >= 2, 10)
        # In the order decided; later rounds add "on in-flight node ..." for the same pods.
        assert [(e.pod, e.message.split(" node ")[0]) for e in kube.events[:2]] == [
            ("default/w-0", "Pod should schedule on a new ml.c5.2xlarge"),
            ("default/w-1", "Pod should schedule on a new ml.c5.2xlarge"),
        ]
        assert all(not held for _, _, held in sink.posted)


@pytest.mark.looptime
async def test_a_full_queue_drops_new_events_and_counts_them(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    clock = LoopClock(0.0)
    kube = FakeKubernetes(clock)
    hyperpod = FakeHyperPod(seed_config.cluster_name, seed_config.instance_groups, clock)
    ctx = DaemonContext(seed_config, Backends(kube, hyperpod), catalogue, clock)
    poster = EventPoster(ctx, size=2)
    pods = [Pod("default", f"p-{i}", {"cpu": 100}) for i in range(3)]
    assert [poster.post(PodEvent(p, "Nominated", "soon")) for p in pods] == [True, True, False]
    assert ctx.stats.events.count(PodEventDropped) == 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(poster.run, name="test:pod-events")
        await wait_for(lambda: len(kube.events) == 2, 5)
        tg.cancel_scope.cancel()
    assert [e.pod for e in kube.events] == ["default/p-0", "default/p-1"]
