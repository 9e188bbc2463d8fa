"""Run a scenario: the real daemon on the in-memory world, in virtual time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import looptime

from hpscaler.catalogue import PriceOverride, load_catalogue
from hpscaler.clock import LoopClock
from hpscaler.config import LoadedConfig, default_config_path, load_config
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.context import Backends
from hpscaler.daemon.drain import CHECKPOINT_ANNOTATION
from hpscaler.fake import World
from hpscaler.model import ANNOTATION_DO_NOT_DISRUPT, CapacityType, Gang, LabelSelector, Pod
from hpscaler.quantity import parse_resource
from hpscaler.simulate.report import Recorder, build_report
from hpscaler.simulate.scenario import Scenario, Workload, config_path

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed start keeps reports reproducible


@dataclass(slots=True)
class Driver:
    """Creates the scenario's pods and fires its events at their times."""

    scenario: Scenario
    world: World
    recorder: Recorder
    replicas: dict[str, int] = field(default_factory=dict)
    serial: dict[str, int] = field(default_factory=dict)

    def pod(self, workload: Workload) -> Pod:
        index = self.serial.get(workload.name, 0)
        self.serial[workload.name] = index + 1
        requests = {
            "cpu": parse_resource("cpu", workload.cpu),
            "memory": parse_resource("memory", workload.memory),
        }
        if workload.gpu:
            requests["nvidia.com/gpu"] = workload.gpu
        annotations: dict[str, str] = {}
        if workload.checkpoint:
            annotations[CHECKPOINT_ANNOTATION] = "true"
        if workload.do_not_disrupt:
            annotations[ANNOTATION_DO_NOT_DISRUPT] = "true"
        return Pod(
            namespace="default",
            name=f"{workload.name}-{index}",
            requests=requests,
            labels={"app": workload.name, **workload.labels},
            annotations=annotations,
            node_selector=dict(workload.node_selector),
            owner_kind="ReplicaSet" if workload.kind == "Deployment" else workload.kind,
            owner_name=workload.name,
            termination_grace_seconds=workload.grace_period_seconds,
            gang=Gang(f"default/{workload.name}", workload.replicas) if workload.gang else None,
        )

    def start(self, workload: Workload) -> None:
        if workload.min_available is not None:
            self.world.kubernetes.add_pdb(
                "default",
                workload.name,
                LabelSelector((("app", workload.name),)),
                workload.min_available,
                None,
            )
        self.scale(workload, workload.replicas)

    def scale(self, workload: Workload, replicas: int) -> None:
        live = sorted(
            (p for p in self.world.kubernetes.pods() if p.owner_name == workload.name),
            key=lambda p: (p.phase == "Running", p.created, p.name),
        )
        for _ in range(replicas - len(live)):
            self.world.kubernetes.add_pod(self.pod(workload), run_seconds=workload.run_for)
        for pod in live[: max(0, len(live) - replicas)]:
            self.world.kubernetes.remove_pod(pod.key)
        self.replicas[workload.name] = replicas
        self.recorder.note(f"{workload.name}: {len(live)} -> {replicas} pods")

    def fire(self, index: int) -> None:
        event = self.scenario.events[index]
        hyperpod = self.world.hyperpod
        if event.scale is not None:
            workload = next(w for w in self.scenario.workloads if w.name == event.scale.workload)
            self.scale(workload, event.scale.replicas)
        elif event.capacity is not None:
            group = hyperpod.group(event.capacity.group)
            for zone in group.zones:
                for type_name in group.instance_types:
                    hyperpod.set_capacity(type_name, zone, group.capacity_type, event.capacity.count)
            self.recorder.note(f"capacity of {group.name} set to {event.capacity.count}")
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
                    continue
                if action.notice:
                    self.recorder.noticed(self.world, node.instance_id)
                hyperpod.interrupt(node.instance_id, notice=action.notice)
            kind = (
                "rebalance recommendations"
                if event.rebalance
                else ("interruptions with notice" if action.notice else "interruptions without notice")
            )
            self.recorder.note(f"{min(action.count, len(running))} {kind} in {action.group}")

    async def run(self) -> None:
        timeline = sorted(
            [(w.at, 0, i) for i, w in enumerate(self.scenario.workloads)]
            + [(e.at, 1, i) for i, e in enumerate(self.scenario.events)]
        )
        start = anyio.current_time()
        for at, kind, index in timeline:
            await anyio.sleep(max(0.0, start + at - anyio.current_time()))
            if kind == 0:
                self.start(self.scenario.workloads[index])
            else:
                self.fire(index)


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
    path = config_path(scenario)
    if path is None or scenario.config == "embedded":
        return load_config(default_config_path())
    if not path.exists():
        # Scenario configs shipped next to the scenarios may be named without their folder.
        path = path.parent / scenario.config
    return load_config(path)


async def run_scenario(scenario: Scenario, config: LoadedConfig) -> dict[str, Any]:
    """Run the scenario to its end and return the report."""
    clock = LoopClock(EPOCH)
    world = _world(scenario, config, clock)
    catalogue = load_catalogue()
    if config.settings.prices:
        catalogue = catalogue.with_prices(
            {n: PriceOverride(p.on_demand, p.spot) for n, p in config.settings.prices.items()}
        )
    backends = Backends(world.kubernetes, world.hyperpod, world.placement, world.interruptions)
    daemon = Daemon(config, backends, catalogue, clock)
    recorder = Recorder(clock, world, scenario.sample_seconds)
    driver = Driver(scenario, world, recorder)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        await tg.start(world.run)
        await tg.start(recorder.run)
        await tg.start(daemon.run)
        tg.start_soon(driver.run)
        await anyio.sleep(scenario.duration)
        recorder.sample()
        tg.cancel_scope.cancel()
    return build_report(scenario, config, world, daemon.ctx, recorder, time.perf_counter() - started)


def simulate(scenario: Scenario) -> dict[str, Any]:
    """Run a scenario on a virtual-time event loop: hours of cluster time in seconds."""
    config = load_scenario_config(scenario)
    result: dict[str, Any] = anyio.run(
        run_scenario,
        scenario,
        config,
        backend_options={"loop_factory": lambda: looptime.new_event_loop(start=0.0, _enabled=True)},
    )
    return result
