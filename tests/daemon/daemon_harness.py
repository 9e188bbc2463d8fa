"""Helpers of the daemon tests: configurations, a fake world, and a daemon running on it.

Every test runs under `looptime`, so `anyio.sleep` advances virtual time: minutes of cluster time
pass in milliseconds and every timer fires in a deterministic order.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from hpscaler.catalogue import Catalogue
from hpscaler.clock import LoopClock
from hpscaler.config import LoadedConfig, default_config_path, load_config
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.context import Backends, DaemonContext
from hpscaler.fake import World
from hpscaler.model import CapacityType, DisruptionBudget, Pod

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SPOT_AZ1 = "auto-spot-c5-2x-az1"
ON_DEMAND_AZ1 = "auto-ondemand-c5-2x-az1"
C5_2X = "ml.c5.2xlarge"
ZONE_A = "us-west-2a"
MULTI_AZ = Path(__file__).resolve().parents[2] / "config" / "scenarios" / "multi-az"


@functools.cache
def load_seed_config() -> LoadedConfig:
    """The embedded example cluster (loaded once)."""
    return load_config(default_config_path())


def pinned_seed_config() -> LoadedConfig:
    """The embedded example with the settings the tests' timings rely on pinned, so edits to the
    example do not move them.
    """
    config = with_settings(
        load_seed_config(),
        batching={"idle_seconds": 1.0, "max_seconds": 10.0},
        out_of_capacity_backoff={"initial_seconds": 180.0, "max_seconds": 1800.0, "multiplier": 2.0},
        interruption={"checkpoint_acknowledgement": True, "safety_margin_seconds": 10.0},
        consolidation={"enabled": True, "poll_seconds": 10.0, "validation_seconds": 15.0},
        provisioning={"launch_timeout_seconds": 600.0, "registration_timeout_seconds": 1200.0},
    )
    return with_pool(config, consolidate_after_seconds=0.0, budgets=("10%",))


def with_pool(config: LoadedConfig, **changes: Any) -> LoadedConfig:
    """The config with its (single) NodePool changed; `disruption` keys go to `spec.disruption`."""
    (pool,) = config.node_pools
    disruption = {k: changes.pop(k) for k in list(changes) if k in _DISRUPTION_FIELDS}
    if "budgets" in disruption:
        disruption["budgets"] = tuple(DisruptionBudget(nodes=n) for n in disruption["budgets"])
    pool = replace(pool, disruption=replace(pool.disruption, **disruption), **changes)
    return replace(config, node_pools=(pool,))


_DISRUPTION_FIELDS = ("consolidation_policy", "consolidate_after_seconds", "budgets")


def with_settings(config: LoadedConfig, **sections: Mapping[str, Any]) -> LoadedConfig:
    """The config with some settings sections updated, e.g. `consolidation={"enabled": False}`."""
    settings = config.settings
    update = {
        name: getattr(settings, name).model_copy(update=dict(values)) for name, values in sections.items()
    }
    return replace(config, settings=settings.model_copy(update=update))


def make_world(
    config: LoadedConfig,
    capacity: Mapping[tuple[str, str, CapacityType], int | None] | None = None,
    *,
    initial: Mapping[str, int] | None = None,
    status: Mapping[str, str] | None = None,
    **options: Any,
) -> World:
    """A fake world with the config's instance groups, on a clock starting at EPOCH (call in the loop).

    `initial` launches that many nodes per group at the start (as CreateCluster's InstanceCount);
    `status` sets a group's status as HyperPod sees it (the daemon's config still says InService).
    """
    groups = [
        replace(g, target_count=(initial or {}).get(g.name, 0), status=(status or {}).get(g.name, g.status))
        for g in config.instance_groups
    ]
    return World(config.cluster_name, groups, clock=LoopClock(EPOCH), capacity=capacity, **options)


def web_pod(name: str, cpu: int = 1000, **kw: Any) -> Pod:
    """A Deployment's pod (its controller recreates it) asking for `cpu` millicores."""
    kw.setdefault("owner_kind", "ReplicaSet")
    kw.setdefault("owner_name", "web")
    labels = {"app": kw.pop("app", "web")}
    return Pod("default", name, {"cpu": cpu, "memory": 256 * 1024**2}, labels=labels, **kw)


@dataclass
class Harness:
    """A world and a daemon running on it in one task group."""

    world: World
    daemon: Daemon
    tg: TaskGroup
    config: LoadedConfig
    catalogue: Catalogue

    @property
    def ctx(self) -> DaemonContext:
        """The running daemon's shared state."""
        return self.daemon.ctx

    def new_daemon(self, config: LoadedConfig | None = None, **backends: Any) -> Daemon:
        """A daemon (not started) on the same world and clock; keyword arguments replace backends."""
        world = self.world
        wired = Backends(world.kubernetes, world.hyperpod, world.placement, world.interruptions)
        for name, backend in backends.items():
            setattr(wired, name, backend)
        return Daemon(config or self.config, wired, self.catalogue, world.clock)

    def running_pods(self) -> list[Pod]:
        """Pods bound and Running, by name."""
        return [p for p in self.world.kubernetes.pods() if p.phase == "Running" and p.node_name]

    def group_of(self, pod: Pod) -> str:
        """The instance group of the node a pod runs on."""
        node = self.world.kubernetes.node(pod.node_name)
        assert node is not None, pod.key
        return node.instance_group


async def wait_for(predicate: Callable[[], bool], within: float, step: float = 0.5) -> float:
    """Sleep in virtual-time steps until `predicate()` holds; returns the seconds it took."""
    start = anyio.current_time()
    while not predicate():
        if anyio.current_time() - start > within:
            raise AssertionError(f"condition not met within {within}s of virtual time")
        await anyio.sleep(step)
    return anyio.current_time() - start


@asynccontextmanager
async def running(
    config: LoadedConfig,
    catalogue: Catalogue,
    *,
    start_daemon: bool = True,
    **world_options: Any,
) -> AsyncIterator[Harness]:
    """Run a world made from `config` (see `make_world` for the options) and a daemon on it."""
    world = make_world(config, **world_options)
    async with anyio.create_task_group() as tg:
        await tg.start(world.run)
        backends = Backends(world.kubernetes, world.hyperpod, world.placement, world.interruptions)
        daemon = Daemon(config, backends, catalogue, world.clock)
        if start_daemon:
            await tg.start(daemon.run)
        yield Harness(world, daemon, tg, config, catalogue)
        daemon.stop()
        tg.cancel_scope.cancel()
