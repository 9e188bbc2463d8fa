"""The `fake` backend: the in-memory world, in real time, for `hpscaler run` without AWS."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from hpscaler.backends.registry import BackendSet, serves
from hpscaler.clock import LoopClock
from hpscaler.config import LoadedConfig
from hpscaler.fake.world import World


@serves("kubernetes", "hyperpod", "scores", "interruptions")
@asynccontextmanager
async def fake_backends(config: LoadedConfig) -> AsyncIterator[BackendSet]:
    """A World built from the configuration's instance groups, running until the context exits."""
    world = World(
        config.cluster_name,
        config.instance_groups,
        # `hpscaler run` stamps and compares times on the wall clock: the world must agree with it.
        clock=LoopClock(time.time()),
        scores=dict(config.settings.placement_scores),
    )
    async with anyio.create_task_group() as tg:
        await tg.start(world.run, name="fake:world")
        yield BackendSet(world.kubernetes, world.hyperpod, world.placement, world.interruptions)
        tg.cancel_scope.cancel()
