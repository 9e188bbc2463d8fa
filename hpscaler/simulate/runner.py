"""Run a scenario: the real daemon on the in-memory world, in virtual time."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import looptime

from hpscaler.backends.types import NodeStatus
from hpscaler.clock import LoopClock
from hpscaler.config import LoadedConfig
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.context import Backends
from hpscaler.daemon.events import ProvisioningRequestStep
from hpscaler.fake import Offering, World
from hpscaler.fake.copies import copy_pod
from hpscaler.logs import set_time_source
from hpscaler.model import CapacityType, Gang, LabelSelector, Pod
from hpscaler.quantity import parse_resource
from hpscaler.simulate.chaos import RETRY_SECONDS, ChaosEvent, plan_chaos
from hpscaler.simulate.invariants import InvariantChecker, Ledger
from hpscaler.simulate.kueue import KueueQueue
from hpscaler.simulate.report import Recorder, build_report
from hpscaler.simulate.scenario import Scenario, Workload, check_groups, scenario_config
from hpscaler.simulate.trace import build_trace
from hpscaler.simulate.workloads import submission, workload_pods

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed start keeps reports reproducible


@dataclass(slots=True)
class Driver:
    """Creates the scenario's pods and fires its scripted events and random faults at their times."""

    scenario: Scenario
    world: World
    recorder: Recorder
    ledger: Ledger = field(default_factory=Ledger)
    plan: tuple[ChaosEvent, ...] = ()
    replicas: dict[str, int] = field(default_factory=dict)
    serial: dict[str, int] = field(default_factory=dict)
    deferred: int = 0  # random faults that waited for a running Spot instance
    missed: int = 0  # random faults that found none before the chaos window closed
    start_time: float = 0.0
    queue: KueueQueue | None = None  # jobs admitted through ProvisioningRequests
    _rng: random.Random = field(default_factory=random.Random)
    _queue: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    _templates: dict[str, list[Pod]] = field(default_factory=dict)
    _seq: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"hpscaler-chaos:{self.scenario.seed}:victims")

    def templates(self, workload: Workload) -> list[Pod]:
        """The workload's template pods, built (and validated) once."""
        found = self._templates.get(workload.name)
        if found is None:
            base = Path(self.scenario.source).parent if self.scenario.source else Path.cwd()
            found = self._templates[workload.name] = workload_pods(workload, base)
        return found

    def pod(self, workload: Workload, owner: str, gang_size: int) -> Pod:
        index = self.serial.get(workload.name, 0)
        self.serial[workload.name] = index + 1
        (template,) = self.templates(workload)
        return replace(
            copy_pod(template),
            name=f"{workload.name}-{index}",
            owner_kind="ReplicaSet" if workload.kind == "Deployment" else workload.kind,
            owner_name=owner,
            gang=Gang(f"default/{owner}", gang_size) if workload.is_gang else None,
        )

    def create(self, workload: Workload, count: int, owner: str) -> None:
        """Create `count` pods of the workload; each starts a lineage."""
        self.add([self.pod(workload, owner, count) for _ in range(count)], workload.run_for)

    def start(self, workload: Workload) -> None:
        if workload.min_available is not None:
            self.world.kubernetes.add_pdb(
                "default",
                workload.name,
                LabelSelector((("app", workload.name),)),
                workload.min_available,
                None,
            )
        if workload.scalable:
            self.scale(workload, workload.replicas_at(workload.at))
        else:
            self.submit(workload, 0)

    def submit(self, workload: Workload, round_index: int) -> None:
        """One submission of a Job: a fresh Job (and gang) each time it repeats."""
        at = self.world.clock.now() - self.start_time
        owner = workload.name if workload.repeat is None else f"{workload.name}-{round_index + 1}"
        if workload.manifest is not None:
            pods = submission(self.templates(workload), round_index, workload.repeat is not None)
            self.add(pods, workload.run_for)
            self.recorder.note(f"{owner}: {len(pods)} pods submitted")
            return
        count = workload.replicas_at(at)
        if count and workload.provisioning_class is not None and self.queue is not None:
            pods = [self.pod(workload, owner, count) for _ in range(count)]
            self.queue.submit(owner, workload.provisioning_class, pods, workload.run_for)
        elif count:
            self.create(workload, count, owner)
        self.recorder.note(f"{owner}: {count} pods submitted")

    def add(self, pods: list[Pod], run_for: float | None) -> None:
        """Create pods; each starts a lineage."""
        now = self.world.clock.now()
        for pod in pods:
            added = self.world.kubernetes.add_pod(pod, run_seconds=run_for)
            self.ledger.create(added.key, now)

    def scale(self, workload: Workload, replicas: int) -> None:
        kube = self.world.kubernetes
        live = sorted(
            (p for p in kube.pods() if p.owner_name == workload.name),
            key=lambda p: (p.phase == "Running", p.created, p.name),
        )
        if replicas > len(live):
            self.create(workload, replicas - len(live), workload.name)
        now = self.world.clock.now()
        for pod in live[: max(0, len(live) - replicas)]:
            self.ledger.remove(kube.origin(pod.key) or pod.key, now)
            kube.remove_pod(pod.key)
        self.replicas[workload.name] = replicas
        if replicas != len(live):
            self.recorder.note(f"{workload.name}: {len(live)} -> {replicas} pods")

    def admit(self, pod: Pod, run_seconds: float | None) -> None:
        """Create a pod of a job Kueue admitted."""
        created = self.world.kubernetes.add_pod(pod, run_seconds=run_seconds)
        self.ledger.create(created.key, self.world.clock.now())

    def interrupt(
        self, instance_id: str, notice: bool, via: Sequence[str] = ("sqs",), delay: float = 0.0
    ) -> None:
        hyperpod = self.world.hyperpod
        carriers = tuple(v for v in via if v != "hyperpod-event")  # HyperPod's events carry no notice
        if notice and carriers:
            self.recorder.noticed(self.world, instance_id)
        if "sqs" not in via:
            hyperpod.silent_instances.add(instance_id)  # no EC2 events reach the queue for it
        saved = (hyperpod.notice_via, hyperpod.notice_delay)
        hyperpod.notice_via, hyperpod.notice_delay = carriers, delay
        try:
            hyperpod.interrupt(instance_id, notice=notice)
        finally:
            hyperpod.notice_via, hyperpod.notice_delay = saved

    def fire(self, index: int) -> None:
        event = self.scenario.events[index]
        hyperpod = self.world.hyperpod
        if event.scale is not None:
            workload = next(w for w in self.scenario.workloads if w.name == event.scale.workload)
            self.scale(workload, event.scale.replicas)
        elif event.capacity is not None:
            self.set_capacity(event.capacity.group, event.capacity.count)
            self.recorder.note(f"capacity of {event.capacity.group} set to {event.capacity.count}")
        else:
            action = event.interrupt or event.rebalance
            assert action is not None
            noticed = self.recorder.noticed_instances
            running = [
                n
                for n in hyperpod.nodes()
                if n.group == action.group and n.status.value == "Running" and n.instance_id not in noticed
            ]
            for node in running[: action.count]:
                if event.rebalance is not None:
                    hyperpod.rebalance(node.instance_id)
                else:
                    self.interrupt(node.instance_id, action.notice, action.via, action.delay)
            kind = (
                "rebalance recommendations"
                if event.rebalance
                else ("interruptions with notice" if action.notice else "interruptions without notice")
            )
            self.recorder.note(f"{min(action.count, len(running))} {kind} in {action.group}")

    def set_capacity(self, group_name: str, count: int | None) -> dict[Offering, int | None]:
        """Set every offering of a group; returns what each was before."""
        hyperpod = self.world.hyperpod
        group = hyperpod.group(group_name)
        before: dict[Offering, int | None] = {}
        for zone in group.zones:
            for type_name in group.instance_types:
                before[(type_name, zone, group.capacity_type)] = hyperpod.capacity(
                    type_name, zone, group.capacity_type
                )
                hyperpod.set_capacity(type_name, zone, group.capacity_type, count)
        return before

    def chaos(self, event: ChaosEvent) -> None:
        """Carry out one planned fault; one that finds no victim waits for one."""
        hyperpod = self.world.hyperpod
        if event.kind == "capacity-loss":
            (group,) = event.groups
            before = self.set_capacity(group, 0)
            self.recorder.note(f"chaos: {group} out of capacity for {event.duration / 60:.0f}m")
            self.later(event.duration, partial(self.restore, group, before))
            return
        reclaimed = {r.instance_id for r in hyperpod.reclaims} | self.recorder.noticed_instances
        victims = [
            n.instance_id
            for n in hyperpod.nodes()
            if n.group in event.groups and n.status is NodeStatus.RUNNING and n.instance_id not in reclaimed
        ]
        if not victims:
            if self.world.clock.now() - self.start_time + RETRY_SECONDS < self.scenario.chaos_end:
                self.deferred += 1
                self.later(RETRY_SECONDS, partial(self.chaos, event))
            else:
                self.missed += 1
                self.recorder.note(f"chaos: {event.kind} found no running Spot instance")
            return
        victim = self._rng.choice(victims)
        node = hyperpod.node_by_instance(victim)
        where = node.group if node else "?"
        if event.kind == "rebalance":
            hyperpod.rebalance(victim)
            self.recorder.note(f"chaos: rebalance recommendation for {victim} in {where}")
        else:
            self.interrupt(victim, event.notice)
            how = "with notice" if event.notice else "without notice"
            self.recorder.note(f"chaos: interruption {how} of {victim} in {where}")

    def restore(self, group: str, before: dict[Offering, int | None]) -> None:
        hyperpod = self.world.hyperpod
        for (type_name, zone, capacity_type), count in before.items():
            hyperpod.set_capacity(type_name, zone, capacity_type, count)
        self.recorder.note(f"chaos: {group} has capacity again")

    def later(self, delay: float, action: Callable[[], None]) -> None:
        """Run `action` `delay` seconds from now."""
        self._push(self.world.clock.now() - self.start_time + delay, action)

    def _push(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), action))

    def _timeline(self) -> None:
        duration = self.scenario.duration
        # Same-time ties keep the old order: workloads first, then events, then random faults.
        for workload in self.scenario.workloads:
            at = workload.at
            self._push(at, partial(self.start, workload))
            if workload.scalable and workload.diurnal is not None:
                step = workload.diurnal.step
                for k in range(1, math.ceil((duration - at) / step)):
                    t = at + k * step
                    action = partial(self._follow_curve, workload, t)
                    self._push(t, action)
            for k, t in enumerate(workload.submissions(duration)[1:], start=1):
                self._push(t, partial(self.submit, workload, k))
        for index, event in enumerate(self.scenario.events):
            self._push(event.at, partial(self.fire, index))
        for fault in self.plan:
            self._push(fault.at, partial(self.chaos, fault))

    def _follow_curve(self, workload: Workload, t: float) -> None:
        self.scale(workload, workload.replicas_at(t))

    def add_daemonsets(self) -> None:
        """The scenario's DaemonSets, there from the start: each node gets their pods as it registers."""
        for spec in self.scenario.daemonsets:
            requests = {
                "cpu": parse_resource("cpu", spec.cpu),
                "memory": parse_resource("memory", spec.memory),
            }
            template = Pod(
                spec.namespace,
                spec.name,
                requests,
                labels={"app": spec.name},
                node_selector=dict(spec.node_selector),
                tolerations=tuple(t.to_model() for t in spec.tolerations),
                owner_kind="DaemonSet",
                owner_name=spec.name,
                phase="Running",
            )
            self.world.kubernetes.add_daemonset(template)

    async def run(self) -> None:
        self.start_time = self.world.clock.now()
        start = anyio.current_time()
        self._timeline()
        while self._queue:
            at, _, action = heapq.heappop(self._queue)
            await anyio.sleep(max(0.0, start + at - anyio.current_time()))
            action()


