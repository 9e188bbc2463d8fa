"""The real daemon on the in-memory fakes, for the benchmarks that run its loops (W3, W4, W6).

Unlike the simulator and the daemon tests (virtual time under `looptime`), W3 and W4 run on a normal
asyncio loop in real time, so what they measure includes every bit of CPU the daemon spends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace

import structlog

from hpscaler.catalogue import load_catalogue
from hpscaler.clock import LoopClock
from hpscaler.config import LoadedConfig
from hpscaler.config.settings import Settings
from hpscaler.daemon.app import Daemon
from hpscaler.daemon.context import Backends
from hpscaler.fake import World
from hpscaler.model import CapacityType, Disruption, DisruptionBudget, InstanceGroup, NodeClass, NodePool

CLUSTER = "bench-cluster"
C5_2X = "ml.c5.2xlarge"
C5_X = "ml.c5.xlarge"
ZONES = ("us-west-2a", "us-west-2b", "us-west-2c")
ZONE_IDS = ("usw2-az1", "usw2-az2", "usw2-az3")


def quiet_logs() -> None:
    """Keep the daemon's info-level JSON logging (its cost is part of what is measured), to /dev/null."""
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sink),
        cache_logger_on_first_use=True,
    )


def group(
    name: str, type_name: str, capacity_type: CapacityType, zone: int, target: int = 0
) -> InstanceGroup:
    return InstanceGroup(
        name=name,
        instance_types=(type_name,),
        capacity_type=capacity_type,
        zones=(ZONES[zone],),
        zone_ids=(ZONE_IDS[zone],),
        target_count=target,
    )


def example_groups(initial_spot: int = 0) -> list[InstanceGroup]:
    """The shape of hpscaler's embedded example (the HyperPod Spot documentation's cluster)."""
    return [
        group("spot-c5-2x-az1", C5_2X, CapacityType.SPOT, 0, initial_spot),
        group("spot-c5-2x-az2", C5_2X, CapacityType.SPOT, 1),
        group("spot-c5-x-az3", C5_X, CapacityType.SPOT, 2),
        group("ondemand-c5-2x-az1", C5_2X, CapacityType.ON_DEMAND, 0),
    ]


def make_config(groups: Sequence[InstanceGroup], **settings: object) -> LoadedConfig:
    """One NodePool over one NodeClass listing every group; consolidation off unless asked for."""
    base = Settings(
        cluster_name=CLUSTER,
        region="us-west-2",
        placement_scores={"us-west-2a": 9, "us-west-2b": 6, "us-west-2c": 3},
    )
    update = {"consolidation": base.consolidation.model_copy(update={"enabled": False})}
    for name, values in settings.items():
        update[name] = getattr(base, name).model_copy(update=dict(values))  # type: ignore[call-overload]
    pool = NodePool(
        "general",
        node_class="bench",
        expire_after_seconds=None,
        disruption=Disruption(budgets=(DisruptionBudget("100%"),)),
    )
    return LoadedConfig(
        settings=base.model_copy(update=update),
        cluster_name=CLUSTER,
        node_pools=(pool,),
        node_classes=(NodeClass("bench", tuple(g.name for g in groups)),),
        instance_groups=tuple(replace(g, target_count=0) for g in groups),
        warnings=(),
        sources=("bench",),
    )


def make_world(groups: Sequence[InstanceGroup], **options: object) -> World:
    """A world with the groups as HyperPod has them (target counts launch at the start)."""
    return World(CLUSTER, groups, clock=LoopClock(), **options)  # type: ignore[arg-type]


def make_daemon(config: LoadedConfig, world: World) -> Daemon:
    backends = Backends(world.kubernetes, world.hyperpod, world.placement, world.interruptions)
    return Daemon(config, backends, load_catalogue(), world.clock)