def _world(scenario: Scenario, config: LoadedConfig, clock: LoopClock) -> World:
    groups = {g.name: g for g in config.instance_groups}
    capacity: dict[tuple[str, str, CapacityType], int | None] = {}
    for item in scenario.world.capacity:
        group = groups[item.group]
        for zone in group.zones:
            for type_name in group.instance_types:
                capacity[(type_name, zone, group.capacity_type)] = item.count
    scores = {**config.settings.placement_scores, **scenario.world.placement_scores}
    return World(
        config.cluster_name,
        config.instance_groups,
        clock=clock,
        capacity=capacity,
        scores=scores,
        launch_seconds=scenario.world.launch_seconds,
        join_seconds=scenario.world.join_seconds,
        retry_seconds=scenario.world.retry_seconds,
        shutdown_seconds=scenario.world.shutdown_seconds,
        seed=scenario.seed,
    )


def load_scenario_config(scenario: Scenario) -> LoadedConfig:
    """The scenario's configuration (its own directory, or the embedded default)."""
    return scenario_config(scenario)


async def run_scenario(
    scenario: Scenario,
    config: LoadedConfig,
    *,
    trace: bool = False,
    progress: Callable[[float, float], None] | None = None,
) -> dict[str, Any]:
    """Run the scenario to its end and return the report (with the exact `trace` when asked).

    `progress` is told (simulated seconds, scenario duration) at every sample of the timeline.
    """
    clock = LoopClock(EPOCH)
    world = _world(scenario, config, clock)
    catalogue = config.catalogue()
    backends = Backends(world.kubernetes, world.hyperpod, world.placement, world.interruptions)
    daemon = Daemon(config, backends, catalogue, clock)
    recorder = Recorder(clock, world, scenario.sample_seconds)
    if progress is not None:
        recorder.on_sample = lambda seconds: progress(seconds, scenario.duration)
    plan = plan_chaos(scenario, config.instance_groups)
    driver = Driver(scenario, world, recorder, plan=plan)
    driver.add_daemonsets()
    if any(w.provisioning_class for w in scenario.workloads):
        driver.queue = KueueQueue(world, driver.admit, clock.now())
    checker = InvariantChecker(
        clock,
        world,
        config,
        daemon.ctx,
        driver.ledger,
        every=scenario.check_seconds,
        max_pending_seconds=scenario.max_pending_seconds,
        noticed_pods=recorder.noticed_pods,
    )
    started = time.perf_counter()
    set_time_source(clock.now)  # log lines carry the simulated time, like everything else
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(world.run, name="simulate:world")
            await tg.start(recorder.run, name="simulate:recorder")
            await tg.start(checker.run, name="simulate:invariants")
            await tg.start(daemon.run, name="simulate:daemon")
            tg.start_soon(driver.run, name="simulate:workloads")
            if driver.queue is not None:
                tg.start_soon(driver.queue.run, name="simulate:kueue")
            await anyio.sleep(scenario.duration)
            recorder.sample()
            checker.check()
            tg.cancel_scope.cancel()
    finally:
        set_time_source(None)
    wall = time.perf_counter() - started
    report = build_report(
        scenario,
        config,
        world,
        daemon.ctx,
        recorder,
        checker,
        wall,
        plan=plan,
        deferred=driver.deferred,
        missed=driver.missed,
    )
    if driver.queue is not None:
        released = daemon.ctx.stats.events.count(ProvisioningRequestStep, step="released")
        report["provisioningRequests"] = driver.queue.report(released)
    if trace:
        report["trace"] = build_trace(world, recorder.start, clock.now(), recorder.pending_trace)
    return report


def simulate(
    scenario: Scenario, *, trace: bool = False, progress: Callable[[float, float], None] | None = None
) -> dict[str, Any]:
    """Run a scenario on a virtual-time event loop: hours of cluster time in seconds.

    `trace` adds the exact timeline (`hpscaler.simulate.trace`) that `--plot` draws; `progress` is
    told how far the simulated time is (see `run_scenario`).
    """
    config = load_scenario_config(scenario)
    check_groups(scenario, config.instance_groups)
    result: dict[str, Any] = anyio.run(
        partial(run_scenario, trace=trace, progress=progress),
        scenario,
        config,
        backend_options={"loop_factory": lambda: looptime.new_event_loop(start=0.0, _enabled=True)},
    )
    return result
